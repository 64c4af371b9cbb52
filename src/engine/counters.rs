//! Per-worker counters: one cache-padded block of `AtomicU64`s per worker, written only by its
//! worker (a relaxed load and store, no locked instruction) and summed by whoever reads them
//! (the periodic debug log, the status endpoint). Reading never blocks a worker.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($variant:ident => $name:literal: $doc:literal,)*) => {
        /// One counter of a worker.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(usize)]
        pub enum C {
            $(#[doc = $doc] $variant,)*
        }

        impl C {
            /// Every counter, in order.
            pub const ALL: &'static [C] = &[$(C::$variant,)*];

            /// The snake_case name (log lines, metric labels).
            pub const fn name(self) -> &'static str {
                match self {
                    $(C::$variant => $name,)*
                }
            }
        }
    };
}

counters! {
    Received => "received": "Packets received (datagrams, and TCP frames).",
    RxMessenger => "rx_messenger": "Packets received by the Messenger front door (group, UDP and TCP patrons).",
    RxRouter => "rx_router": "Packets (TCP frames) received by the tcposcrouter front door.",
    RxOschat => "rx_oschat": "Datagrams received by the OSChat node.",
    RxWebsocket => "rx_websocket": "Packets WebSocket gateway sessions sent to a bus.",
    Forwarded => "forwarded": "Deliveries handed to a socket or connection queue (one per destination).",
    Control => "control": "Packets passed to the control thread.",
    ControlQueueFull => "control_queue_full": "Control packets dropped because the control queue was full.",
    EgressQueueFull => "egress_queue_full": "Deliveries dropped because another worker's queue was full.",
    FanoutFull => "fanout_full": "Deliveries dropped because one packet had more destinations than a batch holds.",
    DroppedReserved => "dropped_reserved": "Packets dropped because their address is reserved (e.g. /messenger/gateway/... from the group).",
    DroppedNoRoute => "dropped_no_route": "Packets dropped by the route table (no route, filtered; e.g. traffic from a non-patron).",
    DroppedSelf => "dropped_self": "Multicast packets dropped because oscgate itself sent them.",
    DroppedDuplicate => "dropped_duplicate": "OSChat messages dropped as duplicates within the window.",
    BadPacket => "bad_packet": "Packets dropped as malformed OSC.",
    Truncated => "truncated": "Datagrams dropped because they did not fit the receive buffer.",
    TcpAccepted => "tcp_accepted": "TCP connections accepted.",
    TcpRefused => "tcp_refused": "TCP connections closed at once because the worker was full.",
    TcpClosed => "tcp_closed": "TCP connections closed (either side).",
    TcpBadFrame => "tcp_bad_frame": "TCP frames dropped as badly framed (e.g. an invalid SLIP escape).",
    TcpFatal => "tcp_fatal": "TCP connections closed for a fatal framing error (e.g. a giant length prefix).",
    TcpSlowDropped => "tcp_slow_dropped": "Frames dropped from a slow reader's queue (oldest first).",
    TcpSlowClosed => "tcp_slow_closed": "Connections closed for reading too slowly.",
}

/// The number of counters.
pub const COUNT: usize = C::ALL.len();

/// One worker's counters.
#[derive(Debug)]
#[repr(align(128))]
pub struct Counters {
    values: [AtomicU64; COUNT],
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Counters {
    /// Adds `n` to counter `c`. Only the owning worker may call this (single writer).
    #[inline]
    pub fn add(&self, c: C, n: u64) {
        let v = &self.values[c as usize];
        v.store(v.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Adds one to counter `c` (single writer, as [`add`](Self::add)).
    #[inline]
    pub fn bump(&self, c: C) {
        self.add(c, 1);
    }

    /// The current value of `c`.
    pub fn get(&self, c: C) -> u64 {
        self.values[c as usize].load(Ordering::Relaxed)
    }

    /// Every value, in [`C::ALL`] order.
    pub fn read(&self) -> [u64; COUNT] {
        std::array::from_fn(|i| self.values[i].load(Ordering::Relaxed))
    }
}

/// The sum over several workers' counters, in [`C::ALL`] order.
pub fn sum<'a>(all: impl IntoIterator<Item = &'a Counters>) -> [u64; COUNT] {
    let mut total = [0u64; COUNT];
    for c in all {
        for (t, v) in total.iter_mut().zip(c.read()) {
            *t = t.wrapping_add(v);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_and_sum_over_workers() {
        let a = Counters::default();
        let b = Counters::default();
        a.bump(C::Received);
        a.add(C::Forwarded, 10);
        b.add(C::Forwarded, 5);
        b.bump(C::TcpSlowClosed);
        let s = sum([&a, &b]);
        assert_eq!(s[C::Received as usize], 1);
        assert_eq!(s[C::Forwarded as usize], 15);
        assert_eq!(s[C::TcpSlowClosed as usize], 1);
        assert_eq!(s.iter().sum::<u64>(), 17);
        assert_eq!(a.get(C::Forwarded), 10);
    }

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<_> = C::ALL.iter().map(|c| c.name()).collect();
        assert!(names
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COUNT);
    }
}
