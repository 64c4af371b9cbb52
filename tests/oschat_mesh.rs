//! OSChat between two subnets, on real sockets in network namespaces (root only; CI requires
//! it): two dual-homed oscgate nodes (`g1`, `g2`) join subnet 1 and subnet 2; a plain client
//! on each subnet (`a`, `b`) broadcasts on port 22050 and listens there, as OSChat clients do.
//!
//! Shown, under each driver: the lowest GUID is elected gateway both ways; presence and list
//! replies agree on both sides; in a steady stream both ways every message crosses exactly
//! once while the gateway is killed (the standby takes over and sends what the dead one
//! never carried), while the killed node restarts (no take-over, no duplicate), and while the
//! new gateway shuts down cleanly (it resigns; the other takes over at once), and while the
//! gateway's link to one subnet goes down. The nodes run 100 ms heartbeats so the test takes
//! seconds; every phase waits for an event (a heartbeat, messages crossing), never a fixed
//! time. The failover times are printed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::netns::{command, in_ns, root_or_skip, Role, Topology};
use rosc::{OscMessage, OscPacket, OscType};

const BIN: &str = env!("CARGO_BIN_EXE_oscgate");
const PORT: u16 = 22050;
const NODE1: &str = "00000000-0000-0000-0000-000000000001";
const NODE2: &str = "00000000-0000-0000-0000-000000000002";
/// One message each way per this period.
const PERIOD: Duration = Duration::from_millis(10);

/// A node process; killed on drop. Its log goes to a file, shown if the test fails.
struct Daemon {
    child: Child,
    log: PathBuf,
    _lines: Receiver<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- {} (last lines)", self.log.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn start_node(t: &Topology, role: Role, node: &str, driver: &str, dir: &Path, run: u32) -> Daemon {
    let file = dir.join(format!("{node}.toml"));
    std::fs::write(
        &file,
        format!(
            "[engine]\nworkers = 2\npin_workers = false\n[messenger]\nenabled = false\n\
             [router]\nenabled = false\n[http]\nenabled = false\n\
             [oschat]\ninterfaces = [\"{}\", \"{}\"]\nnode = \"{node}\"\nheartbeat_ms = 100\n\
             [log]\nlevel = \"info\"\n",
            t.iface(role, 1),
            t.iface(role, 2)
        ),
    )
    .unwrap();
    let log = dir.join(format!("{node}-{run}.log"));
    let mut child = command(t.ns(role), BIN)
        .args(["run", "--config"])
        .arg(&file)
        .args(["--driver", driver])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn oscgate run");
    let (tx, rx) = channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let d = Daemon {
        child,
        log,
        _lines: rx,
    };
    loop {
        let line = d
            ._lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{node} never said it was running"));
        if line == "oscgate: running" {
            return d;
        }
    }
}

struct Heard {
    at: Instant,
    msg: OscMessage,
}

/// A plain OSChat client: one socket on port 22050, broadcasting to its subnet.
struct Client {
    sock: UdpSocket,
    to: SocketAddr,
    heard: Arc<Mutex<Vec<Heard>>>,
    stop: Arc<AtomicBool>,
}

