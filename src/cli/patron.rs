//! `oscgate patron`: join a remote OSC Messenger gateway as a patron and relay between it and
//! local unicast apps.
//!
//! ```text
//! oscgate patron --gateway HOST:PORT [--tcp] [--framing len32|slip] --listen ADDR
//!                --local ADDR [--local ADDR...] [--local-gateway] [--uid UID]
//! ```
//!
//! What it does:
//! - **Joins** the gateway at `--gateway`, over UDP from an ephemeral port (default) or over one
//!   TCP connection with `--tcp` (len32 framing, or SLIP with `--framing slip`). It sends
//!   `/messenger/gateway/me/request` with its uid (`--uid`, else a fresh upper-case UUID),
//!   answers `/messenger/gateway/who/active` with `/messenger/gateway/me/patron`, and asks again
//!   with capped exponential backoff (1 s doubling to 30 s, with jitter) when a request gets no
//!   answer within 5 s or is denied, when the gateway is silent for 30 s, when it sends
//!   `shutdown`, or when the TCP connection fails or drops (the connection is re-made when the
//!   next request is due, so reconnects follow the same backoff).
//! - **Relays**, bytes untouched: every packet from the gateway that is not addressed
//!   `/messenger/gateway/...` goes to every `--local` address over UDP, sent from the `--listen`
//!   socket; every packet a local app sends to the `--listen` socket (default `127.0.0.1:9031`)
//!   goes to the gateway. Packets from local apps addressed `/messenger/gateway/...` are dropped
//!   and counted, so an app cannot act for the patron; malformed OSC from either side is dropped
//!   and counted with at most one stderr line per second. A packet is never sent back towards
//!   the side it came from, so no app hears its own packets from the relay.
//! - **`--local-gateway`**: the (single) `--local` address is itself a Messenger gateway, for
//!   example this venue's `oscgate run`. The relay joins it as a patron too, from the `--listen`
//!   socket, with a second state machine, so two venues are linked through one connection:
//!   traffic from the remote gateway goes to the local gateway and the other way round, while
//!   each gateway's `/messenger/gateway/...` control traffic stays on its own side. Other
//!   sources on the `--listen` socket are still relayed to the remote gateway as local apps.
//! - **stderr**: a `listening on` line at start, one line per side when joined, lost (with the
//!   reason) or re-joined, and the counters on exit.
//! - **SIGINT / SIGTERM**: sends `/messenger/gateway/me/leave` to each gateway joined or being
//!   joined, waits at most half a second for a TCP connection to take it, prints the counters
//!   and exits 0.
//!
//! What it does not do: join multicast groups (use `oscgate run` for that), re-resolve
//! `--gateway` after start, accept gateway packets over UDP from any address but the resolved
//! gateway one, queue traffic for a TCP gateway while the connection is down (it is dropped and
//! counted), or forward packets larger than a UDP datagram to local apps.
//!
//! Hidden flags `--reply-ms`, `--timeout-ms`, `--retry-ms` and `--retry-max-ms` set the
//! state machine's timers (defaults 5000, 30000, 1000, 30000), for tests and odd networks.
//!
//! Memory is bounded: one 64 KiB receive buffer, a TCP frame limit of 1 MiB and a TCP send
//! backlog of at most 4 MiB (more is dropped and counted), and the state machines' own bounds.
//!
//! # How a dropped TCP connection reaches the state machine
//! [`Patron`] has no notion of a connection. A connection that fails or drops is reported to it
//! as the message the gateway would have sent: `shutdown` from the accepting gateway while
//! active (backoff starts from the first step), `deny` while a request is out (the backoff
//! grows). Its `shutdowns`/`denied` counters therefore include such connection losses; the
//! relay's own `tcp_connect_failures`/`tcp_drops` say how many.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Registry, Token};

use oscgate::proto::messenger::{DENY, GATEWAY_PREFIX, SHUTDOWN};
use oscgate::proto::patron::{Counters, Patron, PatronConfig, State};
use oscgate::proto::{uuid_from_bytes, MAX_UID_LEN};
use oscgate::wire::address::has_prefix;
use oscgate::wire::framing::{self, Decoder, Framing, DEFAULT_MAX_FRAME};
use oscgate::wire::{write_message, Arg, Packet, ParseError};

