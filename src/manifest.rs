//! Parsing and validating registry documents (image manifests, indexes,
//! configs). Everything here is untrusted input: media types are checked
//! against content, sizes are capped, and ambiguous documents are refused
//! (CVE-2021-41190: a document must not parse as both a manifest and an index).

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::platform::Platform;

/// docker's limit for a manifest body.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Image configs are small JSON; anything this large is not one.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Every manifest type we ask the registry for.
pub const ACCEPTED_MANIFEST_TYPES: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// Layer compression, decided by media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The OCI media type of a layer so compressed.
    pub fn oci_layer_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// A stream's compression by its first bytes; None while fewer than 4
    /// bytes decide nothing. zstd's skippable frames (magic
    /// 0x184D2A50..=0x184D2A5F, little-endian) carry metadata (seekable and
    /// chunked zstd) and may open a layer.
    pub fn sniff(head: &[u8]) -> Option<Compression> {
        let skippable = head
            .get(..4)
            .and_then(|m| <[u8; 4]>::try_from(m).ok())
            .is_some_and(|m| u32::from_le_bytes(m) & 0xffff_fff0 == 0x184d_2a50);
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || skippable {
            Some(Compression::Zstd)
        } else if head.len() >= 4 {
            Some(Compression::None)
        } else {
            None
        }
    }
}

pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar" | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
            Some(Compression::None)
        }
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// A registry document after validation.
#[derive(Debug)]
pub enum Document {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

/// Classify and parse a manifest-endpoint document. `what` names it in errors.
pub fn parse_document(bytes: &[u8], what: &str) -> Result<Document> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(Error::TooLarge {
            what: what.to_string(),
            size: bytes.len() as u64,
            limit: MAX_MANIFEST_BYTES,
        });
    }
    let invalid = |reason: String| Error::InvalidDocument {
        what: what.to_string(),
        reason,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| invalid("not a JSON object".into()))?;
    let has_manifests = obj.contains_key("manifests");
    let has_image_fields = obj.contains_key("layers") || obj.contains_key("config");
    if has_manifests && has_image_fields {
        return Err(invalid(
            "ambiguous document: it has both \"manifests\" and \"layers\"/\"config\"".into(),
        ));
    }
    match obj.get("schemaVersion").and_then(Value::as_i64) {
        Some(2) => {}
        Some(1) => {
            return Err(Error::UnsupportedMediaType {
                what: what.to_string(),
                media_type: "application/vnd.docker.distribution.manifest.v1+json (schema 1)".into(),
            })
        }
        other => return Err(invalid(format!("schemaVersion must be 2, found {other:?}"))),
    }
    let media_type = match obj.get("mediaType") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(invalid("mediaType is not a string".into())),
    };
    let is_index = match media_type {
        Some(OCI_INDEX) | Some(DOCKER_LIST) => true,
        Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => false,
        Some(other) => {
            return Err(Error::UnsupportedMediaType {
                what: what.to_string(),
                media_type: other.to_string(),
            })
        }
        None if has_manifests => true,
        None if has_image_fields => false,
        None => return Err(invalid("neither an image manifest nor an index".into())),
    };
    if is_index && has_image_fields || !is_index && has_manifests {
        return Err(invalid(format!(
            "mediaType {} contradicts the document's content",
            media_type.unwrap_or("(none)")
        )));
    }
    if is_index {
        let index: ImageIndex = serde_json::from_value(value).map_err(|e| invalid(format!("bad image index: {e}")))?;
        Ok(Document::Index(Box::new(index)))
    } else {
        let manifest: ImageManifest =
            serde_json::from_value(value).map_err(|e| invalid(format!("bad image manifest: {e}")))?;
        validate_manifest(&manifest, what)?;
        Ok(Document::Manifest(Box::new(manifest)))
    }
}

/// Check what a pull relies on: config and layer media types, digests, sizes.
fn validate_manifest(manifest: &ImageManifest, what: &str) -> Result<()> {
    let config = manifest.config();
    let config_type = config.media_type().to_string();
    if config_type != OCI_CONFIG && config_type != DOCKER_CONFIG {
        return Err(Error::UnsupportedMediaType {
            what: format!("config of {what} (not a container image)"),
            media_type: config_type,
        });
    }
    descriptor_digest(config, what)?;
    for layer in manifest.layers() {
        let media_type = layer.media_type().to_string();
        if layer_compression(&media_type).is_none() {
            return Err(Error::UnsupportedMediaType {
                what: format!("layer {} of {what}", layer.digest()),
                media_type,
            });
        }
        descriptor_digest(layer, what)?;
    }
    Ok(())
}

/// No blob of a container image comes near this; a larger size is a lie.
pub const MAX_BLOB_BYTES: u64 = 1 << 40;