impl Client {
    fn new(t: &Topology, role: Role, subnet: u8) -> Client {
        let me = Topology::addr(role, subnet);
        let sock = in_ns(t.ns(role), || {
            use socket2::{Domain, Protocol, Socket, Type};
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
            s.set_reuse_address(true).unwrap();
            s.set_broadcast(true).unwrap();
            // A take-over sends everything it caught up on at once (at this test's 100
            // messages a second, a few hundred): room for all of it (root may exceed
            // rmem_max).
            let size: libc::c_int = 8 << 20;
            // SAFETY: setsockopt(2) on an open socket with a c_int option of the right size.
            let r = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(r, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
            s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)).into())
                .unwrap();
            UdpSocket::from(s)
        });
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, h, st) = (sock.try_clone().unwrap(), heard.clone(), stop.clone());
        std::thread::spawn(move || {
            let mine = SocketAddr::from((me, PORT));
            let mut buf = [0u8; 4096];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                if from == mine {
                    continue; // our own broadcast
                }
                if let Ok((_, OscPacket::Message(msg))) = rosc::decoder::decode_udp(&buf[..n]) {
                    h.lock().unwrap().push(Heard {
                        at: Instant::now(),
                        msg,
                    });
                }
            }
        });
        Client {
            sock,
            to: SocketAddr::from((Topology::broadcast(subnet), PORT)),
            heard,
            stop,
        }
    }

    fn say(&self, addr: &str, args: Vec<OscType>) {
        let p = rosc::encoder::encode(&OscPacket::Message(OscMessage {
            addr: addr.into(),
            args,
        }))
        .unwrap();
        self.sock.send_to(&p, self.to).unwrap();
    }

    /// Waits (at most `limit`) until `found` returns something from what was heard.
    fn wait_for<T>(&self, limit: Duration, mut found: impl FnMut(&[Heard]) -> Option<T>) -> T {
        let end = Instant::now() + limit;
        loop {
            if let Some(v) = found(&self.heard.lock().unwrap()) {
                return v;
            }
            assert!(Instant::now() < end, "not heard within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn s(v: &str) -> OscType {
    OscType::String(v.into())
}

fn heartbeat_for(h: &[Heard], network: &str) -> Option<String> {
    h.iter().rev().find_map(|x| match x.msg.args.as_slice() {
        [OscType::String(node), OscType::String(net)]
            if x.msg.addr == "/oschat/mesh/heartbeat" && net == network =>
        {
            Some(node.clone())
        }
        _ => None,
    })
}

/// The names in list replies with sequence `seq` at `addr`.
fn listed(h: &[Heard], addr: &str, seq: i32) -> BTreeSet<String> {
    h.iter()
        .filter(|x| x.msg.addr == addr)
        .filter_map(|x| match x.msg.args.as_slice() {
            [OscType::Int(q), OscType::String(name)] if *q == seq => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Sends `<prefix><k>` every PERIOD until `stop`; returns when each was sent.
fn stream(c: &Client, user: &str, prefix: &str, stop: &AtomicBool) -> Vec<Instant> {
    let mut sent = Vec::new();
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let k = sent.len();
        c.say(
            "/oschat/message/stage",
            vec![s(&format!("{prefix}{k}")), s(user), OscType::Int(k as i32)],
        );
        sent.push(Instant::now());
        let next = start + PERIOD * (k as u32 + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    sent
}

/// Stream messages `<prefix><k>` heard (duplicates included).
fn count(h: &[Heard], prefix: &str) -> usize {
    h.iter()
        .filter(|x| x.msg.addr == "/oschat/message/stage")
        .filter(|x| {
            matches!(x.msg.args.first(), Some(OscType::String(t)) if t.strip_prefix(prefix).is_some_and(|k| k.parse::<usize>().is_ok()))
        })
        .count()
}

fn crossed(c: &Client, prefix: &str) -> usize {
    count(&c.heard.lock().unwrap(), prefix)
}

/// How often each `<prefix><k>` was heard, and when first.
fn arrivals(h: &[Heard], prefix: &str) -> BTreeMap<usize, (usize, Instant)> {
    let mut out: BTreeMap<usize, (usize, Instant)> = BTreeMap::new();
    for x in h.iter().filter(|x| x.msg.addr == "/oschat/message/stage") {
        if let Some(OscType::String(text)) = x.msg.args.first() {
            if let Some(k) = text.strip_prefix(prefix).and_then(|k| k.parse().ok()) {
                out.entry(k).or_insert((0, x.at)).0 += 1;
            }
        }
    }
    out
}

/// Every message of a stream arrived exactly once; returns the longest silence a client
/// saw between `event` and `until` (the handover time as the client sees it: messages sent
/// meanwhile arrive at its end, in the catch-up).
fn check_stream(
    label: &str,
    sent: &[Instant],
    got: &BTreeMap<usize, (usize, Instant)>,
    event: Instant,
    until: Instant,
) -> Duration {
    let missing: Vec<usize> = (0..sent.len()).filter(|k| !got.contains_key(k)).collect();
    let twice: Vec<(usize, usize)> = got
        .iter()
        .filter(|(_, (n, _))| *n != 1)
        .map(|(k, (n, _))| (*k, *n))
        .collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "{label}: {} sent, missing {missing:?}, not exactly once (k, times) {twice:?}",
        sent.len()
    );
    let mut at: Vec<Instant> = got.values().map(|(_, t)| *t).collect();
    at.sort();
    at.windows(2)
        .filter(|w| w[1] > event && w[1] <= until)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

fn two_subnets(driver: &str) {
    let t = Topology::two_subnets().expect("building the namespaces");
    let dir = std::env::temp_dir().join(format!("oscgate-mesh-{}-{}", std::process::id(), driver));
    std::fs::create_dir_all(&dir).unwrap();
    let a = Client::new(&t, Role::A, 1);
    let b = Client::new(&t, Role::B, 2);
    let n1 = start_node(&t, Role::G1, NODE1, driver, &dir, 1);
    let n2 = start_node(&t, Role::G2, NODE2, driver, &dir, 1);
    let mut n1 = Some(n1);
    let mut n2 = Some(n2);

    // The election: after the listen (2 x 150 ms), the lowest GUID heartbeats on both
    // subnets. Two nodes that missed each other's start-up announces may both start; they
    // settle by GUID on hearing each other: wait for the last heartbeats to agree.
    let limit = Duration::from_secs(10);
    let settled = |h: &[Heard], net: &str| {
        let last: Vec<String> = h
            .iter()
            .rev()
            .filter_map(|x| heartbeat_for(std::slice::from_ref(x), net))
            .take(5)
            .collect();
        (last.len() == 5 && last.iter().all(|n| *n == last[0])).then(|| last[0].clone())
    };
    let ab = a.wait_for(limit, |h| settled(h, "10.231.2.0/24"));
    let ba = b.wait_for(limit, |h| settled(h, "10.231.1.0/24"));
    assert_eq!(
        (ab.as_str(), ba.as_str()),
        (NODE1, NODE1),
        "elected gateways"
    );

    // Presence: hellos and joins on each side; lists asked on each side agree.
    a.say("/oschat/hello/alice", vec![OscType::Int(1)]);
    b.say("/oschat/hello/bob", vec![OscType::Int(1)]);
    a.say("/oschat/join/stage/alice", vec![OscType::Int(1)]);
    b.say("/oschat/join/stage/bob", vec![OscType::Int(1)]);
    b.wait_for(limit, |h| {
        h.iter()
            .any(|x| x.msg.addr == "/oschat/join/stage/alice")
            .then_some(())
    });
    a.wait_for(limit, |h| {
        h.iter()
            .any(|x| x.msg.addr == "/oschat/join/stage/bob")
            .then_some(())
    });
    a.say("/oschat/list/users", vec![OscType::Int(100)]);
    b.say("/oschat/list/users", vec![OscType::Int(200)]);
    b.say("/oschat/list/users/stage", vec![OscType::Int(300)]);
    let both: BTreeSet<String> = ["alice".to_owned(), "bob".to_owned()].into();
    for (c, addr, seq) in [
        (&a, "/oschat/list/users", 100),
        (&b, "/oschat/list/users", 200),
        (&b, "/oschat/list/users/stage", 300),
        (&a, "/oschat/list/users/stage", 300),
    ] {
        let got = c.wait_for(limit, |h| {
            let l = listed(h, addr, seq);
            (l.len() >= 2).then_some(l)
        });
        assert_eq!(got, both, "{addr} {seq}");
    }

    // The stream, both ways, through a kill, a restart, a clean shutdown and a link going
    // down. No fixed waits: each phase waits for what it is about (bounded), then for a few
    // more messages to cross.
    let stop = AtomicBool::new(false);
    let (sent_a, sent_b, [killed, restarted, terminated, unplugged]) = std::thread::scope(|sc| {
        let ta = sc.spawn(|| stream(&a, "alice", "a", &stop));
        let tb = sc.spawn(|| stream(&b, "bob", "b", &stop));
        let flowing = |n: usize| {
            for (c, prefix) in [(&b, "a"), (&a, "b")] {
                let start = crossed(c, prefix);
                c.wait_for(limit, |h| (count(h, prefix) >= start + n).then_some(()));
            }
        };
        let gateway_is = |node: &str, since: Instant| {
            for (c, net) in [(&a, "10.231.2.0/24"), (&b, "10.231.1.0/24")] {
                c.wait_for(limit, |h| {
                    h.iter()
                        .any(|x| {
                            x.at > since
                                && heartbeat_for(std::slice::from_ref(x), net).as_deref()
                                    == Some(node)
                        })
                        .then_some(())
                });
            }
        };
        flowing(30);
        drop(n1.take()); // SIGKILL: no resign; g2 must notice the silence
        let killed = Instant::now();
        gateway_is(NODE2, killed);
        flowing(30);
        let restarted = Instant::now();
        n1 = Some(start_node(&t, Role::G1, NODE1, driver, &dir, 2));
        // Long enough for a take-over to show (listen 2 x 150 ms, wait <= 250 ms): it must not.
        flowing(100);
        let mut g2 = n2.take().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(
            unsafe { libc::kill(g2.child.id() as i32, libc::SIGTERM) },
            0
        );
        let terminated = Instant::now();
        let status = g2.child.wait().unwrap();
        assert!(status.success(), "g2 exit status {status}");
        gateway_is(NODE1, terminated);
        flowing(30);
        // g2 back as the standby; then g1's link to subnet 2 goes down: g1 resigns a -> b
        // (it still reaches subnet 1) and falls silent on subnet 2.
        drop(g2);
        n2 = Some(start_node(&t, Role::G2, NODE2, driver, &dir, 2));
        flowing(50);
        let down = command(t.ns(Role::G1), "ip")
            .args(["link", "set", "dev", t.iface(Role::G1, 2), "down"])
            .status()
            .unwrap();
        assert!(down.success(), "ip link set down");
        let unplugged = Instant::now();
        gateway_is(NODE2, unplugged);
        flowing(30);
        stop.store(true, Ordering::Relaxed);
        let (sa, sb) = (ta.join().unwrap(), tb.join().unwrap());
        (sa, sb, [killed, restarted, terminated, unplugged])
    });
    let finished = Instant::now();
    // Until everything sent has arrived, or 5 s (what is missing is then reported below).
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end
        && (crossed(&b, "a") < sent_a.len() || crossed(&a, "b") < sent_b.len())
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let at_b = arrivals(&b.heard.lock().unwrap(), "a");
    let at_a = arrivals(&a.heard.lock().unwrap(), "b");
    let kill_ab = check_stream("a -> b", &sent_a, &at_b, killed, restarted);
    let kill_ba = check_stream("b -> a", &sent_b, &at_a, killed, restarted);
    let term_ab = check_stream("a -> b", &sent_a, &at_b, terminated, unplugged);
    let term_ba = check_stream("b -> a", &sent_b, &at_a, terminated, unplugged);
    let down_ab = check_stream("a -> b", &sent_a, &at_b, unplugged, finished);
    let down_ba = check_stream("b -> a", &sent_b, &at_a, unplugged, finished);
    eprintln!(
        "oschat failover under {driver}: {} + {} messages, each exactly once; longest silence \
         at a client (a->b / b->a): gateway killed {kill_ab:?} / {kill_ba:?}; gateway stopped \
         cleanly {term_ab:?} / {term_ba:?}; gateway's link down {down_ab:?} / {down_ba:?}",
        sent_a.len(),
        sent_b.len()
    );
    // With 100 ms heartbeats: silence noticed after 2 x 150 ms, a wait of 50-250 ms; a lost
    // link is noticed within the 1 s interface check.
    assert!(
        kill_ab.max(kill_ba) < Duration::from_secs(2),
        "kill failover too slow"
    );
    assert!(
        term_ab.max(term_ba) < Duration::from_secs(1),
        "resign handover too slow"
    );
    assert!(
        down_ab.max(down_ba) < Duration::from_millis(2500),
        "link-down handover too slow"
    );
    // The restarted node did not take over: until g2 resigned, every heartbeat was g2's;
    // then g1 took over.
    for (c, net) in [(&a, "10.231.2.0/24"), (&b, "10.231.1.0/24")] {
        let h = c.heard.lock().unwrap();
        let between: BTreeSet<String> = h
            .iter()
            .filter(|x| x.at > restarted && x.at < terminated)
            .filter_map(|x| heartbeat_for(std::slice::from_ref(x), net))
            .collect();
        assert_eq!(
            between,
            [NODE2.to_owned()].into(),
            "heartbeats for {net} while g1 restarted"
        );
        let took_over = h
            .iter()
            .find(|x| {
                x.at > terminated
                    && heartbeat_for(std::slice::from_ref(x), net).as_deref() == Some(NODE1)
            })
            .map(|x| x.at)
            .expect("g1 took over");
        let after: BTreeSet<String> = h
            .iter()
            .filter(|x| x.at >= took_over && x.at < unplugged)
            .filter_map(|x| heartbeat_for(std::slice::from_ref(x), net))
            .collect();
        assert_eq!(after, [NODE1.to_owned()].into(), "after g2 resigned");
        assert_eq!(
            heartbeat_for(&h, net).as_deref(),
            Some(NODE2),
            "after g1's link went down"
        );
    }
    drop(n1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_subnets_under_mio() {
    if root_or_skip("two_subnets_under_mio") {
        two_subnets("mio");
    }
}

#[test]
fn two_subnets_under_uring() {
    if root_or_skip("two_subnets_under_uring") && common::uring_available() {
        two_subnets("uring");
    }
}
