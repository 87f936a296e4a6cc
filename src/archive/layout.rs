//! The documents of an image archive, as docker and the OCI image layout
//! spec name them.

use serde::{Deserialize, Serialize};

pub const MANIFEST_JSON: &str = "manifest.json";
pub const INDEX_JSON: &str = "index.json";
pub const OCI_LAYOUT: &str = "oci-layout";
pub const REPOSITORIES: &str = "repositories";
pub const BLOBS_DIR: &str = "blobs/sha256/";

/// The annotation docker and containerd put the full image name in.
pub const IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation: a tag (skopeo) or a full reference (docker).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One entry of docker's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerEntry {
    /// The config's path in the archive.
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// Each layer's path in the archive, base first.
    pub layers: Vec<String>,
}

/// The path of a blob in the OCI layout.
pub fn blob_path(hex: &str) -> String {
    format!("{BLOBS_DIR}{hex}")
}
