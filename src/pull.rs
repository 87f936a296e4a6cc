//! `pull`: registry → content store → index. Resolves the reference to one
//! platform's manifest, leases every blob it will need, streams missing blobs
//! into the store (bounded concurrency, resumable), and records the image in
//! one index transaction. Nothing becomes visible before it is verified.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use oci_spec::image::{ImageConfiguration, ImageManifest};

use crate::digest::{chain_ids, Digest};
use crate::error::{Error, Result};
use crate::index::{Batch, ImageRecord, Lease};
use crate::manifest::{self, Document, MAX_CONFIG_BYTES};
use crate::platform::Platform;
use crate::records::{describe_image, layer_descriptors};
use crate::reference::ImageRef;
use crate::registry::{Registry, RegistryOptions};
use crate::snapshot;
use crate::store::Begin;
use crate::unpack::{self, Limits};
use crate::Mocker;

#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Platform to pick from an index; the host's when None.
    pub platform: Option<Platform>,
    pub max_concurrent_downloads: usize,
    pub registry: RegistryOptions,
    /// Bound on one layer's unpacked size (free disk space bounds it too).
    pub max_unpacked_bytes: u64,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            max_concurrent_downloads: 3,
            registry: RegistryOptions::default(),
            max_unpacked_bytes: Limits::default().max_unpacked_bytes,
        }
    }
}

/// What happens to one layer, in order. `Downloading` repeats.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerEvent {
    /// Announced before any transfer starts.
    Pending {
        size: u64,
    },
    AlreadyExists,
    /// Another process is downloading the same blob; we wait for it.
    WaitingForOther,
    Resuming {
        from: u64,
    },
    Downloading {
        done: u64,
        total: u64,
    },
    Verifying,
    DownloadComplete,
    Extracting,
    /// Bytes of the compressed blob the decompressor has read so far, as
    /// docker counts extraction; repeats while the layer unpacks.
    Extracted {
        done: u64,
        total: u64,
    },
    /// Unpacked into its snapshot (or found unpacked already).
    PullComplete,
}

/// Receives pull progress; the CLI renders it, tests record it.
pub trait Progress: Send + Sync {
    fn resolved(&self, _reference: &ImageRef, _manifest: &Digest) {}
    fn layer(&self, _digest: &Digest, _event: LayerEvent) {}
}

/// Progress that reports nothing.
pub struct Quiet;
impl Progress for Quiet {}

#[derive(Clone, Debug)]
pub struct Pulled {
    pub reference: ImageRef,
    pub image: ImageRecord,
    /// False when the reference already pointed at this manifest.
    pub updated: bool,
    /// Layers that were transferred (not already in the store).
    pub downloaded_layers: usize,
}

/// Holds the lease's lock while the pull runs and removes the lease record
/// if the pull fails (a successful pull drops it in its commit). Drop cannot
/// be async; the index session is short, so it runs inline.
struct LeaseGuard<'a> {
    mocker: &'a Mocker,
    id: String,
    _lock: crate::index::LeaseLock,
    committed: bool,
}

impl<'a> LeaseGuard<'a> {
    /// Take a new lease on `digests`: its lock first, then its record.
    fn hold(mocker: &'a Mocker, digests: &[Digest]) -> Result<Self> {
        let id = format!("{}-{}", std::process::id(), now_nanos());
        let lock = mocker.index.hold_lease(&id)?;
        let guard = LeaseGuard {
            mocker,
            id,
            _lock: lock,
            committed: false,
        };
        guard.record(digests)?;
        Ok(guard)
    }

    /// Make the lease cover exactly `digests`.
    fn record(&self, digests: &[Digest]) -> Result<()> {
        let mut batch = Batch::default();
        batch.put_lease(
            &self.id,
            &Lease {
                pid: std::process::id(),
                digests: digests.to_vec(),
            },
        );
        self.mocker.index.session(|s| s.apply(&batch))
    }
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let mut batch = Batch::default();
        batch.del_lease(&self.id);
        // A record left behind by a failed delete (or a kill) is harmless:
        // its lock dies with this process, and garbage collection ignores
        // unlocked leases and removes them with their files.
        let _ = self.mocker.index.session(|s| s.apply(&batch));
    }
}

