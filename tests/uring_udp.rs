//! Integration tests of the io_uring UDP primitives (`oscgate::engine::uring`) over real
//! 127.0.0.1 sockets: multishot receive, truncation, buffer reuse and the ENOBUFS re-arm,
//! zero-copy fan-out, per-destination send errors, and dropping a ring with work in flight.
//! Every test prints a reason and passes if `probe()` says io_uring is unavailable.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oscgate::engine::uring::{probe, Datagram, SendError, UringConfig, UringUdp};

fn available() -> bool {
    match probe() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipped: io_uring unavailable: {e}");
            false
        }
    }
}

fn ring(cfg: UringConfig) -> UringUdp {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut u = UringUdp::new(sock, &cfg).unwrap();
    u.submit().unwrap();
    u
}

fn addr(u: &UringUdp) -> SocketAddr {
    u.socket().local_addr().unwrap()
}

/// Waits and reaps until `want` datagrams are in `out` or 5 s pass.
fn collect(u: &mut UringUdp, out: &mut Vec<Datagram>, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while out.len() < want && Instant::now() < deadline {
        u.wait(1, Duration::from_millis(20)).unwrap();
        u.reap(out);
    }
}

/// Waits and reaps until no send is in flight (received datagrams are released).
fn drain_sends(u: &mut UringUdp) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut scratch = Vec::new();
    while u.sends_in_flight() > 0 && Instant::now() < deadline {
        u.wait(1, Duration::from_millis(20)).unwrap();
        u.reap(&mut scratch);
        for d in scratch.drain(..) {
            u.release(d);
        }
    }
    assert_eq!(u.sends_in_flight(), 0, "sends did not complete");
}

fn receiver() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// Reads everything queued on `s` without waiting.
fn read_all(s: &UdpSocket) -> Vec<Vec<u8>> {
    s.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = s.recv(&mut buf) {
        got.push(buf[..n].to_vec());
    }
    got
}

#[test]
fn receives_32_datagrams_from_two_senders_with_their_sources() {
    if !available() {
        return;
    }
    let mut u = ring(UringConfig::default());
    let to = addr(&u);
    let senders = [receiver(), receiver()];
    for i in 0..16 {
        for (k, s) in senders.iter().enumerate() {
            s.send_to(format!("s{k}-{i}").as_bytes(), to).unwrap();
        }
    }
    let mut got = Vec::new();
    collect(&mut u, &mut got, 32);
    assert_eq!(got.len(), 32);
    let mut seen: HashMap<SocketAddr, Vec<String>> = HashMap::new();
    for d in &got {
        assert!(!d.truncated());
        let text = String::from_utf8(u.payload(d).to_vec()).unwrap();
        seen.entry(d.from()).or_default().push(text);
    }
    for (k, s) in senders.iter().enumerate() {
        let want: Vec<String> = (0..16).map(|i| format!("s{k}-{i}")).collect();
        assert_eq!(seen[&s.local_addr().unwrap()], want, "sender {k}");
    }
    let (_, total) = u.buffers_in_ring();
    assert_eq!(u.buffers_in_ring(), (total - 32, total));
    for d in got {
        u.release(d);
    }
    assert_eq!(u.buffers_in_ring(), (total, total));
    assert_eq!(u.stats().received, 32);
}

#[test]
fn long_datagrams_are_truncated_and_flagged() {
    if !available() {
        return;
    }
    let mut u = ring(UringConfig {
        max_payload: 16,
        ..UringConfig::default()
    });
    let s = receiver();
    let long: Vec<u8> = (0..100).collect();
    s.send_to(&long, addr(&u)).unwrap();
    s.send_to(&long[..16], addr(&u)).unwrap();
    s.send_to(b"", addr(&u)).unwrap();
    let mut got = Vec::new();
    collect(&mut u, &mut got, 3);
    assert_eq!(got.len(), 3);
    assert!(got[0].truncated());
    assert_eq!(u.payload(&got[0]), &long[..16]);
    assert!(!got[1].truncated());
    assert_eq!(u.payload(&got[1]), &long[..16]);
    assert!(got[2].is_empty() && !got[2].truncated());
    assert_eq!(u.stats().truncated, 1);
    for d in got {
        u.release(d);
    }
}

