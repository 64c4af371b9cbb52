//! The Messenger gateway end to end over loopback multicast and real UDP / TCP patrons, under
//! both drivers (every test runs once per driver; the io_uring run prints a reason and passes
//! if the kernel has no io_uring). Keepalive and expiry timing are tested in simulated time in
//! `proto::messenger`; here the engine's wiring is checked: admission, forwarding rules, bad
//! input, and shutdown.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use oscgate::config::{Config, Driver};
use oscgate::engine::counters::C;
use oscgate::engine::Engine;
use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};
use socket2::{Domain, Protocol, Socket, Type};

mod common;
use common::Frames;

const GW_PREFIX: &str = "/messenger/gateway";

/// A group no other test uses: 239.255.77.N on a port from the pid, below the ephemeral
/// range (an unbound sender is given a wildcard ephemeral port, which a later bind to the
/// group on the same port would collide with).
fn fresh_group() -> SocketAddrV4 {
    static NEXT: AtomicU16 = AtomicU16::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let port = 20_000 + (std::process::id() % 10_000) as u16 + n;
    SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, (n % 250) as u8 + 1), port)
}

struct Gw {
    engine: Option<Engine>,
    addr: SocketAddr,
    group: SocketAddrV4,
}

impl Gw {
    fn start(driver: Driver, extra: &str) -> Gw {
        Gw::start_with(driver, "", extra)
    }

    /// `engine` goes into `[engine]`, `extra` into `[messenger]`.
    fn start_with(driver: Driver, engine: &str, extra: &str) -> Gw {
        let group = fresh_group();
        let toml = format!(
            "[engine]\nworkers = 2\npin_workers = false\n{engine}\n[oschat]\nenabled = false\n[http]\nenabled = false\n\
             [router]\nenabled = false\n\
             [messenger]\ngroup = \"{group}\"\ninterface = \"127.0.0.1\"\nlisten = \"127.0.0.1:0\"\n\
             ttl = 0\n{extra}"
        );
        let cfg = Config::from_toml(&toml).unwrap();
        let engine = Engine::start(&cfg, Some(driver)).unwrap();
        let addr = engine.bound().messenger.unwrap();
        Gw {
            engine: Some(engine),
            addr,
            group,
        }
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    fn counter(&self, c: C) -> u64 {
        self.engine().counters()[c as usize]
    }

    /// Waits until the published membership has `n` patrons.
    fn wait_members(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.engine().members().len() != n {
            assert!(
                Instant::now() < deadline,
                "membership never reached {n}: {:?}",
                self.engine().members()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn msg(addr: &str, args: Vec<OscType>) -> Vec<u8> {
    rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    }))
    .unwrap()
}

fn decode(b: &[u8]) -> OscPacket {
    rosc::decoder::decode_udp(b).unwrap().1
}

fn address_of(b: &[u8]) -> String {
    match decode(b) {
        OscPacket::Message(m) => m.addr,
        OscPacket::Bundle(_) => "#bundle".into(),
    }
}

/// A UDP patron.
struct Udp {
    sock: UdpSocket,
    gw: SocketAddr,
    uid: String,
}

impl Udp {
    fn new(gw: SocketAddr, uid: &str) -> Udp {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Udp {
            sock,
            gw,
            uid: uid.into(),
        }
    }

    fn send(&self, p: &[u8]) {
        self.sock.send_to(p, self.gw).unwrap();
    }

    fn request(&self) {
        self.send(&msg(
            "/messenger/gateway/me/request",
            vec![OscType::String(self.uid.clone())],
        ));
    }

    /// Next packet that is not a keepalive, within `wait`.
    fn next(&self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 65536];
        while Instant::now() < deadline {
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                assert_eq!(from, self.gw, "packets come from the patron port");
                let p = buf[..n].to_vec();
                if address_of(&p) == "/messenger/gateway/who/active" {
                    self.send(&msg(
                        "/messenger/gateway/me/patron",
                        vec![OscType::String(self.uid.clone())],
                    ));
                    continue;
                }
                return Some(p);
            }
        }
        None
    }

