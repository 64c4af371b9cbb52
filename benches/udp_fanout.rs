//! Loopback send cost per datagram of the batched-UDP layer against the naive loop, in the same
//! run (PERFORMANCE: ratios, not absolute figures):
//! - `fanout_100/*`: one 128-byte payload to 100 receivers per iteration, with `send_to` in a
//!   loop and with one `SendBatch` flush (no GSO; distinct destinations cannot use it);
//! - `one_dest_32/*`: 32 equal 128-byte datagrams to one receiver, `send_to` loop, `SendBatch`
//!   without GSO and with GSO (one message of 32 segments).
//!
//! Throughput is in elements, so criterion's `time / elements` is ns per datagram. Receivers are
//! drained outside the timed part, often enough that no datagram is dropped (a drop would make
//! a send look cheaper); each bench prints delivered/sent at the end.

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use oscgate::engine::udp::{bind_udp, Gso, RecvBatch, SendBatch};

const PAYLOAD: [u8; 128] = [0x2f; 128];

struct Rig {
    tx: UdpSocket,
    receivers: Vec<UdpSocket>,
    dests: Vec<SocketAddr>,
    rb: RecvBatch,
    sent: u64,
    delivered: u64,
}

impl Rig {
    fn new(n: usize) -> Rig {
        let any = "127.0.0.1:0".parse().unwrap();
        let tx = bind_udp(any, false, None, Some(4 << 20)).unwrap();
        let receivers: Vec<UdpSocket> = (0..n)
            .map(|_| bind_udp(any, false, Some(4 << 20), None).unwrap())
            .collect();
        let dests = receivers.iter().map(|r| r.local_addr().unwrap()).collect();
        Rig {
            tx,
            receivers,
            dests,
            rb: RecvBatch::new(256, 256),
            sent: 0,
            delivered: 0,
        }
    }

    fn drain(&mut self) {
        for r in &self.receivers {
            while let Ok(n) = self.rb.recv(r) {
                if n == 0 {
                    break;
                }
                self.delivered += n as u64;
            }
        }
    }

    /// Times `iters` runs of `send`, draining every `drain_every` iterations (untimed).
    fn run(
        &mut self,
        iters: u64,
        drain_every: u64,
        mut send: impl FnMut(&UdpSocket, &[SocketAddr]) -> usize,
    ) -> Duration {
        let mut total = Duration::ZERO;
        for i in 0..iters {
            let t = Instant::now();
            self.sent += black_box(send(&self.tx, &self.dests)) as u64;
            total += t.elapsed();
            if (i + 1) % drain_every == 0 {
                self.drain();
            }
        }
        self.drain();
        total
    }

    fn report(&self, name: &str) {
        eprintln!("{name}: delivered {} of {} sent", self.delivered, self.sent);
    }
}

fn send_to_loop(tx: &UdpSocket, dests: &[SocketAddr]) -> usize {
    dests
        .iter()
        .filter(|d| tx.send_to(&PAYLOAD, **d).is_ok())
        .count()
}

fn fanout_100(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_100");
    g.throughput(Throughput::Elements(100));
    g.sample_size(30).measurement_time(Duration::from_secs(4));

    let mut rig = Rig::new(100);
    g.bench_function("send_to_loop", |b| {
        b.iter_custom(|iters| rig.run(iters, 16, send_to_loop))
    });
    rig.report("fanout_100/send_to_loop");

    let mut rig = Rig::new(100);
    let mut batch = SendBatch::new(128);
    g.bench_function("sendbatch", |b| {
        b.iter_custom(|iters| {
            rig.run(iters, 16, |tx, dests| {
                for d in dests {
                    batch.push(&PAYLOAD, *d).unwrap();
                }
                batch.flush(tx).sent
            })
        })
    });
    rig.report("fanout_100/sendbatch");
    g.finish();
}

fn one_dest_32(c: &mut Criterion) {
    let mut g = c.benchmark_group("one_dest_32");
    g.throughput(Throughput::Elements(32));
    g.sample_size(30).measurement_time(Duration::from_secs(4));

    let mut rig = Rig::new(1);
    g.bench_function("send_to_loop", |b| {
        b.iter_custom(|iters| {
            rig.run(iters, 1, |tx, dests| {
                (0..32)
                    .filter(|_| tx.send_to(&PAYLOAD, dests[0]).is_ok())
                    .count()
            })
        })
    });
    rig.report("one_dest_32/send_to_loop");

    for use_gso in [false, true] {
        let mut rig = Rig::new(1);
        let gso = use_gso.then(|| Arc::new(Gso::probe(&rig.tx)));
        let name = if use_gso {
            "sendbatch_gso"
        } else {
            "sendbatch"
        };
        let mut batch = SendBatch::new(32).with_gso(gso);
        let mut gso_datagrams = 0;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rig.run(iters, 1, |tx, dests| {
                    for _ in 0..32 {
                        batch.push(&PAYLOAD, dests[0]).unwrap();
                    }
                    let r = batch.flush(tx);
                    gso_datagrams += r.gso_datagrams;
                    r.sent
                })
            })
        });
        rig.report(&format!(
            "one_dest_32/{name} (gso datagrams {gso_datagrams})"
        ));
    }
    g.finish();
}

criterion_group!(benches, fanout_100, one_dest_32);
criterion_main!(benches);
