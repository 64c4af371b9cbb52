//! One worker: a thread pinned to a core that owns its sockets and its driver, and runs the
//! forwarding loop: receive a batch, [`peek`] each packet in place, classify its source
//! (group, patron, stranger), look the address up in the published route table, copy control
//! packets to the control thread, and fan the rest out, zero-copy, to every destination but the
//! sender. Between turns it runs the jobs other threads put in its mailbox.
//!
//! Per forwarded packet there is no heap allocation, lock, log line or clock read: the
//! snapshot is loaded once per turn, counters are plain per-worker atomics, destinations are
//! pre-built in the table. TCP connections live on the worker that accepted them (see
//! [`super::tcp`]); a packet for a connection of another worker goes through that worker's
//! mailbox.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::bus::{ControlMsg, Dest, EdgeMsg, Endpoint, Shared, Snapshot, WorkerMsg, GROUP};
use super::counters::{Counters, C};
use super::driver::{Driver, Handler, Out, Rx, SockIdx, FIRST_WORKER_TOKEN};
use super::tcp_side::{Door, DoorSettings, TcpSide};
use crate::dedupe::{Dedupe, Seen};
use crate::route::{DropReason, Protocol};
use crate::wire::address::{has_prefix, peek, Peek};
use crate::wire::Packet;

/// The mio token of a worker's waker.
pub(crate) const WAKER: mio::Token = mio::Token(FIRST_WORKER_TOKEN);
/// How long a worker sleeps at most (idle housekeeping: idle TCP connections).
const TICK: Duration = Duration::from_millis(500);
/// Mailbox jobs run per turn, so a flood of them cannot starve the sockets.
const MAILBOX_BUDGET: usize = 8192;

/// The sockets and settings one worker starts with.
#[derive(Debug)]
pub struct WorkerSetup {
    /// Its index (also its core, when pinned).
    pub id: u16,
    /// The core to pin to, if any.
    pub core: Option<core_affinity::CoreId>,
    /// The Messenger front door, if enabled.
    pub messenger: Option<MessengerSockets>,
    /// The tcposcrouter front door, if enabled.
    pub router: Option<RouterSockets>,
    /// The OSChat front door (one worker has all of it), if enabled.
    pub chat: Option<ChatSockets>,
    /// TCP settings.
    pub tcp: super::tcp_side::TcpSettings,
}

/// One worker's share of the tcposcrouter front door.
#[derive(Debug)]
pub struct RouterSockets {
    /// The OSC 1.0 (length prefix) listener (`SO_REUSEPORT`, one per worker).
    pub len32: std::net::TcpListener,
    /// The SLIP listener.
    pub slip: std::net::TcpListener,
    /// How their connections are run.
    pub settings: DoorSettings,
}

/// The OSChat front door's sockets.
#[derive(Debug)]
pub struct ChatSockets {
    /// One socket per interface, in interface order, with the address its broadcasts go to.
    pub socks: Vec<(UdpSocket, SocketAddr)>,
    /// The duplicate filter, shared with the control thread.
    pub dedupe: Arc<Dedupe>,
}

/// A worker's OSChat state.
struct ChatSide {
    socks: Vec<SockIdx>,
    broadcast: Vec<SocketAddr>,
    dedupe: Arc<Dedupe>,
    /// Where a message's identity is written (kept, so no allocation).
    identity: Vec<u8>,
    /// Milliseconds since [`Shared::epoch`], read once per turn.
    now_ms: u64,
}

/// One worker's share of the Messenger front door.
#[derive(Debug)]
pub struct MessengerSockets {
    /// The patron port (`SO_REUSEPORT`, one per worker); also sends to the group.
    pub patron_udp: UdpSocket,
    /// The group receiver (worker 0 only).
    pub group_rx: Option<UdpSocket>,
    /// The patron port's TCP listener (`SO_REUSEPORT`, one per worker), with its settings.
    pub tcp: Option<(std::net::TcpListener, DoorSettings)>,
    /// The multicast group.
    pub group: SocketAddr,
    /// The source addresses of oscgate's own sends to the group (dropped when heard back).
    pub self_sources: Vec<SocketAddr>,
}

