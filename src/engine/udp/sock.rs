//! Socket set-up for the engine's UDP sockets, via `socket2`: bind non-blocking with address /
//! port reuse and buffer sizes, and the multicast options the Messenger and OSChat buses need.
//!
//! This module does no I/O on the sockets it configures and holds no state.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Binds a non-blocking UDP socket on `addr`.
///
/// `reuse_port` sets both `SO_REUSEADDR` and `SO_REUSEPORT`: each worker can then bind its own
/// socket on the same port (the kernel spreads datagrams between them), and a multicast port
/// can be shared with other programs on the host. Leave it off for a plain unicast listener:
/// on UDP, `SO_REUSEADDR` alone would already let a second process bind the port and silently
/// take its traffic, while without it that second bind fails with `EADDRINUSE`.
/// `recv_buf` / `send_buf` set `SO_RCVBUF` / `SO_SNDBUF` when given (the kernel doubles the
/// value and caps it at `net.core.rmem_max` / `wmem_max`).
pub fn bind_udp(
    addr: SocketAddr,
    reuse_port: bool,
    recv_buf: Option<usize>,
    send_buf: Option<usize>,
) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    if reuse_port {
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
    }
    if let Some(size) = recv_buf {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(size) = send_buf {
        socket.set_send_buffer_size(size)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Joins the IPv4 multicast `group` on the interface with address `iface`
/// (`Ipv4Addr::UNSPECIFIED`: let the kernel pick by route).
pub fn join_multicast_v4(sock: &UdpSocket, group: Ipv4Addr, iface: Ipv4Addr) -> io::Result<()> {
    SockRef::from(sock).join_multicast_v4(&group, &iface)
}

/// Leaves a group joined with [`join_multicast_v4`].
pub fn leave_multicast_v4(sock: &UdpSocket, group: Ipv4Addr, iface: Ipv4Addr) -> io::Result<()> {
    SockRef::from(sock).leave_multicast_v4(&group, &iface)
}

/// Whether this host's own sockets receive what `sock` sends to a multicast group. A gateway
/// turns it off so it does not hear its own forwards.
pub fn set_multicast_loop_v4(sock: &UdpSocket, on: bool) -> io::Result<()> {
    SockRef::from(sock).set_multicast_loop_v4(on)
}

/// The interface (by address) that multicast sends from `sock` leave on.
pub fn set_multicast_if_v4(sock: &UdpSocket, iface: Ipv4Addr) -> io::Result<()> {
    SockRef::from(sock).set_multicast_if_v4(&iface)
}

/// TTL of multicast datagrams sent from `sock` (1 = this subnet only, the kernel default).
pub fn set_multicast_ttl_v4(sock: &UdpSocket, ttl: u32) -> io::Result<()> {
    SockRef::from(sock).set_multicast_ttl_v4(ttl)
}

/// Whether `sock` may send to broadcast addresses (`SO_BROADCAST`, needed for OSChat).
pub fn set_broadcast(sock: &UdpSocket, on: bool) -> io::Result<()> {
    sock.set_broadcast(on)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_udp_sets_what_it_was_asked() {
        let a = bind_udp(
            "127.0.0.1:0".parse().unwrap(),
            true,
            Some(1 << 20),
            Some(1 << 16),
        )
        .unwrap();
        let s = SockRef::from(&a);
        assert!(s.nonblocking().unwrap());
        assert!(s.reuse_address().unwrap());
        assert!(s.reuse_port().unwrap());
        // The kernel doubles the request (and may cap it at rmem_max, at least 212 992 here).
        assert!(s.recv_buffer_size().unwrap() >= 200_000);
        assert!(s.send_buffer_size().unwrap() >= 1 << 16);
        // A second socket on the same port is allowed with SO_REUSEPORT.
        let b = bind_udp(a.local_addr().unwrap(), true, None, None).unwrap();
        assert_eq!(a.local_addr().unwrap(), b.local_addr().unwrap());
    }

    #[test]
    fn bind_udp_without_reuse_port_refuses_a_second_bind() {
        let a = bind_udp("127.0.0.1:0".parse().unwrap(), false, None, None).unwrap();
        assert!(!SockRef::from(&a).reuse_address().unwrap());
        assert!(bind_udp(a.local_addr().unwrap(), false, None, None).is_err());
    }

    #[test]
    fn multicast_options_apply() {
        let s = bind_udp("0.0.0.0:0".parse().unwrap(), false, None, None).unwrap();
        set_multicast_loop_v4(&s, false).unwrap();
        set_multicast_ttl_v4(&s, 4).unwrap();
        set_multicast_if_v4(&s, Ipv4Addr::LOCALHOST).unwrap();
        set_broadcast(&s, true).unwrap();
        let r = SockRef::from(&s);
        assert!(!r.multicast_loop_v4().unwrap());
        assert_eq!(r.multicast_ttl_v4().unwrap(), 4);
        assert_eq!(r.multicast_if_v4().unwrap(), Ipv4Addr::LOCALHOST);
        assert!(s.broadcast().unwrap());
    }
}
