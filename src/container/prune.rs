//! `container prune`.

use super::bridge::remove_unused_bridge;
use super::host::{Host, Linux};
use super::lookup::list;
use super::paths::dir_of;
use super::remove::{discard, sweep_unfinished_creates};
use super::state::Status;
use crate::error::Result;
use crate::Mocker;

/// Remove every container that is not running, then the bridge if no
/// container is left on it; the containers' ids.
pub fn prune(mocker: &Mocker) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for container in list(mocker, true)? {
        let dir = dir_of(mocker, &container.record.id);
        if container.state.status == Status::Running {
            continue;
        }
        if !Linux.claim_for_removal(&dir) {
            // Being started right now: not a stopped container.
            continue;
        }
        discard(&Linux, mocker, &container.record.id, container.config.as_ref())?;
        removed.push(container.record.id);
    }
    // Also what creates killed before their record left, which no `rm`
    // can name (there may be no container left to `rm` at all).
    mocker.index.session(|s| sweep_unfinished_creates(mocker, s))?;
    remove_unused_bridge(mocker)?;
    Ok(removed)
}