/// The per-packet side of a worker (the [`Handler`] its driver calls).
pub(crate) struct State {
    pub(crate) id: u16,
    pub(crate) shared: Arc<Shared>,
    /// The snapshot loaded for this turn. `None` only while [`State::route`] has moved it out
    /// (moving an `Arc` costs nothing; cloning it per packet would bounce its reference count
    /// between workers).
    pub(crate) snap: Option<Arc<Snapshot>>,
    patron_sock: Option<SockIdx>,
    group_sock: Option<SockIdx>,
    group: Option<SocketAddr>,
    self_sources: Vec<SocketAddr>,
    pub(crate) tcp: TcpSide,
    chat: Option<ChatSide>,
    /// Where a private message is rewritten for its target (kept, so no allocation).
    private: Vec<u8>,
    /// The mailbox said stop.
    stop_seen: bool,
    /// Where a bundle is split into control messages and the rest (kept, so no allocation).
    split_rest: Vec<u8>,
    split_ctl: Vec<std::ops::Range<usize>>,
    /// Wake the control thread at the end of the turn.
    wake_control: bool,
    /// Wake the edge thread at the end of the turn.
    wake_edge: bool,
    /// Packets WebSocket sessions sent, to route at the end of the turn (bounded by the
    /// mailbox they came through).
    injected: std::collections::VecDeque<(Endpoint, Bytes)>,
    /// Other workers to wake at the end of the turn (bit per worker id, up to 64).
    wake_workers: u64,
}

/// Where the packet being routed came from, and how its payload can be sent on.
#[derive(Clone, Copy)]
pub(crate) enum Origin {
    /// A datagram: destinations are named on [`Out`] and sent in place.
    Datagram,
    /// A TCP frame: sent on as owned copies (one copy, shared).
    Stream,
}

impl State {
    fn counters(&self) -> &Counters {
        &self.shared.workers[usize::from(self.id)].counters
    }

    /// Routes one packet from `from` (None: the group) with source `ip`.
    pub(crate) fn route(
        &mut self,
        from: Option<Endpoint>,
        ip: IpAddr,
        payload: &[u8],
        origin: Origin,
        out: &mut Out,
    ) {
        let Some(snap) = self.snap.take() else {
            return;
        };
        self.route_with(&snap, from, ip, payload, origin, out);
        self.snap = Some(snap);
    }

    fn route_with(
        &mut self,
        snap: &Snapshot,
        from: Option<Endpoint>,
        ip: IpAddr,
        payload: &[u8],
        origin: Origin,
        out: &mut Out,
    ) {
        let ingress = match &from {
            None => GROUP,
            Some(ep) => snap.classify(ep),
        };
        let address = match peek(payload) {
            Ok(Peek::Message { address, .. }) => address,
            Ok(Peek::Bundle) => {
                match bundle_verdict(payload, crate::proto::messenger::GATEWAY_PREFIX) {
                    BundleCheck::Plain => &b"#bundle"[..],
                    BundleCheck::Reserved => {
                        // A bundle carrying gateway control is neither forwarded nor acted upon
                        // (the protocol's control messages are plain messages).
                        self.counters().bump(C::DroppedReserved);
                        return;
                    }
                    BundleCheck::Bad => {
                        self.counters().bump(C::BadPacket);
                        return;
                    }
                }
            }
            Err(_) => {
                self.counters().bump(C::BadPacket);
                return;
            }
        };
        let verdict = snap.table.lookup(ingress, address);
        if let Some(protocol) = verdict.control() {
            if let Some(ep) = from {
                self.pass_to_control(protocol, ep, ip, payload);
            }
        }
        if let Some(reason) = verdict.drop_reason() {
            self.counters().bump(match reason {
                DropReason::Reserved => C::DroppedReserved,
                _ => C::DroppedNoRoute,
            });
            return;
        }
        let dests = verdict.forward();
        if dests.is_empty() {
            return;
        }
        let mut owned: Option<Bytes> = None;
        let mut delivered = 0u64;
        self.tcp.begin_packet();
        for d in dests {
            let (sock, to) = match d {
                Dest::Group => match (self.patron_sock, self.group) {
                    (Some(s), Some(g)) => (s, g),
                    _ => continue,
                },
                Dest::Peer(ep) if Some(*ep) == from => continue,
                Dest::Peer(Endpoint::Udp(a)) => match self.patron_sock {
                    Some(s) => (s, *a),
                    None => continue,
                },
                Dest::Peer(Endpoint::Ws(session)) => {
                    let packet = owned
                        .get_or_insert_with(|| self.tcp.framer.raw(payload))
                        .clone();
                    if self.shared.edge.push(EdgeMsg::Deliver {
                        session: *session,
                        packet,
                    }) {
                        self.wake_edge = true;
                        delivered += 1;
                    } else {
                        self.counters().bump(C::EgressQueueFull);
                    }
                    continue;
                }
                Dest::Peer(Endpoint::Tcp(c)) => {
                    if c.worker == self.id {
                        let counters = &self.shared.workers[usize::from(self.id)].counters;
                        delivered += u64::from(self.tcp.deliver_local(*c, payload, counters));
                    } else {
                        let bytes = owned
                            .get_or_insert_with(|| self.tcp.framer.raw(payload))
                            .clone();
                        delivered += u64::from(self.deliver_remote(*c, bytes));
                    }
                    continue;
                }
            };
            let queued = match origin {
                Origin::Datagram => out.to(sock, to),
                Origin::Stream => {
                    let bytes = owned
                        .get_or_insert_with(|| self.tcp.framer.raw(payload))
                        .clone();
                    out.send(sock, bytes, to)
                }
            };
            if queued {
                delivered += 1;
            } else {
                self.counters().bump(C::FanoutFull);
            }
        }
        self.counters().add(C::Forwarded, delivered);
    }

