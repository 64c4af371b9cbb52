//! The `messenger` scenario: N patrons on a Messenger gateway (UDP or TCP), M senders on the
//! multicast group and/or among the patrons, then a report of what reached whom.
//!
//! With [`Mode::Gateway`] the patrons join a running gateway through the real protocol
//! (request, accept, keepalive answers, leave). With [`Mode::Baseline`] / [`Mode::Naive`] the
//! same senders and receivers run, but the in-process reference forwarders of `via` replicate
//! from a socket joined to the group to the N receivers, so the figures have references from
//! the same machine. The reference input is bound to the group address with a port the kernel
//! picks, so a gateway running on the group's own port does not hear that traffic.
//!
//! Phases follow `fanout` (whose sender, pacing, progress and drain it reuses): sockets, join,
//! send for `duration`, drain, stop, leave, merge the ledgers. Every thread is joined before
//! [`run`] returns. Formatting is in `report` and `compare`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use serde::Serialize;

use crate::account::{parse, Ledger, Pick, Totals};
use crate::client;
use crate::fanout::{self, blob_len, encode, share, MAX_SENDERS, MAX_SIZE};
use crate::hist::Histogram;
use crate::patrons::{self, Conn, Joined, PatronEvents, Reader, Rx, Transport};
use crate::report::{Cpu, Latency, Measured, Report};
use crate::sys::{cpu_seconds, find_process, proc_sample, PollSet, Who};
use crate::via::{self, SOCK_BUF};

/// Most patrons in one run.
pub const MAX_PATRONS: usize = 4096;
/// The command name looked for when no gateway pid is given.
pub const GATEWAY_PROCESS: &str = "oscgate";

/// Where the load comes from (`--from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// M senders on the multicast group; every patron must get every message.
    Group,
    /// M of the patrons send to the gateway; every other patron must get each message.
    Patrons,
    /// Both at once.
    Both,
}

impl Source {
    pub fn parse(s: &str) -> anyhow::Result<Source> {
        Ok(match s {
            "group" => Source::Group,
            "patrons" => Source::Patrons,
            "both" => Source::Both,
            _ => bail!("--from must be group, patrons or both, not `{s}`"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Source::Group => "group",
            Source::Patrons => "patrons",
            Source::Both => "both",
        }
    }

    fn group(self) -> bool {
        self != Source::Patrons
    }

    fn patrons(self) -> bool {
        self != Source::Group
    }
}

/// What replicates the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A running Messenger gateway, driven through the protocol.
    Gateway,
    /// `via::run_baseline` from the group to the receivers.
    Baseline,
    /// `via::run_naive` from the group to the receivers.
    Naive,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Gateway => "gateway",
            Mode::Baseline => "baseline",
            Mode::Naive => "naive",
        }
    }
}

/// One `messenger` run.
#[derive(Debug, Clone)]
pub struct MessengerConfig {
    pub patrons: usize,
    pub transport: Transport,
    /// Sender threads per source (with `Both`: M on the group and M patrons).
    pub senders: usize,
    /// Messages per second over all senders; 0 = as fast as possible.
    pub rate: u64,
    pub size: usize,
    pub duration: Duration,
    /// The gateway's patron port (loopback only).
    pub gateway: SocketAddr,
    /// The Messenger multicast group.
    pub group: SocketAddrV4,
    pub from: Source,
    pub mode: Mode,
    /// The gateway's pid, for its CPU time and memory.
    pub gateway_pid: Option<u32>,
    /// Without a pid, look for the one process named [`GATEWAY_PROCESS`].
    pub find_gateway: bool,
    /// How long all patrons may take to be accepted.
    pub join_timeout: Duration,
    /// Multicast TTL of the group senders (0 or 1).
    pub ttl: u32,
    /// Receiver threads for the patrons: 1 or 2.
    pub recv_threads: usize,
    /// Print a progress line to stderr every second.
    pub progress: bool,
}

