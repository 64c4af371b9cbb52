//! `oscgate patron` over real loopback sockets, against small Messenger gateways run by the
//! test itself (std sockets + `oscgate::proto::messenger::Gateway`, UDP and TCP len32 on one
//! port): joining, relaying both ways with the bytes checked, control traffic from apps kept
//! out, garbage from both sides survived, re-joining after a gateway restart or a dropped TCP
//! connection, leave on SIGTERM, and `--local-gateway` linking two gateways.
//!
//! The test gateways run on a clock ten times faster than real time, so their 1 s keepalive is
//! 100 ms of real time; the patron gets matching short timers through its hidden flags.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oscgate::config::Messenger;
use oscgate::proto::messenger::{Action, Counters, Gateway, Reason, GATEWAY_PREFIX};
use oscgate::wire::address::has_prefix;
use oscgate::wire::framing::{self, Decoder, Framing, DEFAULT_MAX_FRAME};
use oscgate::wire::{write_message, Arg, Message, Packet};

const BIN: &str = env!("CARGO_BIN_EXE_oscgate");
/// Upper bound for anything to show up; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(10);
/// Gateway seconds per real second.
const FAST: u32 = 10;
/// Hidden patron flags matching a `FAST` gateway: its keepalive is 100 ms, so a patron that
/// hears nothing for 1 s takes it as gone; retries start at 50 ms.
const QUICK: [&str; 8] = [
    "--reply-ms",
    "300",
    "--timeout-ms",
    "1000",
    "--retry-ms",
    "50",
    "--retry-max-ms",
    "200",
];

fn osc(address: &str, args: &[Arg<'_>]) -> Vec<u8> {
    let mut v = Vec::new();
    write_message(&mut v, address.as_bytes(), args).unwrap();
    v
}

/// A packet with every common argument type, to check bytes pass untouched.
fn rich(address: &str, n: i32) -> Vec<u8> {
    osc(
        address,
        &[
            Arg::Int(n),
            Arg::Float(2.5),
            Arg::str("héllo"),
            Arg::Blob(&[0, 0xC0, 0xDB, 0xFF, 7]),
            Arg::Long(-1),
        ],
    )
}

fn is_control(p: &[u8]) -> bool {
    matches!(Packet::new_checked(p), Ok(Packet::Message(m)) if has_prefix(m.address(), GATEWAY_PREFIX))
}

// ---------------------------------------------------------------------------------------------
// A test gateway.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Ep {
    Udp(SocketAddr),
    Tcp(usize),
}

enum Cmd {
    /// Send these bytes to every patron (TCP: framed as len32 when `framed`).
    ToPatrons {
        bytes: Vec<u8>,
        framed: bool,
    },
    /// Close every TCP connection.
    DropConns,
    Stop,
}

#[derive(Debug)]
enum Ev {
    Admit(String),
    Expel(String, Reason),
    /// A non-control packet from a patron (also forwarded to the other patrons).
    Traffic(Vec<u8>),
}

struct TestGw {
    addr: SocketAddr,
    uid: String,
    cmd: Sender<Cmd>,
    ev: Receiver<Ev>,
    thread: Option<JoinHandle<Counters>>,
}

struct GwLoop {
    gw: Gateway<Ep>,
    udp: UdpSocket,
    tcp: Option<TcpListener>,
    conns: HashMap<usize, (TcpStream, Decoder)>,
    next_conn: usize,
    ev: Sender<Ev>,
    origin: Instant,
}

