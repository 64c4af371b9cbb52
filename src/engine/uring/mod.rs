//! The io_uring UDP primitives of the io_uring driver: [`probe`] (is io_uring usable here, and
//! if not, why), and [`UringUdp`], one ring driving one UDP socket: multishot `recvmsg` into a
//! registered provided-buffer ring, and `sendmsg` fan-out from refcounted buffers.
//!
//! Shape: one [`UringUdp`] per worker per socket. It owns its ring, its socket, its receive
//! buffers and its send slab; a worker with several sockets has several (each ring's fd can be
//! polled). It is built on the worker thread and stays there (the ring is set up
//! `SINGLE_ISSUER | DEFER_TASKRUN` when the kernel accepts it, and the type is not `Send`).
//!
//! The safety promise io_uring asks for (memory an SQE points at stays valid until its CQE)
//! is kept by ownership, so safe callers cannot break it:
//! - receive buffers live in one allocation owned by the `UringUdp`; a received [`Datagram`]
//!   is a handle (not `Clone`) that holds its buffer out of the kernel's ring until
//!   [`UringUdp::release`] and every send of it have completed;
//! - a send slot owns its payload (`bytes::Bytes`, refcounted: fan-out is N clones of one
//!   buffer, no copy) or a reference on a received buffer, plus its `msghdr`, `iovec` and
//!   address, in a slab that is never reallocated; the slot is freed by its CQE;
//! - dropping a `UringUdp` cancels the multishot receive and any send still queued in the
//!   kernel and waits (at most 2 s) for every completion; if the kernel has not answered by
//!   then, the buffers are leaked rather than freed.
//!
//! Call pattern for a worker: queue sends, [`UringUdp::submit`] once per batch (or
//! [`UringUdp::wait`], which submits too), then [`UringUdp::reap`] to collect datagrams and
//! retire sends. This module does not parse OSC, route, decide policy or log: it counts
//! ([`UringStats`]) and the worker decides.

mod probe;
#[allow(unsafe_code)]
mod ring;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

pub use super::udp::Errno;
pub use probe::{probe, ProbeError, UringSupport};
pub use ring::{UringUdp, MAX_GSO_BYTES, MAX_GSO_SEGMENT, MAX_GSO_SEGMENTS, MAX_SOCKETS};

/// Bytes the kernel writes before the payload in each provided buffer: the 16-byte
/// `io_uring_recvmsg_out` header and a 28-byte address field (a `sockaddr_in6`).
pub const RECV_HEADER: usize = 16 + NAME_LEN;
/// Largest receive ring: the kernel's limit for a provided-buffer ring.
pub const MAX_RECV_BUFFERS: usize = 32_768;
/// Largest payload a receive buffer is sized for: the largest UDP payload over IPv6.
pub const MAX_PAYLOAD: usize = 65_527;
/// Largest send slab.
pub const MAX_SEND_SLOTS: usize = 32_768;

const NAME_LEN: usize = 28;

/// Sizes of a [`UringUdp`]; every value is clamped to a working range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringConfig {
    /// Receive buffers in the provided-buffer ring: rounded up to a power of two, `1..=32768`.
    pub recv_buffers: usize,
    /// Payload bytes per receive buffer (`1..=MAX_PAYLOAD`); a longer datagram is truncated
    /// and flagged. Each buffer is this plus [`RECV_HEADER`] bytes.
    pub max_payload: usize,
    /// Sends that may be in flight at once (`1..=MAX_SEND_SLOTS`).
    pub send_slots: usize,
    /// Submission queue entries (`8..=4096`, power of two); a full queue is submitted early.
    pub sq_entries: u32,
}

impl Default for UringConfig {
    fn default() -> UringConfig {
        UringConfig {
            recv_buffers: 256,
            max_payload: 2048,
            send_slots: 1024,
            sq_entries: 256,
        }
    }
}

impl UringConfig {
    /// The same configuration with every value in its working range.
    pub fn clamped(&self) -> UringConfig {
        UringConfig {
            recv_buffers: self
                .recv_buffers
                .clamp(1, MAX_RECV_BUFFERS)
                .next_power_of_two(),
            max_payload: self.max_payload.clamp(1, MAX_PAYLOAD),
            send_slots: self.send_slots.clamp(1, MAX_SEND_SLOTS),
            sq_entries: self.sq_entries.clamp(8, 4096).next_power_of_two(),
        }
    }
}

/// A received datagram: a handle on the receive buffer that holds it. Read it with
/// [`UringUdp::payload`], send it on with [`UringUdp::send_received`], and give it back with
/// [`UringUdp::release`]; a handle that is dropped instead keeps its buffer out of the ring
/// for good (visible in [`UringUdp::buffers_in_ring`]).
#[must_use = "a Datagram holds a receive buffer until it is released"]
#[derive(Debug, PartialEq, Eq)]
pub struct Datagram {
    owner: u64,
    sock: u16,
    bid: u16,
    offset: u32,
    len: u32,
    from: SocketAddr,
    truncated: bool,
}

impl Datagram {
    /// The sender's address.
    pub fn from(&self) -> SocketAddr {
        self.from
    }

    /// Payload bytes held (at most the configured `max_payload`).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the payload is empty (a zero-length datagram).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the datagram was longer than a buffer: the payload is then its first
    /// `max_payload` bytes. The caller drops and counts it.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The receive buffer's id in the ring.
    pub fn buffer_id(&self) -> u16 {
        self.bid
    }

