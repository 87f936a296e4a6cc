//! What a reference names: the manifest for our platform (through an
//! index if it names one), and its config, checked before any layer moves.

use oci_spec::image::{ImageConfiguration, ImageManifest};

use super::fetch::{fetch_blob, BlobSource};
use super::PullOptions;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{self, Document, MAX_CONFIG_BYTES};
use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::registry::Registry;
use crate::Mocker;

/// The manifest a reference names for our platform, and the index it came
/// through (bytes and digest) if it named one.
pub(super) struct Resolved {
    pub index: Option<(bytes::Bytes, Digest)>,
    pub bytes: bytes::Bytes,
    pub digest: Digest,
    pub manifest: Box<ImageManifest>,
}

impl Resolved {
    pub fn store_documents(&self, mocker: &Mocker) -> Result<()> {
        if let Some((bytes, digest)) = &self.index {
            mocker.store.write_bytes(digest, bytes, &format!("index {digest}"))?;
        }
        mocker
            .store
            .write_bytes(&self.digest, &self.bytes, &format!("manifest {}", self.digest))
    }
}

pub(super) async fn resolve(registry: &Registry, reference: &ImageRef, opts: &PullOptions) -> Result<Resolved> {
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
pub(super) async fn fetch_config(
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
    let blob = BlobSource {
        registry,
        digest,
        size: desc.size(),
        media_type: desc.media_type().as_ref(),
        what: &what,
    };
    fetch_blob(mocker, &blob, &|_| {}, None).await?;
    let bytes = mocker.store.read_small(digest, MAX_CONFIG_BYTES)?;
    manifest::parse_config(&bytes, layer_count, &what)
}

/// A single-platform image must be the platform asked for, if one was.
pub(super) fn check_platform(opts: &PullOptions, single: bool, config: &ImageConfiguration) -> Result<()> {
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
