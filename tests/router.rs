//! The tcposcrouter front door end to end over loopback TCP, under both drivers: register,
//! groups, several connections per user, both framings in one group, fan-out with bytes and
//! types untouched, FIFO, private messages, pings, user lists, and bad clients (wrong
//! password, register flood, garbage, giant length prefix, mid-frame disconnect, a reader
//! that stops reading). The state machine's timers are tested in simulated time in
//! `proto::router`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use oscgate::config::{Config, Driver};
use oscgate::engine::counters::C;
use oscgate::engine::Engine;
use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};
use socket2::{Domain, Protocol, Socket, Type};

mod common;
use common::Frames;

struct Rt {
    engine: Engine,
    len32: SocketAddr,
    slip: SocketAddr,
}

impl Rt {
    fn start(d: Driver, extra: &str) -> Rt {
        let toml = format!(
            "[engine]\nworkers = 2\npin_workers = false\n[oschat]\nenabled = false\n[http]\nenabled = false\n[messenger]\nenabled = false\n\
             [router]\nlisten = \"127.0.0.1:0\"\nlisten_slip = \"127.0.0.1:0\"\n{extra}"
        );
        let engine = Engine::start(&Config::from_toml(&toml).unwrap(), Some(d)).unwrap();
        let (len32, slip) = engine.bound().router.unwrap();
        Rt {
            engine,
            len32,
            slip,
        }
    }

    fn counter(&self, c: C) -> u64 {
        self.engine.counters()[c as usize]
    }
}

fn msg(addr: &str, args: Vec<OscType>) -> Vec<u8> {
    rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    }))
    .unwrap()
}

fn s(v: &str) -> OscType {
    OscType::String(v.into())
}

fn decode(p: &[u8]) -> OscPacket {
    rosc::decoder::decode_udp(p).unwrap().1
}

fn addr_of(p: &[u8]) -> String {
    match decode(p) {
        OscPacket::Message(m) => m.addr,
        OscPacket::Bundle(_) => "#bundle".into(),
    }
}

/// A client connection, in one framing.
struct Client {
    s: TcpStream,
    frames: Frames,
}

impl Client {
    fn connect(to: SocketAddr, slip: bool) -> Client {
        let s = TcpStream::connect(to).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            s,
            frames: Frames::new(slip),
        }
    }

    fn frame(&self, p: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        if self.frames.slip {
            oscgate::wire::framing::encode_slip(p, &mut f);
        } else {
            oscgate::wire::framing::encode_len32(p, &mut f).unwrap();
        }
        f
    }

    fn send(&mut self, p: &[u8]) {
        let f = self.frame(p);
        self.s.write_all(&f).unwrap();
    }

    /// The next packet within `wait`, `None` on timeout or EOF.
    fn next(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(p) = self.frames.take() {
                return Some(p);
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.frames.push(&chunk[..n]),
                Err(_) => {}
            }
        }
    }

    fn expect(&mut self) -> Vec<u8> {
        self.next(Duration::from_secs(5)).expect("nothing arrived")
    }

    /// The next packet that is not a user list.
    fn expect_data(&mut self) -> Vec<u8> {
        loop {
            let p = self.expect();
            if addr_of(&p) != "/oscrouter/userlist" {
                return p;
            }
        }
    }

    /// Every packet but user lists arriving within `wait` of the previous one (user lists
    /// travel on another path than data, so their order against data is not fixed).
    fn nothing(&mut self, wait: Duration) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while let Some(p) = self.next(wait) {
            if addr_of(&p) != "/oscrouter/userlist" {
                got.push(p);
            }
        }
        got
    }

    /// Registers and waits for the reply; returns its address.
    fn register(&mut self, user: &str, pw: &str, group: &str, gpw: &str, id: i32) -> String {
        self.send(&msg(
            "/oscrouter/register",
            vec![s(user), s(pw), s(group), s(gpw), OscType::Int(id)],
        ));
        addr_of(&self.expect())
    }

    /// Whether the router closed the connection (EOF or reset) within a few seconds.
    fn closed(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
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

fn userlist(names: &[&str]) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: "/oscrouter/userlist".into(),
        args: names.iter().map(|n| s(n)).collect(),
    })
}

fn rich(addr: &str, i: i32) -> Vec<u8> {
    msg(
        addr,
        vec![
            OscType::Int(i),
            OscType::Float(0.25),
            s("é\u{c0}\u{db}"),
            OscType::Blob(vec![0xC0, 0xDB, 0xDC, 0xDD, 0]),
            OscType::Long(-5_000_000_000),
            OscType::Double(0.1),
            OscType::Time(OscTime::from((1, 2))),
            OscType::Char('x'),
            OscType::Bool(true),
            OscType::Nil,
            OscType::Inf,
        ],
    )
}

