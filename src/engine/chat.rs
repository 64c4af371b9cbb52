//! The OSChat front door's sockets: which interfaces the node runs on, and one UDP socket per
//! interface, bound to the OSChat port on that device only, sending to the subnet's
//! broadcast address.
//!
//! Receiving: a socket bound to `0.0.0.0:<port>` with `SO_BINDTODEVICE` gets what arrives on
//! its interface (broadcasts to the subnet, and datagrams sent to the host's address there),
//! so the worker knows which segment each message was heard on. `SO_REUSEADDR` and
//! `SO_REUSEPORT` let other programs on the host (an OSChat client) listen on the same port:
//! broadcasts reach every socket bound to it.
//!
//! This module holds no state and does no I/O after binding.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// One interface the node runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatIface {
    /// The device name (`eth0`, `lo`).
    pub name: String,
    /// Its IPv4 address.
    pub addr: Ipv4Addr,
    /// The prefix length of that address.
    pub prefix: u8,
    /// Where broadcasts to the segment go.
    pub broadcast: Ipv4Addr,
}

impl ChatIface {
    /// The segment's network in CIDR notation (`10.0.1.0/24`), as announced on the mesh.
    pub fn network(&self) -> String {
        let mask = mask(self.prefix);
        format!(
            "{}/{}",
            Ipv4Addr::from(u32::from(self.addr) & mask),
            self.prefix
        )
    }
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

/// One IPv4 address of the host, as the interface listing gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddr {
    pub name: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub broadcast: Option<Ipv4Addr>,
    pub up: bool,
    pub loopback: bool,
}

/// The host's IPv4 addresses.
pub fn host_addrs() -> io::Result<Vec<HostAddr>> {
    Ok(if_addrs::get_if_addrs()?
        .into_iter()
        .filter_map(|i| {
            let up = i.is_oper_up() || i.is_loopback();
            let loopback = i.is_loopback();
            match i.addr {
                if_addrs::IfAddr::V4(a) => Some(HostAddr {
                    name: i.name,
                    addr: a.ip,
                    prefix: a.prefixlen,
                    broadcast: a.broadcast,
                    up,
                    loopback,
                }),
                _ => None,
            }
        })
        .collect())
}

/// The interfaces to run on. `wanted` absent: every interface that is up and has a broadcast
/// address, loopback excluded. `wanted` given: each entry is a device name or one of the
/// host's addresses; loopback is allowed when named (its broadcast address is the top of its
/// network, `127.255.255.255`). One address per device (the first listed): a second socket
/// bound to the same device would hear every broadcast twice.
pub fn choose_ifaces(
    host: &[HostAddr],
    wanted: Option<&[String]>,
) -> Result<Vec<ChatIface>, String> {
    let to_iface = |h: &HostAddr| ChatIface {
        name: h.name.clone(),
        addr: h.addr,
        prefix: h.prefix,
        broadcast: h
            .broadcast
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(h.addr) | !mask(h.prefix))),
    };
    let mut out: Vec<ChatIface> = Vec::new();
    match wanted {
        None => {
            for h in host {
                let wanted = h.up && !h.loopback && h.broadcast.is_some() && h.prefix < 31;
                if wanted && !out.iter().any(|o| o.name == h.name) {
                    out.push(to_iface(h));
                }
            }
        }
        Some(names) => {
            for w in names {
                let h = host
                    .iter()
                    .find(|h| h.name == *w || w.parse::<Ipv4Addr>() == Ok(h.addr))
                    .ok_or_else(|| {
                        let mut have: Vec<&str> = host.iter().map(|h| h.name.as_str()).collect();
                        have.sort_unstable();
                        have.dedup();
                        format!("no IPv4 interface {w:?} (have: {})", have.join(", "))
                    })?;
                if out.iter().any(|o| o.name == h.name) {
                    return Err(format!("interface {:?} is listed twice", h.name));
                }
                out.push(to_iface(h));
            }
        }
    }
    if out.len() > crate::proto::chatnode::MAX_IFACES {
        return Err(format!(
            "{} interfaces; at most {} are supported",
            out.len(),
            crate::proto::chatnode::MAX_IFACES
        ));
    }
    Ok(out)
}

/// The socket for `iface`: bound to `port` on that device, broadcast allowed.
pub fn bind_iface(iface: &ChatIface, port: u16, buffer: usize) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_broadcast(true)?;
    s.set_recv_buffer_size(buffer)?;
    s.set_send_buffer_size(buffer)?;
    s.bind_device(Some(iface.name.as_bytes()))?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).into())?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Vec<HostAddr> {
        let h = |name: &str, addr: [u8; 4], prefix, bcast: Option<[u8; 4]>, up, lo| HostAddr {
            name: name.into(),
            addr: addr.into(),
            prefix,
            broadcast: bcast.map(Ipv4Addr::from),
            up,
            loopback: lo,
        };
        vec![
            h("lo", [127, 0, 0, 1], 8, None, true, true),
            h(
                "eth0",
                [10, 0, 1, 5],
                24,
                Some([10, 0, 1, 255]),
                true,
                false,
            ),
            h(
                "eth0",
                [10, 0, 9, 5],
                24,
                Some([10, 0, 9, 255]),
                true,
                false,
            ),
            h(
                "eth1",
                [192, 168, 7, 2],
                23,
                Some([192, 168, 7, 255]),
                true,
                false,
            ),
            h(
                "down0",
                [10, 9, 0, 1],
                24,
                Some([10, 9, 0, 255]),
                false,
                false,
            ),
            h("tun0", [10, 8, 0, 1], 32, None, true, false),
        ]
    }

    #[test]
    fn by_default_every_broadcast_interface_that_is_up_once_without_loopback() {
        let got = choose_ifaces(&host(), None).unwrap();
        let names: Vec<&str> = got.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert_eq!(got[0].network(), "10.0.1.0/24");
        assert_eq!(got[1].network(), "192.168.6.0/23");
        assert_eq!(got[1].broadcast, Ipv4Addr::new(192, 168, 7, 255));
    }

    #[test]
    fn named_interfaces_by_name_or_address_loopback_allowed() {
        let got = choose_ifaces(&host(), Some(&["lo".into(), "192.168.7.2".into()])).unwrap();
        assert_eq!(got[0].broadcast, Ipv4Addr::new(127, 255, 255, 255));
        assert_eq!(got[0].network(), "127.0.0.0/8");
        assert_eq!(got[1].name, "eth1");
        let e = choose_ifaces(&host(), Some(&["wlan9".into()])).unwrap_err();
        assert!(e.contains("wlan9") && e.contains("eth1"), "{e}");
        let e = choose_ifaces(&host(), Some(&["eth0".into(), "10.0.1.5".into()])).unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn a_loopback_socket_hears_broadcasts_to_its_port() {
        let lo = choose_ifaces(&host_addrs().unwrap(), Some(&["lo".into()])).unwrap();
        let a = bind_iface(&lo[0], 0, 1 << 16).unwrap();
        let port = a.local_addr().unwrap().port();
        let b = bind_iface(&lo[0], port, 1 << 16).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_broadcast(true).unwrap();
        tx.send_to(b"hi", (lo[0].broadcast, port)).unwrap();
        for s in [&a, &b] {
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 8];
            let (n, _) = s.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hi");
        }
    }
}