    /// Handles one datagram heard on OSChat interface `iface`: mesh messages go to the control
    /// thread only (never forwarded, never deduplicated); anything else passes the duplicate
    /// filter, is forwarded to the interfaces the published flags name (in place), and goes
    /// to the control thread (duplicates too when the node has several interfaces: a standby
    /// gateway learns from them what the active one carried).
    fn route_chat(&mut self, iface: usize, payload: &[u8], out: &mut Out) {
        let Some(mut side) = self.chat.take() else {
            return;
        };
        self.route_chat_with(&mut side, iface, payload, out);
        self.chat = Some(side);
    }

    fn route_chat_with(
        &mut self,
        side: &mut ChatSide,
        iface: usize,
        payload: &[u8],
        out: &mut Out,
    ) {
        use crate::proto::oschat::{parse, Error};
        let chat = match parse(payload) {
            Ok(c) => c,
            Err(Error::NotOschat) => {
                self.counters().bump(C::DroppedNoRoute);
                return;
            }
            Err(_) => {
                self.counters().bump(C::BadPacket);
                return;
            }
        };
        if chat.is_mesh() {
            self.chat_to_control(iface, 0, true, 0, payload);
            return;
        }
        let key = crate::proto::chatnode::key_of(&side.dedupe, &chat, &mut side.identity);
        let first = side.dedupe.check_and_insert(key, side.now_ms) == Seen::New;
        let mut forwarded = 0u64;
        if first {
            let flags = self
                .snap
                .as_ref()
                .and_then(|s| s.chat.get(iface).copied())
                .unwrap_or(0);
            let mut delivered = 0u64;
            for (j, (&sock, &to)) in side.socks.iter().zip(&side.broadcast).enumerate() {
                if j != iface && j < 64 && flags & (1 << j) != 0 {
                    if out.to(sock, to) {
                        forwarded |= 1 << j;
                        delivered += 1;
                    } else {
                        self.counters().bump(C::FanoutFull);
                    }
                }
            }
            self.counters().add(C::Forwarded, delivered);
        } else {
            self.counters().bump(C::DroppedDuplicate);
        }
        if first || side.socks.len() > 1 {
            self.chat_to_control(iface, key, first, forwarded, payload);
        }
    }

    fn chat_to_control(&mut self, iface: usize, key: u64, first: bool, forwarded: u64, p: &[u8]) {
        self.send_control(ControlMsg::Chat {
            iface: iface as u8,
            key,
            first,
            forwarded,
            packet: Bytes::copy_from_slice(p),
        });
    }