#[test]
fn ten_thousand_datagrams_through_64_buffers_rearm_after_enobufs_and_leak_nothing() {
    if !available() {
        return;
    }
    const N: usize = 10_000;
    const BURST: usize = 100;
    let mut u = ring(UringConfig {
        recv_buffers: 64,
        max_payload: 64,
        ..UringConfig::default()
    });
    let to = addr(&u);
    let received = Arc::new(AtomicUsize::new(0));
    let rx_count = Arc::clone(&received);
    // The sender waits for each burst to be received, so the socket's queue never overflows
    // and every datagram must arrive; a burst is larger than the ring.
    let sender = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        for i in 0..N {
            s.send_to(&(i as u32).to_le_bytes(), to).unwrap();
            if (i + 1) % BURST == 0 {
                while rx_count.load(Ordering::Acquire) < i + 1 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    });
    let mut seen = vec![false; N];
    let mut held = Vec::new();
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count < N && Instant::now() < deadline {
        u.wait(1, Duration::from_millis(10)).unwrap();
        let n = u.reap(&mut held);
        count += n;
        received.store(count, Ordering::Release);
        // Hold buffers until the ring runs dry, so the kernel hits ENOBUFS.
        if u.buffers_in_ring().0 == 0 || count == N || n == 0 {
            for d in held.drain(..) {
                let p = u.payload(&d);
                let i = u32::from_le_bytes(p.try_into().unwrap()) as usize;
                assert!(!seen[i], "datagram {i} twice");
                seen[i] = true;
                u.release(d);
            }
        }
    }
    sender.join().unwrap();
    let s = u.stats();
    assert_eq!(count, N, "stats: {s:?}");
    assert!(seen.iter().all(|&b| b));
    assert_eq!(u.buffers_in_ring(), (64, 64));
    assert!(s.enobufs > 0, "the ring never ran dry: {s:?}");
    assert!(s.rearms >= s.enobufs, "{s:?}");
    assert_eq!((s.received, s.recv_errors, s.malformed), (N as u64, 0, 0));
}

#[test]
fn one_payload_fans_out_to_50_receivers_once_each() {
    if !available() {
        return;
    }
    let mut u = ring(UringConfig::default());
    let rx: Vec<UdpSocket> = (0..50).map(|_| receiver()).collect();
    let payload = Bytes::from_static(b"/fan/out\0\0\0\0,i\0\0\0\0\0\x2a");
    for r in &rx {
        u.send(payload.clone(), r.local_addr().unwrap()).unwrap();
    }
    u.submit().unwrap();
    drain_sends(&mut u);
    assert_eq!(u.stats().sent, 50);
    for r in &rx {
        let mut buf = [0u8; 64];
        let (n, from) = r.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&payload[..], addr(&u)));
        assert!(read_all(r).is_empty(), "a receiver got two copies");
    }
}

#[test]
fn a_received_buffer_fans_out_in_place_and_returns_after_its_last_send() {
    if !available() {
        return;
    }
    let mut u = ring(UringConfig {
        recv_buffers: 8,
        ..UringConfig::default()
    });
    let rx: Vec<UdpSocket> = (0..50).map(|_| receiver()).collect();
    receiver().send_to(b"in place", addr(&u)).unwrap();
    let mut got = Vec::new();
    collect(&mut u, &mut got, 1);
    let d = got.pop().unwrap();
    for r in &rx {
        u.send_received(&d, r.local_addr().unwrap()).unwrap();
    }
    u.release(d);
    assert_eq!(
        u.buffers_in_ring(),
        (7, 8),
        "returned before its sends completed"
    );
    u.submit().unwrap();
    drain_sends(&mut u);
    assert_eq!(u.buffers_in_ring(), (8, 8));
    for r in &rx {
        let mut buf = [0u8; 64];
        let n = r.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"in place");
    }
    // A handle of another ring is refused, not misread.
    let mut other = ring(UringConfig::default());
    receiver().send_to(b"x", addr(&other)).unwrap();
    let mut got = Vec::new();
    collect(&mut other, &mut got, 1);
    assert_eq!(u.payload(&got[0]), b"");
    assert_eq!(
        u.send_received(&got[0], addr(&other)),
        Err(SendError::ForeignDatagram)
    );
    other.release(got.pop().unwrap());
}

