//! The network-namespace harness (`common::netns`) on its own: a broadcast reaches the hosts
//! of its subnet at once after construction and no one else, interfaces bound to a subnet hear
//! only that subnet, several topologies coexist, and drop leaves no namespace or interface.
//! Skipped without root unless `OSCGATE_REQUIRE_ROOT_TESTS=1`.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

mod common;
use common::netns::{command, in_ns, named_by, root_or_skip, Role, Topology, SUBNETS};

const PORT: u16 = 9123;
/// Bound on a datagram's arrival (it normally takes microseconds).
const ARRIVAL: Duration = Duration::from_secs(5);
/// How long a socket that must hear nothing is watched.
const QUIET: Duration = Duration::from_millis(300);

fn build() -> Topology {
    let started = Instant::now();
    let t = Topology::two_subnets().unwrap_or_else(|e| panic!("building the topology: {e}"));
    eprintln!("topology {} built in {:?}", t.tag(), started.elapsed());
    t
}

/// A UDP socket in `ns` on 0.0.0.0:`port`, restricted to interface `dev` if given, allowed to
/// send broadcasts.
fn udp(ns: &str, port: u16, dev: Option<&str>) -> UdpSocket {
    in_ns(ns, || {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_reuse_address(true).unwrap();
        s.set_broadcast(true).unwrap();
        s.bind_device(dev.map(str::as_bytes))
            .unwrap_or_else(|e| panic!("SO_BINDTODEVICE {dev:?} in {ns}: {e}"));
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())
            .unwrap_or_else(|e| panic!("bind to port {port} in {ns}: {e}"));
        s.into()
    })
}

/// The next datagram on `s` and its source, or None if none comes within `limit`. Retries
/// on EINTR: a receive with a timeout is not restarted after a signal (signal(7)).
fn recv_within(s: &UdpSocket, limit: Duration) -> Option<(Vec<u8>, IpAddr)> {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.recv_from(&mut buf) {
            Ok((n, from)) => return Some((buf[..n].to_vec(), from.ip())),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(e) => panic!("recv failed: {e}"),
        }
    }
}

fn recv(s: &UdpSocket, who: &str) -> (Vec<u8>, IpAddr) {
    recv_within(s, ARRIVAL).unwrap_or_else(|| panic!("{who} received nothing within {ARRIVAL:?}"))
}

fn assert_quiet(s: &UdpSocket, who: &str) {
    if let Some((p, from)) = recv_within(s, QUIET) {
        panic!("{who} received {p:?} from {from}");
    }
}