    /// Queues a message for the control thread (counted; dropped and counted when full).
    fn send_control(&mut self, msg: ControlMsg) {
        if self.shared.control.push(msg).is_ok() {
            self.counters().bump(C::Control);
            self.wake_control = true;
        } else {
            self.counters().bump(C::ControlQueueFull);
        }
    }

    /// Sends what waited for router connection `c`'s registration to show (its register
    /// answer, its user list), in order.
    fn flush_replies(&mut self, c: super::bus::ConnId) {
        let Some(h) = self.tcp.router_held.get_mut(&c) else {
            return;
        };
        let replies = std::mem::take(&mut h.replies);
        let shared = Arc::clone(&self.shared);
        let counters = &shared.workers[usize::from(self.id)].counters;
        for p in replies {
            self.tcp.begin_packet();
            self.tcp.deliver_local(c, &p, counters);
        }
    }

    /// Routes one packet from tcposcrouter connection `c`: before it is registered, to the
    /// control thread; then `/oscrouter/private` to its target, other `/oscrouter/...` to the
    /// control thread, and everything else to every connection of every other user of its
    /// group, in order. `/oscrouter/...` messages inside a bundle are acted on as if sent
    /// alone and the rest of the bundle goes on as a bundle: forwarding it whole would show a
    /// private message or a register to the whole group. Returns false if the packet was
    /// malformed (counted as `bad_packet`).
    pub(crate) fn route_router(
        &mut self,
        c: super::bus::ConnId,
        ip: IpAddr,
        payload: &[u8],
    ) -> bool {
        let Some(snap) = self.snap.take() else {
            return true;
        };
        let good = self.route_router_with(&snap, c, ip, payload);
        self.snap = Some(snap);
        good
    }

    fn route_router_with(
        &mut self,
        snap: &Snapshot,
        c: super::bus::ConnId,
        ip: IpAddr,
        payload: &[u8],
    ) -> bool {
        use crate::proto::router::{PREFIX, PRIVATE, REGISTER};
        let Some(&(g, u)) = snap.router.conns.get(&c) else {
            // Not registered (yet): the first packet goes to the control thread; what follows
            // is held until the answer is published, so a client that pipelines its first
            // messages behind the register loses nothing and keeps its order.
            if self.tcp.router_held.contains_key(&c) {
                self.hold(c, payload);
                return true;
            }
            self.tcp
                .router_held
                .insert(c, super::tcp_side::Held::new(ip));
            let in_bundle = matches!(peek(payload), Ok(Peek::Bundle));
            let first = crate::proto::router::first_message(payload)
                .filter(|r| in_bundle && is_message(&payload[r.clone()], REGISTER));
            let Some(r) = first else {
                // A plain message (the control thread judges it), or a bundle that does not
                // start with a register (refused there).
                self.pass_to_control(Protocol::Router, Endpoint::Tcp(c), ip, payload);
                return true;
            };
            // A bundle that starts with the register (liblo's `oscsendfile` sends nothing
            // else): the register alone to the control thread, the rest held.
            self.pass_to_control(Protocol::Router, Endpoint::Tcp(c), ip, &payload[r]);
            let (mut rest, mut ctl) = self.take_split();
            if let Some(kept) = crate::proto::router::split_bundle(payload, &mut rest, &mut ctl) {
                if kept {
                    self.hold(c, &rest);
                }
                for r in ctl.iter().skip(1) {
                    self.hold(c, &payload[r.clone()]);
                }
            }
            self.put_split(rest, ctl);
            return true;
        };
        let Some(group) = snap.router.groups.get(g as usize) else {
            return true;
        };
        match peek(payload) {
            Ok(Peek::Message { address, .. }) if address == PRIVATE => {
                return self.router_private(group, u, c, payload);
            }
            Ok(Peek::Message { address, .. }) if has_prefix(address, PREFIX) => {
                self.pass_to_control(Protocol::Router, Endpoint::Tcp(c), ip, payload);
            }
            Ok(Peek::Message { .. }) => self.fan_out_router(group, |user, _| user != u, payload),
            Ok(Peek::Bundle) => match bundle_verdict(payload, PREFIX) {
                BundleCheck::Plain => self.fan_out_router(group, |user, _| user != u, payload),
                BundleCheck::Reserved => {
                    // Control messages wrapped in a bundle are acted on as if sent alone; the
                    // rest of the bundle goes on as a bundle (same time tags), first.
                    let (mut rest, mut ctl) = self.take_split();
                    if let Some(kept) =
                        crate::proto::router::split_bundle(payload, &mut rest, &mut ctl)
                    {
                        if kept {
                            self.fan_out_router(group, |user, _| user != u, &rest);
                        }
                        for r in &ctl {
                            let m = &payload[r.clone()];
                            if is_message(m, PRIVATE) {
                                self.router_private(group, u, c, m);
                            } else {
                                self.pass_to_control(Protocol::Router, Endpoint::Tcp(c), ip, m);
                            }
                        }
                    }
                    self.put_split(rest, ctl);
                }
                BundleCheck::Bad => {
                    self.counters().bump(C::BadPacket);
                    return false;
                }
            },
            Err(_) => {
                self.counters().bump(C::BadPacket);
                return false;
            }
        }
        true
    }

