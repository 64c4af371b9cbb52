//! The `oscgate-load` command line: parses the flags, runs the scenario, prints the table (or
//! JSON with `--json`). Exits 0 when the run completed, whatever was lost; non-zero only when
//! it could not be set up.

use std::net::{SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, Subcommand};
use oscgate_load::{
    compare, messenger, router, run, FanoutConfig, MessengerConfig, Mode, RouterConfig, Source,
    Transport, Via,
};

#[derive(Parser)]
#[command(
    name = "oscgate-load",
    version,
    about = "Load generator for oscgate (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// M senders -> one forwarder -> N receivers on 127.0.0.1, then a report.
    Fanout {
        /// Receiver sockets (1-4096).
        #[arg(long, default_value_t = 10)]
        receivers: usize,
        /// Sender threads (1-64).
        #[arg(long, default_value_t = 1)]
        senders: usize,
        /// Messages per second over all senders; 0 = as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Bytes per message (rounded up to a multiple of 4; at least 36).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Send phase in seconds (at most 300).
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// baseline | naive | udp://127.0.0.1:PORT
        #[arg(long, default_value = "baseline")]
        via: String,
        /// Receiver threads (1 or 2).
        #[arg(long, default_value_t = 1)]
        recv_threads: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// No progress line on stderr.
        #[arg(long)]
        quiet: bool,
        /// Pin the in-process forwarder to the last CPU and the load threads to the others.
        #[arg(long)]
        pin: bool,
    },
    /// N Messenger patrons on a running gateway (or the reference forwarders), then a report.
    Messenger {
        /// Patrons (1-4096).
        #[arg(long, default_value_t = 10)]
        patrons: usize,
        /// How patrons reach the gateway: udp | tcp (OSC 1.0 len32 framing).
        #[arg(long, default_value = "udp")]
        transport: String,
        /// Sender threads per source (1-64; with --from patrons at most --patrons).
        #[arg(long, default_value_t = 1)]
        senders: usize,
        /// Messages per second over all senders; 0 = as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Bytes per message (rounded up to a multiple of 4; at least 36).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Send phase in seconds (at most 300).
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// The gateway's patron port (127.0.0.0/8 only).
        #[arg(long, default_value = "127.0.0.1:9030")]
        gateway: SocketAddr,
        /// The Messenger multicast group (joined and sent to over 127.0.0.1).
        #[arg(long, default_value = "239.254.0.1:3090")]
        group: SocketAddrV4,
        /// Where the load comes from: group | patrons | both.
        #[arg(long, default_value = "group")]
        from: String,
        /// Replace the gateway by the in-process kernel baseline (UDP, --from group only).
        #[arg(long)]
        baseline: bool,
        /// Replace the gateway by the in-process naive std + rosc forwarder.
        #[arg(long)]
        naive: bool,
        /// Run gateway, baseline and naive one after the other and print one table.
        #[arg(long)]
        compare: bool,
        /// The gateway's pid, for its CPU and memory (default: the one process named oscgate).
        #[arg(long)]
        gateway_pid: Option<u32>,
        /// Seconds all patrons may take to be accepted.
        #[arg(long, default_value_t = 5.0)]
        join_timeout: f64,
        /// Multicast TTL of the group senders (0 or 1).
        #[arg(long, default_value_t = 0)]
        ttl: u32,
        /// Receiver threads for the patrons (1 or 2).
        #[arg(long, default_value_t = 1)]
        recv_threads: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// No progress line on stderr.
        #[arg(long)]
        quiet: bool,
    },
    /// N users on a tcposcrouter-compatible router, K of them sending to the group.
    Router {
        /// Users, one TCP connection each, all in one group (2-2048).
        #[arg(long, default_value_t = 10)]
        users: usize,
        /// Users that send (1-64, at most --users).
        #[arg(long, default_value_t = 1)]
        senders: usize,
        /// Messages per second over all senders; 0 = as fast as possible.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Bytes per message (rounded up to a multiple of 4; at least 36).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Send phase in seconds (at most 300).
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// The router's port (127.0.0.0/8 only).
        #[arg(long, default_value = "127.0.0.1:55555")]
        router: SocketAddr,
        /// Stream framing: len32 (OSC 1.0, port 55555) or slip (OSC 1.1, port 55556).
        #[arg(long, default_value = "len32")]
        framing: String,
        /// The router's pid, for its CPU and memory (default: the one process named oscgate).
        #[arg(long)]
        target_pid: Option<u32>,
        /// Seconds all users may take to be registered.
        #[arg(long, default_value_t = 10.0)]
        register_timeout: f64,
        /// Receiver threads sharing the users' connections (1-8).
        #[arg(long, default_value_t = 1)]
        recv_threads: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// No progress line on stderr.
        #[arg(long)]
        quiet: bool,
    },
}

