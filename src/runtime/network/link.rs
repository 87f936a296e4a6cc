//! The bridge and each container's veth pair, over rtnetlink: creating
//! and removing the bridge (with its rules) and plugging a container in.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::firewall::{iptables, rules};
use super::ipam::{claims_dir, NetworkLock};
use super::{link_index, with_netlink, Bridge, Endpoint, NetworkError, Subnet};
use crate::error::{IoContext, Result};

/// The host's IPv4 routes (destination, prefix, device index) outside `skip`.
async fn host_routes(handle: &rtnetlink::Handle) -> Result<Vec<(Subnet, Option<u32>)>, NetworkError> {
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
    let mut routes = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut out = Vec::new();
    while let Some(route) = routes
        .try_next()
        .await
        .map_err(NetworkError::netlink("listing routes"))?
    {
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
                return Err(NetworkError::SubnetConflict {
                    subnet: bridge.subnet,
                    route,
                });
            }
        }
        handle
            .link()
            .add(LinkBridge::new(&bridge.name).build())
            .execute()
            .await
            .map_err(NetworkError::netlink("creating the bridge"))?;
        let index = link_index(&handle, &bridge.name)
            .await?
            .ok_or_else(|| NetworkError::Vanished(format!("bridge {}", bridge.name)))?;
        handle
            .address()
            .add(index, IpAddr::V4(bridge.subnet.gateway()), bridge.subnet.prefix)
            .execute()
            .await
            .map_err(NetworkError::netlink("addressing the bridge"))?;
        Ok(true)
    })?;
    if !created {
        return Ok(());
    }
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").ctx(|| "enabling IP forwarding".into())?;
    for rule in rules(bridge) {
        if !iptables("-C", &rule)? && !iptables("-A", &rule)? {
            return Err(NetworkError::IptablesRefused(rule.join(" ")).into());
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
            Err(e) => Err(NetworkError::netlink(format!("removing the bridge {}", bridge.name))(e)),
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
            .ok_or_else(|| NetworkError::NoBridge(endpoint.bridge.name.clone()))?;
        handle
            .link()
            .add(pair)
            .execute()
            .await
            .map_err(NetworkError::netlink("creating the veth pair"))?;
        let host_index = link_index(&handle, &endpoint.host_veth)
            .await?
            .ok_or_else(|| NetworkError::Vanished("the veth pair".into()))?;
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
            .map_err(NetworkError::netlink("plugging the veth into the bridge"))
    })?;
    // The container's side is configured from inside its namespace, on a
    // thread of our own (setns changes only the calling thread's).
    let endpoint = endpoint.clone();
    std::thread::spawn(move || -> Result<(), NetworkError> {
        nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|source| {
            NetworkError::Syscall {
                what: "entering the container's netns",
                source,
            }
        })?;
        with_netlink(async |handle| {
            let index = link_index(&handle, "eth0")
                .await?
                .ok_or_else(|| NetworkError::Vanished("the container's veth".into()))?;
            handle
                .address()
                .add(index, IpAddr::V4(endpoint.address), endpoint.bridge.subnet.prefix)
                .execute()
                .await
                .map_err(NetworkError::netlink("addressing eth0"))?;
            handle
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(NetworkError::netlink("bringing eth0 up"))?;
            handle
                .route()
                .add(
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .gateway(endpoint.bridge.subnet.gateway())
                        .build(),
                )
                .execute()
                .await
                .map_err(NetworkError::netlink("adding the default route"))
        })
    })
    .join()
    .map_err(|_| NetworkError::ThreadPanicked)??;
    Ok(())
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
            Err(e) => Err(NetworkError::netlink(format!("removing {}", endpoint.host_veth))(e)),
        },
        None => Ok(()),
    })?;
    Ok(())
}
