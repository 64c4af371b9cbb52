//! Criterion benchmarks for `oscgate::dedupe`: `check_and_insert` on one thread with a mix of new
//! and already-seen keys, and the same loop while a second thread hammers the same table.
//!
//! Figures are per call. They are for comparing revisions on one machine, not absolute claims.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use oscgate::dedupe::{Dedupe, KeyHasher, Seen, DEFAULT_WINDOW_MS};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// 64 Ki entries: 512 KiB of table, larger than L1/L2 on most machines, like a busy gateway.
const CAPACITY: usize = 1 << 16;
/// Keys per batch; one in four is a repeat of an earlier key (a mesh duplicate).
const BATCH: usize = 4096;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Keys for one batch: 3/4 fresh random keys, 1/4 repeats of keys earlier in the batch.
fn batch(rng: &mut u64) -> Vec<u64> {
    let mut keys = Vec::with_capacity(BATCH);
    for i in 0..BATCH {
        let r = splitmix(rng);
        if i >= 16 && r % 4 == 0 {
            keys.push(keys[(r >> 8) as usize % i]);
        } else {
            keys.push(splitmix(rng));
        }
    }
    keys
}

fn table() -> Dedupe {
    Dedupe::with_hasher(CAPACITY, DEFAULT_WINDOW_MS, KeyHasher::with_seed(7, 11))
}

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("dedupe");
    g.throughput(Throughput::Elements(BATCH as u64));
    let d = table();
    let mut rng = 1;
    let mut now = 0u64;
    g.bench_function("check_and_insert/1 thread, 25% dup", |b| {
        b.iter_batched_ref(
            || batch(&mut rng),
            |keys| {
                now += 1;
                let mut dups = 0u32;
                for &k in keys.iter() {
                    dups += (d.check_and_insert(k, now) == Seen::Duplicate) as u32;
                }
                black_box(dups)
            },
            BatchSize::SmallInput,
        )
    });
    let hasher = KeyHasher::with_seed(7, 11);
    let frame = [0x5au8; 96];
    g.throughput(Throughput::Elements(1));
    g.bench_function("key_of/96-byte frame", |b| {
        b.iter(|| hasher.key_of(black_box(&frame)))
    });
    g.finish();
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("dedupe");
    g.throughput(Throughput::Elements(BATCH as u64));
    let d = Arc::new(table());
    let stop = Arc::new(AtomicBool::new(false));
    // The second thread inserts its own stream (with overlap: same generator seed half the time)
    // for as long as the measurement runs.
    let hammer = {
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rng = 2;
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                if round % 2 == 0 {
                    rng = 1;
                }
                for k in batch(&mut rng) {
                    black_box(d.check_and_insert(k, round / 64));
                }
            }
        })
    };
    let mut rng = 1;
    g.bench_function("check_and_insert/2 threads", |b| {
        b.iter_custom(|iters| {
            let batches: Vec<Vec<u64>> = (0..iters.min(256)).map(|_| batch(&mut rng)).collect();
            let start = Instant::now();
            for i in 0..iters {
                let keys = &batches[(i % batches.len() as u64) as usize];
                for &k in keys {
                    black_box(d.check_and_insert(k, i / 64));
                }
            }
            start.elapsed()
        })
    });
    stop.store(true, Ordering::Relaxed);
    hammer.join().unwrap();
    g.finish();
}

criterion_group!(benches, single_thread, two_threads);
criterion_main!(benches);