impl TestGw {
    /// A gateway on `udp`'s port (and `tcp`, if given), keepalive 1 s and timeout `timeout_s`
    /// of its clock, which runs [`FAST`] times real time.
    fn start(udp: UdpSocket, tcp: Option<TcpListener>, uid: &str, timeout_s: u64) -> TestGw {
        let addr = udp.local_addr().unwrap();
        udp.set_nonblocking(true).unwrap();
        if let Some(l) = &tcp {
            l.set_nonblocking(true).unwrap();
        }
        let cfg = Messenger {
            keepalive_s: 1,
            timeout_s,
            ..Messenger::default()
        };
        let gw = Gateway::new(&cfg, uid, vec![oscgate::proto::messenger::LOOPBACK]);
        let (cmd_tx, cmd_rx) = channel();
        let (ev_tx, ev_rx) = channel();
        let mut l = GwLoop {
            gw,
            udp,
            tcp,
            conns: HashMap::new(),
            next_conn: 0,
            ev: ev_tx,
            origin: Instant::now(),
        };
        let thread = std::thread::spawn(move || l.run(cmd_rx));
        TestGw {
            addr,
            uid: uid.into(),
            cmd: cmd_tx,
            ev: ev_rx,
            thread: Some(thread),
        }
    }

    /// A UDP gateway that expires a silent patron after 20 s of its clock (2 s), so a busy
    /// machine does not get the patron expelled.
    fn udp(uid: &str) -> TestGw {
        Self::start(UdpSocket::bind("127.0.0.1:0").unwrap(), None, uid, 20)
    }

    /// UDP and TCP on one port.
    fn udp_tcp(uid: &str) -> TestGw {
        for _ in 0..50 {
            let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
            if let Ok(udp) = UdpSocket::bind(tcp.local_addr().unwrap()) {
                return Self::start(udp, Some(tcp), uid, 20);
            }
        }
        panic!("no port free for both UDP and TCP");
    }

    fn send(&self, bytes: Vec<u8>) {
        self.cmd
            .send(Cmd::ToPatrons {
                bytes,
                framed: true,
            })
            .unwrap();
    }

    fn event(&self) -> Ev {
        self.ev
            .recv_timeout(WAIT)
            .expect("an event from the gateway")
    }

    fn admitted(&self) -> String {
        loop {
            if let Ev::Admit(uid) = self.event() {
                return uid;
            }
        }
    }

    /// The next non-control packet a patron sent.
    fn traffic(&self) -> Vec<u8> {
        loop {
            if let Ev::Traffic(p) = self.event() {
                return p;
            }
        }
    }

    /// Stops the gateway (closing its sockets) and returns its counters.
    fn stop(mut self) -> Counters {
        let _ = self.cmd.send(Cmd::Stop);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for TestGw {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.cmd.send(Cmd::Stop);
            let _ = t.join();
        }
    }
}

/// Writes all of `bytes` to a non-blocking stream; false if the connection is gone.
fn write_all_nb(s: &mut TcpStream, mut bytes: &[u8]) -> bool {
    let deadline = Instant::now() + WAIT;
    while !bytes.is_empty() && Instant::now() < deadline {
        match s.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(_) => return false,
        }
    }
    bytes.is_empty()
}

impl GwLoop {
    fn now(&self) -> Duration {
        self.origin.elapsed() * FAST
    }

