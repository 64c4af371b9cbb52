//! [`UringUdp`]: one io_uring driving a worker's UDP sockets. Multishot `recvmsg` on every
//! socket over one registered provided-buffer ring (so a buffer received on one socket can be
//! sent from another), `sendmsg` from a slab of owned send slots, an optional multishot poll
//! on one more file descriptor (the worker's epoll for TCP and wake-ups), cancel-and-drain on
//! drop.
//!
//! The only unsafe code of the io_uring driver lives here: the page-aligned allocations the
//! kernel reads and writes, the buffer ring's entries and tail, and pushing SQEs. Each block
//! says why the memory it hands to the kernel outlives the operation. This module does not
//! log, parse OSC or decide what to do with errors; it counts them.

use std::alloc::{self, Layout};
use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::types::{BufRingEntry, CancelBuilder, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, types, IoUring};

use super::{parse_sockaddr, Datagram, Errno, SendError, UringConfig, UringStats};
use super::{NAME_LEN, RECV_HEADER};
use crate::engine::udp::RawAddr;

/// `user_data` tags: the kind in the high 32 bits, a slot index in the low 32.
const UD_RECV: u64 = 1 << 32;
const UD_SEND: u64 = 2 << 32;
const UD_CANCEL: u64 = 3 << 32;
const UD_POLL: u64 = 4 << 32;
const UD_GSO: u64 = 5 << 32;
const UD_INDEX: u64 = 0xffff_ffff;
const UD_KIND: u64 = 0xffff_ffff << 32;

const PAGE: usize = 4096;
/// Buffer group id of the receive ring (one group per ring, so always 0).
const BGID: u16 = 0;
/// Consecutive receive errors (not `ENOBUFS`) after which the receive is no longer re-armed.
const MAX_RECV_ERRORS: u32 = 64;
/// How long dropping a `UringUdp` waits for the kernel to finish everything in flight.
const DROP_DRAIN: Duration = Duration::from_secs(2);

/// Sockets one ring drives at most (the size of its registered-file table).
pub const MAX_SOCKETS: usize = 64;
/// Datagrams one GSO send carries at most (the kernel's `UDP_MAX_SEGMENTS`).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Largest GSO segment: a 1500-byte MTU minus IPv4 and UDP headers (so no segment needs IP
/// fragmentation; IPv6 destinations are never sent with GSO here).
pub const MAX_GSO_SEGMENT: usize = 1472;
/// Most payload bytes in one GSO send (one UDP datagram's worth).
pub const MAX_GSO_BYTES: usize = 65_507;
/// GSO sends in flight at once per ring.
const GSO_SLOTS: usize = 256;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A zeroed, page-aligned heap allocation the kernel may access; freed on drop unless leaked.
struct Region {
    ptr: NonNull<u8>,
    layout: Layout,
    leaked: bool,
}

impl Region {
    fn new(size: usize) -> io::Result<Region> {
        let layout = Layout::from_size_align(size.max(1).next_multiple_of(PAGE), PAGE)
            .map_err(|_| io::Error::from_raw_os_error(libc::ENOMEM))?;
        // SAFETY: the layout has a non-zero size (at least one page).
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(Region {
            ptr,
            layout,
            leaked: false,
        })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if !self.leaked {
            // SAFETY: `ptr` came from `alloc_zeroed` with this layout and is freed once.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
        }
    }
}

/// The provided-buffer ring and the buffers it hands to the kernel.
struct BufRing {
    /// `count` `io_uring_buf` entries; the tail lives in entry 0's reserved field.
    entries: Region,
    /// `count * size` bytes of buffers; buffer `bid` starts at `bid * size`.
    bufs: Region,
    count: u16,
    size: usize,
    /// Our copy of the tail we last published.
    tail: u16,
    /// Per buffer: 0 while the kernel owns it (it is in the ring), else the number of holders
    /// (the `Datagram` handle and each send of it still in flight).
    refs: Box<[u32]>,
    in_ring: usize,
}

impl BufRing {
    fn new(count: usize, size: usize) -> io::Result<BufRing> {
        let count = u16::try_from(count).unwrap_or(u16::MAX / 2 + 1);
        Ok(BufRing {
            entries: Region::new(usize::from(count) * mem::size_of::<BufRingEntry>())?,
            bufs: Region::new(usize::from(count) * size)?,
            count,
            size,
            tail: 0,
            refs: vec![1; usize::from(count)].into_boxed_slice(),
            in_ring: 0,
        })
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        // `bid < count`, so the offset stays inside the allocation.
        self.bufs
            .ptr
            .as_ptr()
            .wrapping_add(usize::from(bid) * self.size)
    }

