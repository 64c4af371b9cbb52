//! [`UringDriver`]: one io_uring per worker. Every UDP socket of the worker receives with a
//! multishot `recvmsg` into one shared provided-buffer ring; a datagram's fan-out is one
//! `SENDMSG` per destination on the very buffer the kernel filled (from whichever socket the
//! handler names), and the buffer returns to the ring when its last send completes. The
//! turn's sends are ordered destination-major (arrival order kept per destination), and a
//! run of equal-length datagrams to one destination goes out as one GSO `SENDMSG`
//! (`UDP_SEGMENT`), gathered from the received buffers in place; if the kernel refuses GSO,
//! those datagrams are resent one by one and GSO stays off. Owned
//! payloads go out the same way from refcounted `Bytes`. The worker's epoll descriptor (TCP
//! sockets, waker) is watched by a multishot poll on the same ring, so the worker blocks only
//! in `io_uring_enter`. Sends are submitted at the end of every turn, many per `enter`.
//!
//! When the send slots are all in flight, the driver submits and reaps once; if still full,
//! the send is dropped and counted (as with a full socket buffer under mio).

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use bytes::Bytes;
use mio::{Events, Poll};

use super::{Driver, DriverKind, DriverStats, Handler, Out, Rx, SockIdx};
use crate::engine::udp::Gso;
use crate::engine::uring::{
    Datagram, SendError, UringConfig, UringUdp, MAX_GSO_BYTES, MAX_GSO_SEGMENT, MAX_GSO_SEGMENTS,
};

/// How long a turn with no timeout blocks before looking again (nothing depends on it).
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// The io_uring driver; see the module docs.
pub struct UringDriver {
    poll: Poll,
    events: Events,
    cfg: UringConfig,
    /// Built with the first socket.
    ring: Option<UringUdp>,
    /// Datagrams reaped and not yet handled, and the spare list swapped with it.
    ready: Vec<Datagram>,
    handling: Vec<Datagram>,
    out: Out,
    owned: Vec<(SockIdx, Bytes, SocketAddr)>,
    /// This turn's sends of received datagrams: (destination, socket, datagram index).
    plan: Vec<(SocketAddr, SockIdx, u32)>,
    /// The datagram indices of one GSO run.
    run: Vec<u32>,
    /// The kernel knows `UDP_SEGMENT` (probed on the first socket).
    gso: bool,
    stats: DriverStats,
}

impl UringDriver {
    /// A driver whose ring (built with the first socket) is sized by `cfg`; `max_targets`
    /// bounds one datagram's fan-out.
    pub fn new(cfg: UringConfig, max_targets: usize) -> io::Result<UringDriver> {
        let cfg = cfg.clamped();
        Ok(UringDriver {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            cfg,
            ring: None,
            ready: Vec::with_capacity(cfg.recv_buffers),
            handling: Vec::with_capacity(cfg.recv_buffers),
            out: Out::new(max_targets, cfg.send_slots),
            owned: Vec::with_capacity(cfg.send_slots),
            plan: Vec::with_capacity(cfg.send_slots),
            run: Vec::with_capacity(MAX_GSO_SEGMENTS),
            gso: false,
            stats: DriverStats::default(),
        })
    }

    /// Queues one send, making room once by submitting and reaping if every slot is busy.
    fn send_one(
        ring: &mut UringUdp,
        ready: &mut Vec<Datagram>,
        stats: &mut DriverStats,
        mut f: impl FnMut(&mut UringUdp) -> Result<(), SendError>,
    ) {
        match f(ring) {
            Ok(()) => {}
            Err(SendError::SlabFull) => {
                let _ = ring.wait(1, Duration::ZERO);
                ring.reap(ready);
                if f(ring).is_err() {
                    stats.send_dropped += 1;
                }
            }
            Err(_) => stats.send_dropped += 1,
        }
    }

    /// Hands epoll's ready events to the handler (all of them: the ring's poll fires again
    /// only on new readiness).
    fn dispatch_events(&mut self, h: &mut impl Handler) -> io::Result<()> {
        loop {
            match self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut n = 0;
            for ev in self.events.iter() {
                n += 1;
                h.event(ev, &mut self.out);
            }
            if n < self.events.capacity() {
                return Ok(());
            }
        }
    }

    /// Queues the planned sends: destination-major when GSO may be used, so runs of
    /// datagrams to one destination (in arrival order) go out as one GSO send each.
    fn send_plan(&mut self) {
        let Some(ring) = self.ring.as_mut() else {
            self.plan.clear();
            return;
        };
        let gso = self.gso && ring.gso_on() && self.handling.len() > 1;
        if gso {
            self.plan.sort_unstable();
        }
        let mut j = 0;
        while j < self.plan.len() {
            let (to, s, i) = self.plan[j];
            let mut k = j + 1;
            let seg = self.handling.get(i as usize).map_or(0, Datagram::len);
            if gso && to.is_ipv4() && (1..=MAX_GSO_SEGMENT).contains(&seg) {
                let mut total = seg;
                while k < self.plan.len() && k - j < MAX_GSO_SEGMENTS {
                    let (to2, s2, i2) = self.plan[k];
                    let len = self.handling.get(i2 as usize).map_or(0, Datagram::len);
                    if to2 != to || s2 != s || len == 0 || len > seg || total + len > MAX_GSO_BYTES
                    {
                        break;
                    }
                    total += len;
                    k += 1;
                    if len < seg {
                        // A shorter datagram can only be the last of a run.
                        break;
                    }
                }
            }
            let mut sent = false;
            if k - j >= 2 {
                self.run.clear();
                self.run.extend(self.plan[j..k].iter().map(|p| p.2));
                sent = match ring.send_received_gso_on(s, &self.handling, &self.run, to) {
                    Ok(()) => true,
                    Err(SendError::SlabFull) => {
                        let _ = ring.wait(1, Duration::ZERO);
                        ring.reap(&mut self.ready);
                        ring.send_received_gso_on(s, &self.handling, &self.run, to)
                            .is_ok()
                    }
                    Err(_) => false,
                };
            }
            if !sent {
                // One by one: no GSO, a single datagram, or the GSO send could not be queued.
                for &(to, s, i) in &self.plan[j..k] {
                    let Some(d) = self.handling.get(i as usize) else {
                        continue;
                    };
                    Self::send_one(ring, &mut self.ready, &mut self.stats, |r| {
                        r.send_received_on(s, d, to)
                    });
                }
            }
            j = k;
        }
        self.plan.clear();
    }