pub async fn pull(
    mocker: &Mocker,
    reference: &ImageRef,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<Pulled> {
    let mut touched = Vec::new();
    let result = pull_leased(mocker, reference, opts, progress, &mut touched).await;
    if let Err(e) = &result {
        // A broken image would fail the same way again: leave nothing of it.
        // After a network failure or interruption, keep what was fetched.
        if is_permanent(e) && !touched.is_empty() {
            let _ = crate::gc::collect_unreferenced(mocker, Some(&touched));
        }
    }
    result
}

/// The registry options with credentials: the caller's, else those docker's
/// config.json holds for the reference's registry.
fn with_credentials(opts: &RegistryOptions, reference: &ImageRef) -> Result<RegistryOptions> {
    let mut opts = opts.clone();
    if opts.auth.is_none() {
        opts.auth = Some(crate::auth::registry_auth(reference.registry())?);
    }
    Ok(opts)
}

/// Errors a retry would meet again: a broken image, or a full disk.
fn is_permanent(e: &Error) -> bool {
    matches!(
        e,
        Error::DigestMismatch { .. }
            | Error::SizeMismatch { .. }
            | Error::Layer { .. }
            | Error::InvalidDocument { .. }
            | Error::UnsupportedMediaType { .. }
            | Error::TooLarge { .. }
            | Error::NoMatchingPlatform { .. }
            | Error::DiskFull { .. }
    )
}

/// The pipeline, top to bottom: resolve, lease, documents, config, layers
/// (phase 1: fetch and unpack in parallel; phase 2: publish base first),
/// record. `touched` collects what a failure should garbage-collect.
async fn pull_leased(
    mocker: &Mocker,
    reference: &ImageRef,
    opts: &PullOptions,
    progress: &dyn Progress,
    touched: &mut Vec<Digest>,
) -> Result<Pulled> {
    let registry = Registry::new(reference, &with_credentials(&opts.registry, reference)?)?;
    let resolved = resolve(&registry, reference, opts).await?;
    progress.resolved(reference, &resolved.digest);
    let config_desc = resolved.manifest.config();
    let config_digest = manifest::descriptor_digest(config_desc, "config")?;
    let layers = layer_descriptors(&resolved.manifest)?;

    // Lease everything before looking at the store, so a concurrent rmi's
    // garbage collection cannot delete a blob we decide not to download.
    let mut leased = vec![resolved.digest.clone(), config_digest.clone()];
    leased.extend(resolved.index.iter().map(|(_, d)| d.clone()));
    leased.extend(layers.iter().map(|l| l.0.clone()));
    touched.extend(leased.iter().cloned());
    let mut lease = LeaseGuard::hold(mocker, &leased)?;

    resolved.store_documents(mocker)?;
    let config = fetch_config(mocker, &registry, config_desc, &config_digest, layers.len()).await?;
    check_platform(opts, resolved.index.is_none(), &config)?;
    let diff_ids = manifest::diff_ids(&config)?;
    let chains = chain_ids(&diff_ids);
    // Snapshots this pull builds or relies on are leased too.
    leased.extend(chains.iter().cloned());
    touched.extend(chains.iter().cloned());
    lease.record(&leased)?;

    let plan = LayerPlan {
        mocker,
        registry: &registry,
        progress,
        layers: &layers,
        chains: &chains,
        diff_ids: &diff_ids,
        limit: opts.max_unpacked_bytes.min(free_bytes(mocker.snapshots.dir())),
    };
    let (staged, downloaded) = plan.stage(opts.max_concurrent_downloads).await?;
    plan.publish(staged).await?;
    let (image, updated) = record_image(mocker, reference, &resolved, &config, &lease.id)?;
    lease.committed = true;
    Ok(Pulled {
        reference: reference.clone(),
        image,
        updated,
        downloaded_layers: downloaded,
    })
}

/// The manifest a reference names for our platform, and the index it came
/// through (bytes and digest) if it named one.
struct Resolved {
    index: Option<(bytes::Bytes, Digest)>,
    bytes: bytes::Bytes,
    digest: Digest,
    manifest: Box<ImageManifest>,
}

impl Resolved {
    fn store_documents(&self, mocker: &Mocker) -> Result<()> {
        if let Some((bytes, digest)) = &self.index {
            mocker.store.write_bytes(digest, bytes, &format!("index {digest}"))?;
        }
        mocker
            .store
            .write_bytes(&self.digest, &self.bytes, &format!("manifest {}", self.digest))
    }
}

async fn resolve(registry: &Registry, reference: &ImageRef, opts: &PullOptions) -> Result<Resolved> {
    let (top_bytes, top_digest) = registry.manifest(reference.wire()).await?;
    let top_what = format!("manifest {reference}");
    match manifest::parse_document(&top_bytes, &top_what)? {
        Document::Manifest(manifest) => Ok(Resolved {
            index: None,
            bytes: top_bytes,
            digest: top_digest,
            manifest,
        }),
        Document::Index(index) => {
            let wanted = opts.platform.clone().unwrap_or_else(Platform::host);
            let entry = manifest::select_platform(&index, &wanted)?;
            let (bytes, digest, manifest) = platform_manifest(registry, reference, &entry, &wanted, &top_what).await?;
            Ok(Resolved {
                index: Some((top_bytes, top_digest)),
                bytes,
                digest,
                manifest,
            })
        }
    }
}

/// The manifest an index entry points to, checked against the entry.
async fn platform_manifest(
    registry: &Registry,
    reference: &ImageRef,
    entry: &oci_spec::image::Descriptor,
    wanted: &Platform,
    top_what: &str,
) -> Result<(bytes::Bytes, Digest, Box<ImageManifest>)> {
    let digest = manifest::descriptor_digest(entry, top_what)?;
    let child_ref = reference.wire().clone_with_digest(digest.to_string());
    let (bytes, actual) = registry.manifest(&child_ref).await?;
    if bytes.len() as u64 != entry.size() {
        return Err(Error::SizeMismatch {
            what: format!("manifest {digest}"),
            expected: entry.size(),
            actual: bytes.len() as u64,
        });
    }
    let what = format!("manifest {digest} for {wanted}");
    let m = match manifest::parse_document(&bytes, &what)? {
        Document::Manifest(m) => m,
        Document::Index(_) => {
            return Err(Error::InvalidDocument {
                what,
                reason: "an index entry points to another index".into(),
            })
        }
    };
    let declared = m.media_type().as_ref().map(|t| t.to_string());
    if declared.as_ref().is_some_and(|t| *t != entry.media_type().to_string()) {
        return Err(Error::InvalidDocument {
            what,
            reason: format!(
                "its mediaType {} contradicts the index entry's {}",
                declared.unwrap_or_default(),
                entry.media_type()
            ),
        });
    }
    Ok((bytes, actual, m))
}

/// The config: small, capped, fetched before the layers so a bad one fails fast.
async fn fetch_config(
    mocker: &Mocker,
    registry: &Registry,
    desc: &oci_spec::image::Descriptor,
    digest: &Digest,
    layer_count: usize,
) -> Result<ImageConfiguration> {
    let what = format!("config {digest}");
    if desc.size() > MAX_CONFIG_BYTES {
        return Err(Error::TooLarge {
            what,
            size: desc.size(),
            limit: MAX_CONFIG_BYTES,
        });
    }
    fetch_blob(
        mocker,
        registry,
        digest,
        desc.size(),
        desc.media_type().as_ref(),
        &what,
        None,
    )
    .await?;
    let bytes = mocker.store.read_small(digest, MAX_CONFIG_BYTES)?;
    manifest::parse_config(&bytes, layer_count, &what)
}

/// A single-platform image must be the platform asked for, if one was.
fn check_platform(opts: &PullOptions, single: bool, config: &ImageConfiguration) -> Result<()> {
    let Some(wanted) = &opts.platform else {
        return Ok(());
    };
    let (os, arch) = (config.os().to_string(), config.architecture().to_string());
    if single && !wanted.matches(&os, &arch, config.variant().as_deref()) {
        return Err(Error::NoMatchingPlatform {
            wanted: wanted.to_string(),
            available: format!("{os}/{arch} (single-platform image)"),
        });
    }
    Ok(())
}

/// One index transaction: layers, image, reference; the lease goes with
/// it. Returns the image and whether the reference moved.
fn record_image(
    mocker: &Mocker,
    reference: &ImageRef,
    resolved: &Resolved,
    config: &ImageConfiguration,
    lease_id: &str,
) -> Result<(ImageRecord, bool)> {
    let (image, layer_records) = describe_image(
        &resolved.digest,
        resolved.bytes.len() as u64,
        &resolved.manifest,
        resolved.index.as_ref().map(|(_, d)| d.clone()),
        config,
    )?;
    let key = reference.index_key();
    let updated = mocker.index.session(|s| {
        let previous = s.get_ref(&key)?;
        let mut batch = Batch::default();
        for layer in &layer_records {
            batch.put_layer(layer);
        }
        batch
            .put_image(&image)
            .put_ref(&key, &resolved.digest)
            .del_lease(lease_id);
        s.apply(&batch)?;
        Ok(previous.as_ref() != Some(&resolved.digest))
    })?;
    Ok((image, updated))
}

/// The layers of one pull and what fetching and unpacking them needs.
struct LayerPlan<'a> {
    mocker: &'a Mocker,
    registry: &'a Registry,
    progress: &'a dyn Progress,
    /// (digest, size, media type), base first.
    layers: &'a [(Digest, u64, String)],
    chains: &'a [Digest],
    diff_ids: &'a [Digest],
    /// Bound on one layer's unpacked size.
    limit: u64,
}

