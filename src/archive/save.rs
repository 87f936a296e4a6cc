//! `save`: images as one tar that docker's loader (`manifest.json`,
//! `repositories`) and OCI tools (`index.json`, `oci-layout`, `blobs/`)
//! both read. Blobs go out byte for byte as stored, so every digest — the
//! image ID, the manifest's — survives a load.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde_json::{json, Value};

use super::layout::{
    blob_path, DockerEntry, IMAGE_NAME, INDEX_JSON, MANIFEST_JSON, OCI_LAYOUT, REF_NAME, REPOSITORIES,
};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::{ImageRecord, Session};
use crate::lookup::{resolve, Target};
use crate::reference::{familiar_name, split_index_key};
use crate::Mocker;

/// An image to save and the tagged names (index keys) it goes out under.
struct Saved {
    image: ImageRecord,
    names: Vec<String>,
}

/// Write the images `inputs` name to `out` as one tar archive.
pub fn save(mocker: &Mocker, inputs: &[String], out: &mut dyn Write) -> Result<()> {
    let saved = mocker.index.session(|s| select(s, inputs))?;
    let mut tar = tar::Builder::new(out);
    let fail = |e: std::io::Error| Error::io("writing the archive", e);
    for dir in ["blobs/", "blobs/sha256/"] {
        tar.append_data(&mut header(tar::EntryType::Directory, 0, 0o755), dir, std::io::empty())
            .map_err(fail)?;
    }
    let mut written = std::collections::HashSet::new();
    for s in &saved {
        for blob in [&s.image.manifest_digest, &s.image.config_digest]
            .into_iter()
            .chain(&s.image.layers)
        {
            if written.insert(blob.clone()) {
                append_blob(mocker, &mut tar, blob)?;
            }
        }
    }
    let documents = [
        (OCI_LAYOUT, serde_json::to_vec(&json!({"imageLayoutVersion": "1.0.0"}))),
        (INDEX_JSON, serde_json::to_vec(&index_json(&saved))),
        (MANIFEST_JSON, serde_json::to_vec(&manifest_json(&saved))),
        (REPOSITORIES, serde_json::to_vec(&repositories(&saved))),
    ];
    for (name, bytes) in documents {
        let bytes = bytes.map_err(|e| Error::io("writing the archive", e.into()))?;
        let mut h = header(tar::EntryType::Regular, bytes.len() as u64, 0o644);
        tar.append_data(&mut h, name, bytes.as_slice()).map_err(fail)?;
    }
    tar.into_inner().map_err(fail)?.flush().map_err(fail)
}

/// The images `inputs` name (each once, with every name it was asked by):
/// a name saves that name; an ID saves the image without names, as docker.
fn select(s: &Session, inputs: &[String]) -> Result<Vec<Saved>> {
    let mut saved: Vec<Saved> = Vec::new();
    for input in inputs {
        let (manifests, name) = match resolve(s, input)? {
            Target::Ref(key, m) => (vec![m], split_index_key(&key).1.is_some().then_some(key)),
            Target::Images(ms) => (ms, None),
        };
        for m in manifests {
            let image = s.get_image(&m)?.ok_or_else(|| Error::NoSuchImage(input.clone()))?;
            let i = match saved.iter().position(|x| x.image.manifest_digest == m) {
                Some(i) => i,
                None => {
                    saved.push(Saved {
                        image,
                        names: Vec::new(),
                    });
                    saved.len() - 1
                }
            };
            if let Some(name) = &name {
                if !saved[i].names.contains(name) {
                    saved[i].names.push(name.clone());
                }
            }
        }
    }
    Ok(saved)
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// One blob, streamed from the store (never read whole).
fn append_blob(mocker: &Mocker, tar: &mut tar::Builder<&mut dyn Write>, digest: &Digest) -> Result<()> {
    let file = mocker.store.open_blob(digest)?;
    let size = file
        .metadata()
        .map_err(|e| Error::io(format!("stat blob {digest}"), e))?
        .len();
    let mut h = header(tar::EntryType::Regular, size, 0o644);
    // `take`: the header announced `size`; a blob cannot grow, but the
    // stream must stay well-formed whatever happens.
    tar.append_data(&mut h, blob_path(digest.hex()), file.take(size))
        .map_err(|e| Error::io(format!("writing blob {digest} to the archive"), e))
}

/// `index.json`: one entry per name (docker 25's), one without a name for
/// an image saved by ID.
fn index_json(saved: &[Saved]) -> Value {
    let mut manifests = Vec::new();
    for s in saved {
        let descriptor = |annotations: Option<Value>| {
            let mut d = json!({
                "mediaType": s.image.manifest_media_type,
                "digest": s.image.manifest_digest,
                "size": s.image.manifest_size,
            });
            if let Some(a) = annotations {
                d["annotations"] = a;
            }
            d
        };
        if s.names.is_empty() {
            manifests.push(descriptor(None));
        }
        for name in &s.names {
            let tag = split_index_key(name).1.unwrap_or("latest");
            manifests.push(descriptor(Some(json!({ IMAGE_NAME: name, REF_NAME: tag }))));
        }
    }
    json!({
        "schemaVersion": 2,
        "mediaType": crate::manifest::OCI_INDEX,
        "manifests": manifests,
    })
}

/// docker's `manifest.json`: paths into the OCI layout's blobs.
fn manifest_json(saved: &[Saved]) -> Vec<DockerEntry> {
    saved
        .iter()
        .map(|s| DockerEntry {
            config: blob_path(s.image.config_digest.hex()),
            repo_tags: (!s.names.is_empty()).then(|| s.names.iter().map(|n| familiar_tagged(n)).collect()),
            layers: s.image.layers.iter().map(|l| blob_path(l.hex())).collect(),
        })
        .collect()
}

/// docker's legacy `repositories`: repository → tag → top layer.
fn repositories(saved: &[Saved]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for s in saved {
        let Some(top) = s.image.layers.last() else { continue };
        for name in &s.names {
            let (repo, tag, _) = split_index_key(name);
            if let Some(tag) = tag {
                repos
                    .entry(familiar_name(repo).to_string())
                    .or_default()
                    .insert(tag.to_string(), top.hex().to_string());
            }
        }
    }
    repos
}

/// `busybox:latest` for `docker.io/library/busybox:latest`.
fn familiar_tagged(key: &str) -> String {
    match split_index_key(key) {
        (repo, Some(tag), _) => format!("{}:{tag}", familiar_name(repo)),
        (repo, None, _) => familiar_name(repo).to_string(),
    }
}
