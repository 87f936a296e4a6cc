//! `readers.lock` in a container's directory. `diff` and `commit` hold it
//! shared while they read the writable layer; `rm` and `stop` take it
//! exclusively first, so they wait for a commit rather than cut its layer
//! short or time out on a container it has frozen. It also tells a stale
//! freeze from a live one: a frozen cgroup whose lock is free was left by
//! a commit that died (nothing else freezes a container), and is thawed
//! under the exclusive lock, so no commit can freeze it meanwhile.
//!
//! The file is made by `create`; only a reader of a container created
//! before it existed makes it, so a removal's deletion never races a new
//! file into the directory it is emptying.

use std::fs::File;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::paths::open_lock_file;
use crate::error::{Error, Result};

/// A shared hold on the container's writable layer.
#[derive(Debug)]
pub struct Reading(#[allow(dead_code)] Flock<File>);

/// An exclusive hold: no reader reads the layer while it lives.
pub(super) type Excluded = Flock<File>;

pub(super) fn path(dir: &Path) -> std::path::PathBuf {
    dir.join("readers.lock")
}

/// Make the lock file (at create).
pub(super) fn make(dir: &Path) -> Result<()> {
    open_lock_file(&path(dir), true)
        .map(drop)
        .map_err(|e| Error::io(format!("creating {}", path(dir).display()), e))
}

/// Hold the container in `dir` (`query` as the user named it) against
/// removal while reading its layer; waits for a removal under way, after
/// which the container is gone.
pub(super) fn hold(dir: &Path, query: &str) -> Result<Reading> {
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
    let lock = Flock::lock(file, FlockArg::LockShared).map_err(|(_, errno)| failed(errno.into()))?;
    // A removal that held it before us has deleted the container since.
    if !dir.join("config.json").exists() {
        return Err(gone());
    }
    Ok(Reading(lock))
}

/// Wait until no reader holds the container in `dir`; the lock keeps new
/// ones out until dropped. None if there is no lock file (no reader).
pub(super) fn exclude(dir: &Path) -> Option<Excluded> {
    Flock::lock(open_lock_file(&path(dir), false).ok()?, FlockArg::LockExclusive).ok()
}

/// A reader holds the container.
pub(super) struct Held;

/// Unless a reader holds the container in `dir` right now, the exclusive
/// hold that keeps one out (None: no lock file, so no reader either).
pub(super) fn unless_held(dir: &Path) -> std::result::Result<Option<Excluded>, Held> {
    match open_lock_file(&path(dir), false) {
        Ok(file) => Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map(Some)
            .map_err(|_| Held),
        Err(_) => Ok(None),
    }
}
