//! The OSC Messenger gateway's control protocol as a sans-IO state machine ([`Gateway`]).
//!
//! What it does: admits, keeps alive, expires and removes patrons following the Messenger
//! gateway spec (`/messenger/gateway/me/request|accept|deny|patron|leave|shutdown` and
//! `/messenger/gateway/who/active`, every argument an OSC string), and reports membership
//! changes as [`Action::Admit`] / [`Action::Expel`] so the engine can recompile its route table.
//!
//! What it does not do: forward Messenger traffic (the engine does that from the route table),
//! touch sockets, read a clock, or enumerate interfaces ([`default_allow_list`] takes the
//! interface list as an argument).
//!
//! # Decisions where the spec is silent
//! - **Identity** is the endpoint `E` (UDP source address+port, or a TCP connection), not the
//!   uid. A repeated request from an admitted endpoint is accepted again and changes nothing
//!   else. A request from a *new* endpoint carrying a uid admitted elsewhere means the patron
//!   moved (new ephemeral port, reconnected TCP): the old endpoint is expelled
//!   ([`Reason::Moved`]) and the new one admitted; this never counts against `max_patrons`.
//!   A request from an admitted endpoint with a *different* uid renames it:
//!   `Expel(old uid, Renamed)` then `Admit(new uid)` on the same endpoint.
//! - **Allow list** applies to every request (UDP and TCP). Denials, for being full, not
//!   allowed or shut down, are answered with `deny` as the spec allows; a deny is at most about
//!   1.5 times the request's size, so a forged UDP source gains little amplification.
//! - **Liveness**: any well-formed OSC packet from an admitted endpoint refreshes it, whether
//!   it reaches [`Gateway::handle`] or is reported by [`Gateway::note_traffic`]. A patron is
//!   expelled when `now >= last_heard + timeout_s` (silent for exactly `timeout_s`).
//! - **Keepalive schedule** is per patron, anchored at its admission: `who/active` at
//!   `admitted + k * keepalive_s` (missed ticks are skipped, not bunched). If a `who/active`
//!   is still unanswered `keepalive_s / 2` later it is sent once more: over lossy UDP this
//!   makes a spurious expiry need five losses in a row instead of two. Patrons answer extra
//!   `who/active`s like any other.
//! - **Malformed input** (not OSC, wrong argument count or types, empty or over-long uid) is
//!   counted and otherwise ignored; bundles and unknown `/messenger/gateway/...` addresses are
//!   counted as `unknown`. `patron`/`leave` whose uid is not the endpoint's are counted as
//!   `ignored`.
//! - **Bounded output**: at most `2 * max_patrons + 256` `Send` actions wait in the queue; more
//!   are dropped and counted (`sends_dropped`), so an engine that stops draining cannot make
//!   memory grow. `Admit`/`Expel` are never dropped.

use core::fmt;
use core::hash::Hash;
use core::net::Ipv4Addr;
use core::time::Duration;
use std::collections::{HashMap, VecDeque};

use super::{encode, str_args};
use crate::config::{Cidr, Messenger};
use crate::wire::Packet;

/// Prefix of every gateway control address.
pub const GATEWAY_PREFIX: &[u8] = b"/messenger/gateway";
/// Patron -> gateway: `,s patron_uid`.
pub const REQUEST: &[u8] = b"/messenger/gateway/me/request";
/// Gateway -> patron: `,ss gateway_uid patron_uid`.
pub const ACCEPT: &[u8] = b"/messenger/gateway/me/accept";
/// Gateway -> patron: `,ss gateway_uid patron_uid`.
pub const DENY: &[u8] = b"/messenger/gateway/me/deny";
/// Gateway -> patron: `,s gateway_uid`.
pub const WHO_ACTIVE: &[u8] = b"/messenger/gateway/who/active";
/// Patron -> gateway, the keepalive answer: `,s patron_uid`.
pub const PATRON: &[u8] = b"/messenger/gateway/me/patron";
/// Patron -> gateway: `,s patron_uid`.
pub const LEAVE: &[u8] = b"/messenger/gateway/me/leave";
/// Gateway -> patron: `,s gateway_uid`.
pub const SHUTDOWN: &[u8] = b"/messenger/gateway/me/shutdown";

/// The loopback network, always part of the default allow list.
pub const LOOPBACK: Cidr = Cidr {
    addr: Ipv4Addr::new(127, 0, 0, 0),
    prefix: 8,
};

/// The default allow list: loopback plus the network of each of the host's interfaces.
///
/// Pure: the caller enumerates interfaces (for example with `if-addrs`) and passes each IPv4
/// address with its prefix length; host bits are cleared, prefixes above 32 are clamped, and
/// duplicates dropped (order kept, loopback first).
pub fn default_allow_list<I>(interfaces: I) -> Vec<Cidr>
where
    I: IntoIterator<Item = (Ipv4Addr, u8)>,
{
    let mut out = vec![LOOPBACK];
    for (addr, prefix) in interfaces {
        let prefix = prefix.min(32);
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let net = Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        };
        if !out.contains(&net) {
            out.push(net);
        }
    }
    out
}

/// The allow list a gateway should use: the configured one, or else [`default_allow_list`]
/// of `interfaces`.
pub fn resolve_allow_list<I>(cfg: &Messenger, interfaces: I) -> Vec<Cidr>
where
    I: IntoIterator<Item = (Ipv4Addr, u8)>,
{
    match &cfg.allow {
        Some(list) => list.clone(),
        None => default_allow_list(interfaces),
    }
}

/// Why a patron stopped being one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// It sent `/messenger/gateway/me/leave` with its uid.
    Left,
    /// Silent for `timeout_s`.
    Expired,
    /// The engine reported its TCP connection closed.
    Closed,
    /// The same uid was admitted from another endpoint.
    Moved,
    /// The endpoint asked again under another uid; it is admitted again at once.
    Renamed,
    /// The gateway shut down (a `shutdown` message was queued to it first).
    Shutdown,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Left => "left",
            Self::Expired => "silent for the timeout",
            Self::Closed => "connection closed",
            Self::Moved => "uid admitted from another endpoint",
            Self::Renamed => "endpoint re-requested under another uid",
            Self::Shutdown => "gateway shut down",
        })
    }
}

