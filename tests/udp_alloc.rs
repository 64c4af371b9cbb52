//! `RecvBatch::recv` and `SendBatch::push` / `flush` allocate nothing once built (the
//! PERFORMANCE target "0 heap allocations per forwarded packet"), on the plain, GSO, error and
//! empty-socket paths. It installs the counting allocator of `tests/support` for its whole
//! binary, so it holds only this test.

use std::net::UdpSocket;
use std::sync::Arc;

use oscgate::engine::udp::{bind_udp, Gso, RecvBatch, SendBatch};

mod support;
use support::allocs;

#[test]
fn recv_push_and_flush_do_not_allocate() {
    let tx = bind_udp("127.0.0.1:0".parse().unwrap(), false, None, None).unwrap();
    let gso = Arc::new(Gso::probe(&tx));
    let receivers: Vec<UdpSocket> = (0..20)
        .map(|_| bind_udp("127.0.0.1:0".parse().unwrap(), false, Some(1 << 20), None).unwrap())
        .collect();
    let dests: Vec<_> = receivers.iter().map(|r| r.local_addr().unwrap()).collect();
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let errtx = bind_udp("127.0.0.1:0".parse().unwrap(), false, None, None).unwrap();
    errtx.connect(closed).unwrap();
    errtx.send(b"prime").unwrap();
    let bad_family = "[::1]:9".parse().unwrap();
    let payload = [0x2fu8; 128];
    let mut rb = RecvBatch::new(64, 2048);
    let mut plain = SendBatch::new(64);
    let mut with_gso = SendBatch::new(64).with_gso(Some(gso.clone()));
    let mut total_sent = 0;
    let mut total_received = 0;
    let mut refused = 0;

    // The counter counts (so a zero below means something).
    let probe_start = allocs();
    drop(std::hint::black_box(Vec::<u8>::with_capacity(8)));
    assert_eq!(allocs() - probe_start, 1);

    let before = allocs();
    for round in 0..50 {
        // Fan-out, no GSO, one refused datagram in the middle.
        for (i, d) in dests.iter().enumerate() {
            plain.push(&payload, *d).unwrap();
            if i == 10 {
                plain.push(&payload, bad_family).unwrap();
            }
        }
        let r = plain.flush(&tx);
        total_sent += r.sent;
        assert_eq!(r.failed, 1);
        // A GSO run of 30 to one destination.
        for _ in 0..30 {
            with_gso.push(&payload, dests[round % dests.len()]).unwrap();
        }
        total_sent += with_gso.flush(&tx).sent;
        // The pending-ECONNREFUSED retry path: the ICMP answer to the previous round's
        // datagram to the closed port is reported on this round's first datagram.
        plain.push(&payload, dests[0]).unwrap();
        plain.push(&payload, closed).unwrap();
        let r = plain.flush(&errtx);
        total_sent += r.sent;
        refused += r.errors;
        // Drain every receiver, then once more on the empty sockets (the EAGAIN path).
        for r in &receivers {
            while rb.recv(r).unwrap() > 0 {
                total_received += rb.iter().filter(|(p, _, t)| p.len() == 128 && !t).count();
            }
        }
    }
    let after = allocs();

    assert_eq!(after - before, 0, "heap allocations on the hot path");
    // The loop did real work on every path it claims to cover.
    assert!(total_sent >= 50 * (20 + 30 + 1));
    // (Datagrams of the last round may still be in flight when the last drain ran.)
    assert!(total_received >= 49 * (20 + 30));
    assert!(refused > 0, "the ECONNREFUSED path was exercised");
    assert!(gso.is_enabled());
}