impl MessengerConfig {
    /// Checks the limits; the error says which flag is wrong and what is allowed.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=MAX_PATRONS).contains(&self.patrons) {
            bail!("--patrons must be 1..={MAX_PATRONS}, not {}", self.patrons);
        }
        if !(1..=MAX_SENDERS).contains(&self.senders) {
            bail!("--senders must be 1..={MAX_SENDERS}, not {}", self.senders);
        }
        if self.from.patrons() && (self.patrons < 2 || self.senders > self.patrons) {
            bail!(
                "--from {} needs at least 2 patrons and no more senders than patrons \
                 (patrons {}, senders {})",
                self.from.name(),
                self.patrons,
                self.senders
            );
        }
        if self.size > MAX_SIZE {
            bail!("--size must be at most {MAX_SIZE} bytes, not {}", self.size);
        }
        if self.duration.is_zero() || self.duration > fanout::MAX_DURATION {
            bail!("--duration must be more than 0 and at most 300 s");
        }
        if !(1..=2).contains(&self.recv_threads) {
            bail!("--recv-threads must be 1 or 2");
        }
        if self.ttl > 1 {
            bail!("--ttl must be 0 or 1: the load stays on this host");
        }
        if !self.group.ip().is_multicast() {
            bail!("--group {} is not an IPv4 multicast address", self.group);
        }
        match self.gateway.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => {}
            _ => bail!(
                "--gateway {}: not an IPv4 loopback address; this tool only loads 127.0.0.0/8",
                self.gateway
            ),
        }
        if self.mode != Mode::Gateway {
            if self.transport == Transport::Tcp {
                bail!(
                    "--{} replicates to UDP receivers only: use --transport udp, or drop \
                     --baseline/--naive to load the gateway over TCP",
                    self.mode.name()
                );
            }
            if self.from != Source::Group {
                bail!(
                    "--{} only replicates the group to the receivers: use --from group",
                    self.mode.name()
                );
            }
        }
        Ok(())
    }
}

/// What a group listener heard of the patrons' messages (they reach the group through the
/// gateway).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GroupStats {
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub latency_us: Latency,
}

/// CPU time and memory of the gateway process over the run (send phase and drain).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GatewayProcess {
    pub pid: u32,
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

/// Everything one `messenger` run measured: the `fanout` report's fields plus the protocol's.
#[derive(Debug, Clone, Serialize)]
pub struct MessengerReport {
    pub scenario: &'static str,
    pub mode: &'static str,
    pub transport: &'static str,
    pub from: &'static str,
    pub patrons: usize,
    pub group_senders: usize,
    pub patron_senders: usize,
    /// The gateway's patron port (gateway mode).
    pub gateway_addr: Option<String>,
    /// Where the group senders sent.
    pub group: String,
    #[serde(flatten)]
    pub run: Report,
    /// Patron messages that came back to their own sender (a gateway must never do that).
    pub unexpected: u64,
    pub join: Option<Joined>,
    pub patron_events: PatronEvents,
    pub group_listener: Option<GroupStats>,
    pub gateway_process: Option<GatewayProcess>,
}