    /// Gives buffer `bid` (held by nobody any more) back to the kernel.
    fn give_back(&mut self, bid: u16) {
        let mask = self.count - 1;
        let base = self.entries.ptr.as_ptr().cast::<BufRingEntry>();
        // SAFETY: `tail & mask < count`, inside the entries allocation. The kernel reads only
        // entries between its head and the published tail, and this slot is at the unpublished
        // tail, so nothing else reads or writes it now. The tail field that overlaps entry 0
        // is not touched by these setters (they write addr, len and bid only).
        let entry = unsafe { &mut *base.add(usize::from(self.tail & mask)) };
        entry.set_addr(self.buf_ptr(bid) as u64);
        entry.set_len(u32::try_from(self.size).unwrap_or(u32::MAX));
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `BufRingEntry::tail` points at the u16 tail inside entry 0, which is
        // 2-byte aligned and lives as long as `entries`; the kernel reads it concurrently,
        // so it is written through an atomic with release ordering (the entry before it).
        unsafe {
            let tail = BufRingEntry::tail(base).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
        self.refs[usize::from(bid)] = 0;
        self.in_ring += 1;
    }

    /// Drops one hold on `bid`; the last one gives the buffer back.
    fn unref(&mut self, bid: u16) {
        let Some(r) = self.refs.get_mut(usize::from(bid)) else {
            return;
        };
        if *r == 0 {
            return;
        }
        *r -= 1;
        if *r == 0 {
            self.give_back(bid);
        }
    }

    /// The `len` bytes at `off` of held buffer `bid`.
    fn bytes(&self, bid: u16, off: usize, len: usize) -> &[u8] {
        if bid >= self.count
            || off.saturating_add(len) > self.size
            || self.refs[usize::from(bid)] == 0
        {
            return &[];
        }
        // SAFETY: the range is inside buffer `bid`, and the buffer is held (refs > 0): it is
        // not in the kernel's ring, so the kernel does not write it while this borrow lives
        // (giving it back needs `&mut self`).
        unsafe { std::slice::from_raw_parts(self.buf_ptr(bid).add(off), len) }
    }
}

/// What keeps a send's payload alive until its completion.
enum Keep {
    Free,
    /// Never read: held only so the payload outlives the send.
    #[allow(dead_code)]
    Owned(Bytes),
    Received(u16),
}

/// One in-flight send: the header, iovec and address the SQE points at, and the payload owner.
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: RawAddr,
    keep: Keep,
}

/// A control message carrying `UDP_SEGMENT`: `segment` sits where `CMSG_DATA` points (the
/// header's size is a multiple of the cmsg alignment), and the struct is `CMSG_SPACE(2)` long.
#[repr(C)]
#[derive(Clone, Copy)]
struct SegmentCmsg {
    hdr: libc::cmsghdr,
    segment: u16,
}

// SAFETY: `CMSG_LEN` is plain arithmetic on its argument; it touches no memory.
const SEGMENT_CMSG_LEN: usize =
    unsafe { libc::CMSG_LEN(mem::size_of::<u16>() as libc::c_uint) } as usize;

/// One in-flight GSO send: several received datagrams to one destination, one `sendmsg`.
struct GsoSlot {
    hdr: libc::msghdr,
    iov: [libc::iovec; MAX_GSO_SEGMENTS],
    addr: RawAddr,
    cmsg: SegmentCmsg,
    /// The socket it was sent from, its destination, and each segment's (buffer, offset,
    /// length), for the references to drop and for a resend one by one if GSO fails.
    sock: u16,
    to: SocketAddr,
    segs: [(u16, u32, u32); MAX_GSO_SEGMENTS],
    n: usize,
}

/// One receiving socket of a ring.
struct Sock {
    sock: UdpSocket,
    /// Registered in the ring's file table at the socket's index.
    fixed: bool,
    /// A multishot receive is queued or active in the kernel.
    armed: bool,
    errors_in_row: u32,
}

/// One io_uring driving UDP sockets; see the module docs of [`super`].
pub struct UringUdp {
    // Declared first so the ring closes before the memory below is freed.
    ring: IoUring,
    socks: Vec<Sock>,
    single_issuer: bool,
    id: u64,
    bufs: BufRing,
    recv_hdr: Box<libc::msghdr>,
    /// The fd watched by a multishot poll, whether that poll is armed, and whether it fired
    /// since [`UringUdp::take_polled`] was last called.
    watch: Option<i32>,
    watch_armed: bool,
    polled: bool,
    slots: Box<[SendSlot]>,
    free: Vec<u32>,
    gso_slots: Box<[GsoSlot]>,
    gso_free: Vec<u32>,
    /// A GSO send failed with `EIO` / `EINVAL`: no more GSO on this ring.
    gso_off: bool,
    stats: UringStats,
}

