//! The `router` scenario: N users on a tcposcrouter-compatible router (oscgate's, or the
//! Python package), all in one group; K of them send, and every *other* user must receive
//! every message. Then a report of what reached whom, with the router process's CPU and memory.
//!
//! Phases: connect and register every user (`router_io`), start the receiver threads (each
//! owns a share of the users' streams), send for `duration` from one thread per sender,
//! drain as `fanout` does (until quiet), stop and merge the ledgers, close every connection.
//! Every thread is joined before [`run`] returns. The streams and the protocol are in
//! `router_io`; the numbers' meaning is `report`'s.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use oscgate::wire::framing::Framing;
use serde::Serialize;

use crate::account::{Pick, Totals};
use crate::fanout::{self, blob_len, encode, share, MAX_SENDERS, MAX_SIZE};
use crate::hist::Histogram;
use crate::messenger::{GatewayProcess, GATEWAY_PROCESS};
use crate::report::{Cpu, Measured, Report};
use crate::router_io::{self, ControlCounts, Received, Registered};
use crate::sys::{cpu_seconds, find_process, proc_sample, Who};

/// Most users in one run (one TCP connection each).
pub const MAX_USERS: usize = 2048;
/// Most receiver threads.
pub const MAX_RECV_THREADS: usize = 8;

/// One `router` run.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Users, each with one connection, all in one group.
    pub users: usize,
    /// Users `0..senders` send.
    pub senders: usize,
    /// Messages per second over all senders; 0 = as fast as possible.
    pub rate: u64,
    pub size: usize,
    pub duration: Duration,
    /// The router's port (loopback only).
    pub router: SocketAddr,
    /// `Len32` (OSC 1.0, port 55555) or `Slip` (port 55556).
    pub framing: Framing,
    /// The router's pid, for its CPU time and memory.
    pub target_pid: Option<u32>,
    /// Without a pid, look for the one process named `oscgate`.
    pub find_target: bool,
    /// How long all users may take to be registered.
    pub register_timeout: Duration,
    /// Receiver threads (1..=[`MAX_RECV_THREADS`], at most one per user).
    pub recv_threads: usize,
    /// Print a progress line to stderr every second.
    pub progress: bool,
}

impl RouterConfig {
    /// Checks the limits; the error says which flag is wrong and what is allowed.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(2..=MAX_USERS).contains(&self.users) {
            bail!(
                "--users must be 2..={MAX_USERS} (someone has to receive), not {}",
                self.users
            );
        }
        if !(1..=MAX_SENDERS.min(self.users)).contains(&self.senders) {
            bail!(
                "--senders must be 1..={} (at most --users and {MAX_SENDERS}), not {}",
                MAX_SENDERS.min(self.users),
                self.senders
            );
        }
        if self.size > MAX_SIZE {
            bail!("--size must be at most {MAX_SIZE} bytes, not {}", self.size);
        }
        if self.duration.is_zero() || self.duration > fanout::MAX_DURATION {
            bail!("--duration must be more than 0 and at most 300 s");
        }
        if !(1..=MAX_RECV_THREADS).contains(&self.recv_threads) {
            bail!("--recv-threads must be 1..={MAX_RECV_THREADS}");
        }
        if !matches!(self.framing, Framing::Len32 | Framing::Slip) {
            bail!("--framing must be len32 or slip");
        }
        match self.router.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => {}
            _ => bail!(
                "--router {}: not an IPv4 loopback address; this tool only loads 127.0.0.0/8",
                self.router
            ),
        }
        Ok(())
    }
}

/// Parses `--framing`.
pub fn parse_framing(s: &str) -> anyhow::Result<Framing> {
    match s {
        "len32" => Ok(Framing::Len32),
        "slip" => Ok(Framing::Slip),
        other => bail!("--framing must be len32 or slip, not `{other}`"),
    }
}

/// Everything one `router` run measured: the `fanout` report's fields plus the router's.
#[derive(Debug, Clone, Serialize)]
pub struct RouterReport {
    pub scenario: &'static str,
    pub router_addr: String,
    pub framing: &'static str,
    pub users: usize,
    #[serde(flatten)]
    pub run: Report,
    /// Messages that came back to the user who sent them (a router must never do that).
    pub unexpected: u64,
    pub register: Registered,
    pub control: ControlCounts,
    /// A sender's write error that ended it before the deadline, if any.
    pub sender_errors: Vec<String>,
    /// The router process (same fields as the Messenger gateway's).
    pub target_process: Option<GatewayProcess>,
}

