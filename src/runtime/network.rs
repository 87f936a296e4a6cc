//! Bridge networking: a host bridge (`mocker0`, 10.89.0.0/16 unless
//! `MOCKER_BRIDGE` / `MOCKER_BRIDGE_SUBNET` say otherwise) with a veth pair
//! per container, outbound masquerade, and published ports served by a
//! userland proxy in the container's monitor (as docker-proxy does), so a
//! port taken by anything else fails the start instead of being shadowed.
//! Netlink goes through rtnetlink; address choice is pure ([`Subnet`]).
//! The bridge is shared by every storage root on the host, so addresses
//! are claimed host-wide (files under `/run/mocker/ipam`) and the bridge is
//! created and removed, all under one host-wide lock ([`NetworkLock`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

pub const DEFAULT_BRIDGE: &str = "mocker0";
pub const DEFAULT_SUBNET: &str = "10.89.0.0/16";

/// An IPv4 network in CIDR form.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(input: &str) -> Result<Subnet> {
        let invalid = |why: &str| Error::Runtime(format!("invalid subnet {input:?}: {why}"));
        let (addr, prefix) = input.split_once('/').ok_or_else(|| invalid("expected a.b.c.d/len"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid("bad address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid("bad prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(invalid("the prefix length must be between 8 and 30"));
        }
        let subnet = Subnet { network: addr, prefix };
        if subnet.network_addr() != addr {
            return Err(invalid("host bits are set"));
        }
        Ok(subnet)
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    fn network_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) & self.mask())
    }

    /// The bridge's own address: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.network)
    }

    /// Whether two networks share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let mask = self.mask() & other.mask();
        u32::from(self.network) & mask == u32::from(other.network) & mask
    }

    /// The lowest address not in `used`, after the gateway and before broadcast.
    pub fn allocate(&self, used: &[Ipv4Addr]) -> Result<Ipv4Addr> {
        let first = u32::from(self.gateway()) + 1;
        let broadcast = u32::from(self.network) | !self.mask();
        (first..broadcast)
            .map(Ipv4Addr::from)
            .find(|a| !used.contains(a))
            .ok_or_else(|| Error::Runtime(format!("no free address left in {self}")))
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The bridge containers attach to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bridge {
    pub name: String,
    pub subnet: Subnet,
}

impl Bridge {
    /// From `MOCKER_BRIDGE` and `MOCKER_BRIDGE_SUBNET`, or the defaults.
    pub fn from_env() -> Result<Bridge> {
        let name = std::env::var("MOCKER_BRIDGE").unwrap_or_else(|_| DEFAULT_BRIDGE.to_string());
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) || name == "." || name == ".." {
            return Err(Error::Runtime(format!("invalid bridge name {name:?}")));
        }
        let subnet = Subnet::parse(&std::env::var("MOCKER_BRIDGE_SUBNET").unwrap_or_else(|_| DEFAULT_SUBNET.into()))?;
        Ok(Bridge { name, subnet })
    }
}

/// A container's place on a bridge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub bridge: Bridge,
    pub address: Ipv4Addr,
    /// The host end of the veth pair.
    pub host_veth: String,
}

impl Endpoint {
    pub fn new(bridge: Bridge, address: Ipv4Addr, container_id: &str) -> Endpoint {
        Endpoint {
            bridge,
            address,
            host_veth: format!("mk{}", &container_id[..12.min(container_id.len())]),
        }
    }
}

fn netlink_error(what: &str) -> impl Fn(rtnetlink::Error) -> Error + '_ {
    move |e| Error::Runtime(format!("{what}: {e}"))
}

/// Run netlink requests on a current-thread runtime (the monitor is not
/// async, and must start no threads before it clones the container).
fn with_netlink<T>(f: impl AsyncFnOnce(rtnetlink::Handle) -> Result<T>) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Error::Runtime(format!("starting netlink: {e}")))?;
    runtime.block_on(async {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| Error::Runtime(format!("opening netlink: {e}")))?;
        let task = tokio::spawn(connection);
        let result = f(handle).await;
        task.abort();
        result
    })
}

async fn link_index(handle: &rtnetlink::Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::ENODEV => Ok(None),
        Err(e) => Err(Error::Runtime(format!("looking up {name}: {e}"))),
    }
}