/// What the engine must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<E> {
    /// Send one OSC packet to an endpoint (framed for TCP by the engine).
    Send { to: E, packet: Vec<u8> },
    /// `endpoint` is now a patron: add it to the forwarding destinations.
    Admit { endpoint: E, uid: String },
    /// `endpoint` is no longer a patron: remove it from the destinations. A `Send` to the same
    /// endpoint queued before this action must still be delivered (shutdown relies on it).
    Expel {
        endpoint: E,
        uid: String,
        reason: Reason,
    },
}

/// Event counters; they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets given to [`Gateway::handle`].
    pub packets: u64,
    /// Well-formed `request`s.
    pub requests: u64,
    /// `accept` replies sent (first admissions and repeats).
    pub accepted: u64,
    /// New admissions (endpoints that were not patrons).
    pub admitted: u64,
    pub denied_full: u64,
    pub denied_not_allowed: u64,
    /// Requests after [`Gateway::shutdown`].
    pub denied_shutdown: u64,
    /// Not OSC, or a gateway message with the wrong arguments.
    pub malformed: u64,
    /// Bundles, and `/messenger/gateway/...` addresses a gateway does not take.
    pub unknown: u64,
    /// Well-formed `patron`/`leave` that do not match an admitted endpoint and its uid.
    pub ignored: u64,
    /// Well-formed `patron` keepalive answers from admitted endpoints with their uid.
    pub keepalive_replies: u64,
    /// Scheduled `who/active` sends.
    pub keepalives_sent: u64,
    /// Repeated `who/active` after an unanswered one.
    pub keepalive_retries: u64,
    pub expired: u64,
    pub left: u64,
    pub closed: u64,
    pub moved: u64,
    pub renamed: u64,
    pub shutdown_sent: u64,
    /// `Send` actions dropped because the queue was at its bound.
    pub sends_dropped: u64,
}

/// A read-only view of one patron.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatronInfo<'a, E> {
    pub endpoint: E,
    pub uid: &'a str,
    pub source_ip: Ipv4Addr,
    pub admitted_at: Duration,
    pub last_heard: Duration,
}

#[derive(Debug)]
struct Entry<E> {
    endpoint: E,
    uid: Box<str>,
    ip: Ipv4Addr,
    admitted_at: Duration,
    last_heard: Duration,
    /// When the next scheduled `who/active` is due.
    next_keepalive: Duration,
    /// When the last scheduled `who/active` went out.
    asked_at: Option<Duration>,
    /// Whether that one has already been repeated.
    retried: bool,
}

/// The gateway side of OSC Messenger for many patrons, sans IO.
///
/// `E` is the engine's endpoint id: one per UDP source address+port or per TCP connection.
/// `now` is a [`Duration`] since the caller's epoch (see [`super`]).
///
/// # How to drive it
/// 1. For each `/messenger/gateway/...` packet from a unicast endpoint, call [`handle`]. For
///    other traffic from a patron, call [`note_traffic`] (at most once per endpoint per receive
///    batch is enough, with the batch's `now`); for a closed TCP connection, call
///    [`endpoint_closed`].
/// 2. When the time returned by [`poll_timeout`] has come, call [`handle_timeout`] with the
///    current time; calling it early or often is harmless.
/// 3. After every call above, drain [`poll_action`] until `None` and carry the actions out in
///    order (sends, then route-table changes as they come), then ask [`poll_timeout`] again,
///    since every input may move the next deadline.
/// 4. On exit call [`shutdown`], drain the actions (a `shutdown` send then an `Expel` per
///    patron) and flush the sends before closing.
///
/// [`handle`]: Self::handle
/// [`note_traffic`]: Self::note_traffic
/// [`endpoint_closed`]: Self::endpoint_closed
/// [`poll_timeout`]: Self::poll_timeout
/// [`handle_timeout`]: Self::handle_timeout
/// [`poll_action`]: Self::poll_action
/// [`shutdown`]: Self::shutdown
#[derive(Debug)]
pub struct Gateway<E> {
    uid: String,
    allow: Vec<Cidr>,
    max_patrons: usize,
    keepalive: Duration,
    timeout: Duration,
    /// Patrons in admission order (removal swaps the last one in).
    entries: Vec<Entry<E>>,
    by_endpoint: HashMap<E, usize>,
    by_uid: HashMap<Box<str>, E>,
    actions: VecDeque<Action<E>>,
    queued_sends: usize,
    max_queued_sends: usize,
    who_active: Vec<u8>,
    shutdown_packet: Vec<u8>,
    shut_down: bool,
    counters: Counters,
}

impl<E: Copy + Eq + Hash + fmt::Debug> Gateway<E> {
    /// A gateway with `cfg`'s `max_patrons`, `keepalive_s` and `timeout_s` (each timer at least
    /// one second), the resolved `uid` (NUL bytes are removed) and the resolved `allow` list
    /// (see [`resolve_allow_list`]; an empty list admits nobody).
    pub fn new(cfg: &Messenger, uid: impl Into<String>, allow: Vec<Cidr>) -> Self {
        let uid: String = uid.into().chars().filter(|&c| c != '\0').collect();
        Self {
            who_active: encode(WHO_ACTIVE, &[&uid]),
            shutdown_packet: encode(SHUTDOWN, &[&uid]),
            uid,
            allow,
            max_patrons: cfg.max_patrons,
            keepalive: Duration::from_secs(cfg.keepalive_s.max(1)),
            timeout: Duration::from_secs(cfg.timeout_s.max(1)),
            entries: Vec::new(),
            by_endpoint: HashMap::new(),
            by_uid: HashMap::new(),
            actions: VecDeque::new(),
            queued_sends: 0,
            max_queued_sends: cfg.max_patrons.min(1 << 20).saturating_mul(2) + 256,
            shut_down: false,
            counters: Counters::default(),
        }
    }