#[test]
fn failing_destinations_are_counted_and_do_not_stop_the_others() {
    if !available() {
        return;
    }
    let mut u = ring(UringConfig::default());
    let rx: Vec<UdpSocket> = (0..10).map(|_| receiver()).collect();
    let closed = receiver().local_addr().unwrap(); // socket dropped: port refuses
    let wrong_family: SocketAddr = "[::1]:9".parse().unwrap(); // IPv6 on an IPv4 socket
    let payload = Bytes::from_static(b"hello");
    for round in 0..2 {
        u.send(payload.clone(), closed).unwrap();
        u.send(payload.clone(), wrong_family).unwrap();
        for r in &rx {
            u.send(payload.clone(), r.local_addr().unwrap()).unwrap();
        }
        u.submit().unwrap();
        drain_sends(&mut u);
        for r in &rx {
            let mut buf = [0u8; 16];
            let n = r.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello", "round {round}");
        }
    }
    let s = u.stats();
    assert!(s.send_errors >= 2, "{s:?}");
    assert!(s.first_send_error.is_some());
    assert!(s.sent >= 20);
}

#[test]
fn the_slab_refuses_sends_past_its_size() {
    if !available() {
        return;
    }
    let mut u = ring(UringConfig {
        send_slots: 4,
        sq_entries: 8,
        ..UringConfig::default()
    });
    let r = receiver();
    for _ in 0..4 {
        u.send(Bytes::from_static(b"a"), r.local_addr().unwrap())
            .unwrap();
    }
    assert_eq!(
        u.send(Bytes::from_static(b"a"), r.local_addr().unwrap()),
        Err(SendError::SlabFull)
    );
    u.submit().unwrap();
    drain_sends(&mut u);
    assert_eq!(read_all(&r).len(), 4);
}

#[test]
fn dropping_a_ring_with_work_in_flight_is_clean() {
    if !available() {
        return;
    }
    let r = receiver();
    let to = r.local_addr().unwrap();
    let payload = Bytes::from(vec![7u8; 1000]);
    for _ in 0..3 {
        let mut u = ring(UringConfig {
            send_slots: 2000,
            ..UringConfig::default()
        });
        // Held datagrams, submitted sends and sends never submitted, all at once.
        receiver().send_to(b"held", addr(&u)).unwrap();
        let mut got = Vec::new();
        collect(&mut u, &mut got, 1);
        for _ in 0..1000 {
            u.send(payload.clone(), to).unwrap();
        }
        u.send_received(&got[0], to).unwrap();
        u.submit().unwrap();
        for _ in 0..500 {
            u.send(payload.clone(), to).unwrap();
        }
        assert!(u.sends_in_flight() > 0);
        drop(u);
    }
    // Whatever reached the receiver is intact; the payload is alive and unshared again.
    for d in read_all(&r) {
        assert!(d == vec![7u8; 1000] || d == b"held", "corrupt datagram");
    }
    assert!(payload.is_unique());
}

#[test]
fn one_ring_receives_on_several_sockets_and_sends_a_buffer_from_another() {
    if !available() {
        return;
    }
    let mut u = ring(UringConfig {
        recv_buffers: 8,
        ..UringConfig::default()
    });
    let second = u
        .add_socket(UdpSocket::bind("127.0.0.1:0").unwrap())
        .unwrap();
    assert_eq!((second, u.sockets()), (1, 2));
    u.submit().unwrap();
    assert!(u.receiving());
    let second_addr = u.socket_at(1).unwrap().local_addr().unwrap();
    let first_addr = addr(&u);
    let peer = receiver();
    peer.send_to(b"to the second", second_addr).unwrap();
    peer.send_to(b"to the first", first_addr).unwrap();
    let mut got = Vec::new();
    collect(&mut u, &mut got, 2);
    got.sort_by_key(|d| d.socket());
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].socket(), u.payload(&got[0])),
        (0, &b"to the first"[..])
    );
    assert_eq!(
        (got[1].socket(), u.payload(&got[1])),
        (1, &b"to the second"[..])
    );
    // The buffer received on socket 1 goes out from socket 0: the peer sees socket 0's port.
    u.send_received_on(0, &got[1], peer.local_addr().unwrap())
        .unwrap();
    assert_eq!(
        u.send_on(9, Bytes::from_static(b"x"), first_addr),
        Err(SendError::NoSocket)
    );
    for d in got.drain(..) {
        u.release(d);
    }
    u.submit().unwrap();
    drain_sends(&mut u);
    let mut buf = [0u8; 64];
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"to the second"[..], first_addr));
    assert_eq!(u.buffers_in_ring(), (8, 8));
}