impl LayerPlan<'_> {
    /// Phase 1: every layer fetched and unpacked into a private directory,
    /// in parallel. Returns each layer's stage and how many were transferred.
    async fn stage(&self, max_downloads: usize) -> Result<(Vec<(Staged, Fetched)>, usize)> {
        for (digest, size, _) in self.layers {
            self.progress.layer(digest, LayerEvent::Pending { size: *size });
        }
        self.mocker.snapshots.sweep_partial_builds();
        let downloaded = AtomicU64::new(0);
        // Downloads and unpacks are bounded separately: a long unpack must not
        // hold a download slot, or later layers would wait to start downloading.
        let slots = Slots {
            download: tokio::sync::Semaphore::new(max_downloads.max(1)),
            unpack: tokio::sync::Semaphore::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)),
        };
        let (slots, downloaded) = (&slots, &downloaded);
        let staged = futures_util::future::try_join_all((0..self.layers.len()).map(|i| async move {
            let fetched = self.fetch_one(i, slots).await?;
            if fetched == Fetched::Transferred {
                downloaded.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, Error>((self.unpack_one(i, slots).await?, fetched))
        }))
        .await;
        if let Err(e) = &staged {
            // Partial downloads are kept for resuming after an interruption,
            // but not when a retry would fail the same way. Best effort: report `e`.
            if is_permanent(e) {
                for (digest, _, _) in self.layers {
                    let _ = self.mocker.store.discard_ingest(digest);
                }
            }
        }
        Ok((staged?, downloaded.load(Ordering::Relaxed) as usize))
    }

    async fn fetch_one(&self, i: usize, slots: &Slots) -> Result<Fetched> {
        let (digest, size, media_type) = &self.layers[i];
        let _slot = slots.download.acquire().await.map_err(|_| Error::Interrupted)?;
        let what = format!("layer {digest}");
        fetch_blob(
            self.mocker,
            self.registry,
            digest,
            *size,
            media_type,
            &what,
            Some(self.progress),
        )
        .await
    }

    async fn unpack_one(&self, i: usize, slots: &Slots) -> Result<Staged> {
        let (digest, size, media_type) = &self.layers[i];
        let _slot = slots.unpack.acquire().await.map_err(|_| Error::Interrupted)?;
        // Unpack now, in parallel with other layers, into a private
        // directory; publishing waits for the parent (phase 2).
        let compression = manifest::layer_compression(media_type).unwrap_or(manifest::Compression::None);
        let (m, d, chain, diff, limit) = (
            self.mocker.clone(),
            digest.clone(),
            self.chains[i].clone(),
            self.diff_ids[i].clone(),
            self.limit,
        );
        if self.mocker.snapshots.get(&chain)?.is_some() {
            return Ok(Staged::Done);
        }
        self.progress.layer(digest, LayerEvent::Extracting);
        let read = Arc::new(AtomicU64::new(0));
        let counter = read.clone();
        let work = blocking(digest, move || match m.snapshots.begin(&chain, false)? {
            snapshot::Begin::Exists(_) => Ok(Staged::Done),
            snapshot::Begin::Busy => Ok(Staged::Deferred),
            snapshot::Begin::Building(building) => {
                let unpacked = unpack_blob(&m, &d, compression, &building.fs_dir(), &diff, limit, Some(counter))?;
                Ok(Staged::Built(building, unpacked))
            }
        });
        self.report_extraction(digest, *size, &read, work).await
    }

    /// Await `work`, reporting every 100 ms how much of the blob it has read.
    async fn report_extraction<T>(
        &self,
        digest: &Digest,
        total: u64,
        read: &AtomicU64,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
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

    /// Phase 2, base layer first: publish each snapshot once its parent is.
    async fn publish(&self, staged: Vec<(Staged, Fetched)>) -> Result<()> {
        for (i, (stage, fetched)) in staged.into_iter().enumerate() {
            let (digest, _, media_type) = &self.layers[i];
            let parent = i.checked_sub(1).map(|p| self.chains[p].clone());
            let (m, chain, diff) = (self.mocker.clone(), self.chains[i].clone(), self.diff_ids[i].clone());
            let compression = manifest::layer_compression(media_type).unwrap_or(manifest::Compression::None);
            let (d, limit) = (digest.clone(), self.limit);
            let built = blocking(digest, move || match stage {
                Staged::Done => Ok(false),
                Staged::Built(building, unpacked) => {
                    let (size, implicit) = (unpacked.file_bytes, &unpacked.implicit_dirs);
                    m.snapshots.commit(building, parent.as_ref(), &diff, size, implicit)?;
                    Ok(true)
                }
                // Another pull was unpacking it: wait, and build it ourselves
                // if that pull died.
                Staged::Deferred => Ok(m
                    .snapshots
                    .ensure(&chain, parent.as_ref(), &diff, |dir| {
                        let u = unpack_blob(&m, &d, compression, dir, &diff, limit, None)?;
                        Ok((u.file_bytes, u.implicit_dirs))
                    })?
                    .1),
            })
            .await?;
            // A layer found whole keeps its "Already exists"; every other
            // one ends complete, also when another pull made its snapshot.
            if built || fetched != Fetched::AlreadyExisted {
                self.progress.layer(digest, LayerEvent::PullComplete);
            }
        }
        Ok(())
    }
}