    /// Requests and waits for the answer's address.
    fn join(&self) -> OscMessage {
        self.request();
        let p = self
            .next(Duration::from_secs(3))
            .expect("no answer to request");
        match decode(&p) {
            OscPacket::Message(m) => m,
            OscPacket::Bundle(_) => panic!("bundle in answer"),
        }
    }

    fn expect(&self, want: &[u8]) {
        let got = self.next(Duration::from_secs(3)).expect("nothing arrived");
        assert_eq!(got, want);
    }

    fn expect_nothing(&self, wait: Duration) {
        if let Some(p) = self.next(wait) {
            panic!("unexpected packet {:?}", decode(&p));
        }
    }
}

/// Listener on the group (loopback), and a sender to it.
fn group_listener(g: SocketAddrV4) -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&SocketAddr::V4(g).into()).unwrap();
    s.join_multicast_v4(g.ip(), &Ipv4Addr::LOCALHOST).unwrap();
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn group_sender() -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    s.set_multicast_ttl_v4(0).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    s.into()
}

fn read_group(l: &UdpSocket) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = l.recv(&mut buf) {
        got.push(buf[..n].to_vec());
    }
    got
}

crate::both_drivers!(
    request_is_accepted_once_and_rerequest_is_not_duplicated,
    group_reaches_every_patron_and_patrons_reach_group_and_each_other,
    gateway_messages_and_strangers_are_never_forwarded,
    garbage_and_bad_bundles_are_counted_and_others_keep_being_served,
    requests_beyond_max_patrons_are_denied,
    a_source_outside_allow_is_denied,
    leave_removes_at_once,
    tcp_patrons_in_both_framings_join_and_exchange,
    giant_length_prefix_and_bad_slip_close_only_that_connection,
    shutdown_tells_every_patron,
    a_tcp_reader_that_stops_reading_is_cut_off_and_others_keep_up,
    a_full_control_queue_drops_and_counts_and_forwarding_goes_on,
);

fn request_is_accepted_once_and_rerequest_is_not_duplicated(d: Driver) {
    let gw = Gw::start(d, "");
    let p = Udp::new(gw.addr, "P1");
    let a = p.join();
    assert_eq!(a.addr, "/messenger/gateway/me/accept");
    assert_eq!(a.args.len(), 2);
    assert_eq!(a.args[1], OscType::String("P1".into()));
    gw.wait_members(1);
    let again = p.join();
    assert_eq!(again.addr, "/messenger/gateway/me/accept");
    gw.wait_members(1);
}

fn group_reaches_every_patron_and_patrons_reach_group_and_each_other(d: Driver) {
    let gw = Gw::start(d, "");
    let a = Udp::new(gw.addr, "A");
    let b = Udp::new(gw.addr, "B");
    assert_eq!(a.join().addr, "/messenger/gateway/me/accept");
    assert_eq!(b.join().addr, "/messenger/gateway/me/accept");
    gw.wait_members(2);
    let listener = group_listener(gw.group);
    let sender = group_sender();
    // Group -> every patron, bytes untouched, every type.
    let m = msg(
        "/cue/go",
        vec![
            OscType::Int(7),
            OscType::Float(0.5),
            OscType::String("hi".into()),
            OscType::Blob(vec![1, 2, 3]),
            OscType::Long(1 << 40),
            OscType::Double(2.5),
            OscType::Bool(true),
        ],
    );
    sender.send_to(&m, gw.group).unwrap();
    a.expect(&m);
    b.expect(&m);
    // Bundles whole.
    let bundle = rosc::encoder::encode(&OscPacket::Bundle(OscBundle {
        timetag: OscTime::from((1, 2)),
        content: vec![
            OscPacket::Message(OscMessage {
                addr: "/a".into(),
                args: vec![OscType::Int(1)],
            }),
            OscPacket::Message(OscMessage {
                addr: "/b".into(),
                args: vec![],
            }),
        ],
    }))
    .unwrap();
    sender.send_to(&bundle, gw.group).unwrap();
    a.expect(&bundle);
    b.expect(&bundle);
    read_group(&listener); // what the test sender itself put on the group
                           // Patron -> group and every other patron, never back to the sender; once each (the
                           // gateway does not hear its own group send and forward it again).
    let from_a = msg("/fader/1", vec![OscType::Float(0.25)]);
    a.send(&from_a);
    b.expect(&from_a);
    assert_eq!(read_group(&listener), vec![from_a.clone()]);
    a.expect_nothing(Duration::from_millis(200));
    b.expect_nothing(Duration::from_millis(100));
    assert!(
        gw.counter(C::DroppedSelf) >= 1,
        "own group send was heard and dropped"
    );
}

