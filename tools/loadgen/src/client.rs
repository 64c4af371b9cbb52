//! The patron side of the Messenger gateway protocol as the load generator speaks it: builds
//! `request`, `patron` (the keepalive answer) and `leave`, and classifies what a gateway sends
//! (`accept`, `deny`, `who/active`, `shutdown`, or ordinary traffic), all with `oscgate::wire`.
//!
//! It keeps no state and does no I/O; the retry and keepalive decisions live in `patrons`.
//! It is not `oscgate::proto::patron::Patron`: a load run holds hundreds of patrons that only
//! need to join once, answer keepalives and leave, and must classify every received datagram
//! with one prefix comparison before any parsing.

use oscgate::proto::messenger::{
    ACCEPT, DENY, GATEWAY_PREFIX, LEAVE, PATRON, REQUEST, SHUTDOWN, WHO_ACTIVE,
};
use oscgate::proto::{uuid_from_bytes, MAX_UID_LEN};
use oscgate::wire::{write_message, Arg, Packet};

/// A gateway control message addressed to a patron.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control<'a> {
    /// `/messenger/gateway/me/accept ,ss gateway_uid patron_uid`
    Accept { gateway: &'a str, patron: &'a str },
    /// `/messenger/gateway/me/deny ,ss gateway_uid patron_uid` (the protocol gives no reason)
    Deny { gateway: &'a str, patron: &'a str },
    /// `/messenger/gateway/who/active ,s gateway_uid`
    WhoActive { gateway: &'a str },
    /// `/messenger/gateway/me/shutdown ,s gateway_uid`
    Shutdown { gateway: &'a str },
    /// A known address with the wrong arguments, or a packet that is not OSC.
    Malformed,
    /// Another `/messenger/gateway/...` address (including patron-to-gateway ones).
    Unknown,
}

/// Whether `packet` is a gateway control message, judged from its first bytes only: the
/// address is `/messenger/gateway` or below it. Ordinary traffic (and bundles) is not.
#[inline]
pub fn is_control(packet: &[u8]) -> bool {
    match packet.strip_prefix(GATEWAY_PREFIX) {
        Some(rest) => matches!(rest.first(), Some(b'/' | 0)),
        None => false,
    }
}

/// Classifies a packet for which [`is_control`] is true. Never panics, whatever the bytes.
pub fn classify(packet: &[u8]) -> Control<'_> {
    let Ok(Packet::Message(m)) = Packet::new_checked(packet) else {
        return Control::Malformed;
    };
    let address = m.address();
    let mut strings = [""; 2];
    let tags = m.type_tags();
    let want = if address == ACCEPT || address == DENY {
        2
    } else if address == WHO_ACTIVE || address == SHUTDOWN {
        1
    } else {
        return Control::Unknown;
    };
    if tags.len() != want || tags.iter().any(|&t| t != b's') {
        return Control::Malformed;
    }
    for (slot, arg) in strings.iter_mut().zip(m.args()) {
        match arg.as_str() {
            Some(s) if !s.is_empty() && s.len() <= MAX_UID_LEN => *slot = s,
            _ => return Control::Malformed,
        }
    }
    let [a, b] = strings;
    if address == ACCEPT {
        Control::Accept {
            gateway: a,
            patron: b,
        }
    } else if address == DENY {
        Control::Deny {
            gateway: a,
            patron: b,
        }
    } else if address == WHO_ACTIVE {
        Control::WhoActive { gateway: a }
    } else {
        Control::Shutdown { gateway: a }
    }
}

/// `address ,s uid`. Uids made by [`patron_uid`] hold no NUL, so this cannot fail; a uid that
/// did would give an empty packet, which callers do not send.
fn one_string(address: &[u8], uid: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(address.len() + uid.len() + 12);
    if write_message(&mut out, address, &[Arg::str(uid)]).is_err() {
        out.clear();
    }
    out
}

/// `/messenger/gateway/me/request ,s patron_uid`
pub fn request(uid: &str) -> Vec<u8> {
    one_string(REQUEST, uid)
}

/// `/messenger/gateway/me/patron ,s patron_uid`: the answer to `who/active`.
pub fn keepalive_reply(uid: &str) -> Vec<u8> {
    one_string(PATRON, uid)
}

/// `/messenger/gateway/me/leave ,s patron_uid`
pub fn leave(uid: &str) -> Vec<u8> {
    one_string(LEAVE, uid)
}