impl RouterReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// `fanout`'s table followed by the router's lines.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "router {} {}  users {}  group {}",
            self.router_addr, self.framing, self.users, self.register.group
        );
        s += &self.run.to_table();
        let r = &self.register;
        let _ = writeln!(
            s,
            "register: {} users in {:.3} s (replies /oscrouter/register/<user>/<id>: {}, \
             without id: {})",
            r.users, r.register_s, r.replies_with_id, r.replies_without_id
        );
        let c = &self.control;
        let _ = writeln!(
            s,
            "control: userlists {}  errors {}  other {}  closed {}  echoed {}",
            c.userlists, c.errors, c.other, c.closed, self.unexpected
        );
        for e in &self.sender_errors {
            let _ = writeln!(s, "{e}");
        }
        match &self.target_process {
            Some(g) => {
                let _ = writeln!(
                    s,
                    "router process {}: cpu {:.2} s  rss {:.1} MiB  peak {:.1} MiB",
                    g.pid,
                    g.cpu_s,
                    g.rss_kib as f64 / 1024.0,
                    g.peak_rss_kib as f64 / 1024.0
                );
            }
            None => s += "router cpu unknown: pass --target-pid (no single `oscgate` process)\n",
        }
        s
    }
}

/// A group name that differs between runs and processes, so runs never share a group.
fn group_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("load{:x}{:x}", std::process::id(), nanos)
}