/// The host's IPv4 routes (destination, prefix, device index) outside `skip`.
async fn host_routes(handle: &rtnetlink::Handle) -> Result<Vec<(Subnet, Option<u32>)>> {
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
    let mut routes = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut out = Vec::new();
    while let Some(route) = routes.try_next().await.map_err(netlink_error("listing routes"))? {
        let prefix = route.header.destination_prefix_length;
        let mut dest = None;
        let mut dev = None;
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Destination(RouteAddress::Inet(a)) => dest = Some(*a),
                RouteAttribute::Oif(i) => dev = Some(*i),
                _ => {}
            }
        }
        // The default route overlaps everything and is no conflict.
        if let (Some(network), true) = (dest, prefix > 0) {
            out.push((Subnet { network, prefix }, dev));
        }
    }
    Ok(out)
}

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
        .map_err(|(_, e)| Error::Runtime(format!("locking /run/mocker/network.lock: {e}")))
}

fn claims_dir(bridge: &str) -> PathBuf {
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
        let bytes = serde_json::to_vec(claimant).map_err(|e| Error::Runtime(e.to_string()))?;
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
            Claim::Held(holder) => Err(Error::Runtime(format!(
                "address {addr} on bridge {bridge} is held by {}: remove this container and create it again",
                holder.describe()
            ))),
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
    with_netlink(async |handle| {
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
            .map_err(netlink_error("listing neighbours"))?
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
    })
}

/// Run iptables with `verb` (`-C`, `-A`, `-D`) on `rule`; whether it succeeded.
fn iptables(verb: &str, rule: &[String]) -> Result<bool> {
    let output = Command::new("iptables")
        .args(["-w", "5"])
        .args(with_verb(rule, verb))
        .output()
        .map_err(|e| Error::Runtime(format!("running iptables (is it installed?): {e}")))?;
    Ok(output.status.success())
}

/// The masquerade and forward rules for `bridge`.
fn rules(bridge: &Bridge) -> Vec<Vec<String>> {
    let subnet = bridge.subnet.to_string();
    let name = bridge.name.clone();
    vec![
        vec![
            "-t",
            "nat",
            "POSTROUTING",
            "-s",
            &subnet,
            "!",
            "-o",
            &name,
            "-j",
            "MASQUERADE",
        ],
        vec!["FORWARD", "-i", &name, "-j", "ACCEPT"],
        vec!["FORWARD", "-o", &name, "-j", "ACCEPT"],
    ]
    .into_iter()
    .map(|r| r.into_iter().map(str::to_string).collect())
    .collect()
}

/// `rule` with the verb (`-C`, `-A`, `-D`) put before the chain.
fn with_verb(rule: &[String], verb: &str) -> Vec<String> {
    let mut args = rule.to_vec();
    let chain_at = if args[0] == "-t" { 2 } else { 0 };
    args.insert(chain_at, verb.to_string());
    args
}

/// Create the bridge (with its gateway address, forwarding and masquerade)
/// unless it exists, as docker keeps docker0: an existing bridge is taken
/// as set up. A subnet that overlaps a route of the host's is refused.
/// Under the lock, so a concurrent removal (which checks the claims under
/// it too) cannot take the bridge away between this and the caller's use.
pub fn ensure_bridge(_lock: &NetworkLock, bridge: &Bridge) -> Result<()> {
    if Path::new("/sys/class/net").join(&bridge.name).exists() {
        return Ok(());
    }
    let created = with_netlink(async |handle| {
        if link_index(&handle, &bridge.name).await?.is_some() {
            return Ok(false);
        }
        for (route, _) in host_routes(&handle).await? {
            if route.overlaps(&bridge.subnet) {
                return Err(Error::Runtime(format!(
                    "bridge subnet {} conflicts with the host route to {route}: set MOCKER_BRIDGE_SUBNET to a free range",
                    bridge.subnet
                )));
            }
        }
        handle
            .link()
            .add(LinkBridge::new(&bridge.name).build())
            .execute()
            .await
            .map_err(netlink_error("creating the bridge"))?;
        let index = link_index(&handle, &bridge.name)
            .await?
            .ok_or_else(|| Error::Runtime(format!("bridge {} vanished", bridge.name)))?;
        handle
            .address()
            .add(index, IpAddr::V4(bridge.subnet.gateway()), bridge.subnet.prefix)
            .execute()
            .await
            .map_err(netlink_error("addressing the bridge"))?;
        Ok(true)
    })?;
    if !created {
        return Ok(());
    }
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").ctx(|| "enabling IP forwarding".into())?;
    for rule in rules(bridge) {
        if !iptables("-C", &rule)? && !iptables("-A", &rule)? {
            return Err(Error::Runtime(format!("iptables refused the rule {}", rule.join(" "))));
        }
    }
    Ok(())
}

