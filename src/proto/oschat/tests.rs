use super::*;
use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

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

#[test]
fn chat_messages_take_one_two_or_three_arguments() {
    let one = osc("/oschat/message/lobby", vec![s("hi")]);
    let two = osc("/oschat/message/lobby", vec![s("hi"), s("ann")]);
    let three = osc(
        "/oschat/message/lobby",
        vec![s("hi"), s("ann"), OscType::Int(7)],
    );
    assert_eq!(
        parse(&one),
        Ok(Chat::Message {
            room: "lobby",
            text: "hi",
            user: "Nobody",
            seq: 0
        })
    );
    assert_eq!(
        parse(&two),
        Ok(Chat::Message {
            room: "lobby",
            text: "hi",
            user: "ann",
            seq: 0
        })
    );
    assert_eq!(
        parse(&three),
        Ok(Chat::Message {
            room: "lobby",
            text: "hi",
            user: "ann",
            seq: 7
        })
    );
    // Pure Data's floats, 64-bit integers and symbols are read as the types they stand for.
    let pd = osc(
        "/oschat/message/lobby",
        vec![OscType::String("hi".into()), s("ann"), OscType::Float(7.0)],
    );
    assert_eq!(parse(&pd), parse(&three));
    let long = osc(
        "/oschat/message/lobby",
        vec![s("hi"), s("ann"), OscType::Long(7)],
    );
    assert_eq!(parse(&long), parse(&three));
}

#[test]
fn every_other_type_parses() {
    let i = OscType::Int(3);
    let cases: Vec<(Vec<u8>, Chat<'static>)> = vec![
        (
            osc("/oschat/ping/ann", vec![i.clone()]),
            Chat::Ping {
                user: "ann",
                seq: 3,
            },
        ),
        (
            osc("/oschat/pong/ann", vec![i.clone()]),
            Chat::Pong {
                user: "ann",
                seq: 3,
            },
        ),
        (
            osc("/oschat/hello/ann", vec![i.clone()]),
            Chat::Hello {
                user: "ann",
                seq: 3,
            },
        ),
        (
            osc("/oschat/goodbye/ann", vec![i.clone()]),
            Chat::Goodbye {
                user: "ann",
                seq: 3,
            },
        ),
        (
            osc("/oschat/list/users", vec![i.clone()]),
            Chat::ListUsers {
                seq: 3,
                payload: None,
            },
        ),
        (
            osc("/oschat/list/users", vec![i.clone(), s("ann")]),
            Chat::ListUsers {
                seq: 3,
                payload: Some("ann"),
            },
        ),
        (
            osc("/oschat/list/rooms", vec![i.clone()]),
            Chat::ListRooms {
                seq: 3,
                payload: None,
            },
        ),
        (
            osc("/oschat/list/users/lobby", vec![i.clone(), s("x")]),
            Chat::ListRoomUsers {
                room: "lobby",
                seq: 3,
                payload: Some("x"),
            },
        ),
        (
            osc("/oschat/join/lobby/ann", vec![i.clone()]),
            Chat::Join {
                room: "lobby",
                user: "ann",
                seq: 3,
            },
        ),
        (
            osc("/oschat/leave/lobby/ann", vec![i.clone()]),
            Chat::Leave {
                room: "lobby",
                user: "ann",
                seq: 3,
            },
        ),
        (
            osc(
                "/oschat/mesh/announce",
                vec![s("N"), s("10.0.0.0/24"), i.clone()],
            ),
            Chat::Announce {
                node: "N",
                network: "10.0.0.0/24",
                hops: Some(3),
            },
        ),
        (
            osc("/oschat/mesh/announce", vec![s("N"), s("10.0.0.0/24")]),
            Chat::Announce {
                node: "N",
                network: "10.0.0.0/24",
                hops: None,
            },
        ),
        (
            osc("/oschat/mesh/heartbeat", vec![s("N"), s("10.0.0.0/24")]),
            Chat::Heartbeat {
                node: "N",
                network: "10.0.0.0/24",
            },
        ),
        (
            osc("/oschat/mesh/elect", vec![s("N"), s("n")]),
            Chat::Elect {
                node: "N",
                network: "n",
            },
        ),
        (
            osc("/oschat/mesh/resign", vec![s("N"), s("n")]),
            Chat::Resign {
                node: "N",
                network: "n",
            },
        ),
    ];
    for (packet, want) in cases {
        let got = parse(&packet).unwrap();
        assert_eq!(got, want);
        assert_eq!(
            got.is_mesh(),
            matches!(
                want,
                Chat::Announce { .. }
                    | Chat::Heartbeat { .. }
                    | Chat::Elect { .. }
                    | Chat::Resign { .. }
            )
        );
        // Written back explicitly, it parses to the same message.
        let mut out = Vec::new();
        got.write(&mut out).unwrap();
        assert_eq!(parse(&out).unwrap(), want);
    }
}