    /// A private message from user `u` (connection `c`) of `group`, to its target. False if
    /// it is not a well-formed private message.
    fn router_private(
        &mut self,
        group: &super::bus::RouterGroup,
        u: u32,
        c: super::bus::ConnId,
        payload: &[u8],
    ) -> bool {
        let sender = group.users.get(u as usize).map_or("", String::as_str);
        let mut out = std::mem::take(&mut self.private);
        let target = crate::proto::router::rewrite_private(payload, sender, &mut out);
        match target.map(|t| group.users.iter().position(|n| n.as_bytes() == t)) {
            Some(Some(t)) => {
                self.fan_out_router(group, |user, conn| user == t as u32 && conn != c, &out)
            }
            Some(None) => self.counters().bump(C::DroppedNoRoute),
            None => self.counters().bump(C::BadPacket),
        }
        self.private = out;
        target.is_some()
    }

    /// Holds a packet of a router connection whose register is not answered yet (bounded).
    fn hold(&mut self, c: super::bus::ConnId, payload: &[u8]) {
        let total = self.tcp.held_total;
        match self.tcp.router_held.get_mut(&c) {
            Some(h)
                if h.bytes + payload.len() <= super::tcp_side::MAX_HELD_BYTES
                    && total + payload.len() <= super::tcp_side::MAX_HELD_TOTAL =>
            {
                h.bytes += payload.len();
                h.packets.push(Bytes::copy_from_slice(payload));
                self.tcp.held_total += payload.len();
            }
            _ => self.counters().bump(C::EgressQueueFull),
        }
    }

