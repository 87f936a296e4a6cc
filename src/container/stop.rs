//! `stop`: docker's SIGTERM, then SIGKILL.

use std::time::Duration;

use super::host::{self, Linux};
use super::lookup::get;
use super::paths::dir_of;
use super::state::Status;
use crate::error::Result;
use crate::Mocker;

/// docker's stop: SIGTERM, then SIGKILL after `timeout`.
pub fn stop(mocker: &Mocker, query: &str, timeout: Duration) -> Result<()> {
    let container = get(mocker, query)?;
    if container.state.status != Status::Running {
        return Ok(());
    }
    let dir = dir_of(mocker, &container.record.id);
    host::terminate(&Linux, &dir, container.state.pid, timeout)
}

/// The running container `id`'s PID 1 as a pidfd, if it still runs as
/// `pid` (see [`host::pid1`]); ENOSYS before Linux 5.3.
pub fn pid1(mocker: &Mocker, id: &str, pid: u32) -> std::io::Result<Option<crate::runtime::pidfd::Pidfd>> {
    host::pid1(&dir_of(mocker, id), pid)
}
