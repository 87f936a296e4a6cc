//! `system prune`'s image part: unused images, then everything on disk
//! nothing needs.

use std::collections::HashSet;

use super::remove::{remove_image, Removed};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gc::{collect_unreferenced, sweep};
use crate::index::ImageRecord;
use crate::Mocker;

/// What `system prune` removed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub removed: Vec<Removed>,
    /// Bytes of blobs, snapshots and partial downloads freed.
    pub reclaimed: u64,
}

/// `system prune`: remove untagged images (every image with `all`) that no
/// container was created from, then everything on disk that no image, live
/// pull or container needs: blobs, snapshots, partial downloads, what killed
/// pulls and collections left (see [`sweep`]). `reclaimed` counts what was
/// freed: blob bytes, and the file data of deleted snapshot directories.
pub fn prune(mocker: &Mocker, all: bool) -> Result<Pruned> {
    let mut pruned = Pruned::default();
    let (refs, images, containers) = mocker
        .index
        .session(|s| Ok((s.refs()?, s.images()?, s.containers()?)))?;
    let named: HashSet<&Digest> = refs.values().collect();
    let used: HashSet<&Digest> = containers.values().map(|c| &c.image_manifest).collect();
    let doomed: Vec<&ImageRecord> = images
        .values()
        .filter(|i| (all || !named.contains(&i.manifest_digest)) && !used.contains(&i.manifest_digest))
        .collect();
    for image in doomed {
        match remove_image(mocker, image.config_digest.as_str(), true) {
            Ok((lines, freed)) => {
                pruned.removed.extend(lines);
                pruned.reclaimed += freed;
            }
            // Removed already with an image that shares its config.
            Err(Error::NoSuchImage(_)) => {}
            Err(e) => return Err(e),
        }
    }
    // Anything else nothing uses: leftovers of crashes and failed pulls.
    let collected = collect_unreferenced(mocker, None)?;
    pruned.reclaimed += collected.blob_bytes + collected.snapshot_bytes;
    for record in collected.snapshots {
        pruned.removed.push(Removed::Deleted(record.chain_id));
    }
    pruned.reclaimed += sweep(mocker)?;
    pruned.reclaimed += mocker.store.sweep_new_blobs()?;
    for (path, len) in mocker.store.list_ingest()? {
        let Some(digest) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| Digest::from_hex(n).ok())
        else {
            continue;
        };
        if mocker.store.discard_ingest(&digest).is_ok() && !path.exists() {
            pruned.reclaimed += len;
        }
    }
    Ok(pruned)
}