/// Remove the bridge and then its rules if no root on the host has a live
/// claim on it and no interface (a veth, or a peer's) is enslaved to it;
/// whether this call deleted it. The link goes first: a kill between leaves
/// rules without a bridge, which the next `ensure_bridge` finds in place
/// (`-C`) rather than a bridge without rules, which it would take as set up.
pub fn remove_bridge_if_unused(lock: &NetworkLock, bridge: &Bridge) -> Result<bool> {
    let sys = Path::new("/sys/class/net").join(&bridge.name);
    if !sys.exists() || !lock.live_claims(&bridge.name)?.is_empty() {
        return Ok(false);
    }
    let brif = sys.join("brif");
    let enslaved = match std::fs::read_dir(&brif) {
        Ok(mut entries) => entries.next().is_some(),
        // Not a bridge (someone else's link of that name): not ours to remove.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).ctx(|| format!("listing {}", brif.display())),
    };
    if enslaved {
        return Ok(false);
    }
    let deleted = with_netlink(async |handle| {
        let Some(index) = link_index(&handle, &bridge.name).await? else {
            return Ok(false);
        };
        match handle.link().del(index).execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::ENODEV => Ok(false),
            Err(e) => Err(Error::Runtime(format!("removing the bridge {}: {e}", bridge.name))),
        }
    })?;
    for rule in rules(bridge) {
        while iptables("-D", &rule)? {}
    }
    // Empty by now; another claimant recreates it under the lock.
    let _ = std::fs::remove_dir(claims_dir(&bridge.name));
    Ok(deleted)
}

/// Plug the container whose network namespace is `netns` into the bridge:
/// a veth pair whose peer is `eth0` in it, with its address and a default
/// route via the bridge. The pair dies with the namespace.
pub fn attach(netns: std::fs::File, endpoint: &Endpoint) -> Result<()> {
    use std::os::fd::AsRawFd;
    // The peer is born inside the container's namespace, already named
    // eth0: no move between namespaces (which waits for the network stack to
    // quiesce) and no rename.
    let peer = rtnetlink::LinkMessageBuilder::<LinkUnspec>::new()
        .name("eth0".to_string())
        .setns_by_fd(netns.as_raw_fd())
        .build();
    let pair = LinkVeth::new(&endpoint.host_veth, "eth0")
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    with_netlink(async |handle| {
        let bridge_index = link_index(&handle, &endpoint.bridge.name)
            .await?
            .ok_or_else(|| Error::Runtime(format!("bridge {} does not exist", endpoint.bridge.name)))?;
        handle
            .link()
            .add(pair)
            .execute()
            .await
            .map_err(netlink_error("creating the veth pair"))?;
        let host_index = link_index(&handle, &endpoint.host_veth)
            .await?
            .ok_or_else(|| Error::Runtime("the veth pair vanished".into()))?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(host_index)
                    .controller(bridge_index)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(netlink_error("plugging the veth into the bridge"))
    })?;
    // The container's side is configured from inside its namespace, on a
    // thread of our own (setns changes only the calling thread's).
    let endpoint = endpoint.clone();
    std::thread::spawn(move || -> Result<()> {
        nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::Runtime(format!("entering the container's netns: {e}")))?;
        with_netlink(async |handle| {
            let index = link_index(&handle, "eth0")
                .await?
                .ok_or_else(|| Error::Runtime("the container's veth vanished".into()))?;
            handle
                .address()
                .add(index, IpAddr::V4(endpoint.address), endpoint.bridge.subnet.prefix)
                .execute()
                .await
                .map_err(netlink_error("addressing eth0"))?;
            handle
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(netlink_error("bringing eth0 up"))?;
            handle
                .route()
                .add(
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .gateway(endpoint.bridge.subnet.gateway())
                        .build(),
                )
                .execute()
                .await
                .map_err(netlink_error("adding the default route"))
        })
    })
    .join()
    .map_err(|_| Error::Runtime("the netns thread panicked".into()))?
}

/// Delete the host end of the container's veth pair (tolerating another
/// process deleting it at the same time). The kernel deletes the pair with
/// the network namespace, but asynchronously; doing it here means a
/// stopped container leaves no interface behind, at once.
pub fn detach(endpoint: &Endpoint) -> Result<()> {
    if !std::path::Path::new("/sys/class/net")
        .join(&endpoint.host_veth)
        .exists()
    {
        return Ok(());
    }
    with_netlink(async |handle| match link_index(&handle, &endpoint.host_veth).await? {
        Some(index) => match handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::ENODEV => Ok(()),
            Err(e) => Err(Error::Runtime(format!("removing {}: {e}", endpoint.host_veth))),
        },
        None => Ok(()),
    })
}

/// `-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]` (or `CONTAINER_PORT`
/// alone: any free host port).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: IpAddr,
    /// 0 until the monitor binds it.
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