/// Largest UDP datagram read; nothing bigger fits in one.
const RECV_BUF: usize = 65_536;
/// Most bytes waiting to be written to a TCP gateway; beyond this packets are dropped.
const MAX_TCP_BACKLOG: usize = 4 << 20;
/// Packets read from one socket before the loop looks at the others and the timers.
const READ_BUDGET: usize = 256;
/// Longest sleep in the event loop, so a signal that lands just before `poll` is seen soon.
const MAX_WAIT: Duration = Duration::from_millis(200);
/// How long the exit waits for a TCP gateway to take the leave message.
const EXIT_FLUSH: Duration = Duration::from_millis(500);
/// Minimum time between two stderr lines about malformed packets.
const LOG_EVERY: Duration = Duration::from_secs(1);

const LISTEN: Token = Token(0);
const REMOTE_UDP: Token = Token(1);
/// TCP connections get `FIRST_TCP`, `FIRST_TCP + 1`, ... so a late event of a closed
/// connection is never taken for the current one.
const FIRST_TCP: usize = 2;

/// Framing of the TCP connection to the gateway.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFraming {
    /// OSC 1.0: a big-endian 32-bit length before each packet.
    Len32,
    /// OSC 1.1: SLIP (RFC 1055).
    Slip,
}

/// Arguments of `oscgate patron`.
#[derive(clap::Args, Debug)]
pub struct PatronArgs {
    /// The Messenger gateway to join, HOST:PORT (an IPv4 address is preferred when the host
    /// has several).
    #[arg(long, value_name = "HOST:PORT")]
    pub gateway: String,
    /// Join over one TCP connection instead of UDP.
    #[arg(long)]
    pub tcp: bool,
    /// Framing of the TCP connection (default len32).
    #[arg(long, value_enum, requires = "tcp")]
    pub framing: Option<StreamFraming>,
    /// UDP address local apps send to; packets to the local apps are sent from it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9031")]
    pub listen: String,
    /// A local app (UDP HOST:PORT) that gets the traffic from the gateway; repeatable.
    #[arg(long = "local", value_name = "ADDR", required = true)]
    pub local: Vec<String>,
    /// The `--local` address is a Messenger gateway: join it as a patron too and link the two.
    #[arg(long)]
    pub local_gateway: bool,
    /// Our patron uid (default: a fresh upper-case UUID).
    #[arg(long)]
    pub uid: Option<String>,
    /// Reply window for a request, in ms.
    #[arg(long, hide = true, default_value_t = 5_000)]
    pub reply_ms: u64,
    /// Silence after which a gateway is taken as gone, in ms.
    #[arg(long, hide = true, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// First retry delay, in ms.
    #[arg(long, hide = true, default_value_t = 1_000)]
    pub retry_ms: u64,
    /// Largest retry delay, in ms.
    #[arg(long, hide = true, default_value_t = 30_000)]
    pub retry_max_ms: u64,
}

impl PatronArgs {
    fn patron_config(&self) -> PatronConfig {
        PatronConfig {
            reply_window: Duration::from_millis(self.reply_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            backoff_initial: Duration::from_millis(self.retry_ms),
            backoff_max: Duration::from_millis(self.retry_max_ms),
        }
    }
}

/// What a received packet is, for the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A message addressed `/messenger/gateway/...`: stays on its side.
    Control,
    /// Any other well-formed packet (messages and bundles): relayed.
    Traffic,
    /// Not OSC.
    Malformed(ParseError),
}

fn classify(packet: &[u8]) -> Kind {
    match Packet::new_checked(packet) {
        Err(e) => Kind::Malformed(e),
        Ok(Packet::Message(m)) if has_prefix(m.address(), GATEWAY_PREFIX) => Kind::Control,
        Ok(_) => Kind::Traffic,
    }
}

/// Lets one event through per [`LOG_EVERY`] and counts the rest.
#[derive(Debug, Default)]
struct RateLimit {
    last: Option<Duration>,
    suppressed: u64,
}

