//! `oscgate run`: the daemon. Loads the configuration (or the embedded defaults), starts the
//! engine, logs what runs, and on SIGINT / SIGTERM sends every patron its shutdown message and
//! exits 0.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use oscgate::config::{Config, Driver};
use oscgate::engine::Engine;

/// Arguments of `oscgate run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// TOML configuration (every key optional; see `oscgate defaults`). Without it the
    /// embedded defaults run.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Force a driver: auto (io_uring if the kernel supports it, else mio), uring or mio.
    #[arg(long)]
    driver: Option<Driver>,
}

/// Loads `file`, with errors as `FILE:LINE:COL: key `k`: message`.
fn load(file: &PathBuf) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("{}: cannot read", file.display()))?;
    Config::from_toml(&text).map_err(|e| {
        let at = match (e.line, e.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", file.display()),
            _ => file.display().to_string(),
        };
        match &e.key {
            Some(k) => anyhow::anyhow!("{at}: key `{k}`: {}", e.message),
            None => anyhow::anyhow!("{at}: {}", e.message),
        }
    })
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = match &args.config {
        Some(f) => load(f)?,
        None => Config::default(),
    };
    super::init_tracing(&cfg.log.level);
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&term))
            .context("installing signal handlers")?;
    }
    let engine = Engine::start(&cfg, args.driver)?;
    let choice = engine.driver();
    tracing::info!(driver = %choice.kind, why = %choice.why, "driver");
    let b = engine.bound();
    if let (Some(listen), Some(group)) = (b.messenger, b.group) {
        tracing::info!(
            patrons = %listen,
            %group,
            interface = %b.interface.map(|i| i.to_string()).unwrap_or_default(),
            "messenger gateway running"
        );
        // One line on stdout that scripts and tests can wait for.
        println!(
            "oscgate: messenger on {listen} (udp+tcp), group {group}, driver {}",
            choice.kind
        );
    }
    if let Some((len32, slip)) = b.router {
        tracing::info!(%len32, %slip, "tcposcrouter router running");
        println!(
            "oscgate: router on {len32} (len32) and {slip} (slip), driver {}",
            choice.kind
        );
    }
    if let Some(c) = &b.oschat {
        let ifaces: Vec<String> = c
            .ifaces
            .iter()
            .map(|f| format!("{} {}", f.name, f.network()))
            .collect();
        tracing::info!(node = %c.node, port = c.port, interfaces = ?ifaces, "oschat node running");
        println!(
            "oscgate: oschat node {} on port {} ({}), driver {}",
            c.node,
            c.port,
            ifaces.join(", "),
            choice.kind
        );
    }
    if let Some(http) = b.http {
        tracing::info!(%http, "status page, metrics and websocket gateway running");
        println!(
            "oscgate: http on {http} (status /, /api/status, /metrics, websocket /gateway), \
             driver {}",
            choice.kind
        );
    }
    println!("oscgate: running");
    while !term.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if engine.is_degraded() {
            let r = engine.stop();
            bail!("a worker or the control thread stopped unexpectedly: {r:?}");
        }
    }
    tracing::info!("signal received: telling patrons, then stopping");
    engine.stop()?;
    tracing::info!("stopped");
    Ok(())
}
