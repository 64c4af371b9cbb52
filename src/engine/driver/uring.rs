//! [`UringDriver`]: one io_uring per worker. Every UDP socket of the worker receives with a
//! multishot `recvmsg` into one shared provided-buffer ring; a datagram's fan-out is one
//! `SENDMSG` per destination on the very buffer the kernel filled (from whichever socket the
//! handler names), and the buffer returns to the ring when its last send completes. Owned
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
use crate::engine::uring::{Datagram, SendError, UringConfig, UringUdp};

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
            h.turn_start();
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
        h.turn_start();
        ring.reap(&mut self.ready);
        let polled = ring.take_polled();
        if polled {
            self.dispatch_events(h)?;
        }
        mem::swap(&mut self.ready, &mut self.handling);
        let Some(ring) = self.ring.as_mut() else {
            return Ok(());
        };
        for d in self.handling.drain(..) {
            let truncated = d.truncated();
            self.stats.truncated += u64::from(truncated);
            h.datagram(
                Rx {
                    sock: d.socket(),
                    payload: ring.payload(&d),
                    from: d.from(),
                    truncated,
                },
                &mut self.out,
            );
            for &(s, to) in self.out.targets() {
                Self::send_one(ring, &mut self.ready, &mut self.stats, |r| {
                    r.send_received_on(s, &d, to)
                });
            }
            self.out.clear_targets();
            ring.release(d);
        }
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
