//! [`SendBatch`]: queue datagrams that borrow their payloads, then send them with as few
//! non-blocking `sendmmsg` calls as possible, optionally folding runs into UDP GSO messages.
//!
//! Zero-copy fan-out: one received buffer can be pushed N times with N destinations; each queued
//! entry is a slice plus an address, the bytes are never copied in user space. All arrays are
//! allocated at construction; `push` and `flush` allocate nothing.
//!
//! Flush policy (what the kernel's answers mean, measured on Linux 6.x):
//! - `sendmmsg` stops at the first datagram that fails. A failure that belongs to that datagram
//!   (`EACCES`, `EPERM`, `EINVAL`, `EAFNOSUPPORT`, `ENOBUFS`...) drops it alone: it is counted
//!   in `failed` and the rest of the queue goes on.
//! - ICMP-borne errors (`ECONNREFUSED`, `EHOSTUNREACH`, `ENETUNREACH`, `EMSGSIZE`...) may instead
//!   be a *pending* socket error left by an earlier datagram to another destination (a connected
//!   socket, or one with `IP_RECVERR`): the kernel reports it on whichever datagram comes next
//!   and clears it, and that datagram was never sent. So such a datagram is retried once, and
//!   dropped only if it fails again.
//! - `EAGAIN` stops the flush and leaves the unsent rest queued, in order (`remaining`), for the
//!   caller to retry on writability or drop by policy ([`SendBatch::clear`]).
//! - Socket-level errors (`EBADF`, `ENOTSOCK`, `EFAULT`, `EPIPE`) stop the flush too.
//! - GSO: consecutive datagrams to one destination with equal lengths (the last may be shorter)
//!   go out as one message with a `UDP_SEGMENT` cmsg, at most 64 segments and 65 507 bytes, and
//!   only for segments that fit an Ethernet MTU (1472 bytes over IPv4, 1452 over IPv6) so the
//!   kernel never has to refuse them for size. `EIO` / `EINVAL` on a GSO message turns GSO off
//!   for good ([`Gso::disable`]) and the same datagrams are resent one by one; any other error
//!   on a GSO message (after the one retry) splits that run into single datagrams.
//!
//! This module does not choose destinations, own buffers or decide what to do with leftovers.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;

use super::gso::Gso;
use super::sys::{self, RawAddr};

/// Most datagrams folded into one GSO message (the kernel's `UDP_MAX_SEGMENTS` on older kernels).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO message: the largest IPv4 UDP payload.
pub const MAX_GSO_BYTES: usize = 65_507;
/// Largest GSO segment over IPv4: a 1500-byte MTU minus IPv4 and UDP headers.
pub const MAX_GSO_SEGMENT_V4: usize = 1_472;
/// Largest GSO segment over IPv6: a 1500-byte MTU minus IPv6 and UDP headers.
pub const MAX_GSO_SEGMENT_V6: usize = 1_452;
/// Largest queue a [`SendBatch`] accepts; larger requests are clamped.
pub const MAX_CAPACITY: usize = 1 << 16;

/// [`SendBatch::push`] refused a datagram: the queue holds `capacity` entries already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("send batch is full: flush it before queueing more datagrams")
    }
}

impl std::error::Error for Full {}

/// An `errno` value the kernel returned from a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The matching [`io::ErrorKind`].
    pub fn kind(self) -> io::ErrorKind {
        io::Error::from_raw_os_error(self.0).kind()
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", io::Error::from_raw_os_error(self.0))
    }
}

/// What one [`SendBatch::flush`] did. `sent + failed + remaining` equals the queue length
/// before the flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushResult {
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Datagrams dropped because the kernel refused them (see the module docs).
    pub failed: usize,
    /// Datagrams still queued: the socket would block, or failed as a whole.
    pub remaining: usize,
    /// Whether the flush stopped because the socket would block (`EAGAIN`).
    pub blocked: bool,
    /// The first error the kernel reported (not `EAGAIN`), including a pending error that was
    /// cleared by a successful retry.
    pub first_error: Option<Errno>,
    /// How many error returns there were in all (not `EAGAIN`).
    pub errors: usize,
    /// `sendmmsg` calls made, including failed ones.
    pub syscalls: usize,
    /// GSO messages the kernel accepted, and the datagrams inside them (part of `sent`).
    pub gso_messages: usize,
    pub gso_datagrams: usize,
}

