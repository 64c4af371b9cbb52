//! A seeded simulation of one [`Gateway`] and several [`Patron`]s exchanging packets through an
//! in-memory network with latency, jitter and loss, on a virtual clock (test-only).
//!
//! It checks the two state machines against each other over long runs: patrons stay admitted
//! through minutes of lossy UDP, and patrons that stop are expired.

use core::net::Ipv4Addr;
use core::time::Duration;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::messenger::{Action, Gateway, Reason, LOOPBACK};
use super::patron::{Patron, PatronConfig, State};
use super::SplitMix64;
use crate::config::Messenger;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Dest {
    Gateway { from: usize },
    Patron(usize),
}

/// A packet in flight, ordered by arrival time then by send order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Duration,
    seq: u64,
    dest: Dest,
    bytes: Vec<u8>,
}

struct Sim {
    now: Duration,
    gateway: Gateway<usize>,
    patrons: Vec<Patron>,
    /// Patrons that stopped: they neither receive, send nor run timers.
    stopped: Vec<bool>,
    net: BinaryHeap<Reverse<InFlight>>,
    rng: SplitMix64,
    /// Loss probability, in parts per thousand.
    loss_permille: u64,
    seq: u64,
    sent: u64,
    lost: u64,
    /// Membership changes the gateway reported, with their times.
    events: Vec<(Duration, Action<usize>)>,
}

impl Sim {
    fn new(patrons: usize, loss_permille: u64, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let patrons = (0..patrons)
            .map(|i| {
                let uid = format!("{i:08X}-0000-4000-8000-000000000000");
                Patron::new(uid, PatronConfig::default(), rng.next_u64())
            })
            .collect::<Vec<_>>();
        Self {
            now: Duration::ZERO,
            gateway: Gateway::new(
                &Messenger::default(),
                "11111111-2222-3333-4444-555555555555",
                vec![LOOPBACK],
            ),
            stopped: vec![false; patrons.len()],
            patrons,
            net: BinaryHeap::new(),
            rng,
            loss_permille,
            seq: 0,
            sent: 0,
            lost: 0,
            events: Vec::new(),
        }
    }

    /// Puts a packet on the wire: 1-20 ms one way, or lost.
    fn transmit(&mut self, dest: Dest, bytes: Vec<u8>) {
        self.sent += 1;
        if self.rng.next_u64() % 1000 < self.loss_permille {
            self.lost += 1;
            return;
        }
        let latency = Duration::from_millis(1 + self.rng.next_u64() % 20);
        self.seq += 1;
        self.net.push(Reverse(InFlight {
            at: self.now + latency,
            seq: self.seq,
            dest,
            bytes,
        }));
    }

    /// Moves everything the state machines want to send onto the wire.
    fn flush(&mut self) {
        while let Some(a) = self.gateway.poll_action() {
            match a {
                Action::Send { to, packet } => self.transmit(Dest::Patron(to), packet),
                other => self.events.push((self.now, other)),
            }
        }
        for i in 0..self.patrons.len() {
            while let Some(p) = self.patrons[i].poll_transmit() {
                if !self.stopped[i] {
                    self.transmit(Dest::Gateway { from: i }, p);
                }
            }
        }
    }

    /// Runs the virtual clock until `end`.
    fn run_until(&mut self, end: Duration) {
        loop {
            self.flush();
            let live = self
                .patrons
                .iter()
                .zip(&self.stopped)
                .filter(|(_, &s)| !s)
                .filter_map(|(p, _)| p.poll_timeout());
            let next = live
                .chain(self.gateway.poll_timeout())
                .chain(self.net.peek().map(|Reverse(p)| p.at))
                .min();
            match next {
                Some(t) if t <= end => self.now = self.now.max(t),
                _ => {
                    self.now = end;
                    return;
                }
            }
            while self.net.peek().is_some_and(|Reverse(p)| p.at <= self.now) {
                let Some(Reverse(p)) = self.net.pop() else {
                    break;
                };
                match p.dest {
                    Dest::Gateway { from } => {
                        self.gateway
                            .handle(self.now, from, Ipv4Addr::LOCALHOST, &p.bytes)
                    }
                    Dest::Patron(i) if !self.stopped[i] => {
                        self.patrons[i].handle(self.now, &p.bytes)
                    }
                    Dest::Patron(_) => {}
                }
            }
            self.gateway.handle_timeout(self.now);
            for (p, &stopped) in self.patrons.iter_mut().zip(&self.stopped) {
                if !stopped {
                    p.handle_timeout(self.now);
                }
            }
        }
    }