/// A fresh upper-case UUID for patron `index` of a run seeded with `seed` (the caller mixes
/// in the pid and the wall clock, so two runs do not collide at the gateway).
pub fn patron_uid(seed: u64, index: usize) -> String {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let a = mix(seed.wrapping_add((index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    let b = mix(a ^ index as u64);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    uuid_from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(address: &[u8], args: &[Arg<'_>]) -> Vec<u8> {
        let mut v = Vec::new();
        write_message(&mut v, address, args).unwrap();
        v
    }

    fn strings(packet: &[u8]) -> (Vec<u8>, Vec<String>) {
        let Ok(Packet::Message(m)) = Packet::new_checked(packet) else {
            panic!("not a message")
        };
        let args = m.args().map(|a| a.as_str().unwrap().to_owned()).collect();
        (m.address().to_vec(), args)
    }

    #[test]
    fn builds_request_keepalive_and_leave_with_the_uid() {
        let uid = "0A1B2C3D-0000-4000-8000-000000000001";
        for (packet, address) in [
            (request(uid), REQUEST),
            (keepalive_reply(uid), PATRON),
            (leave(uid), LEAVE),
        ] {
            assert_eq!(strings(&packet), (address.to_vec(), vec![uid.to_owned()]));
            assert!(is_control(&packet));
        }
        assert!(request("bad\0uid").is_empty());
    }

    #[test]
    fn classifies_accept_deny_who_active_and_shutdown() {
        let (gw, p) = ("GW", "P1");
        let two = [Arg::str(gw), Arg::str(p)];
        let accept = msg(ACCEPT, &two);
        let deny = msg(DENY, &two);
        let who = msg(WHO_ACTIVE, &[Arg::str(gw)]);
        let bye = msg(SHUTDOWN, &[Arg::str(gw)]);
        assert_eq!(
            classify(&accept),
            Control::Accept {
                gateway: gw,
                patron: p
            }
        );
        assert_eq!(
            classify(&deny),
            Control::Deny {
                gateway: gw,
                patron: p
            }
        );
        assert_eq!(classify(&who), Control::WhoActive { gateway: gw });
        assert_eq!(classify(&bye), Control::Shutdown { gateway: gw });
        for p in [&accept, &deny, &who, &bye] {
            assert!(is_control(p));
        }
    }

    #[test]
    fn rejects_wrong_arguments_and_garbage_without_panicking() {
        let bad = [
            msg(ACCEPT, &[Arg::str("GW")]),
            msg(ACCEPT, &[Arg::str("GW"), Arg::Int(1)]),
            msg(WHO_ACTIVE, &[]),
            msg(WHO_ACTIVE, &[Arg::str("")]),
            msg(WHO_ACTIVE, &[Arg::Str(&[0xff])]),
            msg(WHO_ACTIVE, &[Arg::str(&"x".repeat(MAX_UID_LEN + 1))]),
            b"/messenger/gateway/who/active\0\0\0,s\0\0GW".to_vec(),
            b"/messenger/gateway".to_vec(),
        ];
        for b in &bad {
            assert_eq!(classify(b), Control::Malformed, "{b:?}");
        }
        assert_eq!(
            classify(&msg(b"/messenger/gateway/me/request", &[Arg::str("x")])),
            Control::Unknown
        );
        for i in 0..=bad[1].len() {
            let _ = classify(&bad[1][..i]);
        }
    }

    #[test]
    fn traffic_is_not_control() {
        assert!(!is_control(&msg(b"/load/00", &[Arg::Int(1)])));
        assert!(!is_control(&msg(b"/messenger/me/say", &[])));
        assert!(!is_control(&msg(b"/messenger/gatewayX", &[])));
        assert!(!is_control(b"#bundle\0"));
        assert!(!is_control(b""));
        assert!(is_control(&msg(b"/messenger/gateway", &[])));
    }

    #[test]
    fn patron_uids_are_distinct_uuids() {
        let uids: Vec<String> = (0..1000).map(|i| patron_uid(42, i)).collect();
        let mut sorted = uids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), uids.len());
        assert_ne!(patron_uid(42, 0), patron_uid(43, 0));
        let u = &uids[7];
        assert_eq!(u.len(), 36);
        assert!(u
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || c.is_ascii_uppercase()));
    }
}
