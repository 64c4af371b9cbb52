//! OSChat messages (spec 003 and the OSChat section of the specs README): parsing with the
//! argument tolerance the specs README fixes, encoding, and the identity the duplicate filter
//! keys on.
//!
//! What it does: [`parse`] turns a packet into a [`Chat`] (every message type of the draft,
//! mesh included), [`Chat::write`] writes one, [`Chat::identity`] gives the bytes that make two
//! messages "the same" for the duplicate window.
//!
//! What it does not do: presence, scrollback, pings, elections or forwarding (the node's state
//! machine and the mesh build on this), sockets, clocks.
//!
//! # Decisions where the draft is silent
//! - OSC has no default arguments. `/oschat/message/<room>` accepts `,s`, `,ss` and `,ssi`
//!   (message, user, sequence): a missing user is `Nobody`, a missing sequence 0. A mesh
//!   withdraw is `/oschat/mesh/announce ,ss` (hops omitted).
//! - Integers may arrive as `i` or `h`, or as an integral `f` / `d` (Pure Data sends floats);
//!   strings as `s` or `S`, UTF-8. Anything else, extra arguments included, is malformed.
//! - Room and user names come from address parts: non-empty UTF-8 (they cannot hold `/`).
//! - The duplicate identity is (address, user, message, sequence), as the specs README says,
//!   with defaults filled in, so `,s "hi"` and `,ssi "hi" "Nobody" 0` are the same message. For
//!   the other types (the user is in the address) it is (address, sequence, payload).

use core::fmt;

use crate::wire::{write_message, Arg, Message, Packet, WriteError};

/// Prefix of every OSChat address.
pub const PREFIX: &[u8] = b"/oschat";
/// The user of a message that names none.
pub const DEFAULT_USER: &str = "Nobody";