    /// The gateway's uid, as sent in `accept`, `deny`, `who/active` and `shutdown`.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Handles one control packet from `from`, whose IPv4 source address is `source_ip`.
    /// Never panics, whatever the bytes.
    pub fn handle(&mut self, now: Duration, from: E, source_ip: Ipv4Addr, packet: &[u8]) {
        self.counters.packets += 1;
        let msg = match Packet::new_checked(packet) {
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
            Ok(Packet::Bundle(_)) => {
                self.refresh(now, from);
                self.counters.unknown += 1;
                return;
            }
            Ok(Packet::Message(m)) => m,
        };
        self.refresh(now, from);
        let address = msg.address();
        if address == REQUEST {
            match str_args::<1>(&msg) {
                Some([uid]) => self.on_request(now, from, source_ip, uid),
                None => self.counters.malformed += 1,
            }
        } else if address == PATRON || address == LEAVE {
            let Some([uid]) = str_args::<1>(&msg) else {
                self.counters.malformed += 1;
                return;
            };
            let idx = match self.by_endpoint.get(&from) {
                Some(&i) if *self.entries[i].uid == *uid => i,
                _ => {
                    self.counters.ignored += 1;
                    return;
                }
            };
            if address == PATRON {
                self.counters.keepalive_replies += 1;
            } else {
                self.counters.left += 1;
                self.remove_at(idx, Reason::Left);
            }
        } else {
            self.counters.unknown += 1;
        }
    }

    /// Reports traffic other than gateway control from `from`: if it is a patron, this
    /// refreshes its liveness. Cheap (one hash lookup); calling it once per endpoint per
    /// receive batch is enough. Returns whether `from` is a patron.
    pub fn note_traffic(&mut self, now: Duration, from: E) -> bool {
        self.refresh(now, from)
    }

    /// Sends due keepalives and expels patrons silent for `timeout_s`.
    pub fn handle_timeout(&mut self, now: Duration) {
        let half = self.keepalive / 2;
        let mut i = 0;
        while i < self.entries.len() {
            let e = &mut self.entries[i];
            if now >= e.last_heard.saturating_add(self.timeout) {
                self.counters.expired += 1;
                self.remove_at(i, Reason::Expired);
                continue;
            }
            let to = e.endpoint;
            if now >= e.next_keepalive {
                e.next_keepalive = next_tick(e.next_keepalive, now, self.keepalive);
                e.asked_at = Some(now);
                e.retried = false;
                self.counters.keepalives_sent += 1;
                let packet = self.who_active.clone();
                self.push_send(to, packet);
            } else if retry_due(e, half).is_some_and(|at| now >= at) {
                e.retried = true;
                self.counters.keepalive_retries += 1;
                let packet = self.who_active.clone();
                self.push_send(to, packet);
            }
            i += 1;
        }
    }

    /// Queues `/messenger/gateway/me/shutdown` to every patron, each followed by its `Expel`,
    /// and denies every later request. `now` is accepted for symmetry with the other inputs.
    pub fn shutdown(&mut self, _now: Duration) {
        self.shut_down = true;
        while let Some(last) = self.entries.len().checked_sub(1) {
            let to = self.entries[last].endpoint;
            let packet = self.shutdown_packet.clone();
            self.counters.shutdown_sent += 1;
            self.push_send(to, packet);
            self.remove_at(last, Reason::Shutdown);
        }
    }

    /// The engine closed (or lost) endpoint `e`, a TCP connection: if it was a patron, it is
    /// expelled. Returns whether it was one.
    pub fn endpoint_closed(&mut self, e: E) -> bool {
        match self.by_endpoint.get(&e) {
            Some(&i) => {
                self.counters.closed += 1;
                self.remove_at(i, Reason::Closed);
                true
            }
            None => false,
        }
    }

    /// The next action to carry out, in order; `None` when there is nothing left.
    pub fn poll_action(&mut self) -> Option<Action<E>> {
        let a = self.actions.pop_front()?;
        if matches!(a, Action::Send { .. }) {
            self.queued_sends -= 1;
        }
        Some(a)
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run: the earliest keepalive,
    /// keepalive repeat or expiry among the patrons; `None` with no patrons. After
    /// `handle_timeout(now)` it is always later than `now`. Costs one pass over the patrons.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let half = self.keepalive / 2;
        self.entries
            .iter()
            .map(|e| {
                let expiry = e.last_heard.saturating_add(self.timeout);
                let t = expiry.min(e.next_keepalive);
                retry_due(e, half).map_or(t, |r| t.min(r))
            })
            .min()
    }

    /// The current patrons, in no particular order.
    pub fn patrons(&self) -> impl Iterator<Item = PatronInfo<'_, E>> + '_ {
        self.entries.iter().map(|e| PatronInfo {
            endpoint: e.endpoint,
            uid: &e.uid,
            source_ip: e.ip,
            admitted_at: e.admitted_at,
            last_heard: e.last_heard,
        })
    }

    /// Whether `e` is a patron.
    pub fn is_patron(&self, e: E) -> bool {
        self.by_endpoint.contains_key(&e)
    }

    /// The number of patrons.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True with no patrons.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn allowed(&self, ip: Ipv4Addr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }

    fn refresh(&mut self, now: Duration, from: E) -> bool {
        match self.by_endpoint.get(&from) {
            Some(&i) => {
                let e = &mut self.entries[i];
                e.last_heard = e.last_heard.max(now);
                true
            }
            None => false,
        }
    }

    fn on_request(&mut self, now: Duration, from: E, ip: Ipv4Addr, uid: &str) {
        self.counters.requests += 1;
        if self.shut_down {
            self.counters.denied_shutdown += 1;
            return self.reply(DENY, from, uid);
        }
        if !self.allowed(ip) {
            self.counters.denied_not_allowed += 1;
            return self.reply(DENY, from, uid);
        }
        // The endpoint that holds this uid now, if another one.
        let holder = self.by_uid.get(uid).copied().filter(|&h| h != from);
        if let Some(&idx) = self.by_endpoint.get(&from) {
            if *self.entries[idx].uid != *uid {
                if let Some(h) = holder {
                    self.expel_endpoint(h, Reason::Moved);
                }
                self.counters.renamed += 1;
                self.rename(from, uid);
            }
            return self.reply(ACCEPT, from, uid);
        }
        if holder.is_none() && self.entries.len() >= self.max_patrons {
            self.counters.denied_full += 1;
            return self.reply(DENY, from, uid);
        }
        if let Some(h) = holder {
            self.expel_endpoint(h, Reason::Moved);
        }
        self.counters.admitted += 1;
        self.by_endpoint.insert(from, self.entries.len());
        self.by_uid.insert(uid.into(), from);
        self.entries.push(Entry {
            endpoint: from,
            uid: uid.into(),
            ip,
            admitted_at: now,
            last_heard: now,
            next_keepalive: now.saturating_add(self.keepalive),
            asked_at: None,
            retried: false,
        });
        self.actions.push_back(Action::Admit {
            endpoint: from,
            uid: uid.to_owned(),
        });
        self.reply(ACCEPT, from, uid);
    }

