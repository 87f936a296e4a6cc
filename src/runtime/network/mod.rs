//! Bridge networking: a host bridge (`mocker0`, 10.89.0.0/16 unless
//! `MOCKER_BRIDGE` / `MOCKER_BRIDGE_SUBNET` say otherwise) with a veth pair
//! per container, outbound masquerade, and published ports served by a
//! userland proxy in the container's monitor (as docker-proxy does), so a
//! port taken by anything else fails the start instead of being shadowed.
//! Netlink goes through rtnetlink; address choice is pure ([`Subnet`]).
//! The bridge is shared by every storage root on the host, so addresses
//! are claimed host-wide (files under `/run/mocker/ipam`) and the bridge is
//! created and removed, all under one host-wide lock ([`NetworkLock`]).
//!
//! One file per concern: `ipam` claims addresses host-wide, `link`
//! makes the bridge and veth pairs, `firewall` writes the iptables rules,
//! `proxy` serves published ports; this file holds the types they share
//! and the netlink runtime.

mod error;
mod firewall;
mod ipam;
mod link;
mod proxy;

use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::error::Result;

pub use error::NetworkError;
pub use ipam::{lock, Claim, Claimant, NetworkLock, CLAIMS_DIR};
pub use link::{attach, detach, ensure_bridge, remove_bridge_if_unused};
pub use proxy::{bind, serve, PortMapping, Published};

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
        let invalid = |reason: &'static str| NetworkError::InvalidSubnet {
            input: input.to_string(),
            reason,
        };
        let (addr, prefix) = input.split_once('/').ok_or_else(|| invalid("expected a.b.c.d/len"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid("bad address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid("bad prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(invalid("the prefix length must be between 8 and 30").into());
        }
        let subnet = Subnet { network: addr, prefix };
        if subnet.network_addr() != addr {
            return Err(invalid("host bits are set").into());
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
            .ok_or_else(|| NetworkError::NoFreeAddress(*self).into())
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
            return Err(NetworkError::InvalidBridgeName(name).into());
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

/// Run netlink requests on a current-thread runtime (the monitor is not
/// async, and must start no threads before it clones the container).
fn with_netlink<T>(f: impl AsyncFnOnce(rtnetlink::Handle) -> Result<T, NetworkError>) -> Result<T, NetworkError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|source| NetworkError::Io {
            what: "starting netlink",
            source,
        })?;
    runtime.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(|source| NetworkError::Io {
            what: "opening netlink",
            source,
        })?;
        let task = tokio::spawn(connection);
        let result = f(handle).await;
        task.abort();
        result
    })
}

async fn link_index(handle: &rtnetlink::Handle, name: &str) -> Result<Option<u32>, NetworkError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::ENODEV => Ok(None),
        Err(e) => Err(NetworkError::netlink(format!("looking up {name}"))(e)),
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
}
