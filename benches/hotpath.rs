//! The per-packet work of a worker, end to end without I/O: peek at the address, look it up
//! in a route table of 100 routes, and check the mesh dedupe table; this is the figure the
//! "peek + route + dedupe well under 100 ns" target is about. Each iteration handles one packet
//! from a rotating set of 64 distinct OSChat-style messages, so the dedupe answer is a mix of
//! new and duplicate like a mesh that hears every message on two paths.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use oscgate::dedupe::{Dedupe, KeyHasher};
use oscgate::route::{Action, Ingress, Matcher, Protocol, RouteTableBuilder, Rule};
use oscgate::wire::address::{peek, Peek};
use oscgate::wire::{write_message, Arg};

fn bench(c: &mut Criterion) {
    let mut b = RouteTableBuilder::<u32>::new(1);
    let set = b.dest_set(vec![1, 2, 3]);
    for i in 0..98 {
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
        Matcher::prefix("/oschat/mesh"),
        Action::Control(Protocol::Mesh),
    ));
    let table = b.build().expect("routes compile");

    let packets: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            let mut p = Vec::new();
            let user = format!("user{}", i % 7);
            let text = format!("message number {i} to the lobby");
            write_message(
                &mut p,
                b"/oschat/message/lobby",
                &[Arg::str(&user), Arg::str(&text), Arg::Int(i)],
            )
            .unwrap();
            p
        })
        .collect();
    let dedupe = Dedupe::with_hasher(1 << 14, 10_000, KeyHasher::with_seed(3, 5));

    let mut g = c.benchmark_group("hotpath");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    let mut now = 0u64;
    g.bench_function("peek+route+dedupe", |bch| {
        bch.iter(|| {
            i = (i + 1) & 63;
            now += 1;
            let p = &packets[i];
            let Ok(Peek::Message { address, .. }) = peek(black_box(p)) else {
                return 0;
            };
            let v = table.lookup(Ingress(0), address);
            let fresh = dedupe.check_and_insert_bytes(p, now / 1000) == oscgate::dedupe::Seen::New;
            v.forward().len() + fresh as usize
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
