//! [`PollDriver`]: the mio fallback. UDP sockets are registered edge-triggered with mio; a
//! readable socket is drained with `recvmmsg` batches (a bounded number per turn, so one busy
//! socket cannot starve the others or the TCP connections), and every datagram's fan-out goes
//! out with `sendmmsg` entries that all point at the received buffer (GSO folds runs to one
//! destination where the kernel supports it). Nothing is allocated per turn: the receive
//! batch, the send batches and the event list are built once and recycled.
//!
//! Datagrams the socket cannot take right now (`EAGAIN`) are dropped and counted: UDP gives no
//! delivery guarantee and holding them would only add latency to everything behind them.

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::{Driver, DriverKind, DriverStats, Handler, Out, Rx, SockIdx, FIRST_WORKER_TOKEN};
use crate::engine::udp::{FlushResult, Gso, RecvBatch, SendBatch};
use crate::engine::MAX_DATAGRAM;

/// `recvmmsg` slots per batch.
const RECV_SLOTS: usize = 64;
/// Batches read from one socket per turn before the others get their go.
const RECV_BUDGET: usize = 16;
/// Datagrams one send batch holds before it is flushed.
const SEND_CAPACITY: usize = 4096;

struct PollSock {
    sock: UdpSocket,
    /// Edge-triggered: readable until a read says it would block.
    readable: bool,
}

/// The mio driver; see the module docs.
pub struct PollDriver {
    poll: Poll,
    events: Events,
    socks: Vec<PollSock>,
    /// One send batch per socket, same index; recycled to borrow each received batch.
    batches: Vec<SendBatch<'static>>,
    recv: RecvBatch,
    /// One received batch's sends: (socket, destination, datagram index).
    plan: Vec<(SockIdx, SocketAddr, u16)>,
    out: Out,
    /// The owned sends being flushed (swapped with `out`'s so neither allocates).
    owned: Vec<(SockIdx, Bytes, SocketAddr)>,
    stats: DriverStats,
}

impl PollDriver {
    /// A driver with its own epoll instance; `max_targets` bounds one datagram's fan-out.
    pub fn new(max_targets: usize) -> io::Result<PollDriver> {
        Ok(PollDriver {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            socks: Vec::new(),
            batches: Vec::new(),
            recv: RecvBatch::new(RECV_SLOTS, MAX_DATAGRAM),
            plan: Vec::with_capacity(RECV_SLOTS * max_targets.max(1)),
            out: Out::new(max_targets, SEND_CAPACITY),
            owned: Vec::with_capacity(SEND_CAPACITY),
            stats: DriverStats::default(),
        })
    }

    fn note(stats: &mut DriverStats, r: &FlushResult) {
        stats.sent += r.sent as u64;
        stats.send_errors += r.failed as u64;
        stats.send_dropped += r.remaining as u64;
        stats.gso_messages += r.gso_messages as u64;
    }

    /// Reads and handles up to [`RECV_BUDGET`] batches from socket `idx`.
    fn drain_socket(&mut self, idx: usize, h: &mut impl Handler) {
        for _ in 0..RECV_BUDGET {
            let n = match self.recv.recv(&self.socks[idx].sock) {
                Ok(0) => {
                    self.socks[idx].readable = false;
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // A pending ICMP error or similar: counted; the socket stays readable.
                    self.stats.recv_errors += 1;
                    continue;
                }
            };
            self.stats.received += n as u64;
            let mut batches: Vec<SendBatch<'_>> = mem::take(&mut self.batches)
                .into_iter()
                .map(SendBatch::recycle)
                .collect();
            // Pass 1: the handler names every datagram's destinations.
            self.plan.clear();
            for i in 0..n {
                let Some((payload, from)) = self.recv.get(i) else {
                    continue;
                };
                let truncated = self.recv.truncated(i);
                self.stats.truncated += u64::from(truncated);
                h.datagram(
                    Rx {
                        sock: idx as SockIdx,
                        payload,
                        from,
                        truncated,
                    },
                    &mut self.out,
                );
                for &(s, to) in self.out.targets() {
                    if self.plan.len() < self.plan.capacity() {
                        self.plan.push((s, to, i as u16));
                    } else {
                        self.stats.send_dropped += 1;
                    }
                }
                self.out.clear_targets();
            }
            // Pass 2: destination-major order when GSO is on, so a burst of equal-size
            // datagrams to one patron goes out as one GSO message (the datagram index breaks
            // ties, so each destination still gets them in arrival order).
            if n > 1 && batches.iter().any(|b| b.gso_enabled()) {
                self.plan.sort_unstable();
            }
            for &(s, to, i) in &self.plan {
                let Some((payload, _)) = self.recv.get(usize::from(i)) else {
                    continue;
                };
                let (Some(batch), Some(ps)) = (
                    batches.get_mut(usize::from(s)),
                    self.socks.get(usize::from(s)),
                ) else {
                    self.stats.send_dropped += 1;
                    continue;
                };
                if batch.push(payload, to).is_err() {
                    let r = batch.flush(&ps.sock);
                    Self::note(&mut self.stats, &r);
                    batch.clear();
                    if batch.push(payload, to).is_err() {
                        self.stats.send_dropped += 1;
                    }
                }
            }
            for (s, batch) in self.socks.iter().zip(batches.iter_mut()) {
                if !batch.is_empty() {
                    let r = batch.flush(&s.sock);
                    Self::note(&mut self.stats, &r);
                }
            }
            self.batches = batches.into_iter().map(SendBatch::recycle).collect();
            if n < self.recv.slots() {
                // A short batch: the socket is (momentarily) empty.
                self.socks[idx].readable = false;
                return;
            }
        }
    }

