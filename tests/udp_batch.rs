//! The batched-UDP layer (`engine::udp`) over real loopback sockets: `recvmmsg` batches with
//! source addresses and truncation, `sendmmsg` fan-out of one buffer, per-destination errors,
//! UDP GSO and its split into runs. Waits are bounded by read timeouts, never sleeps. The
//! would-block bookkeeping cannot be forced on loopback (the kernel frees send buffers on
//! delivery), so it is unit-tested in `src/engine/udp/send.rs` with an injected syscall.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use oscgate::engine::udp::{bind_udp, Gso, RecvBatch, SendBatch};

const WAIT: Duration = Duration::from_secs(2);

/// A blocking receiver on 127.0.0.1 with a bounded read timeout.
fn receiver() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

fn sender() -> UdpSocket {
    bind_udp("127.0.0.1:0".parse().unwrap(), false, None, None).unwrap()
}

/// Receives exactly `n` datagrams (each within `WAIT`), then checks nothing else is queued.
fn collect(sock: &UdpSocket, n: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    for i in 0..n {
        let (len, from) = sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i} of {n} did not arrive: {e}"));
        out.push((buf[..len].to_vec(), from));
    }
    sock.set_nonblocking(true).unwrap();
    let extra = sock.recv_from(&mut buf);
    assert_eq!(
        extra.map_err(|e| e.kind()).err(),
        Some(ErrorKind::WouldBlock),
        "more than {n} datagrams arrived"
    );
    sock.set_nonblocking(false).unwrap();
    out
}

/// Blocks (bounded) until `sock` has a datagram queued, without taking it.
fn wait_readable(sock: &UdpSocket) {
    let mut b = [0u8; 1];
    sock.peek_from(&mut b).expect("a datagram within the wait");
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i * 31 + k) as u8).collect()
}

#[test]
fn recv_takes_a_batch_of_32_with_payloads_and_sources() {
    let rx = receiver();
    let to = rx.local_addr().unwrap();
    let (a, b) = (sender(), sender());
    for i in 0..32 {
        let s = if i % 2 == 0 { &a } else { &b };
        s.send_to(&payload(i, 10 + i), to).unwrap();
    }
    wait_readable(&rx);
    let mut batch = RecvBatch::new(64, 128);
    let n = batch.recv(&rx).unwrap();
    assert_eq!(n, 32, "all 32 queued datagrams in one recvmmsg");
    assert_eq!(batch.len(), 32);
    for i in 0..32 {
        let (p, from) = batch.get(i).unwrap();
        assert_eq!(p, &payload(i, 10 + i)[..], "datagram {i}");
        let src = if i % 2 == 0 { &a } else { &b };
        assert_eq!(from, src.local_addr().unwrap(), "source of {i}");
        assert!(!batch.truncated(i));
    }
    assert_eq!(batch.get(32), None);
    assert_eq!(batch.iter().count(), 32);
}

#[test]
fn a_datagram_longer_than_its_slot_is_flagged_truncated() {
    let rx = receiver();
    let tx = sender();
    let long = payload(1, 40);
    tx.send_to(&long, rx.local_addr().unwrap()).unwrap();
    tx.send_to(b"short", rx.local_addr().unwrap()).unwrap();
    wait_readable(&rx);
    let mut batch = RecvBatch::new(4, 16);
    let mut got = Vec::new();
    while got.len() < 2 {
        if batch.recv(&rx).unwrap() == 0 {
            wait_readable(&rx);
        }
        for (p, _, t) in batch.iter() {
            got.push((p.to_vec(), t));
        }
    }
    assert_eq!(got[0], (long[..16].to_vec(), true));
    assert_eq!(got[1], (b"short".to_vec(), false));
}

#[test]
fn recv_on_an_empty_socket_returns_zero_at_once() {
    // A blocking socket: MSG_DONTWAIT must still make the call return.
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut batch = RecvBatch::new(8, 64);
    assert_eq!(batch.recv(&rx).unwrap(), 0);
    assert!(batch.is_empty());
}