fn gateway_messages_and_strangers_are_never_forwarded(d: Driver) {
    let gw = Gw::start(d, "");
    let a = Udp::new(gw.addr, "A");
    let b = Udp::new(gw.addr, "B");
    a.join();
    b.join();
    gw.wait_members(2);
    let listener = group_listener(gw.group);
    let sender = group_sender();
    // From the group: a gateway message is dropped, not forwarded.
    sender
        .send_to(&msg(&format!("{GW_PREFIX}/who/active"), vec![]), gw.group)
        .unwrap();
    // From a patron: an unknown gateway message goes to control only.
    a.send(&msg(&format!("{GW_PREFIX}/something/else"), vec![]));
    // A bundle carrying a gateway message is not forwarded either.
    let sneaky = rosc::encoder::encode(&OscPacket::Bundle(OscBundle {
        timetag: OscTime::from((0, 1)),
        content: vec![OscPacket::Message(OscMessage {
            addr: format!("{GW_PREFIX}/me/leave"),
            args: vec![OscType::String("B".into())],
        })],
    }))
    .unwrap();
    a.send(&sneaky);
    // A stranger's traffic reaches nobody.
    let stranger = Udp::new(gw.addr, "S");
    stranger.send(&msg("/hello", vec![]));
    a.expect_nothing(Duration::from_millis(300));
    b.expect_nothing(Duration::from_millis(100));
    let heard: Vec<_> = read_group(&listener)
        .into_iter()
        .filter(|p| !address_of(p).starts_with(GW_PREFIX))
        .collect();
    assert!(heard.is_empty(), "forwarded to the group: {heard:?}");
    assert!(gw.counter(C::DroppedReserved) >= 2);
    assert!(gw.counter(C::DroppedNoRoute) >= 1);
    gw.wait_members(2);
}

fn garbage_and_bad_bundles_are_counted_and_others_keep_being_served(d: Driver) {
    let gw = Gw::start(d, "");
    let a = Udp::new(gw.addr, "A");
    let b = Udp::new(gw.addr, "B");
    a.join();
    b.join();
    gw.wait_members(2);
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    for p in [
        &b""[..],
        b"x",
        b"/no/terminator",
        b"#bundle\0\0\0\0\0",
        b"#bundle\0\0\0\0\0\0\0\0\0\0\0\0\x10/a\0\0",
        &[0xffu8; 1500][..],
    ] {
        junk.send_to(p, gw.addr).unwrap();
        a.send(p);
    }
    // A datagram too long for the receive buffer is dropped as truncated.
    a.send(&vec![b'/'; 20_000]);
    let ok = msg("/still/ok", vec![OscType::Int(1)]);
    a.send(&ok);
    b.expect(&ok);
    assert!(
        gw.counter(C::BadPacket) >= 5,
        "{:?}",
        gw.engine().counters()
    );
    assert_eq!(gw.counter(C::Truncated), 1);
    assert!(!gw.engine().is_degraded());
}

