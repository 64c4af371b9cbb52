//! The `messenger` scenario end to end at a low rate, where loopback is lossless: against a
//! minimal Messenger gateway built here from std UDP sockets and the sans-IO
//! `oscgate::proto::messenger::Gateway` (this test forwards group <-> patrons itself), and
//! through the in-process baseline forwarder. Every message must reach every patron once, in
//! order, and the protocol must be spoken: join, keepalive answers, leave.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use oscgate::config::Messenger;
use oscgate::engine::udp::{bind_udp, join_multicast_v4, set_multicast_if_v4};
use oscgate::proto::messenger::{Action, Counters, Gateway, GATEWAY_PREFIX, LOOPBACK};
use oscgate_load::messenger::{run, MessengerConfig, Mode, Source};
use oscgate_load::Transport;

/// A gateway for one test: patron port, group, and the thread running it.
struct TestGateway {
    addr: SocketAddr,
    group: SocketAddrV4,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Counters>>,
}

impl TestGateway {
    /// Starts a gateway on 127.0.0.1 for `group_ip` (port from the kernel), with 1 s keepalives.
    fn start(group_ip: Ipv4Addr) -> TestGateway {
        let patron_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        patron_sock.set_nonblocking(true).unwrap();
        let group_rx = bind_udp(SocketAddr::from((group_ip, 0)), true, None, None).unwrap();
        join_multicast_v4(&group_rx, group_ip, Ipv4Addr::LOCALHOST).unwrap();
        let group = match group_rx.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("bound to an IPv4 group"),
        };
        let group_tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_multicast_if_v4(&group_tx, Ipv4Addr::LOCALHOST).unwrap();
        group_tx.set_multicast_ttl_v4(0).unwrap();
        let addr = patron_sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            serve(
                &patron_sock,
                &group_rx,
                &group_tx,
                SocketAddr::V4(group),
                &flag,
            )
        });
        TestGateway {
            addr,
            group,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Counters {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The gateway loop: control packets to the state machine, patron traffic to the group and
/// the other patrons, group traffic to every patron; runs until `stop` and a last quiet spell
/// (so a `leave` sent just before the stop is still handled).
fn serve(
    patron_sock: &UdpSocket,
    group_rx: &UdpSocket,
    group_tx: &UdpSocket,
    group: SocketAddr,
    stop: &AtomicBool,
) -> Counters {
    let cfg = Messenger {
        keepalive_s: 1,
        ..Messenger::default()
    };
    let mut gw: Gateway<SocketAddr> = Gateway::new(&cfg, "TEST-GATEWAY", vec![LOOPBACK]);
    let mut patrons: Vec<SocketAddr> = Vec::new();
    let own = group_tx.local_addr().unwrap();
    let epoch = Instant::now();
    let mut buf = vec![0u8; 65_536];
    let mut idle_since: Option<Instant> = None;
    loop {
        let now = epoch.elapsed();
        let mut busy = false;
        if let Ok((n, from)) = patron_sock.recv_from(&mut buf) {
            busy = true;
            let p = &buf[..n];
            if p.starts_with(GATEWAY_PREFIX) {
                let ip = match from {
                    SocketAddr::V4(a) => *a.ip(),
                    SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
                };
                gw.handle(now, from, ip, p);
            } else if gw.note_traffic(now, from) {
                let _ = group_tx.send_to(p, group);
                for &to in patrons.iter().filter(|&&to| to != from) {
                    let _ = patron_sock.send_to(p, to);
                }
            }
        }
        if let Ok((n, from)) = group_rx.recv_from(&mut buf) {
            busy = true;
            let p = &buf[..n];
            if from != own && !p.starts_with(GATEWAY_PREFIX) {
                for &to in &patrons {
                    let _ = patron_sock.send_to(p, to);
                }
            }
        }
        if gw.poll_timeout().is_some_and(|t| t <= now) {
            gw.handle_timeout(now);
        }
        while let Some(a) = gw.poll_action() {
            match a {
                Action::Send { to, packet } => {
                    let _ = patron_sock.send_to(&packet, to);
                }
                Action::Admit { endpoint, .. } => patrons.push(endpoint),
                Action::Expel { endpoint, .. } => patrons.retain(|&p| p != endpoint),
            }
        }
        if busy {
            idle_since = None;
            continue;
        }
        let idle = *idle_since.get_or_insert_with(Instant::now);
        if stop.load(Ordering::Relaxed) && idle.elapsed() > Duration::from_millis(100) {
            return *gw.counters();
        }
        thread::sleep(Duration::from_micros(200));
    }
}

fn config(mode: Mode, gateway: SocketAddr, group: SocketAddrV4, from: Source) -> MessengerConfig {
    MessengerConfig {
        patrons: 3,
        transport: Transport::Udp,
        senders: 1,
        rate: 1000,
        size: 64,
        duration: Duration::from_secs(1),
        gateway,
        group,
        from,
        mode,
        gateway_pid: None,
        find_gateway: false,
        join_timeout: Duration::from_secs(3),
        ttl: 0,
        recv_threads: 1,
        progress: false,
    }
}

#[test]
fn gateway_from_group_reaches_every_patron_with_keepalives_and_leave() {
    let gw = TestGateway::start(Ipv4Addr::new(239, 255, 78, 1));
    let cfg = config(Mode::Gateway, gw.addr, gw.group, Source::Group);
    let r = run(&cfg).unwrap();
    let table = r.to_table();
    assert!(r.run.sent > 500, "sent only {}: {table}", r.run.sent);
    assert_eq!(r.run.expected, r.run.sent * 3, "{table}");
    assert_eq!(r.run.delivered, r.run.expected, "{table}");
    assert_eq!(
        (r.run.lost, r.run.duplicated, r.run.reordered),
        (0, 0, 0),
        "{table}"
    );
    assert_eq!((r.run.malformed, r.unexpected), (0, 0));
    assert_eq!(r.run.latency_us.samples, r.run.delivered);
    let j = r.join.as_ref().expect("joined");
    assert_eq!((j.accepted, j.gateway_uid.as_str()), (3, "TEST-GATEWAY"));
    // The 1 s keepalive fell inside the run: each patron answered at least once.
    assert!(r.patron_events.keepalives_answered >= 3, "{table}");
    assert_eq!(r.patron_events.leaves_sent, 3);
    assert!(r.group_listener.is_none() && r.run.forwarder.is_none());
    let c = gw.finish();
    assert_eq!((c.admitted, c.left), (3, 3), "{c:?}");
    assert!(c.keepalive_replies >= 3, "{c:?}");
    assert_eq!(c.malformed + c.unknown + c.ignored, 0, "{c:?}");
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(v["mode"], "gateway");
    assert_eq!(v["delivered"], r.run.delivered);
    assert_eq!(v["join"]["accepted"], 3);
}

#[test]
fn gateway_from_both_never_echoes_and_reaches_the_group() {
    let gw = TestGateway::start(Ipv4Addr::new(239, 255, 78, 2));
    let cfg = config(Mode::Gateway, gw.addr, gw.group, Source::Both);
    let r = run(&cfg).unwrap();
    let table = r.to_table();
    assert_eq!((r.group_senders, r.patron_senders), (1, 1));
    assert!(r.run.sent > 500, "{table}");
    // Group messages reach all 3 patrons, patron 0's reach the other 2.
    assert!(
        r.run.expected > 0 && r.run.expected < r.run.sent * 3,
        "{table}"
    );
    assert_eq!(r.run.delivered, r.run.expected, "{table}");
    assert_eq!(
        (r.run.lost, r.run.duplicated, r.unexpected),
        (0, 0, 0),
        "{table}"
    );
    let g = r.group_listener.expect("group listener");
    assert!(g.expected > 200, "{table}");
    assert_eq!((g.delivered, g.lost), (g.expected, 0), "{table}");
    // Only what came through the gateway is timed, not the group senders' own messages.
    assert_eq!(g.latency_us.samples, g.delivered, "{table}");
    gw.finish();
}

#[test]
fn baseline_from_group_is_lossless() {
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 255, 78, 3), 3090);
    // No gateway runs: the address is only checked, never contacted.
    let gateway = "127.0.0.1:9".parse().unwrap();
    let r = run(&config(Mode::Baseline, gateway, group, Source::Group)).unwrap();
    let table = r.to_table();
    assert!(r.run.sent > 500, "{table}");
    assert_eq!(r.run.delivered, r.run.sent * 3, "{table}");
    assert_eq!((r.run.lost, r.run.duplicated, r.run.reordered), (0, 0, 0));
    let f = r.run.forwarder.expect("forwarder stats");
    assert_eq!((f.received, f.sent), (r.run.sent, r.run.sent * 3));
    assert!(r.join.is_none() && r.gateway_addr.is_none());
    assert_eq!(r.run.receiver_addrs.len(), 3);
    // The reference input listens on the group address with a port of its own.
    assert!(r.group.starts_with("239.255.78.3:") && !r.group.ends_with(":3090"));
}
