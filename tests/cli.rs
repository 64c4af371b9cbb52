//! The `oscgate` command line over real loopback sockets: `send` into `dump` over UDP
//! (unicast and multicast) and TCP (both framings), garbage into `dump`, `check-config`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_oscgate");
/// Upper bound for a line to show up; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(10);

/// A running `oscgate dump`, its output lines arriving on channels.
struct Dump {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
    /// The URL it listens on, as it printed it (port 0 resolved).
    url: String,
}

impl Drop for Dump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

fn dump(args: &[&str]) -> Dump {
    let mut child = Command::new(BIN)
        .arg("dump")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oscgate dump");
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    let ready = err
        .recv_timeout(WAIT)
        .expect("dump prints its listening line");
    let url = ready
        .split("listening on ")
        .nth(1)
        .expect("listening line")
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    Dump {
        child,
        out,
        err,
        url,
    }
}

impl Dump {
    fn line(&self) -> String {
        self.out.recv_timeout(WAIT).expect("a line on stdout")
    }
    fn err_line(&self) -> String {
        self.err.recv_timeout(WAIT).expect("a line on stderr")
    }
    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }
}

fn oscgate(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run oscgate")
}

fn send_ok(args: &[&str]) {
    let mut all = vec!["send"];
    all.extend_from_slice(args);
    let o = oscgate(&all);
    assert!(
        o.status.success(),
        "send {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn help_lists_the_subcommands() {
    let o = oscgate(&["--help"]);
    let text = String::from_utf8_lossy(&o.stdout);
    for sub in ["send", "dump", "check-config", "defaults"] {
        assert!(text.contains(sub), "--help lacks {sub}: {text}");
    }
}

#[test]
fn udp_send_to_dump_with_every_type() {
    let d = dump(&["osc.udp://127.0.0.1:0"]);
    let url = format!("osc.udp://127.0.0.1:{}", d.port());
    send_ok(&[
        &url,
        "/cue/go",
        ",ifsbhtdScrmTFNI[i]",
        "1",
        "2.5",
        "hi there",
        "01ff",
        "-7",
        "00000001.80000000",
        "0.25",
        "sym",
        "x",
        "ff000080",
        "00903c64",
        "9",
    ]);
    assert_eq!(
        d.line(),
        "/cue/go ,ifsbhtdScrmTFNI[i] 1 2.5 \"hi there\" <01ff> -7 00000001.80000000 0.25 'sym' 'x' #ff000080 \
         midi:00903c64 true false nil inf [ 9 ]"
    );
    send_ok(&[&url, "/inferred", "1", "2.5", "word", "true", "nil"]);
    assert_eq!(d.line(), "/inferred ,ifsTN 1 2.5 \"word\" true nil");
    send_ok(&[&url, "/b", "--bundle", "immediate", ",i", "3"]);
    assert_eq!(d.line(), "#bundle immediate");
    assert_eq!(d.line(), "  /b ,i 3");
}

#[test]
fn multicast_send_to_dump_on_loopback() {
    let d = dump(&["osc.udp://239.255.77.3:0", "--interface", "127.0.0.1"]);
    let url = format!("osc.udp://239.255.77.3:{}", d.port());
    send_ok(&[
        &url,
        "/mc",
        ",si",
        "group",
        "5",
        "--interface",
        "lo",
        "--ttl",
        "0",
    ]);
    assert_eq!(d.line(), "/mc ,si \"group\" 5");
}

#[test]
fn tcp_send_to_dump_in_both_framings() {
    let d = dump(&["osc.tcp://127.0.0.1:0", "--count", "4"]);
    let port = d.port();
    send_ok(&[&format!("osc.tcp://127.0.0.1:{port}"), "/len32", ",i", "1"]);
    assert_eq!(d.line(), "/len32 ,i 1");
    send_ok(&[
        &format!("osc.tcp+slip://127.0.0.1:{port}"),
        "/slip",
        ",s",
        "a\u{00c0}b",
    ]);
    assert_eq!(d.line(), "/slip ,s \"a\\xc3\\x80b\"");
    send_ok(&[
        &format!("osc.tcp+slip://127.0.0.1:{port}"),
        "/twice",
        "--repeat",
        "2",
    ]);
    assert_eq!(d.line(), "/twice ,");
    assert_eq!(d.line(), "/twice ,");
}

#[test]
fn garbage_gives_one_error_line_per_packet_and_dump_carries_on() {
    let d = dump(&["osc.udp://127.0.0.1:0"]);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = ("127.0.0.1", d.port());
    let bad: [&[u8]; 5] = [
        b"\x01\x02\x03",
        b"/a\0\0,i\0\0",
        b"/a\0\0,q\0\0",
        b"/a\0x,\0\0\0",
        b"#bundle\0\0\0\0\0\0\0\0\x01\x7f\xff\xff\xfc",
    ];
    for b in bad {
        s.send_to(b, to).unwrap();
    }
    s.send_to(b"/ok\0,\0\0\0", to).unwrap();
    assert_eq!(d.line(), "/ok ,");
    let errors: Vec<String> = (0..5).map(|_| d.err_line()).collect();
    for (e, want) in errors.iter().zip([
        "not a multiple of 4",
        "truncated",
        "unknown type tag 'q' at byte 5",
        "padding bytes are not NUL at byte 3",
        "truncated",
    ]) {
        assert!(
            e.starts_with("error: ") && e.contains(want),
            "{e:?} lacks {want:?}"
        );
    }
    assert!(d.err.try_recv().is_err(), "one line per bad packet");
}

#[test]
fn tcp_dump_survives_a_giant_length_prefix() {
    let d = dump(&["osc.tcp://127.0.0.1:0"]);
    let mut bad = TcpStream::connect(("127.0.0.1", d.port())).unwrap();
    bad.write_all(&0x7fff_fff0u32.to_be_bytes()).unwrap();
    assert!(d.err_line().contains("closing the connection"));
    send_ok(&[&format!("osc.tcp://127.0.0.1:{}", d.port()), "/after"]);
    assert_eq!(d.line(), "/after ,");
}

#[test]
fn check_config_reports_line_column_and_key() {
    let dir = std::env::temp_dir().join(format!("oscgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[messenger]\nmax_patrons = 20\n").unwrap();
    let o = oscgate(&["check-config", good.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok"));
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[messenger]\nenabled = true\nmax_patron = 5\n").unwrap();
    let o = oscgate(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.toml:3:1: key `messenger.max_patron`"),
        "{err}"
    );
    assert!(err.contains("max_patrons"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn defaults_print_a_valid_config() {
    let o = oscgate(&["defaults"]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        oscgate::config::Config::from_toml(&text).unwrap(),
        oscgate::config::Config::default()
    );
}

#[test]
fn send_refuses_bad_arguments_clearly() {
    let o = oscgate(&["send", "osc.udp://127.0.0.1:9", "/x", ",i", "notanint"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read \"notanint\" as type 'i'"));
    let o = oscgate(&["send", "udp://127.0.0.1:9", "/x"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown scheme"));
}

#[test]
fn dump_source_prefixes_the_sender_and_max_frame_bounds_tcp_frames() {
    let d = dump(&["osc.udp://127.0.0.1:0", "--source"]);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"/src\0\0\0\0,\0\0\0", ("127.0.0.1", d.port()))
        .unwrap();
    assert_eq!(d.line(), format!("{} /src ,", s.local_addr().unwrap()));

    let t = dump(&["osc.tcp+len32://127.0.0.1:0", "--max-frame", "64"]);
    let url = format!("osc.tcp://127.0.0.1:{}", t.port());
    send_ok(&[&url, "/small", ",s", "fits"]);
    assert_eq!(t.line(), "/small ,s \"fits\"");
    send_ok(&[&url, "/big", ",s", &"x".repeat(100)]);
    let e = t.err_line();
    assert!(
        e.contains("closing the connection") && e.contains("64"),
        "{e}"
    );
}