fn requests_beyond_max_patrons_are_denied(d: Driver) {
    let gw = Gw::start(d, "max_patrons = 2\n");
    let ps: Vec<_> = (0..3)
        .map(|i| Udp::new(gw.addr, &format!("P{i}")))
        .collect();
    assert_eq!(ps[0].join().addr, "/messenger/gateway/me/accept");
    assert_eq!(ps[1].join().addr, "/messenger/gateway/me/accept");
    let deny = ps[2].join();
    assert_eq!(deny.addr, "/messenger/gateway/me/deny");
    gw.wait_members(2);
    // The two admitted still work.
    let m = msg("/x", vec![]);
    ps[0].send(&m);
    ps[1].expect(&m);
    ps[2].expect_nothing(Duration::from_millis(150));
}

fn a_source_outside_allow_is_denied(d: Driver) {
    let gw = Gw::start(d, "allow = [\"10.0.0.0/8\"]\n");
    let p = Udp::new(gw.addr, "P");
    assert_eq!(p.join().addr, "/messenger/gateway/me/deny");
    gw.wait_members(0);
}

fn leave_removes_at_once(d: Driver) {
    let gw = Gw::start(d, "");
    let a = Udp::new(gw.addr, "A");
    let b = Udp::new(gw.addr, "B");
    a.join();
    b.join();
    gw.wait_members(2);
    a.send(&msg(
        "/messenger/gateway/me/leave",
        vec![OscType::String("A".into())],
    ));
    gw.wait_members(1);
    let m = msg("/after/leave", vec![]);
    a.send(&m);
    b.expect_nothing(Duration::from_millis(200));
}

/// A TCP patron with len32 or SLIP framing.
struct Tcp {
    s: TcpStream,
    frames: Frames,
}

impl Tcp {
    fn connect(gw: SocketAddr, slip: bool) -> Tcp {
        let s = TcpStream::connect(gw).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Tcp {
            s,
            frames: Frames::new(slip),
        }
    }

    fn send(&mut self, p: &[u8]) {
        let mut f = Vec::new();
        if self.frames.slip {
            oscgate::wire::framing::encode_slip(p, &mut f);
        } else {
            oscgate::wire::framing::encode_len32(p, &mut f).unwrap();
        }
        self.s.write_all(&f).unwrap();
    }

    fn next(&mut self, uid: &str, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(p) = self.frames.take() {
                if address_of(&p) == "/messenger/gateway/who/active" {
                    let r = msg(
                        "/messenger/gateway/me/patron",
                        vec![OscType::String(uid.into())],
                    );
                    self.send(&r);
                    continue;
                }
                return Some(p);
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.frames.push(&chunk[..n]),
                Err(_) => {}
            }
        }
    }

    fn join(&mut self, uid: &str) -> String {
        self.send(&msg(
            "/messenger/gateway/me/request",
            vec![OscType::String(uid.into())],
        ));
        let p = self.next(uid, Duration::from_secs(3)).expect("no answer");
        address_of(&p)
    }

    fn closed(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut chunk = [0u8; 4096];
        while Instant::now() < deadline {
            match self.s.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => {}
            }
        }
        false
    }
}

