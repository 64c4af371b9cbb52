//! The running engine forwards without allocating: after warm-up, thousands of packets from the
//! multicast group to 20 UDP patrons, and from one patron to the group and the 19 others, cost
//! zero heap allocations in the whole process (workers and control thread included), under
//! both drivers. This is the PERFORMANCE target "0 allocations per forwarded packet" measured
//! on the real thing. One test per binary: the count is process-wide.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use oscgate::config::{Config, Driver};
use oscgate::engine::counters::C;
use oscgate::engine::Engine;
use socket2::{Domain, Protocol, Socket, Type};

mod support;
use support::total_allocs;

const PATRONS: usize = 20;

fn osc(addr: &str, arg: &str) -> Vec<u8> {
    rosc::encoder::encode(&rosc::OscPacket::Message(rosc::OscMessage {
        addr: addr.into(),
        args: vec![rosc::OscType::String(arg.into())],
    }))
    .unwrap()
}

/// Reads what every patron has until `want` datagrams arrived in all or 5 s pass; answers
/// nothing (keepalives are 10 s apart, longer than the test). Allocates nothing.
fn drain(patrons: &[UdpSocket], want: usize) -> usize {
    let mut got = 0;
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    while got < want && Instant::now() < deadline {
        for p in patrons {
            while p.recv(&mut buf).is_ok() {
                got += 1;
            }
        }
    }
    got
}

fn run(driver: Driver, port: u16) {
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 255, 78, 1), port);
    let cfg = Config::from_toml(&format!(
        "[engine]\nworkers = 2\npin_workers = false\n[oschat]\nenabled = false\n[http]\nenabled = false\n[router]\nenabled = false\n[messenger]\ngroup = \"{group}\"\n\
         interface = \"127.0.0.1\"\nlisten = \"127.0.0.1:0\"\nttl = 0\n"
    ))
    .unwrap();
    let engine = Engine::start(&cfg, Some(driver)).unwrap();
    let gw = engine.bound().messenger.unwrap();
    let patrons: Vec<UdpSocket> = (0..PATRONS)
        .map(|i| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.send_to(&osc("/messenger/gateway/me/request", &format!("P{i}")), gw)
                .unwrap();
            s
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.members().len() < PATRONS {
        assert!(Instant::now() < deadline, "patrons not admitted");
        std::thread::sleep(Duration::from_millis(5));
    }
    for p in &patrons {
        p.set_nonblocking(true).unwrap();
    }
    drain(&patrons, PATRONS); // the accepts
    let sender = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    sender.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    sender.set_multicast_ttl_v4(0).unwrap();
    let sender: UdpSocket = sender.into();
    let to = SocketAddr::V4(group);
    let data = osc("/cue/level", "some payload of a realistic size");
    let round = |n: usize| -> usize {
        let mut delivered = 0;
        for i in 0..n {
            sender.send_to(&data, to).unwrap();
            patrons[0].send_to(&data, gw).unwrap();
            if i % 16 == 15 {
                // Keep socket buffers from overflowing: read what has arrived.
                delivered += drain(&patrons, 16 * (2 * PATRONS - 1));
            }
        }
        delivered + drain(&patrons, 0)
    };
    // Warm-up: pools, batches and arenas reach their working size.
    round(1000);
    std::thread::sleep(Duration::from_millis(50));
    drain(&patrons, 0);
    let forwarded_before = engine.counters()[C::Forwarded as usize];
    let before = total_allocs();
    let delivered = round(4000);
    let after = total_allocs();
    let forwarded = engine.counters()[C::Forwarded as usize] - forwarded_before;
    engine.stop().unwrap();
    // Real work happened: most of 4000 x (20 + 20) deliveries (loopback may drop some).
    assert!(
        forwarded > 100_000,
        "{driver:?}: forwarded only {forwarded}"
    );
    assert!(
        delivered > 100_000,
        "{driver:?}: delivered only {delivered}"
    );
    assert_eq!(
        after - before,
        0,
        "{driver:?}: heap allocations while forwarding {forwarded} deliveries"
    );
}

#[test]
fn forwarding_allocates_nothing_under_both_drivers() {
    let base = 40_000 + (std::process::id() % 10_000) as u16;
    run(Driver::Mio, base);
    match oscgate::engine::uring::probe() {
        Ok(_) => run(Driver::Uring, base + 1),
        Err(e) => eprintln!("io_uring part skipped: {e}"),
    }
}