impl MessengerReport {
    /// CPU seconds of whatever replicated the load: the gateway process, if known, or the
    /// in-process forwarder thread.
    pub fn forwarder_cpu_s(&self) -> Option<f64> {
        self.gateway_process
            .map(|g| g.cpu_s)
            .or(self.run.cpu.forwarder_s)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// `fanout`'s table followed by the protocol's lines.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let target = self.gateway_addr.as_deref().unwrap_or("in-process");
        let _ = writeln!(
            s,
            "messenger {} {}  patrons {} {}  from {}  group {}",
            self.mode, target, self.patrons, self.transport, self.from, self.group
        );
        s += &self.run.to_table();
        if let Some(j) = &self.join {
            let _ = writeln!(
                s,
                "join: {} accepted by {} in {:.3} s ({} requests)",
                j.accepted, j.gateway_uid, j.join_s, j.requests
            );
        }
        let e = &self.patron_events;
        if self.mode == "gateway" {
            let _ = writeln!(
                s,
                "patrons: keepalives answered {}  shutdowns {}  other control {}  closed {}  \
                 leaves {}  echoed {}",
                e.keepalives_answered,
                e.shutdowns,
                e.other_control,
                e.closed,
                e.leaves_sent,
                self.unexpected
            );
        }
        if let Some(g) = &self.group_listener {
            let _ = writeln!(
                s,
                "group listener: expected {}  delivered {}  lost {}  dup {}  reorder {}  \
                 p50 {:.1} us  p99 {:.1} us",
                g.expected,
                g.delivered,
                g.lost,
                g.duplicated,
                g.reordered,
                g.latency_us.p50,
                g.latency_us.p99
            );
        }
        if let Some(g) = &self.gateway_process {
            let _ = writeln!(
                s,
                "gateway process {}: cpu {:.2} s  rss {:.1} MiB  peak {:.1} MiB",
                g.pid,
                g.cpu_s,
                g.rss_kib as f64 / 1024.0,
                g.peak_rss_kib as f64 / 1024.0
            );
        }
        s
    }
}

/// A seed for the patron uids that differs between runs and processes.
fn uid_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}

