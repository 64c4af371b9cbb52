//! The `oscgate` command line: `run` (the daemon), `patron`, `send`, `dump`, `check-config`
//! and `defaults`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// oscgate: a high-throughput OSC gateway and toolkit.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (every enabled front door) until SIGINT or SIGTERM.
    Run(cli::run::RunArgs),
    /// Join a remote Messenger gateway as a patron and relay between it and local apps.
    ///
    /// Sends the request, answers keepalives, re-requests with backoff when the gateway goes
    /// away, and relays every packet between the gateway and the unicast apps on `--local`
    /// (apps send to `--listen`, default 127.0.0.1:9031). With `--tcp` one TCP connection
    /// carries everything, so two venues can be linked through it. SIGINT or SIGTERM leaves
    /// the gateway and exits 0.
    Patron(cli::patron::PatronArgs),
    /// Send one OSC message, e.g. `send osc.udp://127.0.0.1:9000 /cue/go ,ifs 1 2.5 hi`.
    ///
    /// Arguments are typed by a type string starting with `,` (i f s b h t d S c r m T F N I [ ]);
    /// without one each argument's type is inferred (integer -> i, number -> f,
    /// true/false/nil/inf -> T/F/N/I, anything else -> s).
    Send(cli::send::SendArgs),
    /// Print every OSC packet received on a URL, one line per message, as oscdump does.
    ///
    /// UDP URLs with a multicast host join the group. TCP URLs listen for connections and
    /// auto-detect the framing (osc.tcp://) or force it (osc.tcp+slip://, osc.tcp+len32://).
    /// Malformed packets print one `error:` line on stderr and dumping carries on.
    Dump(cli::dump::DumpArgs),
    /// Check a configuration file and report errors with line, column and key.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
        /// Print the effective configuration (file over defaults) when it is valid.
        #[arg(long)]
        print: bool,
    },
    /// Print the embedded default configuration as TOML.
    Defaults,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        cli::init_tracing("info");
    }
    let result = match cli.command {
        Command::Run(args) => cli::run::run(&args),
        Command::Patron(args) => cli::patron::run(&args),
        Command::Send(args) => cli::send::run(&args),
        Command::Dump(args) => cli::dump::run(&args),
        Command::CheckConfig { file, print } => return cli::check_config(&file, print),
        Command::Defaults => {
            print!("{}", oscgate::config::Config::default().to_toml());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
