//! Socket set-up for `send` and `dump`: unicast and multicast UDP, TCP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

use oscgate::url::interface_addr;

/// The IPv4 address of `--interface`, or `0.0.0.0` (the kernel's choice) if none was given.
pub fn iface(interface: Option<&str>) -> Result<Ipv4Addr> {
    match interface {
        Some(spec) => interface_addr(spec).map_err(anyhow::Error::msg),
        None => Ok(Ipv4Addr::UNSPECIFIED),
    }
}

/// A UDP socket for sending to `dest`; for a multicast `dest` it sends out of `interface`
/// with the given TTL and keeps multicast loop on so that local listeners hear it.
pub fn udp_sender(dest: SocketAddr, interface: Option<&str>, ttl: u32) -> Result<UdpSocket> {
    let domain = if dest.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if let IpAddr::V4(group) = dest.ip() {
        if group.is_multicast() {
            let ifa = iface(interface)?;
            s.set_multicast_if_v4(&ifa).context("IP_MULTICAST_IF")?;
            s.set_multicast_ttl_v4(ttl).context("IP_MULTICAST_TTL")?;
            s.set_multicast_loop_v4(true).context("IP_MULTICAST_LOOP")?;
        } else if group.is_broadcast() {
            s.set_broadcast(true)?;
        }
    }
    let any: SocketAddr = if dest.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    s.bind(&any.into())?;
    Ok(s.into())
}

/// A UDP socket receiving on `addr`; a multicast address joins the group on `interface`.
/// `SO_REUSEADDR` lets several dumps share a multicast port.
pub fn udp_receiver(addr: SocketAddr, interface: Option<&str>) -> Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    // A larger receive buffer rides out bursts while the terminal is slow to print.
    let _ = s.set_recv_buffer_size(4 << 20);
    match addr.ip() {
        IpAddr::V4(group) if group.is_multicast() => {
            // Binding the group address (not 0.0.0.0) keeps other traffic to this port out.
            s.bind(&addr.into())
                .with_context(|| format!("bind {addr}"))?;
            let ifa = iface(interface)?;
            s.join_multicast_v4(&group, &ifa)
                .with_context(|| format!("join {group} on interface {ifa}"))?;
        }
        _ => s
            .bind(&addr.into())
            .with_context(|| format!("bind {addr}"))?,
    }
    Ok(s.into())
}
