//! Differential tests against rosc, an OSC implementation nobody here wrote:
//! every packet rosc encodes parses here to the same values, and every packet our writer
//! emits rosc decodes to the same values.

use oscgate::wire::{write_bundle, write_message, Arg, ElementWriter, Packet, TimeTag, WriteError};
use proptest::prelude::*;
use rosc::{
    OscArray, OscBundle, OscColor, OscMessage, OscMidiMessage, OscPacket, OscTime, OscType,
};

fn scalar() -> impl Strategy<Value = OscType> {
    prop_oneof![
        any::<i32>().prop_map(OscType::Int),
        any::<f32>().prop_map(OscType::Float),
        "[ -~]{0,12}".prop_map(OscType::String),
        proptest::collection::vec(any::<u8>(), 0..9).prop_map(OscType::Blob),
        any::<i64>().prop_map(OscType::Long),
        any::<f64>().prop_map(OscType::Double),
        (any::<u32>(), any::<u32>()).prop_map(|(s, f)| OscType::Time(OscTime {
            seconds: s,
            fractional: f
        })),
        any::<char>().prop_map(OscType::Char),
        any::<[u8; 4]>().prop_map(|c| OscType::Color(OscColor {
            red: c[0],
            green: c[1],
            blue: c[2],
            alpha: c[3]
        })),
        any::<[u8; 4]>().prop_map(|m| OscType::Midi(OscMidiMessage {
            port: m[0],
            status: m[1],
            data1: m[2],
            data2: m[3]
        })),
        any::<bool>().prop_map(OscType::Bool),
        Just(OscType::Nil),
        Just(OscType::Inf),
    ]
}

fn osc_arg() -> impl Strategy<Value = OscType> {
    scalar().prop_recursive(2, 12, 4, |inner| {
        proptest::collection::vec(inner, 0..4)
            .prop_map(|content| OscType::Array(OscArray { content }))
    })
}

fn message() -> impl Strategy<Value = OscMessage> {
    (
        "(/[a-zA-Z0-9_]{1,8}){1,4}",
        proptest::collection::vec(osc_arg(), 0..8),
    )
        .prop_map(|(addr, args)| OscMessage { addr, args })
}

fn packet() -> impl Strategy<Value = OscPacket> {
    message()
        .prop_map(OscPacket::Message)
        .prop_recursive(3, 16, 4, |inner| {
            (any::<(u32, u32)>(), proptest::collection::vec(inner, 0..4)).prop_map(
                |((s, f), content)| {
                    OscPacket::Bundle(OscBundle {
                        timetag: OscTime {
                            seconds: s,
                            fractional: f,
                        },
                        content,
                    })
                },
            )
        })
}

/// Our view of a packet, rebuilt as rosc values.
fn to_rosc(p: &Packet<'_>) -> OscPacket {
    match p {
        Packet::Message(m) => {
            let mut stack: Vec<Vec<OscType>> = vec![Vec::new()];
            for a in m.args() {
                let v = match a {
                    Arg::Int(v) => OscType::Int(v),
                    Arg::Float(v) => OscType::Float(v),
                    Arg::Str(s) => OscType::String(String::from_utf8(s.to_vec()).expect("utf8")),
                    Arg::Blob(b) => OscType::Blob(b.to_vec()),
                    Arg::Long(v) => OscType::Long(v),
                    Arg::Time(t) => OscType::Time(OscTime {
                        seconds: t.seconds,
                        fractional: t.fraction,
                    }),
                    Arg::Double(v) => OscType::Double(v),
                    Arg::Char(c) => OscType::Char(char::from_u32(c).expect("char")),
                    Arg::Color(c) => OscType::Color(OscColor {
                        red: c[0],
                        green: c[1],
                        blue: c[2],
                        alpha: c[3],
                    }),
                    Arg::Midi(m) => OscType::Midi(OscMidiMessage {
                        port: m[0],
                        status: m[1],
                        data1: m[2],
                        data2: m[3],
                    }),
                    Arg::True => OscType::Bool(true),
                    Arg::False => OscType::Bool(false),
                    Arg::Nil => OscType::Nil,
                    Arg::Inf => OscType::Inf,
                    Arg::Symbol(_) => panic!("rosc has no symbols"),
                    Arg::ArrayOpen => {
                        stack.push(Vec::new());
                        continue;
                    }
                    Arg::ArrayClose => {
                        let content = stack.pop().expect("balanced");
                        OscType::Array(OscArray { content })
                    }
                };
                stack.last_mut().expect("balanced").push(v);
            }
            assert_eq!(stack.len(), 1);
            OscPacket::Message(OscMessage {
                addr: m.address_str().expect("utf8").to_string(),
                args: stack.pop().unwrap_or_default(),
            })
        }
        Packet::Bundle(b) => OscPacket::Bundle(OscBundle {
            timetag: OscTime {
                seconds: b.timetag().seconds,
                fractional: b.timetag().fraction,
            },
            content: b.elements().map(|e| to_rosc(&e)).collect(),
        }),
    }
}