    fn expels(&self, after: Duration) -> Vec<(Duration, usize, Reason)> {
        self.events
            .iter()
            .filter(|(t, _)| *t >= after)
            .filter_map(|(t, a)| match a {
                Action::Expel {
                    endpoint, reason, ..
                } => Some((*t, *endpoint, *reason)),
                _ => None,
            })
            .collect()
    }
}

const N: usize = 8;

fn min(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

#[test]
fn patrons_stay_admitted_for_ten_minutes_at_five_percent_loss() {
    for seed in [1, 2, 3] {
        let mut sim = Sim::new(N, 50, seed);
        for p in &mut sim.patrons {
            p.start(Duration::ZERO);
        }
        // Joining takes a few request rounds at most, even with lost requests or accepts.
        sim.run_until(Duration::from_secs(30));
        assert_eq!(sim.gateway.len(), N, "seed {seed}: all admitted");
        let joined = sim.now;
        sim.run_until(joined + min(10));
        assert!(
            sim.expels(joined).is_empty(),
            "seed {seed}: {:?}",
            sim.expels(joined)
        );
        assert_eq!(sim.gateway.len(), N);
        for p in &sim.patrons {
            assert_eq!(p.state(), State::Active, "seed {seed}");
            assert_eq!(p.counters().gateway_gone, 0, "seed {seed}");
        }
        // The run did lose packets, and the keepalive repeat covered some of them.
        assert!(
            sim.lost > sim.sent / 40,
            "seed {seed}: {} of {}",
            sim.lost,
            sim.sent
        );
        let c = sim.gateway.counters();
        assert!(c.keepalive_retries > 0 && c.keepalives_sent >= (N as u64) * 59);
        assert_eq!(c.admitted, N as u64, "seed {seed}: nobody re-admitted");
    }
}

#[test]
fn stopped_patrons_are_expired_and_the_rest_stay() {
    let mut sim = Sim::new(N, 50, 7);
    for p in &mut sim.patrons {
        p.start(Duration::ZERO);
    }
    sim.run_until(min(5));
    assert_eq!(sim.gateway.len(), N);
    let stop = sim.now;
    sim.stopped[0] = true;
    sim.stopped[3] = true;
    sim.run_until(stop + min(2));
    let mut gone = sim.expels(stop);
    gone.sort_by_key(|&(_, e, _)| e);
    assert_eq!(gone.len(), 2, "{gone:?}");
    for (&(t, e, reason), want) in gone.iter().zip([0, 3]) {
        assert_eq!((e, reason), (want, Reason::Expired));
        // Last heard before the stop, so expired within the timeout of it.
        assert!(t > stop && t <= stop + Duration::from_secs(30), "{t:?}");
    }
    assert_eq!(sim.gateway.len(), N - 2);
    assert!(!sim.gateway.is_patron(0) && !sim.gateway.is_patron(3));
}

#[test]
fn patrons_recover_after_a_gateway_restart() {
    let mut sim = Sim::new(N, 0, 11);
    for p in &mut sim.patrons {
        p.start(Duration::ZERO);
    }
    sim.run_until(min(1));
    sim.gateway.shutdown(sim.now);
    sim.flush();
    sim.gateway = Gateway::new(
        &Messenger::default(),
        "99999999-2222-3333-4444-555555555555",
        vec![LOOPBACK],
    );
    sim.run_until(min(2));
    assert_eq!(sim.gateway.len(), N);
    for p in &sim.patrons {
        assert_eq!(p.state(), State::Active);
        assert_eq!(
            p.gateway_uid(),
            Some("99999999-2222-3333-4444-555555555555")
        );
        assert_eq!(p.counters().shutdowns, 1);
    }
}

#[test]
fn simulation_is_deterministic_per_seed() {
    let run = |seed| {
        let mut sim = Sim::new(4, 100, seed);
        for p in &mut sim.patrons {
            p.start(Duration::ZERO);
        }
        sim.run_until(min(3));
        (sim.sent, sim.lost, *sim.gateway.counters())
    };
    assert_eq!(run(5), run(5));
}