#[test]
fn malformed_input_is_named() {
    let i = OscType::Int(1);
    let cases: Vec<(Vec<u8>, Error)> = vec![
        (b"junk".to_vec(), Error::NotMessage),
        (
            rosc::encoder::encode(&OscPacket::Bundle(OscBundle {
                timetag: OscTime::from((0, 1)),
                content: vec![],
            }))
            .unwrap(),
            Error::NotMessage,
        ),
        (osc("/other", vec![]), Error::NotOschat),
        (osc("/oschatty/message/x", vec![s("hi")]), Error::NotOschat),
        (osc("/oschat", vec![]), Error::UnknownAddress),
        (osc("/oschat/message", vec![s("hi")]), Error::UnknownAddress),
        (
            osc("/oschat/message//", vec![s("hi")]),
            Error::UnknownAddress,
        ),
        (
            osc("/oschat/nope/x", vec![i.clone()]),
            Error::UnknownAddress,
        ),
        (
            osc("/oschat/join/a/b/c", vec![i.clone()]),
            Error::UnknownAddress,
        ),
        (osc("/oschat/message/lobby", vec![]), Error::BadArguments),
        (
            osc("/oschat/message/lobby", vec![i.clone()]),
            Error::BadArguments,
        ),
        (
            osc("/oschat/message/lobby", vec![s("a"), s("b"), s("c")]),
            Error::BadArguments,
        ),
        (
            osc(
                "/oschat/message/lobby",
                vec![s("a"), s("b"), i.clone(), i.clone()],
            ),
            Error::BadArguments,
        ),
        (
            osc(
                "/oschat/message/lobby",
                vec![s("a"), s("b"), OscType::Float(1.5)],
            ),
            Error::BadArguments,
        ),
        (osc("/oschat/ping/ann", vec![]), Error::BadArguments),
        (osc("/oschat/ping/ann", vec![s("1")]), Error::BadArguments),
        (
            osc("/oschat/list/users", vec![i.clone(), s("a"), s("b")]),
            Error::BadArguments,
        ),
        (
            osc("/oschat/mesh/announce", vec![s("N")]),
            Error::BadArguments,
        ),
        (
            osc("/oschat/mesh/heartbeat", vec![s("N"), s("n"), i.clone()]),
            Error::BadArguments,
        ),
        (
            osc("/oschat/hello/ann", vec![OscType::Blob(vec![1])]),
            Error::BadArguments,
        ),
    ];
    for (packet, want) in cases {
        assert_eq!(
            parse(&packet),
            Err(want),
            "{:?}",
            rosc::decoder::decode_udp(&packet).map(|p| p.1)
        );
    }
}

#[test]
fn identity_fills_defaults_and_tells_messages_apart() {
    let id = |p: &[u8]| {
        let mut out = Vec::new();
        parse(p).unwrap().identity(&mut out);
        out
    };
    let short = osc("/oschat/message/lobby", vec![s("hi")]);
    let full = osc(
        "/oschat/message/lobby",
        vec![s("hi"), s("Nobody"), OscType::Int(0)],
    );
    assert_eq!(id(&short), id(&full));
    let other_seq = osc(
        "/oschat/message/lobby",
        vec![s("hi"), s("Nobody"), OscType::Int(1)],
    );
    let other_user = osc("/oschat/message/lobby", vec![s("hi"), s("ann")]);
    let other_room = osc("/oschat/message/hall", vec![s("hi")]);
    let other_text = osc("/oschat/message/lobby", vec![s("ho")]);
    // A field boundary cannot be moved: ("ab", "c") is not ("a", "bc").
    let shifted_a = osc("/oschat/message/lobby", vec![s("c"), s("ab")]);
    let shifted_b = osc("/oschat/message/lobby", vec![s("bc"), s("a")]);
    let all = [
        id(&short),
        id(&other_seq),
        id(&other_user),
        id(&other_room),
        id(&other_text),
        id(&shifted_a),
        id(&shifted_b),
    ];
    for i in 0..all.len() {
        for j in i + 1..all.len() {
            assert_ne!(all[i], all[j], "{i} and {j}");
        }
    }
    assert_ne!(
        id(&osc("/oschat/ping/ann", vec![OscType::Int(1)])),
        id(&osc("/oschat/pong/ann", vec![OscType::Int(1)]))
    );
    assert_ne!(
        id(&osc("/oschat/list/users", vec![OscType::Int(1)])),
        id(&osc("/oschat/list/users", vec![OscType::Int(1), s("ann")]))
    );
}

#[test]
fn large_sequences_are_written_as_64_bit() {
    let c = Chat::Hello {
        user: "ann",
        seq: 1 << 40,
    };
    let mut out = Vec::new();
    c.write(&mut out).unwrap();
    assert_eq!(parse(&out).unwrap(), c);
    let mut addr = String::new();
    c.address(&mut addr);
    assert_eq!(addr, "/oschat/hello/ann");
}
