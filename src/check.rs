//! `system check [--repair]`. The blobs on disk are the truth; the index is a
//! cache of what they mean plus the one thing only it knows (tags). A check
//! re-hashes every blob and cross-checks every index entry against the disk;
//! a repair rebuilds what the blobs can tell and says what was lost.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::{referenced_blobs, referenced_snapshots};
use crate::index::{Batch, Contents, ImageRecord, Session};
use crate::manifest::{self, Document, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::pull::describe_image;
use crate::snapshot::delete_all;
use crate::Mocker;

#[derive(Debug, Default)]
pub struct CheckReport {
    pub blobs_checked: usize,
    pub images_checked: usize,
    /// What is wrong (before any repair).
    pub problems: Vec<String>,
    /// What a repair did.
    pub repaired: Vec<String>,
    /// What a repair could not bring back.
    pub lost: Vec<String>,
    /// Partial downloads kept for resuming; not a problem.
    pub partial_downloads: usize,
}

impl CheckReport {
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn check(mocker: &Mocker, repair: bool) -> Result<CheckReport> {
    let mut report = CheckReport {
        partial_downloads: mocker.store.list_ingest()?.len(),
        ..Default::default()
    };

    // 1. Every blob must hash to its name.
    let (blobs, foreign) = mocker.store.list()?;
    for path in foreign {
        report
            .problems
            .push(format!("unexpected file in the blob store: {}", path.display()));
        if repair {
            std::fs::remove_file(&path).map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
            report.repaired.push(format!("removed {}", path.display()));
        }
    }
    let mut present: HashSet<Digest> = HashSet::new();
    let mut corrupt: HashSet<Digest> = HashSet::new();
    for digest in blobs {
        report.blobs_checked += 1;
        let actual = mocker.store.rehash(&digest)?;
        if actual == digest {
            present.insert(digest);
            continue;
        }
        report
            .problems
            .push(format!("blob {digest} is corrupt: its content hashes to {actual}"));
        if repair {
            mocker.store.delete(&digest)?;
            report.repaired.push(format!("deleted corrupt blob {digest}"));
        }
        corrupt.insert(digest);
    }

    // 2. The index must open; a repair sets an unreadable one aside.
    let index_result = mocker
        .index
        .session(|s| check_index(mocker, s, &present, &corrupt, repair, &mut report));
    match index_result {
        Err(Error::IndexUnreadable { reason, .. }) => {
            report.problems.push(format!("the index cannot be opened: {reason}"));
            if repair {
                let aside = mocker.index.set_aside()?;
                report
                    .repaired
                    .push(format!("moved the unreadable index to {}", aside.display()));
                report
                    .lost
                    .push("all tags (the index that held them was unreadable)".into());
                mocker
                    .index
                    .session(|s| check_index(mocker, s, &present, &corrupt, repair, &mut report))?;
            }
        }
        other => other?,
    }
    // Containers first: a restored container keeps its writable snapshot.
    let containers = crate::container::check(mocker, repair)?;
    report.problems.extend(containers.problems);
    report.repaired.extend(containers.repaired);
    check_snapshots(mocker, repair, &mut report)?;
    Ok(report)
}

/// Snapshots against their directories and the images that use them.
fn check_snapshots(mocker: &Mocker, repair: bool, report: &mut CheckReport) -> Result<()> {
    let snapshots = &mocker.snapshots;
    let stale = snapshots.stale_partial_builds();
    for path in &stale {
        let what = match path.file_name().and_then(|n| n.to_str()) {
            Some(n) if n.starts_with("trash-") => "interrupted deletion",
            _ => "partial unpack",
        };
        report.problems.push(format!("{what} left at {}", path.display()));
    }
    if repair && !stale.is_empty() {
        snapshots.sweep_partial_builds();
        report
            .repaired
            .push(format!("removed {} partial unpack(s) or deletion(s)", stale.len()));
    }
    let dirs: HashSet<u64> = snapshots.numbered_dirs()?.into_iter().map(|(id, _)| id).collect();
    let (needed, trash) = mocker.index.session(|s| {
        let images = s.images()?;
        let records = s.snapshots()?;
        let needed = referenced_snapshots(&mocker.index, s, images.values())?;
        let mut batch = Batch::default();
        let mut doomed = Vec::new();
        for (chain, record) in &records {
            if !dirs.contains(&record.id) {
                report
                    .problems
                    .push(format!("snapshot {chain} has lost its directory {}", record.id));
                if repair {
                    batch.del_snapshot(&record.chain_id);
                    report.repaired.push(format!("dropped the record of snapshot {chain}"));
                }
            } else if !needed.contains(&record.chain_id) {
                report.problems.push(format!("snapshot {chain} is used by no image"));
                if repair {
                    batch.del_snapshot(&record.chain_id);
                    doomed.push(record.id);
                    report.repaired.push(format!("deleted unused snapshot {chain}"));
                }
            }
        }
        for (key, active) in s.actives()? {
            if !dirs.contains(&active.id) {
                report
                    .problems
                    .push(format!("writable snapshot {key} has lost its directory"));
                if repair {
                    batch.del_active(&key);
                }
            }
        }
        for image in images.values() {
            let missing = image
                .chain_ids
                .iter()
                .filter(|c| !records.contains_key(c.as_str()))
                .count();
            if missing > 0 {
                report.problems.push(format!(
                    "image {} has {missing} layer(s) not unpacked (pull it again to unpack them)",
                    image.config_digest.short()
                ));
            }
        }
        let mut trash = Vec::new();
        if repair {
            s.apply(&batch)?;
            s.flush()?;
            // Renamed in the session, so no pull adopts one meanwhile.
            for id in doomed {
                trash.extend(snapshots.trash(id)?);
            }
        }
        Ok((needed, trash))
    })?;
    delete_all(trash)?;
    for orphan in snapshots.unrecorded()? {
        // Under the chain's lock no pull is about to record it; re-read the
        // index, as one may have recorded it since we listed.
        let Some(_lock) = snapshots.lock_chain(&orphan.chain_id, false)? else {
            continue;
        };
        let recorded = snapshots.get(&orphan.chain_id)?;
        if recorded.as_ref().is_some_and(|r| r.id == orphan.id) {
            continue;
        }
        if needed.contains(&orphan.chain_id) && recorded.is_none() {
            report.problems.push(format!(
                "snapshot directory {} ({}) is not in the index",
                orphan.id, orphan.chain_id
            ));
            if repair {
                let mut batch = Batch::default();
                batch.put_snapshot(&orphan);
                mocker.index.session(|s| s.apply(&batch))?;
                report
                    .repaired
                    .push(format!("restored snapshot {} from its directory", orphan.chain_id));
            }
        } else {
            report
                .problems
                .push(format!("snapshot directory {} is used by nothing", orphan.id));
            if repair {
                delete_all(snapshots.trash(orphan.id)?.into_iter().collect())?;
                report
                    .repaired
                    .push(format!("deleted snapshot directory {}", orphan.id));
            }
        }
    }
    for id in snapshots.unrecorded_active_dirs()? {
        report
            .problems
            .push(format!("writable snapshot directory {id} is not in the index"));
        if repair {
            delete_all(snapshots.trash(id)?.into_iter().collect())?;
            report
                .repaired
                .push(format!("deleted writable snapshot directory {id}"));
        }
    }
    Ok(())
}

fn check_index(
    mocker: &Mocker,
    s: &Session,
    present: &HashSet<Digest>,
    corrupt: &HashSet<Digest>,
    repair: bool,
    report: &mut CheckReport,
) -> Result<()> {
    let (contents, corrupt_entries) = s.scan_all_lenient()?;
    let Contents {
        refs, images, layers, ..
    } = contents;
    for (key, reason) in &corrupt_entries {
        report.problems.push(format!("index entry {key} is corrupt: {reason}"));
    }
    if repair && !corrupt_entries.is_empty() {
        let keys: Vec<String> = corrupt_entries.iter().map(|(k, _)| k.clone()).collect();
        s.remove_keys(&keys)?;
        report
            .repaired
            .push(format!("dropped {} corrupt index entries", keys.len()));
    }
    // A pull may have committed blobs since the store was listed: count
    // those as present rather than report (or repair away) a fresh image.
    let fresh: HashSet<Digest> = images
        .values()
        .flat_map(|i| i.blobs())
        .filter(|b| !present.contains(b) && mocker.store.has(b) && !corrupt.contains(b))
        .collect();
    let present: HashSet<Digest> = present.union(&fresh).cloned().collect();
    let mut batch = Batch::default();

    // An image whose manifest or config is gone cannot be described and is
    // dropped; one missing only layers keeps its record and tags, and a pull
    // of the same reference fetches the missing layers again.
    let mut healthy: BTreeMap<String, ImageRecord> = BTreeMap::new();
    for (key, image) in &images {
        report.images_checked += 1;
        let names: Vec<&String> = refs
            .iter()
            .filter(|(_, m)| **m == image.manifest_digest)
            .map(|(k, _)| k)
            .collect();
        let shown = if names.is_empty() {
            "untagged".to_string()
        } else {
            join(&names)
        };
        let missing: Vec<String> = image
            .blobs()
            .iter()
            .filter(|b| !present.contains(b))
            .map(|b| b.to_string())
            .collect();
        let describable = present.contains(&image.manifest_digest) && present.contains(&image.config_digest);
        if !missing.is_empty() {
            report.problems.push(format!(
                "image {} ({shown}) is missing or has corrupt blobs: {} (pull it again to fetch them)",
                image.config_digest.short(),
                missing.join(", ")
            ));
        }
        if describable {
            if !missing.is_empty() && repair {
                report.lost.push(format!(
                    "layers {} of image {} ({shown}): pull it again to fetch them",
                    missing.join(", "),
                    image.config_digest.short()
                ));
            }
            healthy.insert(key.clone(), image.clone());
        } else if repair {
            batch.del_image(&image.manifest_digest);
            report.lost.push(format!(
                "image {} ({shown}): pull it again to restore it",
                image.manifest_digest
            ));
        }
    }

    for (key, manifest) in &refs {
        if !healthy.contains_key(manifest.as_str()) {
            if !images.contains_key(manifest.as_str()) {
                report
                    .problems
                    .push(format!("reference {key} points to unknown image {manifest}"));
            }
            if repair {
                batch.del_ref(key);
                report.lost.push(format!("tag {key}"));
            }
        }
    }

    // Layer records must exist for every layer of every healthy image.
    let mut wanted_layers: HashSet<&Digest> = HashSet::new();
    for image in healthy.values() {
        for layer in &image.layers {
            wanted_layers.insert(layer);
            if !layers.contains_key(layer.as_str()) {
                report.problems.push(format!("layer record for {layer} is missing"));
            }
        }
    }
    for (key, layer) in &layers {
        if !wanted_layers.contains(&layer.digest) {
            report.problems.push(format!("layer record {key} belongs to no image"));
            if repair {
                batch.del_layer(&layer.digest);
            }
        }
    }
    // Dead pulls' leases protect nothing (garbage collection ignores them),
    // so they are not problems; a repair removes them, files and records.
    if repair {
        for id in mocker.index.drop_dead_leases(s)? {
            report.repaired.push(format!("dropped the lease of dead pull {id}"));
        }
    }

    // Blobs nobody references: restore complete images from manifests on
    // disk (their tags are gone), delete the rest.
    let keep = referenced_blobs(&mocker.index, s, healthy.values())?;
    // Only blobs that were listed (and verified) are candidates for deletion.
    let orphans: Vec<&Digest> = present
        .iter()
        .filter(|d| !keep.contains(*d) && !fresh.contains(*d))
        .collect();
    let mut restored: HashSet<Digest> = HashSet::new();
    let mut index_of: HashMap<Digest, Digest> = HashMap::new();
    let mut manifests = Vec::new();
    for digest in &orphans {
        let Some(doc) = read_document(mocker, digest) else {
            continue;
        };
        match doc {
            Document::Index(index) => {
                for entry in index.manifests() {
                    if let Ok(child) = Digest::parse(entry.digest().as_ref()) {
                        index_of.insert(child, (*digest).clone());
                    }
                }
            }
            Document::Manifest(m) => manifests.push(((*digest).clone(), m)),
        }
    }
    for (digest, manifest) in manifests {
        let Some((image, layer_records)) =
            restore(mocker, &present, &digest, &manifest, index_of.get(&digest).cloned())
        else {
            continue;
        };
        report
            .problems
            .push(format!("image manifest {digest} is on disk but not in the index"));
        if repair {
            for layer in &layer_records {
                batch.put_layer(layer);
            }
            restored.extend(image.blobs());
            batch.put_image(&image);
            report.repaired.push(format!(
                "restored image {} (untagged) from manifest {digest}",
                image.config_digest.short()
            ));
        }
    }
    for digest in orphans {
        if restored.contains(digest) {
            continue;
        }
        report.problems.push(format!("blob {digest} is not used by any image"));
        if repair {
            mocker.store.delete(digest)?;
            report.repaired.push(format!("deleted unused blob {digest}"));
        }
    }
    if repair {
        s.apply(&batch)?;
    }
    Ok(())
}

fn read_document(mocker: &Mocker, digest: &Digest) -> Option<Document> {
    if mocker.store.size(digest)? > MAX_MANIFEST_BYTES {
        return None;
    }
    let bytes = mocker.store.read_small(digest, MAX_MANIFEST_BYTES).ok()?;
    if bytes.first() != Some(&b'{') {
        return None;
    }
    manifest::parse_document(&bytes, "stored document").ok()
}

/// An image record for a manifest whose config and layers are all present.
fn restore(
    mocker: &Mocker,
    present: &HashSet<Digest>,
    digest: &Digest,
    manifest: &oci_spec::image::ImageManifest,
    index_digest: Option<Digest>,
) -> Option<(ImageRecord, Vec<crate::index::LayerRecord>)> {
    let config_digest = Digest::parse(manifest.config().digest().as_ref()).ok()?;
    let layers_present = manifest
        .layers()
        .iter()
        .all(|l| Digest::parse(l.digest().as_ref()).is_ok_and(|d| present.contains(&d)));
    if !present.contains(&config_digest) || !layers_present {
        return None;
    }
    let bytes = mocker.store.read_small(&config_digest, MAX_CONFIG_BYTES).ok()?;
    let config = manifest::parse_config(&bytes, manifest.layers().len(), "config").ok()?;
    let size = mocker.store.size(digest)?;
    describe_image(digest, size, manifest, index_digest, &config).ok()
}

fn join(names: &[&String]) -> String {
    names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}
