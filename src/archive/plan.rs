//! What an archive's images are, from its `index.json` (an OCI layout,
//! docker 25+'s save) or else its `manifest.json` (docker's older layouts,
//! skopeo's docker-archive), every document and blob checked as a pull
//! checks them: digests (by the store's ingest), sizes, media types, diff_id
//! counts; the diff_ids themselves when the layers are unpacked.

use std::io::Read;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};
use serde_json::json;

use super::error::ArchiveError;
use super::layout::{blob_path, DockerEntry, IMAGE_NAME, INDEX_JSON, MANIFEST_JSON, REF_NAME};
use super::members::{ingest, Member, Members};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{self, Compression, Document, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::store::ContentStore;

/// One image of the archive, its blobs in the store.
pub struct Planned {
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    pub manifest: ImageManifest,
    /// The index it was chosen from (docker's repo digest), if any.
    pub index_digest: Option<Digest>,
    pub config: ImageConfiguration,
    /// Each layer blob and how it is compressed, base first.
    pub layers: Vec<(Digest, Compression)>,
    pub names: Vec<ImageRef>,
}

/// Told of each blob a plan commits to the store.
pub type OnCommit<'a> = &'a mut dyn FnMut(&Digest) -> Result<()>;

/// The archive's images, from whichever layout it has.
pub fn images(store: &ContentStore, members: &Members, on_commit: OnCommit) -> Result<Vec<Planned>> {
    let mut planned: Vec<Planned> = if members.has(INDEX_JSON) {
        oci_images(store, members)?
    } else if members.has(MANIFEST_JSON) {
        docker_images(store, members, on_commit)?
    } else {
        return Err(ArchiveError::NotAnImageArchive.into());
    };
    // One image listed under several names is loaded once.
    let mut merged: Vec<Planned> = Vec::new();
    for p in planned.drain(..) {
        match merged.iter_mut().find(|m| m.manifest_digest == p.manifest_digest) {
            Some(m) => m.names.extend(p.names),
            None => merged.push(p),
        }
    }
    if merged.is_empty() {
        return Err(ArchiveError::Empty.into());
    }
    Ok(merged)
}

fn invalid(what: &str, reason: impl ToString) -> Error {
    ArchiveError::Invalid {
        what: what.to_string(),
        reason: reason.to_string(),
    }
    .into()
}

fn oci_images(store: &ContentStore, members: &Members) -> Result<Vec<Planned>> {
    let bytes = members.read_small(INDEX_JSON, store, "index.json")?;
    let Document::Index(index) = manifest::parse_document(&bytes, "index.json")? else {
        return Err(invalid("index.json", "it is a manifest, not an index"));
    };
    index
        .manifests()
        .iter()
        .map(|desc| {
            let mut planned = oci_image(store, members, desc, None)?;
            planned.names = oci_names(desc)?;
            Ok(planned)
        })
        .collect()
}

/// A name an archive gives its image: a tag only. A digest names bytes
/// the archive cannot vouch for (it would pin `name@digest` to other
/// content), and docker refuses it too.
fn tag_name(name: &str) -> Result<ImageRef> {
    let reference = ImageRef::parse(name)?;
    if reference.digest().is_some() {
        return Err(ArchiveError::Invalid {
            what: format!("image name {name:?}"),
            reason: "an archive names its images by tag, not by digest".into(),
        }
        .into());
    }
    Ok(reference)
}

/// The name an index entry carries: docker's full-name annotation, else an
/// OCI ref name that is a full reference (skopeo's are often a bare tag,
/// which names no repository).
fn oci_names(desc: &Descriptor) -> Result<Vec<ImageRef>> {
    let Some(annotations) = desc.annotations() else {
        return Ok(Vec::new());
    };
    if let Some(name) = annotations.get(IMAGE_NAME) {
        return Ok(vec![tag_name(name)?]);
    }
    match annotations.get(REF_NAME) {
        Some(name) if name.contains(['/', ':', '@']) => Ok(vec![tag_name(name)?]),
        _ => Ok(Vec::new()),
    }
}

/// A blob the archive must hold, read whole (documents only), its size checked.
fn document(
    store: &ContentStore,
    members: &Members,
    desc: &Descriptor,
    limit: u64,
    what: &'static str,
) -> Result<(Digest, Vec<u8>)> {
    let digest = manifest::descriptor_digest(desc, what)?;
    in_archive(members, &digest, what)?;
    let bytes = store.read_small(&digest, limit)?;
    if bytes.len() as u64 != desc.size() {
        return Err(Error::SizeMismatch {
            what: format!("{what} {digest}"),
            expected: desc.size(),
            actual: bytes.len() as u64,
        });
    }
    Ok((digest, bytes))
}

/// The archive holds `digest` (not just the store, from an earlier pull).
fn in_archive(members: &Members, digest: &Digest, what: &'static str) -> Result<()> {
    match members.get(&blob_path(digest.hex()), what)? {
        Member::Blob(d) if d == digest => Ok(()),
        _ => Err(ArchiveError::Missing {
            what,
            path: blob_path(digest.hex()),
        }
        .into()),
    }
}

fn oci_image(store: &ContentStore, members: &Members, desc: &Descriptor, from: Option<Digest>) -> Result<Planned> {
    let (digest, bytes) = document(store, members, desc, MAX_MANIFEST_BYTES, "manifest")?;
    match manifest::parse_document(&bytes, &format!("manifest {digest}"))? {
        Document::Index(inner) if from.is_none() => {
            let chosen = manifest::select_platform(&inner, &Platform::host())?;
            oci_image(store, members, &chosen, Some(digest))
        }
        Document::Index(_) => Err(invalid(&format!("index {digest}"), "an index inside an index")),
        Document::Manifest(m) => {
            let layers = layers_of(store, members, &m, &digest)?;
            let (_, config_bytes) = document(store, members, m.config(), MAX_CONFIG_BYTES, "config")?;
            let config = manifest::parse_config(&config_bytes, layers.len(), &format!("config of {digest}"))?;
            Ok(Planned {
                manifest_digest: digest,
                manifest_size: bytes.len() as u64,
                manifest: *m,
                index_digest: from,
                config,
                layers,
                names: Vec::new(),
            })
        }
    }
}

/// A manifest's layers: each in the archive once, of the size it says, of
/// a layer media type.
fn layers_of(
    store: &ContentStore,
    members: &Members,
    m: &ImageManifest,
    digest: &Digest,
) -> Result<Vec<(Digest, Compression)>> {
    let mut layers: Vec<(Digest, Compression)> = Vec::new();
    for (layer, size, media_type) in crate::records::layer_descriptors(m)? {
        if layers.iter().any(|(d, _)| d == &layer) {
            return Err(duplicate(digest, &layer));
        }
        in_archive(members, &layer, "layer")?;
        let actual = store.size(&layer).unwrap_or(0);
        if actual != size {
            return Err(Error::SizeMismatch {
                what: format!("layer {layer}"),
                expected: size,
                actual,
            });
        }
        let compression = manifest::layer_compression(&media_type).ok_or_else(|| Error::UnsupportedMediaType {
            what: format!("layer {layer}"),
            media_type,
        })?;
        layers.push((layer, compression));
    }
    Ok(layers)
}

fn duplicate(image: impl ToString, layer: impl ToString) -> Error {
    ArchiveError::DuplicateLayer {
        image: image.to_string(),
        layer: layer.to_string(),
    }
    .into()
}

fn docker_images(store: &ContentStore, members: &Members, on_commit: OnCommit) -> Result<Vec<Planned>> {
    let bytes = members.read_small(MANIFEST_JSON, store, "manifest.json")?;
    let entries: Vec<DockerEntry> = serde_json::from_slice(&bytes).map_err(|e| invalid("manifest.json", e))?;
    entries
        .iter()
        .map(|e| docker_image(store, members, e, on_commit))
        .collect()
}

/// A `manifest.json` entry as an image: its layers as they are in the
/// archive (compressed or not), under an OCI manifest made for them.
fn docker_image(store: &ContentStore, members: &Members, entry: &DockerEntry, on_commit: OnCommit) -> Result<Planned> {
    for (i, path) in entry.layers.iter().enumerate() {
        if entry.layers[..i].contains(path) {
            return Err(duplicate(&entry.config, path));
        }
    }
    let config_bytes = members.read_small(&entry.config, store, "config")?;
    let what = format!("config {:?}", entry.config);
    let config = manifest::parse_config(&config_bytes, entry.layers.len(), &what)?;
    let config_digest = Digest::of_bytes(&config_bytes);
    store_new(store, &config_digest, &config_bytes, on_commit)?;
    let mut layers: Vec<(Digest, Compression)> = Vec::new();
    let mut descriptors = Vec::new();
    for path in &entry.layers {
        let (digest, size) = layer_blob(store, members, path, on_commit)?;
        if layers.iter().any(|(d, _)| d == &digest) {
            return Err(duplicate(&entry.config, path));
        }
        let compression = sniff(store, &digest)?;
        descriptors.push(json!({"mediaType": compression.oci_layer_type(), "digest": digest, "size": size}));
        layers.push((digest, compression));
    }
    let manifest_doc = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": manifest::OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": descriptors,
    });
    let manifest_bytes = serde_json::to_vec(&manifest_doc).map_err(|e| invalid("manifest", e))?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|e| invalid("manifest", e))?;
    let manifest_digest = Digest::of_bytes(&manifest_bytes);
    store_new(store, &manifest_digest, &manifest_bytes, on_commit)?;
    let names = entry
        .repo_tags
        .iter()
        .flatten()
        .map(|t| tag_name(t))
        .collect::<Result<_>>()?;
    Ok(Planned {
        manifest_digest,
        manifest_size: manifest_bytes.len() as u64,
        manifest,
        index_digest: None,
        config,
        layers,
        names,
    })
}

