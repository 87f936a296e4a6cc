//! Host-wide address claims: which container of which storage root holds
//! which address on a bridge, decided under one host-wide lock. Separate
//! because it is file state shared by every mocker process, not netlink.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::{link_index, with_netlink, Bridge, NetworkError};
use crate::error::{IoContext, Result};

/// Host-wide state (tmpfs: it empties at reboot, as the bridges do).
const RUN_DIR: &str = "/run/mocker";
/// Address claims: `<CLAIMS_DIR>/<bridge>/<addr>`, one file per address.
pub const CLAIMS_DIR: &str = "/run/mocker/ipam";

/// Who holds an address on a bridge: a container of a storage root, and
/// the process that created it (see `Claimant::is_live`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claimant {
    pub root: PathBuf,
    pub id: String,
    pub pid: u32,
}

impl Claimant {
    /// Container `id` of the storage root `root` (which must exist), claimed
    /// by this process.
    pub fn new(root: &Path, id: &str) -> Result<Claimant> {
        Ok(Claimant {
            root: std::fs::canonicalize(root).ctx(|| format!("resolving {}", root.display()))?,
            id: id.to_string(),
            pid: std::process::id(),
        })
    }

    fn same_container(&self, other: &Claimant) -> bool {
        self.root == other.root && self.id == other.id
    }

    /// Whether the container may still exist. Its directory is made before
    /// the claim and removed before the release, so a claim without one is
    /// stale (the container was removed, or its root deleted). A directory
    /// without `config.json` is a create in progress while its creator
    /// lives, and one a kill cut short once it is dead (a reused pid only
    /// delays the reclaim). Anything unreadable counts as live.
    fn is_live(&self) -> bool {
        let dir = self.root.join("containers").join(&self.id);
        match (dir.try_exists(), dir.join("config.json").try_exists()) {
            (Ok(false), _) => false,
            (_, Ok(true)) | (Err(_), _) | (_, Err(_)) => true,
            (Ok(true), Ok(false)) => Path::new("/proc").join(self.pid.to_string()).exists(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "container {} of the root {}",
            &self.id[..12.min(self.id.len())],
            self.root.display()
        )
    }
}

/// What the claims say of one address.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// Claimed by the container asked about.
    Ours,
    /// Unclaimed, or claimed by something stale (now removed).
    Free,
    /// Claimed by another container that may still exist.
    Held(Claimant),
}

/// The host-wide network lock (`/run/mocker/network.lock`), held: address
/// claims and the bridge's creation and removal are decided under it, by
/// every mocker process of every root.
pub struct NetworkLock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

/// Take the host-wide network lock (blocking).
pub fn lock() -> Result<NetworkLock> {
    let dir = Path::new(RUN_DIR);
    std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    let file = std::fs::File::create(dir.join("network.lock")).ctx(|| "opening /run/mocker/network.lock".into())?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map(NetworkLock)
        .map_err(|(_, e)| NetworkError::Lock(e).into())
}

pub(super) fn claims_dir(bridge: &str) -> PathBuf {
    Path::new(CLAIMS_DIR).join(bridge)
}

/// A claim file's holder; `None` if it does not parse, which can only be a
/// claim whose writer was killed mid-write (claims are written under the
/// lock, which we hold), so stale.
fn read_claim(path: &Path) -> Result<Option<Claimant>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx(|| format!("reading {}", path.display())),
    }
}

fn remove_claim_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx(|| format!("removing {}", path.display())),
        _ => Ok(()),
    }
}

