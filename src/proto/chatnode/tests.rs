//! A dual-homed node driven in simulated time: what it forwards, holds, catches up and says.

use super::*;
use crate::dedupe::KeyHasher;
use crate::proto::mesh::Iface;

const NET_A: &str = "10.0.1.0/24";
const NET_B: &str = "10.0.2.0/24";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn dedupe() -> Arc<Dedupe> {
    Arc::new(Dedupe::with_hasher(
        1024,
        10_000,
        KeyHasher::with_seed(1, 2),
    ))
}

fn node(name: &str, d: &Arc<Dedupe>) -> ChatNode {
    let nets = [NET_A, NET_B]
        .iter()
        .map(|n| Iface {
            network: (*n).to_owned(),
        })
        .collect();
    let cfg = NodeConfig {
        mesh: MeshConfig::new(name, nets),
        presence: PresenceConfig::default(),
        catchup_window: Duration::from_secs(10),
        catchup_bytes: 1 << 20,
    };
    ChatNode::new(cfg, Arc::clone(d), 7, Duration::ZERO)
}

fn chat_packet(c: &Chat<'_>) -> Vec<u8> {
    let mut p = Vec::new();
    c.write(&mut p).unwrap();
    p
}

fn message(text: &str) -> Vec<u8> {
    chat_packet(&Chat::Message {
        room: "stage",
        text,
        user: "ann",
        seq: 1,
    })
}

/// What the fast path does with a packet heard on `iface`: the duplicate check, forwarding
/// by the published flags; then the node hears it. Returns what the fast path forwarded to.
fn hear(n: &mut ChatNode, d: &Dedupe, now: Duration, iface: usize, packet: &[u8]) -> u64 {
    let chat = parse(packet).unwrap();
    if chat.is_mesh() {
        n.heard(now, iface, 0, true, 0, packet);
        return 0;
    }
    let key = key_of(d, &chat, &mut Vec::new());
    let first = d.check_and_insert(key, now.as_millis() as u64) == Seen::New;
    let forwarded = if first { n.forwarding()[iface] } else { 0 };
    n.heard(now, iface, key, first, forwarded, packet);
    forwarded
}

fn run(n: &mut ChatNode, until: Duration) {
    while let Some(t) = n.poll_timeout().filter(|t| *t <= until) {
        n.handle_timeout(t);
    }
}

fn drain(n: &mut ChatNode) -> Vec<(usize, Vec<u8>)> {
    std::iter::from_fn(|| n.poll_send()).collect()
}

