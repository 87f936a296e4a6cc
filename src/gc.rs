//! Garbage collection: what the images, live pulls and containers
//! reference, and deleting the rest — blobs, snapshots, and what killed
//! pulls and collections left. Used by `rmi`, `system prune`, a failed pull
//! and `system check`.

use std::collections::HashSet;

use crate::digest::Digest;
use crate::error::Result;
use crate::index::{Batch, ImageRecord, Index, Lease, Session, SnapshotRecord};
use crate::snapshot;
use crate::Mocker;

/// Name prefix of the scratch space `load` and `import` spool archive
/// members into, under the root.
const SPOOL_PREFIX: &str = "tmp-load-";

/// A spool directory under the root, flocked while its owner lives, so a
/// sweep removes only what a killed `load` or `import` left.
pub(crate) struct Spool {
    dir: tempfile::TempDir,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Spool {
    pub(crate) fn new(root: &std::path::Path) -> std::io::Result<Spool> {
        loop {
            let dir = tempfile::Builder::new().prefix(SPOOL_PREFIX).tempdir_in(root)?;
            if let Some(lock) = crate::safefs::lock_fresh(dir.path())? {
                return Ok(Spool { dir, _lock: lock });
            }
        }
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// Remove the spools no live process holds; the bytes freed.
fn sweep_spools(root: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(root) else { return 0 };
    let mut freed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(SPOOL_PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = std::fs::File::open(&path) else { continue };
        // Held: a live load. Taken: ours to delete (the lock goes with it).
        if let Ok(_lock) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            freed += crate::safefs::remove_tree_measured(&path).unwrap_or(0);
        }
    }
    freed
}

/// Finish what killed collections and pulls left, as every collection
/// (`rmi`, `system prune`) does: drop dead pulls' leases (records and
/// files), record or trash the snapshot directories no record names (see
/// `Snapshotter::sweep_unrecorded`), delete `trash-*` and stale `tmp-*`
/// directories. Returns the bytes freed.
pub(crate) fn sweep(mocker: &Mocker) -> Result<u64> {
    let trash = mocker.index.session(|s| {
        mocker.index.drop_dead_leases(s)?;
        let images = s.images()?;
        let needed = referenced_snapshots(&mocker.index, s, images.values())?;
        let unrecorded = mocker.snapshots.sweep_unrecorded(s, &needed)?;
        s.flush()?;
        Ok(unrecorded.trash)
    })?;
    Ok(snapshot::delete_all(trash)? + mocker.snapshots.sweep_partial_builds() + sweep_spools(&mocker.root))
}

/// What [`collect_unreferenced`] deleted.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub blob_bytes: u64,
    pub snapshots: Vec<SnapshotRecord>,
    /// Bytes of file data freed by deleting `snapshots`.
    pub snapshot_bytes: u64,
}

/// Delete those of `candidates` (blob digests or snapshot chain IDs) that no
/// image, live pull or container uses — what a failed pull leaves behind —
/// or, with `None`, every blob and snapshot nothing uses (`system prune`).
pub(crate) fn collect_unreferenced(mocker: &Mocker, candidates: Option<&[Digest]>) -> Result<Collected> {
    let (mut collected, trash) = mocker.index.session(|s| {
        let candidates: Vec<Digest> = match candidates {
            Some(c) => c.to_vec(),
            None => {
                let chains = s.snapshots()?.into_values().map(|r| r.chain_id);
                mocker.store.list()?.0.into_iter().chain(chains).collect()
            }
        };
        let images = s.images()?;
        let keep_blobs = referenced_blobs(&mocker.index, s, images.values())?;
        let keep_snapshots = referenced_snapshots(&mocker.index, s, images.values())?;
        let mut batch = Batch::default();
        let mut blobs = Vec::new();
        let mut collected = Collected::default();
        for digest in &candidates {
            if !keep_blobs.contains(digest) && mocker.store.has(digest) {
                batch.del_layer(digest);
                blobs.push(digest);
            }
            if !keep_snapshots.contains(digest) {
                if let Some(snapshot) = s.get_snapshot(digest)? {
                    batch.del_snapshot(digest);
                    collected.snapshots.push(snapshot);
                }
            }
        }
        s.apply(&batch)?;
        s.flush()?;
        for digest in blobs {
            collected.blob_bytes += mocker.store.size(digest).unwrap_or(0);
            mocker.store.delete(digest)?;
        }
        // Out of the numbered namespace before the session ends (see `images::remove`).
        let mut trash = Vec::new();
        for snapshot in &collected.snapshots {
            trash.extend(mocker.snapshots.trash(snapshot.id)?);
        }
        Ok((collected, trash))
    })?;
    collected.snapshot_bytes = snapshot::delete_all(trash)?;
    Ok(collected)
}

/// Blobs the given images need plus those leased by live pulls.
pub(crate) fn referenced_blobs<'a>(
    index: &Index,
    session: &Session,
    images: impl IntoIterator<Item = &'a ImageRecord>,
) -> Result<HashSet<Digest>> {
    let mut keep: HashSet<Digest> = images.into_iter().flat_map(|i| i.blobs()).collect();
    for (id, lease) in session.leases()? {
        if index.lease_is_live(&id) {
            keep.extend(lease.digests.iter().cloned());
        }
    }
    Ok(keep)
}