fn tcp_patrons_in_both_framings_join_and_exchange(d: Driver) {
    let gw = Gw::start(d, "");
    let mut t1 = Tcp::connect(gw.addr, false);
    let mut t2 = Tcp::connect(gw.addr, true);
    let u = Udp::new(gw.addr, "U");
    assert_eq!(t1.join("T1"), "/messenger/gateway/me/accept");
    assert_eq!(t2.join("T2"), "/messenger/gateway/me/accept");
    u.join();
    gw.wait_members(3);
    let listener = group_listener(gw.group);
    let sender = group_sender();
    let m = msg(
        "/from/group",
        vec![
            OscType::String("x\u{c0}\u{db}".into()),
            OscType::Blob(vec![0xC0, 0xDB, 0xC0]),
        ],
    );
    sender.send_to(&m, gw.group).unwrap();
    assert_eq!(t1.next("T1", Duration::from_secs(3)).unwrap(), m);
    assert_eq!(t2.next("T2", Duration::from_secs(3)).unwrap(), m);
    u.expect(&m);
    read_group(&listener);
    // TCP patron -> group, the UDP patron and the other TCP patron, not back to itself.
    let m2 = msg("/from/t1", vec![OscType::Int(2)]);
    t1.send(&m2);
    u.expect(&m2);
    assert_eq!(t2.next("T2", Duration::from_secs(3)).unwrap(), m2);
    assert_eq!(read_group(&listener), vec![m2.clone()]);
    assert_eq!(t1.next("T1", Duration::from_millis(200)), None);
    // Many frames keep their order.
    for i in 0..500 {
        t2.send(&msg("/seq", vec![OscType::Int(i)]));
    }
    for i in 0..500 {
        let p = t1.next("T1", Duration::from_secs(3)).expect("lost a frame");
        assert_eq!(p, msg("/seq", vec![OscType::Int(i)]));
    }
    // A burst larger than one read's budget (256 KiB) in a single write: the rest is read
    // in the next turns, not left in the socket until more data comes.
    let mut burst = Vec::new();
    for i in 0..600 {
        let m = msg("/big", vec![OscType::Int(i), OscType::Blob(vec![9; 1024])]);
        oscgate::wire::framing::encode_slip(&m, &mut burst);
    }
    t2.s.write_all(&burst).unwrap();
    for i in 0..600 {
        let p = t1
            .next("T1", Duration::from_secs(3))
            .unwrap_or_else(|| panic!("frame {i} of the burst never arrived"));
        assert_eq!(
            p,
            msg("/big", vec![OscType::Int(i), OscType::Blob(vec![9; 1024])])
        );
    }
}

fn giant_length_prefix_and_bad_slip_close_only_that_connection(d: Driver) {
    let gw = Gw::start(d, "");
    let u = Udp::new(gw.addr, "U");
    u.join();
    let mut good = Tcp::connect(gw.addr, false);
    assert_eq!(good.join("G"), "/messenger/gateway/me/accept");
    gw.wait_members(2);
    // A length prefix far over tcp.max_frame: fatal, that connection is closed.
    let mut giant = Tcp::connect(gw.addr, false);
    giant.s.write_all(&0x7fff_fff0u32.to_be_bytes()).unwrap();
    giant.s.write_all(&[0u8; 64]).unwrap();
    assert!(
        giant.closed(),
        "giant length prefix did not close the connection"
    );
    // A bad SLIP escape drops that frame only; the connection carries on.
    let mut slip = Tcp::connect(gw.addr, true);
    assert_eq!(slip.join("S"), "/messenger/gateway/me/accept");
    gw.wait_members(3);
    slip.s.write_all(&[0xC0, b'/', 0xDB, 0x01, 0xC0]).unwrap();
    let after = msg("/after/bad/slip", vec![]);
    slip.send(&after);
    u.expect(&after);
    assert_eq!(good.next("G", Duration::from_secs(3)).unwrap(), after);
    // A peer that disconnects mid-frame is just closed.
    let mut half = Tcp::connect(gw.addr, false);
    half.s.write_all(&[0, 0, 0, 64, b'/', b'a']).unwrap();
    drop(half);
    let last = msg("/still/served", vec![]);
    u.send(&last);
    assert_eq!(good.next("G", Duration::from_secs(3)).unwrap(), last);
    assert!(gw.counter(C::TcpFatal) >= 1);
    assert!(gw.counter(C::TcpBadFrame) >= 1);
}

fn shutdown_tells_every_patron(d: Driver) {
    let mut gw = Gw::start(d, "");
    let u = Udp::new(gw.addr, "U");
    u.join();
    let mut t = Tcp::connect(gw.addr, false);
    assert_eq!(t.join("T"), "/messenger/gateway/me/accept");
    gw.wait_members(2);
    gw.engine.take().unwrap().stop().unwrap();
    let p = u
        .next(Duration::from_secs(3))
        .expect("no shutdown over UDP");
    assert_eq!(address_of(&p), "/messenger/gateway/me/shutdown");
    let p = t
        .next("T", Duration::from_secs(3))
        .expect("no shutdown over TCP");
    assert_eq!(address_of(&p), "/messenger/gateway/me/shutdown");
}