    /// Gives the admitted endpoint `from` a new uid, reporting it as expel + admit.
    fn rename(&mut self, from: E, uid: &str) {
        let Some(&idx) = self.by_endpoint.get(&from) else {
            return;
        };
        let old = core::mem::replace(&mut self.entries[idx].uid, uid.into());
        if self.by_uid.get(&old) == Some(&from) {
            self.by_uid.remove(&old);
        }
        self.by_uid.insert(uid.into(), from);
        self.actions.push_back(Action::Expel {
            endpoint: from,
            uid: old.into(),
            reason: Reason::Renamed,
        });
        self.actions.push_back(Action::Admit {
            endpoint: from,
            uid: uid.to_owned(),
        });
    }

    fn expel_endpoint(&mut self, e: E, reason: Reason) {
        if let Some(&i) = self.by_endpoint.get(&e) {
            if reason == Reason::Moved {
                self.counters.moved += 1;
            }
            self.remove_at(i, reason);
        }
    }

    /// `accept` or `deny` with the gateway's and the patron's uid.
    fn reply(&mut self, address: &[u8], to: E, patron_uid: &str) {
        if address == ACCEPT {
            self.counters.accepted += 1;
        }
        let packet = encode(address, &[&self.uid, patron_uid]);
        self.push_send(to, packet);
    }

    fn push_send(&mut self, to: E, packet: Vec<u8>) {
        if packet.is_empty() {
            return;
        }
        if self.queued_sends >= self.max_queued_sends {
            self.counters.sends_dropped += 1;
            return;
        }
        self.queued_sends += 1;
        self.actions.push_back(Action::Send { to, packet });
    }

    /// Removes entry `idx` (swapping the last one into its place) and queues its `Expel`.
    fn remove_at(&mut self, idx: usize, reason: Reason) {
        if idx >= self.entries.len() {
            return;
        }
        let e = self.entries.swap_remove(idx);
        if let Some(moved) = self.entries.get(idx) {
            self.by_endpoint.insert(moved.endpoint, idx);
        }
        self.by_endpoint.remove(&e.endpoint);
        if self.by_uid.get(&e.uid) == Some(&e.endpoint) {
            self.by_uid.remove(&e.uid);
        }
        self.actions.push_back(Action::Expel {
            endpoint: e.endpoint,
            uid: e.uid.into(),
            reason,
        });
    }
}

/// When an unanswered `who/active` should be repeated, if one should.
fn retry_due<E>(e: &Entry<E>, half: Duration) -> Option<Duration> {
    let asked = e.asked_at?;
    (!e.retried && e.last_heard < asked).then(|| asked.saturating_add(half))
}

