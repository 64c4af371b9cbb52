//! A WebSocket session's liveness timers ([`Keepalive`]), sans-IO: the server pings every
//! `ping_every` (15 s) and gives up on a client it has heard nothing from (no frame, no pong)
//! for `timeout` (45 s). Time is passed in, so the tests run in simulated time.

use core::time::Duration;

/// What the session must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Send a ping.
    Ping,
    /// Silent too long: close.
    Expired,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Keepalive {
    ping_every: Duration,
    timeout: Duration,
    last_heard: Duration,
    next_ping: Duration,
}

impl Keepalive {
    /// Timers for a session that was last heard at `now`.
    pub fn new(now: Duration, ping_every: Duration, timeout: Duration) -> Keepalive {
        Keepalive {
            ping_every,
            timeout,
            last_heard: now,
            next_ping: now + ping_every,
        }
    }

    /// Anything arrived from the client (a frame, a pong).
    pub fn heard(&mut self, now: Duration) {
        self.last_heard = self.last_heard.max(now);
    }

    /// When [`poll`](Self::poll) has something to say next.
    pub fn deadline(&self) -> Duration {
        self.next_ping.min(self.last_heard + self.timeout)
    }

    /// What is due at `now`: expiry first, then a ping (at most one per period; a session that
    /// was busy past several periods gets one ping, not a burst).
    pub fn poll(&mut self, now: Duration) -> Option<Tick> {
        if now >= self.last_heard + self.timeout {
            return Some(Tick::Expired);
        }
        if now >= self.next_ping {
            self.next_ping = now + self.ping_every;
            return Some(Tick::Ping);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn run(k: &mut Keepalive, from: u64, to: u64) -> Vec<(u64, Tick)> {
        let mut out = Vec::new();
        for t in from..=to {
            while let Some(tick) = k.poll(s(t)) {
                out.push((t, tick));
                if tick == Tick::Expired {
                    return out;
                }
            }
        }
        out
    }

    #[test]
    fn a_silent_client_is_pinged_every_15_s_and_dropped_after_45_s() {
        let mut k = Keepalive::new(s(0), s(15), s(45));
        assert_eq!(k.deadline(), s(15));
        assert_eq!(
            run(&mut k, 0, 100),
            [(15, Tick::Ping), (30, Tick::Ping), (45, Tick::Expired)]
        );
    }

    #[test]
    fn a_client_that_answers_stays() {
        let mut k = Keepalive::new(s(0), s(15), s(45));
        let mut ticks = Vec::new();
        for t in 0..600 {
            if let Some(tick) = k.poll(s(t)) {
                ticks.push(tick);
                // The pong comes back a second later.
            }
            if t % 15 == 1 {
                k.heard(s(t));
            }
        }
        assert!(ticks.iter().all(|t| *t == Tick::Ping));
        assert_eq!(ticks.len(), 39);
        // Pongs stop: dropped 45 s after the last one.
        assert_eq!(
            run(&mut k, 600, 700),
            [
                (600, Tick::Ping),
                (615, Tick::Ping),
                (630, Tick::Ping),
                (631, Tick::Expired)
            ]
        );
    }

    #[test]
    fn a_late_poll_gives_one_ping_and_time_never_goes_back() {
        let mut k = Keepalive::new(s(10), s(15), s(45));
        k.heard(s(40));
        k.heard(s(5)); // out of order: ignored
        assert_eq!(k.poll(s(50)), Some(Tick::Ping));
        assert_eq!(k.poll(s(50)), None);
        assert_eq!(k.deadline(), s(65));
        assert_eq!(k.poll(s(85)), Some(Tick::Expired));
    }
}
