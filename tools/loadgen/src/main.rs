//! The `oscgate-load` command line: parses the flags, runs the scenario, prints the table (or
//! JSON with `--json`). Exits 0 when the run completed, whatever was lost; non-zero only when
//! it could not be set up.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use oscgate_load::{run, FanoutConfig, Via};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Cmd::Fanout {
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
    } = cli.cmd;
    let result = (|| {
        if !(duration > 0.0 && duration <= 300.0) {
            anyhow::bail!("--duration must be more than 0 and at most 300 s, not {duration}");
        }
        let cfg = FanoutConfig {
            receivers,
            senders,
            rate,
            size,
            duration: Duration::from_secs_f64(duration),
            via: Via::parse(&via)?,
            recv_threads,
            progress: !quiet,
            pin,
        };
        run(&cfg)
    })();
    match result {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oscgate-load: {e:#}");
            ExitCode::from(2)
        }
    }
}