/// Only the chat messages among `sent`, as (interface, text).
fn texts(sent: &[(usize, Vec<u8>)]) -> Vec<(usize, String)> {
    sent.iter()
        .filter_map(|(i, p)| match parse(p) {
            Ok(Chat::Message { text, .. }) => Some((*i, text.to_owned())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_lone_gateway_holds_until_it_is_active_then_flushes_in_order_and_forwards() {
    let d = dedupe();
    let mut n = node("node-b", &d);
    let start = drain(&mut n);
    // Start-up announces: on each interface, the other network with one hop.
    let announces: Vec<(usize, Chat<'_>)> =
        start.iter().map(|(i, p)| (*i, parse(p).unwrap())).collect();
    assert!(announces.contains(&(
        0,
        Chat::Announce {
            node: "node-b",
            network: NET_B,
            hops: Some(1)
        }
    )));
    assert_eq!(n.forwarding(), &[0, 0]);
    // Heard before any election: nothing forwarded yet.
    for (t, text) in [(100, "one"), (200, "two")] {
        assert_eq!(hear(&mut n, &d, ms(t), 0, &message(text)), 0);
    }
    hear(&mut n, &d, ms(300), 1, &message("from b"));
    assert!(texts(&drain(&mut n)).is_empty(), "held, not sent");
    // Listens 3 s, wins, waits 50-250 ms, becomes active: the held messages go first.
    run(&mut n, ms(3300));
    assert_eq!(n.forwarding(), &[0b10, 0b01]);
    let sent = drain(&mut n);
    // In order per direction (each direction's wait is drawn on its own).
    let to = |i| -> Vec<String> {
        texts(&sent)
            .into_iter()
            .filter(|(j, _)| *j == i)
            .map(|(_, t)| t)
            .collect()
    };
    assert_eq!(
        (to(1), to(0)),
        (vec!["one".into(), "two".into()], vec!["from b".into()])
    );
    assert_eq!(n.counters().caught_up, 3);
    // Heartbeats on both segments.
    assert!(sent
        .iter()
        .any(|(i, p)| *i == 0 && matches!(parse(p), Ok(Chat::Heartbeat { .. }))));
    // Now the fast path forwards by the flags: nothing more from here.
    assert_eq!(hear(&mut n, &d, ms(3400), 0, &message("three")), 0b10);
    assert!(texts(&drain(&mut n)).is_empty());
    // Its own copy heard back is a duplicate: not forwarded, not remembered.
    assert_eq!(hear(&mut n, &d, ms(3401), 1, &message("three")), 0);
    assert!(texts(&drain(&mut n)).is_empty());
}

#[test]
fn a_message_the_flags_missed_is_sent_from_the_slow_path_once() {
    let d = dedupe();
    let mut n = node("node-b", &d);
    run(&mut n, ms(3300));
    drain(&mut n);
    // The fast path still had the old (empty) flags when this arrived.
    let p = message("late");
    let key = key_of(&d, &parse(&p).unwrap(), &mut Vec::new());
    n.heard(ms(3310), 0, key, true, 0, &p);
    assert_eq!(texts(&drain(&mut n)), [(1, "late".to_owned())]);
    assert_eq!(n.counters().late_forwarded, 1);
    // A duplicate is never sent on.
    n.heard(ms(3311), 0, key, false, 0, &p);
    assert!(texts(&drain(&mut n)).is_empty());
}

#[test]
fn a_standby_takes_over_and_sends_exactly_what_the_silent_gateway_did_not_carry() {
    let d = dedupe();
    let mut n = node("node-b", &d);
    let hb = |net| {
        chat_packet(&Chat::Heartbeat {
            node: "node-a",
            network: net,
        })
    };
    let announce = |net| {
        chat_packet(&Chat::Announce {
            node: "node-a",
            network: net,
            hops: Some(1),
        })
    };
    hear(&mut n, &d, ms(10), 0, &announce(NET_B));
    hear(&mut n, &d, ms(10), 1, &announce(NET_A));
    // node-a heartbeats on both segments every second until 5 s.
    let mut t = 0;
    while t <= 5000 {
        hear(&mut n, &d, ms(t), 0, &hb(NET_B));
        hear(&mut n, &d, ms(t), 1, &hb(NET_A));
        run(&mut n, ms(t + 999));
        t += 1000;
    }
    assert_eq!(
        n.forwarding(),
        &[0, 0],
        "node-a (lower GUID) is the gateway"
    );
    // node-a carries "one" to segment 1; "two" it never carries (it died).
    hear(&mut n, &d, ms(5100), 0, &message("one"));
    hear(&mut n, &d, ms(5102), 1, &message("one"));
    hear(&mut n, &d, ms(5200), 0, &message("two"));
    drain(&mut n);
    // Two missed heartbeats (3 s of silence), the election, the wait.
    run(&mut n, ms(8000));
    assert!(
        n.forwarding().is_empty() || n.forwarding() == [0, 0],
        "not before 3 s of silence"
    );
    run(&mut n, ms(8400));
    assert_eq!(n.forwarding(), &[0b10, 0b01]);
    assert_eq!(texts(&drain(&mut n)), [(1, "two".to_owned())]);
}

#[test]
fn own_pings_and_list_replies_are_recorded_and_not_repeated() {
    let d = dedupe();
    let mut n = node("node-b", &d);
    drain(&mut n);
    // A user says hello; a list request follows.
    hear(
        &mut n,
        &d,
        ms(10),
        0,
        &chat_packet(&Chat::Hello {
            user: "ann",
            seq: 1,
        }),
    );
    let request = chat_packet(&Chat::ListUsers {
        seq: 42,
        payload: None,
    });
    hear(&mut n, &d, ms(20), 0, &request);
    let sent = drain(&mut n);
    let reply = chat_packet(&Chat::ListUsers {
        seq: 42,
        payload: Some("ann"),
    });
    // On both interfaces, once each.
    assert_eq!(
        sent.iter().filter(|(_, p)| *p == reply).count(),
        2,
        "{sent:?}"
    );
    // Its reply heard back (or another node's identical reply) is a duplicate.
    let key = key_of(&d, &parse(&reply).unwrap(), &mut Vec::new());
    assert_eq!(d.check_and_insert(key, 30), Seen::Duplicate);
    // Another node answered a second request first: this node stays quiet.
    let other = chat_packet(&Chat::ListUsers {
        seq: 43,
        payload: Some("ann"),
    });
    hear(&mut n, &d, ms(40), 1, &other);
    hear(
        &mut n,
        &d,
        ms(41),
        1,
        &chat_packet(&Chat::ListUsers {
            seq: 43,
            payload: None,
        }),
    );
    assert!(drain(&mut n).iter().all(|(_, p)| *p != other));
    assert_eq!(n.counters().own_suppressed, 1);
    // The ping, about 150 s later, on both interfaces and recorded.
    run(&mut n, Duration::from_secs(170));
    let pings: Vec<_> = drain(&mut n)
        .into_iter()
        .filter(|(_, p)| matches!(parse(p), Ok(Chat::Ping { user: "ann", .. })))
        .collect();
    assert_eq!(pings.len(), 2);
    let key = key_of(&d, &parse(&pings[0].1).unwrap(), &mut Vec::new());
    assert_eq!(d.check_and_insert(key, 170_000), Seen::Duplicate);
}

#[test]
fn shutdown_resigns_what_it_holds_and_bad_input_is_counted() {
    let d = dedupe();
    let mut n = node("node-b", &d);
    run(&mut n, ms(3300));
    drain(&mut n);
    n.shutdown(ms(3400));
    let resigns = drain(&mut n)
        .into_iter()
        .filter(|(_, p)| matches!(parse(p), Ok(Chat::Resign { node: "node-b", .. })))
        .count();
    assert_eq!(resigns, 2);
    assert_eq!(n.forwarding(), &[0, 0]);
    n.heard(ms(3500), 0, 1, true, 0, b"not osc");
    n.heard(ms(3500), 9, 1, true, 0, &message("no such interface"));
    assert_eq!(n.counters().malformed, 1);
}

#[test]
fn what_the_node_says_itself_is_broadcast_once_and_never_a_mesh_message() {
    let d = dedupe();
    let mut n = node("node-b", &d);
    drain(&mut n);
    let hi = message("from the web");
    assert!(n.originate(ms(10), &hi));
    assert_eq!(
        texts(&drain(&mut n)),
        [
            (0, "from the web".to_owned()),
            (1, "from the web".to_owned())
        ]
    );
    // Its echo is a duplicate; saying it again within the window sends nothing.
    assert_eq!(hear(&mut n, &d, ms(11), 0, &hi), 0);
    assert!(!n.originate(ms(12), &hi));
    assert!(drain(&mut n).is_empty());
    let hb = chat_packet(&Chat::Heartbeat {
        node: "node-b",
        network: NET_B,
    });
    assert!(!n.originate(ms(13), &hb));
    assert!(!n.originate(ms(13), b"junk"));
    assert!(drain(&mut n).is_empty());
}
