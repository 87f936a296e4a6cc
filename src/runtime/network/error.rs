//! The network's errors: user input (subnets, bridge names, port
//! mappings) with docker's messages, conflicts a user must resolve, and
//! netlink, iptables and socket failures with their sources.

use std::net::{IpAddr, Ipv4Addr};

use super::Subnet;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid subnet {input:?}: {reason}")]
    InvalidSubnet { input: String, reason: &'static str },

    #[error("invalid bridge name {0:?}: use 1 to 15 characters, without /, : or spaces (MOCKER_BRIDGE)")]
    InvalidBridgeName(String),

    #[error("invalid port mapping {input:?}: {reason}")]
    InvalidPortMapping { input: String, reason: String },

    #[error("no free address left in {0}: remove stopped containers, or set MOCKER_BRIDGE_SUBNET to a larger range")]
    NoFreeAddress(Subnet),

    #[error("address {addr} on bridge {bridge} is held by {holder}: remove this container and create it again")]
    AddressHeld {
        addr: Ipv4Addr,
        bridge: String,
        holder: String,
    },

    #[error(
        "bridge subnet {subnet} conflicts with the host route to {route}: set MOCKER_BRIDGE_SUBNET to a free range"
    )]
    SubnetConflict { subnet: Subnet, route: Subnet },

    #[error("Bind for {host_ip}:{host_port} failed: port is already allocated")]
    PortAllocated { host_ip: IpAddr, host_port: u16 },

    #[error("Bind for {host_ip}:{host_port} failed: {source}")]
    Bind {
        host_ip: IpAddr,
        host_port: u16,
        #[source]
        source: std::io::Error,
    },

    #[error("bridge {0} does not exist")]
    NoBridge(String),

    #[error("{0} vanished")]
    Vanished(String),

    #[error("running iptables (is it installed?): {0}")]
    Iptables(#[source] std::io::Error),

    #[error("iptables refused the rule {0}")]
    IptablesRefused(String),

    #[error("locking /run/mocker/network.lock: {0}")]
    Lock(#[source] nix::errno::Errno),

    #[error("encoding an address claim: {0}")]
    EncodeClaim(#[source] serde_json::Error),

    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },

    #[error("{what}: {source}")]
    Syscall {
        what: &'static str,
        #[source]
        source: nix::errno::Errno,
    },

    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("the netns thread panicked")]
    ThreadPanicked,
}

impl NetworkError {
    /// `map_err` for a failed netlink request.
    pub(super) fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
        move |source| NetworkError::Netlink {
            what: what.into(),
            source,
        }
    }
}

impl From<NetworkError> for crate::Error {
    fn from(e: NetworkError) -> Self {
        crate::Error::Module(Box::new(e))
    }
}
