//! The `fanout` scenario: M sender threads -> one forwarder -> N receiver sockets, all on
//! 127.0.0.1, then a report of what arrived.
//!
//! Phases: bind the receivers, start the forwarder (in-process) or take the external address,
//! start the receiver threads, send for `duration` at the paced rate, wait until the receivers
//! have been silent for [`DRAIN_QUIET`] (at most [`DRAIN_MAX`]), stop every thread and merge
//! the ledgers. Every thread is joined before [`run`] returns. This module does not format
//! the report (see `report`).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oscgate::engine::udp::{bind_udp, RecvBatch};
use oscgate::wire::{encoded_len, write_message, Arg};

use crate::account::{Ledger, Totals};
use crate::hist::Histogram;
use crate::report::{Cpu, Measured, Report};
use crate::sys::{cpu_seconds, PollSet, Who};
use crate::via::{self, ForwarderStats, Via};

/// Longest run allowed.
pub const MAX_DURATION: Duration = Duration::from_secs(300);
/// Most receivers and senders.
pub const MAX_RECEIVERS: usize = 4096;
pub const MAX_SENDERS: usize = 64;
/// Largest message: fits one IPv4 UDP datagram with room to spare.
pub const MAX_SIZE: usize = 60_000;
/// The drain ends after this much silence...
pub const DRAIN_QUIET: Duration = Duration::from_millis(200);
/// ...or after this long in all.
pub const DRAIN_MAX: Duration = Duration::from_secs(3);
/// Messages a paced sender sends back to back at most (and per turn when unpaced).
const SEND_BURST: u64 = 32;

/// One `fanout` run.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    pub receivers: usize,
    pub senders: usize,
    /// Messages per second over all senders; 0 = as fast as possible.
    pub rate: u64,
    /// Datagram size in bytes (raised to the smallest possible load message, rounded up to 4).
    pub size: usize,
    pub duration: Duration,
    pub via: Via,
    /// Receiver threads: 1 or 2.
    pub recv_threads: usize,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// Pin the in-process forwarder to the last CPU and the load threads to the others
    /// (no effect on a single CPU).
    pub pin: bool,
}

/// CPU sets for (forwarder, load threads) when pinning applies.
fn pin_plan(cfg: &FanoutConfig) -> Option<(Vec<usize>, Vec<usize>)> {
    let n = thread::available_parallelism().map_or(1, |n| n.get());
    if !cfg.pin || n < 2 || !matches!(cfg.via, Via::Baseline | Via::Naive) {
        return None;
    }
    Some((vec![n - 1], (0..n - 1).collect()))
}

impl FanoutConfig {
    /// Checks the limits; the error says which flag is wrong and what is allowed.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=MAX_RECEIVERS).contains(&self.receivers) {
            bail!(
                "--receivers must be 1..={MAX_RECEIVERS}, not {}",
                self.receivers
            );
        }
        if !(1..=MAX_SENDERS).contains(&self.senders) {
            bail!("--senders must be 1..={MAX_SENDERS}, not {}", self.senders);
        }
        if self.size > MAX_SIZE {
            bail!("--size must be at most {MAX_SIZE} bytes, not {}", self.size);
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            bail!("--duration must be more than 0 and at most 300 s");
        }
        if !(1..=2).contains(&self.recv_threads) {
            bail!("--recv-threads must be 1 or 2");
        }
        Ok(())
    }
}

/// Length of the padding blob that brings a load message to `size` bytes (or as close above
/// as OSC's 4-byte alignment and the fixed fields allow).
pub fn blob_len(size: usize) -> usize {
    let fixed = encoded_len(
        b"/load/00",
        &[Arg::Int(0), Arg::Long(0), Arg::Long(0), Arg::Blob(&[])],
    );
    size.saturating_sub(fixed)
}

/// Writes message `seq` of `sender` into `out` (cleared first).
pub fn encode(out: &mut Vec<u8>, sender: usize, seq: u64, sent_ns: u64, pad: &[u8]) {
    out.clear();
    let mut addr = *b"/load/00";
    addr[6] = b'0' + (sender / 10 % 10) as u8;
    addr[7] = b'0' + (sender % 10) as u8;
    let args = [
        Arg::Int(sender as i32),
        Arg::Long(seq as i64),
        Arg::Long(sent_ns as i64),
        Arg::Blob(pad),
    ];
    // Cannot fail: the address starts with '/', no strings, the blob is below 2^31 bytes.
    let _ = write_message(out, &addr, &args);
}

