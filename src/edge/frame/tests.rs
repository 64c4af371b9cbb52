use super::*;
use proptest::prelude::*;

fn every_arg() -> Vec<OscArg> {
    vec![
        OscArg::Int(-7),
        OscArg::Float(0.25),
        OscArg::Str("hé".into()),
        OscArg::Symbol("sym".into()),
        OscArg::Blob(vec![0, 1, 2, 250, 251]),
        OscArg::Long(9_007_199_254_740_993),
        OscArg::Double(-1.5e300),
        OscArg::Time(0x8000_0000_0000_0001),
        OscArg::Char(u32::from('x')),
        OscArg::Color([1, 2, 3, 4]),
        OscArg::Midi([0, 0x90, 60, 100]),
        OscArg::True,
        OscArg::False,
        OscArg::Nil,
        OscArg::Inf,
        OscArg::ArrayOpen,
        OscArg::Int(1),
        OscArg::ArrayClose,
    ]
}

fn message() -> Frame {
    Frame::Osc(OscMessage {
        address: "/cue/go".into(),
        args: every_arg(),
    })
}

fn bundle() -> Frame {
    Frame::Bundle(OscBundle {
        timetag: u64::MAX - 1,
        elements: vec![
            Element::Osc(OscMessage {
                address: "/a".into(),
                args: vec![OscArg::Int(1)],
            }),
            Element::Bundle(OscBundle {
                timetag: 1,
                elements: vec![Element::Osc(OscMessage {
                    address: "/b".into(),
                    args: vec![],
                })],
            }),
        ],
    })
}

