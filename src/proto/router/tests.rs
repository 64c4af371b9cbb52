use super::*;
use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

const KEY: [u8; 32] = [7; 32];

fn limits() -> Limits {
    Limits {
        max_users: 10,
        max_groups: 3,
        max_name_len: 16,
        max_password_len: 16,
        register_timeout: Duration::from_secs(10),
    }
}

fn router() -> Router<u32> {
    Router::new(limits(), KEY)
}

fn osc(addr: &str, args: Vec<OscType>) -> Vec<u8> {
    rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    }))
    .unwrap()
}

fn s(v: &str) -> OscType {
    OscType::String(v.into())
}

fn register(user: &str, pw: &str, group: &str, gpw: &str, id: Option<OscType>) -> Vec<u8> {
    let mut args = vec![s(user), s(pw), s(group), s(gpw)];
    args.extend(id);
    osc("/oscrouter/register", args)
}

fn decode(p: &[u8]) -> OscMessage {
    match rosc::decoder::decode_udp(p).unwrap().1 {
        OscPacket::Message(m) => m,
        OscPacket::Bundle(_) => panic!("bundle"),
    }
}

/// Every pending action, with packets decoded.
#[derive(Debug, PartialEq)]
enum A {
    Send(u32, String, Vec<OscType>),
    Close(u32, Refusal),
    Membership,
}

fn drain(r: &mut Router<u32>) -> Vec<A> {
    let mut out = Vec::new();
    while let Some(a) = r.poll_action() {
        out.push(match a {
            Action::Send { to, packet } => {
                let m = decode(&packet);
                A::Send(to, m.addr, m.args)
            }
            Action::Close { conn, reason } => A::Close(conn, reason),
            Action::Membership => A::Membership,
        });
    }
    out
}

fn userlist(to: u32, names: &[&str]) -> A {
    A::Send(
        to,
        "/oscrouter/userlist".into(),
        names.iter().map(|n| s(n)).collect(),
    )
}

fn ack(to: u32, addr: &str) -> A {
    A::Send(to, addr.into(), vec![])
}

fn refused(r: &mut Router<u32>, conn: u32, why: Refusal) {
    assert_eq!(
        drain(r),
        vec![
            A::Send(conn, "/oscrouter/error".into(), vec![s(why.as_str())]),
            A::Close(conn, why)
        ]
    );
}

const T0: Duration = Duration::ZERO;

#[test]
fn register_replies_with_user_and_id_as_sent_then_userlists() {
    let mut r = router();
    r.opened(T0, 1);
    r.handle(
        T0,
        1,
        &register("alice", "pw", "band", "gpw", Some(OscType::Int(4242))),
    );
    assert_eq!(
        drain(&mut r),
        vec![
            ack(1, "/oscrouter/register/alice/4242"),
            A::Membership,
            userlist(1, &["alice"]),
        ]
    );
    // Pd sends the id as a float; the reply writes it as Python does.
    r.handle(
        T0,
        2,
        &register("bob", "pw2", "band", "gpw", Some(OscType::Float(99.0))),
    );
    assert_eq!(
        drain(&mut r),
        vec![
            ack(2, "/oscrouter/register/bob/99.0"),
            A::Membership,
            userlist(1, &["alice", "bob"]),
            userlist(2, &["alice", "bob"]),
        ]
    );
    r.handle(T0, 3, &register("carol", "x", "band", "gpw", Some(s("s1"))));
    r.handle(T0, 4, &register("dave", "x", "band", "gpw", None));
    let acks: Vec<A> = drain(&mut r)
        .into_iter()
        .filter(|a| matches!(a, A::Send(_, addr, _) if addr.starts_with("/oscrouter/register")))
        .collect();
    assert_eq!(
        acks,
        vec![
            ack(3, "/oscrouter/register/carol/s1"),
            ack(4, "/oscrouter/register/dave")
        ]
    );
    assert_eq!(r.member(&2), Some(("band", "bob")));
    assert_eq!((r.user_count(), r.group_count()), (4, 1));
}

