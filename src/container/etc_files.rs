//! The container's own /etc files.

use std::path::Path;

use crate::error::{IoContext, Result};
use crate::runtime::init::Volume;
use crate::runtime::Network;

/// `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` for the container,
/// bind-mounted over the image's.
pub(super) fn write_etc_files(
    dir: &Path,
    hostname: &str,
    address: Option<std::net::Ipv4Addr>,
    network: Network,
) -> Result<Vec<Volume>> {
    let hosts = match network {
        Network::Host => std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        _ => {
            let mut hosts = String::from(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
                 ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
            );
            if let Some(ip) = address {
                hosts.push_str(&format!("{ip}\t{hostname}\n"));
            }
            hosts
        }
    };
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = match network {
        Network::Host => host_resolv,
        // The host's loopback resolvers cannot be reached from the container.
        _ => {
            let kept: Vec<&str> = host_resolv
                .lines()
                .filter(|l| !(l.starts_with("nameserver") && (l.contains(" 127.") || l.contains(" ::1"))))
                .collect();
            let mut resolv = kept.join("\n");
            if !kept.iter().any(|l| l.starts_with("nameserver")) {
                resolv.push_str("\nnameserver 8.8.8.8\nnameserver 8.8.4.4");
            }
            resolv.trim_start().to_string() + "\n"
        }
    };
    let mut files = Vec::new();
    for (name, contents) in [
        ("hosts", hosts),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", resolv),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, contents).ctx(|| format!("writing {}", path.display()))?;
        files.push(Volume {
            source: path,
            target: format!("/etc/{name}"),
            read_only: false,
        });
    }
    Ok(files)
}