/// Runs one measurement. Errors on set-up failures (bad config, bind, connect, patrons not
/// accepted); loss is a result, not an error.
pub fn run(cfg: &MessengerConfig) -> anyhow::Result<MessengerReport> {
    cfg.validate()?;
    let n = cfg.patrons;
    let group_senders = if cfg.from.group() { cfg.senders } else { 0 };
    let patron_senders = if cfg.from.patrons() { cfg.senders } else { 0 };
    let senders = group_senders + patron_senders;
    let seed = uid_seed();
    let uids: Vec<String> = (0..n).map(|i| client::patron_uid(seed, i)).collect();

    let (conns, dests) = match (cfg.mode, cfg.transport) {
        (Mode::Gateway, Transport::Udp) => (patrons::udp_patrons(n, cfg.gateway)?, Vec::new()),
        (Mode::Gateway, Transport::Tcp) => (patrons::tcp_patrons(n, cfg.gateway)?, Vec::new()),
        _ => patrons::plain_receivers(n)?,
    };
    let mut rx: Vec<Rx> = conns.iter().map(Rx::new).collect();
    let input = match cfg.mode {
        Mode::Gateway => None,
        // Kernel-default receive buffer, as `via::bind_input` does, to keep the backlog small.
        _ => Some(patrons::group_socket(
            SocketAddrV4::new(*cfg.group.ip(), 0),
            None,
        )?),
    };
    let target = match &input {
        Some(s) => s.local_addr()?,
        None => SocketAddr::V4(cfg.group),
    };
    let listener = if patron_senders > 0 {
        Some(Conn::Plain(patrons::group_socket(
            cfg.group,
            Some(SOCK_BUF),
        )?))
    } else {
        None
    };
    let group_socks: Vec<UdpSocket> = (0..group_senders)
        .map(|_| patrons::group_sender(cfg.ttl))
        .collect::<anyhow::Result<_>>()?;

    let mut events = PatronEvents::default();
    let joined = match cfg.mode {
        Mode::Gateway => match patrons::join(&conns, &mut rx, &uids, cfg.join_timeout, &mut events)
        {
            Ok(j) => Some(j),
            Err(e) => {
                patrons::leave(&conns, &uids);
                return Err(e.context(format!("joining the gateway at {}", cfg.gateway)));
            }
        },
        _ => None,
    };
    let gw_pid = match cfg.mode {
        Mode::Gateway => cfg.gateway_pid.or_else(|| {
            cfg.find_gateway
                .then(|| find_process(GATEWAY_PROCESS))
                .flatten()
        }),
        _ => None,
    };
    let gw_before = gw_pid.and_then(proc_sample);

    let epoch = Instant::now();
    let cpu0 = cpu_seconds(Who::Process);
    let fwd_stop = AtomicBool::new(false);
    let recv_stop = AtomicBool::new(false);
    let delivered = AtomicU64::new(0);
    let heard = AtomicU64::new(0);
    let sent: Vec<AtomicU64> = (0..senders).map(|_| AtomicU64::new(0)).collect();
    let pad = vec![0u8; blob_len(cfg.size)];
    let mut probe = Vec::new();
    encode(&mut probe, 0, 0, 0, &pad);
    let msg_size = probe.len();

    let per = n.div_ceil(cfg.recv_threads);
    let outcome = thread::scope(|s| {
        let fwd = input.as_ref().map(|sock| {
            let (dests, stop, mode) = (&dests, &fwd_stop, cfg.mode);
            s.spawn(move || match mode {
                Mode::Naive => via::run_naive(sock, dests, stop),
                _ => via::run_baseline(sock, dests, stop),
            })
        });
        let receivers: Vec<_> = conns
            .chunks(per)
            .zip(rx.chunks_mut(per))
            .zip(uids.chunks(per))
            .enumerate()
            .map(|(k, ((c, r), u))| {
                let (stop, delivered) = (&recv_stop, &delivered);
                s.spawn(move || {
                    (
                        k * per,
                        receive(c, r, u, senders, 0, epoch, stop, delivered),
                    )
                })
            })
            .collect();
        let group_rx = listener.as_ref().map(|l| {
            let (stop, heard) = (&recv_stop, &heard);
            s.spawn(move || {
                let mut r = [Rx::new(l)];
                let uid = [String::new()];
                // It also hears the group senders directly: leave those out.
                let l = std::slice::from_ref(l);
                receive(l, &mut r, &uid, senders, group_senders, epoch, stop, heard)
            })
        });
        let start = Instant::now();
        let deadline = start + cfg.duration;
        let tx: Vec<_> = (0..senders)
            .map(|id| {
                let rate = share(cfg.rate, senders, id);
                let (counter, pad) = (&sent[id], &pad);
                if id < group_senders {
                    let sock = &group_socks[id];
                    s.spawn(move || {
                        fanout::send(sock, id, target, rate, pad, epoch, deadline, counter)
                    })
                } else {
                    let conn = &conns[id - group_senders];
                    s.spawn(move || {
                        let mut writable = PollSet::new(std::slice::from_ref(conn), true);
                        fanout::pace(id, rate, pad, epoch, deadline, counter, |buf| {
                            let r = conn.send_packet(buf);
                            if matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
                                let _ = writable.wait(Duration::from_millis(1));
                            }
                            r
                        })
                    })
                }
            })
            .collect();
        let mut last = start;
        while tx.iter().any(|t| !t.is_finished()) {
            thread::sleep(Duration::from_millis(20));
            if cfg.progress && last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                fanout::progress(start, &sent, &delivered);
            }
        }
        let send_cpu: f64 = tx.into_iter().map(|t| t.join().unwrap_or(0.0)).sum();
        let send_elapsed = start.elapsed();
        let in_window = delivered.load(Ordering::Relaxed);
        fanout::drain(&delivered);
        fwd_stop.store(true, Ordering::Relaxed);
        let fwd_stats = fwd.map(|f| f.join().unwrap_or_default());
        recv_stop.store(true, Ordering::Relaxed);
        let ledgers: Vec<_> = receivers
            .into_iter()
            .filter_map(|t| t.join().ok())
            .collect();
        let group = group_rx.and_then(|t| t.join().ok());
        (
            send_cpu,
            (send_elapsed, in_window),
            fwd_stats,
            ledgers,
            group,
        )
    });
    let (send_cpu, (elapsed, in_window), fwd_stats, ledgers, group) = outcome;
    if cfg.progress {
        eprintln!();
    }
    let gw_after = gw_pid.and_then(proc_sample);
    if cfg.mode == Mode::Gateway {
        events.leaves_sent = patrons::leave(&conns, &uids);
    }
    let process_s = cpu_seconds(Who::Process) - cpu0;

    let sent: Vec<u64> = sent.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    // A patron sender's own messages must not come back to it; everything else is expected.
    let pick = |receiver: usize, sender: usize| match sender.checked_sub(group_senders) {
        Some(p) if p == receiver => Pick::Unexpected,
        _ => Pick::Expected,
    };
    let mut totals = Totals::default();
    let mut latency = Histogram::new();
    let mut recv_cpu = 0.0;
    for (offset, (ledger, ev, cpu)) in &ledgers {
        totals.add(&ledger.totals_where(&sent, |r, s| pick(offset + r, s)));
        latency.merge(&ledger.latency);
        events.add(ev);
        recv_cpu += cpu;
    }
    let group_listener = group.map(|(ledger, _, cpu)| {
        recv_cpu += cpu;
        let t = ledger.totals_where(&sent, |_, s| {
            if s >= group_senders {
                Pick::Expected
            } else {
                Pick::Ignore
            }
        });
        GroupStats {
            expected: t.expected,
            delivered: t.unique + t.duplicated,
            lost: t.lost,
            duplicated: t.duplicated,
            reordered: t.reordered,
            latency_us: Latency::from_hist(&ledger.latency),
        }
    });
    let gateway_process = match (gw_pid, gw_before, gw_after) {
        (Some(pid), Some(a), Some(b)) => Some(GatewayProcess {
            pid,
            cpu_s: b.cpu_s - a.cpu_s,
            rss_kib: b.rss_kib,
            peak_rss_kib: b.peak_rss_kib,
        }),
        _ => None,
    };
    let run = Report {
        forwarder: fwd_stats,
        receiver_addrs: dests.iter().map(|d| d.to_string()).collect(),
        ..Report::measured(Measured {
            via: cfg.mode.name().into(),
            receivers: n,
            senders,
            rate: cfg.rate,
            size: msg_size,
            sent: &sent,
            totals: &totals,
            latency: &latency,
            elapsed,
            in_window,
            cpu: Cpu {
                process_s,
                forwarder_s: fwd_stats.map(|f| f.cpu_s),
                senders_s: send_cpu,
                receivers_s: recv_cpu,
            },
        })
    };
    Ok(MessengerReport {
        scenario: "messenger",
        mode: cfg.mode.name(),
        transport: cfg.transport.name(),
        from: cfg.from.name(),
        patrons: n,
        group_senders,
        patron_senders,
        gateway_addr: (cfg.mode == Mode::Gateway).then(|| cfg.gateway.to_string()),
        group: target.to_string(),
        run,
        unexpected: totals.unexpected,
        join: joined,
        patron_events: events,
        group_listener,
        gateway_process,
    })
}