#[test]
fn a_second_connection_of_a_user_is_not_a_join() {
    let mut r = router();
    r.handle(T0, 1, &register("alice", "pw", "band", "g", None));
    r.handle(T0, 2, &register("bob", "pw", "band", "g", None));
    drain(&mut r);
    r.handle(
        T0,
        3,
        &register("alice", "pw", "band", "g", Some(OscType::Int(1))),
    );
    assert_eq!(
        drain(&mut r),
        vec![
            ack(3, "/oscrouter/register/alice/1"),
            A::Membership,
            userlist(3, &["alice", "bob"]),
        ]
    );
    let view: Vec<_> = r.groups().collect();
    assert_eq!(
        view,
        vec![GroupView {
            name: "band",
            users: vec![("alice", &[1u32, 3][..]), ("bob", &[2u32][..])],
        }]
    );
    // Closing one of alice's connections changes the fan-out but nobody left.
    r.closed(1);
    assert_eq!(drain(&mut r), vec![A::Membership]);
    // Her last one: bob learns she left.
    r.closed(3);
    assert_eq!(drain(&mut r), vec![userlist(2, &["bob"]), A::Membership]);
    // The name is free again, with any password.
    r.handle(T0, 4, &register("alice", "new", "band", "g", None));
    assert_eq!(drain(&mut r)[0], ack(4, "/oscrouter/register/alice"));
}

#[test]
fn the_last_user_takes_the_group_with_it() {
    let mut r = router();
    r.handle(T0, 1, &register("alice", "pw", "band", "g1", None));
    r.closed(1);
    assert_eq!(r.group_count(), 0);
    drain(&mut r);
    // Recreated with another password.
    r.handle(T0, 2, &register("bob", "pw", "band", "g2", None));
    assert_eq!(drain(&mut r)[0], ack(2, "/oscrouter/register/bob"));
}

#[test]
fn wrong_passwords_are_refused_and_closed() {
    let mut r = router();
    r.handle(T0, 1, &register("alice", "pw", "band", "g", None));
    drain(&mut r);
    r.handle(T0, 2, &register("alice", "nope", "band", "g", None));
    refused(&mut r, 2, Refusal::WrongPassword);
    r.handle(T0, 3, &register("bob", "pw", "band", "nope", None));
    refused(&mut r, 3, Refusal::WrongGroupPassword);
    // A password that shares a prefix, or is longer, is still wrong.
    r.handle(T0, 4, &register("alice", "pw2", "band", "g", None));
    refused(&mut r, 4, Refusal::WrongPassword);
    r.handle(T0, 5, &register("alice", "p", "band", "g", None));
    refused(&mut r, 5, Refusal::WrongPassword);
    assert_eq!(r.user_count(), 1);
    assert_eq!(r.counters().refused, 4);
    // What a refused connection sends before it is closed is ignored: a pipelined second
    // guess cannot get in.
    r.handle(T0, 2, &register("alice", "pw", "band", "g", None));
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.member(&2), None);
    r.closed(2);
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn the_first_packet_must_be_a_well_formed_register() {
    let mut r = router();
    let cases: Vec<(Vec<u8>, Refusal)> = vec![
        (osc("/hello", vec![]), Refusal::NotRegister),
        (
            osc("/oscrouter/reg*", vec![s("a"), s("b"), s("c"), s("d")]),
            Refusal::NotRegister,
        ),
        (
            osc("/oscrouter/register/", vec![s("a"), s("b"), s("c"), s("d")]),
            Refusal::NotRegister,
        ),
        (b"garbage!".to_vec(), Refusal::NotRegister),
        (
            rosc::encoder::encode(&OscPacket::Bundle(OscBundle {
                timetag: OscTime::from((0, 1)),
                content: vec![OscPacket::Message(decode(&register(
                    "a", "b", "c", "d", None,
                )))],
            }))
            .unwrap(),
            Refusal::NotRegister,
        ),
        (
            osc("/oscrouter/register", vec![s("a"), s("b"), s("c")]),
            Refusal::Malformed,
        ),
        (
            osc(
                "/oscrouter/register",
                vec![s("a"), s("b"), s("c"), OscType::Int(1)],
            ),
            Refusal::Malformed,
        ),
        (
            register("a", "b", "c", "d", Some(OscType::Double(1.0))),
            Refusal::Malformed,
        ),
        (
            osc(
                "/oscrouter/register",
                vec![
                    s("a"),
                    s("b"),
                    s("c"),
                    s("d"),
                    OscType::Int(1),
                    OscType::Int(2),
                ],
            ),
            Refusal::Malformed,
        ),
        (register("", "b", "c", "d", None), Refusal::Empty),
        (register("a", "", "c", "d", None), Refusal::Empty),
        (register("a", "b", "", "d", None), Refusal::Empty),
        (
            register(&"u".repeat(17), "b", "c", "d", None),
            Refusal::TooLong,
        ),
        (
            register("a", &"p".repeat(17), "c", "d", None),
            Refusal::TooLong,
        ),
        (
            register("a", "b", "c", &"p".repeat(17), None),
            Refusal::TooLong,
        ),
        (
            register("a", "b", "c", "d", Some(s(&"i".repeat(65)))),
            Refusal::TooLong,
        ),
        (register("a/b", "b", "c", "d", None), Refusal::BadName),
        (register("a b", "b", "c", "d", None), Refusal::BadName),
        (register("a", "b", "c*", "d", None), Refusal::BadName),
        (
            register("a", "b", "c", "d", Some(s("1/2"))),
            Refusal::BadName,
        ),
    ];
    for (i, (packet, why)) in cases.into_iter().enumerate() {
        let conn = i as u32;
        r.opened(T0, conn);
        r.handle(T0, conn, &packet);
        refused(&mut r, conn, why);
    }
    assert_eq!((r.user_count(), r.group_count()), (0, 0));
    // Non-ASCII names and an empty group password are fine.
    r.handle(T0, 100, &register("zoë", "b", "chœur", "", None));
    assert_eq!(drain(&mut r)[0], ack(100, "/oscrouter/register/zoë"));
}

