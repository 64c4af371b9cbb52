//! [`RecvBatch`]: receive up to `n` datagrams with one non-blocking `recvmmsg`.
//!
//! All memory is allocated at construction: one contiguous block of `n * slot_size` bytes for
//! the payloads, plus the header, iovec and address arrays. A call allocates nothing. Received
//! datagrams are read in place with [`RecvBatch::get`] until the next call.
//!
//! This module does not parse, route or count anything; a datagram longer than its slot is
//! flagged by [`RecvBatch::truncated`] and it is the caller's job to drop and count it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;

use super::sys;

/// Most slots per batch: the kernel caps one `recvmmsg` at `UIO_MAXIOV` (1024) messages.
pub const MAX_SLOTS: usize = sys::MAX_MSGS;
/// Largest useful slot: the largest UDP payload over IPv6 (IPv4's is 65 507).
pub const MAX_SLOT_SIZE: usize = 65_527;

/// `n` receive slots of `slot_size` bytes and the headers to fill them with one syscall.
pub struct RecvBatch {
    buf: Box<[u8]>,
    slot_size: usize,
    raw: sys::RecvRaw,
    received: usize,
}

impl RecvBatch {
    /// Allocates `slots` slots of `slot_size` bytes. Both are clamped to `1..=MAX_SLOTS` and
    /// `1..=MAX_SLOT_SIZE`, so any configuration value gives a working (bounded) batch.
    pub fn new(slots: usize, slot_size: usize) -> RecvBatch {
        let slots = slots.clamp(1, MAX_SLOTS);
        let slot_size = slot_size.clamp(1, MAX_SLOT_SIZE);
        RecvBatch {
            buf: vec![0u8; slots * slot_size].into_boxed_slice(),
            slot_size,
            raw: sys::RecvRaw::new(slots),
            received: 0,
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.buf.len() / self.slot_size
    }

    /// Bytes per slot; a longer datagram is truncated to this and flagged.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// One non-blocking `recvmmsg` (`MSG_DONTWAIT`) filling as many slots as datagrams are
    /// queued. Returns how many arrived: `Ok(0)` when the socket has none (`EAGAIN`). `EINTR` is
    /// retried. Other errors come back as they are; on an unconnected socket without
    /// `IP_RECVERR` the kernel reports no ICMP errors here, so those are real socket failures.
    /// The previous batch's contents are gone once this is called, whatever it returns.
    pub fn recv(&mut self, sock: &impl AsFd) -> io::Result<usize> {
        self.received = 0;
        match self.raw.recv(sock.as_fd(), &mut self.buf, self.slot_size) {
            Ok(n) => {
                self.received = n;
                Ok(n)
            }
            Err(e) if e == libc::EAGAIN || e == libc::EWOULDBLOCK => Ok(0),
            Err(e) => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// How many datagrams the last [`recv`](Self::recv) delivered.
    pub fn len(&self) -> usize {
        self.received
    }

    /// Whether the last call delivered nothing.
    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// Datagram `i` of the last call: its payload (at most `slot_size` bytes) and sender.
    /// `None` past [`len`](Self::len), or if the kernel reported a non-IP source address.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.received {
            return None;
        }
        let len = self.raw.len(i).min(self.slot_size);
        let start = i * self.slot_size;
        let payload = self.buf.get(start..start + len)?;
        Some((payload, self.raw.addr(i)?))
    }

    /// Whether datagram `i` was longer than its slot (`MSG_TRUNC`): the payload from
    /// [`get`](Self::get) is then only its first `slot_size` bytes.
    pub fn truncated(&self, i: usize) -> bool {
        i < self.received && self.raw.flags(i) & libc::MSG_TRUNC != 0
    }

    /// The received datagrams in order, with their truncation flag.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr, bool)> + '_ {
        (0..self.received).filter_map(move |i| {
            let (p, from) = self.get(i)?;
            Some((p, from, self.truncated(i)))
        })
    }
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.slots())
            .field("slot_size", &self.slot_size)
            .field("received", &self.received)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_clamped_to_working_bounds() {
        let b = RecvBatch::new(0, 0);
        assert_eq!((b.slots(), b.slot_size()), (1, 1));
        let b = RecvBatch::new(5000, 8);
        assert_eq!((b.slots(), b.slot_size()), (MAX_SLOTS, 8));
        let b = RecvBatch::new(1, 1 << 20);
        assert_eq!(b.slot_size(), MAX_SLOT_SIZE);
    }

    #[test]
    fn an_empty_batch_has_nothing_to_get() {
        let b = RecvBatch::new(4, 64);
        assert!(b.is_empty());
        assert_eq!(b.get(0), None);
        assert!(!b.truncated(0));
        assert_eq!(b.iter().count(), 0);
    }

    #[test]
    fn recv_reads_the_source_address_of_ipv6_datagrams() {
        let Ok(rx) = std::net::UdpSocket::bind("[::1]:0") else {
            eprintln!("skipped: no IPv6 loopback on this machine");
            return;
        };
        let tx = std::net::UdpSocket::bind("[::1]:0").unwrap();
        tx.send_to(b"six", rx.local_addr().unwrap()).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut peek = [0u8; 8];
        rx.peek_from(&mut peek).unwrap();
        let mut b = RecvBatch::new(4, 64);
        assert_eq!(b.recv(&rx).unwrap(), 1);
        assert_eq!(b.get(0), Some((&b"six"[..], tx.local_addr().unwrap())));
    }
}
