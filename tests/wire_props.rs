//! Property tests of the wire layer on random and mutated packets: never a panic, and every
//! packet that passes the check walks, peeks and re-encodes consistently
//! (`oscgate::wire::invariants::packet`).

use oscgate::wire::invariants;
use oscgate::wire::{write_bundle, write_message, Arg, TimeTag};
use proptest::prelude::*;

fn arg() -> impl Strategy<Value = (u8, Vec<u8>, i64, f64)> {
    (
        prop::sample::select(b"ifsbhtdScrmTFNI".to_vec()),
        proptest::collection::vec(1u8..=255, 0..10),
        any::<i64>(),
        any::<f64>(),
    )
}

fn to_arg(a: &(u8, Vec<u8>, i64, f64)) -> Arg<'_> {
    let (tag, bytes, n, x) = a;
    match tag {
        b'i' => Arg::Int(*n as i32),
        b'f' => Arg::Float(*x as f32),
        b's' => Arg::Str(bytes),
        b'b' => Arg::Blob(bytes),
        b'h' => Arg::Long(*n),
        b't' => Arg::Time(TimeTag::from_u64(*n as u64)),
        b'd' => Arg::Double(*x),
        b'S' => Arg::Symbol(bytes),
        b'c' => Arg::Char(*n as u32),
        b'r' => Arg::Color((*n as u32).to_be_bytes()),
        b'm' => Arg::Midi((*n as u32).to_be_bytes()),
        b'T' => Arg::True,
        b'F' => Arg::False,
        b'N' => Arg::Nil,
        _ => Arg::Inf,
    }
}

/// A valid packet: a message, or a bundle of two messages.
fn valid_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        "(/[a-z]{1,6}){1,3}",
        proptest::collection::vec(arg(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(addr, args, bundled)| {
            let args: Vec<Arg<'_>> = args.iter().map(to_arg).collect();
            let mut out = Vec::new();
            if bundled {
                write_bundle(&mut out, TimeTag::IMMEDIATE, |b| {
                    b.message(addr.as_bytes(), &args)?;
                    b.bundle(TimeTag::from_u64(7), |i| i.message(b"/x", &args))
                })
                .unwrap();
            } else {
                write_message(&mut out, addr.as_bytes(), &args).unwrap();
            }
            out
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    SetWord(usize, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (
            any::<usize>(),
            prop_oneof![
                Just(0u32),
                Just(u32::MAX),
                Just(0x7fff_fffc),
                Just(4),
                any::<u32>()
            ]
        )
            .prop_map(|(i, w)| Mutation::SetWord(i, w)),
    ]
}

fn apply(p: &mut Vec<u8>, m: &Mutation) {
    if p.is_empty() {
        return;
    }
    match m {
        Mutation::Flip(i, b) => {
            let i = i % p.len();
            p[i] ^= b | 1;
        }
        Mutation::Truncate(n) => p.truncate(n % p.len()),
        Mutation::Insert(i, v) => {
            let i = i % (p.len() + 1);
            p.splice(i..i, v.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let i = i % p.len();
            let end = (i + n).min(p.len());
            p.drain(i..end);
        }
        Mutation::SetWord(i, w) => {
            let i = (i % p.len()) & !3;
            for (k, b) in w.to_be_bytes().iter().enumerate() {
                if let Some(x) = p.get_mut(i + k) {
                    *x = *b;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..128)) {
        invariants::packet(&data);
    }

    #[test]
    fn osc_shaped_random_bytes_never_panic(
        head in prop_oneof![Just(b"/a\0\0,".to_vec()), Just(b"#bundle\0".to_vec())],
        tail in proptest::collection::vec(any::<u8>(), 0..96),
    ) {
        let mut data = head;
        data.extend(tail);
        invariants::packet(&data);
    }

    #[test]
    fn valid_packets_hold_the_invariants(p in valid_packet()) {
        prop_assert!(oscgate::wire::Packet::new_checked(&p).is_ok());
        invariants::packet(&p);
    }

    #[test]
    fn mutated_packets_never_panic(p in valid_packet(), ms in proptest::collection::vec(mutation(), 1..4)) {
        let mut p = p;
        for m in &ms {
            apply(&mut p, m);
        }
        invariants::packet(&p);
    }
}