#[test]
fn limits_on_groups_users_and_connections() {
    let mut r = router();
    for g in 0..3 {
        r.handle(T0, g, &register("u", "p", &format!("g{g}"), "", None));
    }
    drain(&mut r);
    r.handle(T0, 10, &register("u", "p", "g3", "", None));
    refused(&mut r, 10, Refusal::TooManyGroups);
    for u in 0..7 {
        r.handle(T0, 20 + u, &register(&format!("v{u}"), "p", "g0", "", None));
    }
    drain(&mut r);
    assert_eq!(r.user_count(), 10);
    r.handle(T0, 30, &register("w", "p", "g0", "", None));
    refused(&mut r, 30, Refusal::TooManyUsers);
    // More connections of an existing user are not more users...
    for c in 1..MAX_CONNS_PER_USER as u32 {
        r.handle(T0, 100 + c, &register("u", "p", "g0", "", None));
    }
    assert!(!drain(&mut r).iter().any(|a| matches!(a, A::Close(..))));
    // ...up to a bound.
    r.handle(T0, 99, &register("u", "p", "g0", "", None));
    refused(&mut r, 99, Refusal::TooManyConnections);
}

#[test]
fn register_timeout_in_simulated_time() {
    let mut r = router();
    assert_eq!(r.poll_timeout(), None);
    r.opened(Duration::from_secs(1), 1);
    r.opened(Duration::from_secs(3), 2);
    assert_eq!(r.poll_timeout(), Some(Duration::from_secs(11)));
    r.handle(
        Duration::from_secs(4),
        2,
        &register("a", "p", "g", "", None),
    );
    drain(&mut r);
    assert_eq!(r.poll_timeout(), Some(Duration::from_secs(11)));
    r.handle_timeout(Duration::from_millis(10_999));
    assert_eq!(drain(&mut r), vec![]);
    r.handle_timeout(Duration::from_secs(11));
    refused(&mut r, 1, Refusal::Timeout);
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(r.counters().timeouts, 1);
    // A registered connection never times out.
    r.handle_timeout(Duration::from_secs(1000));
    assert_eq!(drain(&mut r), vec![]);
}