impl PortMapping {
    pub fn parse(input: &str) -> Result<PortMapping> {
        let invalid = |why: &str| Error::Runtime(format!("invalid port mapping {input:?}: {why}"));
        let (spec, protocol) = match input.rsplit_once('/') {
            Some((s, p @ ("tcp" | "udp"))) => (s, p),
            Some(_) => return Err(invalid("the protocol must be tcp or udp")),
            None => (input, "tcp"),
        };
        let port = |s: &str| {
            s.parse::<u16>()
                .map_err(|_| invalid(&format!("{s:?} is not a port number")))
        };
        let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        let (host_ip, host_port, container_port) = match parts.as_slice() {
            [c] => ("0.0.0.0", 0, port(c)?),
            [c, h] => ("0.0.0.0", port(h)?, port(c)?),
            [c, h, ip] => (
                ip.trim_matches(['[', ']']),
                if h.is_empty() { 0 } else { port(h)? },
                port(c)?,
            ),
            _ => return Err(invalid("expected [HOST_IP:]HOST_PORT:CONTAINER_PORT")),
        };
        if container_port == 0 {
            return Err(invalid("the container port cannot be 0"));
        }
        Ok(PortMapping {
            host_ip: host_ip
                .parse()
                .map_err(|_| invalid(&format!("{host_ip:?} is not an IP address")))?,
            host_port,
            container_port,
            protocol: protocol.to_string(),
        })
    }
}

impl std::fmt::Display for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip, self.host_port, self.container_port, self.protocol
        )
    }
}

/// A bound host port, ready to serve.
pub enum Published {
    Tcp(TcpListener, PortMapping),
    Udp(UdpSocket, PortMapping),
}

impl Published {
    pub fn mapping(&self) -> &PortMapping {
        match self {
            Published::Tcp(_, m) | Published::Udp(_, m) => m,
        }
    }
}

/// Bind the host side of `mapping` (before the container starts, so a
/// taken port fails the start). Returns it with the real host port.
pub fn bind(mapping: &PortMapping) -> Result<Published> {
    let addr = SocketAddr::new(mapping.host_ip, mapping.host_port);
    let taken = |e: std::io::Error| {
        Error::Runtime(format!(
            "Bind for {}:{} failed: {}",
            mapping.host_ip,
            mapping.host_port,
            if e.kind() == std::io::ErrorKind::AddrInUse {
                "port is already allocated".to_string()
            } else {
                e.to_string()
            }
        ))
    };
    let mut actual = mapping.clone();
    if mapping.protocol == "udp" {
        let socket = UdpSocket::bind(addr).map_err(taken)?;
        actual.host_port = socket.local_addr().map_err(taken)?.port();
        Ok(Published::Udp(socket, actual))
    } else {
        let listener = TcpListener::bind(addr).map_err(taken)?;
        actual.host_port = listener.local_addr().map_err(taken)?.port();
        Ok(Published::Tcp(listener, actual))
    }
}

/// Serve a published port on threads of its own, forwarding to `target`,
/// until the process exits.
pub fn serve(published: Published, target: Ipv4Addr) {
    match published {
        Published::Tcp(listener, mapping) => {
            let to = SocketAddr::new(IpAddr::V4(target), mapping.container_port);
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    std::thread::spawn(move || {
                        if let Ok(upstream) = TcpStream::connect(to) {
                            splice_tcp(client, upstream);
                        }
                    });
                }
            });
        }
        Published::Udp(socket, mapping) => {
            let to = SocketAddr::new(IpAddr::V4(target), mapping.container_port);
            std::thread::spawn(move || serve_udp(socket, to));
        }
    }
}

fn splice_tcp(client: TcpStream, upstream: TcpStream) {
    let (Ok(client_read), Ok(upstream_write)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let forward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut &client_read, &mut &upstream_write);
        let _ = upstream_write.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut &upstream, &mut &client);
    let _ = client.shutdown(std::net::Shutdown::Write);
    let _ = forward.join();
}

/// How long a UDP flow lives without a reply (docker's proxy: 90 s).
const UDP_FLOW_TIMEOUT: Duration = Duration::from_secs(90);
/// Client addresses served at once per published port (a thread each).
const MAX_UDP_FLOWS: usize = 1024;