impl FlushResult {
    fn note_error(&mut self, errno: i32) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(Errno(errno));
        }
    }
}

/// One queued datagram.
pub(super) struct Pending<'a> {
    pub(super) payload: &'a [u8],
    pub(super) raw: RawAddr,
    pub(super) raw_len: libc::socklen_t,
    to: SocketAddr,
    /// Already retried once after an error that may have been pending.
    retried: bool,
    /// Must be sent on its own (its GSO run failed).
    no_gso: bool,
}

/// One message of one `sendmmsg` call: `count` consecutive queued datagrams from `start`, as a
/// GSO message of `segment`-byte segments when `segment > 0` (then `count >= 2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Planned {
    pub(super) start: usize,
    pub(super) count: usize,
    pub(super) segment: u16,
}

/// The syscall boundary of the flush loop, so its bookkeeping can be tested without a kernel:
/// send `plan` (messages over `pending`), return how many messages were taken or the errno of
/// the first one, as `sendmmsg` does.
pub(super) trait Transmit {
    fn transmit(&mut self, plan: &[Planned], pending: &[Pending<'_>]) -> Result<usize, i32>;
}

struct Kernel<'r, 'f> {
    raw: &'r mut sys::SendRaw,
    fd: std::os::fd::BorrowedFd<'f>,
}

impl Transmit for Kernel<'_, '_> {
    fn transmit(&mut self, plan: &[Planned], pending: &[Pending<'_>]) -> Result<usize, i32> {
        self.raw.send(self.fd, plan, pending)
    }
}

/// A queue of up to `capacity` datagrams borrowing their payloads for `'a`, and the
/// preallocated headers to send them.
pub struct SendBatch<'a> {
    queue: Queue<'a>,
    raw: sys::SendRaw,
}

struct Queue<'a> {
    pending: Vec<Pending<'a>>,
    plan: Vec<Planned>,
    max_msgs: usize,
    capacity: usize,
    gso: Option<Arc<Gso>>,
}

impl<'a> SendBatch<'a> {
    /// A batch of `capacity` datagrams (clamped to `1..=MAX_CAPACITY`), GSO off.
    pub fn new(capacity: usize) -> SendBatch<'a> {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let max_msgs = capacity.min(sys::MAX_MSGS);
        SendBatch {
            queue: Queue {
                pending: Vec::with_capacity(capacity),
                plan: Vec::with_capacity(max_msgs),
                max_msgs,
                capacity,
                gso: None,
            },
            raw: sys::SendRaw::new(max_msgs, capacity),
        }
    }