/// Runs one fan-out measurement. Errors only on set-up failures (bad config, bind); loss is
/// a result, not an error.
pub fn run(cfg: &FanoutConfig) -> anyhow::Result<Report> {
    cfg.validate()?;
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let receivers: Vec<UdpSocket> = (0..cfg.receivers)
        .map(|_| bind_udp(local, false, Some(via::SOCK_BUF), None))
        .collect::<Result<_, _>>()
        .context("binding the receiver sockets on 127.0.0.1")?;
    let dests: Vec<SocketAddr> = receivers
        .iter()
        .map(|r| r.local_addr())
        .collect::<Result<_, _>>()?;
    let input = match cfg.via {
        Via::Baseline | Via::Naive => Some(via::bind_input()?),
        Via::Udp(_) => None,
    };
    let target = match (&input, cfg.via) {
        (Some(s), _) => s.local_addr()?,
        (None, Via::Udp(a)) => a,
        (None, _) => bail!("no forwarder input"),
    };
    if let Via::Udp(_) = cfg.via {
        let list: Vec<String> = dests.iter().map(|d| d.to_string()).collect();
        eprintln!("receivers: {}", list.join(" "));
    }
    let senders: Vec<UdpSocket> = (0..cfg.senders)
        .map(|_| bind_udp(local, false, None, Some(via::SOCK_BUF)))
        .collect::<Result<_, _>>()
        .context("binding the sender sockets on 127.0.0.1")?;

    let epoch = Instant::now();
    let cpu0 = cpu_seconds(Who::Process);
    let fwd_stop = AtomicBool::new(false);
    let recv_stop = AtomicBool::new(false);
    let delivered = AtomicU64::new(0);
    let sent: Vec<AtomicU64> = (0..cfg.senders).map(|_| AtomicU64::new(0)).collect();
    let pad = vec![0u8; blob_len(cfg.size)];
    let mut probe = Vec::new();
    encode(&mut probe, 0, 0, 0, &pad);
    let msg_size = probe.len();

    let pins = pin_plan(cfg);
    let (fwd_cpus, load_cpus) = pins.clone().unwrap_or_default();
    let pin = |cpus: &[usize]| {
        if !cpus.is_empty() {
            crate::sys::pin_current_thread(cpus);
        }
    };
    let outcome = thread::scope(|s| {
        let fwd = input.as_ref().map(|sock| {
            let (dests, stop, mode, cpus) = (&dests, &fwd_stop, cfg.via, &fwd_cpus);
            s.spawn(move || {
                pin(cpus);
                match mode {
                    Via::Naive => via::run_naive(sock, dests, stop),
                    _ => via::run_baseline(sock, dests, stop),
                }
            })
        });
        let per = cfg.receivers.div_ceil(cfg.recv_threads);
        let rx: Vec<_> = receivers
            .chunks(per)
            .map(|socks| {
                let (stop, delivered, senders) = (&recv_stop, &delivered, cfg.senders);
                let cpus = &load_cpus;
                s.spawn(move || {
                    pin(cpus);
                    receive(socks, senders, epoch, stop, delivered)
                })
            })
            .collect();
        let start = Instant::now();
        let deadline = start + cfg.duration;
        let tx: Vec<_> = senders
            .iter()
            .enumerate()
            .map(|(i, sock)| {
                let rate = share(cfg.rate, cfg.senders, i);
                let (counter, pad, cpus) = (&sent[i], &pad, &load_cpus);
                s.spawn(move || {
                    pin(cpus);
                    send(sock, i, target, rate, pad, epoch, deadline, counter)
                })
            })
            .collect();
        let mut last = start;
        while tx.iter().any(|t| !t.is_finished()) {
            thread::sleep(Duration::from_millis(20));
            if cfg.progress && last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                progress(start, &sent, &delivered);
            }
        }
        let send_cpu: f64 = tx.into_iter().map(|t| t.join().unwrap_or(0.0)).sum();
        let send_elapsed = start.elapsed();
        let in_window = delivered.load(Ordering::Relaxed);
        drain(&delivered);
        fwd_stop.store(true, Ordering::Relaxed);
        let fwd_stats = fwd.map(|f| f.join().unwrap_or_default());
        recv_stop.store(true, Ordering::Relaxed);
        let ledgers: Vec<(Ledger, f64)> = rx.into_iter().filter_map(|t| t.join().ok()).collect();
        let window = (send_elapsed, in_window);
        (send_cpu, window, fwd_stats, ledgers)
    });
    let (send_cpu, window, fwd_stats, ledgers) = outcome;
    if cfg.progress {
        eprintln!();
    }
    let sent: Vec<u64> = sent.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let mut totals = Totals::default();
    let mut latency = Histogram::new();
    let mut recv_cpu = 0.0;
    for (l, cpu) in &ledgers {
        totals.add(&l.totals(&sent));
        latency.merge(&l.latency);
        recv_cpu += cpu;
    }
    Ok(build_report(
        cfg,
        msg_size,
        &sent,
        totals,
        &latency,
        window,
        Cpu {
            process_s: cpu_seconds(Who::Process) - cpu0,
            forwarder_s: fwd_stats.map(|f| f.cpu_s),
            senders_s: send_cpu,
            receivers_s: recv_cpu,
        },
        fwd_stats,
        &dests,
        pins.is_some(),
    ))
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    cfg: &FanoutConfig,
    msg_size: usize,
    sent: &[u64],
    t: Totals,
    latency: &Histogram,
    (elapsed, in_window): (Duration, u64),
    cpu: Cpu,
    forwarder: Option<ForwarderStats>,
    dests: &[SocketAddr],
    pinned: bool,
) -> Report {
    Report {
        pinned,
        forwarder,
        receiver_addrs: dests.iter().map(|d| d.to_string()).collect(),
        ..Report::measured(Measured {
            via: cfg.via.name(),
            receivers: cfg.receivers,
            senders: cfg.senders,
            rate: cfg.rate,
            size: msg_size,
            sent,
            totals: &t,
            latency,
            elapsed,
            in_window,
            cpu,
        })
    }
}