#[test]
fn private_messages_reach_the_target_with_the_senders_name() {
    let mut r = router();
    r.handle(T0, 1, &register("alice", "p", "band", "", None));
    r.handle(T0, 2, &register("bob", "p", "band", "", None));
    r.handle(T0, 3, &register("bob", "p", "band", "", None));
    r.handle(T0, 4, &register("bob", "p", "other", "", None));
    drain(&mut r);
    let args = vec![
        s("bob"),
        s("/cue"),
        OscType::Int(1),
        OscType::Double(2.5),
        OscType::Blob(vec![1, 2, 3]),
    ];
    r.handle(T0, 1, &osc("/oscrouter/private", args));
    let want = vec![
        s("alice"),
        s("/cue"),
        OscType::Int(1),
        OscType::Double(2.5),
        OscType::Blob(vec![1, 2, 3]),
    ];
    assert_eq!(
        drain(&mut r),
        vec![
            A::Send(2, "/oscrouter/private".into(), want.clone()),
            A::Send(3, "/oscrouter/private".into(), want),
        ]
    );
    // Unknown target, or a user of another group: dropped.
    r.handle(T0, 1, &osc("/oscrouter/private", vec![s("carol"), s("/x")]));
    r.handle(T0, 4, &osc("/oscrouter/private", vec![s("alice"), s("/x")]));
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.counters().private_unknown_target, 2);
    // To oneself: the other connections only.
    r.handle(T0, 2, &osc("/oscrouter/private", vec![s("bob"), s("/me")]));
    assert_eq!(
        drain(&mut r),
        vec![A::Send(
            3,
            "/oscrouter/private".into(),
            vec![s("bob"), s("/me")]
        )]
    );
    // Without an address after the target: swallowed.
    r.handle(T0, 1, &osc("/oscrouter/private", vec![s("bob")]));
    assert_eq!(drain(&mut r), vec![]);
}

#[test]
fn rewrite_private_keeps_every_byte_after_the_name() {
    let packet = osc(
        "/oscrouter/private",
        vec![
            s("b"),
            s("/a/long/address"),
            OscType::String("xyz".into()),
            OscType::Long(-1),
        ],
    );
    for sender in ["", "a", "abc", "abcd", "a-much-longer-name"] {
        let mut out = Vec::new();
        assert_eq!(rewrite_private(&packet, sender, &mut out), Some(&b"b"[..]));
        assert_eq!(
            decode(&out).args,
            vec![s(sender), s("/a/long/address"), s("xyz"), OscType::Long(-1)]
        );
        assert!(Packet::new_checked(&out).is_ok());
    }
    let mut out = Vec::new();
    assert_eq!(rewrite_private(b"nope", "x", &mut out), None);
    assert_eq!(
        rewrite_private(
            &osc("/oscrouter/ping", vec![s("a"), s("/b")]),
            "x",
            &mut out
        ),
        None
    );
    assert_eq!(
        rewrite_private(
            &osc("/oscrouter/private", vec![OscType::Int(1), s("/b")]),
            "x",
            &mut out
        ),
        None
    );
}

#[test]
fn pings_and_other_control_messages_are_swallowed() {
    let mut r = router();
    r.handle(T0, 1, &register("alice", "p", "band", "", None));
    drain(&mut r);
    r.handle(T0, 1, &osc("/oscrouter/ping", vec![s("alice")]));
    // A second register on a live connection: nothing forwarded, nothing changed.
    r.handle(T0, 1, &register("mallory", "p", "band", "", None));
    r.handle(T0, 1, &osc("/oscrouter/userlist", vec![]));
    r.handle(T0, 1, b"junk");
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.counters().pings, 1);
    assert_eq!(r.counters().swallowed, 3);
    assert_eq!(r.member(&1), Some(("band", "alice")));
    assert_eq!(r.user_count(), 1);
}

#[test]
fn passwords_never_appear_in_actions_or_debug_output() {
    let mut r = router();
    r.handle(
        T0,
        1,
        &register("alice", "s3cr3t-user", "band", "s3cr3t-group", None),
    );
    r.handle(
        T0,
        2,
        &register("alice", "s3cr3t-wrong", "band", "s3cr3t-group", None),
    );
    let mut bytes = Vec::new();
    while let Some(a) = r.poll_action() {
        bytes.extend(format!("{a:?}").into_bytes());
        if let Action::Send { packet, .. } = a {
            bytes.extend(packet);
        }
    }
    bytes.extend(format!("{r:?}").into_bytes());
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(!format!("{:?}", r.groups).contains("s3cr3t"));
}