#[test]
fn one_buffer_fans_out_to_50_destinations_in_one_flush() {
    let tx = sender();
    let receivers: Vec<UdpSocket> = (0..50).map(|_| receiver()).collect();
    let buf = payload(7, 128);
    let mut batch = SendBatch::new(64);
    for r in &receivers {
        batch.push(&buf, r.local_addr().unwrap()).unwrap();
    }
    let res = batch.flush(&tx);
    assert_eq!((res.sent, res.failed, res.remaining), (50, 0, 0));
    assert_eq!(res.syscalls, 1);
    assert_eq!(res.first_error, None);
    assert!(batch.is_empty());
    for r in &receivers {
        let got = collect(r, 1);
        assert_eq!(got[0].0, buf);
        assert_eq!(got[0].1, tx.local_addr().unwrap());
    }
}

#[test]
fn a_datagram_the_kernel_refuses_is_skipped_and_the_rest_still_go() {
    // An IPv6 destination on an IPv4 socket fails that one datagram (EAFNOSUPPORT).
    let tx = sender();
    let (g1, g2) = (receiver(), receiver());
    let mut batch = SendBatch::new(8);
    batch.push(b"one", g1.local_addr().unwrap()).unwrap();
    batch.push(b"bad", "[::1]:9".parse().unwrap()).unwrap();
    batch.push(b"two", g2.local_addr().unwrap()).unwrap();
    let res = batch.flush(&tx);
    assert_eq!((res.sent, res.failed, res.remaining), (2, 1, 0));
    assert_eq!(res.first_error.map(|e| e.0), Some(libc::EAFNOSUPPORT));
    assert_eq!(collect(&g1, 1)[0].0, b"one");
    assert_eq!(collect(&g2, 1)[0].0, b"two");
}

#[test]
fn econnrefused_from_an_earlier_icmp_does_not_lose_good_datagrams() {
    // A closed port: bind, learn the port, close.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // The kernel only records ICMP errors on a connected UDP socket (or with IP_RECVERR), so
    // connect the sender to the closed port, and prime the error with one send.
    let tx = sender();
    tx.connect(closed).unwrap();
    tx.send(b"prime").unwrap();
    let (g1, g2) = (receiver(), receiver());
    let mut batch = SendBatch::new(8);
    batch.push(b"good-1", g1.local_addr().unwrap()).unwrap();
    batch.push(b"refused", closed).unwrap();
    batch.push(b"good-2", g2.local_addr().unwrap()).unwrap();
    let res = batch.flush(&tx);
    // The pending ECONNREFUSED is reported on whichever datagram comes next (good-1, and again
    // on good-2 after the closed one); each is retried once, so nothing good is lost.
    assert_eq!(
        res.first_error.map(|e| e.kind()),
        Some(ErrorKind::ConnectionRefused)
    );
    assert!(res.errors >= 1);
    assert_eq!((res.sent, res.failed, res.remaining), (3, 0, 0));
    assert_eq!(collect(&g1, 1)[0].0, b"good-1");
    assert_eq!(collect(&g2, 1)[0].0, b"good-2");
}

fn gso_or_skip(sock: &UdpSocket) -> Option<Arc<Gso>> {
    let gso = Gso::probe(sock);
    if !gso.is_enabled() {
        eprintln!("skipped: the UDP_SEGMENT probe says this kernel has no UDP GSO");
        return None;
    }
    Some(Arc::new(gso))
}

