//! `oscgate send URL ADDRESS [TYPES] [ARGS...]`

use std::io::Write;
use std::net::TcpStream;

use anyhow::{bail, Context, Result};
use clap::Args;

use oscgate::text::{parse_args, TextArg};
use oscgate::url::{OscUrl, Transport};
use oscgate::wire::framing::{self, Framing};
use oscgate::wire::{write_bundle, write_message, Arg, TimeTag};

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Where to send: osc.udp://HOST:PORT, osc.tcp://HOST:PORT (length prefix),
    /// osc.tcp+slip://HOST:PORT. A multicast HOST sends to the group.
    pub url: String,
    /// The OSC address, e.g. /cue/go.
    pub address: String,
    /// An optional type string starting with ',' (e.g. ,ifs), then the argument values
    /// (negative numbers are fine; put `--` before a value that starts with `-` otherwise).
    #[arg(allow_negative_numbers = true)]
    pub args: Vec<String>,
    /// Interface (address or name) to send multicast from, e.g. 127.0.0.1 or lo.
    #[arg(long)]
    pub interface: Option<String>,
    /// Multicast TTL.
    #[arg(long, default_value_t = 1)]
    pub ttl: u32,
    /// Wrap the message in a bundle with this time tag (`immediate`, SECONDS.FRACTION in hex,
    /// or a 64-bit integer).
    #[arg(long, value_name = "TIMETAG")]
    pub bundle: Option<String>,
    /// Send the message this many times.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
}

/// Encodes the message (or bundle) described on the command line.
pub fn encode(a: &SendArgs) -> Result<Vec<u8>> {
    let values = parse_args(&a.args)?;
    let args: Vec<Arg<'_>> = values.iter().map(TextArg::as_arg).collect();
    let mut out = Vec::with_capacity(256);
    match &a.bundle {
        None => write_message(&mut out, a.address.as_bytes(), &args)?,
        Some(tt) => {
            let tt = match parse_args(&[",t".into(), tt.clone()])?.first() {
                Some(TextArg::Scalar(Arg::Time(t))) => *t,
                _ => TimeTag::IMMEDIATE,
            };
            write_bundle(&mut out, tt, |b| b.message(a.address.as_bytes(), &args))?;
        }
    }
    Ok(out)
}

pub fn run(a: &SendArgs) -> Result<()> {
    let url = OscUrl::parse(&a.url)?;
    let packet = encode(a).with_context(|| format!("cannot encode {}", a.address))?;
    let dest = url.resolve()?;
    match url.transport {
        Transport::Udp => {
            let sock = super::sock::udp_sender(dest, a.interface.as_deref(), a.ttl)?;
            for _ in 0..a.repeat {
                let n = sock
                    .send_to(&packet, dest)
                    .with_context(|| format!("send to {dest}"))?;
                if n != packet.len() {
                    bail!("short send to {dest}: {n} of {} bytes", packet.len());
                }
            }
        }
        Transport::Tcp(f) => {
            let f = if f == Framing::Auto {
                Framing::Len32
            } else {
                f
            };
            let mut stream = TcpStream::connect(dest).with_context(|| format!("connect {dest}"))?;
            stream.set_nodelay(true)?;
            let mut framed = Vec::with_capacity(packet.len() + 8);
            for _ in 0..a.repeat {
                framing::encode(f, &packet, &mut framed)?;
            }
            stream
                .write_all(&framed)
                .with_context(|| format!("write to {dest}"))?;
            stream.flush()?;
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
    }
    Ok(())
}