    /// Sends every owned payload queued in `out`.
    fn flush_owned(&mut self) {
        if self.out.owned_len() == 0 {
            return;
        }
        mem::swap(&mut self.out.owned, &mut self.owned);
        let mut batches: Vec<SendBatch<'_>> = mem::take(&mut self.batches)
            .into_iter()
            .map(SendBatch::recycle)
            .collect();
        for (s, payload, to) in &self.owned {
            let (Some(batch), Some(ps)) = (
                batches.get_mut(usize::from(*s)),
                self.socks.get(usize::from(*s)),
            ) else {
                self.stats.send_dropped += 1;
                continue;
            };
            if batch.push(payload, *to).is_err() {
                let r = batch.flush(&ps.sock);
                Self::note(&mut self.stats, &r);
                batch.clear();
                if batch.push(payload, *to).is_err() {
                    self.stats.send_dropped += 1;
                }
            }
        }
        for (s, batch) in self.socks.iter().zip(batches.iter_mut()) {
            if !batch.is_empty() {
                let r = batch.flush(&s.sock);
                Self::note(&mut self.stats, &r);
            }
        }
        self.batches = batches.into_iter().map(SendBatch::recycle).collect();
        self.owned.clear();
    }
}

impl Driver for PollDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Mio
    }

    fn add_udp(&mut self, sock: UdpSocket) -> io::Result<SockIdx> {
        if self.socks.len() >= FIRST_WORKER_TOKEN {
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        sock.set_nonblocking(true)?;
        let idx = self.socks.len();
        self.poll.registry().register(
            &mut SourceFd(&sock.as_raw_fd()),
            Token(idx),
            Interest::READABLE,
        )?;
        let gso = Arc::new(Gso::probe(&sock));
        self.socks.push(PollSock {
            sock,
            // Datagrams may have arrived before registration; the first turn looks.
            readable: true,
        });
        self.batches
            .push(SendBatch::new(SEND_CAPACITY).with_gso(Some(gso)));
        Ok(idx as SockIdx)
    }

    fn udp(&self, idx: SockIdx) -> Option<&UdpSocket> {
        self.socks.get(usize::from(idx)).map(|s| &s.sock)
    }

    fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    fn turn(&mut self, timeout: Option<Duration>, h: &mut impl Handler) -> io::Result<()> {
        let busy = self.socks.iter().any(|s| s.readable) || self.out.owned_len() > 0 || h.busy();
        let timeout = if busy { Some(Duration::ZERO) } else { timeout };
        if timeout != Some(Duration::ZERO) {
            self.stats.waits += 1;
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        h.turn_start(&mut self.out);
        for ev in self.events.iter() {
            let t = ev.token().0;
            if t < FIRST_WORKER_TOKEN {
                if let Some(s) = self.socks.get_mut(t) {
                    s.readable = true;
                }
            } else {
                h.event(ev, &mut self.out);
            }
        }
        for idx in 0..self.socks.len() {
            if self.socks[idx].readable {
                self.drain_socket(idx, h);
            }
        }
        h.turn_end(&mut self.out);
        self.flush_owned();
        Ok(())
    }

    fn send(&mut self, sock: SockIdx, payload: Bytes, to: SocketAddr) {
        if self.out.owned_len() >= SEND_CAPACITY {
            self.flush_owned();
        }
        if !self.out.send(sock, payload, to) {
            self.stats.send_dropped += 1;
        }
    }

    fn flush(&mut self, _limit: Duration) {
        // `sendmmsg` hands datagrams over synchronously.
        self.flush_owned();
    }

    fn stats(&self) -> DriverStats {
        self.stats
    }
}

impl std::fmt::Debug for PollDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollDriver")
            .field("sockets", &self.socks.len())
            .field("stats", &self.stats)
            .finish()
    }
}
