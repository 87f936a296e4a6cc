//! `rmi`: untag, and delete an image that lost its last name with the
//! blobs and snapshots nothing else uses.

use std::collections::HashSet;

use super::ImageError;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gc::{collect_unreferenced, referenced_blobs, referenced_snapshots, sweep};
use crate::index::{Batch, ImageRecord, Session, SnapshotRecord};
use crate::lookup::{resolve, Target};
use crate::reference::{familiar_name, split_index_key};
use crate::snapshot;
use crate::Mocker;

/// One line of `rmi` output, as docker prints them.
#[derive(Clone, Debug, PartialEq)]
pub enum Removed {
    Untagged(String),
    Deleted(Digest),
}

/// `rmi INPUT`: untag; when an image loses its last name, delete it and every
/// blob no other image (or running pull) uses. `force` lets an ID remove an
/// image that has several names. Then whatever nothing uses (a killed
/// collection's leftovers) and `gc::sweep`.
pub fn remove(mocker: &Mocker, input: &str, force: bool) -> Result<Vec<Removed>> {
    let removed = remove_image(mocker, input, force);
    // Also when nothing was removed: the retry of a killed rmi finds its
    // image gone ("no such image") and must still reclaim what the kill left
    // — blobs unlinked after the index commit among it.
    let collected = collect_unreferenced(mocker, None);
    let swept = sweep(mocker);
    let (out, _) = removed?;
    collected?;
    swept?;
    Ok(out)
}

/// `rmi` without the sweep: what it removed and the bytes it freed.
pub(super) fn remove_image(mocker: &Mocker, input: &str, force: bool) -> Result<(Vec<Removed>, u64)> {
    let (out, freed, trash) = mocker.index.session(|s| {
        let (drop_refs, candidates) = removal_targets(s, input, force)?;
        let candidates = unused_by_containers(s, input, force, candidates)?;
        let mut batch = Batch::default();
        let mut out = untag(&drop_refs, &mut batch);
        let images = s.images()?;
        let doomed: Vec<&ImageRecord> = candidates.iter().filter_map(|m| images.get(m.as_str())).collect();
        for image in &doomed {
            batch.del_image(&image.manifest_digest);
        }
        let survivors = images.values().filter(|i| !candidates.contains(&i.manifest_digest));
        let (garbage, deleted_snapshots) = unshared_content(mocker, s, survivors, &doomed, &mut batch)?;
        // Index first, made durable: a crash before the unlinks leaves orphan
        // blobs and directories, which the next collection (or `system
        // check --repair`) removes; never an entry without its content.
        s.apply(&batch)?;
        s.flush()?;
        // Blobs go inside the session (a pull's "already exists" must not
        // race their deletion). Snapshot directories are renamed to trash in
        // it (so no pull adopts one in between) and deleted after it.
        let mut freed = 0;
        for blob in &garbage {
            freed += mocker.store.size(blob).unwrap_or(0);
            mocker.store.delete(blob)?;
        }
        let mut trash = Vec::new();
        for snapshot in &deleted_snapshots {
            trash.extend(mocker.snapshots.trash(snapshot.id)?);
        }
        for image in &doomed {
            if !out.contains(&Removed::Deleted(image.config_digest.clone())) {
                out.push(Removed::Deleted(image.config_digest.clone()));
            }
        }
        out.extend(deleted_snapshots.into_iter().map(|r| Removed::Deleted(r.chain_id)));
        Ok((out, freed, trash))
    })?;
    let freed = freed + snapshot::delete_all(trash)?;
    Ok((out, freed))
}

/// The tags `rmi INPUT` drops and the images it may delete.
fn removal_targets(s: &Session, input: &str, force: bool) -> Result<(Vec<String>, Vec<Digest>)> {
    let refs = s.refs()?;
    match resolve(s, input)? {
        Target::Ref(key, manifest) => {
            let others = refs.iter().filter(|(k, m)| **m == manifest && **k != key).count();
            Ok((vec![key], if others == 0 { vec![manifest] } else { vec![] }))
        }
        Target::Images(manifests) => {
            let keys: Vec<String> = refs
                .iter()
                .filter(|(_, m)| manifests.contains(m))
                .map(|(k, _)| k.clone())
                .collect();
            // docker: names all in one repository go together; names in
            // several repositories need -f.
            let repositories: HashSet<&str> = keys.iter().map(|k| split_index_key(k).0).collect();
            if repositories.len() > 1 && !force {
                let id = s
                    .get_image(&manifests[0])?
                    .map(|i| i.config_digest.short().to_string())
                    .unwrap_or_else(|| input.to_string());
                return Err(Error::ImageReferencedMultiple { id });
            }
            Ok((keys, manifests))
        }
    }
}

/// docker: an image a container was created from is only untagged, and
/// only with -f. Returns the candidates no container uses.
fn unused_by_containers(s: &Session, input: &str, force: bool, candidates: Vec<Digest>) -> Result<Vec<Digest>> {
    let containers = s.containers()?;
    if let Some(user) = containers.values().find(|c| candidates.contains(&c.image_manifest)) {
        if !force {
            let image = s
                .get_image(&user.image_manifest)?
                .map(|i| i.config_digest.short().to_string())
                .unwrap_or_default();
            return Err(ImageError::UsedByContainer {
                input: input.to_string(),
                container: user.id.chars().take(12).collect(),
                image,
            }
            .into());
        }
    }
    Ok(candidates
        .into_iter()
        .filter(|m| !containers.values().any(|c| &c.image_manifest == m))
        .collect())
}

/// Drop `keys` in `batch`; docker's "Untagged:" names for them.
fn untag(keys: &[String], batch: &mut Batch) -> Vec<Removed> {
    let mut out = Vec::new();
    for key in keys {
        batch.del_ref(key);
        let (name, tag, digest) = split_index_key(key);
        let shown = match (tag, digest) {
            (Some(t), _) => format!("{}:{t}", familiar_name(name)),
            (_, Some(d)) => format!("{}@{d}", familiar_name(name)),
            _ => familiar_name(name).to_string(),
        };
        out.push(Removed::Untagged(shown));
    }
    out
}

/// The blobs and snapshots of `doomed` images that no survivor (nor live
/// pull, nor container) uses, their records dropped in `batch`.
fn unshared_content<'a>(
    mocker: &Mocker,
    s: &Session,
    survivors: impl Iterator<Item = &'a ImageRecord> + Clone,
    doomed: &[&ImageRecord],
    batch: &mut Batch,
) -> Result<(Vec<Digest>, Vec<SnapshotRecord>)> {
    let mut keep_snapshots = referenced_snapshots(&mocker.index, s, survivors.clone())?;
    let mut keep = referenced_blobs(&mocker.index, s, survivors)?;
    let mut garbage = Vec::new();
    for image in doomed {
        for blob in image.blobs() {
            if keep.insert(blob.clone()) {
                garbage.push(blob);
            }
        }
    }
    for blob in &garbage {
        batch.del_layer(blob);
    }
    let mut deleted = Vec::new();
    for image in doomed {
        for chain_id in image.chain_ids.iter().rev() {
            if keep_snapshots.insert(chain_id.clone()) {
                if let Some(snapshot) = s.get_snapshot(chain_id)? {
                    batch.del_snapshot(chain_id);
                    deleted.push(snapshot);
                }
            }
        }
    }
    Ok((garbage, deleted))
}