/// The descriptor's digest, validated, and its size, which must be sane.
pub fn descriptor_digest(desc: &Descriptor, what: &str) -> Result<Digest> {
    let digest = Digest::parse(desc.digest().as_ref())?;
    if desc.size() > MAX_BLOB_BYTES {
        return Err(Error::TooLarge {
            what: format!("blob {digest} of {what}"),
            size: desc.size(),
            limit: MAX_BLOB_BYTES,
        });
    }
    if desc.size() == 0 && digest != Digest::of_bytes(b"") {
        return Err(Error::InvalidDocument {
            what: what.to_string(),
            reason: format!("descriptor {digest} has size 0"),
        });
    }
    Ok(digest)
}

/// Pick the entry of an index for `wanted`, or say what the index offers.
pub fn select_platform(index: &ImageIndex, wanted: &Platform) -> Result<Descriptor> {
    let mut available = Vec::new();
    for entry in index.manifests() {
        let Some(p) = entry.platform() else { continue };
        let (os, arch) = (p.os().to_string(), p.architecture().to_string());
        if os == "unknown" {
            continue; // attestation manifests
        }
        if wanted.matches(&os, &arch, p.variant().as_deref()) {
            return Ok(entry.clone());
        }
        available.push(match p.variant() {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        });
    }
    Err(Error::NoMatchingPlatform {
        wanted: wanted.to_string(),
        available: if available.is_empty() {
            "none".into()
        } else {
            available.join(", ")
        },
    })
}

/// Parse an image config; its diff_ids must match the manifest's layers.
pub fn parse_config(bytes: &[u8], layer_count: usize, what: &str) -> Result<ImageConfiguration> {
    let invalid = |reason: String| Error::InvalidDocument {
        what: what.to_string(),
        reason,
    };
    let config: ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not a valid image config: {e}")))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != layer_count {
        return Err(invalid(format!(
            "config lists {} diff_ids but the manifest has {layer_count} layers",
            diff_ids.len()
        )));
    }
    for id in diff_ids {
        Digest::parse(id)?;
    }
    Ok(config)
}

/// The config's diff_ids, base layer first.
pub fn diff_ids(config: &ImageConfiguration) -> Result<Vec<Digest>> {
    config.rootfs().diff_ids().iter().map(|d| Digest::parse(d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_json(media_type: Option<&str>, extra: &str) -> String {
        let d = Digest::of_bytes(b"x");
        let mt = media_type
            .map(|m| format!("\"mediaType\":\"{m}\","))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"{OCI_CONFIG}","digest":"{d}","size":1}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":1}}]{extra}}}"#
        )
    }

    #[test]
    fn accepts_plain_manifest() {
        assert!(matches!(
            parse_document(manifest_json(Some(OCI_MANIFEST), "").as_bytes(), "m").unwrap(),
            Document::Manifest(_)
        ));
        assert!(matches!(
            parse_document(manifest_json(None, "").as_bytes(), "m").unwrap(),
            Document::Manifest(_)
        ));
    }

    #[test]
    fn rejects_ambiguous_and_contradicting_documents() {
        let both = manifest_json(Some(OCI_MANIFEST), r#","manifests":[]"#);
        let err = parse_document(both.as_bytes(), "m").unwrap_err().to_string();
        assert!(err.contains("ambiguous"), "{err}");
        let liar = manifest_json(Some(OCI_INDEX), "");
        let err = parse_document(liar.as_bytes(), "m").unwrap_err().to_string();
        assert!(err.contains("contradicts"), "{err}");
    }

    #[test]
    fn rejects_bad_json_unknown_types_and_schema1() {
        assert!(parse_document(b"{not json", "m")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
        let odd = manifest_json(Some("application/x-custom"), "");
        assert!(matches!(
            parse_document(odd.as_bytes(), "m"),
            Err(Error::UnsupportedMediaType { .. })
        ));
        assert!(matches!(
            parse_document(br#"{"schemaVersion":1,"fsLayers":[]}"#, "m"),
            Err(Error::UnsupportedMediaType { .. })
        ));
        let big = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
        assert!(matches!(parse_document(&big, "m"), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn rejects_unknown_layer_type() {
        let doc = manifest_json(Some(OCI_MANIFEST), "").replace("tar+gzip", "tar+lz4");
        let err = parse_document(doc.as_bytes(), "m").unwrap_err();
        assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err}");
    }

    #[test]
    fn selects_platform_or_lists_offers() {
        let d = Digest::of_bytes(b"x");
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":2,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
        );
        let Document::Index(index) = parse_document(idx.as_bytes(), "i").unwrap() else {
            panic!()
        };
        let arm = select_platform(&index, &Platform::parse("linux/arm64").unwrap()).unwrap();
        assert_eq!(arm.size(), 2);
        let err = select_platform(&index, &Platform::parse("linux/s390x").unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no matching manifest for linux/s390x in the manifest list entries (available: linux/amd64, linux/arm64/v8)"
        );
    }
}
