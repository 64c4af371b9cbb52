//! Decode throughput of the stream framing codecs: len32 and SLIP streams of OSC-sized frames
//! (64 B and 512 B), fed as one chunk and as 1500-byte (Ethernet MTU sized) chunks.
//!
//! Throughput is reported in frames; divide the time per iteration by `FRAMES` for ns/frame.
//! SLIP unescapes in place, so every iteration decodes a fresh copy of the stream (the copy
//! is made in untimed setup).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use oscgate::wire::framing::{encode, Decoder, Framing, DEFAULT_MAX_FRAME};

const FRAMES: usize = 1000;

/// An OSC-looking message of exactly `size` bytes: an address, a type tag string and float
/// arguments whose bytes come from a fixed pseudo-random sequence (so SLIP sees the odd byte
/// that needs escaping, as real float data does).
fn osc_like(size: usize, seed: u32) -> Vec<u8> {
    let mut p = b"/mixer/ch/12/fader\0\0,ffff\0\0\0".to_vec();
    let mut x = seed | 1;
    while p.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p.extend_from_slice(&x.to_be_bytes());
    }
    p.truncate(size);
    p
}

fn stream(framing: Framing, size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..FRAMES {
        encode(framing, &osc_like(size, i as u32), &mut out).expect("small packets");
    }
    out
}

fn decode_all(framing: Framing, input: &mut [u8], chunk: usize) -> usize {
    let mut dec = Decoder::new(framing, DEFAULT_MAX_FRAME);
    let mut n = 0;
    for piece in input.chunks_mut(chunk) {
        dec.decode(piece, |frame| {
            if let Ok(frame) = frame {
                black_box(frame);
                n += 1;
            }
        })
        .expect("valid stream");
    }
    n
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("framing_decode");
    group.throughput(Throughput::Elements(FRAMES as u64));
    for framing in [Framing::Len32, Framing::Slip] {
        for size in [64, 512] {
            let encoded = stream(framing, size);
            assert_eq!(
                decode_all(framing, &mut encoded.clone(), usize::MAX),
                FRAMES
            );
            for (chunk, label) in [(usize::MAX, "whole"), (1500, "1500")] {
                let id = BenchmarkId::new(format!("{framing}_{size}B"), label);
                group.bench_function(id, |b| {
                    b.iter_batched_ref(
                        || encoded.clone(),
                        |input| decode_all(framing, input, chunk),
                        BatchSize::LargeInput,
                    )
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
