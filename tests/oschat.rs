//! The OSChat node on loopback, under both drivers: a client broadcasts on the node's port
//! and listens there, as an OSChat client does. One interface, so nothing is forwarded; what
//! is shown here is the node's own part: presence and list replies, the duplicate filter, and
//! hostile input. Forwarding between subnets and failover are in `oschat_mesh.rs` (network
//! namespaces, root only).

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use oscgate::config::{Config, Driver};
use oscgate::engine::counters::C;
use oscgate::engine::Engine;
use rosc::{OscMessage, OscPacket, OscType};

const BROADCAST: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 255);

struct Node {
    engine: Engine,
    port: u16,
    /// Sends (from an ephemeral port).
    tx: UdpSocket,
    /// Hears every broadcast on the port, the client's own included.
    rx: UdpSocket,
}

impl Node {
    fn start(driver: Driver) -> Node {
        Node::start_with(driver, "[http]\nenabled = false\n")
    }

    fn start_with(driver: Driver, extra: &str) -> Node {
        let toml = format!(
            "[engine]\nworkers = 2\npin_workers = false\n[messenger]\nenabled = false\n\
             [router]\nenabled = false\n[oschat]\ninterfaces = [\"lo\"]\nport = 0\n\
             node = \"00000000-0000-0000-0000-00000000000A\"\n{extra}"
        );
        let engine = Engine::start(&Config::from_toml(&toml).unwrap(), Some(driver)).unwrap();
        let bound = engine.bound().oschat.clone().expect("oschat runs");
        assert_eq!(bound.ifaces.len(), 1);
        assert_eq!(bound.ifaces[0].broadcast, BROADCAST);
        let rx = listener(bound.port);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_broadcast(true).unwrap();
        Node {
            engine,
            port: bound.port,
            tx,
            rx,
        }
    }

    fn say(&self, addr: &str, args: Vec<OscType>) {
        let p = rosc::encoder::encode(&OscPacket::Message(OscMessage {
            addr: addr.into(),
            args,
        }))
        .unwrap();
        self.tx.send_to(&p, (BROADCAST, self.port)).unwrap();
    }

    fn raw(&self, bytes: &[u8]) {
        self.tx.send_to(bytes, (BROADCAST, self.port)).unwrap();
    }

    /// The next message heard on the port from someone other than the client itself.
    fn next_from_node(&self) -> OscMessage {
        let me = self.tx.local_addr().unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let (n, from) = self
                .rx
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("nothing from the node: {e}"));
            if from == me {
                continue;
            }
            match rosc::decoder::decode_udp(&buf[..n]).unwrap().1 {
                OscPacket::Message(m) => return m,
                OscPacket::Bundle(b) => panic!("a bundle from the node: {b:?}"),
            }
        }
    }

    fn counter(&self, c: C) -> u64 {
        self.engine.counters()[c as usize]
    }

    fn wait_counter(&self, c: C, at_least: u64) {
        let end = Instant::now() + Duration::from_secs(5);
        while self.counter(c) < at_least {
            assert!(
                Instant::now() < end,
                "{} stayed at {}",
                c.name(),
                self.counter(c)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A socket on the OSChat port beside the node's (address and port reuse, as clients do).
fn listener(port: u16) -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())
        .unwrap();
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn list_reply(m: &OscMessage) -> Option<(i32, String)> {
    match (m.addr.as_str(), m.args.as_slice()) {
        ("/oschat/list/users", [OscType::Int(seq), OscType::String(name)]) => {
            Some((*seq, name.clone()))
        }
        _ => None,
    }
}

fn next_list_reply(n: &Node) -> (i32, String) {
    loop {
        let m = n.next_from_node();
        if let Some(r) = list_reply(&m) {
            return r;
        }
    }
}

fn lists_answer_from_presence_once_per_request(driver: Driver) {
    let n = Node::start(driver);
    // Nobody known: a list request gets no answer (a later one shows nothing came).
    n.say("/oschat/list/users", vec![OscType::Int(1)]);
    n.say("/oschat/hello/ann", vec![OscType::Int(1)]);
    // Chat-only client (unconnectable): known, never listed.
    n.say(
        "/oschat/message/stage",
        vec![OscType::String("hi".into()), OscType::String("bob".into())],
    );
    n.say("/oschat/list/users", vec![OscType::Int(2)]);
    assert_eq!(next_list_reply(&n), (2, "ann".into()));
    // The same request again is a duplicate: no second answer; the next one is answered.
    n.say("/oschat/list/users", vec![OscType::Int(2)]);
    n.say("/oschat/list/users", vec![OscType::Int(3)]);
    assert_eq!(next_list_reply(&n), (3, "ann".into()));
    // The node heard its own replies back and dropped them as duplicates; the client's
    // repeated request was one too.
    n.wait_counter(C::DroppedDuplicate, 3);
    // A pong-less goodbye removes ann: the next request gets no answer, so the one after
    // the next hello names the newcomer only.
    n.say("/oschat/goodbye/ann", vec![OscType::Int(1)]);
    n.say("/oschat/list/users", vec![OscType::Int(4)]);
    n.say("/oschat/hello/cy", vec![OscType::Int(1)]);
    n.say("/oschat/list/users", vec![OscType::Int(5)]);
    assert_eq!(next_list_reply(&n), (5, "cy".into()));
    n.engine.stop().unwrap();
}

fn hostile_input_is_counted_and_changes_nothing(driver: Driver) {
    let n = Node::start(driver);
    n.raw(b"\x00\x01garbage");
    n.raw(&[0xff; 3000]);
    // Right address, wrong arguments; an unknown /oschat address; not OSChat at all.
    n.say("/oschat/hello/ann", vec![OscType::String("x".into())]);
    n.say("/oschat/teleport/ann", vec![OscType::Int(1)]);
    n.say("/cue/go", vec![OscType::Int(1)]);
    // A truncated message: a valid one cut short.
    let whole = rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: "/oschat/message/stage".into(),
        args: vec![OscType::String("hello there".into())],
    }))
    .unwrap();
    n.raw(&whole[..whole.len() - 5]);
    n.wait_counter(C::BadPacket, 5);
    n.wait_counter(C::DroppedNoRoute, 1);
    // Still serving: the malformed hello did not add ann.
    n.say("/oschat/hello/dee", vec![OscType::Int(1)]);
    n.say("/oschat/list/users", vec![OscType::Int(9)]);
    assert_eq!(next_list_reply(&n), (9, "dee".into()));
    assert!(!n.engine.is_degraded());
    n.engine.stop().unwrap();
}

