//! `import`: a root filesystem tarball as a one-layer image, as docker's;
//! `-c` as `commit` takes it. A URL's body is first downloaded into an
//! unnamed file in the spool, then read as a file would be.
//! The (decompressed) tar goes in one pass (`newlayer`) into a gzip blob
//! and a snapshot, checked as any layer is, and is recorded with a config
//! made for it.

use std::io::Read;

use oci_spec::image::ImageManifest;
use serde_json::{json, Value};

use super::error::io;
use super::load::record;
use super::members::decompressed;
use super::plan::Planned;
use crate::commit::Instruction;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gc::LeaseGuard;
use crate::manifest;
use crate::newlayer::{self, Compression};
use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::Mocker;

/// Where `import` reads the tarball.
pub enum ImportSource<'a> {
    /// A file or stdin.
    Reader(Box<dyn Read + 'a>),
    /// An `http://` or `https://` URL (see [`crate::download::is_url`]).
    Url(&'a str),
}

/// What `import` makes of its input.
pub struct ImportOptions<'a> {
    /// Where the tarball came from (`-` for stdin, a file, a URL), for the
    /// history's comment.
    pub source: &'a str,
    pub reference: Option<ImageRef>,
    /// `-c` instructions.
    pub changes: &'a [String],
    /// `-m`: the history's comment instead of "Imported from SOURCE".
    pub message: Option<&'a str>,
}

/// Import `input` (a tar, possibly gzip- or zstd-compressed); the new image ID.
pub fn import(mocker: &Mocker, input: ImportSource, opts: &ImportOptions) -> Result<Digest> {
    if let Some(r) = opts.reference.as_ref().filter(|r| r.digest().is_some()) {
        return Err(super::error::ArchiveError::Invalid {
            what: format!("image name {r}"),
            reason: "an imported image is named by tag, not by digest".into(),
        }
        .into());
    }
    // Every change is checked before anything is written.
    let changes = opts
        .changes
        .iter()
        .map(|c| crate::commit::parse_change(c))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut touched = Vec::new();
    let result = import_leased(mocker, input, opts, &changes, &mut touched);
    if !touched.is_empty() {
        let _ = crate::gc::collect_unreferenced(mocker, Some(&touched));
    }
    result
}

fn import_leased(
    mocker: &Mocker,
    input: ImportSource,
    opts: &ImportOptions,
    changes: &[Instruction],
    touched: &mut Vec<Digest>,
) -> Result<Digest> {
    let mut lease = LeaseGuard::hold(mocker, &[])?;
    let mut on_commit = |d: &Digest| {
        touched.push(d.clone());
        lease.record(&touched[..])
    };
    // A URL's body is downloaded first, then read as a file would be.
    let spool;
    let input = match input {
        ImportSource::Reader(reader) => reader,
        ImportSource::Url(url) => {
            spool = crate::gc::Spool::new(&mocker.root).map_err(io("creating a spool directory"))?;
            Box::new(download(url, spool.path())?)
        }
    };
    let mut input = decompressed(input)?;
    let scratch = mocker.snapshots.begin_scratch()?;
    let what = format!("the tarball {}", crate::download::shown(opts.source));
    let layer = newlayer::write(mocker, Compression::Gzip, &scratch, &what, |out| {
        std::io::copy(&mut input, out)
            .map(drop)
            .map_err(|e| Error::io(format!("reading {what}"), e))
    })?;
    let diff_id = layer.unpacked.diff_id.clone();
    // One layer: its chain ID is its diff_id.
    let chain = crate::digest::chain_ids(std::slice::from_ref(&diff_id));
    let descriptor = json!({"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size});
    let blob = layer.digest.clone();
    on_commit(&blob)?;
    on_commit(&chain[0])?;
    newlayer::publish(mocker, layer, scratch, None, &chain[0])?;

    let config_bytes = config(opts, changes, &diff_id)?;
    let config_digest = Digest::of_bytes(&config_bytes);
    on_commit(&config_digest)?;
    mocker.store.write_bytes(&config_digest, &config_bytes, "config")?;
    let manifest_bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": manifest::OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": [descriptor],
    }))
    .map_err(|e| invalid(e.to_string()))?;
    let manifest_digest = Digest::of_bytes(&manifest_bytes);
    on_commit(&manifest_digest)?;
    mocker
        .store
        .write_bytes(&manifest_digest, &manifest_bytes, "manifest")?;
    let planned = Planned {
        manifest_digest,
        manifest_size: manifest_bytes.len() as u64,
        manifest: serde_json::from_slice::<ImageManifest>(&manifest_bytes).map_err(|e| invalid(e.to_string()))?,
        index_digest: None,
        config: manifest::parse_config(&config_bytes, 1, "imported config")?,
        layers: vec![(blob, manifest::Compression::Gzip)],
        names: opts.reference.iter().cloned().collect(),
    };
    // Its snapshot was published with the blob: only the records are left.
    record(mocker, std::slice::from_ref(&planned), &lease.id)?;
    lease.committed = true;
    Ok(config_digest)
}

/// `url`'s body in an unnamed file of the spool (gone when closed, even
/// after a kill), read from its start.
fn download(url: &str, spool: &std::path::Path) -> Result<std::fs::File> {
    let mut file = tempfile::tempfile_in(spool).map_err(io("creating the download file"))?;
    crate::download::download(url, &mut std::io::BufWriter::with_capacity(1 << 20, &mut file))?;
    std::io::Seek::rewind(&mut file).map_err(io("reading the download file"))?;
    Ok(file)
}

fn invalid(reason: String) -> Error {
    Error::InvalidDocument {
        what: "imported image".into(),
        reason,
    }
}

/// The config of the imported image: the host's platform, the changes, one
/// history step.
fn config(opts: &ImportOptions, changes: &[Instruction], layer: &Digest) -> Result<Vec<u8>> {
    let host = Platform::host();
    let now = crate::timestamp::format(&crate::timestamp::now());
    let comment = match opts.message {
        Some(m) => m.to_string(),
        None => format!("Imported from {}", crate::download::shown(opts.source)),
    };
    let mut doc = json!({
        "architecture": host.arch,
        "os": host.os,
        "created": now,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer]},
        "history": [{"created": now, "comment": comment}],
    });
    if let Some(v) = host.variant {
        doc["variant"] = Value::from(v);
    }
    if let Some(map) = doc.as_object_mut() {
        crate::commit::apply_changes(map, changes);
    }
    serde_json::to_vec(&doc).map_err(|e| invalid(e.to_string()))
}