/// Runs one measurement. Errors on set-up failures (bad config, connect, register refused or
/// unanswered); loss is a result, not an error.
pub fn run(cfg: &RouterConfig) -> anyhow::Result<RouterReport> {
    cfg.validate()?;
    let n = cfg.users;
    let k = cfg.senders;
    let names: Vec<String> = (0..n).map(|i| format!("user{i}")).collect();
    let (mut users, registered) = router_io::connect_and_register(
        cfg.router,
        cfg.framing,
        &names,
        &group_name(),
        cfg.register_timeout,
    )?;
    let pid = cfg.target_pid.or_else(|| {
        cfg.find_target
            .then(|| find_process(GATEWAY_PROCESS))
            .flatten()
    });
    let before = pid.and_then(proc_sample);

    // Each sender writes on a clone of its user's stream; the receiver threads own the users.
    let writers: Vec<std::net::TcpStream> = users[..k]
        .iter()
        .map(|u| u.stream.try_clone())
        .collect::<Result<_, _>>()?;
    let epoch = Instant::now();
    let cpu0 = cpu_seconds(Who::Process);
    let stop = AtomicBool::new(false);
    let delivered = AtomicU64::new(0);
    let sent: Vec<AtomicU64> = (0..k).map(|_| AtomicU64::new(0)).collect();
    let pad = vec![0u8; blob_len(cfg.size)];
    let mut probe = Vec::new();
    encode(&mut probe, 0, 0, 0, &pad);
    let msg_size = probe.len();
    let per = n.div_ceil(cfg.recv_threads.min(n));

    let (send_out, (elapsed, in_window), received) = thread::scope(|s| {
        let rx: Vec<_> = users
            .chunks_mut(per)
            .enumerate()
            .map(|(t, chunk)| {
                let (stop, delivered) = (&stop, &delivered);
                s.spawn(move || router_io::receive(chunk, t * per, k, epoch, stop, delivered))
            })
            .collect();
        let start = Instant::now();
        let deadline = start + cfg.duration;
        let tx: Vec<_> = writers
            .iter()
            .enumerate()
            .map(|(id, w)| {
                let rate = share(cfg.rate, k, id);
                let (counter, pad, framing) = (&sent[id], &pad, cfg.framing);
                s.spawn(move || {
                    router_io::send(w, id, framing, rate, pad, epoch, deadline, counter)
                })
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
        let send_out: Vec<(f64, Option<String>)> = tx
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or((0.0, Some("a sender thread panicked".into())))
            })
            .collect();
        // Includes a batch finished after the deadline (at most WRITE_GRACE).
        let send_elapsed = start.elapsed();
        let in_window = delivered.load(Ordering::Relaxed);
        fanout::drain(&delivered);
        stop.store(true, Ordering::Relaxed);
        let received: Vec<Received> = rx.into_iter().filter_map(|t| t.join().ok()).collect();
        (send_out, (send_elapsed, in_window), received)
    });
    if cfg.progress {
        eprintln!();
    }
    let after = pid.and_then(proc_sample);
    let process_s = cpu_seconds(Who::Process) - cpu0;
    drop(writers);
    drop(users);

    let sent: Vec<u64> = sent.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    // Sender `s` is user `s`: its own messages must not come back to it.
    let pick = |receiver: usize, sender: usize| {
        if receiver == sender {
            Pick::Unexpected
        } else {
            Pick::Expected
        }
    };
    let mut totals = Totals::default();
    let mut latency = Histogram::new();
    let mut control = ControlCounts::default();
    let mut recv_cpu = 0.0;
    for r in &received {
        totals.add(&r.ledger.totals_where(&sent, |u, s| pick(r.offset + u, s)));
        latency.merge(&r.ledger.latency);
        control.add(&r.control);
        recv_cpu += r.cpu_s;
    }
    let target_process = match (pid, before, after) {
        (Some(pid), Some(a), Some(b)) => Some(GatewayProcess {
            pid,
            cpu_s: b.cpu_s - a.cpu_s,
            rss_kib: b.rss_kib,
            peak_rss_kib: b.peak_rss_kib,
        }),
        _ => None,
    };
    let run = Report::measured(Measured {
        via: "router".into(),
        receivers: n,
        senders: k,
        rate: cfg.rate,
        size: msg_size,
        sent: &sent,
        totals: &totals,
        latency: &latency,
        elapsed,
        in_window,
        cpu: Cpu {
            process_s,
            forwarder_s: None,
            senders_s: send_out.iter().map(|(c, _)| c).sum(),
            receivers_s: recv_cpu,
        },
    });
    Ok(RouterReport {
        scenario: "router",
        router_addr: cfg.router.to_string(),
        framing: cfg.framing.name(),
        users: n,
        run,
        unexpected: totals.unexpected,
        register: registered,
        control,
        sender_errors: send_out.into_iter().filter_map(|(_, e)| e).collect(),
        target_process,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> RouterConfig {
        RouterConfig {
            users: 3,
            senders: 1,
            rate: 100,
            size: 64,
            duration: Duration::from_secs(1),
            router: "127.0.0.1:55555".parse().unwrap(),
            framing: Framing::Len32,
            target_pid: None,
            find_target: false,
            register_timeout: Duration::from_secs(1),
            recv_threads: 1,
            progress: false,
        }
    }

    #[test]
    fn config_limits_are_enforced_with_clear_messages() {
        assert!(ok().validate().is_ok());
        let err = |c: RouterConfig| run(&c).unwrap_err().to_string();
        let remote = RouterConfig {
            router: "10.0.0.1:55555".parse().unwrap(),
            ..ok()
        };
        assert!(err(remote).contains("loopback"));
        let v6 = RouterConfig {
            router: "[::1]:55555".parse().unwrap(),
            ..ok()
        };
        assert!(err(v6).contains("loopback"));
        assert!(err(RouterConfig { users: 1, ..ok() }).contains("someone has to receive"));
        assert!(err(RouterConfig { senders: 4, ..ok() }).contains("--senders"));
        for bad in [
            RouterConfig {
                users: MAX_USERS + 1,
                ..ok()
            },
            RouterConfig { senders: 0, ..ok() },
            RouterConfig {
                size: MAX_SIZE + 1,
                ..ok()
            },
            RouterConfig {
                duration: Duration::ZERO,
                ..ok()
            },
            RouterConfig {
                recv_threads: 0,
                ..ok()
            },
            RouterConfig {
                recv_threads: MAX_RECV_THREADS + 1,
                ..ok()
            },
            RouterConfig {
                framing: Framing::Auto,
                ..ok()
            },
        ] {
            assert!(run(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn framing_flag_parses() {
        assert_eq!(parse_framing("len32").unwrap(), Framing::Len32);
        assert_eq!(parse_framing("slip").unwrap(), Framing::Slip);
        assert!(parse_framing("auto")
            .unwrap_err()
            .to_string()
            .contains("len32 or slip"));
    }
}