/// One upstream socket per client address, each with a thread sending the
/// replies back from the published socket; a flow ends after
/// `UDP_FLOW_TIMEOUT` without a reply, and the next datagram opens another.
fn serve_udp(socket: UdpSocket, to: SocketAddr) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut flows: std::collections::HashMap<SocketAddr, (UdpSocket, Arc<AtomicBool>)> =
        std::collections::HashMap::new();
    let mut buf = vec![0u8; 65536];
    while let Ok((n, from)) = socket.recv_from(&mut buf) {
        flows.retain(|_, (_, relaying)| relaying.load(Ordering::Relaxed));
        let full = flows.len() >= MAX_UDP_FLOWS;
        let (upstream, _) = match flows.entry(from) {
            std::collections::hash_map::Entry::Occupied(flow) => flow.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                if full {
                    continue;
                }
                let Ok(upstream) = UdpSocket::bind("0.0.0.0:0").and_then(|u| u.connect(to).map(|_| u)) else {
                    continue;
                };
                let relaying = Arc::new(AtomicBool::new(true));
                let (Ok(reply), Ok(back)) = (upstream.try_clone(), socket.try_clone()) else {
                    continue;
                };
                let done = relaying.clone();
                let relay = std::thread::Builder::new().spawn(move || {
                    relay_replies(reply, back, from);
                    done.store(false, Ordering::Relaxed);
                });
                // No thread to be had: drop the datagram, keep serving.
                if relay.is_err() {
                    continue;
                }
                slot.insert((upstream, relaying))
            }
        };
        // A pending ICMP error from an earlier datagram can surface here
        // instead of in the relay; the datagram itself is worth a retry.
        if let Err(e) = upstream.send(&buf[..n]) {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                let _ = upstream.send(&buf[..n]);
            }
        }
    }
}

/// Send what the container answers on `reply` back to `client` from the
/// published socket, until the flow has been idle for `UDP_FLOW_TIMEOUT`.
fn relay_replies(reply: UdpSocket, published: UdpSocket, client: SocketAddr) {
    let _ = reply.set_read_timeout(Some(UDP_FLOW_TIMEOUT));
    let mut buf = vec![0u8; 65536];
    loop {
        match reply.recv(&mut buf) {
            Ok(n) => {
                if published.send_to(&buf[..n], client).is_err() {
                    return;
                }
            }
            // An ICMP "port unreachable" for an earlier datagram (nothing
            // listened yet), or a signal: not the end of the flow.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_allocate_and_overlap() {
        let s = Subnet::parse("10.89.0.0/16").unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 89, 0, 1));
        assert_eq!(s.allocate(&[]).unwrap(), Ipv4Addr::new(10, 89, 0, 2));
        let used = [Ipv4Addr::new(10, 89, 0, 2), Ipv4Addr::new(10, 89, 0, 4)];
        assert_eq!(s.allocate(&used).unwrap(), Ipv4Addr::new(10, 89, 0, 3));
        assert!(s.overlaps(&Subnet::parse("10.89.7.0/24").unwrap()));
        assert!(s.overlaps(&Subnet::parse("10.0.0.0/8").unwrap()));
        assert!(!s.overlaps(&Subnet::parse("10.90.0.0/16").unwrap()));
        assert!(s.contains(Ipv4Addr::new(10, 89, 200, 1)));
        let tiny = Subnet::parse("192.168.5.0/30").unwrap();
        assert_eq!(tiny.allocate(&[]).unwrap(), Ipv4Addr::new(192, 168, 5, 2));
        assert!(tiny.allocate(&[Ipv4Addr::new(192, 168, 5, 2)]).is_err());
        for bad in ["10.89.0.1/16", "10.89.0.0", "10.89.0.0/33", "x/16"] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_mappings_parse_like_docker() {
        let p = PortMapping::parse("8080:80").unwrap();
        assert_eq!(
            (p.host_ip.to_string(), p.host_port, p.container_port),
            ("0.0.0.0".into(), 8080, 80)
        );
        assert_eq!(p.protocol, "tcp");
        let p = PortMapping::parse("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(
            (p.host_ip.to_string(), p.host_port, p.protocol.as_str()),
            ("127.0.0.1".into(), 5353, "udp")
        );
        assert_eq!(PortMapping::parse("80").unwrap().host_port, 0);
        assert_eq!(PortMapping::parse("127.0.0.1::80").unwrap().host_port, 0);
        for bad in ["", "x:80", "80:0", "1:2/sctp", "a.b:1:2", "70000:80"] {
            assert!(PortMapping::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn iptables_rules_put_the_verb_before_the_chain() {
        let bridge = Bridge {
            name: "br9".into(),
            subnet: Subnet::parse("10.1.0.0/16").unwrap(),
        };
        let r = rules(&bridge);
        assert_eq!(with_verb(&r[0], "-A")[..4], ["-t", "nat", "-A", "POSTROUTING"]);
        assert_eq!(with_verb(&r[1], "-D")[..2], ["-D", "FORWARD"]);
    }
}
