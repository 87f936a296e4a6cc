//! Durability in one step. A pull writes its blobs and snapshot trees
//! without an fsync per file, then makes everything durable with one
//! `syncfs` per filesystem before anything is renamed into view. The
//! [`Synced`] token is the proof a publish step asks for, so no code path
//! can publish bytes that were not synced first.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// Everything written before [`sync_filesystems`] returned it is on disk.
pub struct Synced {
    _private: (),
}

/// One `syncfs` for each distinct filesystem holding one of `paths`.
pub fn sync_filesystems(paths: &[&Path]) -> Result<Synced> {
    let mut done = Vec::new();
    for path in paths {
        let dir = File::open(path).ctx(|| format!("opening {}", path.display()))?;
        let dev = dir.metadata().ctx(|| format!("stat {}", path.display()))?.dev();
        if done.contains(&dev) {
            continue;
        }
        nix::unistd::syncfs(&dir).map_err(|e| Error::io(format!("syncing {}", path.display()), e.into()))?;
        done.push(dev);
    }
    Ok(Synced { _private: () })
}

/// fsync a directory so a rename or unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing directory {}", dir.display()))
}
