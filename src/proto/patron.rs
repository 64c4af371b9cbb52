//! The patron side of OSC Messenger (`oscgate patron`) as a sans-IO state machine ([`Patron`]).
//!
//! What it does: asks one gateway to serve it (`/messenger/gateway/me/request`), waits up to
//! the spec's 5 s for `accept`/`deny`, retries with capped exponential backoff and jitter,
//! answers `/messenger/gateway/who/active` with `/messenger/gateway/me/patron`, notices a
//! gateway that went away (silent for 30 s, or `shutdown`) and asks again, and leaves.
//!
//! What it does not do: talk to sockets, read a clock, relay traffic between the gateway and
//! local apps (the engine does, telling the patron about traffic from the gateway), or pick
//! its own randomness (the jitter comes from a caller-given seed).
//!
//! # Decisions where the spec is silent
//! - **Retry schedule**: a request unanswered for `reply_window` (5 s), or denied, is retried
//!   after a backoff of `backoff_initial * 2^n` capped at `backoff_max` (1 s, 2 s, 4 s, ...,
//!   30 s) for the n-th failure in a row, with jitter: the delay is uniform in
//!   `[3/4 d, d]` so patrons that failed together do not retry together, and the cap holds.
//!   The count resets on `accept`. After the gateway goes away the first retry is after ~1 s.
//! - **Late accept**: an `accept` for our uid that arrives while backing off is taken (the
//!   gateway did admit us); a `deny` is only taken while requesting.
//! - **Liveness**: `who/active` and `shutdown` count only with the uid of the gateway that
//!   accepted us; any other packet from the gateway (Messenger traffic) also proves it alive.

use core::fmt;
use core::time::Duration;
use std::collections::VecDeque;

use super::messenger::{
    ACCEPT, DENY, GATEWAY_PREFIX, LEAVE, PATRON, REQUEST, SHUTDOWN, WHO_ACTIVE,
};
use super::{encode, str_args, SplitMix64};
use crate::wire::address::has_prefix;
use crate::wire::Packet;

/// At most this many packets wait in [`Patron::poll_transmit`]'s queue; more are dropped and
/// counted. Replies are one per `who/active`, so only a flood from the gateway reaches it.
const MAX_QUEUED: usize = 32;

/// Timers of a patron; [`Default`] is the spec's (5 s reply window, 30 s gateway timeout) and
/// oscgate's backoff (1 s doubling to 30 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatronConfig {
    /// How long to wait for `accept`/`deny` after a request.
    pub reply_window: Duration,
    /// How long the gateway may stay silent before it is taken as gone.
    pub timeout: Duration,
    /// First retry delay.
    pub backoff_initial: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
}

