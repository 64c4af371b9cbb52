//! Invariants of the wire layer on arbitrary input, shared by the fuzz targets
//! (`tools/fuzz`), the corpus replay test and the property tests.
//!
//! Each function takes any bytes, must never panic on them, and panics only when an invariant
//! is broken (that is the bug a fuzzer is looking for).

use super::address::{peek, Peek};
use super::{write_bundle, write_message, Arg, ElementWriter, Packet};

/// Parses `data` as one packet; if it is valid, walks every accessor and checks that
///  - [`peek`] agrees with the full parse,
///  - re-encoding the values with the writer gives back the same bytes (messages that carry
///    a type tag string; old-style messages without one are re-encoded with an empty one).
pub fn packet(data: &[u8]) {
    let Ok(p) = Packet::new_checked(data) else {
        return;
    };
    assert_eq!(p.as_bytes(), data);
    match (peek(data), p) {
        (Ok(Peek::Message { address, type_tags }), Packet::Message(m)) => {
            assert_eq!(address, m.address());
            assert_eq!(type_tags, m.type_tags());
        }
        (Ok(Peek::Bundle), Packet::Bundle(_)) => {}
        (other, _) => panic!("peek disagrees with the full parse: {other:?}"),
    }
    let mut out = Vec::with_capacity(data.len() + 4);
    rewrite(&p, &mut out);
    let old_style =
        matches!(p, Packet::Message(m) if m.type_tags().is_empty() && !has_tag_string(data));
    if !old_style && !contains_old_style(&p) {
        assert_eq!(out, data, "re-encoding changed the packet");
    }
    let again = Packet::new_checked(&out).expect("re-encoded packet is valid");
    let mut twice = Vec::new();
    rewrite(&again, &mut twice);
    assert_eq!(out, twice, "re-encoding is not stable");
}

fn has_tag_string(data: &[u8]) -> bool {
    let nul = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    data.get(super::packet::padded(nul + 1)) == Some(&b',')
}

fn contains_old_style(p: &Packet<'_>) -> bool {
    match p {
        Packet::Message(m) => m.type_tags().is_empty() && !has_tag_string(m.as_bytes()),
        Packet::Bundle(b) => b.elements().any(|e| contains_old_style(&e)),
    }
}

fn rewrite(p: &Packet<'_>, out: &mut Vec<u8>) {
    match p {
        Packet::Message(m) => {
            let args: Vec<Arg<'_>> = m.args().collect();
            assert_eq!(args.len(), m.type_tags().len());
            write_message(out, m.address(), &args).expect("checked message re-encodes");
        }
        Packet::Bundle(b) => {
            write_bundle(out, b.timetag(), |w| {
                b.elements().for_each(|e| rewrite_element(&e, w));
                Ok(())
            })
            .expect("checked bundle re-encodes");
        }
    }
}

fn rewrite_element(p: &Packet<'_>, w: &mut ElementWriter<'_>) {
    match p {
        Packet::Message(m) => {
            let args: Vec<Arg<'_>> = m.args().collect();
            w.message(m.address(), &args)
                .expect("checked element re-encodes");
        }
        Packet::Bundle(b) => {
            w.bundle(b.timetag(), |inner| {
                b.elements().for_each(|e| rewrite_element(&e, inner));
                Ok(())
            })
            .expect("checked nested bundle re-encodes");
        }
    }
}