/// Snapshots the given images use, those leased by live pulls, and every
/// ancestor of an active (container) snapshot.
pub(crate) fn referenced_snapshots<'a>(
    index: &Index,
    session: &Session,
    images: impl IntoIterator<Item = &'a ImageRecord>,
) -> Result<HashSet<Digest>> {
    let mut keep: HashSet<Digest> = images.into_iter().flat_map(|i| i.chain_ids.iter().cloned()).collect();
    for (id, lease) in session.leases()? {
        if index.lease_is_live(&id) {
            keep.extend(lease.digests.iter().cloned());
        }
    }
    for active in session.actives()?.values() {
        let mut next = active.parent.clone();
        while let Some(chain_id) = next {
            next = session.get_snapshot(&chain_id)?.and_then(|r| r.parent);
            keep.insert(chain_id);
        }
    }
    Ok(keep)
}

/// A lease: what a pull, commit, load or import is making, kept from every
/// collection while it runs. Holds the lease's lock and removes its record
/// if the work fails (a success drops it in the batch that records the
/// image). Drop cannot be async; the index session is short, so it runs
/// inline.
pub struct LeaseGuard<'a> {
    mocker: &'a Mocker,
    pub(crate) id: String,
    _lock: crate::index::LeaseLock,
    /// Set once a batch that deletes the lease record has been applied.
    pub(crate) committed: bool,
}

impl<'a> LeaseGuard<'a> {
    /// Take a new lease on `digests`: its lock first, then its record.
    pub(crate) fn hold(mocker: &'a Mocker, digests: &[Digest]) -> Result<Self> {
        let id = format!("{}-{}", std::process::id(), now_nanos());
        let lock = mocker.index.hold_lease(&id)?;
        let guard = LeaseGuard {
            mocker,
            id,
            _lock: lock,
            committed: false,
        };
        guard.record(digests)?;
        Ok(guard)
    }

    /// Make the lease cover exactly `digests`.
    pub(crate) fn record(&self, digests: &[Digest]) -> Result<()> {
        let mut batch = Batch::default();
        batch.put_lease(
            &self.id,
            &Lease {
                pid: std::process::id(),
                digests: digests.to_vec(),
            },
        );
        self.mocker.index.session(|s| s.apply(&batch))
    }
}

impl Drop for LeaseGuard<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let mut batch = Batch::default();
        batch.del_lease(&self.id);
        // A record left behind by a failed delete (or a kill) is harmless:
        // its lock dies with this process, and garbage collection ignores
        // unlocked leases and removes them with their files.
        let _ = self.mocker.index.session(|s| s.apply(&batch));
    }
}
fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[cfg(test)]
mod spool_tests {
    use super::*;

    #[test]
    fn a_sweep_removes_dead_spools_and_keeps_live_ones() {
        let root = tempfile::tempdir().unwrap();
        let live = Spool::new(root.path()).unwrap();
        std::fs::write(live.path().join("layer.tar"), b"in use").unwrap();
        let dead = root.path().join(format!("{SPOOL_PREFIX}killed"));
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("layer.tar"), b"left by a kill").unwrap();
        assert_eq!(sweep_spools(root.path()), 14);
        assert!(!dead.exists());
        assert!(live.path().join("layer.tar").exists());
    }
}