fn websocket_sessions_are_users_in_a_room(driver: Driver) {
    use common::ws::Ws;
    use serde_json::json;
    let n = Node::start_with(driver, "[http]\nlisten = \"127.0.0.1:0\"\n");
    let http = n.engine.bound().http.unwrap();
    let mut w = Ws::connect(http, "");
    let h = w.json();
    assert_eq!(h["buses"], json!(["oschat/ROOM"]), "{h}");
    w.send_json(json!({"type": "identify", "bus": "oschat/stage", "user": "web"}));
    assert_eq!(w.json()["type"], "ready");
    // The node says hello and the join for the session's user.
    let hello = n.next_from_node();
    assert_eq!(hello.addr, "/oschat/hello/web");
    assert_eq!(n.next_from_node().addr, "/oschat/join/stage/web");
    // What the session says is broadcast once.
    w.send_json(json!({"type": "osc", "address": "/oschat/message/stage", "args": [
        {"type": "s", "value": "hi all"}, {"type": "s", "value": "web"}, {"type": "i", "value": 1}]}));
    let m = n.next_from_node();
    assert_eq!(m.addr, "/oschat/message/stage");
    assert_eq!(
        m.args,
        [
            OscType::String("hi all".into()),
            OscType::String("web".into()),
            OscType::Int(1)
        ]
    );
    // Messages to its room reach it; other rooms' do not.
    n.say(
        "/oschat/message/lobby",
        vec![OscType::String("elsewhere".into())],
    );
    n.say(
        "/oschat/message/stage",
        vec![
            OscType::String("yo".into()),
            OscType::String("ann".into()),
            OscType::Int(5),
        ],
    );
    assert_eq!(
        w.json(),
        json!({"type": "osc", "address": "/oschat/message/stage", "args": [
            {"type": "s", "value": "yo"}, {"type": "s", "value": "ann"}, {"type": "i", "value": 5}]})
    );
    // The session's user is connectable (it said hello): listed.
    n.say("/oschat/list/users", vec![OscType::Int(77)]);
    assert_eq!(next_list_reply(&n), (77, "web".into()));
    // Mesh messages and non-OSChat packets from the session are refused.
    w.send_json(
        json!({"type": "osc", "address": "/oschat/mesh/heartbeat", "args": [
        {"type": "s", "value": "x"}, {"type": "s", "value": "10.0.0.0/8"}]}),
    );
    assert_eq!(w.json()["code"], "reserved_address");
    w.send_json(json!({"type": "osc", "address": "/cue/go"}));
    assert_eq!(w.json()["code"], "bad_oschat");
    // Leaving: the user leaves the room and says goodbye.
    drop(w);
    assert_eq!(n.next_from_node().addr, "/oschat/leave/stage/web");
    assert_eq!(n.next_from_node().addr, "/oschat/goodbye/web");
    n.engine.stop().unwrap();
}

#[test]
fn websocket_room_under_mio() {
    websocket_sessions_are_users_in_a_room(Driver::Mio);
}

#[test]
fn websocket_room_under_uring() {
    if common::uring_available() {
        websocket_sessions_are_users_in_a_room(Driver::Uring);
    }
}

#[test]
fn lists_under_mio() {
    lists_answer_from_presence_once_per_request(Driver::Mio);
}

#[test]
fn lists_under_uring() {
    if common::uring_available() {
        lists_answer_from_presence_once_per_request(Driver::Uring);
    }
}

#[test]
fn hostile_input_under_mio() {
    hostile_input_is_counted_and_changes_nothing(Driver::Mio);
}

#[test]
fn hostile_input_under_uring() {
    if common::uring_available() {
        hostile_input_is_counted_and_changes_nothing(Driver::Uring);
    }
}
