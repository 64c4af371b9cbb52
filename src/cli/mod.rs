//! Subcommands of the `oscgate` binary that are not the daemon itself.

use std::path::Path;
use std::process::ExitCode;

use oscgate::config::Config;

pub mod dump;
pub mod patron;
pub mod run;
pub mod send;
mod sock;

/// `oscgate check-config FILE`: exit 0 if valid, 2 with a located error if not.
/// Logs to stderr with `RUST_LOG` if set, else `level`.
pub fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn check_config(file: &Path, print: bool) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match Config::from_toml(&text) {
        Ok(cfg) => {
            if print {
                print!("{}", cfg.to_toml());
            } else {
                println!("{}: ok", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            match (e.line, e.column) {
                (Some(l), Some(c)) => eprint!("{}:{l}:{c}: ", file.display()),
                _ => eprint!("{}: ", file.display()),
            }
            match &e.key {
                Some(k) => eprintln!("key `{k}`: {}", e.message),
                None => eprintln!("{}", e.message),
            }
            ExitCode::from(2)
        }
    }
}