#[test]
fn gso_sends_40_equal_datagrams_that_arrive_separately_in_order() {
    let tx = sender();
    let Some(gso) = gso_or_skip(&tx) else { return };
    let rx = receiver();
    let to = rx.local_addr().unwrap();
    let payloads: Vec<Vec<u8>> = (0..40).map(|i| payload(i, 200)).collect();
    for use_gso in [true, false] {
        let mut batch = SendBatch::new(64).with_gso(use_gso.then(|| gso.clone()));
        for p in &payloads {
            batch.push(p, to).unwrap();
        }
        let res = batch.flush(&tx);
        assert_eq!((res.sent, res.failed, res.remaining), (40, 0, 0));
        assert_eq!(res.syscalls, 1);
        if use_gso {
            assert_eq!((res.gso_messages, res.gso_datagrams), (1, 40));
        } else {
            assert_eq!(res.gso_messages, 0);
        }
        let got = collect(&rx, 40);
        for (i, (p, from)) in got.iter().enumerate() {
            assert_eq!(p, &payloads[i], "datagram {i}, gso {use_gso}");
            assert_eq!(*from, tx.local_addr().unwrap());
        }
    }
    assert!(
        gso.is_enabled(),
        "loopback GSO must not have been turned off"
    );
}

#[test]
fn mixed_lengths_and_destinations_split_into_gso_and_single_messages() {
    let tx = sender();
    let Some(gso) = gso_or_skip(&tx) else { return };
    let (a, b) = (receiver(), receiver());
    let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    // (destination, length): runs A x3 (last shorter), A x1, B x4, B x2 of a new length,
    // A x1 longer, and one datagram too large for a GSO segment (sent alone).
    let plan: Vec<(SocketAddr, usize)> = vec![
        (to_a, 300),
        (to_a, 300),
        (to_a, 120),
        (to_a, 300),
        (to_b, 64),
        (to_b, 64),
        (to_b, 64),
        (to_b, 64),
        (to_b, 500),
        (to_b, 500),
        (to_a, 900),
        (to_a, 1600),
        (to_a, 1600),
    ];
    let payloads: Vec<Vec<u8>> = plan
        .iter()
        .enumerate()
        .map(|(i, (_, l))| payload(i, *l))
        .collect();
    let mut batch = SendBatch::new(32).with_gso(Some(gso));
    for (p, (to, _)) in payloads.iter().zip(&plan) {
        batch.push(p, *to).unwrap();
    }
    let res = batch.flush(&tx);
    assert_eq!((res.sent, res.failed, res.remaining), (13, 0, 0));
    // GSO runs: A[0..3], B[4..8], B[8..10]; singles: 3, 10, 11, 12.
    assert_eq!((res.gso_messages, res.gso_datagrams), (3, 9));
    let want = |to: SocketAddr| -> Vec<Vec<u8>> {
        plan.iter()
            .zip(&payloads)
            .filter(|((d, _), _)| *d == to)
            .map(|(_, p)| p.clone())
            .collect()
    };
    let got_a: Vec<Vec<u8>> = collect(&a, 7).into_iter().map(|(p, _)| p).collect();
    let got_b: Vec<Vec<u8>> = collect(&b, 6).into_iter().map(|(p, _)| p).collect();
    assert_eq!(got_a, want(to_a));
    assert_eq!(got_b, want(to_b));
}

#[test]
fn gso_and_batches_work_over_ipv6_loopback() {
    let Ok(rx) = UdpSocket::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    };
    rx.set_read_timeout(Some(WAIT)).unwrap();
    let tx = bind_udp("[::1]:0".parse().unwrap(), false, None, None).unwrap();
    let gso = Arc::new(Gso::probe(&tx));
    let to = rx.local_addr().unwrap();
    let payloads: Vec<Vec<u8>> = (0..10).map(|i| payload(i, 100)).collect();
    let mut batch = SendBatch::new(16).with_gso(Some(gso.clone()));
    for p in &payloads {
        batch.push(p, to).unwrap();
    }
    let res = batch.flush(&tx);
    assert_eq!((res.sent, res.failed), (10, 0));
    if gso.is_enabled() {
        assert_eq!(res.gso_datagrams, 10);
    }
    wait_readable(&rx);
    let mut rb = RecvBatch::new(16, 256);
    let mut got = Vec::new();
    while got.len() < 10 {
        if rb.recv(&rx).unwrap() == 0 {
            wait_readable(&rx);
        }
        for (p, from, t) in rb.iter() {
            assert!(!t);
            assert_eq!(from, tx.local_addr().unwrap());
            got.push(p.to_vec());
        }
    }
    assert_eq!(got, payloads);
}
