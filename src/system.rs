//! `system prune`: what `images` prunes (unused images, then everything on
//! disk nothing needs), then the bridge network if no container uses it.

use crate::error::Result;
use crate::images::{self, Pruned};
use crate::Mocker;

/// What `system prune` removed.
#[derive(Debug, Default)]
pub struct SystemPruned {
    pub images: Pruned,
    /// The bridge was removed: no container of any root used it.
    pub bridge_removed: bool,
}

/// Prune images (every unused one with `all`, else the untagged ones) and
/// the content they held, then the bridge if it is unused.
pub fn prune(mocker: &Mocker, all: bool) -> Result<SystemPruned> {
    let images = images::prune(mocker, all)?;
    let bridge_removed = crate::container::remove_unused_bridge(mocker)?;
    Ok(SystemPruned { images, bridge_removed })
}
