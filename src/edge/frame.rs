//! The WebSocket gateway's frames: one model ([`Frame`]) and its three encodings: JSON
//! (serde; the shapes in the README), protobuf (types generated from `gateway.proto` by the
//! build script, no system `protoc` needed) and raw OSC packets.
//!
//! What it does: decode a client's text frame ([`Frame::from_json`]) or binary frame
//! ([`Frame::from_protobuf`]), encode what the server sends ([`Frame::to_json`],
//! [`Frame::to_protobuf`]), and turn OSC frames into packets and back ([`Frame::to_packet`],
//! [`Frame::from_packet`]). Every decode error is a [`FrameError`] with a code the error frame
//! carries; nothing here panics on input.
//!
//! # JSON decisions
//! - Every frame is `{"type": "...", ...}`; unknown fields are ignored (a newer client's extra
//!   fields do not break an older server).
//! - Arguments are `{"type": "<OSC tag>", "value": ...}`; `T`, `F`, `N`, `I`, `[` and `]` have
//!   no value. 64-bit integers (`h`) and time tags (`t`, bundle `timetag`) are decimal strings
//!   (a JavaScript number cannot hold them); a JSON integer is accepted on input too.
//! - Blobs (`b`) are base64 strings (standard alphabet, padded). Floats (`f`, `d`) are numbers,
//!   or the strings `"NaN"`, `"Infinity"`, `"-Infinity"` (JSON has no such numbers).
//! - `c` is a one-character string (a code that is not a character: a number); `r` and `m`
//!   are arrays of four bytes.
//! - OSC strings that are not UTF-8 are sent with U+FFFD in place of the bad bytes.

use serde::{Deserialize, Serialize};

use crate::wire::{write_bundle, write_message, Arg, ElementWriter, Packet, TimeTag};

/// The types generated from `gateway.proto`.
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/oscgate.gateway.v1.rs"));
}

/// The deepest bundle nesting accepted from a client.
pub const MAX_DEPTH: usize = 8;

/// A gateway frame. See the module docs for the JSON shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    Handshake(Handshake),
    Identify(Identify),
    Ready(Ready),
    Error(ErrorFrame),
    Osc(OscMessage),
    Bundle(OscBundle),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    pub version: String,
    pub protocol: String,
    pub encodings: Vec<String>,
    pub buses: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identify {
    #[serde(default)]
    pub client_type: String,
    #[serde(default)]
    pub client_agent: String,
    #[serde(default)]
    pub bus: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group_password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    pub session: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OscMessage {
    pub address: String,
    #[serde(default)]
    pub args: Vec<OscArg>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OscBundle {
    #[serde(with = "u64_text")]
    pub timetag: u64,
    #[serde(default)]
    pub elements: Vec<Element>,
}

/// A bundle element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Element {
    Osc(OscMessage),
    Bundle(OscBundle),
}

/// One typed OSC argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value")]
pub enum OscArg {
    #[serde(rename = "i")]
    Int(i32),
    #[serde(rename = "f", with = "f32_text")]
    Float(f32),
    #[serde(rename = "s")]
    Str(String),
    #[serde(rename = "S")]
    Symbol(String),
    #[serde(rename = "b", with = "base64")]
    Blob(Vec<u8>),
    #[serde(rename = "h", with = "i64_text")]
    Long(i64),
    #[serde(rename = "d", with = "f64_text")]
    Double(f64),
    #[serde(rename = "t", with = "u64_text")]
    Time(u64),
    #[serde(rename = "c", with = "char_code")]
    Char(u32),
    #[serde(rename = "r")]
    Color([u8; 4]),
    #[serde(rename = "m")]
    Midi([u8; 4]),
    #[serde(rename = "T")]
    True,
    #[serde(rename = "F")]
    False,
    #[serde(rename = "N")]
    Nil,
    #[serde(rename = "I")]
    Inf,
    #[serde(rename = "[")]
    ArrayOpen,
    #[serde(rename = "]")]
    ArrayClose,
}

/// Why a frame could not be decoded or encoded; `code` goes into the error frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
}