/// A receiver thread: drains its connections until `stop`, accounting load messages (the
/// ledger numbers receivers by their place in `conns`) and answering gateway control (a
/// `who/active` gets `me/patron` with that patron's uid). Returns the ledger, the control
/// events and its CPU seconds. Load messages from senders below `skip_below` are not
/// accounted at all.
#[allow(clippy::too_many_arguments)]
fn receive(
    conns: &[Conn],
    rx: &mut [Rx],
    uids: &[String],
    senders: usize,
    skip_below: usize,
    epoch: Instant,
    stop: &AtomicBool,
    delivered: &AtomicU64,
) -> (Ledger, PatronEvents, f64) {
    let mut ledger = Ledger::new(conns.len(), senders);
    let mut events = PatronEvents::default();
    let mut reader = Reader::default();
    let mut set = PollSet::new(conns, false);
    let mut closed = vec![false; conns.len()];
    while !stop.load(Ordering::Relaxed) {
        if set.wait(Duration::from_millis(20)).unwrap_or(0) == 0 {
            continue;
        }
        for (r, conn) in conns.iter().enumerate() {
            if !set.ready(r) || closed[r] {
                continue;
            }
            // One timestamp per read turn, as `fanout` takes one per receive batch.
            let now = epoch.elapsed().as_nanos() as u64;
            let (ledger, events) = (&mut ledger, &mut events);
            let uid = uids.get(r).map_or("", String::as_str);
            let got = reader.read(conn, &mut rx[r], 16, |p| {
                if client::is_control(p) {
                    events.on_control(conn, uid, p);
                } else if skip_below == 0
                    || parse(p, senders).map_or(true, |st| st.sender >= skip_below)
                {
                    ledger.record(r, p, now);
                }
            });
            delivered.fetch_add(got, Ordering::Relaxed);
            if rx[r].closed {
                closed[r] = true;
                events.closed += 1;
            }
        }
        if closed.iter().all(|&c| c) {
            break;
        }
    }
    (ledger, events, cpu_seconds(Who::Thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> MessengerConfig {
        MessengerConfig {
            patrons: 3,
            transport: Transport::Udp,
            senders: 1,
            rate: 100,
            size: 64,
            duration: Duration::from_secs(1),
            gateway: "127.0.0.1:9030".parse().unwrap(),
            group: "239.254.0.1:3090".parse().unwrap(),
            from: Source::Group,
            mode: Mode::Gateway,
            gateway_pid: None,
            find_gateway: false,
            join_timeout: Duration::from_secs(1),
            ttl: 0,
            recv_threads: 1,
            progress: false,
        }
    }

    #[test]
    fn config_limits_are_enforced_with_clear_messages() {
        assert!(ok().validate().is_ok());
        let err = |c: MessengerConfig| c.validate().unwrap_err().to_string();
        let tcp_baseline = MessengerConfig {
            mode: Mode::Baseline,
            transport: Transport::Tcp,
            ..ok()
        };
        assert!(err(tcp_baseline).contains("UDP receivers only"));
        let naive_patrons = MessengerConfig {
            mode: Mode::Naive,
            from: Source::Patrons,
            ..ok()
        };
        assert!(err(naive_patrons).contains("--from group"));
        let too_few = MessengerConfig {
            patrons: 1,
            from: Source::Both,
            ..ok()
        };
        assert!(err(too_few).contains("at least 2 patrons"));
        let remote = MessengerConfig {
            gateway: "10.0.0.1:9030".parse().unwrap(),
            ..ok()
        };
        assert!(err(remote).contains("loopback"));
        let unicast = MessengerConfig {
            group: "127.0.0.1:3090".parse().unwrap(),
            ..ok()
        };
        assert!(err(unicast).contains("multicast"));
        for bad in [
            MessengerConfig { patrons: 0, ..ok() },
            MessengerConfig {
                patrons: MAX_PATRONS + 1,
                ..ok()
            },
            MessengerConfig { senders: 0, ..ok() },
            MessengerConfig {
                senders: 4,
                from: Source::Patrons,
                ..ok()
            },
            MessengerConfig { ttl: 2, ..ok() },
            MessengerConfig {
                duration: Duration::ZERO,
                ..ok()
            },
            MessengerConfig {
                recv_threads: 3,
                ..ok()
            },
            MessengerConfig {
                size: MAX_SIZE + 1,
                ..ok()
            },
        ] {
            assert!(run(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sources_and_modes_parse_and_name() {
        for s in [Source::Group, Source::Patrons, Source::Both] {
            assert_eq!(Source::parse(s.name()).unwrap(), s);
        }
        assert!(Source::parse("all").is_err());
        assert_eq!(Mode::Gateway.name(), "gateway");
    }
}