    /// Uses GSO while `gso` says it is enabled (`None`: never). Share one [`Gso`] per socket
    /// (or per egress path) so a failure turns it off everywhere at once.
    pub fn with_gso(mut self, gso: Option<Arc<Gso>>) -> SendBatch<'a> {
        self.queue.gso = gso;
        self
    }

    /// Whether the next flush may build GSO messages.
    pub fn gso_enabled(&self) -> bool {
        self.queue.gso.as_deref().is_some_and(Gso::is_enabled)
    }

    /// Queues `payload` for `to`. The slice is borrowed, not copied: push the same slice to
    /// many destinations for fan-out. The destination's family must match the socket's
    /// (an IPv6 socket needs IPv4-mapped addresses), or that datagram fails at flush.
    pub fn push(&mut self, payload: &'a [u8], to: SocketAddr) -> Result<(), Full> {
        let q = &mut self.queue;
        if q.pending.len() >= q.capacity {
            return Err(Full);
        }
        let (raw, raw_len) = RawAddr::from_socket_addr(&to);
        q.pending.push(Pending {
            payload,
            raw,
            raw_len,
            to,
            retried: false,
            no_gso: false,
        });
        Ok(())
    }

    /// Datagrams queued (including any left by a flush that would have blocked).
    pub fn len(&self) -> usize {
        self.queue.pending.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.pending.is_empty()
    }

    /// Most datagrams the batch holds.
    pub fn capacity(&self) -> usize {
        self.queue.capacity
    }

    /// Drops everything queued (the policy for leftovers the caller will not retry).
    pub fn clear(&mut self) {
        self.queue.pending.clear();
    }

    /// Empties the batch (dropping anything still queued) and lets it borrow payloads for
    /// another lifetime, keeping every allocation: a worker keeps one `SendBatch<'static>`
    /// and recycles it to borrow each received batch in turn.
    pub fn recycle<'b>(self) -> SendBatch<'b> {
        let SendBatch { queue, raw } = self;
        let mut pending = queue.pending;
        pending.clear();
        // An empty vector collected in place into one of the same layout keeps its buffer
        // (`filter_map` only changes the element lifetime here; the allocation test checks
        // that nothing is allocated).
        #[allow(clippy::unnecessary_filter_map)]
        let pending: Vec<Pending<'b>> = pending.into_iter().filter_map(|_| None).collect();
        SendBatch {
            queue: Queue {
                pending,
                plan: queue.plan,
                max_msgs: queue.max_msgs,
                capacity: queue.capacity,
                gso: queue.gso,
            },
            raw,
        }
    }

    /// Sends everything queued with non-blocking `sendmmsg` calls until the queue is empty or
    /// the socket would block; see the module docs for how errors are handled. Sent and failed
    /// datagrams leave the queue; the rest stay, in order.
    pub fn flush(&mut self, sock: &impl AsFd) -> FlushResult {
        let mut kernel = Kernel {
            raw: &mut self.raw,
            fd: sock.as_fd(),
        };
        self.queue.flush_with(&mut kernel)
    }
}

impl fmt::Debug for SendBatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBatch")
            .field("queued", &self.len())
            .field("capacity", &self.capacity())
            .field("gso", &self.gso_enabled())
            .finish()
    }
}

/// Errors after which the datagram that reported them may simply not have been the culprit.
fn maybe_pending(errno: i32) -> bool {
    matches!(
        errno,
        libc::ECONNREFUSED
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EMSGSIZE
            | libc::EPROTO
            | libc::ENOPROTOOPT
    )
}

/// Errors of the socket itself: every further datagram would fail the same way.
fn socket_error(errno: i32) -> bool {
    matches!(
        errno,
        libc::EBADF | libc::ENOTSOCK | libc::EFAULT | libc::EPIPE
    )
}

