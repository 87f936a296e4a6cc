//! `system check [--repair]`. The blobs on disk are the truth; the index is a
//! cache of what they mean plus the one thing only it knows (tags). A check
//! re-hashes every blob and cross-checks every index entry against the disk;
//! a repair rebuilds what the blobs can tell and says what was lost.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gc::{referenced_blobs, referenced_snapshots};
use crate::index::{Batch, Contents, ImageRecord, Session};
use crate::manifest::{self, Document, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
use crate::records::describe_image;
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
    check_partial_builds(snapshots, repair, report);
    let dirs: HashSet<u64> = snapshots.numbered_dirs()?.into_iter().map(|(id, _)| id).collect();
    let (needed, trash) = mocker
        .index
        .session(|s| check_snapshot_records(mocker, s, &dirs, repair, report))?;
    delete_all(trash)?;
    check_unrecorded_snapshots(mocker, &needed, repair, report)?;
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

/// Unpacks and deletions that a kill cut short.
fn check_partial_builds(snapshots: &crate::snapshot::Snapshotter, repair: bool, report: &mut CheckReport) {
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
}

/// Inside one session: snapshot records without directories or users,
/// writable ones without directories, images with layers not unpacked.
/// Returns the chains images need and the directories to delete.
fn check_snapshot_records(
    mocker: &Mocker,
    s: &Session,
    dirs: &HashSet<u64>,
    repair: bool,
    report: &mut CheckReport,
) -> Result<(HashSet<Digest>, Vec<crate::snapshot::Trash>)> {
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
            trash.extend(mocker.snapshots.trash(id)?);
        }
    }
    Ok((needed, trash))
}

/// Snapshot directories the index does not record: restored if an image
/// needs them, deleted otherwise.
fn check_unrecorded_snapshots(
    mocker: &Mocker,
    needed: &HashSet<Digest>,
    repair: bool,
    report: &mut CheckReport,
) -> Result<()> {
    let snapshots = &mocker.snapshots;
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
    Ok(())
}

/// What one check pass finds and, when repairing, what it changes: report
/// lines and the index batch applied at the end.
struct Pass<'a> {
    repair: bool,
    report: &'a mut CheckReport,
    batch: Batch,
}

impl Pass<'_> {
    fn problem(&mut self, line: String) {
        self.report.problems.push(line);
    }
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
    let mut pass = Pass {
        repair,
        report,
        batch: Batch::default(),
    };
    drop_corrupt_entries(s, &corrupt_entries, &mut pass)?;
    // A pull may have committed blobs since the store was listed: count
    // those as present rather than report (or repair away) a fresh image.
    let fresh: HashSet<Digest> = images
        .values()
        .flat_map(|i| i.blobs())
        .filter(|b| !present.contains(b) && mocker.store.has(b) && !corrupt.contains(b))
        .collect();
    let present: HashSet<Digest> = present.union(&fresh).cloned().collect();
    let healthy = check_images(&images, &refs, &present, &mut pass);
    check_refs(&refs, &images, &healthy, &mut pass);
    check_layer_records(&healthy, &layers, &mut pass);
    // Dead pulls' leases protect nothing (garbage collection ignores them),
    // so they are not problems; a repair removes them, files and records.
    if repair {
        for id in mocker.index.drop_dead_leases(s)? {
            pass.report
                .repaired
                .push(format!("dropped the lease of dead pull {id}"));
        }
    }
    let keep = referenced_blobs(&mocker.index, s, healthy.values())?;
    // Only blobs that were listed (and verified) are candidates for deletion.
    let orphans: Vec<&Digest> = present
        .iter()
        .filter(|d| !keep.contains(*d) && !fresh.contains(*d))
        .collect();
    check_orphans(mocker, &present, orphans, &mut pass)?;
    if repair {
        s.apply(&pass.batch)?;
    }
    Ok(())
}

fn drop_corrupt_entries(s: &Session, corrupt: &[(String, String)], pass: &mut Pass) -> Result<()> {
    for (key, reason) in corrupt {
        pass.problem(format!("index entry {key} is corrupt: {reason}"));
    }
    if pass.repair && !corrupt.is_empty() {
        let keys: Vec<String> = corrupt.iter().map(|(k, _)| k.clone()).collect();
        s.remove_keys(&keys)?;
        pass.report
            .repaired
            .push(format!("dropped {} corrupt index entries", keys.len()));
    }
    Ok(())
}

