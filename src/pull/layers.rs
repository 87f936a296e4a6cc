//! The layers of one pull, in two phases.
//!
//! 1. Stage, all layers at once: fetch each blob and unpack it into a
//!    private directory. When an unpack slot is free the layer is unpacked
//!    *while it downloads*: the decoder reads the ingest file behind the
//!    download ([`super::follow`]), so the network, the blob digest and the
//!    blob write run on the async runtime while decompression, the diff_id
//!    and file creation run on one blocking thread. Nothing is synced yet.
//!    A blob is committed (fsynced, renamed into the store) as soon as its
//!    digest checks out, while its unpack goes on.
//! 2. Publish, base first: one `syncfs` makes every snapshot of the pull
//!    durable, then they are renamed into view and recorded in one index
//!    batch. A layer is only published if its blob digest *and* its
//!    diff_id checked out.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::fetch::{fetch_blob, BlobSource, Fetched};
use super::follow::{Feed, FinishOnDrop, Follower};
use super::{is_permanent, LayerEvent, Progress};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{self, Compression};
use crate::registry::Registry;
use crate::snapshot::{self, Building, Built};
use crate::unpack::{self, Limits};
use crate::Mocker;

/// The layers of one pull and what fetching and unpacking them needs.
pub(super) struct LayerPlan<'a> {
    pub mocker: &'a Mocker,
    pub registry: &'a Registry,
    pub progress: &'a dyn Progress,
    /// (digest, size, media type), base first.
    pub layers: &'a [(Digest, u64, String)],
    pub chains: &'a [Digest],
    pub diff_ids: &'a [Digest],
    /// Bound on one layer's unpacked size.
    pub limit: u64,
}

/// A layer after phase 1.
pub(super) struct Stage {
    snapshot: Staged,
    blob: Fetched,
}

enum Staged {
    /// Its snapshot already exists.
    Done,
    /// Unpacked, waiting to be published after its parent.
    Built(Built),
    /// Another process is unpacking it.
    Deferred,
}

/// Downloads and unpacks are bounded separately: a long unpack must not
/// hold a download slot, or later layers would wait to start downloading.
struct Slots {
    download: tokio::sync::Semaphore,
    unpack: tokio::sync::Semaphore,
}