/// The first tick `due + k * interval` (k >= 1) later than `now`, for `due <= now`.
fn next_tick(due: Duration, now: Duration, interval: Duration) -> Duration {
    let behind = now.saturating_sub(due).as_nanos();
    let steps = behind / interval.as_nanos().max(1) + 1;
    u32::try_from(steps)
        .ok()
        .and_then(|s| interval.checked_mul(s))
        .and_then(|d| due.checked_add(d))
        .unwrap_or_else(|| now.saturating_add(interval))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{write_message, Arg};
    use proptest::prelude::*;

    const GW: &str = "11111111-2222-3333-4444-555555555555";
    const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

    fn uid(n: usize) -> String {
        format!("{n:08X}-0000-4000-8000-000000000000")
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn gateway(max_patrons: usize) -> Gateway<u32> {
        let cfg = Messenger {
            max_patrons,
            ..Messenger::default()
        };
        Gateway::new(&cfg, GW, vec![LOOPBACK])
    }

    fn drain(g: &mut Gateway<u32>) -> Vec<Action<u32>> {
        core::iter::from_fn(|| g.poll_action()).collect()
    }

    /// Decodes with rosc, an independent implementation: (address, string arguments).
    fn decode(packet: &[u8]) -> (String, Vec<String>) {
        let (rest, p) = rosc::decoder::decode_udp(packet).expect("valid OSC");
        assert!(rest.is_empty());
        let rosc::OscPacket::Message(m) = p else {
            panic!("expected a message")
        };
        let args = m
            .args
            .into_iter()
            .map(|a| match a {
                rosc::OscType::String(s) => s,
                other => panic!("non-string argument {other:?}"),
            })
            .collect();
        (m.addr, args)
    }

    fn send(to: u32, address: &str, args: &[&str]) -> Action<u32> {
        Action::Send {
            to,
            packet: encode(address.as_bytes(), args),
        }
    }

    fn admit(endpoint: u32, uid: &str) -> Action<u32> {
        Action::Admit {
            endpoint,
            uid: uid.into(),
        }
    }

    fn expel(endpoint: u32, uid: &str, reason: Reason) -> Action<u32> {
        Action::Expel {
            endpoint,
            uid: uid.into(),
            reason,
        }
    }

    fn request(g: &mut Gateway<u32>, now: Duration, ep: u32, uid: &str) -> Vec<Action<u32>> {
        g.handle(now, ep, LO, &encode(REQUEST, &[uid]));
        drain(g)
    }

    /// The internal maps agree with the entry list and the send count with the queue.
    fn check_invariants(g: &Gateway<u32>) {
        assert_eq!(g.by_endpoint.len(), g.entries.len());
        assert_eq!(g.by_uid.len(), g.entries.len());
        for (i, e) in g.entries.iter().enumerate() {
            assert_eq!(g.by_endpoint.get(&e.endpoint), Some(&i));
            assert_eq!(g.by_uid.get(&e.uid), Some(&e.endpoint));
        }
        assert!(g.entries.len() <= g.max_patrons);
        let sends = g
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Send { .. }))
            .count();
        assert_eq!(sends, g.queued_sends);
        assert!(g.queued_sends <= g.max_queued_sends);
    }

    #[test]
    fn request_is_accepted_with_both_uids() {
        let mut g = gateway(10);
        let u = uid(1);
        let acts = request(&mut g, secs(1), 7, &u);
        assert_eq!(
            acts,
            [
                admit(7, &u),
                send(7, "/messenger/gateway/me/accept", &[GW, &u])
            ]
        );
        let Action::Send { packet, .. } = &acts[1] else {
            unreachable!()
        };
        assert_eq!(
            decode(packet),
            (
                "/messenger/gateway/me/accept".into(),
                vec![GW.into(), u.clone()]
            )
        );
        assert!(g.is_patron(7));
        let p: Vec<_> = g.patrons().collect();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].endpoint, p[0].uid, p[0].source_ip), (7, &*u, LO));
        assert_eq!(p[0].admitted_at, secs(1));
        let c = g.counters();
        assert_eq!((c.requests, c.accepted, c.admitted), (1, 1, 1));
        check_invariants(&g);
    }

    #[test]
    fn request_is_denied_when_full() {
        let mut g = gateway(2);
        request(&mut g, secs(0), 1, &uid(1));
        request(&mut g, secs(0), 2, &uid(2));
        let u3 = uid(3);
        let acts = request(&mut g, secs(0), 3, &u3);
        assert_eq!(acts, [send(3, "/messenger/gateway/me/deny", &[GW, &u3])]);
        let Action::Send { packet, .. } = &acts[0] else {
            unreachable!()
        };
        assert_eq!(
            decode(packet),
            ("/messenger/gateway/me/deny".into(), vec![GW.into(), u3])
        );
        assert_eq!(g.len(), 2);
        assert!(!g.is_patron(3));
        assert_eq!(g.counters().denied_full, 1);
        // A patron leaving frees the place.
        g.handle(secs(1), 1, LO, &encode(LEAVE, &[&uid(1)]));
        drain(&mut g);
        assert_eq!(request(&mut g, secs(1), 3, &uid(3))[0], admit(3, &uid(3)));
        check_invariants(&g);
    }

    #[test]
    fn zero_max_patrons_denies_everyone() {
        let mut g = gateway(0);
        let acts = request(&mut g, secs(0), 1, &uid(1));
        assert_eq!(
            acts,
            [send(1, "/messenger/gateway/me/deny", &[GW, &uid(1)])]
        );
        assert!(g.is_empty());
    }

    #[test]
    fn request_from_outside_the_allow_list_is_denied() {
        let mut g = gateway(10);
        let u = uid(1);
        g.handle(
            secs(0),
            1,
            Ipv4Addr::new(10, 0, 0, 1),
            &encode(REQUEST, &[&u]),
        );
        assert_eq!(
            drain(&mut g),
            [send(1, "/messenger/gateway/me/deny", &[GW, &u])]
        );
        assert_eq!(g.counters().denied_not_allowed, 1);
        assert!(g.is_empty());

        let cfg = Messenger::default();
        let mut g = Gateway::new(&cfg, GW, vec!["10.0.0.0/8".parse().unwrap()]);
        g.handle(
            secs(0),
            1,
            Ipv4Addr::new(10, 9, 8, 7),
            &encode(REQUEST, &[&u]),
        );
        assert!(g.is_patron(1));
        g.handle(secs(0), 2, LO, &encode(REQUEST, &[&uid(2)]));
        assert!(!g.is_patron(2), "loopback is not in an explicit list");

        let mut g: Gateway<u32> = Gateway::new(&cfg, GW, Vec::new());
        g.handle(secs(0), 1, LO, &encode(REQUEST, &[&u]));
        assert!(g.is_empty(), "an empty allow list admits nobody");
    }

    #[test]
    fn repeated_request_is_accepted_again_not_duplicated() {
        let mut g = gateway(1);
        let u = uid(1);
        request(&mut g, secs(0), 1, &u);
        // At capacity, and still accepted again.
        let acts = request(&mut g, secs(5), 1, &u);
        assert_eq!(acts, [send(1, "/messenger/gateway/me/accept", &[GW, &u])]);
        assert_eq!(g.len(), 1);
        let c = g.counters();
        assert_eq!(
            (c.requests, c.accepted, c.admitted, c.denied_full),
            (2, 2, 1, 0)
        );
        // It refreshed liveness, and kept the admission-anchored schedule.
        let p = g.patrons().next().unwrap();
        assert_eq!((p.admitted_at, p.last_heard), (secs(0), secs(5)));
        assert_eq!(g.poll_timeout(), Some(secs(10)));
        check_invariants(&g);
    }

    #[test]
    fn same_uid_from_a_new_endpoint_moves_the_patron() {
        let mut g = gateway(1);
        let u = uid(1);
        request(&mut g, secs(0), 1, &u);
        let acts = request(&mut g, secs(1), 2, &u);
        assert_eq!(
            acts,
            [
                expel(1, &u, Reason::Moved),
                admit(2, &u),
                send(2, "/messenger/gateway/me/accept", &[GW, &u]),
            ]
        );
        assert!(!g.is_patron(1) && g.is_patron(2));
        assert_eq!(g.counters().moved, 1);
        // The old endpoint's keepalive answers no longer count.
        g.handle(secs(2), 1, LO, &encode(PATRON, &[&u]));
        assert_eq!(g.counters().ignored, 1);
        check_invariants(&g);
    }

    #[test]
    fn new_uid_from_an_admitted_endpoint_renames_it() {
        let mut g = gateway(2);
        let (a, b) = (uid(1), uid(2));
        request(&mut g, secs(0), 1, &a);
        request(&mut g, secs(0), 2, &b);
        // Endpoint 1 now claims uid b, which endpoint 2 holds: 2 is expelled as moved.
        let acts = request(&mut g, secs(1), 1, &b);
        assert_eq!(
            acts,
            [
                expel(2, &b, Reason::Moved),
                expel(1, &a, Reason::Renamed),
                admit(1, &b),
                send(1, "/messenger/gateway/me/accept", &[GW, &b]),
            ]
        );
        assert_eq!(g.len(), 1);
        assert_eq!(g.patrons().next().unwrap().uid, b);
        g.handle(secs(2), 1, LO, &encode(LEAVE, &[&a]));
        assert!(g.is_patron(1), "leave under the old uid is ignored");
        check_invariants(&g);
    }

    /// Actions other than `who/active` sends, with the time they were emitted.
    type Timeline = Vec<(Duration, Action<u32>)>;

    /// Drives `g` from timer to timer until `end`, letting `answer` decide per
    /// `(endpoint, time)` whether a patron answers a `who/active` at once. Returns the
    /// `who/active` sends and every other action, with their times.
    fn run(
        g: &mut Gateway<u32>,
        end: Duration,
        mut answer: impl FnMut(u32, Duration) -> bool,
    ) -> (Vec<(u32, Duration)>, Timeline) {
        let mut asks = Vec::new();
        let mut other = Vec::new();
        let mut last = Duration::ZERO;
        while let Some(t) = g.poll_timeout().filter(|&t| t <= end) {
            assert!(t >= last, "deadline went backwards");
            last = t;
            g.handle_timeout(t);
            for a in drain(g) {
                match a {
                    Action::Send { to, packet } if decode(&packet).0.ends_with("who/active") => {
                        assert_eq!(decode(&packet).1, [GW]);
                        asks.push((to, t));
                        if answer(to, t) {
                            let u = g.entries[g.by_endpoint[&to]].uid.to_string();
                            g.handle(t, to, LO, &encode(PATRON, &[&u]));
                        }
                    }
                    a => other.push((t, a)),
                }
            }
            if let Some(next) = g.poll_timeout() {
                assert!(next > t, "deadline {next:?} not after {t:?}");
            }
        }
        (asks, other)
    }

    #[test]
    fn keepalive_every_interval_to_each_patron_from_its_admission() {
        let mut g = gateway(10);
        request(&mut g, secs(0), 1, &uid(1));
        request(&mut g, secs(3), 2, &uid(2));
        let (asks, other) = run(&mut g, secs(60), |_, _| true);
        let times = |ep| -> Vec<u64> {
            asks.iter()
                .filter(|(e, _)| *e == ep)
                .map(|(_, t)| t.as_secs())
                .collect()
        };
        assert_eq!(times(1), [10, 20, 30, 40, 50, 60]);
        assert_eq!(times(2), [13, 23, 33, 43, 53]);
        assert!(other.is_empty(), "nobody expired: {other:?}");
        assert_eq!(g.counters().keepalive_retries, 0);
        assert_eq!(g.counters().keepalive_replies, 11);
    }

    #[test]
    fn missed_ticks_are_skipped_not_bunched() {
        assert_eq!(next_tick(secs(10), secs(10), secs(10)), secs(20));
        assert_eq!(next_tick(secs(10), secs(35), secs(10)), secs(40));
        assert_eq!(next_tick(secs(10), secs(40), secs(10)), secs(50));
        let mut g = gateway(10);
        request(&mut g, secs(0), 1, &uid(1));
        g.note_traffic(secs(25), 1);
        g.handle_timeout(secs(25));
        assert_eq!(
            drain(&mut g).len(),
            1,
            "one who/active for three missed ticks"
        );
        assert_eq!(g.counters().keepalives_sent, 1);
    }

    #[test]
    fn silent_patron_expires_at_timeout_not_before() {
        let mut g = gateway(10);
        let u = uid(1);
        request(&mut g, secs(0), 1, &u);
        // Unanswered who/active at 10 and 20, each repeated 5 s later.
        let (asks, other) = run(&mut g, ms(29_900), |_, _| false);
        let t: Vec<u64> = asks.iter().map(|(_, t)| t.as_secs()).collect();
        assert_eq!(t, [10, 15, 20, 25]);
        assert!(other.is_empty());
        g.handle_timeout(ms(29_900));
        assert!(g.is_patron(1), "not expired at 29.9 s");
        assert_eq!(g.poll_timeout(), Some(secs(30)));
        g.handle_timeout(secs(30));
        assert_eq!(drain(&mut g), [expel(1, &u, Reason::Expired)]);
        assert!(g.is_empty());
        assert_eq!(g.counters().expired, 1);
        assert_eq!(g.poll_timeout(), None);
    }

    #[test]
    fn keepalive_answer_refreshes_liveness() {
        let mut g = gateway(10);
        let u = uid(1);
        request(&mut g, secs(0), 1, &u);
        // Answers only the who/active at 20 s.
        let (_, other) = run(&mut g, secs(49), |_, t| t == secs(20));
        assert!(other.is_empty(), "refreshed at 20 s: {other:?}");
        assert_eq!(g.counters().keepalive_replies, 1);
        let (_, other) = run(&mut g, secs(60), |_, _| false);
        assert_eq!(other, [(secs(50), expel(1, &u, Reason::Expired))]);
    }

    #[test]
    fn other_traffic_refreshes_liveness() {
        let mut g = gateway(10);
        let u = uid(1);
        request(&mut g, secs(0), 1, &u);
        assert!(g.note_traffic(secs(12), 1));
        assert!(!g.note_traffic(secs(12), 99), "not a patron");
        g.handle_timeout(secs(41));
        assert!(g.is_patron(1));
        // A time that goes backwards does not move last_heard back.
        g.note_traffic(secs(5), 1);
        g.handle_timeout(ms(41_999));
        assert!(g.is_patron(1));
        g.handle_timeout(secs(42));
        assert!(!g.is_patron(1));
    }

    #[test]
    fn unanswered_keepalive_is_repeated_once_after_half_an_interval() {
        let mut g = gateway(10);
        request(&mut g, secs(0), 1, &uid(1));
        request(&mut g, secs(0), 2, &uid(2));
        g.handle_timeout(secs(10));
        assert_eq!(drain(&mut g).len(), 2);
        g.handle(secs(11), 1, LO, &encode(PATRON, &[&uid(1)]));
        assert_eq!(g.poll_timeout(), Some(secs(15)));
        g.handle_timeout(secs(15));
        let acts = drain(&mut g);
        assert_eq!(acts, [send(2, "/messenger/gateway/who/active", &[GW])]);
        g.handle_timeout(secs(19));
        assert!(drain(&mut g).is_empty(), "repeated only once");
        assert_eq!(g.counters().keepalive_retries, 1);
    }

    #[test]
    fn leave_removes_at_once() {
        let mut g = gateway(10);
        let u = uid(1);
        request(&mut g, secs(0), 1, &u);
        request(&mut g, secs(0), 2, &uid(2));
        g.handle(secs(3), 1, LO, &encode(LEAVE, &[&u]));
        assert_eq!(drain(&mut g), [expel(1, &u, Reason::Left)]);
        assert!(!g.is_patron(1) && g.is_patron(2));
        assert_eq!(g.counters().left, 1);
        check_invariants(&g);
        g.handle(secs(3), 2, LO, &encode(LEAVE, &[&uid(2)]));
        drain(&mut g);
        assert_eq!(g.poll_timeout(), None);
    }

    #[test]
    fn leave_with_wrong_uid_or_from_a_stranger_is_ignored() {
        let mut g = gateway(10);
        let u = uid(1);
        request(&mut g, secs(0), 1, &u);
        g.handle(secs(1), 1, LO, &encode(LEAVE, &[&uid(2)]));
        g.handle(secs(1), 2, LO, &encode(LEAVE, &[&u]));
        g.handle(secs(1), 2, LO, &encode(PATRON, &[&u]));
        assert!(drain(&mut g).is_empty());
        assert!(g.is_patron(1));
        assert_eq!(g.counters().ignored, 3);
        assert_eq!(g.counters().left, 0);
    }

    #[test]
    fn shutdown_tells_every_patron_then_expels_it() {
        let mut g = gateway(10);
        for ep in 1..=3 {
            request(&mut g, secs(0), ep, &uid(ep as usize));
        }
        g.shutdown(secs(5));
        let acts = drain(&mut g);
        assert_eq!(acts.len(), 6);
        let mut told = Vec::new();
        for pair in acts.chunks(2) {
            let Action::Send { to, packet } = &pair[0] else {
                panic!("send first: {pair:?}")
            };
            assert_eq!(
                decode(packet),
                ("/messenger/gateway/me/shutdown".into(), vec![GW.into()])
            );
            assert_eq!(pair[1], expel(*to, &uid(*to as usize), Reason::Shutdown));
            told.push(*to);
        }
        told.sort_unstable();
        assert_eq!(told, [1, 2, 3]);
        assert!(g.is_empty());
        assert_eq!(g.counters().shutdown_sent, 3);
        assert_eq!(g.poll_timeout(), None);
        let acts = request(&mut g, secs(6), 4, &uid(4));
        assert_eq!(
            acts,
            [send(4, "/messenger/gateway/me/deny", &[GW, &uid(4)])]
        );
        assert_eq!(g.counters().denied_shutdown, 1);
    }

    #[test]
    fn closed_endpoint_is_expelled() {
        let mut g = gateway(10);
        let u = uid(1);
        request(&mut g, secs(0), 1, &u);
        assert!(!g.endpoint_closed(2));
        assert!(drain(&mut g).is_empty());
        assert!(g.endpoint_closed(1));
        assert_eq!(drain(&mut g), [expel(1, &u, Reason::Closed)]);
        assert!(!g.endpoint_closed(1));
        assert_eq!(g.counters().closed, 1);
    }

    #[test]
    fn malformed_and_unknown_input_is_counted_and_ignored() {
        let mut g = gateway(10);
        let msg = |addr: &[u8], args: &[Arg<'_>]| {
            let mut v = Vec::new();
            write_message(&mut v, addr, args).unwrap();
            v
        };
        let malformed: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"garbage!".to_vec(),
            b"/messenger/gateway/me/request\0\0\0".to_vec(),
            msg(REQUEST, &[]),
            msg(REQUEST, &[Arg::Int(1)]),
            msg(REQUEST, &[Arg::str("a"), Arg::str("b")]),
            msg(REQUEST, &[Arg::str("")]),
            msg(REQUEST, &[Arg::Symbol(b"sym")]),
            msg(REQUEST, &[Arg::Str(&[0xff])]),
            msg(REQUEST, &[Arg::str(&"A".repeat(200))]),
            msg(PATRON, &[Arg::Float(1.0)]),
            msg(LEAVE, &[]),
            b"#bundle\0\0\0\0\0\0\0\0\x01\0\0\0\x08".to_vec(),
        ];
        for p in &malformed {
            g.handle(secs(0), 1, LO, p);
        }
        let unknown = [
            msg(ACCEPT, &[Arg::str(GW), Arg::str("x")]),
            msg(b"/messenger/gateway", &[]),
            msg(b"/messenger/me/say", &[Arg::str("x")]),
            // An empty bundle (time tag 1): well-formed, but not a control message.
            b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec(),
        ];
        for p in &unknown {
            g.handle(secs(0), 1, LO, p);
        }
        assert!(drain(&mut g).is_empty());
        assert!(g.is_empty());
        let c = g.counters();
        assert_eq!(c.malformed, malformed.len() as u64);
        assert_eq!(c.unknown, unknown.len() as u64);
        assert_eq!(c.requests, 0);
        assert_eq!(c.packets, (malformed.len() + unknown.len()) as u64);
    }

    #[test]
    fn output_queue_is_bounded() {
        let mut g = gateway(1);
        let outsider = Ipv4Addr::new(192, 0, 2, 1);
        let packet = encode(REQUEST, &[&uid(1)]);
        for ep in 0..1000 {
            g.handle(secs(0), ep, outsider, &packet);
        }
        assert_eq!(g.counters().sends_dropped, 1000 - 258);
        check_invariants(&g);
        assert_eq!(drain(&mut g).len(), 258);
        // Room again after draining.
        assert_eq!(request(&mut g, secs(1), 5, &uid(5)).len(), 2);
    }

    #[test]
    fn gateway_uid_loses_nul_bytes() {
        let g: Gateway<u32> = Gateway::new(&Messenger::default(), "A\0B", vec![LOOPBACK]);
        assert_eq!(g.uid(), "AB");
        assert_eq!(decode(&g.who_active).1, ["AB"]);
    }

    #[test]
    fn timers_come_from_config_and_are_at_least_a_second() {
        let cfg = Messenger {
            keepalive_s: 0,
            timeout_s: 3,
            ..Messenger::default()
        };
        let mut g: Gateway<u32> = Gateway::new(&cfg, GW, vec![LOOPBACK]);
        request(&mut g, secs(0), 1, &uid(1));
        assert_eq!(g.poll_timeout(), Some(secs(1)));
        g.handle_timeout(ms(2999));
        assert!(g.is_patron(1));
        g.handle_timeout(secs(3));
        assert!(!g.is_patron(1));
    }

    #[test]
    fn default_allow_list_is_loopback_plus_interface_networks() {
        let ifs = [
            (Ipv4Addr::new(127, 0, 0, 1), 8),
            (Ipv4Addr::new(192, 168, 1, 37), 24),
            (Ipv4Addr::new(192, 168, 1, 99), 24),
            (Ipv4Addr::new(10, 1, 2, 3), 40),
        ];
        let list = default_allow_list(ifs);
        let want: Vec<Cidr> = ["127.0.0.0/8", "192.168.1.0/24", "10.1.2.3/32"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(list, want);
        assert_eq!(default_allow_list([]), [LOOPBACK]);

        let mut cfg = Messenger::default();
        assert_eq!(resolve_allow_list(&cfg, ifs), want);
        cfg.allow = Some(vec!["172.16.0.0/12".parse().unwrap()]);
        assert_eq!(resolve_allow_list(&cfg, ifs), cfg.allow.clone().unwrap());
    }

    #[test]
    fn five_hundred_patrons() {
        let mut g = gateway(500);
        for i in 0..500u32 {
            let acts = request(&mut g, ms(u64::from(i) * 10), i, &uid(i as usize));
            assert_eq!(acts.len(), 2, "patron {i} admitted");
        }
        let acts = request(&mut g, secs(5), 500, &uid(500));
        assert!(matches!(&acts[..], [Action::Send { .. }]));
        assert_eq!(g.counters().denied_full, 1);
        check_invariants(&g);
        let (asks, other) = run(&mut g, secs(60), |_, _| true);
        assert!(other.is_empty());
        // Patron i (admitted at i * 10 ms) is asked at 10 s + i * 10 ms, ...: 6 or 5 times.
        for i in 0..500u32 {
            let n = asks.iter().filter(|(e, _)| *e == i).count();
            assert_eq!(n, if i == 0 { 6 } else { 5 }, "patron {i}");
        }
        let (_, other) = run(&mut g, secs(100), |_, _| false);
        assert_eq!(other.len(), 500);
        assert!(other.iter().all(|(_, a)| matches!(
            a,
            Action::Expel {
                reason: Reason::Expired,
                ..
            }
        )));
        assert!(g.is_empty());
        check_invariants(&g);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Packet(u32, bool, Vec<u8>),
        Request(u32, bool, u8),
        Patron(u32, u8),
        Leave(u32, u8),
        Traffic(u32),
        Closed(u32),
        Tick(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (
                0..8u32,
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(e, a, b)| Op::Packet(e, a, b)),
            (0..8u32, any::<bool>(), 0..6u8).prop_map(|(e, a, u)| Op::Request(e, a, u)),
            (0..8u32, 0..6u8).prop_map(|(e, u)| Op::Patron(e, u)),
            (0..8u32, 0..6u8).prop_map(|(e, u)| Op::Leave(e, u)),
            (0..8u32).prop_map(Op::Traffic),
            (0..8u32).prop_map(Op::Closed),
            any::<u16>().prop_map(Op::Tick),
        ]
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_and_are_counted(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            prefix in proptest::sample::select(vec![&b""[..], b"/messenger/gateway/me/request\0\0\0,"]),
        ) {
            let mut g = gateway(4);
            let mut packet = prefix.to_vec();
            packet.extend_from_slice(&bytes);
            let before = *g.counters();
            g.handle(secs(0), 1, LO, &packet);
            let after = *g.counters();
            prop_assert_eq!(after.packets, before.packets + 1);
            let moved = (after.malformed - before.malformed)
                + (after.unknown - before.unknown)
                + (after.requests - before.requests);
            prop_assert_eq!(moved, 1);
            if Packet::new_checked(&packet).is_err() {
                prop_assert_eq!(after.malformed, before.malformed + 1);
            }
            check_invariants(&g);
        }

        #[test]
        fn random_operation_sequences_keep_the_state_consistent(
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let mut g = gateway(4);
            let mut now = Duration::ZERO;
            let outsider = Ipv4Addr::new(192, 0, 2, 7);
            let mut members = std::collections::HashSet::new();
            for op in ops {
                match op {
                    Op::Packet(e, allowed, b) => {
                        g.handle(now, e, if allowed { LO } else { outsider }, &b)
                    }
                    Op::Request(e, allowed, u) => g.handle(
                        now,
                        e,
                        if allowed { LO } else { outsider },
                        &encode(REQUEST, &[&uid(u.into())]),
                    ),
                    Op::Patron(e, u) => g.handle(now, e, LO, &encode(PATRON, &[&uid(u.into())])),
                    Op::Leave(e, u) => g.handle(now, e, LO, &encode(LEAVE, &[&uid(u.into())])),
                    Op::Traffic(e) => {
                        g.note_traffic(now, e);
                    }
                    Op::Closed(e) => {
                        g.endpoint_closed(e);
                    }
                    Op::Tick(dt) => {
                        now += ms(u64::from(dt));
                        g.handle_timeout(now);
                        match g.poll_timeout() {
                            Some(t) => prop_assert!(t > now),
                            None => prop_assert!(g.is_empty()),
                        }
                    }
                }
                check_invariants(&g);
                // Applying Admit/Expel in order reproduces the membership exactly.
                for a in drain(&mut g) {
                    match a {
                        Action::Admit { endpoint, .. } => {
                            prop_assert!(members.insert(endpoint), "admitted twice");
                        }
                        Action::Expel { endpoint, .. } => {
                            prop_assert!(members.remove(&endpoint), "expelled a stranger");
                        }
                        Action::Send { .. } => {}
                    }
                }
                let live: std::collections::HashSet<u32> = g.patrons().map(|p| p.endpoint).collect();
                prop_assert_eq!(&members, &live);
                prop_assert_eq!(g.poll_timeout().is_none(), g.is_empty());
            }
        }
    }
}
