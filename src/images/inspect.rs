//! `image inspect`: docker's document for an image.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::list::image_size;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::{ImageRecord, SnapshotRecord};
use crate::manifest::{MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::reference::{familiar_name, split_index_key};
use crate::Mocker;

/// One image as docker's `image inspect` shows it (fields in docker's order).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    /// The image ID (config digest).
    pub id: Digest,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub created: Option<String>,
    pub os: Option<Value>,
    pub architecture: Option<Value>,
    pub variant: Option<Value>,
    pub size: u64,
    /// The config's `config` (what a container runs).
    pub config: Option<Value>,
    #[serde(rename = "RootFS")]
    pub root_fs: Option<Value>,
    pub descriptor: Descriptor,
    pub manifest: Value,
    pub image_config: Value,
}

/// The OCI descriptor of an image's (platform-specific) manifest.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// The document of the image `input` names (as a list, as docker prints it).
pub fn details(mocker: &Mocker, input: &str) -> Result<Vec<ImageInspect>> {
    let (image, siblings, refs, snapshots) = mocker.index.session(|s| {
        let image = crate::lookup::one_in(s, input)?;
        // Every manifest of the image ID: docker lists all its names.
        let siblings: Vec<ImageRecord> = s
            .images()?
            .into_values()
            .filter(|i| i.config_digest == image.config_digest)
            .collect();
        Ok((image, siblings, s.refs()?, s.snapshots()?))
    })?;
    Ok(vec![inspect_one(mocker, &refs, &snapshots, &image, &siblings)?])
}

/// [`details`] as JSON values, which the CLI prints with containers'.
pub fn inspect(mocker: &Mocker, input: &str) -> Result<Vec<Value>> {
    details(mocker, input)?
        .into_iter()
        .map(|d| {
            serde_json::to_value(d).map_err(|e| Error::InvalidDocument {
                what: format!("inspect document of {input:?}"),
                reason: e.to_string(),
            })
        })
        .collect()
}

fn inspect_one(
    mocker: &Mocker,
    refs: &BTreeMap<String, Digest>,
    snapshots: &BTreeMap<String, SnapshotRecord>,
    image: &ImageRecord,
    siblings: &[ImageRecord],
) -> Result<ImageInspect> {
    let parse = |digest: &Digest, limit: u64| -> Result<Value> {
        let bytes = mocker.store.read_small(digest, limit)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::InvalidDocument {
            what: format!("stored blob {digest}"),
            reason: e.to_string(),
        })
    };
    let config = parse(&image.config_digest, MAX_CONFIG_BYTES)?;
    let manifest = parse(&image.manifest_digest, MAX_MANIFEST_BYTES)?;
    let (repo_tags, repo_digests) = names(refs, siblings);
    Ok(ImageInspect {
        id: image.config_digest.clone(),
        repo_tags,
        repo_digests,
        created: image.created.clone(),
        os: config.get("os").cloned(),
        architecture: config.get("architecture").cloned(),
        variant: config.get("variant").cloned(),
        size: image_size(snapshots, mocker, image),
        config: config.get("config").cloned(),
        // docker's names for the config's rootfs.
        root_fs: config
            .get("rootfs")
            .map(|r| serde_json::json!({"Type": r["type"], "Layers": r["diff_ids"]})),
        descriptor: Descriptor {
            media_type: image.manifest_media_type.clone(),
            digest: image.manifest_digest.clone(),
            size: image.manifest_size,
        },
        manifest,
        image_config: config,
    })
}

/// The `name:tag`s and `name@repo-digest`s of the image's manifests, in
/// docker's short form.
fn names(refs: &BTreeMap<String, Digest>, manifests: &[ImageRecord]) -> (Vec<String>, Vec<String>) {
    let mut tags = Vec::new();
    let mut digests = Vec::new();
    for (key, m) in refs {
        let Some(image) = manifests.iter().find(|i| i.manifest_digest == *m) else {
            continue;
        };
        let (name, tag, _) = split_index_key(key);
        if let Some(t) = tag {
            tags.push(format!("{}:{t}", familiar_name(name)));
        }
        let repo_digest = format!("{}@{}", familiar_name(name), image.repo_digest());
        if !digests.contains(&repo_digest) {
            digests.push(repo_digest);
        }
    }
    (tags, digests)
}
