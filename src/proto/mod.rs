//! Sans-IO protocol state machines: one per protocol, fed bytes and time, emitting actions.
//!
//! What it does: [`messenger::Gateway`] is the gateway side of OSC Messenger (admission,
//! keepalive, expiry, leave, shutdown) and [`patron::Patron`] is the patron side (request with
//! backoff, keepalive answers, gateway-gone detection, leave). Each takes `now` as a
//! [`Duration`](core::time::Duration) since an arbitrary epoch the caller picks (a monotonic
//! clock's start, or zero in tests) and must be given non-decreasing values; a value that goes
//! backwards is tolerated (no panic) but delays timers.
//!
//! What it does not do: sockets, clocks, threads, logging, randomness from the OS, or
//! enumerating interfaces. The caller owns all of that and feeds the results in: see
//! [`messenger::default_allow_list`] (interface list in, CIDRs out) and [`uuid_from_bytes`]
//! (random bytes in, uid out).

pub mod catchup;
pub mod chatnode;
pub mod mesh;
pub mod messenger;
pub mod oschat;
pub mod patron;
pub mod presence;
pub mod router;

use crate::wire::{write_message, Arg, Message};

/// Longest uid accepted from the network, in bytes. Messenger uids are 36-byte UUIDs; the slack
/// tolerates other id styles while bounding what a hostile peer can make us store.
pub const MAX_UID_LEN: usize = 128;

/// The `N` string arguments of `msg`, if its type tags are exactly `N` times `s` and every
/// string is non-empty UTF-8 of at most [`MAX_UID_LEN`] bytes.
pub(crate) fn str_args<'a, const N: usize>(msg: &Message<'a>) -> Option<[&'a str; N]> {
    let tags = msg.type_tags();
    if tags.len() != N || tags.iter().any(|&t| t != b's') {
        return None;
    }
    let mut out = [""; N];
    let mut args = msg.args();
    for slot in out.iter_mut() {
        let s = args.next()?.as_str()?;
        if s.is_empty() || s.len() > MAX_UID_LEN {
            return None;
        }
        *slot = s;
    }
    Some(out)
}

/// Encodes a message whose arguments are all strings. Strings here are uids that came out of
/// an OSC string (so hold no NUL) or were stripped of NULs at construction, so encoding cannot
/// fail; if it ever did, the result is empty and callers send nothing.
pub(crate) fn encode(address: &[u8], args: &[&str]) -> Vec<u8> {
    let mut packet = Vec::new();
    match args {
        [] => write_message(&mut packet, address, &[]),
        [a] => write_message(&mut packet, address, &[Arg::str(a)]),
        [a, b, ..] => write_message(&mut packet, address, &[Arg::str(a), Arg::str(b)]),
    }
    .map(|()| packet)
    .unwrap_or_default()
}

/// A uid as the Messenger spec writes them (`XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`, upper-case
/// hex) from 16 random bytes the caller supplies, with the RFC 4122 version-4 and variant bits
/// set. Used to resolve an empty configured uid.
pub fn uuid_from_bytes(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// A small deterministic generator (SplitMix64) for backoff jitter; seeded by the caller so
/// tests and simulations are reproducible. Not for anything security-related.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod sim;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Uuid;

    #[test]
    fn uuid_from_bytes_is_a_valid_upper_case_uuid() {
        let u = uuid_from_bytes([0xab; 16]);
        assert_eq!(u, "ABABABAB-ABAB-4BAB-ABAB-ABABABABABAB");
        assert_eq!(Uuid::try_from(u.clone()).unwrap().0, u);
        let z = uuid_from_bytes([0; 16]);
        assert_eq!(z, "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn str_args_checks_types_count_and_length() {
        let enc = |args: &[Arg<'_>]| {
            let mut v = Vec::new();
            write_message(&mut v, b"/x", args).unwrap();
            v
        };
        let ok = enc(&[Arg::str("a"), Arg::str("b")]);
        let m = Message::new_checked(&ok).unwrap();
        assert_eq!(str_args::<2>(&m), Some(["a", "b"]));
        assert_eq!(str_args::<1>(&m), None);
        let wrong = enc(&[Arg::str("a"), Arg::Int(1)]);
        assert_eq!(str_args::<2>(&Message::new_checked(&wrong).unwrap()), None);
        let empty = enc(&[Arg::str("")]);
        assert_eq!(str_args::<1>(&Message::new_checked(&empty).unwrap()), None);
        let long = "x".repeat(MAX_UID_LEN + 1);
        let long = enc(&[Arg::str(&long)]);
        assert_eq!(str_args::<1>(&Message::new_checked(&long).unwrap()), None);
        let bad_utf8 = enc(&[Arg::Str(&[0xff, 0xfe])]);
        assert_eq!(
            str_args::<1>(&Message::new_checked(&bad_utf8).unwrap()),
            None
        );
    }

    #[test]
    fn encode_writes_string_messages() {
        let p = encode(b"/a/b", &["x", "yz"]);
        let m = Message::new_checked(&p).unwrap();
        assert_eq!(m.address(), b"/a/b");
        assert_eq!(str_args::<2>(&m), Some(["x", "yz"]));
        assert!(encode(b"no-slash", &["x"]).is_empty());
    }

    #[test]
    fn splitmix_is_deterministic_per_seed() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let mut c = SplitMix64::new(8);
        let (x, y, z) = (a.next_u64(), b.next_u64(), c.next_u64());
        assert_eq!(x, y);
        assert_ne!(x, z);
    }
}
