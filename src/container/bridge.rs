//! Bridge removal: network policy that needs the index's addresses.

use std::path::Path;

use crate::error::Result;
use crate::runtime::network::{self, Bridge};
use crate::Mocker;

/// Remove the bridge (`MOCKER_BRIDGE`) and its rules when no container of
/// this root has an address on it, no root on the host holds a live claim
/// on it and nothing is enslaved to it (decided under the network lock);
/// whether this call removed it. Like docker0 it otherwise stays.
pub fn remove_unused_bridge(mocker: &Mocker) -> Result<bool> {
    let bridge = Bridge::from_env()?;
    // This root's records also cover claims lost at reboot; the claims
    // cover every root (this one's later creates included).
    if !Path::new("/sys/class/net").join(&bridge.name).exists()
        || !mocker.index.session(|s| s.addresses(&bridge.name))?.is_empty()
    {
        return Ok(false);
    }
    network::remove_bridge_if_unused(&network::lock()?, &bridge)
}
