//! The `Driver` interface, exercised the same way on both implementations: datagrams reach the
//! handler with their socket and source, the fan-out it names goes out from the socket it
//! names (in place), owned sends go out, mio events for the worker's own tokens reach the
//! handler, and `turn_start` runs before anything is handled. Plus both drivers' GSO path: a
//! burst of equal-size datagrams fanned out to two receivers goes out destination-major, in GSO
//! messages, each receiver getting every datagram in order.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oscgate::engine::driver::{
    Driver, Handler, Out, PollDriver, Rx, SockIdx, UringDriver, FIRST_WORKER_TOKEN,
};
use oscgate::engine::uring::UringConfig;

struct Fan {
    /// (socket to send from, destination) for every datagram.
    to: Vec<(SockIdx, SocketAddr)>,
    seen: Vec<(SockIdx, Vec<u8>, SocketAddr)>,
    events: Vec<usize>,
    starts: usize,
    owned_reply: Option<(SockIdx, SocketAddr)>,
}

impl Handler for Fan {
    fn turn_start(&mut self, _out: &mut Out) {
        self.starts += 1;
    }
    fn datagram(&mut self, rx: Rx<'_>, out: &mut Out) {
        assert!(self.starts > 0, "turn_start runs first");
        self.seen.push((rx.sock, rx.payload.to_vec(), rx.from));
        for &(s, to) in &self.to {
            assert!(out.to(s, to));
        }
        if let Some((s, to)) = self.owned_reply {
            assert!(out.send(s, Bytes::from_static(b"owned"), to));
        }
    }
    fn event(&mut self, event: &mio::event::Event, _out: &mut Out) {
        self.events.push(event.token().0);
    }
    fn turn_end(&mut self, _out: &mut Out) {}
    fn busy(&self) -> bool {
        false
    }
}

fn fan() -> Fan {
    Fan {
        to: Vec::new(),
        seen: Vec::new(),
        events: Vec::new(),
        starts: 0,
        owned_reply: None,
    }
}

fn receiver() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

fn turns_until(d: &mut impl Driver, h: &mut Fan, done: impl Fn(&Fan) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(h) {
        assert!(Instant::now() < deadline, "timed out");
        d.turn(Some(Duration::from_millis(20)), h).unwrap();
    }
}

fn contract(mut d: impl Driver) {
    let a = d.add_udp(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
    let b = d.add_udp(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
    assert_eq!((a, b), (0, 1));
    let addr_a = d.udp(a).unwrap().local_addr().unwrap();
    let addr_b = d.udp(b).unwrap().local_addr().unwrap();
    let r1 = receiver();
    let r2 = receiver();
    let peer = receiver();
    let mut h = fan();
    // Whatever arrives on socket 1 goes out from socket 0 to r1 and r2, plus an owned reply
    // from socket 1 to the peer.
    h.to = vec![(a, r1.local_addr().unwrap()), (a, r2.local_addr().unwrap())];
    h.owned_reply = Some((b, peer.local_addr().unwrap()));
    peer.send_to(b"/fan\0\0\0\0", addr_b).unwrap();
    turns_until(&mut d, &mut h, |h| !h.seen.is_empty());
    d.flush(Duration::from_secs(1));
    assert_eq!(
        h.seen[0],
        (b, b"/fan\0\0\0\0".to_vec(), peer.local_addr().unwrap())
    );
    let mut buf = [0u8; 64];
    for r in [&r1, &r2] {
        let (n, from) = r.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"/fan\0\0\0\0"[..], addr_a));
    }
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"owned"[..], addr_b));
    // An owned send outside a turn.
    d.send(a, Bytes::from_static(b"later"), peer.local_addr().unwrap());
    d.flush(Duration::from_secs(1));
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"later"[..], addr_a));
    // A worker registration's events reach the handler.
    let waker = mio::Waker::new(d.registry(), mio::Token(FIRST_WORKER_TOKEN + 7)).unwrap();
    waker.wake().unwrap();
    turns_until(&mut d, &mut h, |h| {
        h.events.contains(&(FIRST_WORKER_TOKEN + 7))
    });
    let s = d.stats();
    assert!(s.received >= 1 && s.sent >= 4, "{s:?}");
}

#[test]
fn mio_driver_keeps_the_contract() {
    contract(PollDriver::new(16).unwrap());
}

#[test]
fn uring_driver_keeps_the_contract() {
    if let Err(e) = oscgate::engine::uring::probe() {
        eprintln!("skipped: io_uring unavailable: {e}");
        return;
    }
    contract(UringDriver::new(UringConfig::default(), 16).unwrap());
}

#[test]
fn mio_fan_out_of_a_burst_uses_gso_and_keeps_order() {
    burst_uses_gso_and_keeps_order(PollDriver::new(16).unwrap());
}

#[test]
fn uring_fan_out_of_a_burst_uses_gso_and_keeps_order() {
    if let Err(e) = oscgate::engine::uring::probe() {
        eprintln!("skipped: {e}");
        return;
    }
    burst_uses_gso_and_keeps_order(UringDriver::new(UringConfig::default(), 16).unwrap());
}

fn burst_uses_gso_and_keeps_order(mut d: impl Driver) {
    let s = d.add_udp(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
    let addr = d.udp(s).unwrap().local_addr().unwrap();
    let r1 = receiver();
    let r2 = receiver();
    let mut h = fan();
    h.to = vec![(s, r1.local_addr().unwrap()), (s, r2.local_addr().unwrap())];
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..32u32 {
        let mut p = b"/seq\0\0\0\0,i\0\0".to_vec();
        p.extend_from_slice(&i.to_be_bytes());
        tx.send_to(&p, addr).unwrap();
    }
    turns_until(&mut d, &mut h, |h| h.seen.len() == 32);
    let mut buf = [0u8; 64];
    for r in [&r1, &r2] {
        for i in 0..32u32 {
            let n = r.recv(&mut buf).unwrap();
            assert_eq!(&buf[n - 4..n], &i.to_be_bytes(), "out of order");
        }
    }
    // Every send completed (the io_uring driver counts them when it reaps completions).
    d.flush(Duration::from_secs(2));
    let st = d.stats();
    assert_eq!(st.sent, 64);
    // GSO is probed per socket; where the kernel has it the burst was folded.
    let probe = oscgate::engine::udp::Gso::probe(&UdpSocket::bind("127.0.0.1:0").unwrap());
    if probe.is_enabled() {
        assert!(st.gso_messages >= 2, "{st:?}");
    }
}