#[test]
fn a_watched_fd_wakes_the_ring_each_time_it_becomes_readable() {
    if !available() {
        return;
    }
    let mut u = ring(UringConfig::default());
    let (tx, rx) = std::os::unix::net::UnixDatagram::pair().unwrap();
    rx.set_nonblocking(true).unwrap();
    use std::os::fd::AsRawFd;
    u.watch(rx.as_raw_fd()).unwrap();
    u.wait(1, Duration::from_millis(20)).unwrap();
    let mut scratch = Vec::new();
    u.reap(&mut scratch);
    assert!(!u.take_polled(), "fired with nothing to read");
    for round in 0..3 {
        tx.send(b"wake").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut fired = false;
        while !fired && Instant::now() < deadline {
            u.wait(1, Duration::from_millis(500)).unwrap();
            u.reap(&mut scratch);
            fired = u.take_polled();
        }
        assert!(fired, "round {round}: the poll did not fire");
        let mut buf = [0u8; 8];
        assert_eq!(rx.recv(&mut buf).unwrap(), 4);
    }
    assert!(scratch.is_empty());
}

#[test]
fn a_gso_run_of_received_buffers_arrives_as_separate_datagrams_and_bad_runs_are_refused() {
    if !available() {
        return;
    }
    let cfg = UringConfig {
        recv_buffers: 64,
        ..UringConfig::default()
    };
    let mut u = ring(cfg);
    let (in_ring, total) = u.buffers_in_ring();
    assert_eq!(in_ring, total);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Five of 100 bytes, then one of 60 (may end a run), then one of 100 more.
    let mut sent = Vec::new();
    for i in 0..7u8 {
        let len = if i == 5 { 60 } else { 100 };
        let p = vec![i; len];
        tx.send_to(&p, addr(&u)).unwrap();
        sent.push(p);
    }
    let mut got = Vec::new();
    collect(&mut u, &mut got, 7);
    assert_eq!(got.len(), 7);
    let rx = receiver();
    let to = rx.local_addr().unwrap();
    // Not runs: one datagram, a longer one after the first, a shorter one in the middle, an
    // IPv6 destination, an index out of range.
    for which in [&[0u32][..], &[5, 0], &[0, 5, 1], &[0, 99]] {
        assert_eq!(
            u.send_received_gso_on(0, &got, which, to),
            Err(SendError::BadGso),
            "{which:?}"
        );
    }
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    assert_eq!(
        u.send_received_gso_on(0, &got, &[0, 1], v6),
        Err(SendError::BadGso)
    );
    // A real run: 0..=5 (the shorter last), then 6 alone.
    u.send_received_gso_on(0, &got, &[0, 1, 2, 3, 4, 5], to)
        .unwrap();
    u.send_received_on(0, &got[6], to).unwrap();
    u.submit().unwrap();
    for d in got.drain(..) {
        u.release(d);
    }
    drain_sends(&mut u);
    let mut buf = [0u8; 2048];
    for want in &sent {
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &want[..]);
    }
    assert_eq!(read_all(&rx), Vec::<Vec<u8>>::new());
    let st = u.stats();
    assert_eq!((st.sent, st.gso_sent, st.send_errors), (7, 1, 0));
    // Every buffer is back in the ring.
    let (in_ring, total) = u.buffers_in_ring();
    assert_eq!(in_ring, total);
}