impl LayerPlan<'_> {
    /// Phase 1 for every layer, in parallel. Returns each layer's stage and
    /// how many blobs were transferred.
    pub async fn stage(&self, max_downloads: usize) -> Result<(Vec<Stage>, usize)> {
        for (digest, size, _) in self.layers {
            self.progress.layer(digest, LayerEvent::Pending { size: *size });
        }
        self.mocker.snapshots.sweep_partial_builds();
        let slots = Slots {
            download: tokio::sync::Semaphore::new(max_downloads.max(1)),
            unpack: tokio::sync::Semaphore::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)),
        };
        let slots = &slots;
        let committed = self.mocker.snapshots.committed(self.chains)?;
        let stages = (0..self.layers.len()).map(|i| self.stage_one(i, !committed[i], slots));
        let staged = futures_util::future::try_join_all(stages).await;
        if let Err(e) = &staged {
            // Partial downloads are kept for resuming after an interruption,
            // but not when a retry would fail the same way. Best effort: report `e`.
            if is_permanent(e) {
                for (digest, _, _) in self.layers {
                    let _ = self.mocker.store.discard_ingest(digest);
                }
            }
        }
        let staged = staged?;
        let downloaded = staged.iter().filter(|s| matches!(s.blob, Fetched::Downloaded)).count();
        Ok((staged, downloaded))
    }

    /// Fetch layer `i` and, if its snapshot is `wanted`, unpack it: while it
    /// downloads if an unpack slot is free now, else from the blob once it
    /// is complete.
    async fn stage_one(&self, i: usize, wanted: bool, slots: &Slots) -> Result<Stage> {
        let (digest, size, media_type) = &self.layers[i];
        let what = format!("layer {digest}");
        let blob = BlobSource {
            registry: self.registry,
            digest,
            size: *size,
            media_type,
            what: &what,
        };
        let report = |e: LayerEvent| self.progress.layer(digest, e);
        let download = slots.download.acquire().await.map_err(|_| Error::Interrupted)?;
        let Some(_unpack_slot) = wanted.then(|| slots.unpack.try_acquire().ok()).flatten() else {
            let fetched = fetch_blob(self.mocker, &blob, &report, None).await?;
            drop(download);
            let snapshot = match wanted {
                true => {
                    let _slot = slots.unpack.acquire().await.map_err(|_| Error::Interrupted)?;
                    self.unpack_stored(i).await?
                }
                false => Staged::Done,
            };
            return Ok(Stage {
                snapshot,
                blob: fetched,
            });
        };
        let (snapshot, blob) = match self.begin(i).await? {
            snapshot::Begin::Building(building) => self.stream(i, building, &blob, &report, download).await?,
            snapshot::Begin::Exists(_) => (Staged::Done, fetch_blob(self.mocker, &blob, &report, None).await?),
            snapshot::Begin::Busy => (Staged::Deferred, fetch_blob(self.mocker, &blob, &report, None).await?),
        };
        Ok(Stage { snapshot, blob })
    }

    /// Unpack layer `i` into `building` as its blob downloads. The caller
    /// holds an unpack slot; the download slot is released once the
    /// download ends.
    async fn stream(
        &self,
        i: usize,
        building: Building,
        blob: &BlobSource<'_>,
        report: &impl Fn(LayerEvent),
        download: tokio::sync::SemaphorePermit<'_>,
    ) -> Result<(Staged, Fetched)> {
        let feed = Arc::new(Feed::default());
        let finish = FinishOnDrop(feed.clone());
        let read = Arc::new(AtomicU64::new(0));
        let unpacking = self.spawn_unpack(i, building, Follower::new(feed.clone()), read.clone());
        let fetched = fetch_blob(self.mocker, blob, report, Some(&feed)).await;
        drop(download);
        feed.finish(fetched.is_ok());
        if fetched.is_ok() {
            report(LayerEvent::Extracting);
        }
        let unpacked = self.report_extraction(blob.digest, blob.size, &read, unpacking).await;
        drop(finish);
        let fetched = fetched?;
        match unpacked {
            Ok(built) => Ok((Staged::Built(built), fetched)),
            // The bytes read were not (all) the blob's: the download started
            // over, or the blob came from the store or another process.
            Err(_) if feed.aborted() => Ok((self.unpack_stored(i).await?, fetched)),
            Err(e) => Err(e),
        }
    }

    /// Unpack layer `i` from its blob in the store. The caller holds an
    /// unpack slot.
    async fn unpack_stored(&self, i: usize) -> Result<Staged> {
        let building = match self.begin(i).await? {
            snapshot::Begin::Exists(_) => return Ok(Staged::Done),
            snapshot::Begin::Busy => return Ok(Staged::Deferred),
            snapshot::Begin::Building(building) => building,
        };
        let (digest, size, _) = &self.layers[i];
        let file = self.mocker.store.open_blob(digest)?;
        self.progress.layer(digest, LayerEvent::Extracting);
        let read = Arc::new(AtomicU64::new(0));
        let unpacking = self.spawn_unpack(i, building, file, read.clone());
        Ok(Staged::Built(
            self.report_extraction(digest, *size, &read, unpacking).await?,
        ))
    }

    /// Take (or find, or find taken) the build of layer `i`'s snapshot.
    async fn begin(&self, i: usize) -> Result<snapshot::Begin> {
        let (m, chain) = (self.mocker.clone(), self.chains[i].clone());
        blocking(&self.layers[i].0, move || m.snapshots.begin(&chain, false)).await
    }

    /// Start unpacking `source` into `building` on the blocking pool now;
    /// `read` counts the compressed bytes consumed.
    fn spawn_unpack(
        &self,
        i: usize,
        building: Building,
        source: impl Read + Send + 'static,
        read: Arc<AtomicU64>,
    ) -> tokio::task::JoinHandle<Result<Built>> {
        let (digest, _, media_type) = &self.layers[i];
        let compression = compression_of(media_type);
        let (diff_id, limit, layer) = (self.diff_ids[i].clone(), self.limit, digest.to_string());
        tokio::task::spawn_blocking(move || {
            let source = Counted { inner: source, read };
            let unpacked = unpack::unpack_layer(
                source,
                compression,
                &building.fs_dir(),
                &diff_id,
                Limits {
                    max_unpacked_bytes: limit,
                },
                &layer,
            )?;
            Ok(Built {
                building,
                diff_id,
                size: unpacked.file_bytes,
                implicit_dirs: unpacked.implicit_dirs,
            })
        })
    }

    /// Await the unpack, reporting every 100 ms how much of the blob it has read.
    async fn report_extraction(
        &self,
        digest: &Digest,
        total: u64,
        read: &AtomicU64,
        unpacking: tokio::task::JoinHandle<Result<Built>>,
    ) -> Result<Built> {
        let work = joined(digest, unpacking);
        tokio::pin!(work);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = tick.tick() => {
                    let done = read.load(Ordering::Relaxed).min(total);
                    self.progress.layer(digest, LayerEvent::Extracted { done, total });
                }
            }
        }
    }

    /// Phase 2, base layer first. Consecutive built layers are published
    /// together after one sync; a layer another process is unpacking is
    /// waited for (and built here if that process died).
    pub async fn publish(&self, staged: Vec<Stage>) -> Result<()> {
        let mut batch: Vec<(usize, Built)> = Vec::new();
        for (i, stage) in staged.into_iter().enumerate() {
            // A layer found whole keeps its "Already exists"; every other
            // one ends complete, also when another pull made its snapshot.
            let mut complete = !matches!(stage.blob, Fetched::AlreadyExisted);
            match stage.snapshot {
                Staged::Built(built) => {
                    batch.push((i, built));
                    continue;
                }
                Staged::Done => self.publish_batch(std::mem::take(&mut batch)).await?,
                Staged::Deferred => {
                    self.publish_batch(std::mem::take(&mut batch)).await?;
                    complete |= self.wait_for(i).await?;
                }
            }
            if complete {
                self.progress.layer(&self.layers[i].0, LayerEvent::PullComplete);
            }
        }
        self.publish_batch(batch).await
    }

    /// Seal `batch` (consecutive layers), sync once, publish it.
    async fn publish_batch(&self, batch: Vec<(usize, Built)>) -> Result<()> {
        let Some(&(first, _)) = batch.first() else {
            return Ok(());
        };
        let layers: Vec<usize> = batch.iter().map(|(i, _)| *i).collect();
        let parent = first.checked_sub(1).map(|p| self.chains[p].clone());
        let m = self.mocker.clone();
        let builds = batch.into_iter().map(|(_, b)| b).collect();
        blocking(&self.layers[first].0, move || {
            let durable = m.snapshots.seal(parent.as_ref(), builds)?.sync()?;
            m.snapshots.publish(durable)
        })
        .await?;
        for i in layers {
            self.progress.layer(&self.layers[i].0, LayerEvent::PullComplete);
        }
        Ok(())
    }

    /// Wait for another process's build of layer `i`; build it here if that
    /// process died. Whether this call built it.
    async fn wait_for(&self, i: usize) -> Result<bool> {
        let (digest, _, media_type) = &self.layers[i];
        let parent = i.checked_sub(1).map(|p| self.chains[p].clone());
        let (m, chain, diff_id) = (self.mocker.clone(), self.chains[i].clone(), self.diff_ids[i].clone());
        let (d, compression, limit) = (digest.clone(), compression_of(media_type), self.limit);
        blocking(digest, move || {
            let build = |dir: &std::path::Path| {
                let limits = Limits {
                    max_unpacked_bytes: limit,
                };
                let u = unpack::unpack_layer(m.store.open_blob(&d)?, compression, dir, &diff_id, limits, d.as_str())?;
                Ok((u.file_bytes, u.implicit_dirs))
            };
            Ok(m.snapshots.ensure(&chain, parent.as_ref(), &diff_id, build)?.1)
        })
        .await
    }
}

fn compression_of(media_type: &str) -> Compression {
    manifest::layer_compression(media_type).unwrap_or(Compression::None)
}

/// Run `f` on the blocking pool (file system work).
async fn blocking<T: Send + 'static>(layer: &Digest, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    joined(layer, tokio::task::spawn_blocking(f)).await
}

/// The result of a blocking task; one that panicked fails the layer.
async fn joined<T>(layer: &Digest, task: tokio::task::JoinHandle<Result<T>>) -> Result<T> {
    task.await.map_err(|e| Error::Layer {
        layer: layer.to_string(),
        reason: format!("unpack task failed: {e}"),
    })?
}

/// Counts the bytes read through it, for extraction progress.
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