impl FrameError {
    fn new(code: &'static str, message: impl Into<String>) -> FrameError {
        FrameError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl Frame {
    /// An error frame.
    pub fn error(code: &str, message: impl Into<String>) -> Frame {
        Frame::Error(ErrorFrame {
            code: code.to_owned(),
            message: message.into(),
        })
    }

    /// Decodes a text frame.
    pub fn from_json(text: &str) -> Result<Frame, FrameError> {
        serde_json::from_str(text).map_err(|e| FrameError::new("bad_json", e.to_string()))
    }

    /// Encodes as a text frame.
    pub fn to_json(&self) -> String {
        // Every field is a string, number, array or map of those: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes a binary frame (a protobuf `Envelope`).
    pub fn from_protobuf(bytes: &[u8]) -> Result<Frame, FrameError> {
        let env = <pb::Envelope as prost::Message>::decode(bytes)
            .map_err(|e| FrameError::new("bad_protobuf", e.to_string()))?;
        Frame::from_pb(env)
    }

    /// Encodes as a binary frame (a protobuf `Envelope`).
    pub fn to_protobuf(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.to_pb())
    }

    /// The OSC packet an `osc` or `bundle` frame stands for.
    pub fn to_packet(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        match self {
            Frame::Osc(m) => write_msg(m, &mut out)?,
            Frame::Bundle(b) => {
                if depth(&b.elements) > MAX_DEPTH {
                    return Err(FrameError::new(
                        "bad_osc",
                        format!("bundles nest deeper than {MAX_DEPTH}"),
                    ));
                }
                write_bundle(&mut out, TimeTag::from_u64(b.timetag), |w| {
                    write_elements(w, &b.elements)
                })
                .map_err(|e| FrameError::new("bad_osc", e.to_string()))?
            }
            _ => return Err(FrameError::new("bad_frame", "not an osc or bundle frame")),
        }
        Ok(out)
    }

    /// The frame for an OSC packet.
    pub fn from_packet(bytes: &[u8]) -> Result<Frame, FrameError> {
        let p =
            Packet::new_checked(bytes).map_err(|e| FrameError::new("bad_osc", e.to_string()))?;
        Ok(match p {
            Packet::Message(m) => Frame::Osc(message_of(&m)),
            Packet::Bundle(b) => Frame::Bundle(bundle_of(&b)),
        })
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn message_of(m: &crate::wire::Message<'_>) -> OscMessage {
    OscMessage {
        address: lossy(m.address()),
        args: m
            .args()
            .map(|a| match a {
                Arg::Int(i) => OscArg::Int(i),
                Arg::Float(f) => OscArg::Float(f),
                Arg::Str(s) => OscArg::Str(lossy(s)),
                Arg::Symbol(s) => OscArg::Symbol(lossy(s)),
                Arg::Blob(b) => OscArg::Blob(b.to_vec()),
                Arg::Long(h) => OscArg::Long(h),
                Arg::Double(d) => OscArg::Double(d),
                Arg::Time(t) => OscArg::Time(t.to_u64()),
                Arg::Char(c) => OscArg::Char(c),
                Arg::Color(c) => OscArg::Color(c),
                Arg::Midi(m) => OscArg::Midi(m),
                Arg::True => OscArg::True,
                Arg::False => OscArg::False,
                Arg::Nil => OscArg::Nil,
                Arg::Inf => OscArg::Inf,
                Arg::ArrayOpen => OscArg::ArrayOpen,
                Arg::ArrayClose => OscArg::ArrayClose,
            })
            .collect(),
    }
}

fn bundle_of(b: &crate::wire::Bundle<'_>) -> OscBundle {
    OscBundle {
        timetag: b.timetag().to_u64(),
        elements: b
            .elements()
            .map(|e| match e {
                Packet::Message(m) => Element::Osc(message_of(&m)),
                Packet::Bundle(b) => Element::Bundle(bundle_of(&b)),
            })
            .collect(),
    }
}

fn wire_args(m: &OscMessage) -> Vec<Arg<'_>> {
    m.args
        .iter()
        .map(|a| match a {
            OscArg::Int(i) => Arg::Int(*i),
            OscArg::Float(f) => Arg::Float(*f),
            OscArg::Str(s) => Arg::Str(s.as_bytes()),
            OscArg::Symbol(s) => Arg::Symbol(s.as_bytes()),
            OscArg::Blob(b) => Arg::Blob(b),
            OscArg::Long(h) => Arg::Long(*h),
            OscArg::Double(d) => Arg::Double(*d),
            OscArg::Time(t) => Arg::Time(TimeTag::from_u64(*t)),
            OscArg::Char(c) => Arg::Char(*c),
            OscArg::Color(c) => Arg::Color(*c),
            OscArg::Midi(m) => Arg::Midi(*m),
            OscArg::True => Arg::True,
            OscArg::False => Arg::False,
            OscArg::Nil => Arg::Nil,
            OscArg::Inf => Arg::Inf,
            OscArg::ArrayOpen => Arg::ArrayOpen,
            OscArg::ArrayClose => Arg::ArrayClose,
        })
        .collect()
}

fn write_msg(m: &OscMessage, out: &mut Vec<u8>) -> Result<(), FrameError> {
    if !m.address.starts_with('/') {
        return Err(FrameError::new(
            "bad_osc",
            format!("address {:?} does not start with '/'", m.address),
        ));
    }
    write_message(out, m.address.as_bytes(), &wire_args(m))
        .map_err(|e| FrameError::new("bad_osc", e.to_string()))
}

fn depth(elements: &[Element]) -> usize {
    1 + elements
        .iter()
        .map(|e| match e {
            Element::Osc(_) => 0,
            Element::Bundle(b) => depth(&b.elements),
        })
        .max()
        .unwrap_or(0)
}

fn write_elements(
    w: &mut ElementWriter<'_>,
    elements: &[Element],
) -> Result<(), crate::wire::WriteError> {
    for e in elements {
        match e {
            Element::Osc(m) => w.message(m.address.as_bytes(), &wire_args(m))?,
            Element::Bundle(b) => w.bundle(TimeTag::from_u64(b.timetag), |iw| {
                write_elements(iw, &b.elements)
            })?,
        }
    }
    Ok(())
}

// ---- protobuf ----------------------------------------------------------------------------

impl Frame {
    fn to_pb(&self) -> pb::Envelope {
        use pb::envelope::Kind;
        let kind = match self {
            Frame::Handshake(h) => Kind::Handshake(pb::Handshake {
                version: h.version.clone(),
                protocol: h.protocol.clone(),
                encodings: h.encodings.clone(),
                buses: h.buses.clone(),
            }),
            Frame::Identify(i) => Kind::Identify(pb::Identify {
                client_type: i.client_type.clone(),
                client_agent: i.client_agent.clone(),
                bus: i.bus.clone(),
                token: i.token.clone(),
                user: i.user.clone(),
                password: i.password.clone(),
                group_password: i.group_password.clone(),
            }),
            Frame::Ready(r) => Kind::Ready(pb::Ready {
                session: r.session.clone(),
            }),
            Frame::Error(e) => Kind::Error(pb::Error {
                code: e.code.clone(),
                message: e.message.clone(),
            }),
            Frame::Osc(m) => Kind::Osc(osc_to_pb(m)),
            Frame::Bundle(b) => Kind::Bundle(bundle_to_pb(b)),
        };
        pb::Envelope { kind: Some(kind) }
    }

    fn from_pb(env: pb::Envelope) -> Result<Frame, FrameError> {
        use pb::envelope::Kind;
        Ok(match env.kind {
            None => return Err(FrameError::new("bad_protobuf", "an envelope with no kind")),
            Some(Kind::Handshake(h)) => Frame::Handshake(Handshake {
                version: h.version,
                protocol: h.protocol,
                encodings: h.encodings,
                buses: h.buses,
            }),
            Some(Kind::Identify(i)) => Frame::Identify(Identify {
                client_type: i.client_type,
                client_agent: i.client_agent,
                bus: i.bus,
                token: i.token,
                user: i.user,
                password: i.password,
                group_password: i.group_password,
            }),
            Some(Kind::Ready(r)) => Frame::Ready(Ready { session: r.session }),
            Some(Kind::Error(e)) => Frame::Error(ErrorFrame {
                code: e.code,
                message: e.message,
            }),
            Some(Kind::Osc(m)) => Frame::Osc(osc_from_pb(m)?),
            Some(Kind::Bundle(b)) => Frame::Bundle(bundle_from_pb(b, 1)?),
        })
    }
}

fn osc_to_pb(m: &OscMessage) -> pb::Osc {
    use pb::arg::Value;
    let arg = |tag: &str, value: Option<Value>| pb::Arg {
        r#type: tag.to_owned(),
        value,
    };
    pb::Osc {
        address: m.address.clone(),
        args: m
            .args
            .iter()
            .map(|a| match a {
                OscArg::Int(i) => arg("i", Some(Value::Int32(*i))),
                OscArg::Float(f) => arg("f", Some(Value::Float(*f))),
                OscArg::Str(s) => arg("s", Some(Value::String(s.clone()))),
                OscArg::Symbol(s) => arg("S", Some(Value::String(s.clone()))),
                OscArg::Blob(b) => arg("b", Some(Value::Blob(b.clone()))),
                OscArg::Long(h) => arg("h", Some(Value::Int64(*h))),
                OscArg::Double(d) => arg("d", Some(Value::Double(*d))),
                OscArg::Time(t) => arg("t", Some(Value::Timetag(*t))),
                OscArg::Char(c) => match char::from_u32(*c) {
                    Some(ch) => arg("c", Some(Value::String(ch.to_string()))),
                    None => arg("c", Some(Value::Uint32(*c))),
                },
                OscArg::Color(c) => arg("r", Some(Value::Uint32(u32::from_be_bytes(*c)))),
                OscArg::Midi(m) => arg("m", Some(Value::Blob(m.to_vec()))),
                OscArg::True => arg("T", None),
                OscArg::False => arg("F", None),
                OscArg::Nil => arg("N", None),
                OscArg::Inf => arg("I", None),
                OscArg::ArrayOpen => arg("[", None),
                OscArg::ArrayClose => arg("]", None),
            })
            .collect(),
    }
}

fn osc_from_pb(m: pb::Osc) -> Result<OscMessage, FrameError> {
    use pb::arg::Value;
    let args = m
        .args
        .into_iter()
        .map(|a| {
            let bad = || {
                FrameError::new(
                    "bad_protobuf",
                    format!("argument of type {:?} with value {:?}", a.r#type, a.value),
                )
            };
            Ok(match (a.r#type.as_str(), &a.value) {
                ("i", Some(Value::Int32(i))) => OscArg::Int(*i),
                ("f", Some(Value::Float(f))) => OscArg::Float(*f),
                ("s", Some(Value::String(s))) => OscArg::Str(s.clone()),
                ("S", Some(Value::String(s))) => OscArg::Symbol(s.clone()),
                ("b", Some(Value::Blob(b))) => OscArg::Blob(b.clone()),
                ("h", Some(Value::Int64(h))) => OscArg::Long(*h),
                ("d", Some(Value::Double(d))) => OscArg::Double(*d),
                ("t", Some(Value::Timetag(t))) => OscArg::Time(*t),
                ("c", Some(Value::String(s))) => {
                    let mut cs = s.chars();
                    match (cs.next(), cs.next()) {
                        (Some(c), None) => OscArg::Char(u32::from(c)),
                        _ => return Err(bad()),
                    }
                }
                ("c", Some(Value::Uint32(c))) => OscArg::Char(*c),
                ("r", Some(Value::Uint32(c))) => OscArg::Color(c.to_be_bytes()),
                ("m", Some(Value::Blob(b))) if b.len() == 4 => {
                    OscArg::Midi([b[0], b[1], b[2], b[3]])
                }
                ("T", None) => OscArg::True,
                ("F", None) => OscArg::False,
                ("N", None) => OscArg::Nil,
                ("I", None) => OscArg::Inf,
                ("[", None) => OscArg::ArrayOpen,
                ("]", None) => OscArg::ArrayClose,
                _ => return Err(bad()),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(OscMessage {
        address: m.address,
        args,
    })
}

fn bundle_to_pb(b: &OscBundle) -> pb::Bundle {
    use pb::element::Kind;
    pb::Bundle {
        timetag: b.timetag,
        elements: b
            .elements
            .iter()
            .map(|e| pb::Element {
                kind: Some(match e {
                    Element::Osc(m) => Kind::Osc(osc_to_pb(m)),
                    Element::Bundle(b) => Kind::Bundle(bundle_to_pb(b)),
                }),
            })
            .collect(),
    }
}

fn bundle_from_pb(b: pb::Bundle, depth: usize) -> Result<OscBundle, FrameError> {
    use pb::element::Kind;
    if depth > MAX_DEPTH {
        return Err(FrameError::new(
            "bad_protobuf",
            format!("bundles nest deeper than {MAX_DEPTH}"),
        ));
    }
    Ok(OscBundle {
        timetag: b.timetag,
        elements: b
            .elements
            .into_iter()
            .map(|e| match e.kind {
                Some(Kind::Osc(m)) => Ok(Element::Osc(osc_from_pb(m)?)),
                Some(Kind::Bundle(b)) => Ok(Element::Bundle(bundle_from_pb(b, depth + 1)?)),
                None => Err(FrameError::new(
                    "bad_protobuf",
                    "a bundle element with no kind",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
    })
}

// ---- JSON value forms ---------------------------------------------------------------------

/// A `u64` as a decimal string (a number accepted on input).
mod u64_text {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Text(String),
        Int(u64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Num::deserialize(d)? {
            Num::Int(v) => Ok(v),
            Num::Text(t) => t
                .parse()
                .map_err(|_| de::Error::custom(format!("{t:?} is not an unsigned 64-bit integer"))),
        }
    }
}

/// An `i64` as a decimal string (a number accepted on input).
mod i64_text {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Text(String),
        Int(i64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match Num::deserialize(d)? {
            Num::Int(v) => Ok(v),
            Num::Text(t) => t
                .parse()
                .map_err(|_| de::Error::custom(format!("{t:?} is not a 64-bit integer"))),
        }
    }
}

/// Floats as numbers, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
mod float_text {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_infinite() {
            s.serialize_str(if v > 0.0 { "Infinity" } else { "-Infinity" })
        } else {
            s.serialize_f64(v)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Text(String),
        Float(f64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Num::deserialize(d)? {
            Num::Float(v) => Ok(v),
            Num::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                _ => Err(de::Error::custom(format!("{t:?} is not a number"))),
            },
        }
    }
}

mod f64_text {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        super::float_text::serialize(*v, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        super::float_text::deserialize(d)
    }
}

mod f32_text {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            // The shortest decimal that reads back as this f32 (not the f64 widening's digits).
            s.serialize_f32(*v)
        } else {
            super::float_text::serialize(f64::from(*v), s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        super::float_text::deserialize(d).map(|v| v as f32)
    }
}

/// A character code as a one-character string (a number when it is not a character).
mod char_code {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        match char::from_u32(*v) {
            Some(c) => s.serialize_str(c.encode_utf8(&mut [0; 4])),
            None => s.serialize_u32(*v),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Code {
        Text(String),
        Int(u32),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        match Code::deserialize(d)? {
            Code::Int(v) => Ok(v),
            Code::Text(t) => {
                let mut cs = t.chars();
                match (cs.next(), cs.next()) {
                    (Some(c), None) => Ok(u32::from(c)),
                    _ => Err(de::Error::custom(format!("{t:?} is not one character"))),
                }
            }
        }
    }
}

/// Bytes as standard, padded base64.
mod base64 {
    use serde::{de, Deserialize, Deserializer, Serializer};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let t = text.as_bytes();
        if t.len() % 4 != 0 {
            return None;
        }
        let mut out = Vec::with_capacity(t.len() / 4 * 3);
        for (ci, chunk) in t.chunks(4).enumerate() {
            let last = ci + 1 == t.len() / 4;
            let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
            if pad > 2 || (pad > 0 && !last) {
                return None;
            }
            let mut n = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                let v = if i >= 4 - pad {
                    0
                } else {
                    ALPHABET.iter().position(|&a| a == c)? as u32
                };
                n = (n << 6) | v;
            }
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&bytes[..3 - pad]);
        }
        Some(out)
    }

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let t = String::deserialize(d)?;
        decode(&t).ok_or_else(|| de::Error::custom("not standard padded base64"))
    }
}

#[cfg(test)]
mod tests;