impl NetworkLock {
    /// The addresses on `bridge` claimed by containers that may still
    /// exist; stale claims are removed on the way.
    pub fn live_claims(&self, bridge: &str) -> Result<Vec<Ipv4Addr>> {
        let dir = claims_dir(bridge);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| format!("listing {}", dir.display())),
        };
        let mut live = Vec::new();
        for entry in entries {
            let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
            let path = entry.path();
            let Ok(addr) = entry.file_name().to_string_lossy().parse::<Ipv4Addr>() else {
                continue;
            };
            match read_claim(&path)? {
                Some(holder) if holder.is_live() => live.push(addr),
                _ => remove_claim_file(&path)?,
            }
        }
        Ok(live)
    }

    /// What the claims say of `addr` on `bridge` for `claimant`; a stale
    /// claim is removed (and so reported `Free`).
    pub fn claim_of(&self, bridge: &str, addr: Ipv4Addr, claimant: &Claimant) -> Result<Claim> {
        let path = claims_dir(bridge).join(addr.to_string());
        if !path.exists() {
            return Ok(Claim::Free);
        }
        match read_claim(&path)? {
            Some(holder) if holder.same_container(claimant) => Ok(Claim::Ours),
            Some(holder) if holder.is_live() => Ok(Claim::Held(holder)),
            _ => {
                remove_claim_file(&path)?;
                Ok(Claim::Free)
            }
        }
    }

    /// Write `claimant`'s claim of `addr` (which must be `Free`).
    fn write_claim(&self, bridge: &str, addr: Ipv4Addr, claimant: &Claimant) -> Result<()> {
        let dir = claims_dir(bridge);
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let path = dir.join(addr.to_string());
        let bytes = serde_json::to_vec(claimant).map_err(NetworkError::EncodeClaim)?;
        // O_EXCL: never over another's claim, whatever went wrong before.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .ctx(|| format!("claiming {}", path.display()))?;
        std::io::Write::write_all(&mut file, &bytes).ctx(|| format!("writing {}", path.display()))
    }

    /// Claim the lowest address of `bridge`'s subnet that no live claim,
    /// no address in `also_used` (the caller's own records) and no live
    /// neighbour on the bridge (a peer's container, or one whose claim was
    /// lost) has.
    pub fn claim_free(&self, bridge: &Bridge, claimant: &Claimant, also_used: &[Ipv4Addr]) -> Result<Ipv4Addr> {
        let mut used = self.live_claims(&bridge.name)?;
        used.extend_from_slice(also_used);
        used.extend(live_neighbours(&bridge.name)?);
        let addr = bridge.subnet.allocate(&used)?;
        self.write_claim(&bridge.name, addr, claimant)?;
        Ok(addr)
    }

    /// Make sure `claimant` holds `addr` on `bridge` (a start, a restore):
    /// claims it if free; an error naming the holder if another has it
    /// (claims are lost at reboot, so two roots can disagree after one).
    pub fn reclaim(&self, bridge: &str, addr: Ipv4Addr, claimant: &Claimant) -> Result<()> {
        match self.claim_of(bridge, addr, claimant)? {
            Claim::Ours => Ok(()),
            Claim::Free => self.write_claim(bridge, addr, claimant),
            Claim::Held(holder) => Err(NetworkError::AddressHeld {
                addr,
                bridge: bridge.to_string(),
                holder: holder.describe(),
            }
            .into()),
        }
    }

    /// Drop `claimant`'s claim of `addr` (never another's).
    pub fn release(&self, bridge: &str, addr: Ipv4Addr, claimant: &Claimant) -> Result<()> {
        let path = claims_dir(bridge).join(addr.to_string());
        match read_claim(&path)? {
            Some(holder) if !holder.same_container(claimant) => Ok(()),
            _ => {
                remove_claim_file(&path)?;
                // The bridge's last claim: its directory goes too (ENOTEMPTY
                // otherwise). Claims are created under the lock, so no race.
                let _ = std::fs::remove_dir(claims_dir(bridge));
                Ok(())
            }
        }
    }
}

/// Addresses on `bridge`'s side that answered recently (reachable,
/// probed or permanent neighbours): in use, whoever claimed them. Stale
/// entries are not: the kernel keeps them long after a container is gone.
fn live_neighbours(bridge: &str) -> Result<Vec<Ipv4Addr>> {
    use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
    if !Path::new("/sys/class/net").join(bridge).exists() {
        return Ok(Vec::new());
    }
    let neighbours = with_netlink(async |handle| {
        let Some(index) = link_index(&handle, bridge).await? else {
            return Ok(Vec::new());
        };
        let mut neighbours = handle
            .neighbours()
            .get()
            .set_address_family(rtnetlink::packet_route::AddressFamily::Inet)
            .execute();
        let mut out = Vec::new();
        while let Some(n) = neighbours
            .try_next()
            .await
            .map_err(NetworkError::netlink("listing neighbours"))?
        {
            let live = matches!(
                n.header.state,
                NeighbourState::Reachable | NeighbourState::Delay | NeighbourState::Probe | NeighbourState::Permanent
            );
            if n.header.ifindex != index || !live {
                continue;
            }
            for attr in &n.attributes {
                if let NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) = attr {
                    out.push(*a);
                }
            }
        }
        Ok(out)
    })?;
    Ok(neighbours)
}
