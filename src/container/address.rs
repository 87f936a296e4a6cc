//! Host-wide address claims on the bridge for containers of this root.

use super::host::Host;
use super::paths::{dir_of, make_dir};
use crate::error::Result;
use crate::runtime::network::Bridge;
use crate::Mocker;

/// Claim a free address on `bridge` for container `id`, host-wide, under
/// the network lock (inside `s`, the caller's index session: the index
/// lock is always taken before the network lock). Free means: no live
/// claim of any root, no address of this root's index (a claim lost at
/// reboot), no live neighbour on the bridge. The container's directory is
/// made first, as a claim without one is stale.
pub(super) fn claim_address(
    host: &dyn Host,
    mocker: &Mocker,
    s: &crate::index::Session,
    bridge: &Bridge,
    id: &str,
) -> Result<std::net::Ipv4Addr> {
    make_dir(mocker, id)?;
    let ours = s.addresses(&bridge.name)?;
    let claimed = host.claim_address(&mocker.root, bridge, id, &ours);
    if claimed.is_err() {
        let _ = std::fs::remove_dir(dir_of(mocker, id));
    }
    claimed
}

/// Drop container `id`'s host-wide claim of `address`. Best effort: a
/// claim left behind is stale once the container's directory is gone, and
/// the next allocation on that bridge reclaims it.
pub(super) fn release_address(
    host: &dyn Host,
    mocker: &Mocker,
    id: &str,
    address: Option<&(String, std::net::Ipv4Addr)>,
) {
    let Some((bridge, addr)) = address else {
        return;
    };
    if let Err(e) = host.release_address(&mocker.root, id, bridge, *addr) {
        eprintln!("warning: releasing {addr} on bridge {bridge}: {e}");
    }
}