#[test]
fn equal_passwords_are_stored_differently() {
    let mut r = router();
    r.handle(T0, 1, &register("a", "same", "g", "same", None));
    r.handle(T0, 2, &register("b", "same", "g", "same", None));
    let g = &r.groups[0];
    assert_ne!(g.users[0].password.hash, g.users[1].password.hash);
    assert_ne!(g.password.hash, g.users[0].password.hash);
}

#[test]
fn floats_are_written_as_python_does() {
    for (x, want) in [
        (99.0, "99.0"),
        (0.5, "0.5"),
        (-2.25, "-2.25"),
        (123456.0, "123456.0"),
        (1e16, "1e+16"),
        (1.5e-5, "1.5e-05"),
        (0.0001, "0.0001"),
        (1e15, "1000000000000000.0"),
        (f64::from(0.1f32), "0.10000000149011612"),
        (0.0, "0.0"),
        (f64::INFINITY, "inf"),
        (f64::NAN, "nan"),
    ] {
        assert_eq!(python_float(x), want, "{x}");
    }
}

fn bundle(tt: (u32, u32), content: Vec<OscPacket>) -> OscPacket {
    OscPacket::Bundle(OscBundle {
        timetag: OscTime::from(tt),
        content,
    })
}

fn m(addr: &str, args: Vec<OscType>) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    })
}

#[test]
fn split_bundle_takes_out_control_messages_and_keeps_the_rest_byte_for_byte() {
    let p = rosc::encoder::encode(&bundle(
        (7, 8),
        vec![
            m(
                "/oscrouter/register",
                vec![s("u"), s("p"), s("g"), s(""), OscType::Int(1)],
            ),
            m("/a", vec![OscType::Double(1.5)]),
            bundle(
                (9, 10),
                vec![
                    m("/oscrouter/private", vec![s("bob"), s("/x")]),
                    m("/b", vec![]),
                ],
            ),
            bundle((11, 12), vec![m("/oscrouter/ping", vec![s("u")])]),
        ],
    ))
    .unwrap();
    let mut rest = Vec::new();
    let mut controls = Vec::new();
    assert_eq!(split_bundle(&p, &mut rest, &mut controls), Some(true));
    let addrs: Vec<String> = controls
        .iter()
        .map(|r| decode(&p[r.clone()]).addr)
        .collect();
    assert_eq!(
        addrs,
        [
            "/oscrouter/register",
            "/oscrouter/private",
            "/oscrouter/ping"
        ]
    );
    let want = rosc::encoder::encode(&bundle(
        (7, 8),
        vec![
            m("/a", vec![OscType::Double(1.5)]),
            bundle((9, 10), vec![m("/b", vec![])]),
        ],
    ))
    .unwrap();
    assert_eq!(rest, want);
    // Only control: nothing left.
    let p =
        rosc::encoder::encode(&bundle((0, 1), vec![m("/oscrouter/ping", vec![s("u")])])).unwrap();
    assert_eq!(split_bundle(&p, &mut rest, &mut controls), Some(false));
    assert!(rest.is_empty());
    assert_eq!(controls.len(), 1);
    // Not a bundle.
    assert_eq!(
        split_bundle(&osc("/a", vec![]), &mut rest, &mut controls),
        None
    );
    assert_eq!(split_bundle(b"#bundle\0", &mut rest, &mut controls), None);
}

#[test]
fn first_message_is_found_depth_first() {
    let p = rosc::encoder::encode(&bundle(
        (0, 1),
        vec![
            bundle((0, 1), vec![]),
            bundle((0, 1), vec![m("/deep", vec![])]),
            m("/later", vec![]),
        ],
    ))
    .unwrap();
    let r = first_message(&p).unwrap();
    assert_eq!(decode(&p[r]).addr, "/deep");
    let plain = osc("/plain", vec![OscType::Int(1)]);
    assert_eq!(first_message(&plain), Some(0..plain.len()));
    let empty = rosc::encoder::encode(&bundle((0, 1), vec![])).unwrap();
    assert_eq!(first_message(&empty), None);
    assert_eq!(first_message(b"junk"), None);
}
