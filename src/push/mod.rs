//! `push`: a local image to a registry, as docker pushes it. Blobs the
//! repository has are skipped (HEAD); a blob another repository of the same
//! registry holds (one some local image holding it was named from; at most
//! three tried, see `mounts`) is mounted; the rest are uploaded from the
//! store in one streamed PUT each, read 4 MiB at a time, never whole in
//! memory. Last, the manifest's stored bytes are PUT under the tag, so an
//! image pushed back unchanged keeps its digest.

mod mounts;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::ImageRecord;
use crate::manifest::MAX_MANIFEST_BYTES;
use crate::reference::{split_index_key, ImageRef};
use crate::registry::{Registry, RegistryOptions};
use crate::Mocker;
use mounts::{MountCandidates, Named};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("an image does not exist locally with the tag: {0}")]
    NotLocal(String),
}

impl From<PushError> for Error {
    fn from(e: PushError) -> Self {
        Error::Module(Box::new(e))
    }
}

/// Bytes read from a blob file at a time.
const CHUNK: usize = 4 << 20;

#[derive(Clone, Debug)]
pub struct PushOptions {
    pub registry: RegistryOptions,
    /// docker's `--max-concurrent-uploads` (5).
    pub max_concurrent_uploads: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            registry: RegistryOptions::default(),
            max_concurrent_uploads: 5,
        }
    }
}

/// What happens to one blob, in docker's words.
#[derive(Clone, Debug, PartialEq)]
pub enum PushEvent {
    Preparing,
    Pushing {
        done: u64,
        total: u64,
    },
    Pushed,
    AlreadyExists,
    /// Mounted from this repository of the same registry.
    MountedFrom(String),
}

/// Receives push progress; the CLI renders it.
pub trait PushProgress: Send + Sync {
    fn blob(&self, _digest: &Digest, _event: PushEvent) {}
}

/// Progress that reports nothing.
pub struct Silent;
impl PushProgress for Silent {}

#[derive(Clone, Debug)]
pub struct Pushed {
    pub digest: Digest,
    pub size: u64,
}

/// Push the local image named `reference` to it.
pub async fn push(
    mocker: &Mocker,
    reference: &ImageRef,
    opts: &PushOptions,
    progress: &dyn PushProgress,
) -> Result<Pushed> {
    let (image, sources) = local_image(mocker, reference)?;
    let registry = Registry::new(reference, &opts.registry.with_credentials(reference)?)?;
    registry.authenticate_push().await?;
    // Layers top first, as docker lists them (and reports them), then the
    // config, which docker pushes without a line.
    let layers: Vec<Digest> = image.layers.iter().rev().cloned().collect();
    for digest in &layers {
        progress.blob(digest, PushEvent::Preparing);
    }
    let (registry, sources) = (&registry, &sources);
    let silent = Silent;
    let config = std::iter::once(push_blob(mocker, registry, &image.config_digest, sources, &silent));
    let uploads = layers.iter().map(|d| push_blob(mocker, registry, d, sources, progress));
    futures_util::stream::iter(uploads.chain(config))
        .buffer_unordered(opts.max_concurrent_uploads.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    let manifest = mocker.store.read_small(&image.manifest_digest, MAX_MANIFEST_BYTES)?;
    let size = manifest.len() as u64;
    registry
        .push_manifest(manifest.into(), &image.manifest_media_type)
        .await?;
    Ok(Pushed {
        digest: image.manifest_digest,
        size,
    })
}

/// The image `reference` names here (by tag, as docker: a push needs a
/// local name), and for each of its blobs the other repositories of the
/// same registry it may be mounted from (`mounts`).
fn local_image(mocker: &Mocker, reference: &ImageRef) -> Result<(ImageRecord, MountCandidates)> {
    let key = reference.index_key();
    mocker.index.session(|s| {
        let image = s
            .get_ref(&key)?
            .map(|m| s.get_image(&m))
            .transpose()?
            .flatten()
            .ok_or_else(|| PushError::NotLocal(reference.to_string()))?;
        let prefix = format!("{}/", reference.registry());
        let mut images = BTreeMap::new();
        let mut named = Vec::new();
        for (key, manifest) in s.refs()? {
            let Some(repository) = split_index_key(&key).0.strip_prefix(&prefix) else {
                continue;
            };
            if !images.contains_key(&manifest) {
                let blobs = s.get_image(&manifest)?.map(|i| i.blobs()).unwrap_or_default();
                images.insert(manifest.clone(), blobs);
            }
            named.push(Named {
                repository: repository.to_string(),
                blobs: images[&manifest].clone(),
                manifest,
            });
        }
        let mut blobs = image.layers.clone();
        blobs.push(image.config_digest.clone());
        let candidates = mounts::choose(reference.repository(), &image.manifest_digest, &blobs, &named);
        Ok((image, candidates))
    })
}

/// One blob: skipped, mounted or uploaded.
async fn push_blob(
    mocker: &Mocker,
    registry: &Registry,
    digest: &Digest,
    sources: &MountCandidates,
    progress: &dyn PushProgress,
) -> Result<()> {
    if registry.has_blob(digest).await? {
        progress.blob(digest, PushEvent::AlreadyExists);
        return Ok(());
    }
    for source in sources.for_blob(digest) {
        if registry.mount_blob(digest, source).await {
            progress.blob(digest, PushEvent::MountedFrom(source.clone()));
            return Ok(());
        }
    }
    let file = mocker.store.open_blob(digest)?;
    let total = file
        .metadata()
        .map_err(|e| Error::io(format!("stat blob {digest}"), e))?
        .len();
    let sent = Arc::new(AtomicU64::new(0));
    let chunks = file_chunks(file, sent.clone());
    let upload = registry.push_blob(digest, total, chunks);
    tokio::pin!(upload);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tokio::select! {
            done = &mut upload => {
                done?;
                progress.blob(digest, PushEvent::Pushed);
                return Ok(());
            }
            _ = tick.tick() => {
                let done = sent.load(Ordering::Relaxed).min(total);
                progress.blob(digest, PushEvent::Pushing { done, total });
            }
        }
    }
}

/// A stored blob as a stream of chunks read on the blocking pool, one at a
/// time; `sent` counts the bytes handed on.
fn file_chunks(
    file: std::fs::File,
    sent: Arc<AtomicU64>,
) -> impl futures_util::Stream<Item = std::result::Result<bytes::Bytes, oci_client::errors::OciDistributionError>> {
    futures_util::stream::try_unfold(Some(file), move |file| {
        let sent = sent.clone();
        async move {
            let Some(mut file) = file else { return Ok(None) };
            let (file, chunk) = tokio::task::spawn_blocking(move || {
                let mut chunk = Vec::with_capacity(CHUNK);
                let read = (&mut file).take(CHUNK as u64).read_to_end(&mut chunk);
                read.map(|_| (file, chunk))
            })
            .await
            .map_err(|e| oci_client::errors::OciDistributionError::GenericError(Some(e.to_string())))?
            .map_err(|e| {
                oci_client::errors::OciDistributionError::GenericError(Some(format!("reading the blob: {e}")))
            })?;
            if chunk.is_empty() {
                return Ok(None);
            }
            sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let more = (chunk.len() == CHUNK).then_some(file);
            Ok(Some((bytes::Bytes::from(chunk), more)))
        }
    })
}
