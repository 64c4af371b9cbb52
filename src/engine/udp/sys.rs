//! The only unsafe code in the engine: raw `recvmmsg` / `sendmmsg` / `getsockopt` calls and the
//! C structures they read and write.
//!
//! The rule that keeps this sound: no raw pointer outlives one call. Every function here builds
//! the `mmsghdr` / `iovec` / cmsg pointers from Rust references it was handed (so the borrow
//! checker proves the memory lives across the syscall), makes the syscall, and leaves the stale
//! pointers behind unused; the next call rebuilds them. Callers never see a raw pointer.
//!
//! This module does not decide anything (batching, GSO grouping, error policy): that is
//! `recv.rs` and `send.rs`, in safe code. Errors come back as a raw `errno`, so the hot path
//! never builds an `io::Error` it does not need.

use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

use super::send::{Pending, Planned};

/// The kernel silently truncates a `vlen` above this (`UIO_MAXIOV`), so batches never exceed it.
pub(super) const MAX_MSGS: usize = libc::UIO_MAXIOV as usize;

/// A socket address in the form the kernel reads and writes: `sockaddr_in` or `sockaddr_in6`
/// (both start with the family field). 28 bytes rather than `sockaddr_storage`'s 128, because
/// UDP only ever uses these two.
#[repr(C)]
#[derive(Clone, Copy)]
pub(in crate::engine) union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl RawAddr {
    /// An all-zero address (family `AF_UNSPEC`), used as receive space.
    pub(in crate::engine) fn zeroed() -> RawAddr {
        RawAddr {
            v6: libc::sockaddr_in6 {
                sin6_family: 0,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: [0; 16] },
                sin6_scope_id: 0,
            },
        }
    }

    /// Converts a Rust address, returning the raw form and the length the kernel should read.
    pub(in crate::engine) fn from_socket_addr(addr: &SocketAddr) -> (RawAddr, libc::socklen_t) {
        match addr {
            SocketAddr::V4(a) => {
                let raw = RawAddr {
                    v4: libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: a.port().to_be(),
                        sin_addr: libc::in_addr {
                            s_addr: u32::from(*a.ip()).to_be(),
                        },
                        sin_zero: [0; 8],
                    },
                };
                (raw, mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
            }
            SocketAddr::V6(a) => {
                let raw = RawAddr {
                    v6: libc::sockaddr_in6 {
                        sin6_family: libc::AF_INET6 as libc::sa_family_t,
                        sin6_port: a.port().to_be(),
                        sin6_flowinfo: a.flowinfo().to_be(),
                        sin6_addr: libc::in6_addr {
                            s6_addr: a.ip().octets(),
                        },
                        sin6_scope_id: a.scope_id(),
                    },
                };
                (raw, mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
            }
        }
    }

    /// Reads back an address the kernel wrote, `len` being the `msg_namelen` it reported.
    /// `None` for any family other than IPv4/IPv6 or a length too short for it.
    pub(in crate::engine) fn socket_addr(&self, len: libc::socklen_t) -> Option<SocketAddr> {
        let len = len as usize;
        // SAFETY: every constructor fully initialises the 28 bytes of the union (`zeroed` and
        // the V6 arm write the larger member; the kernel writes at most `msg_namelen` bytes over
        // initialised memory), and both members are plain integers valid for any bit pattern;
        // the family field sits at offset 0 in both, so reading it through `v4` is the same
        // read as through `v6`.
        let family = unsafe { self.v4.sin_family } as libc::c_int;
        if family == libc::AF_INET && len >= mem::size_of::<libc::sockaddr_in>() {
            // SAFETY: as above, the bytes are initialised and any bit pattern is valid.
            let a = unsafe { self.v4 };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        } else if family == libc::AF_INET6 && len >= mem::size_of::<libc::sockaddr_in6>() {
            // SAFETY: as above.
            let a = unsafe { self.v6 };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        } else {
            None
        }
    }
}

/// A control message carrying `UDP_SEGMENT` (the GSO segment size, a `u16`). `repr(C)` puts
/// `segment` right after the header, which is where `CMSG_DATA` points (the header's size is
/// already a multiple of the cmsg alignment); the struct's size equals `CMSG_SPACE(2)`, which a
/// unit test pins.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct GsoCmsg {
    hdr: libc::cmsghdr,
    segment: u16,
}

// SAFETY: `CMSG_LEN` is plain arithmetic on its argument; it touches no memory.
const GSO_CMSG_LEN: usize =
    unsafe { libc::CMSG_LEN(mem::size_of::<u16>() as libc::c_uint) } as usize;

