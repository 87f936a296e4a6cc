//! Waiting for a container's exit.

use super::lookup::{find, state_of, Container};
use super::monitor;
use super::paths::dir_of;
use super::remove::remove_container;
use super::start::Started;
use super::state::State;
use crate::error::{Error, Result};
use crate::Mocker;

/// Wait for a container started attached (`run` without `-d`, `start -a`)
/// to end; its exit code. For `--rm`, its monitor removes it and then exits
/// with that code, as docker's daemon does, so a killed CLI leaves nothing;
/// if the monitor was killed first, the state tells the code and the
/// removal is ours.
pub fn wait_attached(mocker: &Mocker, container: Container, started: Started) -> Result<i32> {
    let id = container.record.id.clone();
    let auto_remove = container.config()?.auto_remove;
    let Some(mut monitor) = started.monitor.filter(|_| auto_remove) else {
        // Its lock goes once the exit is recorded, before the network is
        // tidied up: no need to wait for the monitor's own end.
        return Ok(wait_for_exit(mocker, &id)?.exit_code);
    };
    if let Some(code) = monitor.wait().ok().and_then(|s| s.code()) {
        return Ok(code);
    }
    let state = wait_for_exit(mocker, &id)?;
    let code = state.exit_code;
    remove_container(mocker, Container { state, ..container }, true)?;
    Ok(code)
}

/// Block until the container is not running; its exit code.
pub fn wait(mocker: &Mocker, query: &str) -> Result<i32> {
    let record = find(mocker, query)?;
    Ok(wait_for_exit(mocker, &record.id)?.exit_code)
}

/// Block until the monitor of container `id` (a full id) has recorded its
/// exit and let go of its lock; its state then. No index session.
pub fn wait_for_exit(mocker: &Mocker, id: &str) -> Result<State> {
    let dir = dir_of(mocker, id);
    // Held until the exit is read: a `--rm` container's monitor waits for
    // it before removing the container.
    // (Opened, never created: a file made here could land in a directory
    // a removal is emptying.)
    let _reading = std::fs::File::open(monitor::waiters_lock_path(&dir))
        .ok()
        .and_then(|f| nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockShared).ok());
    monitor::wait_for_lock(&monitor::lock_path(&dir));
    if !dir.exists() {
        // Removed (by `rm -f`, or a `--rm` monitor we came too late for).
        return Err(Error::NoSuchContainer(id.to_string()));
    }
    state_of(mocker, id)
}