struct Slots {
    download: tokio::sync::Semaphore,
    unpack: tokio::sync::Semaphore,
}

/// Run `f` on the blocking pool (unpacking is file system work); a task
/// that panicked fails the layer.
async fn blocking<T: Send + 'static>(layer: &Digest, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Layer {
        layer: layer.to_string(),
        reason: format!("unpack task failed: {e}"),
    })?
}

/// A layer after phase 1 of unpacking.
enum Staged {
    /// Its snapshot already exists.
    Done,
    /// Unpacked, waiting to be published after its parent.
    Built(snapshot::Building, unpack::Unpacked),
    /// Another process is unpacking it.
    Deferred,
}

fn unpack_blob(
    mocker: &Mocker,
    digest: &Digest,
    compression: manifest::Compression,
    dir: &std::path::Path,
    diff_id: &Digest,
    limit: u64,
    read: Option<Arc<AtomicU64>>,
) -> Result<unpack::Unpacked> {
    let blob = Counted {
        inner: mocker.store.open_blob(digest)?,
        read,
    };
    unpack::unpack_layer(
        blob,
        compression,
        dir,
        diff_id,
        Limits {
            max_unpacked_bytes: limit,
        },
        digest.as_str(),
    )
}

/// Counts the bytes read through it, for extraction progress.
struct Counted<R> {
    inner: R,
    read: Option<Arc<AtomicU64>>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(read) = &self.read {
            read.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// Free bytes on the filesystem of `path` (what unpacking may consume).
fn free_bytes(path: &std::path::Path) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
        .unwrap_or(u64::MAX)
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// How a blob came to be in the store.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fetched {
    AlreadyExisted,
    /// Another pull downloaded it while we waited.
    Waited,
    Transferred,
}

/// Make sure one blob is in the store.
async fn fetch_blob(
    mocker: &Mocker,
    registry: &Registry,
    digest: &Digest,
    size: u64,
    media_type: &str,
    what: &str,
    progress: Option<&dyn Progress>,
) -> Result<Fetched> {
    let report = |e: LayerEvent| {
        if let Some(p) = progress {
            p.layer(digest, e)
        }
    };
    let mut waited = false;
    let mut retried_whole = false;
    loop {
        let Some(mut writer) = claim_blob(mocker, digest, size, what, &mut waited, &report).await? else {
            return Ok(if waited {
                Fetched::Waited
            } else {
                Fetched::AlreadyExisted
            });
        };
        let offset = writer.offset();
        let blob = BlobSource {
            registry,
            digest,
            size,
            media_type,
            what,
        };
        let downloaded = download(&blob, &mut writer, &report).await;
        // Resumed bytes may have been bad: one retry of the whole blob.
        let retry = |e: &Error, retried: bool| offset > 0 && !retried && matches!(e, Error::SizeMismatch { .. });
        match downloaded {
            Err(e) if retry(&e, retried_whole) => {
                retried_whole = true;
                continue;
            }
            other => other?,
        }
        report(LayerEvent::Verifying);
        match writer.commit() {
            Ok(()) => {
                report(LayerEvent::DownloadComplete);
                return Ok(Fetched::Transferred);
            }
            Err(Error::DigestMismatch { .. } | Error::SizeMismatch { .. }) if offset > 0 && !retried_whole => {
                retried_whole = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The store's writer for `digest`, once no other pull writes it; `None`
/// if the blob is (or, after waiting, became) complete.
async fn claim_blob(
    mocker: &Mocker,
    digest: &Digest,
    size: u64,
    what: &str,
    waited: &mut bool,
    report: &impl Fn(LayerEvent),
) -> Result<Option<Box<crate::store::Ingest>>> {
    loop {
        match mocker.store.begin(digest, Some(size), what)? {
            Begin::Exists if *waited => report(LayerEvent::DownloadComplete),
            Begin::Exists => report(LayerEvent::AlreadyExists),
            Begin::Busy => {
                if !*waited {
                    report(LayerEvent::WaitingForOther);
                    *waited = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Begin::Writer(w) => return Ok(Some(w)),
        }
        return Ok(None);
    }
}

/// Where a blob comes from.
struct BlobSource<'a> {
    registry: &'a Registry,
    digest: &'a Digest,
    size: u64,
    media_type: &'a str,
    what: &'a str,
}

/// Stream the rest of the blob into `writer` (from its offset, or from the
/// start if the registry cannot resume).
async fn download(
    blob: &BlobSource<'_>,
    writer: &mut Box<crate::store::Ingest>,
    report: &impl Fn(LayerEvent),
) -> Result<()> {
    let offset = writer.offset();
    if offset >= blob.size {
        return Ok(());
    }
    let fetched = blob
        .registry
        .blob(blob.digest, blob.size, blob.media_type, offset)
        .await?;
    let mut done = offset;
    if fetched.resumed {
        report(LayerEvent::Resuming { from: offset });
    } else if offset > 0 {
        writer.reset()?;
        done = 0;
    }
    let mut stream = fetched.stream;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                writer.write(&bytes)?;
                done += bytes.len() as u64;
                report(LayerEvent::Downloading { done, total: blob.size });
            }
            // oci-client's own verification fails the stream at its
            // end; our commit names both digests precisely.
            Err(_) if done == blob.size => break,
            Err(e) => {
                return Err(Error::Registry {
                    reference: blob.what.to_string(),
                    reason: format!("download interrupted: {e}"),
                })
            }
        }
    }
    Ok(())
}
