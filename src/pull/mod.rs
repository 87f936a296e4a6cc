//! `pull`: registry → content store → index. Resolves the reference to one
//! platform's manifest, leases every blob it will need, streams missing blobs
//! into the store (bounded concurrency, resumable), and records the image in
//! one index transaction. Nothing becomes visible before it is verified.

mod fetch;
pub mod follow;
mod layers;
mod resolve;

use oci_spec::image::ImageConfiguration;

use crate::digest::{chain_ids, Digest};
use crate::error::{Error, Result};
use crate::index::{Batch, ImageRecord};
use crate::manifest;
use crate::platform::Platform;
use crate::records::{describe_image, layer_descriptors};
use crate::reference::ImageRef;
use crate::registry::{Registry, RegistryOptions};
use crate::unpack::Limits;
use crate::Mocker;
use layers::LayerPlan;
use resolve::{check_platform, fetch_config, resolve, Resolved};

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
    let registry = Registry::new(reference, &opts.registry.with_credentials(reference)?)?;
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
    let mut lease = crate::gc::LeaseGuard::hold(mocker, &leased)?;

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
        limit: opts.max_unpacked_bytes.min(mocker.snapshots.free_bytes()),
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