impl UringUdp {
    /// Takes `sock` (set non-blocking here), builds a ring sized by `cfg` (clamped),
    /// registers the receive buffers and arms the multishot receive (submitted by the next
    /// [`submit`](Self::submit) / [`wait`](Self::wait)). Fails if the kernel lacks io_uring,
    /// the buffer ring (5.19) or memory; [`super::probe`] tells these apart.
    pub fn new(sock: UdpSocket, cfg: &UringConfig) -> io::Result<UringUdp> {
        let cfg = cfg.clamped();
        sock.set_nonblocking(true)?;
        let cq = u32::try_from(cfg.recv_buffers + cfg.send_slots + 64)
            .unwrap_or(u32::MAX)
            .max(2 * cfg.sq_entries);
        let (ring, single_issuer) = match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(cq)
            .setup_clamp()
            .build(cfg.sq_entries)
        {
            Ok(r) => (r, true),
            Err(_) => (
                IoUring::builder()
                    .setup_cqsize(cq)
                    .setup_clamp()
                    .build(cfg.sq_entries)?,
                false,
            ),
        };
        let sparse = u32::try_from(MAX_SOCKETS).unwrap_or(u32::MAX);
        let table = ring.submitter().register_files_sparse(sparse).is_ok();
        let mut bufs = BufRing::new(cfg.recv_buffers, cfg.max_payload + RECV_HEADER)?;
        // SAFETY: the entries region holds `count` entries, is page-aligned, and lives in
        // `self.bufs` as long as the ring (the ring is dropped first; dropping `UringUdp`
        // drains the kernel's use of it before that).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.entries.ptr.as_ptr() as u64,
                bufs.count,
                BGID,
                0,
            )?;
        }
        for bid in 0..bufs.count {
            bufs.give_back(bid);
        }
        // SAFETY: all-zero is a valid `msghdr` (null pointers, zero lengths).
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { mem::zeroed() });
        recv_hdr.msg_namelen = NAME_LEN as libc::socklen_t;
        let slots = (0..cfg.send_slots)
            .map(|_| SendSlot {
                // SAFETY: all-zero is valid for these plain C structs.
                hdr: unsafe { mem::zeroed() },
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                // SAFETY: as above.
                addr: RawAddr::zeroed(),
                keep: Keep::Free,
            })
            .collect::<Box<[SendSlot]>>();
        let free = (0..u32::try_from(cfg.send_slots).unwrap_or(u32::MAX))
            .rev()
            .collect();
        let gso_slots = (0..GSO_SLOTS)
            .map(|_| {
                // SAFETY: `cmsghdr` is a plain C struct of integers; all-zero is valid.
                let mut hdr: libc::cmsghdr = unsafe { mem::zeroed() };
                hdr.cmsg_len = SEGMENT_CMSG_LEN as _;
                hdr.cmsg_level = libc::SOL_UDP;
                hdr.cmsg_type = libc::UDP_SEGMENT;
                GsoSlot {
                    // SAFETY: all-zero is valid for this plain C struct.
                    hdr: unsafe { mem::zeroed() },
                    iov: [libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0,
                    }; MAX_GSO_SEGMENTS],
                    addr: RawAddr::zeroed(),
                    cmsg: SegmentCmsg { hdr, segment: 0 },
                    sock: 0,
                    to: SocketAddr::from(([0, 0, 0, 0], 0)),
                    segs: [(0, 0, 0); MAX_GSO_SEGMENTS],
                    n: 0,
                }
            })
            .collect::<Box<[GsoSlot]>>();
        let gso_free = (0..GSO_SLOTS as u32).rev().collect();
        let mut u = UringUdp {
            ring,
            socks: Vec::new(),
            single_issuer,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            bufs,
            recv_hdr,
            watch: None,
            watch_armed: false,
            polled: false,
            slots,
            free,
            gso_slots,
            gso_free,
            gso_off: false,
            stats: UringStats::default(),
        };
        u.add(sock, table)?;
        Ok(u)
    }

    /// Adds another socket (set non-blocking here) and starts receiving on it; returns its
    /// index for [`send_on`](Self::send_on) and [`Datagram::socket`]. Socket 0 is the one
    /// given to [`new`](Self::new). At most [`MAX_SOCKETS`].
    pub fn add_socket(&mut self, sock: UdpSocket) -> io::Result<u16> {
        let table = self.socks.first().is_some_and(|s| s.fixed);
        self.add(sock, table)
    }

    fn add(&mut self, sock: UdpSocket, table: bool) -> io::Result<u16> {
        if self.socks.len() >= MAX_SOCKETS {
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        sock.set_nonblocking(true)?;
        let idx = self.socks.len();
        let fixed = table
            && self
                .ring
                .submitter()
                .register_files_update(idx as u32, &[sock.as_raw_fd()])
                .is_ok();
        self.socks.push(Sock {
            sock,
            fixed,
            armed: false,
            errors_in_row: 0,
        });
        self.arm_recv(idx)
            .map_err(|e| io::Error::from_raw_os_error(e.0))?;
        Ok(idx as u16)
    }

    /// Watches `fd` for readability with a multishot poll (re-armed when the kernel ends
    /// it): [`take_polled`](Self::take_polled) tells whether it fired. The worker watches
    /// its epoll descriptor this way, so it blocks in one place. `fd` must stay open as long
    /// as the ring; one fd at a time.
    pub fn watch(&mut self, fd: i32) -> io::Result<()> {
        self.watch = Some(fd);
        self.arm_watch()
            .map_err(|e| io::Error::from_raw_os_error(e.0))
    }

    /// Whether the watched fd became readable since the last call (clears the flag).
    pub fn take_polled(&mut self) -> bool {
        mem::take(&mut self.polled)
    }

    /// The number of sockets.
    pub fn sockets(&self) -> usize {
        self.socks.len()
    }

    /// Socket 0 (for `local_addr`, socket options...). Its fd stays owned by the ring.
    pub fn socket(&self) -> &UdpSocket {
        &self.socks[0].sock
    }

    /// Socket `idx`, if there is one.
    pub fn socket_at(&self, idx: u16) -> Option<&UdpSocket> {
        self.socks.get(usize::from(idx)).map(|s| &s.sock)
    }

    /// Whether the ring runs with `SINGLE_ISSUER | DEFER_TASKRUN`.
    pub fn single_issuer(&self) -> bool {
        self.single_issuer
    }

    /// Whether socket 0 is a registered (fixed) file of the ring.
    pub fn fixed_file(&self) -> bool {
        self.socks.first().is_some_and(|s| s.fixed)
    }

    /// The counters.
    pub fn stats(&self) -> UringStats {
        self.stats
    }

    /// Receive buffers in the ring, and in all.
    pub fn buffers_in_ring(&self) -> (usize, usize) {
        (self.bufs.in_ring, usize::from(self.bufs.count))
    }

    /// Sends queued or in flight (slots not yet retired by [`reap`](Self::reap)).
    pub fn sends_in_flight(&self) -> usize {
        self.slots.len() - self.free.len() + self.gso_in_flight()
    }

    /// Whether a multishot receive is queued or active on every socket.
    pub fn receiving(&self) -> bool {
        self.socks.iter().all(|s| s.armed)
    }

    /// The payload of `d` (empty if `d` belongs to another `UringUdp`).
    pub fn payload(&self, d: &Datagram) -> &[u8] {
        if d.owner != self.id {
            return &[];
        }
        self.bufs.bytes(d.bid, d.offset as usize, d.len as usize)
    }

    /// Gives `d`'s buffer back: to the ring at once, or when its last send completes.
    /// A handle from another `UringUdp` is ignored.
    pub fn release(&mut self, d: Datagram) {
        if d.owner == self.id {
            self.bufs.unref(d.bid);
            // Re-arming can only fail on a full SQ that cannot be submitted; the next `reap`
            // tries again.
            self.rearm_all();
        }
    }

    /// Queues one send of `payload` to `to` from socket 0. Fan-out: call it once per
    /// destination with clones of one `Bytes` (a refcount, no copy). Goes out with the next
    /// submit.
    pub fn send(&mut self, payload: Bytes, to: SocketAddr) -> Result<(), SendError> {
        self.send_on(0, payload, to)
    }

    /// [`send`](Self::send) from socket `sock`.
    pub fn send_on(&mut self, sock: u16, payload: Bytes, to: SocketAddr) -> Result<(), SendError> {
        let (ptr, len) = (payload.as_ptr(), payload.len());
        self.queue_send(sock, Keep::Owned(payload), ptr, len, to)
    }

    /// Queues one send of a received datagram's payload to `to` from socket 0, in place: the
    /// buffer goes back to the ring only after this send completes and `d` is released.
    pub fn send_received(&mut self, d: &Datagram, to: SocketAddr) -> Result<(), SendError> {
        self.send_received_on(0, d, to)
    }

    /// [`send_received`](Self::send_received) from socket `sock` (any socket of this ring,
    /// whichever one received `d`).
    pub fn send_received_on(
        &mut self,
        sock: u16,
        d: &Datagram,
        to: SocketAddr,
    ) -> Result<(), SendError> {
        if d.owner != self.id {
            return Err(SendError::ForeignDatagram);
        }
        let payload = self.bufs.bytes(d.bid, d.offset as usize, d.len as usize);
        let (ptr, len) = (payload.as_ptr(), payload.len());
        self.queue_send(sock, Keep::Received(d.bid), ptr, len, to)
    }

    /// Whether GSO sends may still be queued (none has failed with `EIO` / `EINVAL`).
    pub fn gso_on(&self) -> bool {
        !self.gso_off
    }

    /// Queues one GSO send from socket `sock` to `to` carrying the payloads of `ds[i]` for
    /// every `i` in `which`, in that order, in place (each buffer goes back to the ring after
    /// this send completes and its handle is released). Rules (else [`SendError::BadGso`]):
    /// 2 to [`MAX_GSO_SEGMENTS`] datagrams of this ring, `to` IPv4, the first of length
    /// 1..=[`MAX_GSO_SEGMENT`], all others of the same length except the last, which may be
    /// shorter but not empty, at most [`MAX_GSO_BYTES`] in all. The receiver gets them as
    /// separate datagrams. If the kernel refuses GSO (`EIO` / `EINVAL`), the datagrams are
    /// sent again one by one and [`gso_on`](Self::gso_on) turns false for good.
    pub fn send_received_gso_on(
        &mut self,
        sock: u16,
        ds: &[Datagram],
        which: &[u32],
        to: SocketAddr,
    ) -> Result<(), SendError> {
        let n = which.len();
        if self.gso_off || !(2..=MAX_GSO_SEGMENTS).contains(&n) || !to.is_ipv4() {
            return Err(SendError::BadGso);
        }
        let mut total = 0usize;
        let mut seg = 0usize;
        for (k, &i) in which.iter().enumerate() {
            let Some(d) = ds.get(i as usize) else {
                return Err(SendError::BadGso);
            };
            let len = d.len as usize;
            let ok_len = if k == 0 {
                seg = len;
                (1..=MAX_GSO_SEGMENT).contains(&len)
            } else if k + 1 == n {
                (1..=seg).contains(&len)
            } else {
                len == seg
            };
            if d.owner != self.id || !ok_len || d.truncated {
                return Err(SendError::BadGso);
            }
            total += len;
        }
        if total > MAX_GSO_BYTES {
            return Err(SendError::BadGso);
        }
        let Some(target) = self.target(usize::from(sock)) else {
            return Err(SendError::NoSocket);
        };
        let Some(&idx) = self.gso_free.last() else {
            return Err(SendError::SlabFull);
        };
        if self.ring.submission().is_full() {
            self.submit().map_err(errno_of).map_err(SendError::Submit)?;
        }
        self.gso_free.pop();
        for &i in which {
            let d = &ds[i as usize];
            self.bufs.refs[usize::from(d.bid)] += 1;
        }
        let slot = &mut self.gso_slots[idx as usize];
        for (k, &i) in which.iter().enumerate() {
            let d = &ds[i as usize];
            let payload = self.bufs.bytes(d.bid, d.offset as usize, d.len as usize);
            slot.iov[k] = libc::iovec {
                iov_base: payload.as_ptr().cast_mut().cast(),
                iov_len: payload.len(),
            };
            slot.segs[k] = (d.bid, d.offset, d.len);
        }
        slot.n = n;
        slot.sock = sock;
        slot.to = to;
        slot.cmsg.segment = seg as u16;
        let (addr, addr_len) = RawAddr::from_socket_addr(&to);
        slot.addr = addr;
        slot.hdr.msg_name = (&raw mut slot.addr).cast();
        slot.hdr.msg_namelen = addr_len;
        slot.hdr.msg_iov = slot.iov.as_mut_ptr();
        slot.hdr.msg_iovlen = n as _;
        slot.hdr.msg_control = (&raw mut slot.cmsg).cast();
        slot.hdr.msg_controllen = mem::size_of::<SegmentCmsg>() as _;
        let hdr = &raw const slot.hdr;
        let sqe = match target {
            Target::Fixed(i) => opcode::SendMsg::new(types::Fixed(i), hdr).build(),
            Target::Fd(fd) => opcode::SendMsg::new(types::Fd(fd), hdr).build(),
        };
        // SAFETY: the SQE points at this slot's header, iovecs, address and cmsg, and the
        // iovecs at received buffers whose refcounts were just raised. The slot sits in a
        // boxed slice that is never reallocated and is not reused before its CQE is reaped
        // (drop drains or leaks).
        let pushed = unsafe {
            self.ring
                .submission()
                .push(&sqe.user_data(UD_GSO | u64::from(idx)))
        };
        if pushed.is_err() {
            self.retire_gso(idx, None);
            return Err(SendError::Submit(Errno(libc::EBUSY)));
        }
        Ok(())
    }

    /// A GSO send finished (`res`: its result, `None` if it never went out): drops its
    /// references; if the kernel refused GSO, turns it off and sends each datagram alone.
    fn retire_gso(&mut self, idx: u32, res: Option<i32>) {
        let Some(slot) = self.gso_slots.get(idx as usize) else {
            return;
        };
        let (n, sock, to, segs) = (slot.n, slot.sock, slot.to, slot.segs);
        if let Some(res) = res {
            if res >= 0 {
                self.stats.sent += n as u64;
                self.stats.gso_sent += 1;
            } else if -res == libc::EIO || -res == libc::EINVAL {
                self.gso_off = true;
                self.stats.gso_failed.get_or_insert(Errno(-res));
                for &(bid, off, len) in &segs[..n] {
                    let payload = self.bufs.bytes(bid, off as usize, len as usize);
                    let (ptr, plen) = (payload.as_ptr(), payload.len());
                    if self
                        .queue_send(sock, Keep::Received(bid), ptr, plen, to)
                        .is_err()
                    {
                        self.stats.send_errors += 1;
                    }
                }
            } else {
                self.stats.send_errors += n as u64;
                if self.stats.first_send_error.is_none() {
                    self.stats.first_send_error = Some(Errno(-res));
                }
            }
        }
        for &(bid, _, _) in &segs[..n] {
            self.bufs.unref(bid);
        }
        if let Some(slot) = self.gso_slots.get_mut(idx as usize) {
            slot.n = 0;
        }
        self.gso_free.push(idx);
    }

    /// GSO sends in flight.
    pub fn gso_in_flight(&self) -> usize {
        GSO_SLOTS - self.gso_free.len()
    }

    fn queue_send(
        &mut self,
        sock: u16,
        keep: Keep,
        ptr: *const u8,
        len: usize,
        to: SocketAddr,
    ) -> Result<(), SendError> {
        let Some(target) = self.target(usize::from(sock)) else {
            return Err(SendError::NoSocket);
        };
        let Some(&idx) = self.free.last() else {
            return Err(SendError::SlabFull);
        };
        if self.ring.submission().is_full() {
            self.submit().map_err(errno_of).map_err(SendError::Submit)?;
        }
        self.free.pop();
        if let Keep::Received(bid) = keep {
            self.bufs.refs[usize::from(bid)] += 1;
        }
        let slot = &mut self.slots[idx as usize];
        slot.keep = keep;
        let (addr, addr_len) = RawAddr::from_socket_addr(&to);
        slot.addr = addr;
        slot.iov = libc::iovec {
            iov_base: ptr.cast_mut().cast(),
            iov_len: len,
        };
        slot.hdr.msg_name = (&raw mut slot.addr).cast();
        slot.hdr.msg_namelen = addr_len;
        slot.hdr.msg_iov = &raw mut slot.iov;
        slot.hdr.msg_iovlen = 1;
        let hdr = &raw const slot.hdr;
        let sqe = match target {
            Target::Fixed(i) => opcode::SendMsg::new(types::Fixed(i), hdr).build(),
            Target::Fd(fd) => opcode::SendMsg::new(types::Fd(fd), hdr).build(),
        };
        // SAFETY: the SQE points at this slot's header, iovec and address, and the iovec at
        // the payload the slot keeps (an owned `Bytes`, or a received buffer whose refcount
        // was just raised). The slot sits in a boxed slice that is never reallocated, and it
        // is not reused or dropped before its CQE is reaped (drop drains or leaks).
        let pushed = unsafe {
            self.ring
                .submission()
                .push(&sqe.user_data(UD_SEND | u64::from(idx)))
        };
        if pushed.is_err() {
            // Unreachable after the early submit above; undo rather than leak the slot.
            self.retire(idx);
            return Err(SendError::Submit(Errno(libc::EBUSY)));
        }
        Ok(())
    }

    /// Submits everything queued: one `io_uring_enter`. `EINTR` is retried; `EBUSY` (the
    /// completion queue needs reaping) and `EAGAIN` return as errors.
    pub fn submit(&mut self) -> io::Result<usize> {
        loop {
            self.stats.enters += 1;
            match self.ring.submit() {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                r => return r,
            }
        }
    }

    /// Submits everything queued and waits until at least `min` completions are ready or
    /// `timeout` passes (zero: do not block, but run the kernel's deferred work). A timeout
    /// or a signal is not an error.
    pub fn wait(&mut self, min: usize, timeout: Duration) -> io::Result<()> {
        let ts = Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = SubmitArgs::new().timespec(&ts);
        self.stats.enters += 1;
        match self.ring.submitter().submit_with_args(min.max(1), &args) {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Handles every completion that is ready: received datagrams are appended to `out`,
    /// finished sends free their slots (errors counted), and the multishot receive is queued
    /// again if the kernel ended it. Returns how many datagrams were appended.
    pub fn reap(&mut self, out: &mut Vec<Datagram>) -> usize {
        let before = out.len();
        loop {
            let Some(cqe) = self.ring.completion().next() else {
                break;
            };
            let (ud, res, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
            match ud & UD_KIND {
                UD_RECV => self.on_recv((ud & UD_INDEX) as usize, res, flags, out),
                UD_POLL => {
                    if !cqueue::more(flags) {
                        self.watch_armed = false;
                    }
                    if res >= 0 {
                        self.polled = true;
                    }
                }
                UD_SEND => {
                    if res < 0 {
                        self.stats.send_errors += 1;
                        if self.stats.first_send_error.is_none() {
                            self.stats.first_send_error = Some(Errno(-res));
                        }
                    } else {
                        self.stats.sent += 1;
                    }
                    self.retire((ud & 0xffff_ffff) as u32);
                }
                UD_GSO => self.retire_gso((ud & UD_INDEX) as u32, Some(res)),
                _ => {}
            }
        }
        self.rearm_all();
        if self.watch.is_some() && !self.watch_armed {
            let _ = self.arm_watch();
        }
        out.len() - before
    }

    fn on_recv(&mut self, sock: usize, res: i32, flags: u32, out: &mut Vec<Datagram>) {
        let Some(s) = self.socks.get_mut(sock) else {
            self.stats.malformed += 1;
            return;
        };
        if !cqueue::more(flags) {
            s.armed = false;
        }
        if res < 0 {
            match -res {
                libc::ENOBUFS => self.stats.enobufs += 1,
                libc::ECANCELED => {}
                e => {
                    self.stats.recv_errors += 1;
                    self.stats.last_recv_error = Some(Errno(e));
                    s.errors_in_row += 1;
                }
            }
            return;
        }
        let Some(bid) = cqueue::buffer_select(flags).filter(|&b| b < self.bufs.count) else {
            self.stats.malformed += 1;
            return;
        };
        // The kernel handed this buffer over: it is ours until given back.
        self.bufs.in_ring = self.bufs.in_ring.saturating_sub(1);
        self.bufs.refs[usize::from(bid)] = 1;
        s.errors_in_row = 0;
        let parsed = {
            let whole = self.bufs.bytes(bid, 0, self.bufs.size);
            RecvMsgOut::parse(whole, &self.recv_hdr).ok().and_then(|m| {
                let from = parse_sockaddr(m.name_data())?;
                let offset = m.payload_data().as_ptr() as usize - whole.as_ptr() as usize;
                Some((
                    from,
                    offset,
                    m.payload_data().len(),
                    m.is_payload_truncated(),
                ))
            })
        };
        let Some((from, offset, len, truncated)) = parsed else {
            self.stats.malformed += 1;
            self.bufs.unref(bid);
            return;
        };
        self.stats.received += 1;
        self.stats.truncated += u64::from(truncated);
        out.push(Datagram {
            owner: self.id,
            sock: sock as u16,
            bid,
            offset: offset as u32,
            len: len as u32,
            from,
            truncated,
        });
    }

    fn retire(&mut self, idx: u32) {
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        match mem::replace(&mut slot.keep, Keep::Free) {
            Keep::Free => return,
            Keep::Owned(_) => {}
            Keep::Received(bid) => self.bufs.unref(bid),
        }
        self.free.push(idx);
        self.rearm_all();
    }

    /// How SQEs name socket `idx`.
    fn target(&self, idx: usize) -> Option<Target> {
        let s = self.socks.get(idx)?;
        Some(if s.fixed {
            Target::Fixed(idx as u32)
        } else {
            Target::Fd(s.sock.as_raw_fd())
        })
    }

    fn rearm_all(&mut self) {
        for i in 0..self.socks.len() {
            if !self.socks[i].armed && self.arm_recv(i).is_err() {
                break;
            }
        }
    }

    /// Queues socket `idx`'s multishot receive if it is not running, the ring has a buffer
    /// for it and errors have not piled up.
    fn arm_recv(&mut self, idx: usize) -> Result<(), Errno> {
        let Some(s) = self.socks.get(idx) else {
            return Ok(());
        };
        if s.armed || self.bufs.in_ring == 0 || s.errors_in_row >= MAX_RECV_ERRORS {
            return Ok(());
        }
        if self.ring.submission().is_full() {
            self.submit().map_err(errno_of)?;
        }
        let hdr = &raw const *self.recv_hdr;
        let sqe = match self.target(idx) {
            Some(Target::Fixed(i)) => opcode::RecvMsgMulti::new(types::Fixed(i), hdr, BGID).build(),
            Some(Target::Fd(fd)) => opcode::RecvMsgMulti::new(types::Fd(fd), hdr, BGID).build(),
            None => return Ok(()),
        };
        // SAFETY: the SQE points at the boxed `recv_hdr`, which lives as long as `self` and is
        // never written after construction (the kernel only reads its lengths); the buffers
        // it selects are the registered ring's.
        let pushed = unsafe {
            self.ring
                .submission()
                .push(&sqe.user_data(UD_RECV | idx as u64))
        };
        if pushed.is_err() {
            return Err(Errno(libc::EBUSY));
        }
        if self.stats.received > 0 || self.stats.enobufs > 0 || self.stats.recv_errors > 0 {
            self.stats.rearms += 1;
        }
        self.socks[idx].armed = true;
        Ok(())
    }

    /// Queues the multishot poll on the watched fd.
    fn arm_watch(&mut self) -> Result<(), Errno> {
        let Some(fd) = self.watch else {
            return Ok(());
        };
        if self.watch_armed {
            return Ok(());
        }
        if self.ring.submission().is_full() {
            self.submit().map_err(errno_of)?;
        }
        let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(UD_POLL);
        // SAFETY: a poll SQE points at no memory.
        let pushed = unsafe { self.ring.submission().push(&sqe) };
        if pushed.is_err() {
            return Err(Errno(libc::EBUSY));
        }
        self.watch_armed = true;
        Ok(())
    }

    fn any_receive_armed(&self) -> bool {
        self.socks.iter().any(|s| s.armed)
    }
}

impl Drop for UringUdp {
    /// Cancels the receive and any queued sends, then waits (up to 2 s) until the kernel has
    /// completed everything; if it has not, leaks the memory it may still use.
    fn drop(&mut self) {
        // Stop re-arming; then cancel everything the kernel holds.
        for s in &mut self.socks {
            s.errors_in_row = MAX_RECV_ERRORS;
        }
        self.watch = None;
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(UD_CANCEL);
        if self.ring.submission().is_full() {
            let _ = self.submit();
        }
        // SAFETY: a cancel SQE points at no memory.
        let _ = unsafe { self.ring.submission().push(&cancel) };
        let deadline = Instant::now() + DROP_DRAIN;
        let mut scratch = Vec::new();
        while self.any_receive_armed() || self.watch_armed || self.sends_in_flight() > 0 {
            if Instant::now() >= deadline || self.wait(1, Duration::from_millis(20)).is_err() {
                break;
            }
            self.reap(&mut scratch);
            for d in scratch.drain(..) {
                self.release(d);
            }
        }
        if self.any_receive_armed() || self.sends_in_flight() > 0 {
            // The kernel may still touch these: never free them.
            self.bufs.entries.leaked = true;
            self.bufs.bufs.leaked = true;
            mem::forget(mem::take(&mut self.slots));
            mem::forget(mem::take(&mut self.gso_slots));
            mem::forget(mem::replace(&mut self.recv_hdr, Box::new(zeroed_msghdr())));
        }
    }
}

/// How an SQE names a socket: by registered-file index or by fd.
#[derive(Clone, Copy)]
enum Target {
    Fixed(u32),
    Fd(i32),
}

fn zeroed_msghdr() -> libc::msghdr {
    // SAFETY: all-zero is a valid `msghdr`.
    unsafe { mem::zeroed() }
}

fn errno_of(e: io::Error) -> Errno {
    Errno(e.raw_os_error().unwrap_or(libc::EIO))
}

impl std::fmt::Debug for UringUdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringUdp")
            .field("buffers_in_ring", &self.buffers_in_ring())
            .field("sends_in_flight", &self.sends_in_flight())
            .field("sockets", &self.socks.len())
            .field("receiving", &self.receiving())
            .field("single_issuer", &self.single_issuer)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddrs_written_for_the_kernel_read_back() {
        let v4: SocketAddr = "10.1.2.3:4567".parse().unwrap();
        let (slot, len) = RawAddr::from_socket_addr(&v4);
        assert_eq!(len as usize, 16);
        // SAFETY: `RawAddr` is a fully initialised 28-byte plain C union.
        let bytes: [u8; 28] = unsafe { mem::transmute(slot) };
        assert_eq!(parse_sockaddr(&bytes[..16]), Some(v4));
        let v6: SocketAddr = "[fe80::1%2]:53".parse().unwrap();
        let (slot, len) = RawAddr::from_socket_addr(&v6);
        assert_eq!(len as usize, 28);
        // SAFETY: as above.
        let bytes: [u8; 28] = unsafe { mem::transmute(slot) };
        assert_eq!(parse_sockaddr(&bytes), Some(v6));
    }
}