impl RateLimit {
    /// `Some(n)` if a line may be printed now, `n` being how many were held back before it.
    fn allow(&mut self, now: Duration) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_sub(t) < LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(core::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// A packet with string arguments, as a gateway would send it.
fn gateway_message(address: &[u8], args: &[&str]) -> Vec<u8> {
    let args: Vec<Arg<'_>> = args.iter().map(|s| Arg::str(s)).collect();
    let mut out = Vec::new();
    match write_message(&mut out, address, &args) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

/// Tells `patron` that its connection to the gateway failed or dropped (see the module docs).
fn connection_lost(patron: &mut Patron, now: Duration) {
    let packet = match (patron.state(), patron.gateway_uid()) {
        (State::Active, Some(gw)) => gateway_message(SHUTDOWN, &[gw]),
        (State::Requesting, _) => gateway_message(DENY, &["connection", patron.uid()]),
        _ => return,
    };
    patron.handle(now, &packet);
}

/// Checks a `--uid`: what a gateway will take (non-empty, at most 128 bytes, no NUL).
fn check_uid(uid: &str) -> Result<()> {
    if uid.is_empty() || uid.len() > MAX_UID_LEN || uid.contains('\0') {
        bail!("--uid must be 1 to {MAX_UID_LEN} bytes without NUL, e.g. a UUID");
    }
    Ok(())
}

/// A fresh uid and a jitter seed, from the process's random hash keys.
fn fresh_uid() -> (String, u64) {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(std::process::id());
    let b = RandomState::new().hash_one(a);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..].copy_from_slice(&b.to_le_bytes());
    (uuid_from_bytes(bytes), a ^ b.rotate_left(17))
}

/// Asks for a larger receive buffer (the kernel may cap it) to ride out bursts; best effort.
fn raise_recv_buffer(sock: &UdpSocket) {
    let _ = socket2::SockRef::from(sock).set_recv_buffer_size(1 << 20);
}

/// The first address `spec` resolves to, IPv4 first.
fn resolve(spec: &str, what: &str) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = spec
        .to_socket_addrs()
        .with_context(|| format!("{what} `{spec}`: expected HOST:PORT"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .with_context(|| format!("{what} `{spec}` resolves to no address"))
}

/// One gateway we are a patron of, with what stderr has been told about it.
struct Side {
    label: &'static str,
    addr: SocketAddr,
    patron: Patron,
    /// The state last reported.
    was: State,
    joined_before: bool,
    /// Counters when the state was last reported, to tell why it changed.
    seen: Counters,
    /// Why the next loss happens, when the relay knows better than the counters.
    reason: Option<String>,
    /// Whether "cannot reach" was printed since the last join.
    said_unreachable: bool,
}

impl Side {
    fn new(label: &'static str, addr: SocketAddr, patron: Patron) -> Self {
        Self {
            label,
            addr,
            patron,
            was: State::Idle,
            joined_before: false,
            seen: Counters::default(),
            reason: None,
            said_unreachable: false,
        }
    }

    /// Prints a line if the side joined, was lost or re-joined since the last call. Returns
    /// true if it was lost.
    fn report(&mut self, timeout: Duration) -> bool {
        let now_state = self.patron.state();
        let c = *self.patron.counters();
        let lost = self.was == State::Active && now_state != State::Active;
        if now_state == State::Active && self.was != State::Active {
            let verb = if self.joined_before {
                "re-joined"
            } else {
                "joined"
            };
            let uid = self.patron.gateway_uid().unwrap_or("?");
            eprintln!(
                "patron: {verb} {} {} (gateway uid {uid})",
                self.label, self.addr
            );
            self.joined_before = true;
            self.said_unreachable = false;
        } else if lost && now_state != State::Left {
            let why = self.reason.take().unwrap_or_else(|| {
                if c.gateway_gone > self.seen.gateway_gone {
                    format!("silent for {} ms", timeout.as_millis())
                } else if c.shutdowns > self.seen.shutdowns {
                    "it shut down".to_owned()
                } else {
                    "no longer accepted".to_owned()
                }
            });
            eprintln!(
                "patron: lost {} {}: {why}; asking again",
                self.label, self.addr
            );
        }
        if now_state != State::Active && c.no_reply > self.seen.no_reply {
            self.unreachable(&"no answer to the request");
        } else if now_state != State::Active && c.denied > self.seen.denied {
            self.unreachable(&"request denied");
        }
        self.reason = None;
        self.was = now_state;
        self.seen = c;
        lost
    }

    fn unreachable(&mut self, why: &dyn core::fmt::Display) {
        if !self.said_unreachable {
            self.said_unreachable = true;
            eprintln!(
                "patron: cannot reach {} {}: {why}; retrying with backoff",
                self.label, self.addr
            );
        }
    }
}

/// Relay counters, printed on exit.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    /// Packets from the remote gateway sent on to the local side (once per packet).
    from_gateway: u64,
    /// Packets from the local side sent to the remote gateway.
    to_gateway: u64,
    /// `/messenger/gateway/...` packets from local apps, dropped.
    local_control_dropped: u64,
    local_malformed: u64,
    gateway_malformed: u64,
    /// Packets on the remote UDP socket from an address other than the gateway's.
    stray: u64,
    send_errors: u64,
    /// Packets for a TCP gateway dropped: no connection, or the backlog was full.
    tcp_dropped: u64,
    /// Frames a TCP gateway sent that the decoder dropped (bad SLIP escape, too long).
    tcp_bad_frames: u64,
    tcp_connects: u64,
    tcp_connect_failures: u64,
    tcp_drops: u64,
}

/// One TCP connection to the gateway, connecting or connected.
struct Conn {
    stream: TcpStream,
    token: Token,
    connected: bool,
    /// When the relay first saw it connecting; a connect pending for a reply window is given
    /// up (a silently dropped SYN would otherwise hold it for the kernel's minutes).
    started: Option<Duration>,
    dec: Decoder,
    /// Framed bytes not yet written, from `sent` on.
    out: Vec<u8>,
    sent: usize,
}

impl Conn {
    /// Writes what it can. `Err` means the connection is dead.
    fn flush(&mut self) -> io::Result<()> {
        if !self.connected {
            return Ok(());
        }
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        } else if self.sent > self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
        Ok(())
    }

    fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Whether a connect in progress has finished: `Ok(true)` connected, `Ok(false)` not yet.
    fn check_connected(&mut self) -> io::Result<bool> {
        if self.connected {
            return Ok(true);
        }
        if let Some(e) = self.stream.take_error()? {
            return Err(e);
        }
        match self.stream.peer_addr() {
            Ok(_) => {
                self.connected = true;
                let _ = self.stream.set_nodelay(true);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The way to the remote gateway.
enum Link {
    Udp(UdpSocket),
    Tcp {
        framing: Framing,
        conn: Option<Conn>,
        next_token: usize,
    },
}

/// Why a packet could not be handed to the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendError {
    /// The socket refused it (UDP).
    Socket,
    /// No TCP connection, or its backlog is full.
    Dropped,
    /// Making the TCP connection failed at once.
    Connect,
}

impl Link {
    /// Sends `packet` to the gateway. With `connect`, a missing TCP connection is made first
    /// (the state machine's requests); without, the packet is dropped (traffic).
    fn send(
        &mut self,
        registry: &Registry,
        to: SocketAddr,
        packet: &[u8],
        connect: bool,
        stats: &mut Stats,
    ) -> Result<(), SendError> {
        match self {
            Link::Udp(sock) => match sock.send_to(packet, to) {
                Ok(_) => Ok(()),
                Err(_) => Err(SendError::Socket),
            },
            Link::Tcp {
                framing: f,
                conn,
                next_token,
            } => {
                if conn.is_none() && connect {
                    let mut stream = TcpStream::connect(to).map_err(|_| SendError::Connect)?;
                    let token = Token(*next_token);
                    *next_token = next_token.wrapping_add(1).max(FIRST_TCP);
                    registry
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .map_err(|_| SendError::Connect)?;
                    stats.tcp_connects += 1;
                    *conn = Some(Conn {
                        stream,
                        token,
                        connected: false,
                        started: None,
                        dec: Decoder::new(*f, DEFAULT_MAX_FRAME),
                        out: Vec::new(),
                        sent: 0,
                    });
                }
                let Some(c) = conn else {
                    return Err(SendError::Dropped);
                };
                if c.pending() + framing::encoded_len(*f, packet) > MAX_TCP_BACKLOG {
                    return Err(SendError::Dropped);
                }
                framing::encode(*f, packet, &mut c.out).map_err(|_| SendError::Dropped)?;
                // A write error shows up again as an event on the connection; handled there.
                let _ = c.flush();
                Ok(())
            }
        }
    }

    /// Closes the TCP connection, if any.
    fn close(&mut self, registry: &Registry) {
        if let Link::Tcp { conn, .. } = self {
            if let Some(mut c) = conn.take() {
                let _ = registry.deregister(&mut c.stream);
            }
        }
    }

    fn tcp_token(&self) -> Option<Token> {
        match self {
            Link::Tcp { conn: Some(c), .. } => Some(c.token),
            _ => None,
        }
    }
}

/// Everything but the link: the local socket, the sides and the counters.
struct Relay {
    listen: UdpSocket,
    locals: Vec<SocketAddr>,
    remote: Side,
    /// With `--local-gateway`: the local gateway we are also a patron of.
    local_gw: Option<Side>,
    stats: Stats,
    log: RateLimit,
    timeout: Duration,
    reply_window: Duration,
}

impl Relay {
    fn malformed(&mut self, now: Duration, from: SocketAddr, len: usize, e: ParseError) {
        if let Some(held) = self.log.allow(now) {
            let more = if held > 0 {
                format!(" ({held} more not shown)")
            } else {
                String::new()
            };
            eprintln!("patron: dropped a malformed packet from {from} ({len} bytes): {e}{more}");
        }
    }

    /// A packet from the remote gateway.
    fn on_remote(&mut self, now: Duration, packet: &[u8]) {
        match classify(packet) {
            Kind::Control => self.remote.patron.handle(now, packet),
            Kind::Traffic => {
                self.remote.patron.note_traffic(now);
                self.stats.from_gateway += 1;
                for to in &self.locals {
                    if self.listen.send_to(packet, *to).is_err() {
                        self.stats.send_errors += 1;
                    }
                }
            }
            Kind::Malformed(e) => {
                self.stats.gateway_malformed += 1;
                let from = self.remote.addr;
                self.malformed(now, from, packet.len(), e);
            }
        }
    }

    /// A packet on the `--listen` socket: from the local gateway or a local app.
    fn on_local(
        &mut self,
        now: Duration,
        src: SocketAddr,
        packet: &[u8],
        link: &mut Link,
        registry: &Registry,
    ) {
        let kind = classify(packet);
        let from_gw = self.local_gw.as_ref().is_some_and(|s| s.addr == src);
        match kind {
            Kind::Malformed(e) => {
                self.stats.local_malformed += 1;
                self.malformed(now, src, packet.len(), e);
                return;
            }
            Kind::Control => {
                match self.local_gw.as_mut() {
                    Some(gw) if from_gw => gw.patron.handle(now, packet),
                    _ => self.stats.local_control_dropped += 1,
                }
                return;
            }
            Kind::Traffic => {
                if let Some(gw) = self.local_gw.as_mut().filter(|_| from_gw) {
                    gw.patron.note_traffic(now);
                }
            }
        }
        match link.send(registry, self.remote.addr, packet, false, &mut self.stats) {
            Ok(()) => self.stats.to_gateway += 1,
            Err(SendError::Dropped) => self.stats.tcp_dropped += 1,
            Err(_) => self.stats.send_errors += 1,
        }
    }

    /// Sends what the state machines queued, each to its gateway.
    fn flush_patrons(&mut self, now: Duration, link: &mut Link, registry: &Registry) {
        while let Some(p) = self.remote.patron.poll_transmit() {
            match link.send(registry, self.remote.addr, &p, true, &mut self.stats) {
                Ok(()) => {}
                Err(SendError::Connect) => {
                    self.stats.tcp_connect_failures += 1;
                    self.remote.unreachable(&"connect failed");
                    connection_lost(&mut self.remote.patron, now);
                }
                Err(SendError::Dropped) => self.stats.tcp_dropped += 1,
                Err(SendError::Socket) => self.stats.send_errors += 1,
            }
        }
        if let Some(gw) = self.local_gw.as_mut() {
            while let Some(p) = gw.patron.poll_transmit() {
                if self.listen.send_to(&p, gw.addr).is_err() {
                    self.stats.send_errors += 1;
                }
            }
        }
    }

    /// Runs the timers, sends what is due and reports state changes.
    fn tick(&mut self, now: Duration, link: &mut Link, registry: &Registry) {
        self.remote.patron.handle_timeout(now);
        if let Some(gw) = self.local_gw.as_mut() {
            gw.patron.handle_timeout(now);
        }
        self.settle(now, link, registry);
    }

    /// Flushes and reports; a lost TCP gateway gets a fresh connection for the next request.
    fn settle(&mut self, now: Duration, link: &mut Link, registry: &Registry) {
        self.flush_patrons(now, link, registry);
        if let Link::Tcp { conn: Some(c), .. } = link {
            let started = *c.started.get_or_insert(now);
            if !c.connected && now.saturating_sub(started) >= self.reply_window {
                self.tcp_lost(now, link, registry, "connect timed out".into());
                self.flush_patrons(now, link, registry);
            }
        }
        if self.remote.report(self.timeout) {
            link.close(registry);
        }
        if let Some(gw) = self.local_gw.as_mut() {
            gw.report(self.timeout);
        }
    }

    /// The TCP connection failed or dropped.
    fn tcp_lost(&mut self, now: Duration, link: &mut Link, registry: &Registry, why: String) {
        let was_connected = matches!(link, Link::Tcp { conn: Some(c), .. } if c.connected);
        link.close(registry);
        if was_connected {
            self.stats.tcp_drops += 1;
            self.remote.reason = Some(format!("connection closed: {why}"));
        } else {
            self.stats.tcp_connect_failures += 1;
            self.remote.unreachable(&why);
        }
        connection_lost(&mut self.remote.patron, now);
    }

    /// Reads the `--listen` socket; true if it may have more.
    fn read_local(
        &mut self,
        now: Duration,
        buf: &mut [u8],
        link: &mut Link,
        registry: &Registry,
    ) -> bool {
        for _ in 0..READ_BUDGET {
            match self.listen.recv_from(buf) {
                Ok((n, src)) => self.on_local(now, src, &buf[..n], link, registry),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock, or an error that the next readiness event will retry.
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads the remote UDP socket; true if it may have more.
    fn read_remote_udp(&mut self, now: Duration, buf: &mut [u8], sock: &UdpSocket) -> bool {
        for _ in 0..READ_BUDGET {
            match sock.recv_from(buf) {
                Ok((n, src)) if src == self.remote.addr => self.on_remote(now, &buf[..n]),
                Ok(_) => self.stats.stray += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Handles readiness of the TCP connection; true if it may have more to read.
    fn tcp_ready(
        &mut self,
        now: Duration,
        buf: &mut [u8],
        link: &mut Link,
        registry: &Registry,
    ) -> bool {
        let Link::Tcp { conn: Some(c), .. } = link else {
            return false;
        };
        match c.check_connected() {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                self.tcp_lost(now, link, registry, e.to_string());
                return false;
            }
        }
        if let Err(e) = c.flush() {
            self.tcp_lost(now, link, registry, e.to_string());
            return false;
        }
        for _ in 0..READ_BUDGET {
            let n = match c.stream.read(buf) {
                Ok(0) => {
                    self.tcp_lost(now, link, registry, "closed by the gateway".into());
                    return false;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.tcp_lost(now, link, registry, e.to_string());
                    return false;
                }
            };
            let mut bad = 0;
            let r = c.dec.decode(&mut buf[..n], |frame| match frame {
                Ok(p) => self.on_remote(now, p),
                Err(_) => bad += 1,
            });
            self.stats.tcp_bad_frames += bad;
            if let Err(e) = r {
                self.tcp_lost(now, link, registry, e.to_string());
                return false;
            }
        }
        true
    }

    /// Sends leave to each gateway.
    fn leave(&mut self, now: Duration, link: &mut Link, registry: &Registry) {
        self.remote.patron.leave(now);
        if let Some(gw) = self.local_gw.as_mut() {
            gw.patron.leave(now);
        }
        // Leaving never needs a new connection: only send on one that is there.
        while let Some(p) = self.remote.patron.poll_transmit() {
            // No TCP connection at this moment: nobody to say goodbye to.
            if let Err(SendError::Socket) =
                link.send(registry, self.remote.addr, &p, false, &mut self.stats)
            {
                self.stats.send_errors += 1;
            }
        }
        self.flush_patrons(now, link, registry);
    }

    fn print_counters(&self) {
        let s = &self.stats;
        eprintln!(
            "patron: counters: from_gateway={} to_gateway={} local_control_dropped={} \
             local_malformed={} gateway_malformed={} stray={} send_errors={} tcp_dropped={} \
             tcp_bad_frames={} tcp_connects={} tcp_connect_failures={} tcp_drops={}",
            s.from_gateway,
            s.to_gateway,
            s.local_control_dropped,
            s.local_malformed,
            s.gateway_malformed,
            s.stray,
            s.send_errors,
            s.tcp_dropped,
            s.tcp_bad_frames,
            s.tcp_connects,
            s.tcp_connect_failures,
            s.tcp_drops
        );
        for side in std::iter::once(&self.remote).chain(self.local_gw.as_ref()) {
            let c = side.patron.counters();
            eprintln!(
                "patron: {} {}: requests_sent={} accepted={} denied={} no_reply={} \
                 keepalives_answered={} gateway_gone={} shutdowns={} leaves_sent={} \
                 malformed={} ignored={} unknown={} traffic={}",
                side.label,
                side.addr,
                c.requests_sent,
                c.accepted,
                c.denied,
                c.no_reply,
                c.keepalives_answered,
                c.gateway_gone,
                c.shutdowns,
                c.leaves_sent,
                c.malformed,
                c.ignored,
                c.unknown,
                c.traffic
            );
        }
    }
}

/// Runs `oscgate patron` until SIGINT or SIGTERM.
pub fn run(a: &PatronArgs) -> Result<()> {
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&term))
            .context("installing signal handlers")?;
    }
    if a.local_gateway && a.local.len() != 1 {
        bail!("--local-gateway links exactly one local gateway: give one --local");
    }
    let (fresh, seed) = fresh_uid();
    let uid = match &a.uid {
        Some(u) => {
            check_uid(u)?;
            u.clone()
        }
        None => fresh,
    };
    let gateway = resolve(&a.gateway, "--gateway")?;
    let listen_addr = resolve(&a.listen, "--listen")?;
    let locals = a
        .local
        .iter()
        .map(|l| resolve(l, "--local"))
        .collect::<Result<Vec<_>>>()?;

    let mut poll = Poll::new().context("creating the event loop")?;
    let mut listen =
        UdpSocket::bind(listen_addr).with_context(|| format!("bind --listen {listen_addr}"))?;
    poll.registry()
        .register(&mut listen, LISTEN, Interest::READABLE)?;
    let bound = listen.local_addr()?;
    raise_recv_buffer(&listen);
    let mut link = if a.tcp {
        let framing = match a.framing.unwrap_or(StreamFraming::Len32) {
            StreamFraming::Len32 => Framing::Len32,
            StreamFraming::Slip => Framing::Slip,
        };
        Link::Tcp {
            framing,
            conn: None,
            next_token: FIRST_TCP,
        }
    } else {
        let any: SocketAddr = if gateway.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let mut sock = UdpSocket::bind(any).context("bind the gateway socket")?;
        raise_recv_buffer(&sock);
        poll.registry()
            .register(&mut sock, REMOTE_UDP, Interest::READABLE)?;
        Link::Udp(sock)
    };

    let cfg = a.patron_config();
    let local_gw = a.local_gateway.then(|| {
        let p = Patron::new(uid.clone(), cfg, seed.rotate_left(32) ^ 0x5bd1_e995);
        Side::new("local gateway", locals[0], p)
    });
    let mut relay = Relay {
        listen,
        locals,
        remote: Side::new("gateway", gateway, Patron::new(uid.clone(), cfg, seed)),
        local_gw,
        stats: Stats::default(),
        log: RateLimit::default(),
        timeout: cfg.timeout,
        reply_window: cfg.reply_window,
    };
    let transport = match &link {
        Link::Udp(_) => "udp".to_owned(),
        Link::Tcp { framing, .. } => format!("tcp {framing}"),
    };
    eprintln!(
        "patron: listening on {bound}; gateway {gateway} ({transport}); uid {uid}; local {}{}",
        relay
            .locals
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        if a.local_gateway { " (a gateway)" } else { "" }
    );

    let origin = Instant::now();
    let clock = || origin.elapsed();
    let mut events = Events::with_capacity(64);
    let mut buf = vec![0u8; RECV_BUF];
    let (mut local_more, mut remote_more, mut tcp_more) = (false, false, false);
    let now = clock();
    relay.remote.patron.start(now);
    if let Some(gw) = relay.local_gw.as_mut() {
        gw.patron.start(now);
    }
    relay.settle(now, &mut link, poll.registry());

    while !term.load(Ordering::Relaxed) {
        let now = clock();
        relay.tick(now, &mut link, poll.registry());
        let wait = if local_more || remote_more || tcp_more {
            Duration::ZERO
        } else {
            let next = [
                relay.remote.patron.poll_timeout(),
                relay
                    .local_gw
                    .as_ref()
                    .and_then(|s| s.patron.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min();
            next.map_or(MAX_WAIT, |t| t.saturating_sub(now).min(MAX_WAIT))
        };
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("waiting for events"),
        }
        let tcp_token = link.tcp_token();
        for ev in events.iter() {
            match ev.token() {
                LISTEN => local_more = true,
                REMOTE_UDP => remote_more = true,
                t if Some(t) == tcp_token => tcp_more = true,
                _ => {}
            }
        }
        let now = clock();
        if local_more {
            local_more = relay.read_local(now, &mut buf, &mut link, poll.registry());
        }
        if remote_more {
            if let Link::Udp(sock) = &link {
                remote_more = relay.read_remote_udp(now, &mut buf, sock);
            } else {
                remote_more = false;
            }
        }
        if tcp_more {
            tcp_more = relay.tcp_ready(now, &mut buf, &mut link, poll.registry());
        }
        relay.settle(now, &mut link, poll.registry());
    }

    let now = clock();
    relay.leave(now, &mut link, poll.registry());
    // Give a TCP gateway a moment to take the leave message.
    let deadline = Instant::now() + EXIT_FLUSH;
    while let Link::Tcp { conn: Some(c), .. } = &mut link {
        let done = match c.check_connected() {
            Ok(true) => c.flush().is_err() || c.pending() == 0,
            Ok(false) => false,
            Err(_) => true,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if done || left.is_zero() {
            break;
        }
        let _ = poll.poll(&mut events, Some(left.min(Duration::from_millis(20))));
    }
    link.close(poll.registry());
    eprintln!("patron: left; exiting");
    relay.print_counters();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oscgate::proto::messenger::{ACCEPT, WHO_ACTIVE};

    const ME: &str = "AAAAAAAA-0000-4000-8000-000000000001";
    const GW: &str = "11111111-2222-3333-4444-555555555555";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn msg(address: &[u8], args: &[&str]) -> Vec<u8> {
        let p = gateway_message(address, args);
        assert!(!p.is_empty());
        p
    }

    fn patron() -> Patron {
        let mut p = Patron::new(ME, PatronConfig::default(), 7);
        p.start(ms(0));
        while p.poll_transmit().is_some() {}
        p
    }

    #[test]
    fn classify_tells_control_traffic_and_garbage_apart() {
        assert_eq!(classify(&msg(WHO_ACTIVE, &[GW])), Kind::Control);
        assert_eq!(classify(&msg(b"/messenger/gateway", &[])), Kind::Control);
        assert_eq!(classify(&msg(b"/messenger/me/say", &["x"])), Kind::Traffic);
        assert_eq!(
            classify(&msg(b"/messenger/gatewayx", &[])),
            Kind::Traffic,
            "prefix is by whole segments"
        );
        let mut bundle = b"#bundle\0".to_vec();
        bundle.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(classify(&bundle), Kind::Traffic);
        for bad in [&b""[..], b"nope", b"/a\0", b"\xc0\xc0\xc0\xc0"] {
            assert!(matches!(classify(bad), Kind::Malformed(_)), "{bad:?}");
        }
    }

    #[test]
    fn connection_lost_while_active_backs_off_from_the_first_step() {
        let mut p = patron();
        p.handle(ms(10), &msg(ACCEPT, &[GW, ME]));
        assert_eq!(p.state(), State::Active);
        connection_lost(&mut p, ms(100));
        assert_eq!(p.state(), State::Backoff);
        let retry = p.poll_timeout().unwrap();
        assert!(retry > ms(100) && retry <= ms(1100), "{retry:?}");
        p.handle_timeout(retry);
        assert_eq!(p.state(), State::Requesting);
        assert!(p.poll_transmit().is_some(), "asks again");
    }

    #[test]
    fn connection_lost_while_requesting_grows_the_backoff() {
        let mut p = patron();
        connection_lost(&mut p, ms(0));
        assert_eq!(p.state(), State::Backoff);
        let first = p.poll_timeout().unwrap();
        p.handle_timeout(first);
        assert!(p.poll_transmit().is_some(), "the retry's request");
        connection_lost(&mut p, first);
        let second = p.poll_timeout().unwrap() - first;
        assert!(second > ms(1000), "doubled: {second:?}");
        // While backing off a loss changes nothing.
        let before = p.poll_timeout();
        connection_lost(&mut p, first);
        assert_eq!(p.poll_timeout(), before);
        assert!(p.poll_transmit().is_none());
    }

    #[test]
    fn rate_limit_lets_one_line_a_second_through() {
        let mut r = RateLimit::default();
        assert_eq!(r.allow(ms(0)), Some(0));
        assert_eq!(r.allow(ms(10)), None);
        assert_eq!(r.allow(ms(999)), None);
        assert_eq!(r.allow(ms(1000)), Some(2));
        assert_eq!(r.allow(ms(1500)), None);
        assert_eq!(r.allow(ms(5000)), Some(1));
    }

    #[test]
    fn uid_checks_and_fresh_uids() {
        assert!(check_uid(ME).is_ok());
        assert!(check_uid("").is_err());
        assert!(check_uid("a\0b").is_err());
        assert!(check_uid(&"x".repeat(MAX_UID_LEN + 1)).is_err());
        let (a, _) = fresh_uid();
        let (b, _) = fresh_uid();
        assert_eq!(a.len(), 36);
        assert_ne!(a, b);
    }

    #[test]
    fn resolve_prefers_ipv4_and_explains_errors() {
        assert_eq!(
            resolve("127.0.0.1:9", "--x").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        let e = resolve("no-port", "--gateway").unwrap_err().to_string();
        assert!(e.contains("--gateway `no-port`"), "{e}");
    }

    #[test]
    fn side_reports_join_loss_and_rejoin_once_each() {
        let mut s = Side::new("gateway", "127.0.0.1:1".parse().unwrap(), patron());
        assert!(!s.report(ms(30_000)));
        s.patron.handle(ms(1), &msg(ACCEPT, &[GW, ME]));
        assert!(!s.report(ms(30_000)));
        assert!(s.joined_before);
        s.patron.handle_timeout(ms(40_000));
        assert!(s.report(ms(30_000)), "lost");
        assert!(!s.report(ms(30_000)), "reported once");
    }
}
