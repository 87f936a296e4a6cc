//! The index records an image is described by, built from its verified
//! manifest and config: by pull when it records an image, and by
//! `system check` when it rebuilds records from the store.

use oci_spec::image::{ImageConfiguration, ImageManifest};

use crate::digest::{chain_ids, Digest};
use crate::error::Result;
use crate::index::{ImageRecord, LayerRecord};
use crate::manifest;

/// The index records for a verified manifest and its parsed config.
pub fn describe_image(
    manifest_digest: &Digest,
    manifest_size: u64,
    manifest: &ImageManifest,
    index_digest: Option<Digest>,
    config: &ImageConfiguration,
) -> Result<(ImageRecord, Vec<LayerRecord>)> {
    let layers = layer_descriptors(manifest)?;
    let diff_ids = manifest::diff_ids(config)?;
    let chains = chain_ids(&diff_ids);
    let layer_records = layers
        .iter()
        .zip(diff_ids.iter())
        .map(|((digest, size, media_type), diff_id)| LayerRecord {
            digest: digest.clone(),
            media_type: media_type.clone(),
            size: *size,
            diff_id: diff_id.clone(),
        })
        .collect();
    let image = ImageRecord {
        manifest_digest: manifest_digest.clone(),
        manifest_media_type: manifest
            .media_type()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| manifest::OCI_MANIFEST.to_string()),
        manifest_size,
        index_digest,
        config_digest: manifest::descriptor_digest(manifest.config(), "config")?,
        config_size: manifest.config().size(),
        layers: layers.into_iter().map(|l| l.0).collect(),
        diff_ids,
        chain_ids: chains,
        platform: match config.variant() {
            Some(v) => format!("{}/{}/{v}", config.os(), config.architecture()),
            None => format!("{}/{}", config.os(), config.architecture()),
        },
        created: config.created().clone(),
    };
    Ok((image, layer_records))
}

/// Each layer's (digest, size, media type), in order.
pub fn layer_descriptors(manifest: &ImageManifest) -> Result<Vec<(Digest, u64, String)>> {
    manifest
        .layers()
        .iter()
        .map(|l| {
            Ok((
                manifest::descriptor_digest(l, "layer")?,
                l.size(),
                l.media_type().to_string(),
            ))
        })
        .collect()
}
