//! `kill`: a signal to the container's PID 1.

use nix::sys::signal::Signal;

use super::error::ContainerError;
use super::host::{Host, Linux};
use super::lookup::get;
use super::paths::dir_of;
use super::state::Status;
use crate::error::Result;
use crate::Mocker;

/// Send a signal to the container's PID 1.
pub fn kill(mocker: &Mocker, query: &str, signal: Signal) -> Result<()> {
    let container = get(mocker, query)?;
    if container.state.status != Status::Running {
        return Err(ContainerError::KillNotRunning {
            query: query.to_string(),
            id: container.record.id,
        }
        .into());
    }
    Linux.signal(&dir_of(mocker, &container.record.id), container.state.pid, signal)
}