impl Queue<'_> {
    /// Length of the GSO run starting at `i` (1 if it cannot start one).
    fn gso_run(&self, i: usize) -> usize {
        let Some(first) = self.pending.get(i) else {
            return 1;
        };
        let seg = first.payload.len();
        let max_seg = match first.to {
            SocketAddr::V4(_) => MAX_GSO_SEGMENT_V4,
            SocketAddr::V6(_) => MAX_GSO_SEGMENT_V6,
        };
        if first.no_gso || seg == 0 || seg > max_seg {
            return 1;
        }
        let mut total = seg;
        let mut n = 1;
        for d in &self.pending[i + 1..] {
            let len = d.payload.len();
            if n == MAX_GSO_SEGMENTS
                || d.no_gso
                || d.to != first.to
                || len == 0
                || len > seg
                || total + len > MAX_GSO_BYTES
            {
                break;
            }
            total += len;
            n += 1;
            if len < seg {
                // A shorter datagram can only be the last segment.
                break;
            }
        }
        n
    }

    /// Fills `self.plan` with the messages of one call, starting at queued datagram `head`.
    fn plan_from(&mut self, head: usize, gso: bool) {
        self.plan.clear();
        let mut i = head;
        while i < self.pending.len() && self.plan.len() < self.max_msgs {
            let count = if gso { self.gso_run(i) } else { 1 };
            let segment = if count > 1 {
                // `gso_run` only starts runs at lengths <= MAX_GSO_SEGMENT_V4, which fits.
                u16::try_from(self.pending[i].payload.len()).unwrap_or(0)
            } else {
                0
            };
            let count = if segment == 0 { 1 } else { count };
            self.plan.push(Planned {
                start: i,
                count,
                segment,
            });
            i += count;
        }
    }

    fn flush_with(&mut self, tx: &mut impl Transmit) -> FlushResult {
        let mut r = FlushResult::default();
        let mut head = 0;
        while head < self.pending.len() {
            let gso = self.gso.as_deref().is_some_and(Gso::is_enabled);
            self.plan_from(head, gso);
            r.syscalls += 1;
            match tx.transmit(&self.plan, &self.pending) {
                Ok(0) => {
                    // `sendmmsg` never takes nothing without an error; treat it as a full
                    // socket rather than spin.
                    r.blocked = true;
                    break;
                }
                Ok(n) => {
                    for p in &self.plan[..n.min(self.plan.len())] {
                        r.sent += p.count;
                        if p.segment > 0 {
                            r.gso_messages += 1;
                            r.gso_datagrams += p.count;
                        }
                        head = p.start + p.count;
                    }
                }
                Err(e) if e == libc::EAGAIN || e == libc::EWOULDBLOCK => {
                    r.blocked = true;
                    break;
                }
                Err(e) => {
                    r.note_error(e);
                    let p = self.plan[0];
                    if p.segment > 0 && (e == libc::EIO || e == libc::EINVAL) {
                        if let Some(g) = &self.gso {
                            g.disable(e);
                        }
                        for d in &mut self.pending[p.start..p.start + p.count] {
                            d.no_gso = true;
                        }
                        continue;
                    }
                    if socket_error(e) {
                        break;
                    }
                    let first = &mut self.pending[p.start];
                    if maybe_pending(e) && !first.retried {
                        first.retried = true;
                        continue;
                    }
                    if p.count > 1 {
                        for d in &mut self.pending[p.start..p.start + p.count] {
                            d.no_gso = true;
                        }
                        continue;
                    }
                    r.failed += 1;
                    head += 1;
                }
            }
        }
        // Shifts the unsent rest to the front; no allocation.
        self.pending.drain(..head);
        r.remaining = self.pending.len();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Records every call (as `(start, count, segment)` per message and the first payload
    /// byte of each message) and answers from a script; accepts everything once it runs out.
    #[derive(Default)]
    struct Script {
        answers: VecDeque<Result<usize, i32>>,
        calls: Vec<Vec<(usize, usize, u16)>>,
        delivered: Vec<u8>,
    }

    impl Script {
        fn new(answers: &[Result<usize, i32>]) -> Script {
            Script {
                answers: answers.iter().copied().collect(),
                ..Script::default()
            }
        }
    }

    impl Transmit for Script {
        fn transmit(&mut self, plan: &[Planned], pending: &[Pending<'_>]) -> Result<usize, i32> {
            self.calls
                .push(plan.iter().map(|p| (p.start, p.count, p.segment)).collect());
            let answer = self.answers.pop_front().unwrap_or(Ok(plan.len()));
            if let Ok(n) = answer {
                for p in &plan[..n.min(plan.len())] {
                    for d in &pending[p.start..p.start + p.count] {
                        self.delivered.push(d.payload[0]);
                    }
                }
            }
            answer
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Ten one-byte payloads 0..10, each to its own port.
    const TEN: [[u8; 1]; 10] = [[0], [1], [2], [3], [4], [5], [6], [7], [8], [9]];

    fn ten(b: &mut SendBatch<'static>) {
        for (i, p) in TEN.iter().enumerate() {
            b.push(p, addr(1000 + i as u16)).unwrap();
        }
    }

    #[test]
    fn push_refuses_past_capacity() {
        let mut b = SendBatch::new(2);
        b.push(b"a", addr(1)).unwrap();
        b.push(b"a", addr(2)).unwrap();
        assert_eq!(b.push(b"a", addr(3)), Err(Full));
        assert_eq!(b.len(), 2);
        b.clear();
        assert!(b.is_empty());
    }

    #[test]
    fn would_block_leaves_the_rest_queued_in_order() {
        let mut b = SendBatch::new(10);
        ten(&mut b);
        let mut s = Script::new(&[Ok(3), Err(libc::EAGAIN)]);
        let r = b.queue.flush_with(&mut s);
        assert_eq!((r.sent, r.failed, r.remaining), (3, 0, 7));
        assert!(r.blocked);
        assert_eq!(r.first_error, None);
        assert_eq!(b.len(), 7);
        let r = b.queue.flush_with(&mut s);
        assert_eq!((r.sent, r.failed, r.remaining, r.blocked), (7, 0, 0, false));
        assert_eq!(s.delivered, (0..10).collect::<Vec<u8>>());
        assert!(b.is_empty());
    }

    #[test]
    fn a_per_destination_error_drops_only_that_datagram() {
        let mut b = SendBatch::new(10);
        ten(&mut b);
        let mut s = Script::new(&[Ok(2), Err(libc::EACCES)]);
        let r = b.queue.flush_with(&mut s);
        assert_eq!((r.sent, r.failed, r.remaining), (9, 1, 0));
        assert_eq!(r.first_error, Some(Errno(libc::EACCES)));
        assert_eq!(
            r.first_error.unwrap().kind(),
            io::ErrorKind::PermissionDenied
        );
        assert_eq!(s.delivered, [0, 1, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(s.calls.len(), 3);
        assert_eq!(s.calls[2][0], (3, 1, 0));
    }

    #[test]
    fn a_pending_icmp_error_is_retried_once_then_drops_the_datagram() {
        let mut b = SendBatch::new(10);
        ten(&mut b);
        let mut s = Script::new(&[Err(libc::ECONNREFUSED)]);
        let r = b.queue.flush_with(&mut s);
        assert_eq!((r.sent, r.failed, r.errors), (10, 0, 1));
        assert_eq!(r.first_error, Some(Errno(libc::ECONNREFUSED)));
        assert_eq!(s.delivered, (0..10).collect::<Vec<u8>>());

        ten(&mut b);
        let mut s = Script::new(&[Ok(4), Err(libc::EHOSTUNREACH), Err(libc::EHOSTUNREACH)]);
        let r = b.queue.flush_with(&mut s);
        assert_eq!((r.sent, r.failed, r.errors), (9, 1, 2));
        assert_eq!(s.delivered, [0, 1, 2, 3, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn a_socket_error_stops_and_keeps_everything_queued() {
        let mut b = SendBatch::new(10);
        ten(&mut b);
        let mut s = Script::new(&[Ok(1), Err(libc::EBADF)]);
        let r = b.queue.flush_with(&mut s);
        assert_eq!((r.sent, r.failed, r.remaining, r.blocked), (1, 0, 9, false));
        assert_eq!(r.first_error, Some(Errno(libc::EBADF)));
    }

    #[test]
    fn a_kernel_that_takes_nothing_does_not_spin() {
        let mut b = SendBatch::new(10);
        ten(&mut b);
        let mut s = Script::new(&[Ok(0)]);
        let r = b.queue.flush_with(&mut s);
        assert_eq!(
            (r.sent, r.remaining, r.blocked, r.syscalls),
            (0, 10, true, 1)
        );
    }

    #[test]
    fn one_call_carries_at_most_uio_maxiov_messages() {
        let payload = [7u8; 4];
        let mut b = SendBatch::new(3000);
        for i in 0..3000 {
            b.push(&payload, addr(i as u16)).unwrap();
        }
        let mut s = Script::default();
        let r = b.queue.flush_with(&mut s);
        assert_eq!((r.sent, r.syscalls), (3000, 3));
        assert_eq!(s.calls[0].len(), sys::MAX_MSGS);
        assert_eq!(s.calls[2].len(), 3000 - 2 * sys::MAX_MSGS);
    }

    fn gso_batch<'a>(items: &[(&'a [u8], u16)]) -> SendBatch<'a> {
        let mut b = SendBatch::new(items.len()).with_gso(Some(Arc::new(Gso::new(true))));
        for (p, port) in items {
            b.push(p, addr(*port)).unwrap();
        }
        b
    }

    #[test]
    fn gso_groups_equal_runs_to_one_destination() {
        let big = [1u8; 100];
        let small = [2u8; 50];
        let b = gso_batch(&[
            (&big, 1),
            (&big, 1),
            (&small, 1), // shorter: ends the run
            (&big, 1),   // alone: next one goes elsewhere
            (&big, 2),
            (&big, 2),
            (&small, 2),
            (&small, 2), // after a shorter one: new run
            (&small, 2),
            (&big, 2), // longer than the run's segment: new message
        ]);
        let mut q = b.queue;
        q.plan_from(0, true);
        assert_eq!(
            q.plan,
            [
                Planned {
                    start: 0,
                    count: 3,
                    segment: 100
                },
                Planned {
                    start: 3,
                    count: 1,
                    segment: 0
                },
                Planned {
                    start: 4,
                    count: 3,
                    segment: 100
                },
                Planned {
                    start: 7,
                    count: 2,
                    segment: 50
                },
                Planned {
                    start: 9,
                    count: 1,
                    segment: 0
                },
            ]
        );
        q.plan_from(0, false);
        assert_eq!(q.plan.len(), 10);
        assert!(q.plan.iter().all(|p| p.count == 1 && p.segment == 0));
    }

    #[test]
    fn gso_runs_respect_segment_count_byte_total_and_mtu_limits() {
        // 1400-byte segments: 46 make 64 400 bytes, a 47th would pass 65 507.
        let p = [0u8; 1400];
        let b = gso_batch(&[(&p[..], 1); 100]);
        let mut q = b.queue;
        q.plan_from(0, true);
        let counts: Vec<usize> = q.plan.iter().map(|m| m.count).collect();
        assert_eq!(counts, [46, 46, 8]);

        let tiny = [0u8; 10];
        let b = gso_batch(&[(&tiny[..], 1); 130]);
        let mut q = b.queue;
        q.plan_from(0, true);
        let counts: Vec<usize> = q.plan.iter().map(|m| m.count).collect();
        assert_eq!(counts, [64, 64, 2]);

        let jumbo = [0u8; MAX_GSO_SEGMENT_V4 + 1];
        let empty: [u8; 0] = [];
        let b = gso_batch(&[
            (&jumbo[..], 1),
            (&jumbo[..], 1),
            (&empty[..], 1),
            (&empty[..], 1),
        ]);
        let mut q = b.queue;
        q.plan_from(0, true);
        assert!(q.plan.iter().all(|m| m.count == 1 && m.segment == 0));
    }

    #[test]
    fn gso_eio_turns_gso_off_for_good_and_resends_one_by_one() {
        let p = [5u8; 20];
        let mut b = gso_batch(&[(&p[..], 1); 10]);
        let gso = b.queue.gso.clone().unwrap();
        let mut s = Script::new(&[Err(libc::EIO)]);
        let r = b.queue.flush_with(&mut s);
        assert_eq!((r.sent, r.failed, r.gso_messages), (10, 0, 0));
        assert_eq!(s.calls[0], [(0, 10, 20)]);
        assert_eq!(s.calls[1].len(), 10);
        assert!(!gso.is_enabled());
        assert!(!b.gso_enabled());
        // Later batches sharing the state do not try again.
        let mut b2 = gso_batch(&[(&p[..], 1); 4]).with_gso(Some(gso));
        let mut s = Script::default();
        let r = b2.queue.flush_with(&mut s);
        assert_eq!((r.sent, r.gso_messages, s.calls[0].len()), (4, 0, 4));
    }

    #[test]
    fn other_gso_errors_retry_then_split_the_run_only() {
        let p = [5u8; 20];
        let mut b = gso_batch(&[(&p[..], 1); 4]);
        let mut s = Script::new(&[
            Err(libc::EMSGSIZE),
            Err(libc::EMSGSIZE),
            Ok(1),
            Err(libc::EMSGSIZE),
        ]);
        let r = b.queue.flush_with(&mut s);
        // Retry of the run, split, first single sent, second single retried and then sent.
        assert_eq!(s.calls[0], [(0, 4, 20)]);
        assert_eq!(s.calls[1], [(0, 4, 20)]);
        assert_eq!(s.calls[2].len(), 4);
        assert_eq!((r.sent, r.failed, r.errors), (4, 0, 3));
        assert!(b.gso_enabled());
    }

    #[test]
    fn gso_counts_are_reported() {
        let p = [5u8; 20];
        let mut b = gso_batch(&[(&p[..], 1), (&p[..], 1), (&p[..], 1), (&p[..], 2)]);
        let mut s = Script::default();
        let r = b.queue.flush_with(&mut s);
        assert_eq!(
            (r.sent, r.gso_messages, r.gso_datagrams, r.syscalls),
            (4, 1, 3, 1)
        );
    }
}
