//! The per-packet work of a worker without I/O (peek at the address, route-table lookup,
//! dedupe check, walking a checked packet's arguments, parsing an OSChat message and taking
//! its duplicate identity) allocates nothing (PERFORMANCE target 4,
//! "0 heap allocations per forwarded packet"), on hits, misses, patterns, duplicates and
//! malformed input. This file owns a counting global allocator (per thread, so the test
//! harness's own threads do not disturb it), so it holds only this test.

use oscgate::dedupe::{Dedupe, KeyHasher, Seen};
use oscgate::route::{Action, Ingress, Matcher, Protocol, RouteTableBuilder, Rule};
use oscgate::wire::address::{peek, Peek};
use oscgate::wire::{write_message, Arg, Packet};

mod support;
use support::allocs;

#[test]
fn peek_route_dedupe_and_walk_do_not_allocate() {
    let mut b = RouteTableBuilder::<u32>::new(2);
    let set = b.dest_set(vec![1, 2, 3]);
    for i in 0..100 {
        b.rule(Rule::new(
            Ingress(0),
            Matcher::exact(format!("/venue/zone{i}/level")),
            Action::Forward(set),
        ));
    }
    b.rule(Rule::new(
        Ingress(0),
        Matcher::prefix("/oschat/message"),
        Action::ForwardAndControl(set, Protocol::Oschat),
    ));
    b.rule(Rule::new(
        Ingress(0),
        Matcher::pattern("/mixer/*/fader"),
        Action::Forward(set),
    ));
    let table = b.build().unwrap();
    let dedupe = Dedupe::with_hasher(1 << 12, 10_000, KeyHasher::with_seed(1, 2));
    let mut packets: Vec<Vec<u8>> = Vec::new();
    for (addr, arg) in [
        ("/venue/zone7/level", Arg::Float(0.5)),
        ("/oschat/message/lobby", Arg::str("hello")),
        ("/mixer/ch3/fader", Arg::Int(3)),
        ("/nowhere/at/all", Arg::Blob(&[1, 2, 3])),
    ] {
        let mut p = Vec::new();
        write_message(&mut p, addr.as_bytes(), &[arg, Arg::True]).unwrap();
        packets.push(p);
    }
    let mut chat = Vec::new();
    write_message(
        &mut chat,
        b"/oschat/message/lobby",
        &[Arg::str("hi"), Arg::str("ann"), Arg::Int(7)],
    )
    .unwrap();
    packets.push(chat);
    packets.push(b"/bad\0\0\0\0,q\0\0".to_vec());
    let mut identity = Vec::with_capacity(512);
    packets.push(b"garbage!".to_vec());

    let before = allocs();
    let (mut forwarded, mut controls, mut fresh, mut args) = (0usize, 0usize, 0usize, 0usize);
    let mut chats = 0usize;
    for round in 0..2_000u64 {
        for p in &packets {
            let Ok(Peek::Message { address, .. }) = peek(p) else {
                continue;
            };
            let v = table.lookup(Ingress(0), address);
            forwarded += v.forward().len();
            controls += v.control().is_some() as usize;
            fresh += (dedupe.check_and_insert_bytes(p, round) == Seen::New) as usize;
            if let Ok(Packet::Message(m)) = Packet::new_checked(p) {
                args += m.args().count();
            }
            // OSChat: parse and take the duplicate identity (into a kept buffer).
            if let Ok(c) = oscgate::proto::oschat::parse(p) {
                c.identity(&mut identity);
                chats += usize::from(identity.len() > 20);
            }
        }
    }
    let during = allocs() - before;
    assert_eq!(during, 0, "{during} allocations on the per-packet path");
    // The loop did real work (so the count above is about something).
    assert_eq!(forwarded, 2_000 * 3 * 4);
    assert_eq!(controls, 2 * 2_000);
    assert_eq!(
        fresh, 6,
        "each distinct peekable packet is new once inside the window"
    );
    assert_eq!(args, 2_000 * (4 * 2 + 3));
    assert_eq!(chats, 2_000, "one packet is a well-formed OSChat message");
    // And the counter does count.
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(16));
    assert!(allocs() > before && v.capacity() >= 16);
}