/// Store a document this load made or read, leased first (also when the
/// store has it already, so no collection takes it meanwhile).
fn store_new(store: &ContentStore, digest: &Digest, bytes: &[u8], on_commit: OnCommit) -> Result<()> {
    on_commit(digest)?;
    store.write_bytes(digest, bytes, &format!("blob {digest}"))
}

/// A docker-archive layer in the store (from the spool if it was not a
/// blob already): its digest and size.
fn layer_blob(store: &ContentStore, members: &Members, path: &str, on_commit: OnCommit) -> Result<(Digest, u64)> {
    match members.get(path, "layer")? {
        Member::Blob(d) => {
            on_commit(d)?;
            Ok((d.clone(), store.size(d).unwrap_or(0)))
        }
        Member::Spooled {
            path: file,
            digest,
            size,
        } => {
            let mut data = std::fs::File::open(file).map_err(|e| Error::io(format!("reading spooled {path:?}"), e))?;
            // Leased before the store is asked, as every blob of a load.
            on_commit(digest)?;
            ingest(store, digest, *size, &mut data)?;
            Ok((digest.clone(), *size))
        }
        Member::Small(bytes) => {
            let digest = Digest::of_bytes(bytes);
            store_new(store, &digest, bytes, on_commit)?;
            Ok((digest, bytes.len() as u64))
        }
        Member::Alias(_) => Err(ArchiveError::Missing {
            what: "layer",
            path: path.into(),
        }
        .into()),
    }
}

/// A layer's compression, by its first bytes (docker-archive layers carry
/// no media type).
fn sniff(store: &ContentStore, digest: &Digest) -> Result<Compression> {
    let mut head = [0u8; 4];
    let mut file = store.open_blob(digest)?;
    let n = file
        .read(&mut head)
        .map_err(|e| Error::io(format!("reading blob {digest}"), e))?;
    Ok(Compression::sniff(&head[..n]).unwrap_or(Compression::None))
}
