//! Two venues linked through one TCP connection: two real engines (Messenger gateways on
//! their own groups) and `oscgate patron --tcp --local-gateway` between them. A patron's
//! message in one venue reaches the other venue's group and patrons, and back; nothing
//! comes back to its sender and nothing arrives twice. Under both drivers (the engines'; the
//! patron binary has its own mio loop) and both TCP framings.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use oscgate::config::{Config, Driver};
use oscgate::engine::Engine;
use rosc::{OscMessage, OscPacket, OscType};
use socket2::{Domain, Protocol, Socket, Type};

mod common;
use common::uring_available;

const BIN: &str = env!("CARGO_BIN_EXE_oscgate");
const WAIT: Duration = Duration::from_secs(5);

/// A group and port no other test uses, below the ephemeral range (32768-).
fn fresh_group() -> SocketAddrV4 {
    static NEXT: AtomicU16 = AtomicU16::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let port = 12_000 + (std::process::id() % 8_000) as u16 + n;
    SocketAddrV4::new(Ipv4Addr::new(239, 255, 78, (n % 250) as u8 + 1), port)
}

struct Venue {
    engine: Engine,
    addr: SocketAddr,
    group: SocketAddrV4,
}

impl Venue {
    fn start(driver: Driver) -> Venue {
        let group = fresh_group();
        let toml = format!(
            "[engine]\nworkers = 2\npin_workers = false\n[oschat]\nenabled = false\n[http]\nenabled = false\n[router]\nenabled = false\n\
             [messenger]\ngroup = \"{group}\"\ninterface = \"127.0.0.1\"\n\
             listen = \"127.0.0.1:0\"\nttl = 0\n"
        );
        let engine = Engine::start(&Config::from_toml(&toml).unwrap(), Some(driver)).unwrap();
        let addr = engine.bound().messenger.unwrap();
        Venue {
            engine,
            addr,
            group,
        }
    }

    fn wait_members(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.engine.members().len() != n {
            assert!(Instant::now() < deadline, "membership never reached {n}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A UDP patron of this venue, joined.
    fn patron(&self, uid: &str) -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        s.send_to(
            &msg(
                "/messenger/gateway/me/request",
                vec![OscType::String(uid.into())],
            ),
            self.addr,
        )
        .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(p) = recv(&s) {
                if address_of(&p) == "/messenger/gateway/me/accept" {
                    return s;
                }
            }
            assert!(Instant::now() < deadline, "{uid} was not accepted");
        }
    }

    /// A socket on this venue's group (not a patron).
    fn listener(&self) -> UdpSocket {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_reuse_address(true).unwrap();
        s.set_reuse_port(true).unwrap();
        s.bind(&SocketAddr::V4(self.group).into()).unwrap();
        s.join_multicast_v4(self.group.ip(), &Ipv4Addr::LOCALHOST)
            .unwrap();
        s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
        s.set_multicast_ttl_v4(0).unwrap();
        s.set_multicast_loop_v4(true).unwrap();
        let s: UdpSocket = s.into();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        s
    }
}

fn msg(addr: &str, args: Vec<OscType>) -> Vec<u8> {
    rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    }))
    .unwrap()
}

fn address_of(b: &[u8]) -> String {
    match rosc::decoder::decode_udp(b).unwrap().1 {
        OscPacket::Message(m) => m.addr,
        OscPacket::Bundle(_) => "#bundle".into(),
    }
}

fn recv(s: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    s.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

/// Every packet `s` gets within `wait` that is not gateway control traffic.
fn traffic(s: &UdpSocket, wait: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        if let Some(p) = recv(s) {
            if !address_of(&p).starts_with("/messenger/gateway/") {
                got.push(p);
            }
        }
    }
    got
}

/// The next non-control packet within `WAIT`.
fn next_traffic(s: &UdpSocket) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(p) = recv(s) {
            if !address_of(&p).starts_with("/messenger/gateway/") {
                return p;
            }
        }
        assert!(Instant::now() < deadline, "nothing arrived");
    }
}

struct Link(Child);

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn link(remote: &Venue, local: &Venue, framing: &str) -> (Link, Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(["patron", "--gateway", &remote.addr.to_string(), "--tcp"])
        .args(["--framing", framing, "--local", &local.addr.to_string()])
        .args([
            "--local-gateway",
            "--listen",
            "127.0.0.1:0",
            "--uid",
            "LINK",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oscgate patron");
    let (tx, rx) = channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (Link(child), rx)
}

fn two_venues_through_one_tcp_connection(driver: Driver, framing: &str) {
    let a = Venue::start(driver);
    let b = Venue::start(driver);
    let pa = a.patron("APP-A");
    let pb = b.patron("APP-B");
    let group_a = a.listener();
    let group_b = b.listener();
    // The link is a TCP patron of B and a UDP patron of A.
    let (mut link, _stderr) = link(&b, &a, framing);
    a.wait_members(2);
    b.wait_members(2);

    // A patron of venue A -> venue A's group, venue B's patron and venue B's group.
    let x = msg(
        "/venue/a/say",
        vec![
            OscType::String("hi B".into()),
            OscType::Blob(vec![0xC0, 0xDB]),
        ],
    );
    pa.send_to(&x, a.addr).unwrap();
    assert_eq!(next_traffic(&pb), x);
    assert_eq!(next_traffic(&group_b), x);
    assert_eq!(next_traffic(&group_a), x);

    // Venue B's group -> venue B's patron, and through the link to venue A's patron and group.
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let s2: Socket = sender.try_clone().unwrap().into();
    s2.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    s2.set_multicast_ttl_v4(0).unwrap();
    let y = msg("/venue/b/group", vec![OscType::Int(7), OscType::Float(0.5)]);
    sender.send_to(&y, b.group).unwrap();
    assert_eq!(next_traffic(&pb), y);
    assert_eq!(next_traffic(&pa), y);
    assert_eq!(next_traffic(&group_a), y);
    assert_eq!(next_traffic(&group_b), y);

    // Nothing more anywhere: no echo to a sender, no second copy through the link.
    for s in [&pa, &pb, &group_a, &group_b] {
        assert_eq!(
            traffic(s, Duration::from_millis(300)),
            Vec::<Vec<u8>>::new()
        );
    }

    // Order across the link: a burst from venue B's patron arrives in order at venue A.
    let burst: Vec<Vec<u8>> = (0..200)
        .map(|i| msg("/venue/b/seq", vec![OscType::Int(i)]))
        .collect();
    for m in &burst {
        pb.send_to(m, b.addr).unwrap();
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < burst.len() && Instant::now() < deadline {
        if let Some(p) = recv(&pa) {
            if address_of(&p) == "/venue/b/seq" {
                got.push(p);
            }
        }
    }
    assert_eq!(got, burst);

    // SIGTERM: the link leaves both venues.
    let pid = i32::try_from(link.0.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = link.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    a.wait_members(1);
    b.wait_members(1);
}

macro_rules! both_drivers {
    ($($name:ident: $framing:literal;)*) => {
        mod mio_driver {
            use super::*;
            $(#[test]
            fn $name() {
                two_venues_through_one_tcp_connection(Driver::Mio, $framing);
            })*
        }
        mod uring_driver {
            use super::*;
            $(#[test]
            fn $name() {
                if uring_available() {
                    two_venues_through_one_tcp_connection(Driver::Uring, $framing);
                }
            })*
        }
    };
}

both_drivers! {
    linked_over_len32: "len32";
    linked_over_slip: "slip";
}