/// One OSChat message, borrowed from the packet. Parsing it and taking its identity do not
/// allocate (the identity goes into a buffer the caller keeps).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Chat<'a> {
    /// `/oschat/message/<room> ,s[s[i]]`
    Message {
        room: &'a str,
        text: &'a str,
        user: &'a str,
        seq: i64,
    },
    /// `/oschat/ping/<user> ,i`
    Ping { user: &'a str, seq: i64 },
    /// `/oschat/pong/<user> ,i`
    Pong { user: &'a str, seq: i64 },
    /// `/oschat/hello/<user> ,i`
    Hello { user: &'a str, seq: i64 },
    /// `/oschat/goodbye/<user> ,i`
    Goodbye { user: &'a str, seq: i64 },
    /// `/oschat/list/users ,i[s]`: a request without payload, a reply with one.
    ListUsers { seq: i64, payload: Option<&'a str> },
    /// `/oschat/list/rooms ,i[s]`
    ListRooms { seq: i64, payload: Option<&'a str> },
    /// `/oschat/list/users/<room> ,i[s]`
    ListRoomUsers {
        room: &'a str,
        seq: i64,
        payload: Option<&'a str>,
    },
    /// `/oschat/join/<room>/<user> ,i`
    Join {
        room: &'a str,
        user: &'a str,
        seq: i64,
    },
    /// `/oschat/leave/<room>/<user> ,i`
    Leave {
        room: &'a str,
        user: &'a str,
        seq: i64,
    },
    /// `/oschat/mesh/announce ,ss[i]`; `hops: None` is a withdraw.
    Announce {
        node: &'a str,
        network: &'a str,
        hops: Option<i64>,
    },
    /// `/oschat/mesh/heartbeat ,ss`
    Heartbeat { node: &'a str, network: &'a str },
    /// `/oschat/mesh/elect ,ss`
    Elect { node: &'a str, network: &'a str },
    /// `/oschat/mesh/resign ,ss`
    Resign { node: &'a str, network: &'a str },
}

/// Why a packet is not an OSChat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Not a well-formed OSC message (a bundle, or not OSC).
    NotMessage,
    /// The address is not under `/oschat`.
    NotOschat,
    /// Under `/oschat` but no address the protocol defines (or an empty / non-UTF-8 part).
    UnknownAddress,
    /// A known address with arguments it does not take.
    BadArguments,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotMessage => "not an OSC message",
            Self::NotOschat => "not an /oschat address",
            Self::UnknownAddress => "unknown /oschat address",
            Self::BadArguments => "arguments do not match the address",
        })
    }
}

/// An argument as OSChat reads it.
#[derive(Clone, Copy)]
enum A<'a> {
    Int(i64),
    Str(&'a str),
}

fn args<'a>(m: &Message<'a>) -> Result<([Option<A<'a>>; 4], usize), Error> {
    let mut out = [None; 4];
    let mut n = 0;
    for a in m.args() {
        if n == out.len() {
            return Err(Error::BadArguments);
        }
        out[n] = Some(match a {
            Arg::Int(i) => A::Int(i64::from(i)),
            Arg::Long(i) => A::Int(i),
            Arg::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => A::Int(f as i64),
            Arg::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => A::Int(d as i64),
            Arg::Str(s) | Arg::Symbol(s) => {
                A::Str(core::str::from_utf8(s).map_err(|_| Error::BadArguments)?)
            }
            _ => return Err(Error::BadArguments),
        });
        n += 1;
    }
    Ok((out, n))
}

fn int(a: Option<A<'_>>) -> Result<i64, Error> {
    match a {
        Some(A::Int(i)) => Ok(i),
        _ => Err(Error::BadArguments),
    }
}

fn string(a: Option<A<'_>>) -> Result<&str, Error> {
    match a {
        Some(A::Str(s)) => Ok(s),
        _ => Err(Error::BadArguments),
    }
}

/// Parses one OSChat message.
pub fn parse(packet: &[u8]) -> Result<Chat<'_>, Error> {
    let Ok(Packet::Message(m)) = Packet::new_checked(packet) else {
        return Err(Error::NotMessage);
    };
    let address = m.address();
    let Some(rest) = address.strip_prefix(PREFIX) else {
        return Err(Error::NotOschat);
    };
    if !(rest.is_empty() || rest.starts_with(b"/")) {
        return Err(Error::NotOschat);
    }
    let rest = core::str::from_utf8(rest).map_err(|_| Error::UnknownAddress)?;
    // At most 3 parts after `/oschat`; no allocation (this runs on the workers).
    let mut parts = [""; 3];
    let mut count = 0;
    for p in rest.split('/').skip(1) {
        if p.is_empty() || count == parts.len() {
            return Err(Error::UnknownAddress);
        }
        parts[count] = p;
        count += 1;
    }
    let parts = &parts[..count];
    let (a, n) = args(&m)?;
    let only_int = || -> Result<i64, Error> {
        if n != 1 {
            return Err(Error::BadArguments);
        }
        int(a[0])
    };
    let seq_payload = || -> Result<(i64, Option<&str>), Error> {
        match n {
            1 => Ok((int(a[0])?, None)),
            2 => Ok((int(a[0])?, Some(string(a[1])?))),
            _ => Err(Error::BadArguments),
        }
    };
    let node_network = || -> Result<(&str, &str), Error> {
        if n != 2 {
            return Err(Error::BadArguments);
        }
        Ok((string(a[0])?, string(a[1])?))
    };
    match *parts {
        ["message", room] => {
            let (text, user, seq) = match n {
                1 => (string(a[0])?, DEFAULT_USER, 0),
                2 => (string(a[0])?, string(a[1])?, 0),
                3 => (string(a[0])?, string(a[1])?, int(a[2])?),
                _ => return Err(Error::BadArguments),
            };
            Ok(Chat::Message {
                room,
                text,
                user,
                seq,
            })
        }
        ["ping", user] => Ok(Chat::Ping {
            user,
            seq: only_int()?,
        }),
        ["pong", user] => Ok(Chat::Pong {
            user,
            seq: only_int()?,
        }),
        ["hello", user] => Ok(Chat::Hello {
            user,
            seq: only_int()?,
        }),
        ["goodbye", user] => Ok(Chat::Goodbye {
            user,
            seq: only_int()?,
        }),
        ["list", "users"] => {
            let (seq, payload) = seq_payload()?;
            Ok(Chat::ListUsers { seq, payload })
        }
        ["list", "rooms"] => {
            let (seq, payload) = seq_payload()?;
            Ok(Chat::ListRooms { seq, payload })
        }
        ["list", "users", room] => {
            let (seq, payload) = seq_payload()?;
            Ok(Chat::ListRoomUsers { room, seq, payload })
        }
        ["join", room, user] => Ok(Chat::Join {
            room,
            user,
            seq: only_int()?,
        }),
        ["leave", room, user] => Ok(Chat::Leave {
            room,
            user,
            seq: only_int()?,
        }),
        ["mesh", "announce"] => match n {
            2 | 3 => Ok(Chat::Announce {
                node: string(a[0])?,
                network: string(a[1])?,
                hops: if n == 3 { Some(int(a[2])?) } else { None },
            }),
            _ => Err(Error::BadArguments),
        },
        ["mesh", "heartbeat"] => {
            let (node, network) = node_network()?;
            Ok(Chat::Heartbeat { node, network })
        }
        ["mesh", "elect"] => {
            let (node, network) = node_network()?;
            Ok(Chat::Elect { node, network })
        }
        ["mesh", "resign"] => {
            let (node, network) = node_network()?;
            Ok(Chat::Resign { node, network })
        }
        _ => Err(Error::UnknownAddress),
    }
}