    fn take_split(&mut self) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        (
            std::mem::take(&mut self.split_rest),
            std::mem::take(&mut self.split_ctl),
        )
    }

    fn put_split(&mut self, rest: Vec<u8>, ctl: Vec<std::ops::Range<usize>>) {
        self.split_rest = rest;
        self.split_ctl = ctl;
    }

    /// Replays what router connections sent while their register was being answered, for
    /// those the new snapshot shows registered.
    fn replay_held(&mut self) {
        let Some(snap) = self.snap.take() else {
            return;
        };
        let ready: Vec<super::bus::ConnId> = self
            .tcp
            .router_held
            .keys()
            .filter(|c| snap.router.conns.contains_key(c))
            .copied()
            .collect();
        for c in ready {
            self.flush_replies(c);
            let Some(h) = self.tcp.router_held.remove(&c) else {
                continue;
            };
            self.tcp.held_total -= h.bytes;
            for p in h.packets {
                let good = self.route_router_with(&snap, c, h.ip, &p);
                // Garbage held while the register was answered counts like any (a connection
                // already gone has no run to track).
                if self.tcp.track_bad(c, good) {
                    let shared = Arc::clone(&self.shared);
                    let counters = &shared.workers[usize::from(self.id)].counters;
                    counters.bump(C::TcpFatal);
                    self.tcp.close_now(c, counters, &shared.control);
                    self.wake_control = true;
                    break;
                }
            }
            if h.closed_at.is_some() {
                // Gone already: after its packets, the control thread hears of it.
                let _ = self.shared.control.push(ControlMsg::Closed(c));
                self.wake_control = true;
            }
        }
        self.snap = Some(snap);
    }

    /// Sends `payload` to the connections of `group` that `to(user, conn)` picks.
    fn fan_out_router(
        &mut self,
        group: &super::bus::RouterGroup,
        to: impl Fn(u32, super::bus::ConnId) -> bool,
        payload: &[u8],
    ) {
        let mut owned: Option<Bytes> = None;
        let mut delivered = 0u64;
        self.tcp.begin_packet();
        for &(user, conn) in &group.conns {
            if !to(user, conn) {
                continue;
            }
            if conn.worker == self.id {
                let counters = &self.shared.workers[usize::from(self.id)].counters;
                delivered += u64::from(self.tcp.deliver_local(conn, payload, counters));
            } else {
                let bytes = owned
                    .get_or_insert_with(|| self.tcp.framer.raw(payload))
                    .clone();
                delivered += u64::from(self.deliver_remote(conn, bytes));
            }
        }
        self.counters().add(C::Forwarded, delivered);
    }

    fn pass_to_control(
        &mut self,
        protocol: crate::route::Protocol,
        from: Endpoint,
        ip: IpAddr,
        p: &[u8],
    ) {
        let source_ip = match ip {
            IpAddr::V4(a) => a,
            IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
        };
        self.send_control(ControlMsg::Packet {
            protocol,
            from,
            source_ip,
            packet: Bytes::copy_from_slice(p),
        });
    }

    /// Queues a packet for a TCP connection owned by another worker (or for a WebSocket
    /// session on a tcposcrouter bus, which the edge serves).
    fn deliver_remote(&mut self, c: super::bus::ConnId, packet: Bytes) -> bool {
        if let Some(session) = c.edge_session() {
            if self.shared.edge.push(EdgeMsg::Deliver { session, packet }) {
                self.wake_edge = true;
                return true;
            }
            self.counters().bump(C::EgressQueueFull);
            return false;
        }
        let Some(link) = self.shared.workers.get(usize::from(c.worker)) else {
            return false;
        };
        let msg = WorkerMsg::Send {
            to: Endpoint::Tcp(c),
            packet,
        };
        if link.mailbox.push(msg).is_ok() {
            if c.worker < 64 {
                self.wake_workers |= 1 << c.worker;
            } else {
                link.mailbox.wake();
            }
            true
        } else {
            self.counters().bump(C::EgressQueueFull);
            false
        }
    }

    /// Sends the wake-ups collected during the turn.
    /// Runs up to `budget` mailbox jobs; UDP sends go through `send_udp`. True once told to
    /// stop (the jobs queued before the stop have run).
    fn run_mailbox(
        &mut self,
        budget: usize,
        send_udp: &mut impl FnMut(SockIdx, Bytes, SocketAddr),
    ) -> bool {
        let shared = Arc::clone(&self.shared);
        let link = &shared.workers[usize::from(self.id)];
        for _ in 0..budget {
            let Some(msg) = link.mailbox.pop() else {
                break;
            };
            match msg {
                WorkerMsg::Send {
                    to: Endpoint::Udp(a),
                    packet,
                } => {
                    if let Some(s) = self.patron_sock {
                        send_udp(s, packet, a);
                    }
                }
                WorkerMsg::Send {
                    to: Endpoint::Ws(session),
                    packet,
                } => {
                    if self.shared.edge.push(EdgeMsg::Deliver { session, packet }) {
                        self.wake_edge = true;
                    } else {
                        link.counters.bump(C::EgressQueueFull);
                    }
                }
                WorkerMsg::Inject { from, packet } => self.injected.push_back((from, packet)),
                WorkerMsg::Send {
                    to: Endpoint::Tcp(c),
                    packet,
                } => {
                    // A router connection's register answer is sent once this worker routes
                    // it as registered: whatever the client does when it has the answer (or
                    // has others do) then reaches it.
                    let registered = self
                        .snap
                        .as_ref()
                        .is_some_and(|s| s.router.conns.contains_key(&c));
                    if let Some(h) = self.tcp.router_held.get_mut(&c) {
                        if !registered {
                            h.replies.push(packet);
                            continue;
                        }
                    }
                    // Registered now: what waited goes first.
                    self.flush_replies(c);
                    // A new packet: the frames cached for the last one must not be reused.
                    self.tcp.begin_packet();
                    self.tcp.deliver_local(c, &packet, &link.counters);
                }
                WorkerMsg::SendChat { iface, packet } => {
                    if let Some(c) = &self.chat {
                        let i = usize::from(iface);
                        if let (Some(&s), Some(&a)) = (c.socks.get(i), c.broadcast.get(i)) {
                            send_udp(s, packet, a);
                        }
                    }
                }
                WorkerMsg::SendGroup { packet } => {
                    if let (Some(s), Some(g)) = (self.patron_sock, self.group) {
                        send_udp(s, packet, g);
                    }
                }
                WorkerMsg::Close(c) => {
                    // A refused register: its answer goes out before the close.
                    self.flush_replies(c);
                    self.tcp.close_after_flush(c, &shared.control);
                    self.wake_control = true;
                }
                WorkerMsg::Stop => {
                    self.stop_seen = true;
                    break;
                }
            }
        }
        self.stop_seen
    }

    fn flush_wakes(&mut self) {
        if std::mem::take(&mut self.wake_control) {
            self.shared.control.wake();
        }
        if std::mem::take(&mut self.wake_edge) {
            self.shared.edge.wake();
        }
        let mut mask = std::mem::take(&mut self.wake_workers);
        while mask != 0 {
            let w = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if let Some(link) = self.shared.workers.get(w) {
                link.mailbox.wake();
            }
        }
    }
}

