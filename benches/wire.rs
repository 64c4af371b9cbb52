//! Wire-layer micro-benchmarks: peek at an address, full checked parse, walk the arguments,
//! encode a message.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

use oscgate::wire::address::peek;
use oscgate::wire::{write_bundle, write_message, Arg, Packet, TimeTag};

fn sample_message() -> Vec<u8> {
    let mut out = Vec::new();
    write_message(
        &mut out,
        b"/messenger/me/room/lobby/say",
        &[
            Arg::str("6F9619FF-8B86-D011-B42D-00C04FC964FF"),
            Arg::str("alice"),
            Arg::str("hello everyone"),
            Arg::Int(42),
            Arg::Float(0.5),
        ],
    )
    .unwrap();
    out
}

fn sample_bundle() -> Vec<u8> {
    let mut out = Vec::new();
    write_bundle(&mut out, TimeTag::IMMEDIATE, |b| {
        for i in 0..4 {
            b.message(
                b"/mixer/channel/fader",
                &[Arg::Int(i), Arg::Float(0.75), Arg::Blob(&[1, 2, 3, 4, 5])],
            )?;
        }
        Ok(())
    })
    .unwrap();
    out
}

fn bench(c: &mut Criterion) {
    let msg = sample_message();
    let bundle = sample_bundle();
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("peek_address", |b| {
        b.iter(|| peek(black_box(&msg)).unwrap())
    });
    g.bench_function("parse_message", |b| {
        b.iter(|| Packet::new_checked(black_box(&msg)).unwrap())
    });
    g.bench_function("parse_and_walk_message", |b| {
        b.iter(|| match Packet::new_checked(black_box(&msg)).unwrap() {
            Packet::Message(m) => m.args().count(),
            Packet::Bundle(_) => 0,
        })
    });
    g.bench_function("parse_bundle_4", |b| {
        b.iter(|| Packet::new_checked(black_box(&bundle)).unwrap())
    });
    let mut out = Vec::with_capacity(256);
    g.bench_function("write_message", |b| {
        b.iter(|| {
            out.clear();
            write_message(
                &mut out,
                b"/cue/go",
                &[Arg::Int(1), Arg::Float(2.5), Arg::str("hi")],
            )
            .unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