impl Default for PatronConfig {
    fn default() -> Self {
        Self {
            reply_window: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Where a patron is; see [`Patron::state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Created, [`Patron::start`] not called yet.
    Idle,
    /// A request is out; waiting for `accept`/`deny`.
    Requesting,
    /// Accepted by the gateway.
    Active,
    /// Waiting to send the next request.
    Backoff,
    /// [`Patron::leave`] was called.
    Left,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Idle => "idle",
            Self::Requesting => "requesting",
            Self::Active => "active",
            Self::Backoff => "backing off",
            Self::Left => "left",
        })
    }
}

/// Event counters; they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests_sent: u64,
    pub accepted: u64,
    pub denied: u64,
    /// Requests that got no reply within the window.
    pub no_reply: u64,
    /// `who/active` answered with `me/patron`.
    pub keepalives_answered: u64,
    /// Gateway silent for the timeout while active.
    pub gateway_gone: u64,
    /// `shutdown` received from our gateway.
    pub shutdowns: u64,
    pub leaves_sent: u64,
    /// Not OSC, or a gateway message with the wrong arguments.
    pub malformed: u64,
    /// Well-formed gateway messages that do not apply now (wrong uid, wrong state).
    pub ignored: u64,
    /// `/messenger/gateway/...` addresses a patron does not take.
    pub unknown: u64,
    /// Other packets from the gateway (Messenger traffic).
    pub traffic: u64,
    /// Packets dropped because the transmit queue was full.
    pub transmits_dropped: u64,
}

#[derive(Debug)]
enum Inner {
    Idle,
    Requesting {
        sent_at: Duration,
    },
    Active {
        gateway: Box<str>,
        last_heard: Duration,
    },
    Backoff {
        retry_at: Duration,
    },
    Left,
}

/// The patron side of OSC Messenger for one gateway, sans IO.
///
/// # How to drive it
/// 1. Call [`start`](Self::start) once; it queues the first request.
/// 2. Give every packet received from the gateway to [`handle`](Self::handle) (or only the
///    `/messenger/gateway/...` ones, and call [`note_traffic`](Self::note_traffic) for the
///    rest).
/// 3. When [`poll_timeout`](Self::poll_timeout) has come, call
///    [`handle_timeout`](Self::handle_timeout).
/// 4. After every call, send everything [`poll_transmit`](Self::poll_transmit) returns to the
///    gateway, in order, then ask `poll_timeout` again.
/// 5. On exit call [`leave`](Self::leave) and send what it queued.
#[derive(Debug)]
pub struct Patron {
    uid: String,
    cfg: PatronConfig,
    inner: Inner,
    /// Failures in a row since the last accept; picks the next backoff.
    attempt: u32,
    rng: SplitMix64,
    transmit: VecDeque<Vec<u8>>,
    counters: Counters,
}

impl Patron {
    /// A patron with uid `uid` (NUL bytes removed), timers `cfg` (each at least 1 ms) and a
    /// jitter seed.
    pub fn new(uid: impl Into<String>, cfg: PatronConfig, seed: u64) -> Self {
        let min = Duration::from_millis(1);
        let cfg = PatronConfig {
            reply_window: cfg.reply_window.max(min),
            timeout: cfg.timeout.max(min),
            backoff_initial: cfg.backoff_initial.max(min),
            backoff_max: cfg.backoff_max.max(cfg.backoff_initial).max(min),
        };
        Self {
            uid: uid.into().chars().filter(|&c| c != '\0').collect(),
            cfg,
            inner: Inner::Idle,
            attempt: 0,
            rng: SplitMix64::new(seed),
            transmit: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    pub fn uid(&self) -> &str {
        &self.uid
    }

    pub fn state(&self) -> State {
        match self.inner {
            Inner::Idle => State::Idle,
            Inner::Requesting { .. } => State::Requesting,
            Inner::Active { .. } => State::Active,
            Inner::Backoff { .. } => State::Backoff,
            Inner::Left => State::Left,
        }
    }

    /// The uid of the gateway that accepted us, while active.
    pub fn gateway_uid(&self) -> Option<&str> {
        match &self.inner {
            Inner::Active { gateway, .. } => Some(gateway),
            _ => None,
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Sends the first request. Also restarts a patron that left; does nothing otherwise.
    pub fn start(&mut self, now: Duration) {
        if matches!(self.inner, Inner::Idle | Inner::Left) {
            self.attempt = 0;
            self.send_request(now);
        }
    }

    /// Queues `/messenger/gateway/me/leave` (unless idle or already left) and stops.
    pub fn leave(&mut self, _now: Duration) {
        if !matches!(self.inner, Inner::Idle | Inner::Left) {
            self.counters.leaves_sent += 1;
            let packet = encode(LEAVE, &[&self.uid]);
            self.queue(packet);
        }
        self.inner = Inner::Left;
    }

    /// Handles one packet from the gateway. Never panics, whatever the bytes.
    pub fn handle(&mut self, now: Duration, packet: &[u8]) {
        let msg = match Packet::new_checked(packet) {
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
            Ok(Packet::Bundle(_)) => {
                self.counters.traffic += 1;
                self.note_traffic(now);
                return;
            }
            Ok(Packet::Message(m)) => m,
        };
        let address = msg.address();
        if !has_prefix(address, GATEWAY_PREFIX) {
            self.counters.traffic += 1;
            self.note_traffic(now);
        } else if address == ACCEPT || address == DENY {
            match str_args::<2>(&msg) {
                Some([gateway, patron]) if patron == self.uid => {
                    if address == ACCEPT {
                        self.on_accept(now, gateway);
                    } else {
                        self.on_deny(now);
                    }
                }
                Some(_) => self.counters.ignored += 1,
                None => self.counters.malformed += 1,
            }
        } else if address == WHO_ACTIVE || address == SHUTDOWN {
            let Some([gateway]) = str_args::<1>(&msg) else {
                self.counters.malformed += 1;
                return;
            };
            let ours = matches!(&self.inner, Inner::Active { gateway: g, .. } if **g == *gateway);
            if address == WHO_ACTIVE && ours {
                self.counters.keepalives_answered += 1;
                self.note_traffic(now);
                let packet = encode(PATRON, &[&self.uid]);
                self.queue(packet);
            } else if address == SHUTDOWN && (ours || self.state() == State::Requesting) {
                self.counters.shutdowns += 1;
                self.attempt = 0;
                self.fail(now);
            } else {
                self.counters.ignored += 1;
            }
        } else {
            self.counters.unknown += 1;
        }
    }

    /// Reports traffic from the gateway other than gateway control: it proves the gateway
    /// alive while active.
    pub fn note_traffic(&mut self, now: Duration) {
        if let Inner::Active { last_heard, .. } = &mut self.inner {
            *last_heard = (*last_heard).max(now);
        }
    }

    /// Runs the reply window, backoff and gateway timeout.
    pub fn handle_timeout(&mut self, now: Duration) {
        // Each pass moves one step (active -> backoff -> requesting); three cover a late call.
        for _ in 0..3 {
            match self.inner {
                Inner::Requesting { sent_at } => {
                    let deadline = sent_at.saturating_add(self.cfg.reply_window);
                    if now < deadline {
                        return;
                    }
                    self.counters.no_reply += 1;
                    self.fail(deadline);
                }
                Inner::Backoff { retry_at } => {
                    if now < retry_at {
                        return;
                    }
                    self.send_request(now);
                }
                Inner::Active { last_heard, .. } => {
                    let deadline = last_heard.saturating_add(self.cfg.timeout);
                    if now < deadline {
                        return;
                    }
                    self.counters.gateway_gone += 1;
                    self.attempt = 0;
                    self.fail(deadline);
                }
                Inner::Idle | Inner::Left => return,
            }
        }
    }

    /// The next packet to send to the gateway.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run; `None` when idle or left.
    pub fn poll_timeout(&self) -> Option<Duration> {
        match self.inner {
            Inner::Requesting { sent_at } => Some(sent_at.saturating_add(self.cfg.reply_window)),
            Inner::Backoff { retry_at } => Some(retry_at),
            Inner::Active { last_heard, .. } => Some(last_heard.saturating_add(self.cfg.timeout)),
            Inner::Idle | Inner::Left => None,
        }
    }

    fn on_accept(&mut self, now: Duration, gateway: &str) {
        match &mut self.inner {
            Inner::Requesting { .. } | Inner::Backoff { .. } => {
                self.counters.accepted += 1;
                self.attempt = 0;
                self.inner = Inner::Active {
                    gateway: gateway.into(),
                    last_heard: now,
                };
            }
            // A repeated accept from our gateway (our request crossed its reply).
            Inner::Active {
                gateway: g,
                last_heard,
            } if **g == *gateway => *last_heard = (*last_heard).max(now),
            _ => self.counters.ignored += 1,
        }
    }

    fn on_deny(&mut self, now: Duration) {
        if let Inner::Requesting { .. } = self.inner {
            self.counters.denied += 1;
            self.fail(now);
        } else {
            self.counters.ignored += 1;
        }
    }

    /// Backs off from time `at` for the current attempt's delay.
    fn fail(&mut self, at: Duration) {
        let delay = self.backoff(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        self.inner = Inner::Backoff {
            retry_at: at.saturating_add(delay),
        };
    }

    /// The jittered delay before retry number `attempt` (0-based).
    fn backoff(&mut self, attempt: u32) -> Duration {
        let d = self
            .cfg
            .backoff_initial
            .saturating_mul(1 << attempt.min(20))
            .min(self.cfg.backoff_max);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let jitter = self.rng.next_u64() % (nanos / 4 + 1);
        Duration::from_nanos(nanos - jitter)
    }

    fn send_request(&mut self, now: Duration) {
        self.counters.requests_sent += 1;
        let packet = encode(REQUEST, &[&self.uid]);
        self.queue(packet);
        self.inner = Inner::Requesting { sent_at: now };
    }

    fn queue(&mut self, packet: Vec<u8>) {
        if packet.is_empty() {
            return;
        }
        if self.transmit.len() >= MAX_QUEUED {
            self.counters.transmits_dropped += 1;
            return;
        }
        self.transmit.push_back(packet);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;
    use proptest::prelude::*;

    const ME: &str = "AAAAAAAA-0000-4000-8000-000000000001";
    const GW: &str = "11111111-2222-3333-4444-555555555555";

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn patron(seed: u64) -> Patron {
        Patron::new(ME, PatronConfig::default(), seed)
    }

    fn sent(p: &mut Patron) -> Vec<(String, Vec<String>)> {
        core::iter::from_fn(|| p.poll_transmit())
            .map(|b| {
                let m = Message::new_checked(&b).expect("valid message");
                let args = m
                    .args()
                    .map(|a| a.as_str().expect("string").to_owned())
                    .collect();
                (m.address_str().unwrap().to_owned(), args)
            })
            .collect()
    }

    fn request() -> (String, Vec<String>) {
        ("/messenger/gateway/me/request".into(), vec![ME.into()])
    }

    fn accept() -> Vec<u8> {
        encode(ACCEPT, &[GW, ME])
    }

    /// An active patron, accepted at `at`.
    fn active(at: Duration) -> Patron {
        let mut p = patron(1);
        p.start(at);
        sent(&mut p);
        p.handle(at, &accept());
        assert_eq!(p.state(), State::Active);
        p
    }

    #[test]
    fn start_requests_and_accept_activates() {
        let mut p = patron(1);
        assert_eq!((p.state(), p.poll_timeout()), (State::Idle, None));
        p.start(secs(2));
        assert_eq!(sent(&mut p), [request()]);
        assert_eq!(p.state(), State::Requesting);
        assert_eq!(p.poll_timeout(), Some(secs(7)), "5 s reply window");
        p.handle(secs(3), &accept());
        assert_eq!(p.state(), State::Active);
        assert_eq!(p.gateway_uid(), Some(GW));
        assert_eq!(p.poll_timeout(), Some(secs(33)));
        assert_eq!(p.counters().accepted, 1);
        // start() again while running does nothing.
        p.start(secs(4));
        assert!(sent(&mut p).is_empty());
    }

    #[test]
    fn accept_or_deny_for_another_patron_is_ignored() {
        let mut p = patron(1);
        p.start(secs(0));
        sent(&mut p);
        p.handle(secs(1), &encode(ACCEPT, &[GW, "someone-else"]));
        p.handle(secs(1), &encode(DENY, &[GW, "someone-else"]));
        assert_eq!(p.state(), State::Requesting);
        assert_eq!(p.counters().ignored, 2);
    }

    #[test]
    fn deny_backs_off_then_asks_again() {
        let mut p = patron(9);
        p.start(secs(0));
        sent(&mut p);
        p.handle(secs(1), &encode(DENY, &[GW, ME]));
        assert_eq!(p.state(), State::Backoff);
        let retry = p.poll_timeout().unwrap();
        assert!(
            retry >= ms(1750) && retry <= secs(2),
            "1 s backoff with jitter: {retry:?}"
        );
        p.handle_timeout(retry - ms(1));
        assert!(sent(&mut p).is_empty());
        p.handle_timeout(retry);
        assert_eq!(sent(&mut p), [request()]);
        assert_eq!(p.state(), State::Requesting);
        // A second deny doubles the backoff.
        p.handle(retry, &encode(DENY, &[GW, ME]));
        let next = p.poll_timeout().unwrap() - retry;
        assert!(next >= ms(1500) && next <= secs(2), "{next:?}");
        assert_eq!(p.counters().denied, 2);
        // A deny while backing off changes nothing.
        p.handle(retry, &encode(DENY, &[GW, ME]));
        assert_eq!(p.counters().denied, 2);
    }

    #[test]
    fn no_reply_retries_with_capped_exponential_backoff() {
        let mut p = patron(42);
        p.start(secs(0));
        let mut now = secs(0);
        let mut requests = vec![now];
        sent(&mut p);
        while requests.len() < 10 {
            now = p.poll_timeout().unwrap();
            p.handle_timeout(now);
            if !sent(&mut p).is_empty() {
                requests.push(now);
            }
        }
        // Each gap is the 5 s window plus a backoff of 1, 2, 4, 8, 16, 30, 30... s less up to
        // a quarter of jitter.
        let bases = [1u64, 2, 4, 8, 16, 30, 30, 30, 30];
        for (i, w) in requests.windows(2).enumerate() {
            let backoff = w[1] - w[0] - secs(5);
            let d = secs(bases[i]);
            assert!(
                backoff <= d && backoff >= d * 3 / 4,
                "retry {i}: {backoff:?}"
            );
        }
        assert_eq!(p.counters().no_reply, 9);
        assert_eq!(p.counters().requests_sent, 10);
        // A late accept while backing off is taken, and resets the backoff.
        p.handle_timeout(now + secs(5));
        assert_eq!(p.state(), State::Backoff);
        p.handle(now + secs(6), &accept());
        assert_eq!(p.state(), State::Active);
        assert_eq!(p.attempt, 0);
    }

    #[test]
    fn jitter_depends_on_the_seed_only() {
        let schedule = |seed| {
            let mut p = patron(seed);
            p.start(secs(0));
            (0..6)
                .map(|_| {
                    let t = p.poll_timeout().unwrap();
                    p.handle_timeout(t);
                    t
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(schedule(5), schedule(5));
        assert_ne!(schedule(5), schedule(6));
    }

    #[test]
    fn who_active_is_answered_and_keeps_the_gateway_alive() {
        let mut p = active(secs(0));
        for t in [10, 20, 30, 40] {
            p.handle(secs(t), &encode(WHO_ACTIVE, &[GW]));
            assert_eq!(
                sent(&mut p),
                [("/messenger/gateway/me/patron".into(), vec![ME.to_string()])]
            );
        }
        p.handle_timeout(secs(69));
        assert_eq!(p.state(), State::Active);
        assert_eq!(p.counters().keepalives_answered, 4);
        // who/active from another gateway is not ours.
        p.handle(secs(50), &encode(WHO_ACTIVE, &["OTHER"]));
        assert!(sent(&mut p).is_empty());
        assert_eq!(p.counters().ignored, 1);
    }

    #[test]
    fn who_active_when_not_active_is_ignored() {
        let mut p = patron(1);
        p.start(secs(0));
        sent(&mut p);
        p.handle(secs(1), &encode(WHO_ACTIVE, &[GW]));
        assert!(sent(&mut p).is_empty());
        assert_eq!(p.state(), State::Requesting);
    }

    #[test]
    fn silent_gateway_is_gone_after_timeout_and_requested_again() {
        let mut p = active(secs(0));
        p.handle(secs(10), &encode(WHO_ACTIVE, &[GW]));
        p.handle(secs(15), &encode(b"/messenger/me/say", &["m", "c", "hi"]));
        assert_eq!(p.counters().traffic, 1);
        sent(&mut p);
        assert_eq!(p.poll_timeout(), Some(secs(45)));
        p.handle_timeout(ms(44_999));
        assert_eq!(p.state(), State::Active);
        p.handle_timeout(secs(45));
        assert_eq!(p.state(), State::Backoff);
        assert_eq!(p.counters().gateway_gone, 1);
        let retry = p.poll_timeout().unwrap();
        assert!(retry > secs(45) && retry <= secs(46));
        p.handle_timeout(retry);
        assert_eq!(sent(&mut p), [request()]);
        // note_traffic also refreshes.
        let mut p = active(secs(0));
        p.note_traffic(secs(20));
        p.handle_timeout(secs(49));
        assert_eq!(p.state(), State::Active);
    }

    #[test]
    fn late_handle_timeout_catches_up_in_one_call() {
        let mut p = active(secs(0));
        p.handle_timeout(secs(100));
        assert_eq!(
            p.state(),
            State::Requesting,
            "gone, backed off, and asked again"
        );
        assert_eq!(sent(&mut p), [request()]);
        assert_eq!(p.poll_timeout(), Some(secs(105)));
    }

    #[test]
    fn shutdown_from_our_gateway_means_request_again() {
        let mut p = active(secs(0));
        p.handle(secs(3), &encode(SHUTDOWN, &["OTHER"]));
        assert_eq!(p.state(), State::Active);
        p.handle(secs(3), &encode(SHUTDOWN, &[GW]));
        assert_eq!(p.state(), State::Backoff);
        assert_eq!(p.counters().shutdowns, 1);
        let t = p.poll_timeout().unwrap();
        assert!(t > secs(3) && t <= secs(4));
        p.handle_timeout(t);
        assert_eq!(sent(&mut p), [request()]);
    }

    #[test]
    fn leave_sends_leave_and_stops() {
        let mut p = active(secs(0));
        p.leave(secs(5));
        assert_eq!(
            sent(&mut p),
            [("/messenger/gateway/me/leave".into(), vec![ME.to_string()])]
        );
        assert_eq!((p.state(), p.poll_timeout()), (State::Left, None));
        p.handle(secs(6), &encode(WHO_ACTIVE, &[GW]));
        p.handle(secs(6), &accept());
        p.handle_timeout(secs(100));
        assert!(sent(&mut p).is_empty());
        assert_eq!(p.state(), State::Left);
        p.leave(secs(7));
        assert!(sent(&mut p).is_empty(), "leave once");
        // Leaving while idle sends nothing; start() after leaving asks again.
        let mut q = patron(1);
        q.leave(secs(0));
        assert!(sent(&mut q).is_empty());
        q.start(secs(1));
        assert_eq!(sent(&mut q), [request()]);
    }

    #[test]
    fn transmit_queue_is_bounded() {
        let mut p = active(secs(0));
        let ask = encode(WHO_ACTIVE, &[GW]);
        for _ in 0..100 {
            p.handle(secs(1), &ask);
        }
        assert_eq!(sent(&mut p).len(), MAX_QUEUED);
        assert_eq!(p.counters().transmits_dropped, 100 - MAX_QUEUED as u64);
    }

    #[test]
    fn malformed_and_unknown_input_is_counted() {
        let mut p = active(secs(0));
        p.handle(secs(1), b"nope");
        p.handle(secs(1), &encode(WHO_ACTIVE, &[]));
        p.handle(secs(1), &encode(ACCEPT, &[GW]));
        p.handle(secs(1), &encode(b"/messenger/gateway/me/request", &[ME]));
        assert!(sent(&mut p).is_empty());
        let c = p.counters();
        assert_eq!((c.malformed, c.unknown), (3, 1));
        assert_eq!(p.state(), State::Active);
    }

    proptest! {
        #[test]
        fn random_input_never_panics(
            packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..20),
            steps in proptest::collection::vec(0..20_000u64, 0..20),
            seed in any::<u64>(),
        ) {
            let mut p = patron(seed);
            let mut now = Duration::ZERO;
            p.start(now);
            for (b, dt) in packets.iter().zip(steps.iter().chain(core::iter::repeat(&0))) {
                now += ms(*dt);
                p.handle(now, b);
                p.handle_timeout(now);
                if let Some(t) = p.poll_timeout() {
                    prop_assert!(t > now);
                }
                while p.poll_transmit().is_some() {}
            }
        }
    }
}
