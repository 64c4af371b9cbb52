//! The edge over real sockets, under both drivers: the WebSocket gateway (tungstenite as the
//! client) on the Messenger bus in all three encodings, its refusals and malformed frames, a
//! slow reader; `/metrics` read by a Prometheus text parser; `/api/status`, the pages and the
//! admin token.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use common::ws::Ws;
use oscgate::config::{Config, Driver};
use oscgate::edge::frame::{pb, Frame};
use oscgate::engine::Engine;
use rosc::{OscMessage, OscPacket, OscType};
use serde_json::{json, Value};
use tungstenite::Message;

fn fresh_group() -> SocketAddrV4 {
    static NEXT: AtomicU16 = AtomicU16::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let port = 24_000 + (std::process::id() % 5_000) as u16 + n;
    SocketAddrV4::new(Ipv4Addr::new(239, 255, 76, (n % 250) as u8 + 1), port)
}

struct Gw {
    engine: Engine,
    http: SocketAddr,
    patrons: SocketAddr,
    group: SocketAddrV4,
}

impl Gw {
    /// `http` goes into `[http]`, `ws` into `[websocket]`.
    fn start(d: Driver, http: &str, ws: &str) -> Gw {
        let group = fresh_group();
        let toml = format!(
            "[engine]\nworkers = 2\npin_workers = false\n[tcp]\nslow_reader_ms = 300\n\
             [oschat]\nenabled = false\n[router]\nenabled = false\n\
             [messenger]\ngroup = \"{group}\"\ninterface = \"127.0.0.1\"\nlisten = \"127.0.0.1:0\"\n\
             ttl = 0\n[http]\nlisten = \"127.0.0.1:0\"\n{http}\n[websocket]\n{ws}\n"
        );
        let engine = Engine::start(&Config::from_toml(&toml).unwrap(), Some(d)).unwrap();
        let b = engine.bound().clone();
        Gw {
            http: b.http.expect("http runs"),
            patrons: b.messenger.unwrap(),
            group,
            engine,
        }
    }

    fn ws(&self, query: &str) -> Ws {
        Ws::connect(self.http, query)
    }

    /// A JSON session identified on the Messenger bus; returns it and its session id.
    fn joined(&self, query: &str) -> Ws {
        let mut w = self.ws(query);
        let h = w.json();
        assert_eq!(h["type"], "handshake", "{h}");
        w.send_json(json!({"type": "identify", "client_type": "test", "client_agent": "edge.rs", "bus": "messenger"}));
        let r = w.json();
        assert_eq!(r["type"], "ready", "{r}");
        w
    }

    fn patron(&self, uid: &str) -> Patron {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let p = Patron {
            sock,
            gw: self.patrons,
        };
        p.send(&osc(
            "/messenger/gateway/me/request",
            vec![OscType::String(uid.into())],
        ));
        let m = p.next_message();
        assert_eq!(m.addr, "/messenger/gateway/me/accept");
        p
    }

    fn to_group(&self, packet: &[u8]) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let s2 = socket2::SockRef::from(&s);
        s2.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
        s.send_to(packet, self.group).unwrap();
    }

    fn get(&self, path: &str, headers: &str) -> (u16, String, String) {
        http_get(self.http, path, headers)
    }

    /// Waits until `/api/status` satisfies `f`.
    fn status_until(&self, f: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let (code, _, body) = self.get("/api/status", "Authorization: Bearer t0k\r\n");
            assert_eq!(code, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            if f(&v) {
                return v;
            }
            assert!(Instant::now() < end, "status never matched: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

struct Patron {
    sock: UdpSocket,
    gw: SocketAddr,
}

impl Patron {
    fn send(&self, p: &[u8]) {
        self.sock.send_to(p, self.gw).unwrap();
    }

    fn next_raw(&self) -> Vec<u8> {
        let mut buf = [0u8; 65536];
        let n = self
            .sock
            .recv(&mut buf)
            .expect("nothing reached the patron");
        buf[..n].to_vec()
    }

    /// The next packet that is not the gateway's keepalive.
    fn next_packet(&self) -> Vec<u8> {
        loop {
            let p = self.next_raw();
            if !p.starts_with(b"/messenger/gateway/") {
                return p;
            }
        }
    }

    fn next_message(&self) -> OscMessage {
        let p = self.next_raw();
        match rosc::decoder::decode_udp(&p).unwrap().1 {
            OscPacket::Message(m) => m,
            OscPacket::Bundle(b) => panic!("bundle: {b:?}"),
        }
    }
}

fn osc(addr: &str, args: Vec<OscType>) -> Vec<u8> {
    rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    }))
    .unwrap()
}