fn a_tcp_reader_that_stops_reading_is_cut_off_and_others_keep_up(d: Driver) {
    let gw = Gw::start_with(d, "[tcp]\nslow_reader_ms = 300", "");
    // The stalled patron asks for a tiny receive buffer so the gateway's queue fills soon.
    let stalled = {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        s.connect(&gw.addr.into()).unwrap();
        let s: TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Tcp {
            s,
            frames: Frames::new(false),
        }
    };
    let mut stalled = stalled;
    assert_eq!(stalled.join("STALLED"), "/messenger/gateway/me/accept");
    let mut reader = Tcp::connect(gw.addr, true);
    assert_eq!(reader.join("READER"), "/messenger/gateway/me/accept");
    gw.wait_members(2);

    // 16 MB from the group: far more than the stalled patron's queue (4 MiB) and socket
    // buffers can hold. The reader must get every message, in order.
    const N: i32 = 16_000;
    let collect = std::thread::spawn(move || {
        let mut seqs = Vec::with_capacity(N as usize);
        while seqs.len() < N as usize {
            let Some(p) = reader.next("READER", Duration::from_secs(10)) else {
                break;
            };
            if let OscPacket::Message(m) = decode(&p) {
                if m.addr == "/flood" {
                    if let Some(OscType::Int(i)) = m.args.first() {
                        seqs.push(*i);
                    }
                }
            }
        }
        (seqs, reader)
    });
    let sender = group_sender();
    for i in 0..N {
        sender
            .send_to(
                &msg(
                    "/flood",
                    vec![OscType::Int(i), OscType::Blob(vec![0x5a; 1000])],
                ),
                gw.group,
            )
            .unwrap();
        if i % 20 == 19 {
            // Paced (about 10 MB/s) so that the loopback socket buffers never drop and the
            // reader, a debug build, keeps up: any loss here would be the gateway's.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let (seqs, _reader) = collect.join().unwrap();
    let first_gap = seqs.iter().zip(0..).find(|(s, i)| **s != *i);
    assert!(
        first_gap.is_none() && seqs.len() == N as usize,
        "the reader got {} of {N}; first difference at {first_gap:?}; dropped {} closed {}",
        seqs.len(),
        gw.counter(C::TcpSlowDropped),
        gw.counter(C::TcpSlowClosed),
    );
    assert!(gw.counter(C::TcpSlowDropped) >= 1, "nothing was dropped");
    assert_eq!(gw.counter(C::TcpSlowClosed), 1);
    // The stalled connection was closed (what it holds can still be read) and its patron
    // removed; the reader stays.
    assert!(stalled.closed(), "the stalled connection is still open");
    gw.wait_members(1);
}

fn a_full_control_queue_drops_and_counts_and_forwarding_goes_on(d: Driver) {
    let gw = Gw::start_with(d, "control_queue = 4", "");
    let p = Udp::new(gw.addr, "P");
    p.join();
    gw.wait_members(1);
    // A stranger floods control packets faster than a 4-slot queue can take them.
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let req = msg(
        "/messenger/gateway/me/request",
        vec![OscType::String("FLOOD".into())],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.counter(C::ControlQueueFull) == 0 {
        assert!(Instant::now() < deadline, "the control queue never filled");
        for _ in 0..2000 {
            let _ = flood.send_to(&req, gw.addr);
        }
    }
    // Forwarding was never blocked, and the gateway still serves its patron.
    let m = msg("/after/flood", vec![OscType::Int(1)]);
    group_sender().send_to(&m, gw.group).unwrap();
    p.expect(&m);
}