/// Writes a rosc value with our writer.
fn write_ours(p: &OscPacket, out: &mut Vec<u8>) -> Result<(), WriteError> {
    match p {
        OscPacket::Message(m) => write_message(out, m.addr.as_bytes(), &flatten(&m.args)),
        OscPacket::Bundle(b) => {
            let tt = TimeTag {
                seconds: b.timetag.seconds,
                fraction: b.timetag.fractional,
            };
            write_bundle(out, tt, |w| write_elements(&b.content, w))
        }
    }
}

fn write_elements(content: &[OscPacket], w: &mut ElementWriter<'_>) -> Result<(), WriteError> {
    for p in content {
        match p {
            OscPacket::Message(m) => {
                w.message(m.addr.as_bytes(), &flatten(&m.args))?;
            }
            OscPacket::Bundle(b) => {
                let tt = TimeTag {
                    seconds: b.timetag.seconds,
                    fraction: b.timetag.fractional,
                };
                w.bundle(tt, |inner| write_elements(&b.content, inner))?;
            }
        }
    }
    Ok(())
}

fn flatten(args: &[OscType]) -> Vec<Arg<'_>> {
    let mut out = Vec::new();
    for a in args {
        match a {
            OscType::Int(v) => out.push(Arg::Int(*v)),
            OscType::Float(v) => out.push(Arg::Float(*v)),
            OscType::String(s) => out.push(Arg::Str(s.as_bytes())),
            OscType::Blob(b) => out.push(Arg::Blob(b)),
            OscType::Time(t) => out.push(Arg::Time(TimeTag {
                seconds: t.seconds,
                fraction: t.fractional,
            })),
            OscType::Long(v) => out.push(Arg::Long(*v)),
            OscType::Double(v) => out.push(Arg::Double(*v)),
            OscType::Char(c) => out.push(Arg::Char(*c as u32)),
            OscType::Color(c) => out.push(Arg::Color([c.red, c.green, c.blue, c.alpha])),
            OscType::Midi(m) => out.push(Arg::Midi([m.port, m.status, m.data1, m.data2])),
            OscType::Bool(true) => out.push(Arg::True),
            OscType::Bool(false) => out.push(Arg::False),
            OscType::Nil => out.push(Arg::Nil),
            OscType::Inf => out.push(Arg::Inf),
            OscType::Array(arr) => {
                out.push(Arg::ArrayOpen);
                out.extend(flatten(&arr.content));
                out.push(Arg::ArrayClose);
            }
        }
    }
    out
}

/// Compares two rosc packets by their rosc encoding (bit-exact, so NaN compares equal).
fn same(a: &OscPacket, b: &OscPacket) -> bool {
    rosc::encoder::encode(a).expect("encode a") == rosc::encoder::encode(b).expect("encode b")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn rosc_encoded_parses_to_the_same_values(p in packet()) {
        let bytes = rosc::encoder::encode(&p).expect("rosc encodes");
        let ours = Packet::new_checked(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(ours.as_bytes(), &bytes[..]);
        prop_assert!(same(&to_rosc(&ours), &p));
    }

    #[test]
    fn our_writer_decodes_in_rosc_to_the_same_values(p in packet()) {
        let mut bytes = Vec::new();
        write_ours(&p, &mut bytes).expect("writes");
        let (rest, decoded) = rosc::decoder::decode_udp(&bytes).expect("rosc decodes");
        prop_assert!(rest.is_empty());
        prop_assert!(same(&decoded, &p));
        // And the bytes are exactly what rosc itself would send.
        prop_assert_eq!(bytes, rosc::encoder::encode(&p).expect("rosc encodes"));
    }
}

#[test]
fn symbols_and_reserved_tags_decode_here_even_where_rosc_cannot() {
    let mut b = Vec::new();
    write_message(&mut b, b"/s", &[Arg::Symbol(b"sym"), Arg::Int(1)]).unwrap();
    assert!(rosc::decoder::decode_udp(&b).is_err());
    let Packet::Message(m) = Packet::new_checked(&b).unwrap() else {
        panic!()
    };
    assert_eq!(
        m.args().collect::<Vec<_>>(),
        vec![Arg::Symbol(b"sym"), Arg::Int(1)]
    );
}