fn seconds(flag: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v > 0.0 && v <= 300.0) {
        bail!("--{flag} must be more than 0 and at most 300 s, not {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

/// Runs the command; the output to print on success.
fn execute(cmd: Cmd) -> anyhow::Result<String> {
    match cmd {
        Cmd::Fanout {
            receivers,
            senders,
            rate,
            size,
            duration,
            via,
            recv_threads,
            json,
            quiet,
            pin,
        } => {
            let cfg = FanoutConfig {
                receivers,
                senders,
                rate,
                size,
                duration: seconds("duration", duration)?,
                via: Via::parse(&via)?,
                recv_threads,
                progress: !quiet,
                pin,
            };
            let report = run(&cfg)?;
            Ok(if json {
                report.to_json() + "\n"
            } else {
                report.to_table()
            })
        }
        Cmd::Messenger {
            patrons,
            transport,
            senders,
            rate,
            size,
            duration,
            gateway,
            group,
            from,
            baseline,
            naive,
            compare: all,
            gateway_pid,
            join_timeout,
            ttl,
            recv_threads,
            json,
            quiet,
        } => {
            let transport = match transport.as_str() {
                "udp" => Transport::Udp,
                "tcp" => Transport::Tcp,
                other => bail!("--transport must be udp or tcp, not `{other}`"),
            };
            let mut modes = Vec::new();
            if all || !(baseline || naive) {
                modes.push(Mode::Gateway);
            }
            if all || baseline {
                modes.push(Mode::Baseline);
            }
            if all || naive {
                modes.push(Mode::Naive);
            }
            let cfg = MessengerConfig {
                patrons,
                transport,
                senders,
                rate,
                size,
                duration: seconds("duration", duration)?,
                gateway,
                group,
                from: Source::parse(&from)?,
                mode: modes[0],
                gateway_pid,
                find_gateway: true,
                join_timeout: seconds("join-timeout", join_timeout)?,
                ttl,
                recv_threads,
                progress: !quiet,
            };
            if modes.len() == 1 {
                let report = messenger::run(&cfg)?;
                return Ok(if json {
                    report.to_json() + "\n"
                } else {
                    report.to_table()
                });
            }
            // Check every mode's flags before the first run starts.
            for &mode in &modes {
                MessengerConfig {
                    mode,
                    ..cfg.clone()
                }
                .validate()?;
            }
            let c = compare(&cfg, &modes)?;
            Ok(if json {
                c.to_json() + "\n"
            } else {
                c.to_table()
            })
        }
        Cmd::Router {
            users,
            senders,
            rate,
            size,
            duration,
            router: addr,
            framing,
            target_pid,
            register_timeout,
            recv_threads,
            json,
            quiet,
        } => {
            let cfg = RouterConfig {
                users,
                senders,
                rate,
                size,
                duration: seconds("duration", duration)?,
                router: addr,
                framing: router::parse_framing(&framing)?,
                target_pid,
                find_target: true,
                register_timeout: seconds("register-timeout", register_timeout)?,
                recv_threads,
                progress: !quiet,
            };
            let report = router::run(&cfg)?;
            Ok(if json {
                report.to_json() + "\n"
            } else {
                report.to_table()
            })
        }
    }
}

fn main() -> ExitCode {
    match execute(Cli::parse().cmd) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oscgate-load: {e:#}");
            ExitCode::from(2)
        }
    }
}
