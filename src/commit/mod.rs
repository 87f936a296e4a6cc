//! `commit CONTAINER [REPO[:TAG]]`: a container's writable layer as a new
//! image over its own. One pass writes the layer blob and builds the new
//! snapshot (`layer`); the config is the parent's with `-c` changes
//! (`changes`), the layer's diff_id and a history entry; the manifest is
//! OCI. Blobs and the snapshot are leased until one index batch records
//! the image (and its name), so a concurrent `rmi` cannot take them.

mod changes;

use serde_json::{json, Value};

use crate::container::{self, Writable};
use crate::digest::{chain_ids, Digest};
use crate::error::{Error, Result};
use crate::gc::LeaseGuard;
use crate::index::{Batch, ImageRecord};
use crate::manifest::{self, Document};
use crate::newlayer::{self, Layer};
use crate::reference::ImageRef;
use crate::Mocker;

pub use changes::Instruction;
/// `-c` parsing and applying, which `import` shares.
pub(crate) use changes::{apply as apply_changes, parse as parse_change};

pub use crate::newlayer::Compression;

#[derive(Clone, Debug)]
pub struct CommitOptions {
    /// `-m`: the history entry's comment.
    pub message: Option<String>,
    /// `-a`: the config's and the history entry's author.
    pub author: Option<String>,
    /// `-c`: Dockerfile instructions.
    pub changes: Vec<String>,
    /// `--pause` (docker's default): freeze a running container meanwhile.
    pub pause: bool,
    pub compression: Compression,
}

impl Default for CommitOptions {
    fn default() -> Self {
        CommitOptions {
            message: None,
            author: None,
            changes: Vec::new(),
            pause: true,
            compression: Compression::Gzip,
        }
    }
}

/// Errors of `commit` that no lower module reports.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("invalid change {change:?}: {reason}")]
    BadChange { change: String, reason: String },
    #[error("a commit's name cannot contain a digest: {0}")]
    DigestName(String),
    #[error("the image container {container} was created from is gone (no {manifest})")]
    ImageGone { container: String, manifest: Digest },
}

impl From<CommitError> for Error {
    fn from(e: CommitError) -> Self {
        Error::Module(Box::new(e))
    }
}

/// Commit `container` as a new image, named `reference` if given; returns
/// the image ID (its config digest).
pub fn commit(mocker: &Mocker, container: &str, reference: Option<&str>, opts: &CommitOptions) -> Result<Digest> {
    // Everything the user typed is checked before anything is written.
    let changes = opts
        .changes
        .iter()
        .map(|c| changes::parse(c))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let reference = reference.map(ImageRef::parse).transpose()?;
    if let Some(r) = reference.as_ref().filter(|r| r.digest().is_some()) {
        return Err(CommitError::DigestName(r.to_string()).into());
    }
    let w = container::writable(mocker, container, opts.pause)?;
    let parent = mocker
        .index
        .session(|s| s.get_image(&w.image_manifest))?
        .ok_or_else(|| CommitError::ImageGone {
            container: container.to_string(),
            manifest: w.image_manifest.clone(),
        })?;
    let scratch = mocker.snapshots.begin_scratch()?;
    let layer = {
        let _paused = container::pause::pause(mocker, &w, opts.pause)?;
        let what = format!("the layer of container {}", &w.id[..w.id.len().min(12)]);
        newlayer::write(mocker, opts.compression, &scratch, &what, |out| {
            crate::export::write_layer(&w.upper, &what, &w.skip, out)
        })?
    };
    let new = documents(mocker, &parent, &w, &layer, &changes, opts)?;
    let chain_id = chain_ids(&new.image.diff_ids)
        .pop()
        .ok_or_else(|| Error::Index("a committed image without layers".into()))?;
    let made = [
        layer.digest.clone(),
        new.image.config_digest.clone(),
        new.image.manifest_digest.clone(),
        chain_id.clone(),
    ];
    let recorded = record(
        mocker,
        (layer, scratch),
        &new,
        &parent,
        &chain_id,
        &made,
        reference.as_ref(),
    );
    if recorded.is_err() {
        // As after a failed pull: what this commit made and nothing uses goes.
        let _ = crate::gc::collect_unreferenced(mocker, Some(&made));
    }
    recorded?;
    Ok(new.image.config_digest)
}

/// Publish the layer, the documents and the snapshot under a lease on
/// `made`, then record the image (and its name) in one index batch.
fn record(
    mocker: &Mocker,
    (layer, scratch): (Layer, crate::snapshot::Scratch),
    new: &NewImage,
    parent: &ImageRecord,
    chain_id: &Digest,
    made: &[Digest],
    reference: Option<&ImageRef>,
) -> Result<()> {
    let mut lease = LeaseGuard::hold(mocker, made)?;
    newlayer::publish(mocker, layer, scratch, parent.chain_ids.last(), chain_id)?;
    mocker
        .store
        .write_bytes(&new.image.config_digest, &new.config, "config")?;
    mocker
        .store
        .write_bytes(&new.image.manifest_digest, &new.manifest, "manifest")?;
    let mut batch = Batch::default();
    for record in &new.layers {
        batch.put_layer(record);
    }
    batch.put_image(&new.image).del_lease(&lease.id);
    if let Some(r) = reference {
        batch.put_ref(&r.index_key(), &new.image.manifest_digest);
    }
    mocker.index.session(|s| s.apply(&batch))?;
    lease.committed = true;
    Ok(())
}

/// The new image's documents and the records describing them.
struct NewImage {
    config: Vec<u8>,
    manifest: Vec<u8>,
    image: ImageRecord,
    layers: Vec<crate::index::LayerRecord>,
}