fn both_framings_share_a_group_and_fan_out_untouched(d: Driver) {
    let rt = Rt::start(d, "");
    let mut alice = Client::connect(rt.len32, false);
    assert_eq!(
        alice.register("alice", "a", "band", "g", 4242),
        "/oscrouter/register/alice/4242"
    );
    assert_eq!(decode(&alice.expect()), userlist(&["alice"]));
    let mut bob = Client::connect(rt.slip, true);
    assert_eq!(
        bob.register("bob", "b", "band", "g", 7),
        "/oscrouter/register/bob/7"
    );
    assert_eq!(decode(&bob.expect()), userlist(&["alice", "bob"]));
    assert_eq!(decode(&alice.expect()), userlist(&["alice", "bob"]));
    // SLIP on the length-prefix port: detected from the first byte.
    let mut carol = Client::connect(rt.len32, true);
    assert_eq!(
        carol.register("carol", "c", "band", "g", 1),
        "/oscrouter/register/carol/1"
    );
    for c in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(decode(&c.expect()), userlist(&["alice", "bob", "carol"]));
    }

    // Every type, bytes untouched, to every other user, never back.
    let m = rich("/jam/note", 1);
    alice.send(&m);
    assert_eq!(bob.expect(), m);
    assert_eq!(carol.expect(), m);
    let b = rosc::encoder::encode(&OscPacket::Bundle(OscBundle {
        timetag: OscTime::from((4_000_000_000, 0)),
        content: vec![
            OscPacket::Message(OscMessage {
                addr: "/in/bundle".into(),
                args: vec![OscType::Double(2.5), OscType::String("S".into())],
            }),
            OscPacket::Bundle(OscBundle {
                timetag: OscTime::from((0, 1)),
                content: vec![],
            }),
        ],
    }))
    .unwrap();
    bob.send(&b);
    assert_eq!(alice.expect(), b);
    assert_eq!(carol.expect(), b);
    assert_eq!(
        alice.nothing(Duration::from_millis(200)),
        Vec::<Vec<u8>>::new()
    );
    assert_eq!(
        bob.nothing(Duration::from_millis(50)),
        Vec::<Vec<u8>>::new()
    );

    // FIFO per pair, across workers and framings.
    let burst: Vec<Vec<u8>> = (0..2000).map(|i| rich("/seq", i)).collect();
    for m in &burst {
        carol.send(m);
    }
    for want in &burst {
        assert_eq!(&alice.expect(), want);
    }
    for want in &burst {
        assert_eq!(&bob.expect(), want);
    }

    // A user leaving: the others get the new list.
    drop(bob);
    assert_eq!(decode(&alice.expect()), userlist(&["alice", "carol"]));
    assert_eq!(decode(&carol.expect()), userlist(&["alice", "carol"]));
}

fn messages_pipelined_behind_the_register_are_kept_in_order(d: Driver) {
    let rt = Rt::start(d, "");
    let mut bob = Client::connect(rt.slip, true);
    bob.register("bob", "b", "band", "", 1);
    // liblo's oscsendfile does this: register and everything else in one go, no waiting.
    let mut alice = Client::connect(rt.len32, false);
    let mut bytes = alice.frame(&msg(
        "/oscrouter/register",
        vec![s("alice"), s("a"), s("band"), s(""), OscType::Int(2)],
    ));
    let burst: Vec<Vec<u8>> = (0..300).map(|i| rich("/early", i)).collect();
    for m in &burst {
        bytes.extend(alice.frame(m));
    }
    alice.s.write_all(&bytes).unwrap();
    assert_eq!(addr_of(&alice.expect()), "/oscrouter/register/alice/2");
    for want in &burst {
        assert_eq!(&bob.expect_data(), want);
    }
    // The same behind a refused register: nothing gets through.
    let mut eve = Client::connect(rt.len32, false);
    let mut bytes = eve.frame(&msg(
        "/oscrouter/register",
        vec![s("bob"), s("WRONG"), s("band"), s(""), OscType::Int(3)],
    ));
    bytes.extend(eve.frame(&msg("/sneaky", vec![])));
    eve.s.write_all(&bytes).unwrap();
    assert_eq!(addr_of(&eve.expect()), "/oscrouter/error");
    assert!(eve.closed());
    assert_eq!(
        bob.nothing(Duration::from_millis(200)),
        Vec::<Vec<u8>>::new()
    );
}

