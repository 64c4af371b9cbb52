//! The `router` scenario end to end against oscgate's tcposcrouter front door started in this
//! process, under both drivers and both framings, at a low rate where loopback TCP is
//! lossless: every message must reach every other user once, in order, and be accounted. Then
//! the set-up failures: a non-loopback target, a refused register, a silent port.

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use oscgate::config::{Config, Driver};
use oscgate::engine::Engine;
use oscgate::wire::framing::Framing;
use oscgate_load::router::{run, RouterConfig};

fn start(d: Driver, extra: &str) -> (Engine, SocketAddr, SocketAddr) {
    let toml = format!(
        "[engine]\nworkers = 2\npin_workers = false\n[messenger]\nenabled = false\n\
         [oschat]\nenabled = false\n[http]\nenabled = false\n\
         [router]\nlisten = \"127.0.0.1:0\"\nlisten_slip = \"127.0.0.1:0\"\n{extra}"
    );
    let engine = Engine::start(&Config::from_toml(&toml).unwrap(), Some(d)).unwrap();
    let (len32, slip) = engine.bound().router.unwrap();
    (engine, len32, slip)
}

fn cfg(router: SocketAddr, framing: Framing) -> RouterConfig {
    RouterConfig {
        users: 6,
        senders: 2,
        rate: 2000,
        size: 64,
        duration: Duration::from_millis(400),
        router,
        framing,
        target_pid: Some(std::process::id()),
        find_target: false,
        register_timeout: Duration::from_secs(2),
        recv_threads: 2,
        progress: false,
    }
}

fn short_run_delivers_everything(d: Driver) {
    let (engine, len32, slip) = start(d, "");
    for (addr, framing) in [(len32, Framing::Len32), (slip, Framing::Slip)] {
        let r = run(&cfg(addr, framing)).unwrap();
        let table = r.to_table();
        let n = &r.run;
        // 2000/s for 0.4 s over two senders: about 800 (fewer if starved; flat out is millions).
        assert!((400..=900).contains(&n.sent), "{table}");
        assert_eq!(n.expected, n.sent * 5, "{table}");
        assert_eq!(n.delivered, n.expected, "{table}");
        assert_eq!(
            (n.lost, n.duplicated, n.reordered, n.late, n.malformed),
            (0, 0, 0, 0, 0),
            "{table}"
        );
        assert_eq!(
            r.unexpected, 0,
            "a sender got its own message back: {table}"
        );
        assert_eq!(n.latency_us.samples, n.delivered);
        assert!(n.latency_us.p50 > 0.0 && n.latency_us.p50 <= n.latency_us.max);
        assert_eq!(r.register.replies_with_id, 6, "{table}");
        assert_eq!((r.control.errors, r.control.closed), (0, 0), "{table}");
        assert!(r.sender_errors.is_empty(), "{table}");
        assert_eq!(r.framing, framing.name());
        // The router runs in this process: its figures are this process's.
        let p = r.target_process.expect("target process sampled");
        assert!(p.cpu_s > 0.0 && p.rss_kib > 0, "{table}");
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["delivered"], n.delivered);
        assert_eq!(v["lost"], 0);
        assert_eq!(v["register"]["replies_with_id"], 6);
    }
    engine.stop().unwrap();
}

#[test]
fn short_run_delivers_everything_mio() {
    short_run_delivers_everything(Driver::Mio);
}

#[test]
fn short_run_delivers_everything_uring() {
    match oscgate::engine::uring::probe() {
        Ok(_) => short_run_delivers_everything(Driver::Uring),
        Err(e) => eprintln!("skipped under io_uring: {e}"),
    }
}

#[test]
fn a_non_loopback_router_is_refused_before_any_traffic() {
    // 192.0.2.0/24 is TEST-NET-1: nothing would answer there anyway.
    let e = run(&cfg("192.0.2.1:55555".parse().unwrap(), Framing::Len32))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an IPv4 loopback address"), "{e}");
    let out = Command::new(env!("CARGO_BIN_EXE_oscgate-load"))
        .args(["router", "--router", "10.1.2.3:55555", "--duration", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--router 10.1.2.3:55555") && err.contains("127.0.0.0/8"),
        "{err}"
    );
}

#[test]
fn a_refused_register_says_why() {
    let (engine, len32, _) = start(Driver::Mio, "max_users = 2\n");
    let e = run(&RouterConfig {
        users: 3,
        senders: 1,
        ..cfg(len32, Framing::Len32)
    })
    .unwrap_err()
    .to_string();
    // Three registers race for two places: which one is refused is the router's business.
    assert!(e.starts_with("user user"), "{e}");
    assert!(e.contains("refused the register: too many users"), "{e}");
    engine.stop().unwrap();
}

#[test]
fn a_port_that_never_answers_times_out_with_a_hint() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let e = run(&RouterConfig {
        register_timeout: Duration::from_millis(200),
        ..cfg(silent.local_addr().unwrap(), Framing::Len32)
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("6 of 6 users got no register reply"), "{e}");
    assert!(e.contains("--framing"), "{e}");
}