/// An image whose manifest or config is gone cannot be described and is
/// dropped; one missing only layers keeps its record and tags, and a pull
/// of the same reference fetches the missing layers again. Returns the
/// images kept.
fn check_images(
    images: &BTreeMap<String, ImageRecord>,
    refs: &BTreeMap<String, Digest>,
    present: &HashSet<Digest>,
    pass: &mut Pass,
) -> BTreeMap<String, ImageRecord> {
    let mut healthy = BTreeMap::new();
    for (key, image) in images {
        pass.report.images_checked += 1;
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
        let id = image.config_digest.short();
        if !missing.is_empty() {
            pass.problem(format!(
                "image {id} ({shown}) is missing or has corrupt blobs: {} (pull it again to fetch them)",
                missing.join(", ")
            ));
        }
        if present.contains(&image.manifest_digest) && present.contains(&image.config_digest) {
            if !missing.is_empty() && pass.repair {
                let missing = missing.join(", ");
                pass.report.lost.push(format!(
                    "layers {missing} of image {id} ({shown}): pull it again to fetch them"
                ));
            }
            healthy.insert(key.clone(), image.clone());
        } else if pass.repair {
            pass.batch.del_image(&image.manifest_digest);
            pass.report.lost.push(format!(
                "image {} ({shown}): pull it again to restore it",
                image.manifest_digest
            ));
        }
    }
    healthy
}

/// Tags of images that are gone or dropped.
fn check_refs(
    refs: &BTreeMap<String, Digest>,
    images: &BTreeMap<String, ImageRecord>,
    healthy: &BTreeMap<String, ImageRecord>,
    pass: &mut Pass,
) {
    for (key, manifest) in refs {
        if healthy.contains_key(manifest.as_str()) {
            continue;
        }
        if !images.contains_key(manifest.as_str()) {
            pass.problem(format!("reference {key} points to unknown image {manifest}"));
        }
        if pass.repair {
            pass.batch.del_ref(key);
            pass.report.lost.push(format!("tag {key}"));
        }
    }
}

/// Layer records must exist for every layer of every healthy image, and
/// only for those.
fn check_layer_records(
    healthy: &BTreeMap<String, ImageRecord>,
    layers: &BTreeMap<String, crate::index::LayerRecord>,
    pass: &mut Pass,
) {
    let mut wanted: HashSet<&Digest> = HashSet::new();
    for image in healthy.values() {
        for layer in &image.layers {
            wanted.insert(layer);
            if !layers.contains_key(layer.as_str()) {
                pass.problem(format!("layer record for {layer} is missing"));
            }
        }
    }
    for (key, layer) in layers {
        if !wanted.contains(&layer.digest) {
            pass.problem(format!("layer record {key} belongs to no image"));
            if pass.repair {
                pass.batch.del_layer(&layer.digest);
            }
        }
    }
}

/// Blobs nobody references: restore complete images from manifests on
/// disk (their tags are gone), delete the rest.
fn check_orphans(mocker: &Mocker, present: &HashSet<Digest>, orphans: Vec<&Digest>, pass: &mut Pass) -> Result<()> {
    let OrphanDocuments { manifests, index_of } = orphan_documents(mocker, &orphans);
    let mut restored: HashSet<Digest> = HashSet::new();
    for (digest, manifest) in manifests {
        let Some((image, layer_records)) = restore(mocker, present, &digest, &manifest, index_of.get(&digest).cloned())
        else {
            continue;
        };
        pass.problem(format!("image manifest {digest} is on disk but not in the index"));
        if pass.repair {
            for layer in &layer_records {
                pass.batch.put_layer(layer);
            }
            restored.extend(image.blobs());
            pass.batch.put_image(&image);
            pass.report.repaired.push(format!(
                "restored image {} (untagged) from manifest {digest}",
                image.config_digest.short()
            ));
        }
    }
    for digest in orphans.into_iter().filter(|d| !restored.contains(*d)) {
        pass.problem(format!("blob {digest} is not used by any image"));
        if pass.repair {
            mocker.store.delete(digest)?;
            pass.report.repaired.push(format!("deleted unused blob {digest}"));
        }
    }
    Ok(())
}

/// The manifests among unreferenced blobs, and for each manifest an
/// unreferenced index that lists it.
#[derive(Default)]
struct OrphanDocuments {
    manifests: Vec<(Digest, Box<oci_spec::image::ImageManifest>)>,
    index_of: HashMap<Digest, Digest>,
}

fn orphan_documents(mocker: &Mocker, orphans: &[&Digest]) -> OrphanDocuments {
    let mut index_of: HashMap<Digest, Digest> = HashMap::new();
    let mut manifests = Vec::new();
    for digest in orphans {
        match read_document(mocker, digest) {
            Some(Document::Index(index)) => {
                for entry in index.manifests() {
                    if let Ok(child) = Digest::parse(entry.digest().as_ref()) {
                        index_of.insert(child, (*digest).clone());
                    }
                }
            }
            Some(Document::Manifest(m)) => manifests.push(((*digest).clone(), m)),
            None => {}
        }
    }
    OrphanDocuments { manifests, index_of }
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