/// Sender `i`'s share of `rate` over `n` senders (the remainder goes to the first ones).
pub(crate) fn share(rate: u64, n: usize, i: usize) -> u64 {
    let n = n as u64;
    rate / n + u64::from((i as u64) < rate % n)
}

pub(crate) fn progress(start: Instant, sent: &[AtomicU64], delivered: &AtomicU64) {
    let s: u64 = sent.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let d = delivered.load(Ordering::Relaxed);
    let t = start.elapsed().as_secs_f64();
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r{t:6.1} s  sent {s:>11}  delivered {d:>12}  ({:>10.0}/s)   ",
        d as f64 / t
    );
    let _ = err.flush();
}

/// Waits until no datagram has arrived for `DRAIN_QUIET`, at most `DRAIN_MAX`.
pub(crate) fn drain(delivered: &AtomicU64) {
    let start = Instant::now();
    let mut last = delivered.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    while start.elapsed() < DRAIN_MAX && quiet_since.elapsed() < DRAIN_QUIET {
        thread::sleep(Duration::from_millis(10));
        let now = delivered.load(Ordering::Relaxed);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
}

/// A UDP sender thread: [`pace`] with `send_to(to)`, waiting briefly for room when the
/// socket's send buffer is full. Returns its CPU seconds; `counter` holds how many it sent.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send(
    sock: &UdpSocket,
    id: usize,
    to: SocketAddr,
    rate: u64,
    pad: &[u8],
    epoch: Instant,
    deadline: Instant,
    counter: &AtomicU64,
) -> f64 {
    let mut writable = PollSet::new(&[sock], true);
    pace(id, rate, pad, epoch, deadline, counter, |buf| {
        let r = sock.send_to(buf, to).map(drop);
        if let Err(e) = &r {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                // Our own send buffer is full: give the kernel a moment.
                let _ = writable.wait(Duration::from_millis(1));
            }
        }
        r
    })
}

