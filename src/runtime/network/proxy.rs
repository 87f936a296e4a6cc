//! Published ports: the host side bound before the container starts and
//! served by a userland proxy in the monitor (TCP splice, UDP flow relay),
//! as docker-proxy does. Separate because it is sockets, not the bridge.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::NetworkError;
use crate::error::Result;

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
        let invalid = |reason: &str| -> crate::Error {
            NetworkError::InvalidPortMapping {
                input: input.to_string(),
                reason: reason.to_string(),
            }
            .into()
        };
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
    let (host_ip, host_port) = (mapping.host_ip, mapping.host_port);
    let taken = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            NetworkError::PortAllocated { host_ip, host_port }
        } else {
            NetworkError::Bind {
                host_ip,
                host_port,
                source,
            }
        }
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
}