#[test]
fn json_shapes_are_the_documented_ones() {
    let h = Frame::Handshake(Handshake {
        version: "0.1.0".into(),
        protocol: "1.0.0".into(),
        encodings: vec!["json".into()],
        buses: vec!["messenger".into()],
    });
    assert_eq!(
        h.to_json(),
        r#"{"type":"handshake","version":"0.1.0","protocol":"1.0.0","encodings":["json"],"buses":["messenger"]}"#
    );
    let m = Frame::Osc(OscMessage {
        address: "/cue/go".into(),
        args: vec![
            OscArg::Int(1),
            OscArg::Str("hi".into()),
            OscArg::Long(-5),
            OscArg::True,
        ],
    });
    assert_eq!(
        m.to_json(),
        r#"{"type":"osc","address":"/cue/go","args":[{"type":"i","value":1},{"type":"s","value":"hi"},{"type":"h","value":"-5"},{"type":"T"}]}"#
    );
    assert_eq!(
        Frame::Bundle(OscBundle {
            timetag: 1,
            elements: vec![]
        })
        .to_json(),
        r#"{"type":"bundle","timetag":"1","elements":[]}"#
    );
    assert_eq!(
        Frame::error("bad_json", "x").to_json(),
        r#"{"type":"error","code":"bad_json","message":"x"}"#
    );
    // What a browser sends: fields it leaves out take their defaults.
    let id = Frame::from_json(r#"{"type":"identify","bus":"messenger","extra":1}"#).unwrap();
    assert_eq!(
        id,
        Frame::Identify(Identify {
            bus: "messenger".into(),
            ..Identify::default()
        })
    );
}

#[test]
fn every_argument_type_survives_json_protobuf_and_osc() {
    for f in [message(), bundle()] {
        let back = Frame::from_json(&f.to_json()).unwrap();
        assert_eq!(back, f, "json");
        let back = Frame::from_protobuf(&f.to_protobuf()).unwrap();
        assert_eq!(back, f, "protobuf");
        let packet = f.to_packet().unwrap();
        assert_eq!(Frame::from_packet(&packet).unwrap(), f, "osc");
    }
    // An independent decoder reads the packet with the same types and values (rosc has no
    // `S`: the types it knows).
    let mut known = every_arg();
    known.retain(|a| !matches!(a, OscArg::Symbol(_)));
    let packet = Frame::Osc(OscMessage {
        address: "/cue/go".into(),
        args: known,
    })
    .to_packet()
    .unwrap();
    let (_, p) = rosc::decoder::decode_udp(&packet).unwrap();
    let rosc::OscPacket::Message(m) = p else {
        panic!("not a message")
    };
    assert_eq!(m.addr, "/cue/go");
    assert_eq!(m.args[0], rosc::OscType::Int(-7));
    assert_eq!(m.args[4], rosc::OscType::Long(9_007_199_254_740_993));
    assert_eq!(m.args[3], rosc::OscType::Blob(vec![0, 1, 2, 250, 251]));
    assert_eq!(m.args[2], rosc::OscType::String("hé".into()));
}

#[test]
fn large_integers_are_strings_and_numbers_are_accepted_too() {
    let f = Frame::from_json(
        r#"{"type":"osc","address":"/x","args":[{"type":"h","value":"-9223372036854775808"},{"type":"h","value":3},{"type":"t","value":"18446744073709551615"}]}"#,
    )
    .unwrap();
    assert_eq!(
        f,
        Frame::Osc(OscMessage {
            address: "/x".into(),
            args: vec![
                OscArg::Long(i64::MIN),
                OscArg::Long(3),
                OscArg::Time(u64::MAX)
            ]
        })
    );
    assert!(f.to_json().contains(r#""value":"-9223372036854775808""#));
    let e =
        Frame::from_json(r#"{"type":"osc","address":"/x","args":[{"type":"h","value":"1e3"}]}"#)
            .unwrap_err();
    assert_eq!(e.code, "bad_json");
}

#[test]
fn non_finite_floats_blobs_and_chars_have_json_forms() {
    let f = Frame::Osc(OscMessage {
        address: "/x".into(),
        args: vec![
            OscArg::Float(f32::INFINITY),
            OscArg::Double(f64::NEG_INFINITY),
            OscArg::Blob(b"hello!?".to_vec()),
            OscArg::Char(0xD800),
        ],
    });
    let j = f.to_json();
    assert!(j.contains(r#""value":"Infinity""#), "{j}");
    assert!(j.contains(r#""value":"-Infinity""#), "{j}");
    assert!(j.contains(r#""value":"aGVsbG8hPw==""#), "{j}");
    assert!(j.contains(r#""value":55296"#), "{j}");
    assert_eq!(Frame::from_json(&j).unwrap(), f);
    let nan =
        Frame::from_json(r#"{"type":"osc","address":"/x","args":[{"type":"f","value":"NaN"}]}"#)
            .unwrap();
    let Frame::Osc(m) = nan else { panic!() };
    assert!(matches!(m.args[0], OscArg::Float(v) if v.is_nan()));
    for bad in ["aGVsbG8", "a===", "aGVs*G8h", "====", "aGVsbG8hPw==aGVs"] {
        let j =
            format!(r#"{{"type":"osc","address":"/x","args":[{{"type":"b","value":"{bad}"}}]}}"#);
        assert_eq!(Frame::from_json(&j).unwrap_err().code, "bad_json", "{bad}");
    }
    for (bytes, text) in [
        (&b""[..], ""),
        (b"f", "Zg=="),
        (b"fo", "Zm8="),
        (b"foo", "Zm9v"),
    ] {
        assert_eq!(base64::encode(bytes), text);
        assert_eq!(base64::decode(text).unwrap(), bytes);
    }
}

#[test]
fn malformed_frames_are_named_errors() {
    for (text, code) in [
        ("not json", "bad_json"),
        (r#"{"type":"teleport"}"#, "bad_json"),
        (r#"{"type":"osc"}"#, "bad_json"),
        (r#"{"address":"/x"}"#, "bad_json"),
        (
            r#"{"type":"osc","address":"/x","args":[{"type":"q","value":1}]}"#,
            "bad_json",
        ),
        (
            r#"{"type":"osc","address":"/x","args":[{"type":"i","value":"1"}]}"#,
            "bad_json",
        ),
        (
            r#"{"type":"osc","address":"/x","args":[{"type":"i","value":4294967296}]}"#,
            "bad_json",
        ),
        (
            r#"{"type":"osc","address":"/x","args":[{"type":"c","value":"ab"}]}"#,
            "bad_json",
        ),
        (
            r#"{"type":"osc","address":"/x","args":[{"type":"r","value":[1,2,3]}]}"#,
            "bad_json",
        ),
    ] {
        assert_eq!(Frame::from_json(text).unwrap_err().code, code, "{text}");
    }
    // Valid JSON, but not a packet.
    for text in [
        r#"{"type":"osc","address":"no-slash"}"#,
        r#"{"type":"osc","address":"/x","args":[{"type":"s","value":"a\u0000b"}]}"#,
        r#"{"type":"osc","address":"/x","args":[{"type":"["}]}"#,
    ] {
        let f = Frame::from_json(text).unwrap();
        assert_eq!(f.to_packet().unwrap_err().code, "bad_osc", "{text}");
    }
    assert_eq!(
        Frame::from_json(r#"{"type":"ready","session":"1"}"#)
            .unwrap()
            .to_packet()
            .unwrap_err()
            .code,
        "bad_frame"
    );
    // Nesting is bounded.
    let mut b = OscBundle {
        timetag: 1,
        elements: vec![],
    };
    for _ in 0..MAX_DEPTH {
        b = OscBundle {
            timetag: 1,
            elements: vec![Element::Bundle(b)],
        };
    }
    let deep = Frame::Bundle(b);
    assert_eq!(deep.to_packet().unwrap_err().code, "bad_osc");
    assert_eq!(
        Frame::from_protobuf(&deep.to_protobuf()).unwrap_err().code,
        "bad_protobuf"
    );
    // Protobuf: garbage, an empty envelope, an argument whose value does not fit its type.
    assert_eq!(
        Frame::from_protobuf(&[0xff, 0xff, 0xff]).unwrap_err().code,
        "bad_protobuf"
    );
    assert_eq!(Frame::from_protobuf(&[]).unwrap_err().code, "bad_protobuf");
    let wrong = pb::Envelope {
        kind: Some(pb::envelope::Kind::Osc(pb::Osc {
            address: "/x".into(),
            args: vec![pb::Arg {
                r#type: "i".into(),
                value: Some(pb::arg::Value::String("1".into())),
            }],
        })),
    };
    let bytes = prost::Message::encode_to_vec(&wrong);
    assert_eq!(
        Frame::from_protobuf(&bytes).unwrap_err().code,
        "bad_protobuf"
    );
    assert_eq!(Frame::from_packet(b"garbage!").unwrap_err().code, "bad_osc");
}

proptest! {
    #[test]
    fn no_input_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Frame::from_protobuf(&bytes);
        let _ = Frame::from_packet(&bytes);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Ok(f) = Frame::from_json(text) {
                let _ = f.to_packet();
            }
        }
    }

    #[test]
    fn osc_frames_round_trip(
        address in "/[a-z]{1,8}",
        ints in proptest::collection::vec(any::<i32>(), 0..8),
        text in "[^\u{0}]{0,16}",
        long in any::<i64>(),
    ) {
        let mut args: Vec<OscArg> = ints.into_iter().map(OscArg::Int).collect();
        args.push(OscArg::Str(text));
        args.push(OscArg::Long(long));
        let f = Frame::Osc(OscMessage { address, args });
        prop_assert_eq!(Frame::from_json(&f.to_json()).unwrap(), f.clone());
        prop_assert_eq!(Frame::from_protobuf(&f.to_protobuf()).unwrap(), f.clone());
        prop_assert_eq!(Frame::from_packet(&f.to_packet().unwrap()).unwrap(), f);
    }
}
