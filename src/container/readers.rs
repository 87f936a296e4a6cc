//! `readers.lock` in a container's directory. `diff` and `commit` hold it
//! shared while they read the writable layer, and `rm` takes it
//! exclusively before that layer goes, so a commit never reads a layer
//! being deleted. It also tells a stale freeze from a live one: a commit
//! killed while its container was paused leaves the cgroup frozen (nothing
//! else freezes one), and only when no reader holds the lock may a signal
//! thaw it.

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// A shared hold on the container's writable layer.
#[derive(Debug)]
pub struct Reading(#[allow(dead_code)] Flock<File>);

fn open(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("readers.lock"))
}

/// Hold the container in `dir` against removal while reading its layer
/// (waits for a removal under way, which then leaves nothing to read).
pub(super) fn hold(dir: &Path) -> Result<Reading> {
    let failed = |e: std::io::Error| Error::io(format!("locking {}", dir.display()), e);
    let file = open(dir).map_err(failed)?;
    Flock::lock(file, FlockArg::LockShared)
        .map(Reading)
        .map_err(|(_, errno)| failed(errno.into()))
}

/// Wait until no reader holds the container in `dir`; the lock keeps new
/// ones out until dropped. None if there is no directory left to lock.
pub(super) fn exclude(dir: &Path) -> Option<Flock<File>> {
    Flock::lock(open(dir).ok()?, FlockArg::LockExclusive).ok()
}

/// Whether no reader holds the container in `dir` right now.
pub(super) fn unheld(dir: &Path) -> bool {
    match open(dir) {
        Ok(file) => Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok(),
        Err(_) => true,
    }
}