impl Handler for State {
    fn turn_start(&mut self, out: &mut Out) {
        if let Some(c) = self.chat.as_mut() {
            c.now_ms = self.shared.epoch.elapsed().as_millis() as u64;
        }
        let current = self.shared.snapshot.load();
        let stale = self.snap.as_ref().is_none_or(|s| !Arc::ptr_eq(&current, s));
        if stale {
            self.snap = Some(arc_swap::Guard::into_inner(current));
            // The control thread queues replies (a router user's register answer and user
            // list) before it publishes the membership they go with: running the mailbox
            // first means a newcomer hears them before any traffic routed by the new table.
            if !self.stop_seen {
                self.run_mailbox(MAILBOX_BUDGET, &mut |s, p, a| {
                    out.send(s, p, a);
                });
            }
            if !self.tcp.router_held.is_empty() {
                self.replay_held();
            }
        }
    }

    fn datagram(&mut self, rx: Rx<'_>, out: &mut Out) {
        self.counters().bump(C::Received);
        if rx.truncated {
            self.counters().bump(C::Truncated);
            return;
        }
        if Some(rx.sock) == self.group_sock {
            self.counters().bump(C::RxMessenger);
            if self.self_sources.contains(&rx.from) {
                self.counters().bump(C::DroppedSelf);
                return;
            }
            self.route(None, rx.from.ip(), rx.payload, Origin::Datagram, out);
        } else if let Some(i) = self
            .chat
            .as_ref()
            .and_then(|c| c.socks.iter().position(|&s| s == rx.sock))
        {
            self.counters().bump(C::RxOschat);
            self.route_chat(i, rx.payload, out);
        } else {
            self.counters().bump(C::RxMessenger);
            let from = Endpoint::Udp(rx.from);
            self.route(Some(from), rx.from.ip(), rx.payload, Origin::Datagram, out);
        }
    }

    fn event(&mut self, event: &mio::event::Event, out: &mut Out) {
        if event.token() == WAKER {
            return;
        }
        TcpSide::event(self, event, out);
    }

    fn turn_end(&mut self, out: &mut Out) {
        // A WebSocket session's packets are routed like a TCP patron's (sent on as copies).
        while let Some((from, packet)) = self.injected.pop_front() {
            self.counters().bump(C::Received);
            self.counters().bump(C::RxWebsocket);
            let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
            match from {
                // A session on a tcposcrouter bus is a router connection.
                Endpoint::Tcp(c) if c.edge_session().is_some() => {
                    self.route_router(c, ip, &packet);
                }
                _ => self.route(Some(from), ip, &packet, Origin::Stream, out),
            }
        }
        TcpSide::continue_reads(self, out);
    }

    fn busy(&self) -> bool {
        self.tcp.busy() || !self.injected.is_empty()
    }
}