fn from(role: Role, subnet: u8) -> IpAddr {
    Topology::addr(role, subnet).into()
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Names of the network namespaces `ip netns list` shows (it appends ` (id: N)`).
fn namespaces() -> Vec<String> {
    let list = ip(&["netns", "list"]);
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Interface names in `ip -o link` output, whose lines read `3: NAME@PEER: <FLAGS> ...`.
fn link_names(text: &str) -> impl Iterator<Item = &str> {
    (text.lines()).filter_map(|l| l.split(": ").nth(1)?.split('@').next())
}

fn assert_present(t: &Topology) {
    let listed = namespaces();
    for role in Role::ALL {
        assert!(
            listed.iter().any(|n| n == t.ns(role)),
            "{} not in {listed:?}",
            t.ns(role)
        );
    }
    let links = ip(&["-n", t.ns(Role::Hub), "-o", "link"]);
    let ports = link_names(&links).filter(|n| named_by(n, t.tag())).count();
    assert_eq!(
        ports,
        8,
        "hub of {} should hold 2 bridges and 6 ports:\n{links}",
        t.tag()
    );
}

/// Every name the topology hands out carries its tag (so `assert_gone` sees them all) and
/// fits in an interface name.
fn assert_named_by_tag(t: &Topology) {
    let mut names: Vec<&str> = Role::ALL.iter().map(|&r| t.ns(r)).collect();
    names.extend(
        [(Role::Hub, 1), (Role::Hub, 2), (Role::A, 1), (Role::B, 2)].map(|(r, s)| t.iface(r, s)),
    );
    names.extend(
        [Role::G1, Role::G2]
            .into_iter()
            .flat_map(|r| [t.iface(r, 1), t.iface(r, 2)]),
    );
    for name in &names {
        assert!(
            named_by(name, t.tag()),
            "{name} does not carry tag {}",
            t.tag()
        );
    }
    for name in names.iter().skip(Role::ALL.len()) {
        assert!(
            name.len() <= 15,
            "interface name {name} longer than 15 bytes"
        );
    }
}

/// Nothing named with `tag` is left: no namespace, no interface in the root namespace.
fn assert_gone(tag: &str) {
    let left: Vec<String> = namespaces()
        .into_iter()
        .filter(|n| named_by(n, tag))
        .collect();
    assert!(left.is_empty(), "namespaces of {tag} left behind: {left:?}");
    let links = ip(&["-o", "link"]);
    let stray: Vec<&str> = link_names(&links).filter(|n| named_by(n, tag)).collect();
    assert!(
        stray.is_empty(),
        "interfaces of {tag} in the root namespace: {stray:?}"
    );
}

/// Each host has its addresses, broadcast included, on the right interfaces, as `ip addr`
/// run inside its namespace through `command` reports them.
fn assert_addressed(t: &Topology) {
    for (role, subnets) in [
        (Role::A, &[1][..]),
        (Role::B, &[2]),
        (Role::G1, &SUBNETS),
        (Role::G2, &SUBNETS),
    ] {
        let out = command(t.ns(role), "ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        // `2: DEV    inet ADDR/24 brd BCAST scope global DEV ...`, loopback left out.
        let mut got: Vec<Vec<&str>> = (text.lines())
            .map(|l| l.split_whitespace().skip(1).take(5).collect())
            .filter(|f: &Vec<&str>| f[0] != "lo")
            .collect();
        got.sort();
        let want: Vec<Vec<String>> = (subnets.iter())
            .map(|&s| {
                let addr = format!("{}/24", Topology::addr(role, s));
                let brd = Topology::broadcast(s).to_string();
                [t.iface(role, s), "inet", &addr, "brd", &brd]
                    .map(str::to_owned)
                    .to_vec()
            })
            .collect();
        assert_eq!(got, want, "{role:?}'s addresses:\n{text}");
    }
    assert_eq!(
        [Topology::network(1), Topology::network(2)],
        ["10.231.1.0/24", "10.231.2.0/24"]
    );
}

#[test]
fn broadcast_stays_on_its_subnet_and_drop_removes_everything() {
    if !root_or_skip("broadcast_stays_on_its_subnet_and_drop_removes_everything") {
        return;
    }
    let t = build();
    assert_present(&t);
    assert_named_by_tag(&t);
    assert_addressed(&t);
    let g1_s1 = udp(t.ns(Role::G1), PORT, Some(t.iface(Role::G1, 1)));
    let g1_s2 = udp(t.ns(Role::G1), PORT, Some(t.iface(Role::G1, 2)));
    let g2_s1 = udp(t.ns(Role::G2), PORT, Some(t.iface(Role::G2, 1)));
    let in_b = udp(t.ns(Role::B), PORT, None);
    let a = udp(t.ns(Role::A), 0, None);
    let b = udp(t.ns(Role::B), 0, None);

    a.send_to(b"one", (Topology::broadcast(1), PORT)).unwrap();
    for (s, who) in [(&g1_s1, "g1 on subnet 1"), (&g2_s1, "g2 on subnet 1")] {
        assert_eq!(recv(s, who), (b"one".to_vec(), from(Role::A, 1)), "{who}");
    }
    assert_quiet(&in_b, "b, on subnet 2, from a's subnet-1 broadcast");

    b.send_to(b"two", (Topology::broadcast(2), PORT)).unwrap();
    let got = recv(&g1_s2, "g1 on subnet 2");
    assert_eq!(got, (b"two".to_vec(), from(Role::B, 2)));
    // "two" has been through g1's stack; had it matched the subnet-1 socket too, it would be
    // queued there ahead of "three".
    a.send_to(b"three", (Topology::broadcast(1), PORT)).unwrap();
    let got = recv(&g1_s1, "g1 on subnet 1");
    assert_eq!(
        got.0, b"three",
        "g1's subnet-1 socket heard a subnet-2 broadcast"
    );

    let tag = t.tag().to_owned();
    drop((g1_s1, g1_s2, g2_s1, in_b, a, b));
    drop(t);
    assert_gone(&tag);
}

#[test]
fn two_topologies_coexist_and_both_clean_up() {
    if !root_or_skip("two_topologies_coexist_and_both_clean_up") {
        return;
    }
    let (t1, t2) = (build(), build());
    assert_ne!(t1.tag(), t2.tag());
    assert_present(&t1);
    assert_present(&t2);

    // Same addresses and port in both: each broadcast stays inside its own topology.
    let r1 = udp(t1.ns(Role::G1), PORT, Some(t1.iface(Role::G1, 1)));
    let r2 = udp(t2.ns(Role::G1), PORT, Some(t2.iface(Role::G1, 1)));
    let a1 = udp(t1.ns(Role::A), 0, None);
    let a2 = udp(t2.ns(Role::A), 0, None);
    a2.send_to(b"t2", (Topology::broadcast(1), PORT)).unwrap();
    assert_eq!(recv(&r2, "g1 of t2").0, b"t2");
    a1.send_to(b"t1", (Topology::broadcast(1), PORT)).unwrap();
    assert_eq!(recv(&r1, "g1 of t1").0, b"t1", "t2's broadcast reached t1");
    drop((r1, r2, a1, a2));

    let (tag1, tag2) = (t1.tag().to_owned(), t2.tag().to_owned());
    drop(t1);
    assert_gone(&tag1);
    assert_present(&t2);
    drop(t2);
    assert_gone(&tag2);
}