/// A bare-bones HTTP/1.1 GET (status, headers, body; chunked bodies decoded; an endless
/// event stream is read until its first event).
fn http_get(addr: SocketAddr, path: &str, headers: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!("GET {path}: {e}"),
        }
        let text = String::from_utf8_lossy(&raw);
        if text.contains("text/event-stream") && text.contains("\n\n") && text.contains("data:") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                out.push_str(&after[..n.min(after.len())]);
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_owned()
    };
    (code, head.to_owned(), body)
}

crate::both_drivers!(
    json_sessions_are_patrons_of_the_messenger_bus,
    protobuf_and_raw_osc_encodings_carry_the_same_traffic,
    refusals_say_why_and_close,
    malformed_frames_get_error_frames_and_the_session_goes_on,
    a_slow_reader_is_closed_and_the_others_keep_up,
    status_metrics_pages_and_the_admin_token,
    sessions_join_tcposcrouter_groups_as_users,
);

fn json_sessions_are_patrons_of_the_messenger_bus(d: Driver) {
    let gw = Gw::start(d, "", "");
    let p = gw.patron("P1");
    let mut w = gw.ws("");
    let h = w.json();
    assert_eq!(h["type"], "handshake");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(h["protocol"], "1.0.0");
    assert_eq!(h["encodings"], json!(["json", "protobuf", "osc"]));
    assert_eq!(h["buses"], json!(["messenger"]));
    w.send_json(
        json!({"type": "identify", "client_type": "web", "client_agent": "t", "bus": "messenger"}),
    );
    let r = w.json();
    assert_eq!(r["type"], "ready");
    assert!(r["session"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    // The session's message reaches the patron, typed as sent.
    w.send_json(json!({"type": "osc", "address": "/cue/go", "args": [
        {"type": "i", "value": 1}, {"type": "s", "value": "hi"},
        {"type": "h", "value": "9007199254740993"}, {"type": "T"}]}));
    let m = match rosc::decoder::decode_udp(&p.next_packet()).unwrap().1 {
        OscPacket::Message(m) => m,
        b => panic!("{b:?}"),
    };
    assert_eq!(m.addr, "/cue/go");
    assert_eq!(
        m.args,
        [
            OscType::Int(1),
            OscType::String("hi".into()),
            OscType::Long(9_007_199_254_740_993),
            OscType::Bool(true)
        ]
    );
    // The group's and the patron's traffic reach the session (never its own: the first
    // frame it gets is the group's).
    let from_group = osc("/from/group", vec![OscType::Float(0.5)]);
    gw.to_group(&from_group);
    assert_eq!(
        w.json(),
        json!({"type": "osc", "address": "/from/group", "args": [{"type": "f", "value": 0.5}]})
    );
    assert_eq!(
        p.next_packet(),
        from_group,
        "the patron hears the group too"
    );
    p.send(&osc("/from/patron", vec![OscType::String("x".into())]));
    assert_eq!(
        w.json(),
        json!({"type": "osc", "address": "/from/patron", "args": [{"type": "s", "value": "x"}]})
    );
    // A bundle goes out as a bundle.
    w.send_json(json!({"type": "bundle", "timetag": "1", "elements": [
        {"type": "osc", "address": "/b/1"}, {"type": "osc", "address": "/b/2", "args": [{"type": "i", "value": 2}]}]}));
    let b = p.next_packet();
    assert!(b.starts_with(b"#bundle\0"), "{b:?}");
    assert_eq!(
        Frame::from_packet(&b).unwrap().to_json(),
        r#"{"type":"bundle","timetag":"1","elements":[{"type":"osc","address":"/b/1","args":[]},{"type":"osc","address":"/b/2","args":[{"type":"i","value":2}]}]}"#
    );
    // Two sessions hear each other.
    let mut w2 = gw.joined("");
    w2.send_json(json!({"type": "osc", "address": "/w2"}));
    assert_eq!(w.json()["address"], "/w2");
    assert_eq!(p.next_packet(), osc("/w2", vec![]));
}

fn protobuf_and_raw_osc_encodings_carry_the_same_traffic(d: Driver) {
    use pb::envelope::Kind;
    let gw = Gw::start(d, "", "");
    let p = gw.patron("P1");
    // Protobuf both ways.
    let mut wp = gw.ws("?encoding=protobuf&version=1.0");
    let Kind::Handshake(h) = wp.envelope() else {
        panic!("no handshake")
    };
    assert_eq!(h.protocol, "1.0.0");
    let ident = pb::Envelope {
        kind: Some(Kind::Identify(pb::Identify {
            client_type: "native".into(),
            bus: "messenger".into(),
            ..Default::default()
        })),
    };
    wp.send_binary(prost::Message::encode_to_vec(&ident));
    assert!(matches!(wp.envelope(), Kind::Ready(_)));
    // Raw OSC: control frames as JSON text, then binary OSC packets.
    let mut wo = gw.ws("?encoding=osc");
    assert_eq!(wo.json()["type"], "handshake");
    wo.send_json(json!({"type": "identify", "bus": "messenger"}));
    assert_eq!(wo.json()["type"], "ready");
    // A raw packet from the osc session: byte for byte to the patron, typed to protobuf.
    let packet = osc(
        "/raw",
        vec![OscType::Double(2.5), OscType::Blob(vec![1, 2, 3])],
    );
    wo.send_binary(packet.clone());
    assert_eq!(p.next_packet(), packet);
    let Kind::Osc(m) = wp.envelope() else {
        panic!("not osc")
    };
    assert_eq!(m.address, "/raw");
    assert_eq!(m.args[0].r#type, "d");
    assert_eq!(m.args[0].value, Some(pb::arg::Value::Double(2.5)));
    assert_eq!(m.args[1].value, Some(pb::arg::Value::Blob(vec![1, 2, 3])));
    // The patron's packet reaches the osc session byte for byte.
    let from_patron = osc("/from/patron", vec![OscType::Int(7)]);
    p.send(&from_patron);
    assert_eq!(wo.binary(), from_patron);
    assert!(matches!(wp.envelope(), Kind::Osc(m) if m.address == "/from/patron"));
    // A protobuf message from the session.
    let msg = pb::Envelope {
        kind: Some(Kind::Osc(pb::Osc {
            address: "/pb".into(),
            args: vec![pb::Arg {
                r#type: "i".into(),
                value: Some(pb::arg::Value::Int32(42)),
            }],
        })),
    };
    wp.send_binary(prost::Message::encode_to_vec(&msg));
    assert_eq!(p.next_packet(), osc("/pb", vec![OscType::Int(42)]));
    assert_eq!(wo.binary(), osc("/pb", vec![OscType::Int(42)]));
}

fn refusals_say_why_and_close(d: Driver) {
    let gw = Gw::start(d, "", "tokens = [\"sesame\"]");
    gw.ws("?encoding=xml").refused("bad_encoding");
    gw.ws("?version=2.0").refused("unsupported_version");
    gw.ws("?version=1.1").refused("unsupported_version");
    let ident = |w: &mut Ws, v: Value| {
        assert_eq!(w.json()["type"], "handshake");
        w.send_json(v);
    };
    let mut w = gw.ws("");
    ident(&mut w, json!({"type": "osc", "address": "/x"}));
    w.refused("expected_identify");
    let mut w = gw.ws("");
    ident(&mut w, json!({"type": "identify", "bus": "messenger"}));
    w.refused("unauthorized");
    let mut w = gw.ws("");
    ident(
        &mut w,
        json!({"type": "identify", "bus": "messenger", "token": "wrong"}),
    );
    w.refused("unauthorized");
    let mut w = gw.ws("");
    ident(
        &mut w,
        json!({"type": "identify", "bus": "nowhere", "token": "sesame"}),
    );
    w.refused("unknown_bus");
    let mut w = gw.ws("");
    assert_eq!(w.json()["type"], "handshake");
    w.sock.send(Message::Text("{not json".into())).unwrap();
    w.refused("bad_json");
    // And the right token joins.
    let mut w = gw.ws("");
    ident(
        &mut w,
        json!({"type": "identify", "bus": "messenger", "token": "sesame"}),
    );
    assert_eq!(w.json()["type"], "ready");
}

fn malformed_frames_get_error_frames_and_the_session_goes_on(d: Driver) {
    let gw = Gw::start(d, "", "");
    let p = gw.patron("P1");
    let mut w = gw.joined("");
    let code = |w: &mut Ws| {
        let e = w.json();
        assert_eq!(e["type"], "error", "{e}");
        e["code"].as_str().unwrap().to_owned()
    };
    w.sock.send(Message::Text("garbage".into())).unwrap();
    assert_eq!(code(&mut w), "bad_json");
    w.send_binary(vec![0xff, 0x00, 0x13]);
    assert_eq!(code(&mut w), "bad_protobuf");
    w.send_json(json!({"type": "osc", "address": "no-slash"}));
    assert_eq!(code(&mut w), "bad_osc");
    w.send_json(
        json!({"type": "osc", "address": "/messenger/gateway/me/request",
        "args": [{"type": "s", "value": "X"}]}),
    );
    assert_eq!(code(&mut w), "reserved_address");
    w.send_json(json!({"type": "ready", "session": "9"}));
    assert_eq!(code(&mut w), "unexpected_frame");
    w.send_json(json!({"type": "identify", "bus": "messenger"}));
    assert_eq!(code(&mut w), "already_identified");
    // None of that reached the bus; this does.
    w.send_json(json!({"type": "osc", "address": "/still/here"}));
    assert_eq!(p.next_packet(), osc("/still/here", vec![]));
    // A long run of garbage closes the session.
    for _ in 0..64 {
        w.sock.send(Message::Text("x".into())).unwrap();
    }
    let mut errors = 0;
    loop {
        match w.sock.read() {
            Ok(Message::Text(_)) => errors += 1,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert_eq!(errors, 64);
    assert!(!gw.engine.is_degraded());
}

fn a_slow_reader_is_closed_and_the_others_keep_up(d: Driver) {
    let gw = Gw::start(d, "admin_token = \"t0k\"", "queue_limit = 64");
    let p = gw.patron("P1");
    let mut slow = gw.joined("");
    let mut good = gw.joined("");
    // The slow session never reads again; the patron floods (1 KiB messages).
    let big = osc("/flood", vec![OscType::Blob(vec![7; 1024])]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut seen = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match good.sock.read() {
                    Ok(Message::Text(t)) if t.as_str().contains("/done") => {
                        stop.store(true, Ordering::Relaxed);
                    }
                    Ok(Message::Text(_)) => seen += 1,
                    Ok(_) => {}
                    Err(e) => panic!("the good session failed after {seen}: {e}"),
                }
            }
        });
        let end = Instant::now() + Duration::from_secs(10);
        let mut closed = false;
        while !closed && Instant::now() < end {
            for _ in 0..200 {
                p.send(&big);
            }
            std::thread::sleep(Duration::from_millis(5));
            let (_, _, body) = gw.get("/api/status", "Authorization: Bearer t0k\r\n");
            let v: Value = serde_json::from_str(&body).unwrap();
            closed = v["websocket"]["slow_closed"].as_u64() >= Some(1);
        }
        assert!(closed, "the slow session was never closed");
        // The good session still gets traffic.
        std::thread::sleep(Duration::from_millis(100));
        let done = osc("/done", vec![]);
        let end = Instant::now() + Duration::from_secs(5);
        while !stop.load(Ordering::Relaxed) {
            assert!(Instant::now() < end, "the good session never saw /done");
            p.send(&done);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let v = gw.status_until(|v| v["websocket"]["sessions"].as_array().map(Vec::len) == Some(1));
    assert!(v["websocket"]["slow_dropped"].as_u64() > Some(0), "{v}");
    drop(slow.sock.read());
}

fn status_metrics_pages_and_the_admin_token(d: Driver) {
    let gw = Gw::start(d, "admin_token = \"t0k\"", "");
    let _p = gw.patron("P1");
    let _w = gw.joined("");
    for path in ["/", "/api/status", "/metrics", "/api/events"] {
        let (code, head, _) = gw.get(path, "");
        assert_eq!(code, 401, "{path}");
        assert!(head.contains("Bearer"), "{head}");
        let (code, _, _) = gw.get(path, "Authorization: Bearer wrong\r\n");
        assert_eq!(code, 401, "{path}");
    }
    // The status shows the patron and the session.
    let v = gw.status_until(|v| {
        v["websocket"]["sessions"].as_array().map(Vec::len) == Some(1)
            && v["messenger"]["patrons"].as_array().map(Vec::len) == Some(1)
    });
    let driver = match d {
        Driver::Mio => "mio",
        _ => "uring",
    };
    assert_eq!(v["driver"], driver);
    assert_eq!(v["websocket"]["sessions"][0]["bus"], "messenger");
    assert_eq!(v["websocket"]["sessions"][0]["client_type"], "test");
    assert!(v["counters"]["rx_messenger"].as_u64() >= Some(1), "{v}");
    assert_eq!(v["workers"], 2);
    // Metrics parse, with the families and labels documented.
    let (code, head, body) = gw.get("/metrics", "Authorization: Bearer t0k\r\n");
    assert_eq!(code, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no {name} {label:?} in\n{body}"));
        match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    assert_eq!(value("oscgate_websocket_sessions", None), 1.0);
    assert_eq!(value("oscgate_messenger_patrons", None), 1.0);
    assert!(value("oscgate_received_total", Some(("door", "messenger"))) >= 1.0);
    assert_eq!(
        value("oscgate_received_total", Some(("door", "router"))),
        0.0
    );
    assert_eq!(
        value("oscgate_dropped_total", Some(("reason", "no_route"))),
        0.0
    );
    assert_eq!(value("oscgate_queue_depth", Some(("worker", "1"))), 0.0);
    assert_eq!(value("oscgate_info", Some(("driver", driver))), 1.0);
    assert!(scrape.docs.contains_key("oscgate_forwarded_total"));
    // The token as a query parameter (what the live page's event source uses).
    let (code, head, body) = gw.get("/api/events?token=t0k", "");
    assert_eq!(code, 200);
    assert!(head.contains("text/event-stream"), "{head}");
    let data = body
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .expect("an event");
    let ev: Value = serde_json::from_str(data.trim()).unwrap();
    assert_eq!(ev["driver"], driver);
    let (code, _, page) = gw.get("/?token=t0k", "");
    assert_eq!(code, 200);
    assert!(page.contains("EventSource"), "the live page");
    let (code, _, demo) = gw.get("/demo", "");
    assert_eq!(code, 200);
    assert!(demo.contains("/gateway") || demo.contains("gateway?encoding=json"));
}

/// A tcposcrouter client over TCP with the length-prefix framing.
struct RouterTcp {
    s: TcpStream,
    frames: common::Frames,
}

impl RouterTcp {
    fn connect(addr: SocketAddr) -> RouterTcp {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        RouterTcp {
            s,
            frames: common::Frames::new(false),
        }
    }

    fn send(&mut self, p: &[u8]) {
        let mut f = (p.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(p);
        self.s.write_all(&f).unwrap();
    }

    fn next(&mut self) -> OscMessage {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(p) = self.frames.take() {
                match rosc::decoder::decode_udp(&p) {
                    Ok((_, OscPacket::Message(m))) => return m,
                    other => panic!("not a message: {other:?}"),
                }
            }
            assert!(Instant::now() < end, "nothing from the router");
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("the router closed"),
                Ok(n) => self.frames.push(&chunk[..n]),
                Err(_) => {}
            }
        }
    }
}

fn sessions_join_tcposcrouter_groups_as_users(d: Driver) {
    let toml = "[engine]\nworkers = 2\npin_workers = false\n[oschat]\nenabled = false\n\
                [messenger]\nenabled = false\n\
                [router]\nlisten = \"127.0.0.1:0\"\nlisten_slip = \"127.0.0.1:0\"\n\
                [http]\nlisten = \"127.0.0.1:0\"\n";
    let engine = Engine::start(&Config::from_toml(toml).unwrap(), Some(d)).unwrap();
    let http = engine.bound().http.unwrap();
    let (len32, _) = engine.bound().router.unwrap();
    let s = |v: &str| OscType::String(v.into());
    let mut alice = RouterTcp::connect(len32);
    alice.send(&osc(
        "/oscrouter/register",
        vec![s("alice"), s("a"), s("band"), s("g"), OscType::Int(1)],
    ));
    assert_eq!(alice.next().addr, "/oscrouter/register/alice/1");
    assert_eq!(alice.next().args, [s("alice")]);
    let connect = || {
        let mut w = Ws::connect(http, "");
        let h = w.json();
        assert_eq!(h["buses"], json!(["router/GROUP"]), "{h}");
        w
    };
    // The wrong group password: refused by the router, with its reason.
    let mut w = connect();
    w.send_json(
        json!({"type": "identify", "bus": "router/band", "user": "web",
        "password": "w", "group_password": "wrong"}),
    );
    w.refused("refused");
    // The right one: a user of the group like any TCP client.
    let mut w = connect();
    w.send_json(
        json!({"type": "identify", "bus": "router/band", "user": "web",
        "password": "w", "group_password": "g", "client_type": "web"}),
    );
    assert_eq!(w.json()["type"], "ready");
    // Everyone hears the user list naming the newcomer, the session too.
    assert_eq!(alice.next().args, [s("alice"), s("web")]);
    let ul = w.json();
    assert_eq!(ul["address"], "/oscrouter/userlist", "{ul}");
    assert_eq!(
        ul["args"],
        json!([{"type": "s", "value": "alice"}, {"type": "s", "value": "web"}])
    );
    // Both ways.
    w.send_json(json!({"type": "osc", "address": "/jam", "args": [{"type": "i", "value": 3}]}));
    assert_eq!(
        alice.next(),
        OscMessage {
            addr: "/jam".into(),
            args: vec![OscType::Int(3)]
        }
    );
    alice.send(&osc("/back", vec![OscType::Float(1.5)]));
    assert_eq!(
        w.json(),
        json!({"type": "osc", "address": "/back", "args": [{"type": "f", "value": 1.5}]})
    );
    // A private message carries the sender's name in place of the target.
    w.send_json(json!({"type": "osc", "address": "/oscrouter/private",
        "args": [{"type": "s", "value": "alice"}, {"type": "s", "value": "/p"}, {"type": "i", "value": 9}]}));
    let m = alice.next();
    assert_eq!(m.addr, "/oscrouter/private");
    assert_eq!(m.args, [s("web"), s("/p"), OscType::Int(9)]);
    // The session leaves: the user list goes out without it.
    drop(w);
    assert_eq!(alice.next().args, [s("alice")]);
}