/// The pacing loop of a sender: message `seq` of sender `id`, stamped at the moment it is
/// built, handed to `emit` in paced bursts (or flat out when `rate` is 0) until `deadline`.
/// `emit` returning `WouldBlock` ends the burst (it should have waited a little first); other
/// errors end the burst and are counted, and after a million of them the sender gives up.
/// Returns the thread's CPU seconds; `counter` holds how many messages were emitted.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pace(
    id: usize,
    rate: u64,
    pad: &[u8],
    epoch: Instant,
    deadline: Instant,
    counter: &AtomicU64,
    mut emit: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> f64 {
    let mut buf = Vec::with_capacity(pad.len() + 64);
    let start = Instant::now();
    let mut seq = 0u64;
    let mut errors = 0u64;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let burst = if rate == 0 {
            SEND_BURST
        } else {
            let due = (now - start).as_nanos() * rate as u128 / 1_000_000_000;
            let due = u64::try_from(due).unwrap_or(u64::MAX);
            if due <= seq {
                let next = start + Duration::from_nanos((seq + 1) * 1_000_000_000 / rate);
                let wait = next
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(1));
                thread::sleep(wait);
                continue;
            }
            (due - seq).min(SEND_BURST)
        };
        for _ in 0..burst {
            encode(&mut buf, id, seq, epoch.elapsed().as_nanos() as u64, pad);
            match emit(&buf) {
                Ok(()) => seq += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    errors += 1;
                    if errors > 1_000_000 {
                        counter.store(seq, Ordering::Relaxed);
                        return cpu_seconds(Who::Thread);
                    }
                    break;
                }
            }
        }
        counter.store(seq, Ordering::Relaxed);
    }
    counter.store(seq, Ordering::Relaxed);
    cpu_seconds(Who::Thread)
}

/// A receiver thread: drains its sockets with `recvmmsg` until `stop`, accounting each
/// datagram. Returns the ledger (receivers numbered by their place in `socks`) and its CPU s.
fn receive(
    socks: &[UdpSocket],
    senders: usize,
    epoch: Instant,
    stop: &AtomicBool,
    delivered: &AtomicU64,
) -> (Ledger, f64) {
    let mut ledger = Ledger::new(socks.len(), senders);
    let mut rb = RecvBatch::new(64, 65_536);
    let mut set = PollSet::new(socks, false);
    while !stop.load(Ordering::Relaxed) {
        if set.wait(Duration::from_millis(20)).unwrap_or(0) == 0 {
            continue;
        }
        for (r, sock) in socks.iter().enumerate() {
            if !set.ready(r) {
                continue;
            }
            // Bounded turns per socket so one busy receiver cannot starve the others.
            for _ in 0..16 {
                let n = match rb.recv(sock) {
                    Ok(n) if n > 0 => n,
                    _ => break,
                };
                let now = epoch.elapsed().as_nanos() as u64;
                for (payload, _, _) in rb.iter() {
                    ledger.record(r, payload, now);
                }
                delivered.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    (ledger, cpu_seconds(Who::Thread))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::parse;

    #[test]
    fn messages_have_the_asked_size_and_parse_back() {
        for size in [0, 32, 48, 64, 65, 128, 256, 1000, 1400] {
            let pad = vec![0; blob_len(size)];
            let mut out = Vec::new();
            encode(&mut out, 3, 42, 7_000, &pad);
            let min = {
                let mut m = Vec::new();
                encode(&mut m, 3, 42, 7_000, &[]);
                m.len()
            };
            assert_eq!(out.len(), size.next_multiple_of(4).max(min), "size {size}");
            let st = parse(&out, 4).unwrap();
            assert_eq!((st.sender, st.seq, st.sent_ns), (3, 42, 7_000));
        }
    }

    #[test]
    fn rate_shares_add_up() {
        for (rate, n) in [(0, 3), (10, 3), (2000, 1), (7, 8)] {
            let sum: u64 = (0..n).map(|i| share(rate, n, i)).sum();
            assert_eq!(sum, rate);
        }
    }

    #[test]
    fn config_limits_are_enforced() {
        let ok = FanoutConfig {
            receivers: 10,
            senders: 1,
            rate: 0,
            size: 64,
            duration: Duration::from_secs(1),
            via: Via::Baseline,
            recv_threads: 1,
            progress: false,
            pin: false,
        };
        assert!(ok.validate().is_ok());
        let bad = [
            FanoutConfig {
                receivers: 0,
                ..ok.clone()
            },
            FanoutConfig {
                receivers: MAX_RECEIVERS + 1,
                ..ok.clone()
            },
            FanoutConfig {
                senders: 0,
                ..ok.clone()
            },
            FanoutConfig {
                size: MAX_SIZE + 1,
                ..ok.clone()
            },
            FanoutConfig {
                duration: Duration::from_secs(301),
                ..ok.clone()
            },
            FanoutConfig {
                duration: Duration::ZERO,
                ..ok.clone()
            },
            FanoutConfig {
                recv_threads: 3,
                ..ok.clone()
            },
        ];
        for b in bad {
            assert!(run(&b).is_err(), "{b:?} accepted");
        }
    }
}