impl GsoCmsg {
    fn new() -> GsoCmsg {
        // SAFETY: `cmsghdr` is a plain C struct of integers (some libcs add private padding
        // fields, which is why it cannot be built with a literal); all-zero is a valid value.
        let mut hdr: libc::cmsghdr = unsafe { mem::zeroed() };
        hdr.cmsg_len = GSO_CMSG_LEN as _;
        hdr.cmsg_level = libc::SOL_UDP;
        hdr.cmsg_type = libc::UDP_SEGMENT;
        GsoCmsg { hdr, segment: 0 }
    }
}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: `mmsghdr` is a plain C struct of integers and raw pointers (plus private padding
    // on some libcs); all-zero means null pointers and zero lengths, a valid value that is
    // never passed to the kernel before its fields are set.
    unsafe { mem::zeroed() }
}

fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Header arrays for `recvmmsg`, allocated once. Only the results (`msg_len`, `msg_flags`,
/// `msg_namelen`, the addresses) are read between calls; the pointers are rewritten each call.
pub(super) struct RecvRaw {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    addrs: Box<[RawAddr]>,
}

// SAFETY: the raw pointers inside `hdrs` / `iovs` are only written and handed to the kernel
// inside `recv(&mut self, ..)`, and are never dereferenced by Rust code; between calls they are
// dead values. Moving the arrays to another thread therefore moves no shared access.
unsafe impl Send for RecvRaw {}

impl RecvRaw {
    pub(super) fn new(slots: usize) -> RecvRaw {
        RecvRaw {
            hdrs: (0..slots).map(|_| zeroed_mmsghdr()).collect(),
            iovs: (0..slots).map(|_| empty_iovec()).collect(),
            addrs: (0..slots).map(|_| RawAddr::zeroed()).collect(),
        }
    }

    /// One non-blocking `recvmmsg` into `buf`, cut into `slot_size` slots (`buf.len()` must be
    /// `slots * slot_size`). Retries on `EINTR`; any other failure is returned as its errno.
    pub(super) fn recv(
        &mut self,
        fd: BorrowedFd<'_>,
        buf: &mut [u8],
        slot_size: usize,
    ) -> Result<usize, i32> {
        let n = self.hdrs.len().min(MAX_MSGS);
        let slots = buf.chunks_exact_mut(slot_size);
        let parts = self.hdrs.iter_mut().zip(self.iovs.iter_mut());
        for (((hdr, iov), addr), slot) in parts.zip(self.addrs.iter_mut()).zip(slots) {
            iov.iov_base = slot.as_mut_ptr().cast();
            iov.iov_len = slot.len();
            *addr = RawAddr::zeroed();
            hdr.msg_hdr.msg_name = (addr as *mut RawAddr).cast();
            hdr.msg_hdr.msg_namelen = mem::size_of::<RawAddr>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = std::ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        loop {
            // SAFETY: the first `n` headers were just pointed at memory borrowed for this whole
            // call: one `slot_size` chunk of `buf` each (the kernel writes at most `iov_len`
            // bytes), and one `RawAddr` each (at most `msg_namelen` bytes); no control buffer.
            // `n` never exceeds the array length. The fd is borrowed, so it is open.
            let r = unsafe {
                libc::recvmmsg(
                    fd.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r >= 0 {
                return Ok((r as usize).min(n));
            }
            match errno() {
                libc::EINTR => continue,
                e => return Err(e),
            }
        }
    }

    /// Bytes the kernel wrote for message `i` of the last call (before truncation: the slot
    /// holds at most `slot_size` of them).
    pub(super) fn len(&self, i: usize) -> usize {
        self.hdrs.get(i).map_or(0, |h| h.msg_len as usize)
    }

    pub(super) fn flags(&self, i: usize) -> libc::c_int {
        self.hdrs.get(i).map_or(0, |h| h.msg_hdr.msg_flags)
    }

    pub(super) fn addr(&self, i: usize) -> Option<SocketAddr> {
        let h = self.hdrs.get(i)?;
        self.addrs.get(i)?.socket_addr(h.msg_hdr.msg_namelen)
    }
}

/// Header arrays for `sendmmsg`, allocated once: one `mmsghdr` and one GSO cmsg per message of
/// one call, one `iovec` per queued datagram.
pub(super) struct SendRaw {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    cmsgs: Box<[GsoCmsg]>,
}

// SAFETY: as for `RecvRaw`: the pointers are only live inside `send(&mut self, ..)`.
unsafe impl Send for SendRaw {}

impl SendRaw {
    /// `msgs`: most messages in one call; `datagrams`: most queued datagrams.
    pub(super) fn new(msgs: usize, datagrams: usize) -> SendRaw {
        SendRaw {
            hdrs: (0..msgs).map(|_| zeroed_mmsghdr()).collect(),
            iovs: (0..datagrams).map(|_| empty_iovec()).collect(),
            cmsgs: (0..msgs).map(|_| GsoCmsg::new()).collect(),
        }
    }

    /// One non-blocking `sendmmsg` of `plan` (at most `msgs` entries, covering consecutive
    /// `pending` datagrams starting at `plan[0].start`). A planned message with `segment > 0`
    /// carries a `UDP_SEGMENT` cmsg and one iovec per datagram it covers. Retries on `EINTR`.
    /// Returns how many planned messages the kernel took, or the errno of the first one.
    pub(super) fn send(
        &mut self,
        fd: BorrowedFd<'_>,
        plan: &[Planned],
        pending: &[Pending<'_>],
    ) -> Result<usize, i32> {
        let Some(first) = plan.first() else {
            return Ok(0);
        };
        let base = first.start;
        let n = plan.len().min(self.hdrs.len());
        let parts = self.hdrs.iter_mut().zip(self.cmsgs.iter_mut());
        for ((hdr, cmsg), p) in parts.zip(&plan[..n]) {
            let (Some(dgrams), Some(iovs)) = (
                pending.get(p.start..p.start + p.count),
                self.iovs.get_mut(p.start - base..p.start - base + p.count),
            ) else {
                // A plan outside the queue is a bug in the planner; refuse rather than send
                // a header with stale pointers.
                return Err(libc::EINVAL);
            };
            for (iov, d) in iovs.iter_mut().zip(dgrams) {
                // The kernel only reads from a send iovec; `*mut` is what the C type says.
                iov.iov_base = d.payload.as_ptr().cast_mut().cast();
                iov.iov_len = d.payload.len();
            }
            let to = &dgrams[0];
            hdr.msg_hdr.msg_name = (&to.raw as *const RawAddr).cast_mut().cast();
            hdr.msg_hdr.msg_namelen = to.raw_len;
            hdr.msg_hdr.msg_iov = iovs.as_mut_ptr();
            hdr.msg_hdr.msg_iovlen = p.count as _;
            if p.segment > 0 {
                cmsg.segment = p.segment;
                hdr.msg_hdr.msg_control = (cmsg as *mut GsoCmsg).cast();
                hdr.msg_hdr.msg_controllen = mem::size_of::<GsoCmsg>() as _;
            } else {
                hdr.msg_hdr.msg_control = std::ptr::null_mut();
                hdr.msg_hdr.msg_controllen = 0;
            }
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        loop {
            // SAFETY: the first `n` headers were just filled from references that live for this
            // whole call: `msg_name` -> a `RawAddr` inside `pending` with its true length,
            // `msg_iov` -> `count` iovecs of `self.iovs`, each pointing at a payload slice
            // borrowed by `pending` with its exact length, `msg_control` -> a fully initialised
            // `GsoCmsg` of `self.cmsgs` or null. The kernel only reads all of these and writes
            // `msg_len`. `n` never exceeds the array length. The fd is borrowed, so it is open.
            let r = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r >= 0 {
                return Ok((r as usize).min(n));
            }
            match errno() {
                libc::EINTR => continue,
                e => return Err(e),
            }
        }
    }
}

/// Whether the socket's kernel knows `UDP_SEGMENT` (Linux >= 4.18): `getsockopt` succeeds.
pub(super) fn udp_segment_supported(fd: BorrowedFd<'_>) -> Result<(), i32> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals of the sizes announced in `len`; the kernel
    // writes at most `len` bytes to `value` and the actual size to `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gso_cmsg_layout_matches_the_cmsg_macros() {
        // SAFETY: plain arithmetic.
        let space = unsafe { libc::CMSG_SPACE(2) } as usize;
        assert_eq!(mem::size_of::<GsoCmsg>(), space);
        assert_eq!(
            mem::offset_of!(GsoCmsg, segment),
            mem::size_of::<libc::cmsghdr>()
        );
        assert_eq!(GSO_CMSG_LEN, mem::size_of::<libc::cmsghdr>() + 2);
    }

    #[test]
    fn raw_addr_round_trips_v4_and_v6() {
        for s in ["127.0.0.1:9000", "[::1]:53", "[fe80::1%3]:7", "0.0.0.0:0"] {
            let a: SocketAddr = s.parse().unwrap();
            let (raw, len) = RawAddr::from_socket_addr(&a);
            assert_eq!(raw.socket_addr(len), Some(a), "{s}");
        }
    }

    #[test]
    fn raw_addr_refuses_unknown_family_and_short_length() {
        assert_eq!(RawAddr::zeroed().socket_addr(28), None);
        let (raw, _) = RawAddr::from_socket_addr(&"[::1]:1".parse().unwrap());
        assert_eq!(raw.socket_addr(16), None);
    }
}
