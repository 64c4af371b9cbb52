//! The one interface between a worker and the kernel: [`Driver`], with two implementations,
//! [`PollDriver`] (mio readiness + `recvmmsg` / `sendmmsg`) and [`UringDriver`] (one io_uring
//! per worker: multishot `recvmsg` over a provided-buffer ring, batched `SENDMSG`), and the one
//! place that chooses between them ([`choose`]).
//!
//! A worker gives its UDP sockets to the driver and registers its TCP sockets and waker with
//! the driver's [`mio::Registry`]. One [`Driver::turn`] blocks until something is ready (or the
//! timeout), hands every received datagram to [`Handler::datagram`] and every other readiness
//! event to [`Handler::event`], sends what the handler asked for, and returns. Under io_uring the
//! epoll descriptor behind the registry is itself watched by the ring, so the worker blocks in
//! exactly one place under both drivers; TCP is readiness-driven under both.
//!
//! Zero copy: for a datagram, the handler only names destinations ([`Out::to`]); the driver
//! sends the received buffer itself to each (`sendmmsg` entries pointing at one buffer, or one
//! `SENDMSG` per destination on the buffer the kernel filled, which returns to the pool when its
//! last send completes). Owned payloads ([`Out::send`], e.g. a TCP frame going out over UDP,
//! or a control reply) are `Bytes`, shared by reference count.
//!
//! This module does not parse OSC, route, or own TCP connections.

mod poll;
mod uring;

use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;

use crate::config::Driver as DriverChoice;

pub use poll::PollDriver;
pub use uring::UringDriver;

/// A UDP socket's index within its worker's driver (in the order they were added).
pub type SockIdx = u16;

/// mio tokens below this are the driver's own (its UDP sockets); a worker's tokens start here.
pub const FIRST_WORKER_TOKEN: usize = 1 << 16;

/// Which driver runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriverKind {
    /// One io_uring per worker.
    Uring,
    /// mio readiness with `recvmmsg` / `sendmmsg`.
    Mio,
}

impl DriverKind {
    /// `"uring"` or `"mio"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Uring => "uring",
            Self::Mio => "mio",
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why [`choose`] picked what it picked, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The driver that will run.
    pub kind: DriverKind,
    /// One sentence: forced by config / probe passed / probe failed and why.
    pub why: String,
}

/// The one place the driver is chosen: `auto` probes io_uring (the opcodes and features the
/// uring driver uses) and falls back to mio; `uring` fails if the probe fails; `mio` is mio.
pub fn choose(requested: DriverChoice) -> Result<Choice, String> {
    match requested {
        DriverChoice::Mio => Ok(Choice {
            kind: DriverKind::Mio,
            why: "chosen by configuration".into(),
        }),
        DriverChoice::Uring => match crate::engine::uring::probe() {
            Ok(_) => Ok(Choice {
                kind: DriverKind::Uring,
                why: "chosen by configuration; the kernel supports it".into(),
            }),
            Err(e) => Err(format!(
                "driver \"uring\" was requested but io_uring is not usable here: {e}"
            )),
        },
        DriverChoice::Auto => match crate::engine::uring::probe() {
            Ok(_) => Ok(Choice {
                kind: DriverKind::Uring,
                why: "auto: the kernel supports every io_uring feature used".into(),
            }),
            Err(e) => Ok(Choice {
                kind: DriverKind::Mio,
                why: format!("auto: io_uring is not usable here ({e}), falling back"),
            }),
        },
    }
}

/// One received datagram, borrowed from the driver's buffer for the duration of the call.
#[derive(Debug, Clone, Copy)]
pub struct Rx<'a> {
    /// The socket it arrived on.
    pub sock: SockIdx,
    /// The payload.
    pub payload: &'a [u8],
    /// The sender.
    pub from: SocketAddr,
    /// The datagram did not fit the receive buffer and was cut.
    pub truncated: bool,
}

/// What a handler asks the driver to send.
#[derive(Debug)]
pub struct Out {
    targets: Vec<(SockIdx, SocketAddr)>,
    owned: Vec<(SockIdx, Bytes, SocketAddr)>,
    max_targets: usize,
    max_owned: usize,
    /// Requests refused because this `Out` was full.
    pub refused: u64,
}

impl Out {
    /// Room for `max_targets` destinations per datagram and `max_owned` owned sends per turn,
    /// allocated now.
    pub fn new(max_targets: usize, max_owned: usize) -> Out {
        Out {
            targets: Vec::with_capacity(max_targets),
            owned: Vec::with_capacity(max_owned),
            max_targets,
            max_owned,
            refused: 0,
        }
    }

    /// Sends the datagram being handled, in place, from `sock` to `to`. Only meaningful inside
    /// [`Handler::datagram`]. Returns false (and counts) when full.
    pub fn to(&mut self, sock: SockIdx, to: SocketAddr) -> bool {
        if self.targets.len() >= self.max_targets {
            self.refused += 1;
            return false;
        }
        self.targets.push((sock, to));
        true
    }

