//! What a standby OSChat gateway keeps so that a failover loses nothing ([`Catchup`]).
//!
//! A standby gateway hears both segments. Every message it hears first on segment `i` is
//! something the active gateway should carry to every other segment `j`; when the same
//! message (same duplicate identity) is then heard on `j`, the active gateway did its job and
//! the entry goes. What is left, and recent, is exactly what the active gateway has not
//! forwarded: on taking over `i -> j`, the new gateway sends those, oldest first
//! ([`Catchup::take_over`]), and the duplicate filter keeps anything sent twice from going
//! further.
//!
//! What it does not do: decide who is the gateway ([`super::mesh`]), compute identities
//! ([`super::oschat::Chat::identity`] plus the duplicate filter's hash), or send.
//!
//! Bounds: entries older than `window` are dropped; each direction holds at most `max_bytes`
//! of packets, the oldest going first (counted).

use core::time::Duration;
use std::collections::VecDeque;

/// One remembered message.
#[derive(Debug, Clone)]
struct Entry {
    at: Duration,
    key: u64,
    packet: Vec<u8>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Catchup {
    window: Duration,
    max_bytes: usize,
    ifaces: usize,
    /// Per direction `from * ifaces + to`: what was heard on `from` and not yet on `to`.
    lanes: Vec<VecDeque<Entry>>,
    bytes: Vec<usize>,
    evicted: u64,
}

impl Catchup {
    /// For a node with `ifaces` interfaces; entries live `window` (a little more than the
    /// time a failover takes) and each direction holds at most `max_bytes`.
    pub fn new(ifaces: usize, window: Duration, max_bytes: usize) -> Catchup {
        let n = ifaces * ifaces;
        Catchup {
            window,
            max_bytes,
            ifaces,
            lanes: (0..n).map(|_| VecDeque::new()).collect(),
            bytes: vec![0; n],
            evicted: 0,
        }
    }

    fn lane(&self, from: usize, to: usize) -> Option<usize> {
        (from < self.ifaces && to < self.ifaces && from != to).then_some(from * self.ifaces + to)
    }

    /// A message heard on `iface` at `now` with duplicate key `key`; `first` when the filter
    /// had not seen it (a message's first appearance anywhere). Directions `iface -> to` with
    /// bit `to` set in `skip` are not recorded (this node carried the message there itself).
    pub fn heard(
        &mut self,
        now: Duration,
        iface: usize,
        key: u64,
        packet: &[u8],
        first: bool,
        skip: u64,
    ) {
        self.expire(now);
        // Heard here: nobody owes this segment that message any more.
        for from in 0..self.ifaces {
            if let Some(l) = self.lane(from, iface) {
                let before = self.lanes[l].len();
                let mut freed = 0;
                self.lanes[l].retain(|e| {
                    let keep = e.key != key;
                    if !keep {
                        freed += e.packet.len();
                    }
                    keep
                });
                if self.lanes[l].len() != before {
                    self.bytes[l] -= freed;
                }
            }
        }
        if !first {
            return;
        }
        for to in 0..self.ifaces {
            if to < 64 && skip & (1 << to) != 0 {
                continue;
            }
            let Some(l) = self.lane(iface, to) else {
                continue;
            };
            if packet.len() > self.max_bytes {
                self.evicted += 1;
                continue;
            }
            while self.bytes[l] + packet.len() > self.max_bytes {
                let Some(old) = self.lanes[l].pop_front() else {
                    break;
                };
                self.bytes[l] -= old.packet.len();
                self.evicted += 1;
            }
            self.bytes[l] += packet.len();
            self.lanes[l].push_back(Entry {
                at: now,
                key,
                packet: packet.to_vec(),
            });
        }
    }

    /// Drops entries older than the window.
    pub fn expire(&mut self, now: Duration) {
        for (l, lane) in self.lanes.iter_mut().enumerate() {
            while lane
                .front()
                .is_some_and(|e| now.saturating_sub(e.at) > self.window)
            {
                if let Some(e) = lane.pop_front() {
                    self.bytes[l] -= e.packet.len();
                }
            }
        }
    }

    /// Taking over `from -> to` at `now`: the recent messages heard on `from` and never on
    /// `to`, oldest first; the direction starts empty.
    pub fn take_over(&mut self, now: Duration, from: usize, to: usize) -> Vec<Vec<u8>> {
        self.expire(now);
        let Some(l) = self.lane(from, to) else {
            return Vec::new();
        };
        self.bytes[l] = 0;
        self.lanes[l].drain(..).map(|e| e.packet).collect()
    }

    /// Messages remembered for `from -> to`.
    pub fn pending(&self, from: usize, to: usize) -> usize {
        self.lane(from, to).map_or(0, |l| self.lanes[l].len())
    }

    /// Entries dropped to stay within `max_bytes`.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(5);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn what_the_active_gateway_forwarded_is_forgotten_the_rest_is_flushed_in_order() {
        let mut c = Catchup::new(2, W, 1 << 20);
        // Three messages heard on segment 0; the active gateway carries 1 and 2 to segment 1.
        c.heard(ms(0), 0, 1, b"one", true, 0);
        c.heard(ms(10), 0, 2, b"two", true, 0);
        c.heard(ms(20), 0, 3, b"three", true, 0);
        c.heard(ms(15), 1, 1, b"one", false, 0);
        c.heard(ms(25), 1, 2, b"two", false, 0);
        assert_eq!(c.pending(0, 1), 1);
        // A message from segment 1 that the gateway carried to 0.
        c.heard(ms(30), 1, 4, b"four", true, 0);
        c.heard(ms(35), 0, 4, b"four", false, 0);
        assert_eq!(c.pending(1, 0), 0);
        // The gateway dies; we take over 0 -> 1: exactly "three".
        assert_eq!(c.take_over(ms(3000), 0, 1), [b"three".to_vec()]);
        assert_eq!(c.pending(0, 1), 0);
        assert_eq!(c.take_over(ms(3000), 1, 0), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn old_entries_expire_and_memory_is_bounded() {
        let mut c = Catchup::new(2, W, 10);
        c.heard(ms(0), 0, 1, b"aaaa", true, 0);
        c.heard(ms(1), 0, 2, b"bbbb", true, 0);
        c.heard(ms(2), 0, 3, b"cccc", true, 0); // 12 bytes > 10: "aaaa" goes
        assert_eq!(c.evicted(), 1);
        assert_eq!(
            c.take_over(ms(3), 0, 1),
            [b"bbbb".to_vec(), b"cccc".to_vec()]
        );
        c.heard(ms(10), 0, 4, b"dddd", true, 0);
        c.heard(ms(20), 0, 5, b"far too long for the bound", true, 0);
        assert_eq!(c.evicted(), 2);
        assert_eq!(c.take_over(ms(10) + W + ms(1), 0, 1), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn three_segments_are_tracked_per_direction() {
        let mut c = Catchup::new(3, W, 1 << 20);
        c.heard(ms(0), 0, 7, b"x", true, 0);
        assert_eq!((c.pending(0, 1), c.pending(0, 2)), (1, 1));
        c.heard(ms(5), 2, 7, b"x", false, 0);
        assert_eq!((c.pending(0, 1), c.pending(0, 2)), (1, 0));
        assert_eq!(c.pending(0, 0), 0);
        assert_eq!(c.take_over(ms(6), 0, 0), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn directions_this_node_carried_itself_are_not_recorded() {
        let mut c = Catchup::new(3, W, 1 << 20);
        c.heard(ms(0), 0, 9, b"y", true, 1 << 2);
        assert_eq!((c.pending(0, 1), c.pending(0, 2)), (1, 0));
    }
}