    /// The index of the socket it arrived on (see [`UringUdp::add_socket`]).
    pub fn socket(&self) -> u16 {
        self.sock
    }
}

/// Counters of one [`UringUdp`], since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UringStats {
    /// Datagrams handed out by [`UringUdp::reap`] (truncated ones included).
    pub received: u64,
    /// Of those, how many were truncated.
    pub truncated: u64,
    /// Receive completions dropped because the kernel's header or address made no sense.
    pub malformed: u64,
    /// Times the multishot receive ended because the buffer ring was empty (`ENOBUFS`).
    /// Datagrams wait in the socket's queue meanwhile; only the kernel drops them.
    pub enobufs: u64,
    /// Times the multishot receive was armed again after it ended.
    pub rearms: u64,
    /// Receive completions with an error other than `ENOBUFS` / `ECANCELED`.
    pub recv_errors: u64,
    /// The last such error.
    pub last_recv_error: Option<Errno>,
    /// Sends the kernel completed.
    pub sent: u64,
    /// Sends that completed with an error (per destination, never fatal).
    pub send_errors: u64,
    /// The first send error.
    pub first_send_error: Option<Errno>,
    /// `io_uring_enter` calls made by `submit` / `wait`.
    pub enters: u64,
    /// GSO sends the kernel completed (each carried several datagrams, counted in `sent`).
    pub gso_sent: u64,
    /// The errno of the GSO send that failed with `EIO` / `EINVAL` and turned GSO off (its
    /// datagrams were sent again one by one).
    pub gso_failed: Option<Errno>,
}

/// Why a send could not be queued. Nothing was queued; the payload is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Every send slot is in flight: reap completions first.
    SlabFull,
    /// The submission queue was full and submitting it early failed with this errno.
    Submit(Errno),
    /// The datagram handle belongs to another `UringUdp`.
    ForeignDatagram,
    /// The ring has no socket with that index.
    NoSocket,
    /// A GSO send that breaks the rules of [`UringUdp::send_received_gso_on`].
    BadGso,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::SlabFull => f.write_str("io_uring send slab is full: reap completions"),
            SendError::Submit(e) => write!(f, "io_uring submit failed: {e}"),
            SendError::ForeignDatagram => f.write_str("datagram belongs to another ring"),
            SendError::NoSocket => f.write_str("the ring has no socket with that index"),
            SendError::BadGso => f.write_str("not a valid GSO run (count, lengths or owner)"),
        }
    }
}

impl std::error::Error for SendError {}

/// Decodes the address field the kernel wrote (a `sockaddr_in` or `sockaddr_in6` in native
/// layout, `len` bytes of it valid). `None` for other families or short fields.
fn parse_sockaddr(name: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*name.first()?, *name.get(1)?]);
    let port = u16::from_be_bytes([*name.get(2)?, *name.get(3)?]);
    if i32::from(family) == libc::AF_INET && name.len() >= 16 {
        let ip = Ipv4Addr::new(name[4], name[5], name[6], name[7]);
        Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
    } else if i32::from(family) == libc::AF_INET6 && name.len() >= NAME_LEN {
        let flow = u32::from_be_bytes([name[4], name[5], name[6], name[7]]);
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&name[8..24]);
        let scope = u32::from_ne_bytes([name[24], name[25], name[26], name[27]]);
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            flow,
            scope,
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_clamped_to_working_values() {
        let c = UringConfig {
            recv_buffers: 0,
            max_payload: 0,
            send_slots: 0,
            sq_entries: 0,
        }
        .clamped();
        assert_eq!(
            (c.recv_buffers, c.max_payload, c.send_slots, c.sq_entries),
            (1, 1, 1, 8)
        );
        let c = UringConfig {
            recv_buffers: 100,
            max_payload: 1 << 20,
            send_slots: 1 << 20,
            sq_entries: 100_000,
        }
        .clamped();
        assert_eq!(
            (c.recv_buffers, c.max_payload, c.send_slots, c.sq_entries),
            (128, MAX_PAYLOAD, MAX_SEND_SLOTS, 4096)
        );
    }

    #[test]
    fn sockaddr_fields_decode_and_garbage_is_refused() {
        let mut v4 = [0u8; NAME_LEN];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&9000u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(
            parse_sockaddr(&v4[..16]),
            Some(SocketAddr::from(([127, 0, 0, 1], 9000)))
        );
        let mut v6 = [0u8; NAME_LEN];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&53u16.to_be_bytes());
        v6[23] = 1;
        v6[24..28].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(
            parse_sockaddr(&v6),
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::LOCALHOST,
                53,
                0,
                3
            )))
        );
        assert_eq!(parse_sockaddr(&v6[..20]), None);
        assert_eq!(parse_sockaddr(&v4[..8]), None);
        assert_eq!(parse_sockaddr(&[]), None);
        assert_eq!(parse_sockaddr(&[0xff; NAME_LEN]), None);
    }

    #[test]
    fn send_errors_explain_themselves() {
        assert!(SendError::SlabFull.to_string().contains("full"));
        assert!(SendError::Submit(Errno(libc::EBUSY))
            .to_string()
            .contains("submit"));
    }
}
