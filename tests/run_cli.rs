//! `oscgate run` as a process: starts on a config file under each driver, serves a patron,
//! and on SIGTERM / SIGINT sends the patron `/messenger/gateway/me/shutdown` and exits 0; a bad
//! config file fails with its line and key; an unknown driver is refused.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_oscgate");

struct Daemon {
    child: Child,
    out: Receiver<String>,
    _dir: TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_config(name: &str, text: &str) -> (TempDir, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("oscgate-run-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("oscgate.toml");
    std::fs::write(&file, text).unwrap();
    (TempDir(dir), file)
}

fn start(name: &str, driver: &str, port: u16) -> Daemon {
    let (dir, file) = temp_config(
        name,
        &format!(
            "[engine]\nworkers = 2\n[oschat]\ninterfaces = [\"lo\"]\nport = 0\n\
             [router]\nlisten = \"127.0.0.1:0\"\nlisten_slip = \"127.0.0.1:0\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\
             [messenger]\ngroup = \"239.255.79.1:{port}\"\n\
             interface = \"127.0.0.1\"\nlisten = \"127.0.0.1:{port}\"\nttl = 0\n"
        ),
    );
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&file)
        .args(["--driver", driver])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
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
        out: rx,
        _dir: dir,
    };
    let mut oschat = false;
    let mut http = false;
    loop {
        let line = d
            .out
            .recv_timeout(Duration::from_secs(10))
            .expect("oscgate run never said it was running");
        if line == "oscgate: running" {
            assert!(oschat, "no oschat line before \"running\"");
            assert!(http, "no http line before \"running\"");
            return d;
        }
        oschat |= line.starts_with("oscgate: oschat node ") && line.contains("(lo 127.0.0.0/8)");
        http |= line.starts_with("oscgate: http on 127.0.0.1:");
        assert!(line.starts_with("oscgate: "), "unexpected stdout {line:?}");
        assert!(line.contains(&format!("driver {driver}")), "{line}");
    }
}

fn osc(addr: &str, args: &[&str]) -> Vec<u8> {
    rosc::encoder::encode(&rosc::OscPacket::Message(rosc::OscMessage {
        addr: addr.into(),
        args: args
            .iter()
            .map(|a| rosc::OscType::String((*a).into()))
            .collect(),
    }))
    .unwrap()
}

fn next_address(s: &UdpSocket) -> String {
    let mut buf = [0u8; 2048];
    let n = s
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("nothing from the gateway: {e}"));
    match rosc::decoder::decode_udp(&buf[..n]).unwrap().1 {
        rosc::OscPacket::Message(m) => m.addr,
        rosc::OscPacket::Bundle(_) => "#bundle".into(),
    }
}

/// A port no other test of this run uses (the daemon binds with `SO_REUSEPORT`, so two
/// daemons on one port would share it instead of failing): distinct per test, derived from
/// the pid, below the ephemeral range (32768-), and checked free for both protocols.
fn free_port(test: u16) -> u16 {
    let mut port = 21_000 + (std::process::id() % 1_400) as u16 * 8 + test;
    loop {
        let free = UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free {
            return port;
        }
        port = port.wrapping_add(32_000) % 60_000 + 1_024;
    }
}

fn signal_ends_with_shutdown_to_patrons(driver: &str, signal: i32, test: u16) {
    let port = free_port(test);
    let mut d = start(driver, driver, port);
    let patron = UdpSocket::bind("127.0.0.1:0").unwrap();
    patron
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    patron
        .send_to(
            &osc("/messenger/gateway/me/request", &["P"]),
            ("127.0.0.1", port),
        )
        .unwrap();
    assert_eq!(next_address(&patron), "/messenger/gateway/me/accept");
    let pid = d.child.id() as i32;
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    assert_eq!(next_address(&patron), "/messenger/gateway/me/shutdown");
    let status = d.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn sigterm_under_mio_tells_patrons_and_exits_zero() {
    signal_ends_with_shutdown_to_patrons("mio", libc::SIGTERM, 0);
}

#[test]
fn sigint_under_uring_tells_patrons_and_exits_zero() {
    if let Err(e) = oscgate::engine::uring::probe() {
        eprintln!("skipped: io_uring unavailable: {e}");
        return;
    }
    signal_ends_with_shutdown_to_patrons("uring", libc::SIGINT, 1);
}

#[test]
fn a_bad_config_fails_with_file_line_and_key() {
    let (_dir, file) = temp_config("bad", "[messenger]\nmax_patrons = \"many\"\n");
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("oscgate.toml:2:"), "{err}");
    assert!(err.contains("messenger.max_patrons"), "{err}");
}

#[test]
fn an_unknown_driver_is_refused() {
    let out = Command::new(BIN)
        .args(["run", "--driver", "epoll"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("epoll"));
}
