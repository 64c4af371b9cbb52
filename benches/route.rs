//! Route-table lookup cost at 1, 100 and 10 000 routes: hits on typical 3-4 segment addresses,
//! misses, and a pattern fallback. The figures should not depend on the number of routes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use oscgate::route::{Action, Ingress, Matcher, Protocol, RouteTable, RouteTableBuilder, Rule};

const I0: Ingress = Ingress(0);

/// Deterministic xorshift so every run builds the same tables.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn word(&mut self) -> String {
        let len = 3 + (self.next() % 8) as usize;
        (0..len)
            .map(|_| (b'a' + (self.next() % 26) as u8) as char)
            .collect()
    }
}

const FIRST: [&str; 4] = ["messenger", "router", "oschat", "mixer"];
const LAST: [&str; 4] = ["say", "who", "fader", "level"];

/// `routes` exact routes (always including `/messenger/me/say`), a few prefixes, one pattern.
fn table(routes: usize, hits: &mut Vec<String>) -> RouteTable<u32> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut b = RouteTableBuilder::<u32>::new(1);
    let set = b.dest_set(vec![1, 2, 3, 4]);
    b.rule(Rule::new(
        I0,
        Matcher::exact("/messenger/me/say"),
        Action::Forward(set),
    ));
    hits.push("/messenger/me/say".into());
    let mut seen = std::collections::HashSet::new();
    while seen.len() + 1 < routes {
        let first = FIRST[(rng.next() % 4) as usize];
        let last = LAST[(rng.next() % 4) as usize];
        let a = if rng.next() % 2 == 0 {
            format!("/{first}/{}/{last}", rng.word())
        } else {
            format!("/{first}/{}/{}/{last}", rng.word(), rng.word())
        };
        if a != "/messenger/me/say" && seen.insert(a.clone()) {
            b.rule(Rule::new(I0, Matcher::exact(&a), Action::Forward(set)));
            if hits.len() < 64 {
                hits.push(a);
            }
        }
    }
    b.rule(Rule::new(
        I0,
        Matcher::prefix("/router/group"),
        Action::Control(Protocol::Router),
    ));
    b.rule(Rule::new(
        I0,
        Matcher::pattern("/mixer/*/{mute,solo}"),
        Action::Forward(set),
    ));
    b.build().expect("bench table compiles")
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_lookup");
    for routes in [1usize, 100, 10_000] {
        let mut hits = Vec::new();
        let t = table(routes, &mut hits);
        g.bench_with_input(BenchmarkId::new("hit", routes), &t, |b, t| {
            b.iter(|| {
                t.lookup(I0, black_box(b"/messenger/me/say"))
                    .forward()
                    .len()
            })
        });
        g.bench_with_input(BenchmarkId::new("hit_mixed64", routes), &t, |b, t| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % hits.len();
                t.lookup(I0, black_box(hits[i].as_bytes())).forward().len()
            })
        });
        g.bench_with_input(BenchmarkId::new("miss", routes), &t, |b, t| {
            b.iter(|| {
                t.lookup(I0, black_box(b"/messenger/nobody/shout"))
                    .drop_reason()
            })
        });
        // Baseline from the same run: one foldhash map lookup of the whole address, which
        // gives no prefixes, patterns or ingress classes.
        let mut flat: std::collections::HashMap<Vec<u8>, u32, foldhash::fast::FixedState> =
            std::collections::HashMap::default();
        let mut all = Vec::new();
        let _ = table(routes, &mut all);
        for (i, a) in all.iter().enumerate() {
            flat.insert(a.as_bytes().to_vec(), i as u32);
        }
        g.bench_with_input(
            BenchmarkId::new("baseline_flat_hashmap_hit", routes),
            &flat,
            |b, m| b.iter(|| m.get(black_box(&b"/messenger/me/say"[..])).copied()),
        );
        g.bench_with_input(BenchmarkId::new("pattern", routes), &t, |b, t| {
            b.iter(|| t.lookup(I0, black_box(b"/mixer/ch1/mute")).forward().len())
        });
    }
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