    fn run(&mut self, cmds: Receiver<Cmd>) -> Counters {
        let mut buf = vec![0u8; 65_536];
        loop {
            while let Ok(c) = cmds.try_recv() {
                match c {
                    Cmd::Stop => return *self.gw.counters(),
                    Cmd::DropConns => {
                        for id in self.conns.keys().copied().collect::<Vec<_>>() {
                            self.conns.remove(&id);
                            self.gw.endpoint_closed(Ep::Tcp(id));
                        }
                    }
                    Cmd::ToPatrons { bytes, framed } => {
                        let to: Vec<Ep> = self.gw.patrons().map(|p| p.endpoint).collect();
                        for ep in to {
                            self.send_raw(ep, &bytes, framed);
                        }
                    }
                }
            }
            self.drain(&mut buf);
            let now = self.now();
            self.gw.handle_timeout(now);
            self.actions();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn drain(&mut self, buf: &mut [u8]) {
        while let Ok((n, src)) = self.udp.recv_from(buf) {
            let p = buf[..n].to_vec();
            self.packet(Ep::Udp(src), &p);
        }
        if let Some(l) = &self.tcp {
            while let Ok((s, _)) = l.accept() {
                s.set_nonblocking(true).unwrap();
                self.conns.insert(
                    self.next_conn,
                    (s, Decoder::new(Framing::Len32, DEFAULT_MAX_FRAME)),
                );
                self.next_conn += 1;
            }
        }
        for id in self.conns.keys().copied().collect::<Vec<_>>() {
            let mut frames = Vec::new();
            let mut closed = false;
            if let Some((s, dec)) = self.conns.get_mut(&id) {
                loop {
                    match s.read(buf) {
                        Ok(0) => {
                            closed = true;
                            break;
                        }
                        Ok(n) => {
                            let r = dec.decode(&mut buf[..n], |f| {
                                if let Ok(f) = f {
                                    frames.push(f.to_vec());
                                }
                            });
                            if r.is_err() {
                                closed = true;
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            for f in frames {
                self.packet(Ep::Tcp(id), &f);
            }
            if closed {
                self.conns.remove(&id);
                self.gw.endpoint_closed(Ep::Tcp(id));
            }
        }
        self.actions();
    }

    fn packet(&mut self, from: Ep, p: &[u8]) {
        let now = self.now();
        let ip = match from {
            Ep::Udp(SocketAddr::V4(a)) => *a.ip(),
            _ => Ipv4Addr::LOCALHOST,
        };
        if is_control(p) || Packet::new_checked(p).is_err() {
            self.gw.handle(now, from, ip, p);
        } else if self.gw.note_traffic(now, from) {
            let to: Vec<Ep> = self
                .gw
                .patrons()
                .map(|i| i.endpoint)
                .filter(|&e| e != from)
                .collect();
            for e in to {
                self.send_raw(e, p, true);
            }
            let _ = self.ev.send(Ev::Traffic(p.to_vec()));
        }
        self.actions();
    }

    fn actions(&mut self) {
        while let Some(a) = self.gw.poll_action() {
            match a {
                Action::Send { to, packet } => self.send_raw(to, &packet, true),
                Action::Admit { uid, .. } => {
                    let _ = self.ev.send(Ev::Admit(uid));
                }
                Action::Expel { uid, reason, .. } => {
                    let _ = self.ev.send(Ev::Expel(uid, reason));
                }
            }
        }
    }

    fn send_raw(&mut self, to: Ep, bytes: &[u8], framed: bool) {
        match to {
            Ep::Udp(a) => {
                let _ = self.udp.send_to(bytes, a);
            }
            Ep::Tcp(id) => {
                let mut out = Vec::new();
                if framed {
                    framing::encode(Framing::Len32, bytes, &mut out).unwrap();
                } else {
                    out.extend_from_slice(bytes);
                }
                let ok = match self.conns.get_mut(&id) {
                    Some((s, _)) => write_all_nb(s, &out),
                    None => true,
                };
                if !ok {
                    self.conns.remove(&id);
                    self.gw.endpoint_closed(Ep::Tcp(id));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The patron under test, local apps, and plain test patrons.

struct Cli {
    child: Child,
    err: Receiver<String>,
    listen: SocketAddr,
    /// Every stderr line seen so far.
    seen: Vec<String>,
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn patron(args: &[&str]) -> Cli {
    let mut child = Command::new(BIN)
        .arg("patron")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oscgate patron");
    let (tx, err) = channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut cli = Cli {
        child,
        err,
        listen: "0.0.0.0:0".parse().unwrap(),
        seen: Vec::new(),
    };
    let line = cli.line_with("listening on ");
    cli.listen = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    cli
}

impl Cli {
    /// Waits for a stderr line containing `needle`.
    fn line_with(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.err.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!("no stderr line with {needle:?}; saw {:#?}", self.seen),
            }
        }
    }

    /// A stderr line containing `needle`, already seen or still to come.
    fn seen_or_wait(&mut self, needle: &str) -> String {
        match self.seen.iter().find(|l| l.contains(needle)) {
            Some(l) => l.clone(),
            None => self.line_with(needle),
        }
    }

    fn signal(&mut self, sig: i32) -> ExitStatus {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "patron did not exit on signal");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn assert_alive(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "patron died");
    }
}

/// A UDP socket on 127.0.0.1 with a read timeout.
fn app() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

fn addr_of(s: &UdpSocket) -> String {
    s.local_addr().unwrap().to_string()
}

/// The next packet on `s` that is not gateway control, with its source.
fn recv_traffic(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 65_536];
    loop {
        let (n, src) = s.recv_from(&mut buf).expect("a packet");
        if !is_control(&buf[..n]) {
            return (buf[..n].to_vec(), src);
        }
    }
}

/// A plain patron of `gw` on a UDP socket: asks and waits for the accept.
fn join(gw: &TestGw, uid: &str) -> UdpSocket {
    let s = app();
    s.send_to(
        &osc("/messenger/gateway/me/request", &[Arg::str(uid)]),
        gw.addr,
    )
    .unwrap();
    let mut buf = [0u8; 1024];
    loop {
        let (n, _) = s.recv_from(&mut buf).unwrap();
        let m = Message::new_checked(&buf[..n]).unwrap();
        if m.address() == b"/messenger/gateway/me/accept" {
            return s;
        }
    }
}

fn udp_args<'a>(gw: &'a str, locals: &'a [String]) -> Vec<&'a str> {
    let mut v = vec![
        "--gateway",
        gw,
        "--listen",
        "127.0.0.1:0",
        "--uid",
        "PATRON-1",
    ];
    for l in locals {
        v.extend(["--local", l.as_str()]);
    }
    v.extend(QUICK);
    v
}

/// A deterministic byte source for garbage.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn garbage(&mut self) -> Vec<u8> {
        let len = (self.next() % 120) as usize;
        let mut v: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
        // Half of it looks like the start of a message, to get past the first check.
        if self.next() % 2 == 0 {
            v.splice(0..0, *b"/messenger/x\0\0\0\0,");
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn udp_joins_and_relays_both_ways_with_bytes_untouched() {
    let gw = TestGw::udp("GW-A");
    let (a1, a2) = (app(), app());
    let locals = [addr_of(&a1), addr_of(&a2)];
    let gw_addr = gw.addr.to_string();
    let mut cli = patron(&udp_args(&gw_addr, &locals));
    assert_eq!(gw.admitted(), "PATRON-1");
    let joined = cli.line_with("joined gateway");
    assert!(
        joined.contains(&gw_addr) && joined.contains("GW-A"),
        "{joined}"
    );

    // Gateway -> every local app, from the --listen socket, byte for byte.
    let p = rich("/venue/cue", 1);
    gw.send(p.clone());
    for a in [&a1, &a2] {
        let (got, src) = recv_traffic(a);
        assert_eq!(got, p);
        assert_eq!(src, cli.listen);
    }
    // A bundle is traffic too.
    let mut bundle = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
    bundle.extend_from_slice(&(p.len() as u32).to_be_bytes());
    bundle.extend_from_slice(&p);
    gw.send(bundle.clone());
    assert_eq!(recv_traffic(&a1).0, bundle);
    assert_eq!(recv_traffic(&a2).0, bundle);

    // Local app -> gateway, byte for byte; not echoed to it or to the other app.
    let q = rich("/from/app", 2);
    a1.send_to(&q, cli.listen).unwrap();
    assert_eq!(gw.traffic(), q);

    // Gateway control from an app is dropped; the next thing through is the marker.
    a1.send_to(
        &osc("/messenger/gateway/me/leave", &[Arg::str("PATRON-1")]),
        cli.listen,
    )
    .unwrap();
    a2.send_to(
        &osc("/messenger/gateway/me/request", &[Arg::str("EVIL")]),
        cli.listen,
    )
    .unwrap();
    let marker = rich("/marker/app", 3);
    a1.send_to(&marker, cli.listen).unwrap();
    assert_eq!(gw.traffic(), marker);

    // Control from the gateway that is not for a patron stays there too.
    gw.send(osc("/messenger/gateway/other", &[Arg::Int(1)]));
    let m2 = rich("/marker/gw", 4);
    gw.send(m2.clone());
    let mut buf = [0u8; 2048];
    for a in [&a1, &a2] {
        let (n, _) = a.recv_from(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            m2,
            "first packet after the control one is the marker"
        );
    }
    // The patron keeps answering who/active: still a patron, no expiry.
    std::thread::sleep(Duration::from_millis(250)); // a few 100 ms keepalive rounds
    cli.assert_alive();
    assert!(cli.signal(libc::SIGTERM).success());
    let counters = cli.line_with("counters:");
    for want in [
        "from_gateway=3 ",
        "to_gateway=2 ",
        "local_control_dropped=2 ",
    ] {
        assert!(counters.contains(want), "{want} in {counters}");
    }
    while !matches!(gw.event(), Ev::Expel(_, Reason::Left)) {}
    let c = gw.stop();
    assert!(c.keepalive_replies >= 1, "{c:?}");
    assert_eq!((c.expired, c.unknown, c.ignored), (0, 0, 0), "{c:?}");
}

#[test]
fn garbage_from_both_sides_is_dropped_and_survived() {
    let gw = TestGw::udp("GW-G");
    let a1 = app();
    let locals = [addr_of(&a1)];
    let gw_addr = gw.addr.to_string();
    let mut cli = patron(&udp_args(&gw_addr, &locals));
    gw.admitted();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let mut buf = [0u8; 65_536];
    // Rounds of 50 bad packets each way (small enough for the socket buffers), each followed
    // by a marker both ways: relaying still works, and nothing malformed was passed on.
    for round in 0..6 {
        for _ in 0..50 {
            gw.send(rng.garbage());
            a1.send_to(&rng.garbage(), cli.listen).unwrap();
        }
        let p = rich("/after/garbage", round);
        a1.send_to(&p, cli.listen).unwrap();
        loop {
            let got = gw.traffic();
            assert!(Packet::new_checked(&got).is_ok(), "relayed garbage {got:?}");
            if got == p {
                break;
            }
        }
        gw.send(p.clone());
        loop {
            let (n, _) = a1.recv_from(&mut buf).unwrap();
            assert!(Packet::new_checked(&buf[..n]).is_ok(), "relayed garbage");
            if buf[..n] == p {
                break;
            }
        }
    }
    cli.assert_alive();
    cli.line_with("malformed packet");
    while let Ok(l) = cli.err.recv_timeout(Duration::from_millis(100)) {
        cli.seen.push(l);
    }
    // At most one line a second about malformed packets.
    let lines = cli.seen.iter().filter(|l| l.contains("malformed")).count();
    let allowed = started.elapsed().as_secs() as usize + 1;
    assert!(lines <= allowed, "not rate limited: {:#?}", cli.seen);
    assert!(cli.signal(libc::SIGTERM).success());
}

#[test]
fn udp_gateway_restart_leads_to_a_rejoin() {
    let gw = TestGw::udp("GW-R1");
    let a1 = app();
    let locals = [addr_of(&a1)];
    let gw_addr = gw.addr.to_string();
    let mut cli = patron(&udp_args(&gw_addr, &locals));
    gw.admitted();
    cli.line_with("joined gateway");
    // The gateway goes away without a word, and a new one comes up on the same port.
    let addr = gw.addr;
    gw.stop();
    let gw2 = TestGw::start(UdpSocket::bind(addr).unwrap(), None, "GW-R2", 20);
    let lost = cli.line_with("lost gateway");
    assert!(lost.contains("silent"), "{lost}");
    assert_eq!(gw2.admitted(), "PATRON-1");
    let rejoined = cli.line_with("re-joined gateway");
    assert!(rejoined.contains("GW-R2"), "{rejoined}");
    let p = rich("/after/restart", 6);
    gw2.send(p.clone());
    assert_eq!(recv_traffic(&a1).0, p);
    a1.send_to(&p, cli.listen).unwrap();
    assert_eq!(gw2.traffic(), p);
}

#[test]
fn tcp_len32_joins_relays_and_reconnects() {
    let gw = TestGw::udp_tcp("GW-T");
    let a1 = app();
    let gw_addr = gw.addr.to_string();
    let local = addr_of(&a1);
    let mut args = vec![
        "--gateway",
        gw_addr.as_str(),
        "--tcp",
        "--framing",
        "len32",
        "--listen",
        "127.0.0.1:0",
        "--local",
        local.as_str(),
        "--uid",
        "PATRON-T",
    ];
    args.extend(QUICK);
    let mut cli = patron(&args);
    assert_eq!(gw.admitted(), "PATRON-T");
    cli.line_with("joined gateway");
    let p = rich("/tcp/down", 7);
    gw.send(p.clone());
    assert_eq!(recv_traffic(&a1).0, p);
    let q = rich("/tcp/up", 8);
    a1.send_to(&q, cli.listen).unwrap();
    assert_eq!(gw.traffic(), q);

    // The gateway drops the connection: the patron reconnects and asks again.
    gw.cmd.send(Cmd::DropConns).unwrap();
    let lost = cli.line_with("lost gateway");
    assert!(lost.contains("connection closed"), "{lost}");
    assert_eq!(gw.admitted(), "PATRON-T");
    cli.line_with("re-joined gateway");

    // A len32 prefix that cannot be (negative) ends the stream: reconnect again.
    gw.cmd
        .send(Cmd::ToPatrons {
            bytes: vec![0xFF, 0xFF, 0xFF, 0xF0, 1, 2, 3],
            framed: false,
        })
        .unwrap();
    cli.line_with("lost gateway");
    assert_eq!(gw.admitted(), "PATRON-T");
    cli.line_with("re-joined gateway");
    gw.send(p.clone());
    assert_eq!(recv_traffic(&a1).0, p);
    a1.send_to(&q, cli.listen).unwrap();
    assert_eq!(gw.traffic(), q);
    cli.assert_alive();
}

#[test]
fn tcp_connection_refused_is_retried_until_the_gateway_is_up() {
    // Reserve a port, then free it: nothing listens there at first.
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let a1 = app();
    let gw_addr = addr.to_string();
    let local = addr_of(&a1);
    let mut args = vec![
        "--gateway",
        gw_addr.as_str(),
        "--tcp",
        "--local",
        local.as_str(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend(QUICK);
    let mut cli = patron(&args);
    cli.line_with("cannot reach gateway");
    let tcp = TcpListener::bind(addr).unwrap();
    let gw = TestGw::start(UdpSocket::bind(addr).unwrap(), Some(tcp), "GW-LATE", 20);
    gw.admitted();
    cli.line_with("joined gateway");
}

fn signal_sends_leave_and_exits_zero(tcp: bool, sig: i32) {
    let gw = TestGw::udp_tcp("GW-S");
    let a1 = app();
    let locals = [addr_of(&a1)];
    let gw_addr = gw.addr.to_string();
    let mut args = udp_args(&gw_addr, &locals);
    if tcp {
        args.push("--tcp");
    }
    let mut cli = patron(&args);
    gw.admitted();
    cli.line_with("joined gateway");
    let status = cli.signal(sig);
    assert!(status.success(), "exit status {status}");
    loop {
        if let Ev::Expel(uid, reason) = gw.event() {
            assert_eq!((uid.as_str(), reason), ("PATRON-1", Reason::Left));
            break;
        }
    }
    let counters = cli.line_with("counters:");
    assert!(counters.contains("to_gateway=0"), "{counters}");
    cli.line_with("leaves_sent=1");
}

#[test]
fn sigterm_sends_leave_and_exits_zero_udp() {
    signal_sends_leave_and_exits_zero(false, libc::SIGTERM);
}

#[test]
fn sigint_sends_leave_over_tcp_and_exits_zero() {
    signal_sends_leave_and_exits_zero(true, libc::SIGINT);
}

#[test]
fn local_gateway_links_two_gateways() {
    // The plain test patrons do not answer who/active: a long timeout keeps them in.
    let gw_a = TestGw::start(
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        None,
        "GW-VENUE-A",
        100,
    );
    let gw_b = TestGw::start(
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        None,
        "GW-VENUE-B",
        100,
    );
    let pa = join(&gw_a, "APP-A");
    let pb = join(&gw_b, "APP-B");
    assert_eq!(gw_a.admitted(), "APP-A");
    assert_eq!(gw_b.admitted(), "APP-B");
    let (a, b) = (gw_a.addr.to_string(), gw_b.addr.to_string());
    let mut args = vec![
        "--gateway",
        a.as_str(),
        "--local",
        b.as_str(),
        "--local-gateway",
        "--listen",
        "127.0.0.1:0",
        "--uid",
        "LINK",
    ];
    args.extend(QUICK);
    let mut cli = patron(&args);
    assert_eq!(gw_a.admitted(), "LINK");
    assert_eq!(gw_b.admitted(), "LINK");
    cli.seen_or_wait("joined gateway");
    cli.seen_or_wait("joined local gateway");

    // A patron of A reaches a patron of B, and back.
    let x = rich("/venue/a/say", 9);
    pa.send_to(&x, gw_a.addr).unwrap();
    let (got, src) = recv_traffic(&pb);
    assert_eq!((got, src), (x, gw_b.addr));
    let y = rich("/venue/b/say", 10);
    pb.send_to(&y, gw_b.addr).unwrap();
    let (got, src) = recv_traffic(&pa);
    assert_eq!((got, src), (y, gw_a.addr));

    // Several keepalive rounds on both sides: each side's control stays on its side (a
    // who/active from the other gateway would count as unknown), and the link answers both.
    std::thread::sleep(Duration::from_millis(400));
    cli.assert_alive();
    assert_eq!(cli.signal(libc::SIGTERM).code(), Some(0));
    for gw in [gw_a, gw_b] {
        let mut left = false;
        while let Ok(e) = gw.ev.recv_timeout(Duration::from_millis(500)) {
            left |= matches!(e, Ev::Expel(ref u, Reason::Left) if u == "LINK");
            if left {
                break;
            }
        }
        assert!(left, "the link left {}", gw.uid);
        let c = gw.stop();
        assert!(c.keepalive_replies >= 2, "{c:?}");
        assert_eq!((c.unknown, c.malformed, c.ignored), (0, 0, 0), "{c:?}");
    }
}

#[test]
fn bad_command_lines_are_refused() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN).arg("patron").args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&[
        "--gateway",
        "127.0.0.1:1",
        "--local",
        "127.0.0.1:2",
        "--framing",
        "slip",
    ]);
    assert!(e.contains("--tcp"), "{e}");
    let e = run(&[
        "--gateway",
        "127.0.0.1:1",
        "--local",
        "127.0.0.1:2",
        "--local",
        "127.0.0.1:3",
        "--local-gateway",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(e.contains("exactly one local gateway"), "{e}");
    let e = run(&[
        "--gateway",
        "127.0.0.1:1",
        "--local",
        "127.0.0.1:2",
        "--uid",
        "",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(e.contains("--uid"), "{e}");
    let e = run(&["--gateway", "nowhere", "--local", "127.0.0.1:2"]);
    assert!(e.contains("--gateway `nowhere`"), "{e}");
    let e = run(&["--gateway", "127.0.0.1:1"]);
    assert!(e.contains("--local"), "{e}");
}