/// Whether `packet` is a message at exactly `address`.
fn is_message(packet: &[u8], address: &[u8]) -> bool {
    matches!(peek(packet), Ok(Peek::Message { address: a, .. }) if a == address)
}

/// What a bundle holds, as far as forwarding cares.
enum BundleCheck {
    Plain,
    Reserved,
    Bad,
}

/// Checks a bundle whole: malformed, carrying a message under `reserved` (a protocol's
/// control prefix) at any depth, or plain.
fn bundle_verdict(payload: &[u8], reserved: &[u8]) -> BundleCheck {
    fn walk(p: Packet<'_>, reserved: &[u8]) -> bool {
        match p {
            Packet::Message(m) => has_prefix(m.address(), reserved),
            Packet::Bundle(b) => b.elements().any(|e| walk(e, reserved)),
        }
    }
    match Packet::new_checked(payload) {
        Ok(p) if walk(p, reserved) => BundleCheck::Reserved,
        Ok(_) => BundleCheck::Plain,
        Err(_) => BundleCheck::Bad,
    }
}

/// Runs one worker until it is told to stop. Builds everything on this thread (an io_uring
/// must be used by the thread that made it).
pub fn run<D: Driver>(mut driver: D, setup: WorkerSetup, shared: Arc<Shared>) -> io::Result<()> {
    if let Some(core) = setup.core {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(
                worker = setup.id,
                core = core.id,
                "could not pin the worker to its core"
            );
        }
    }
    let id = setup.id;
    let mut patron_sock = None;
    let mut group_sock = None;
    let mut group = None;
    let mut self_sources = Vec::new();
    let mut listeners = Vec::new();
    if let Some(m) = setup.messenger {
        patron_sock = Some(driver.add_udp(m.patron_udp)?);
        if let Some(g) = m.group_rx {
            group_sock = Some(driver.add_udp(g)?);
        }
        group = Some(m.group);
        self_sources = m.self_sources;
        if let Some((l, settings)) = m.tcp {
            listeners.push((Door::Messenger, l, settings));
        }
    }
    if let Some(r) = setup.router {
        listeners.push((Door::Router, r.len32, r.settings.clone()));
        listeners.push((Door::Router, r.slip, r.settings));
    }
    let mut chat = None;
    if let Some(c) = setup.chat {
        let mut socks = Vec::with_capacity(c.socks.len());
        let mut broadcast = Vec::with_capacity(c.socks.len());
        for (sock, to) in c.socks {
            socks.push(driver.add_udp(sock)?);
            broadcast.push(to);
        }
        chat = Some(ChatSide {
            socks,
            broadcast,
            dedupe: c.dedupe,
            identity: Vec::with_capacity(256),
            now_ms: shared.epoch.elapsed().as_millis() as u64,
        });
    }
    let registry = driver.registry().try_clone()?;
    let waker = mio::Waker::new(&registry, WAKER)?;
    let link = &shared.workers[usize::from(id)];
    link.mailbox.set_waker(super::bus::Waker::Mio(waker));
    let tcp = TcpSide::new(id, registry, listeners, setup.tcp)?;
    let mut state = State {
        id,
        snap: Some(shared.snapshot.load_full()),
        shared: Arc::clone(&shared),
        patron_sock,
        group_sock,
        group,
        self_sources,
        tcp,
        chat,
        private: Vec::new(),
        stop_seen: false,
        split_rest: Vec::new(),
        split_ctl: Vec::new(),
        wake_control: false,
        wake_edge: false,
        injected: std::collections::VecDeque::new(),
        wake_workers: 0,
    };
    tracing::debug!(worker = id, driver = %driver.kind(), "worker running");
    let mut stopping = false;
    while !stopping {
        driver.turn(Some(TICK), &mut state)?;
        stopping = state.run_mailbox(MAILBOX_BUDGET, &mut |s, p, a| driver.send(s, p, a));
        TcpSide::after_turn(&mut state);
        state.flush_wakes();
    }
    // Last chance for what is queued: shutdown messages above all.
    driver.flush(Duration::from_millis(500));
    state.tcp.flush_all(Duration::from_millis(200));
    Ok(())
}