/// Config and manifest of the new image: the parent's, plus the layer.
fn documents(
    mocker: &Mocker,
    parent: &ImageRecord,
    w: &Writable,
    layer: &Layer,
    changes: &[Instruction],
    opts: &CommitOptions,
) -> Result<NewImage> {
    let invalid = |what: &str, e: serde_json::Error| Error::InvalidDocument {
        what: what.to_string(),
        reason: e.to_string(),
    };
    let parent_config = mocker
        .store
        .read_small(&parent.config_digest, manifest::MAX_CONFIG_BYTES)?;
    let mut config: Value = serde_json::from_slice(&parent_config).map_err(|e| invalid("parent config", e))?;
    let object = config.as_object_mut().ok_or_else(|| Error::InvalidDocument {
        what: "parent config".into(),
        reason: "not a JSON object".into(),
    })?;
    if let Some(run) = &w.run {
        take_run_config(object, run);
    }
    changes::apply(object, changes);
    let created = crate::timestamp::format(&crate::timestamp::now());
    object.insert("created".into(), json!(created));
    match &opts.author {
        Some(author) => object.insert("author".into(), json!(author)),
        None => object.remove("author"),
    };
    // docker's: the container's Cmd (without its Entrypoint).
    let created_by = w.run.as_ref().map_or(&w.command, |r| &r.cmd).join(" ");
    let mut entry = json!({"created": created, "created_by": created_by});
    if let Some(author) = &opts.author {
        entry["author"] = json!(author);
    }
    if let Some(message) = &opts.message {
        entry["comment"] = json!(message);
    }
    push(object, "history", entry);
    let rootfs = object.entry("rootfs").or_insert_with(|| json!({"type": "layers"}));
    if let Some(rootfs) = rootfs.as_object_mut() {
        push(rootfs, "diff_ids", json!(layer.unpacked.diff_id));
    }
    let config = serde_json::to_vec(&config).map_err(|e| invalid("new config", e))?;
    let manifest = manifest_for(mocker, parent, &config, layer)?;
    let manifest_digest = Digest::of_bytes(&manifest);
    let Document::Manifest(parsed) = manifest::parse_document(&manifest, "new manifest")? else {
        return Err(Error::Index("the new manifest parsed as an index".into()));
    };
    let parsed_config = manifest::parse_config(&config, parsed.layers().len(), "new config")?;
    let (image, layers) =
        crate::records::describe_image(&manifest_digest, manifest.len() as u64, &parsed, None, &parsed_config)?;
    Ok(NewImage {
        config,
        manifest,
        image,
        layers,
    })
}

/// docker's commit: the image runs what the container ran (its Cmd,
/// Entrypoint, Env, WorkingDir and User, `run` flags included). Empty
/// fields are left out, as an OCI config may leave them.
fn take_run_config(object: &mut serde_json::Map<String, Value>, run: &crate::runtime::spec::RunConfig) {
    let section = object.entry("config").or_insert_with(|| json!({}));
    if !section.is_object() {
        *section = json!({});
    }
    let Some(section) = section.as_object_mut() else {
        return;
    };
    let fields = [
        (
            "Entrypoint",
            (!run.entrypoint.is_empty()).then(|| json!(run.entrypoint)),
        ),
        ("Cmd", (!run.cmd.is_empty()).then(|| json!(run.cmd))),
        ("Env", (!run.env.is_empty()).then(|| json!(run.env))),
        (
            "WorkingDir",
            (!run.working_dir.is_empty()).then(|| json!(run.working_dir)),
        ),
        ("User", (!run.user.is_empty()).then(|| json!(run.user))),
    ];
    for (key, value) in fields {
        match value {
            Some(value) => section.insert(key.to_string(), value),
            None => section.remove(key),
        };
    }
}

/// Append `value` to the array `key` of `object` (made if missing).
fn push(object: &mut serde_json::Map<String, Value>, key: &str, value: Value) {
    let slot = object.entry(key.to_string()).or_insert_with(|| json!([]));
    if !slot.is_array() {
        *slot = json!([]);
    }
    if let Some(array) = slot.as_array_mut() {
        array.push(value);
    }
}

/// An OCI manifest: the parent's layers (docker media types given their
/// OCI names), the new one, the new config.
fn manifest_for(mocker: &Mocker, parent: &ImageRecord, config: &[u8], layer: &Layer) -> Result<Vec<u8>> {
    let bytes = mocker
        .store
        .read_small(&parent.manifest_digest, manifest::MAX_MANIFEST_BYTES)?;
    let Document::Manifest(parent_manifest) = manifest::parse_document(&bytes, "parent manifest")? else {
        return Err(Error::Index("the parent manifest is an index".into()));
    };
    let mut layers = Vec::new();
    for descriptor in parent_manifest.layers() {
        let mut value = serde_json::to_value(descriptor).map_err(|e| Error::InvalidDocument {
            what: "parent manifest".into(),
            reason: e.to_string(),
        })?;
        let oci = match descriptor.media_type().to_string().as_str() {
            "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some("application/vnd.oci.image.layer.v1.tar+gzip"),
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
            }
            _ => None,
        };
        if let Some(media_type) = oci {
            value["mediaType"] = json!(media_type);
        }
        layers.push(value);
    }
    layers.push(json!({
        "mediaType": layer.media_type,
        "digest": layer.digest,
        "size": layer.size,
    }));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {
            "mediaType": manifest::OCI_CONFIG,
            "digest": Digest::of_bytes(config),
            "size": config.len(),
        },
        "layers": layers,
    });
    serde_json::to_vec(&manifest).map_err(|e| Error::InvalidDocument {
        what: "new manifest".into(),
        reason: e.to_string(),
    })
}