fn a_newcomer_hears_its_reply_and_the_user_list_before_any_traffic(d: Driver) {
    let rt = Rt::start(d, "");
    let mut alice = Client::connect(rt.len32, false);
    alice.register("alice", "a", "band", "", 1);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let streamer = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let m = msg("/stream", vec![OscType::Int(1)]);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..20 {
                    alice.send(&m);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    for i in 0..60 {
        let mut c = Client::connect(if i % 2 == 0 { rt.len32 } else { rt.slip }, i % 2 == 1);
        let user = format!("n{i}");
        c.send(&msg(
            "/oscrouter/register",
            vec![s(&user), s("p"), s("band"), s(""), OscType::Int(i)],
        ));
        assert_eq!(
            addr_of(&c.expect()),
            format!("/oscrouter/register/{user}/{i}")
        );
        assert_eq!(addr_of(&c.expect()), "/oscrouter/userlist", "newcomer {i}");
        // Traffic does reach it (it is a member now).
        assert_eq!(addr_of(&c.expect_data()), "/stream");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    streamer.join().unwrap();
}

fn several_connections_of_one_user(d: Driver) {
    let rt = Rt::start(d, "");
    let mut a1 = Client::connect(rt.len32, false);
    a1.register("alice", "a", "band", "", 1);
    let mut bob = Client::connect(rt.len32, false);
    bob.register("bob", "b", "band", "", 2);
    let mut a2 = Client::connect(rt.slip, true);
    assert_eq!(
        a2.register("alice", "a", "band", "", 3),
        "/oscrouter/register/alice/3"
    );
    assert_eq!(decode(&a2.expect()), userlist(&["alice", "bob"]));
    // bob -> both of alice's connections.
    let m = msg("/from/bob", vec![OscType::Int(1)]);
    bob.send(&m);
    assert_eq!(a1.expect_data(), m);
    assert_eq!(a2.expect_data(), m);
    // alice -> bob, not to her own other connection.
    let m = msg("/from/alice", vec![]);
    a1.send(&m);
    assert_eq!(bob.expect_data(), m);
    assert_eq!(
        a2.nothing(Duration::from_millis(200)),
        Vec::<Vec<u8>>::new()
    );
    // Closing one of alice's connections is not a leave.
    drop(a1);
    let m = msg("/still/here", vec![]);
    bob.send(&m);
    assert_eq!(a2.expect(), m);
    // The same name with another password is refused.
    let mut fake = Client::connect(rt.len32, false);
    assert_eq!(
        fake.register("alice", "WRONG", "band", "", 4),
        "/oscrouter/error"
    );
    assert!(fake.closed());
    assert_eq!(
        bob.nothing(Duration::from_millis(100)),
        Vec::<Vec<u8>>::new()
    );
}

fn private_messages_pings_and_other_control(d: Driver) {
    let rt = Rt::start(d, "");
    let mut alice = Client::connect(rt.len32, false);
    alice.register("alice", "a", "band", "g", 1);
    let mut bob = Client::connect(rt.slip, true);
    bob.register("bob", "b", "band", "g", 2);
    let mut carol = Client::connect(rt.len32, false);
    carol.register("carol", "c", "band", "g", 3);
    let mut other = Client::connect(rt.len32, false);
    other.register("bob", "x", "elsewhere", "g", 4);
    for c in [&mut alice, &mut bob, &mut carol, &mut other] {
        c.nothing(Duration::from_millis(100));
    }
    alice.send(&msg(
        "/oscrouter/private",
        vec![s("bob"), s("/cue"), OscType::Double(1.5), OscType::Int(7)],
    ));
    assert_eq!(
        decode(&bob.expect()),
        OscPacket::Message(OscMessage {
            addr: "/oscrouter/private".into(),
            args: vec![s("alice"), s("/cue"), OscType::Double(1.5), OscType::Int(7)],
        })
    );
    // Pings and a second register are not forwarded.
    alice.send(&msg("/oscrouter/ping", vec![s("alice")]));
    alice.send(&msg(
        "/oscrouter/register",
        vec![s("mallory"), s("m"), s("band"), s("g"), OscType::Int(9)],
    ));
    // Control messages inside a bundle (SuperCollider's sendBundle, liblo's oscsendfile) are
    // acted on as if sent alone; the rest of the bundle goes on as a bundle, first.
    alice.send(
        &rosc::encoder::encode(&OscPacket::Bundle(OscBundle {
            timetag: OscTime::from((5, 6)),
            content: vec![
                OscPacket::Message(OscMessage {
                    addr: "/oscrouter/private".into(),
                    args: vec![s("bob"), s("/secret"), OscType::Int(3)],
                }),
                OscPacket::Message(OscMessage {
                    addr: "/oscrouter/ping".into(),
                    args: vec![s("alice")],
                }),
                OscPacket::Message(OscMessage {
                    addr: "/public".into(),
                    args: vec![OscType::Float(0.5)],
                }),
            ],
        }))
        .unwrap(),
    );
    let public = rosc::encoder::encode(&OscPacket::Bundle(OscBundle {
        timetag: OscTime::from((5, 6)),
        content: vec![OscPacket::Message(OscMessage {
            addr: "/public".into(),
            args: vec![OscType::Float(0.5)],
        })],
    }))
    .unwrap();
    let private = msg(
        "/oscrouter/private",
        vec![s("alice"), s("/secret"), OscType::Int(3)],
    );
    let after = msg("/after", vec![]);
    alice.send(&after);
    assert_eq!(bob.expect(), public);
    assert_eq!(bob.expect(), private);
    assert_eq!(bob.expect(), after);
    assert_eq!(carol.expect(), public);
    assert_eq!(carol.expect(), after);
    assert_eq!(
        other.nothing(Duration::from_millis(200)),
        Vec::<Vec<u8>>::new()
    );
    assert_eq!(
        alice.nothing(Duration::from_millis(50)),
        Vec::<Vec<u8>>::new()
    );
}

fn a_register_wrapped_in_a_bundle_is_accepted_and_the_rest_goes_on(d: Driver) {
    let rt = Rt::start(d, "");
    let mut bob = Client::connect(rt.slip, true);
    bob.register("bob", "b", "band", "", 1);
    // What liblo's oscsendfile sends: one immediate bundle with every line of the file.
    let mut lo = Client::connect(rt.len32, false);
    let first = rosc::encoder::encode(&OscPacket::Bundle(OscBundle {
        timetag: OscTime::from((0, 1)),
        content: vec![
            OscPacket::Message(OscMessage {
                addr: "/oscrouter/register".into(),
                args: vec![s("lo"), s("p"), s("band"), s(""), OscType::Int(8)],
            }),
            OscPacket::Message(OscMessage {
                addr: "/lo/one".into(),
                args: vec![OscType::Int(1), s("x")],
            }),
            OscPacket::Message(OscMessage {
                addr: "/lo/two".into(),
                args: vec![OscType::Double(2.0)],
            }),
        ],
    }))
    .unwrap();
    lo.send(&first);
    assert_eq!(addr_of(&lo.expect()), "/oscrouter/register/lo/8");
    let rest = rosc::encoder::encode(&OscPacket::Bundle(OscBundle {
        timetag: OscTime::from((0, 1)),
        content: vec![
            OscPacket::Message(OscMessage {
                addr: "/lo/one".into(),
                args: vec![OscType::Int(1), s("x")],
            }),
            OscPacket::Message(OscMessage {
                addr: "/lo/two".into(),
                args: vec![OscType::Double(2.0)],
            }),
        ],
    }))
    .unwrap();
    assert_eq!(bob.expect_data(), rest);
    // The same in separate bundles, hanging up at once (oscsendfile with time tags): what
    // was sent behind the register still goes out, then the user leaves.
    let mut quick = Client::connect(rt.len32, false);
    let mut bytes = quick.frame(
        &rosc::encoder::encode(&OscPacket::Bundle(OscBundle {
            timetag: OscTime::from((0, 1)),
            content: vec![OscPacket::Message(OscMessage {
                addr: "/oscrouter/register".into(),
                args: vec![s("quick"), s("p"), s("band"), s(""), OscType::Int(9)],
            })],
        }))
        .unwrap(),
    );
    let later = rosc::encoder::encode(&OscPacket::Bundle(OscBundle {
        timetag: OscTime::from((3, 4)),
        content: vec![OscPacket::Message(OscMessage {
            addr: "/quick/data".into(),
            args: vec![OscType::Int(7)],
        })],
    }))
    .unwrap();
    bytes.extend(quick.frame(&later));
    quick.s.write_all(&bytes).unwrap();
    drop(quick);
    assert_eq!(bob.expect_data(), later);
    // A bundle whose first message is not a register is refused like any other first packet.
    let mut bad = Client::connect(rt.len32, false);
    bad.send(
        &rosc::encoder::encode(&OscPacket::Bundle(OscBundle {
            timetag: OscTime::from((0, 1)),
            content: vec![
                OscPacket::Message(OscMessage {
                    addr: "/first".into(),
                    args: vec![],
                }),
                OscPacket::Message(OscMessage {
                    addr: "/oscrouter/register".into(),
                    args: vec![s("x"), s("p"), s("band"), s(""), OscType::Int(9)],
                }),
            ],
        }))
        .unwrap(),
    );
    assert_eq!(addr_of(&bad.expect()), "/oscrouter/error");
    assert!(bad.closed());
    assert_eq!(
        bob.nothing(Duration::from_millis(200)),
        Vec::<Vec<u8>>::new()
    );
}

fn bad_clients_are_refused_and_others_keep_being_served(d: Driver) {
    let rt = Rt::start(d, "max_users = 12\n");
    let mut alice = Client::connect(rt.len32, false);
    alice.register("alice", "a", "band", "g", 1);
    let mut bob = Client::connect(rt.len32, true);
    bob.register("bob", "b", "band", "g", 2);
    alice.nothing(Duration::from_millis(100));
    bob.nothing(Duration::from_millis(50));

    // Wrong group password: an error, then the connection is closed.
    let mut wrong = Client::connect(rt.len32, false);
    wrong.send(&msg(
        "/oscrouter/register",
        vec![s("eve"), s("e"), s("band"), s("nope"), OscType::Int(3)],
    ));
    let e = wrong.expect();
    assert_eq!(addr_of(&e), "/oscrouter/error");
    assert!(wrong.closed());
    // Anything but a register first: error and closed.
    let mut rude = Client::connect(rt.slip, true);
    rude.send(&msg("/hello", vec![]));
    assert_eq!(addr_of(&rude.expect()), "/oscrouter/error");
    assert!(rude.closed());
    // Garbage in a frame: the same.
    let mut junk = Client::connect(rt.len32, false);
    junk.send(b"\x01\x02\x03\x04garbage!");
    assert_eq!(addr_of(&junk.expect()), "/oscrouter/error");
    assert!(junk.closed());
    // A giant length prefix: closed at once.
    let mut giant = Client::connect(rt.len32, false);
    giant.s.write_all(&0x7fff_fff0u32.to_be_bytes()).unwrap();
    assert!(giant.closed());
    // A client that disconnects mid-frame.
    let mut half = Client::connect(rt.len32, false);
    half.s.write_all(&[0, 0, 0, 64, b'/', b'a']).unwrap();
    drop(half);
    // A registered user that then sends nothing but garbage is closed after 64 frames.
    let mut spam = Client::connect(rt.slip, true);
    assert_eq!(
        spam.register("spam", "s", "spamgroup", "", 1),
        "/oscrouter/register/spam/1"
    );
    let mut frames = Vec::new();
    for _ in 0..64 {
        frames.extend(spam.frame(b"not OSC at all!!"));
    }
    spam.s.write_all(&frames).unwrap();
    assert!(spam.closed(), "a garbage-only connection stayed open");
    // A register flood: 30 new users against max_users = 12 (2 already in; spam has gone).
    let mut flood: Vec<Client> = (0..30).map(|_| Client::connect(rt.len32, false)).collect();
    for (i, c) in flood.iter_mut().enumerate() {
        c.send(&msg(
            "/oscrouter/register",
            vec![
                s(&format!("u{i}")),
                s("p"),
                s("band"),
                s("g"),
                OscType::Int(i as i32),
            ],
        ));
    }
    let mut ok = 0;
    let mut refused = 0;
    for c in flood.iter_mut() {
        match addr_of(&c.expect()).as_str() {
            "/oscrouter/error" => {
                assert!(c.closed());
                refused += 1;
            }
            a if a.starts_with("/oscrouter/register/u") => ok += 1,
            a => panic!("unexpected {a}"),
        }
    }
    assert_eq!((ok, refused), (10, 20));
    // Through all that, alice and bob are served.
    let m = msg("/still/served", vec![OscType::Int(5)]);
    alice.send(&m);
    assert_eq!(bob.expect_data(), m);
    assert!(rt.counter(C::TcpFatal) >= 1);
}

fn a_reader_that_stops_reading_is_cut_off_and_others_keep_up(d: Driver) {
    let rt = Rt::start(d, "queue_limit = 1000\n[tcp]\nslow_reader_ms = 300\n");
    let mut sender = Client::connect(rt.len32, false);
    sender.register("sender", "s", "band", "", 1);
    let mut reader = Client::connect(rt.slip, true);
    reader.register("reader", "r", "band", "", 2);
    let stalled = {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&rt.len32.into()).unwrap();
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        Client {
            s,
            frames: Frames::new(false),
        }
    };
    let mut stalled = stalled;
    stalled.register("stalled", "x", "band", "", 3);
    sender.nothing(Duration::from_millis(100));
    reader.nothing(Duration::from_millis(50));

    const N: i32 = 12_000;
    let collect = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(N as usize);
        while got.len() < N as usize {
            let Some(p) = reader.next(Duration::from_secs(10)) else {
                break;
            };
            if let OscPacket::Message(m) = decode(&p) {
                if m.addr == "/flood" {
                    if let Some(OscType::Int(i)) = m.args.first() {
                        got.push(*i);
                    }
                }
            }
        }
        (got, reader)
    });
    let pad = OscType::Blob(vec![0x5a; 1000]);
    for i in 0..N {
        sender.send(&msg("/flood", vec![OscType::Int(i), pad.clone()]));
        if i % 20 == 19 {
            // About 10 MB/s, which the reader (a debug build) keeps up with.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let (got, _reader) = collect.join().unwrap();
    let first_gap = got.iter().zip(0..).find(|(g, i)| **g != *i);
    assert!(
        first_gap.is_none() && got.len() == N as usize,
        "the reader got {} of {N}; first difference at {first_gap:?}",
        got.len()
    );
    assert!(rt.counter(C::TcpSlowDropped) >= 1);
    assert_eq!(rt.counter(C::TcpSlowClosed), 1);
    assert!(stalled.closed());
}

fn a_reader_that_pauses_is_not_cut_off_by_a_flood(d: Driver) {
    // queue_limit 200: the pause below overflows the queue many times over (thousands of
    // drops), but a pause is not a stall: nothing closes it within slow_reader_ms (default 5 s).
    let rt = Rt::start(d, "queue_limit = 200\n");
    let mut sender = Client::connect(rt.len32, false);
    sender.register("sender", "s", "band", "", 1);
    // A small receive buffer, so the kernel does not absorb the flood on the reader's behalf.
    let mut reader = {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        sock.set_recv_buffer_size(16 * 1024).unwrap();
        sock.connect(&rt.slip.into()).unwrap();
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        Client {
            s,
            frames: Frames::new(true),
        }
    };
    reader.register("reader", "r", "band", "", 2);
    sender.nothing(Duration::from_millis(100));
    reader.nothing(Duration::from_millis(50));
    let pad = OscType::Blob(vec![0x5a; 200]);
    for i in 0..40_000 {
        sender.send(&msg("/flood", vec![OscType::Int(i), pad.clone()]));
    }
    std::thread::sleep(Duration::from_millis(300));
    // Back to reading: the newest frames are there, in order, and the connection is open.
    let mut last = -1;
    let mut got = 0;
    // Until the newest frame arrives (the router may still be working through the sender's
    // backlog on a busy machine).
    let deadline = Instant::now() + Duration::from_secs(20);
    while last != 39_999 && Instant::now() < deadline {
        let Some(p) = reader.next(Duration::from_millis(500)) else {
            continue;
        };
        if let OscPacket::Message(m) = decode(&p) {
            if let Some(OscType::Int(i)) = m.args.first() {
                assert!(*i > last, "reordered: {i} after {last}");
                last = *i;
                got += 1;
            }
        }
    }
    assert!(got > 0 && last == 39_999, "got {got}, last {last}");
    assert!(rt.counter(C::TcpSlowDropped) > 1000);
    assert_eq!(rt.counter(C::TcpSlowClosed), 0);
    let after = msg("/after", vec![]);
    sender.send(&after);
    assert_eq!(reader.expect(), after);
}

crate::both_drivers!(
    both_framings_share_a_group_and_fan_out_untouched,
    several_connections_of_one_user,
    messages_pipelined_behind_the_register_are_kept_in_order,
    a_newcomer_hears_its_reply_and_the_user_list_before_any_traffic,
    a_register_wrapped_in_a_bundle_is_accepted_and_the_rest_goes_on,
    private_messages_pings_and_other_control,
    bad_clients_are_refused_and_others_keep_being_served,
    a_reader_that_stops_reading_is_cut_off_and_others_keep_up,
    a_reader_that_pauses_is_not_cut_off_by_a_flood,
);