    fn flush_owned(&mut self) {
        if self.out.owned_len() == 0 {
            return;
        }
        mem::swap(&mut self.out.owned, &mut self.owned);
        match self.ring.as_mut() {
            Some(ring) => {
                for (s, payload, to) in self.owned.drain(..) {
                    Self::send_one(ring, &mut self.ready, &mut self.stats, |r| {
                        r.send_on(s, payload.clone(), to)
                    });
                }
            }
            None => {
                self.stats.send_dropped += self.owned.len() as u64;
                self.owned.clear();
            }
        }
    }
}

impl Driver for UringDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Uring
    }

    fn add_udp(&mut self, sock: UdpSocket) -> io::Result<SockIdx> {
        match self.ring.as_mut() {
            Some(ring) => ring.add_socket(sock),
            None => {
                self.gso = Gso::probe(&sock).is_enabled();
                let mut ring = UringUdp::new(sock, &self.cfg)?;
                ring.watch(self.poll.as_raw_fd())?;
                ring.submit()?;
                self.ring = Some(ring);
                Ok(0)
            }
        }
    }

    fn udp(&self, idx: SockIdx) -> Option<&UdpSocket> {
        self.ring.as_ref()?.socket_at(idx)
    }

    fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    fn turn(&mut self, timeout: Option<Duration>, h: &mut impl Handler) -> io::Result<()> {
        let Some(ring) = self.ring.as_mut() else {
            // No UDP socket: a plain epoll turn.
            let timeout = if h.busy() {
                Some(Duration::ZERO)
            } else {
                timeout
            };
            self.stats.waits += 1;
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            h.turn_start(&mut self.out);
            for ev in self.events.iter() {
                h.event(ev, &mut self.out);
            }
            h.turn_end(&mut self.out);
            self.flush_owned();
            return Ok(());
        };
        let busy = !self.ready.is_empty() || self.out.owned_len() > 0 || h.busy();
        let wait = if busy {
            Duration::ZERO
        } else {
            timeout.unwrap_or(IDLE_WAIT)
        };
        if !wait.is_zero() {
            self.stats.waits += 1;
        }
        ring.wait(1, wait)?;
        h.turn_start(&mut self.out);
        ring.reap(&mut self.ready);
        let polled = ring.take_polled();
        if polled {
            self.dispatch_events(h)?;
        }
        mem::swap(&mut self.ready, &mut self.handling);
        // Every datagram of the turn is held until its sends are queued, so sends to one
        // destination can be gathered into GSO runs.
        for i in 0..self.handling.len() {
            let Some(ring) = self.ring.as_ref() else {
                break;
            };
            let d = &self.handling[i];
            let truncated = d.truncated();
            self.stats.truncated += u64::from(truncated);
            h.datagram(
                Rx {
                    sock: d.socket(),
                    payload: ring.payload(d),
                    from: d.from(),
                    truncated,
                },
                &mut self.out,
            );
            for t in 0..self.out.targets().len() {
                let (s, to) = self.out.targets()[t];
                if self.plan.len() == self.plan.capacity() {
                    // Send what is planned so far rather than grow the list.
                    self.send_plan();
                }
                self.plan.push((to, s, i as u32));
            }
            self.out.clear_targets();
        }
        self.send_plan();
        if let Some(ring) = self.ring.as_mut() {
            for d in self.handling.drain(..) {
                ring.release(d);
            }
        }
        h.turn_end(&mut self.out);
        self.flush_owned();
        if let Some(ring) = self.ring.as_mut() {
            ring.submit()?;
        }
        Ok(())
    }

    fn send(&mut self, sock: SockIdx, payload: Bytes, to: SocketAddr) {
        match self.ring.as_mut() {
            Some(ring) => {
                Self::send_one(ring, &mut self.ready, &mut self.stats, |r| {
                    r.send_on(sock, payload.clone(), to)
                });
            }
            None => self.stats.send_dropped += 1,
        }
    }

    fn flush(&mut self, limit: Duration) {
        self.flush_owned();
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        let deadline = std::time::Instant::now() + limit;
        while ring.sends_in_flight() > 0 && std::time::Instant::now() < deadline {
            if ring.wait(1, Duration::from_millis(10)).is_err() {
                break;
            }
            ring.reap(&mut self.ready);
            for d in self.ready.drain(..) {
                ring.release(d);
            }
        }
    }

    fn stats(&self) -> DriverStats {
        let mut s = self.stats;
        if let Some(ring) = &self.ring {
            let r = ring.stats();
            s.received = r.received;
            s.sent = r.sent;
            s.send_errors = r.send_errors;
            s.recv_errors = r.recv_errors;
            s.gso_messages = r.gso_sent;
        }
        s
    }
}

impl std::fmt::Debug for UringDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringDriver")
            .field("ring", &self.ring)
            .field("stats", &self.stats)
            .finish()
    }
}