    /// Sends an owned payload from `sock` to `to` (this turn). Returns false (and counts) when
    /// full.
    pub fn send(&mut self, sock: SockIdx, payload: Bytes, to: SocketAddr) -> bool {
        if self.owned.len() >= self.max_owned {
            self.refused += 1;
            return false;
        }
        self.owned.push((sock, payload, to));
        true
    }

    /// In-place destinations queued for the current datagram.
    pub fn targets(&self) -> &[(SockIdx, SocketAddr)] {
        &self.targets
    }

    /// Owned sends queued.
    pub fn owned_len(&self) -> usize {
        self.owned.len()
    }

    fn clear_targets(&mut self) {
        self.targets.clear();
    }
}

/// The worker side of a turn.
pub trait Handler {
    /// Called when a turn's wait is over, before anything is handled (e.g. to load the
    /// current route table once for the whole turn).
    fn turn_start(&mut self, out: &mut Out);
    /// One received datagram: name its destinations with [`Out::to`] (and any owned sends
    /// with [`Out::send`]).
    fn datagram(&mut self, rx: Rx<'_>, out: &mut Out);
    /// A readiness event for one of the worker's own mio registrations (token at least
    /// [`FIRST_WORKER_TOKEN`]).
    fn event(&mut self, event: &mio::event::Event, out: &mut Out);
    /// Called once at the end of every turn, before owned sends go out (e.g. to continue
    /// reads that a budget cut short).
    fn turn_end(&mut self, out: &mut Out);
    /// Whether the handler has work pending, so the next turn must not block.
    fn busy(&self) -> bool;
}

/// Counters a driver keeps; they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Datagrams received.
    pub received: u64,
    /// Received datagrams cut to the buffer size.
    pub truncated: u64,
    /// Datagrams handed to the kernel for sending (or sent).
    pub sent: u64,
    /// Datagrams the kernel refused (an error for that destination).
    pub send_errors: u64,
    /// Datagrams dropped before the kernel saw them: socket buffer full, send slots full.
    pub send_dropped: u64,
    /// Receive errors other than "nothing to read".
    pub recv_errors: u64,
    /// Blocking waits (`epoll_wait` or `io_uring_enter` with a wait).
    pub waits: u64,
    /// GSO messages sent (each carrying several datagrams).
    pub gso_messages: u64,
}

/// What a worker needs from the kernel; see the module docs.
pub trait Driver {
    /// Which driver this is.
    fn kind(&self) -> DriverKind;
    /// Takes a UDP socket (made non-blocking) and starts receiving on it.
    fn add_udp(&mut self, sock: UdpSocket) -> io::Result<SockIdx>;
    /// Socket `idx`.
    fn udp(&self, idx: SockIdx) -> Option<&UdpSocket>;
    /// Where the worker registers its TCP sockets and waker (tokens from
    /// [`FIRST_WORKER_TOKEN`]).
    fn registry(&self) -> &mio::Registry;
    /// Waits up to `timeout` (`None`: until something happens) unless work is already
    /// pending, handles everything ready with `h`, and sends what it asked for.
    fn turn(&mut self, timeout: Option<Duration>, h: &mut impl Handler) -> io::Result<()>;
    /// Sends an owned payload outside a turn (control replies); goes out at once or with the
    /// next turn.
    fn send(&mut self, sock: SockIdx, payload: Bytes, to: SocketAddr);
    /// Hands everything queued to the kernel and waits (at most `limit`) until the kernel
    /// has taken it: the end of a worker, so that shutdown messages are not lost.
    fn flush(&mut self, limit: Duration);
    /// The counters.
    fn stats(&self) -> DriverStats;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mio_is_chosen_when_asked_and_auto_never_fails() {
        assert_eq!(choose(DriverChoice::Mio).unwrap().kind, DriverKind::Mio);
        let auto = choose(DriverChoice::Auto).unwrap();
        match crate::engine::uring::probe() {
            Ok(_) => {
                assert_eq!(auto.kind, DriverKind::Uring);
                assert_eq!(choose(DriverChoice::Uring).unwrap().kind, DriverKind::Uring);
            }
            Err(_) => {
                assert_eq!(auto.kind, DriverKind::Mio);
                assert!(choose(DriverChoice::Uring).is_err());
            }
        }
        assert!(!auto.why.is_empty());
    }

    #[test]
    fn out_is_bounded_and_counts_refusals() {
        let mut out = Out::new(2, 1);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(out.to(0, a) && out.to(1, a));
        assert!(!out.to(0, a));
        assert!(out.send(0, Bytes::from_static(b"x"), a));
        assert!(!out.send(0, Bytes::from_static(b"y"), a));
        assert_eq!(
            (out.targets().len(), out.owned_len(), out.refused),
            (2, 1, 2)
        );
        out.clear_targets();
        assert!(out.targets().is_empty());
    }
}