impl<'a> Chat<'a> {
    /// Whether this is a mesh message (never forwarded, never deduplicated).
    pub fn is_mesh(&self) -> bool {
        matches!(
            self,
            Chat::Announce { .. }
                | Chat::Heartbeat { .. }
                | Chat::Elect { .. }
                | Chat::Resign { .. }
        )
    }

    /// The address, written into `out` (cleared first).
    pub fn address(&self, out: &mut String) {
        out.clear();
        out.push_str("/oschat");
        for p in self.address_parts().iter().filter(|p| !p.is_empty()) {
            out.push('/');
            out.push_str(p);
        }
    }

    /// The parts of the address after `/oschat` (empty strings at the end are not parts).
    fn address_parts(&self) -> [&'a str; 3] {
        match *self {
            Chat::Message { room, .. } => ["message", room, ""],
            Chat::Ping { user, .. } => ["ping", user, ""],
            Chat::Pong { user, .. } => ["pong", user, ""],
            Chat::Hello { user, .. } => ["hello", user, ""],
            Chat::Goodbye { user, .. } => ["goodbye", user, ""],
            Chat::ListUsers { .. } => ["list", "users", ""],
            Chat::ListRooms { .. } => ["list", "rooms", ""],
            Chat::ListRoomUsers { room, .. } => ["list", "users", room],
            Chat::Join { room, user, .. } => ["join", room, user],
            Chat::Leave { room, user, .. } => ["leave", room, user],
            Chat::Announce { .. } => ["mesh", "announce", ""],
            Chat::Heartbeat { .. } => ["mesh", "heartbeat", ""],
            Chat::Elect { .. } => ["mesh", "elect", ""],
            Chat::Resign { .. } => ["mesh", "resign", ""],
        }
    }

    /// Writes the message into `out` (cleared first), every argument explicit (`,ssi` for a
    /// chat message, sequences as `i` when they fit, else `h`).
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), WriteError> {
        let mut address = String::new();
        self.address(&mut address);
        let seq_arg = |s: i64| match i32::try_from(s) {
            Ok(i) => Arg::Int(i),
            Err(_) => Arg::Long(s),
        };
        out.clear();
        let args: Vec<Arg<'_>> = match *self {
            Chat::Message {
                text, user, seq, ..
            } => vec![Arg::str(text), Arg::str(user), seq_arg(seq)],
            Chat::Ping { seq, .. }
            | Chat::Pong { seq, .. }
            | Chat::Hello { seq, .. }
            | Chat::Goodbye { seq, .. }
            | Chat::Join { seq, .. }
            | Chat::Leave { seq, .. } => vec![seq_arg(seq)],
            Chat::ListUsers { seq, payload }
            | Chat::ListRooms { seq, payload }
            | Chat::ListRoomUsers { seq, payload, .. } => {
                let mut v = vec![seq_arg(seq)];
                v.extend(payload.map(Arg::str));
                v
            }
            Chat::Announce {
                node,
                network,
                hops,
            } => {
                let mut v = vec![Arg::str(node), Arg::str(network)];
                v.extend(hops.map(seq_arg));
                v
            }
            Chat::Heartbeat { node, network }
            | Chat::Elect { node, network }
            | Chat::Resign { node, network } => vec![Arg::str(node), Arg::str(network)],
        };
        write_message(out, address.as_bytes(), &args)
    }

    /// The bytes that identify this message for the duplicate window, written into `out`
    /// (cleared first): (address, user, message, sequence) for chat messages, (address,
    /// sequence, payload) for the rest; fields separated by a NUL (none can hold one).
    pub fn identity(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(PREFIX);
        for p in self.address_parts().iter().filter(|p| !p.is_empty()) {
            out.push(b'/');
            out.extend_from_slice(p.as_bytes());
        }
        out.push(0);
        let (a, b, seq): (&str, &str, i64) = match *self {
            Chat::Message {
                text, user, seq, ..
            } => (user, text, seq),
            Chat::Ping { seq, .. }
            | Chat::Pong { seq, .. }
            | Chat::Hello { seq, .. }
            | Chat::Goodbye { seq, .. }
            | Chat::Join { seq, .. }
            | Chat::Leave { seq, .. } => ("", "", seq),
            Chat::ListUsers { seq, payload }
            | Chat::ListRooms { seq, payload }
            | Chat::ListRoomUsers { seq, payload, .. } => ("", payload.unwrap_or(""), seq),
            Chat::Announce {
                node,
                network,
                hops,
            } => (node, network, hops.unwrap_or(-1)),
            Chat::Heartbeat { node, network }
            | Chat::Elect { node, network }
            | Chat::Resign { node, network } => (node, network, 0),
        };
        out.extend_from_slice(a.as_bytes());
        out.push(0);
        out.extend_from_slice(b.as_bytes());
        out.push(0);
        out.extend_from_slice(&seq.to_le_bytes());
    }
}

#[cfg(test)]
mod tests;
