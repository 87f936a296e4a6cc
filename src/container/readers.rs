//! `readers.lock` in a container's directory: who may read the writable
//! layer while what else waits.
//! - `diff` and an unpausing `commit` hold it shared while they read;
//! - a pausing `commit` holds it exclusively: it alone freezes a container,
//!   and two never thaw each other's freeze;
//! - `rm` takes it exclusively before the layer goes, so it waits for
//!   every reader rather than cut a layer short;
//! - `stop`, and the thaw of a stale freeze (a pausing commit that died),
//!   take it shared: they wait for a pausing commit only, after which a
//!   frozen cgroup is one nobody will thaw.
//!
//! The file is made by `create`. `rm` deletes `config.json` before it, so
//! a reader that finds the file gone finds the container gone too; only a
//! container created before the file existed gets it from its first reader.

use std::fs::File;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::paths::open_lock_file;
use crate::error::{Error, Result};

/// A hold on the container's writable layer, shared or exclusive.
#[derive(Debug)]
pub struct Reading(#[allow(dead_code)] Flock<File>);

pub(super) fn path(dir: &Path) -> std::path::PathBuf {
    dir.join("readers.lock")
}

/// Make the lock file (at create).
pub(super) fn make(dir: &Path) -> Result<()> {
    open_lock_file(&path(dir), true)
        .map(drop)
        .map_err(|e| Error::io(format!("creating {}", path(dir).display()), e))
}

/// Hold the container in `dir` (`query` as the user named it) while
/// reading its layer, exclusively if the reader will freeze it; waits for
/// a removal under way, after which the container is gone.
pub(super) fn hold(dir: &Path, query: &str, exclusive: bool) -> Result<Reading> {
    let gone = || Error::NoSuchContainer(query.to_string());
    let failed = |e: std::io::Error| Error::io(format!("locking {}", path(dir).display()), e);
    let file = match open_lock_file(&path(dir), false) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir.join("config.json").exists() => {
            open_lock_file(&path(dir), true).map_err(failed)?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(gone()),
        Err(e) => return Err(failed(e)),
    };
    let how = if exclusive {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockShared
    };
    let lock = Flock::lock(file, how).map_err(|(_, errno)| failed(errno.into()))?;
    // A removal that held it before us has deleted the container since.
    if !dir.join("config.json").exists() {
        return Err(gone());
    }
    Ok(Reading(lock))
}

/// Wait until no reader holds the container in `dir`; the lock keeps new
/// ones out until dropped. None if there is no lock file (no reader).
pub(super) fn exclude(dir: &Path) -> Option<Flock<File>> {
    lock(dir, FlockArg::LockExclusive)
}

/// Wait until no pausing commit holds the container in `dir`; the lock
/// keeps one from starting until dropped. None if there is no lock file.
pub(super) fn unpaused(dir: &Path) -> Option<Flock<File>> {
    lock(dir, FlockArg::LockShared)
}

fn lock(dir: &Path, how: FlockArg) -> Option<Flock<File>> {
    Flock::lock(open_lock_file(&path(dir), false).ok()?, how).ok()
}
