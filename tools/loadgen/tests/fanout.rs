//! End-to-end fan-out runs through the in-process forwarders at a low rate, where loopback is
//! lossless: every message must reach every receiver once, in order, and be accounted.

use std::time::Duration;

use oscgate_load::{run, FanoutConfig, Via};

fn low_rate(via: Via) -> FanoutConfig {
    FanoutConfig {
        receivers: 10,
        senders: 1,
        rate: 2000,
        size: 64,
        duration: Duration::from_secs(1),
        via,
        recv_threads: 1,
        progress: false,
        pin: false,
    }
}

fn assert_lossless(via: Via) {
    let r = run(&low_rate(via)).unwrap();
    assert!(r.sent > 1000, "{via:?}: sent only {}", r.sent);
    assert!(r.sent <= 2100, "{via:?}: pacing broken, sent {}", r.sent);
    assert_eq!(r.expected, r.sent * 10);
    assert_eq!(r.delivered, r.sent * 10, "{via:?}: {}", r.to_table());
    assert_eq!(r.lost, 0);
    assert_eq!(r.duplicated, 0);
    assert_eq!(r.reordered, 0);
    assert_eq!(r.malformed, 0);
    assert_eq!(r.size, 64);
    assert_eq!(r.latency_us.samples, r.delivered);
    assert!(r.latency_us.p50 > 0.0 && r.latency_us.p50 <= r.latency_us.max);
    let f = r.forwarder.expect("in-process forwarder stats");
    assert_eq!(f.received, r.sent);
    assert_eq!(f.sent, r.sent * 10);
    assert!(r.cpu.forwarder_s.is_some());
}

#[test]
fn baseline_low_rate_is_lossless() {
    assert_lossless(Via::Baseline);
}

#[test]
fn naive_low_rate_is_lossless() {
    assert_lossless(Via::Naive);
}

#[test]
fn two_receiver_threads_two_senders_pinned() {
    let cfg = FanoutConfig {
        senders: 2,
        recv_threads: 2,
        receivers: 7,
        pin: true,
        ..low_rate(Via::Baseline)
    };
    let r = run(&cfg).unwrap();
    assert!(r.sent > 1000);
    assert_eq!(r.delivered, r.sent * 7);
    assert_eq!((r.lost, r.duplicated, r.reordered), (0, 0, 0));
}

#[test]
fn external_forwarder_that_is_absent_counts_everything_lost() {
    // Nothing listens on the port of a socket we just closed: a measurement, not an error.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = FanoutConfig {
        rate: 500,
        duration: Duration::from_millis(300),
        ..low_rate(Via::Udp(format!("127.0.0.1:{port}").parse().unwrap()))
    };
    let r = run(&cfg).unwrap();
    assert!(r.sent > 0);
    assert_eq!(r.delivered, 0);
    assert_eq!(r.lost, r.sent * 10);
    assert!(r.forwarder.is_none());
    assert_eq!(r.receiver_addrs.len(), 10);
}
