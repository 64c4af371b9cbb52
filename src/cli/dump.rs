//! `oscgate dump URL`: print every packet received, one line per message.
//!
//! UDP: one socket (joining a multicast group if the host is one). TCP: a listener with one
//! thread per connection (at most [`MAX_TCP_CLIENTS`]), each with its own framing decoder.
//! Output of one packet is written with the stdout lock held, so lines of concurrent TCP
//! clients never interleave inside a bundle. Malformed packets print one `error:` line on
//! stderr and dumping carries on.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use oscgate::text::write_packet;
use oscgate::url::{OscUrl, Transport};
use oscgate::wire::framing::{Decoder, Framing};
use oscgate::wire::Packet;

/// Concurrent TCP connections a dump serves; more are closed at once.
const MAX_TCP_CLIENTS: usize = 64;

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Where to listen: osc.udp://HOST:PORT (a multicast HOST joins the group),
    /// osc.tcp://HOST:PORT (framing auto-detected), osc.tcp+slip://, osc.tcp+len32://.
    pub url: String,
    /// Interface (address or name) to join a multicast group on, e.g. 127.0.0.1 or lo.
    #[arg(long)]
    pub interface: Option<String>,
    /// Exit after this many packets (valid or malformed).
    #[arg(long)]
    pub count: Option<usize>,
    /// Prefix each packet's first line with the sender's address.
    #[arg(long)]
    pub source: bool,
    /// Largest TCP frame accepted, in bytes.
    #[arg(long, default_value_t = oscgate::wire::framing::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,
}

/// Counts packets and ends the process after `--count` of them.
struct Counter {
    seen: AtomicUsize,
    limit: Option<usize>,
}

impl Counter {
    fn tick(&self) {
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if self.limit.is_some_and(|l| n >= l) {
            let _ = io::stdout().flush();
            std::process::exit(0);
        }
    }
}

pub fn run(a: &DumpArgs) -> Result<()> {
    let url = OscUrl::parse(&a.url)?;
    let addr = url.bind_addr()?;
    let counter = Arc::new(Counter {
        seen: AtomicUsize::new(0),
        limit: a.count,
    });
    if a.count == Some(0) {
        return Ok(());
    }
    match url.transport {
        Transport::Udp => dump_udp(a, addr, &counter),
        Transport::Tcp(framing) => dump_tcp(a, addr, framing, counter),
    }
}

fn dump_udp(a: &DumpArgs, addr: SocketAddr, counter: &Counter) -> Result<()> {
    let sock = super::sock::udp_receiver(addr, a.interface.as_deref())?;
    eprintln!(
        "oscgate dump: listening on osc.udp://{}",
        sock.local_addr()?
    );
    let mut buf = vec![0u8; 65536];
    let mut line = String::with_capacity(1024);
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("receive"),
        };
        show(&buf[..n], from, a.source, &mut line);
        counter.tick();
    }
}

fn dump_tcp(a: &DumpArgs, addr: SocketAddr, framing: Framing, counter: Arc<Counter>) -> Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    eprintln!(
        "oscgate dump: listening on osc.tcp://{} ({framing} framing)",
        listener.local_addr()?
    );
    let clients = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: accept: {e}");
                continue;
            }
        };
        if clients.fetch_add(1, Ordering::SeqCst) >= MAX_TCP_CLIENTS {
            clients.fetch_sub(1, Ordering::SeqCst);
            eprintln!("error: more than {MAX_TCP_CLIENTS} connections, closing the newest");
            continue;
        }
        let (clients, counter, source, max) =
            (clients.clone(), counter.clone(), a.source, a.max_frame);
        std::thread::spawn(move || {
            serve(stream, framing, max, source, &counter);
            clients.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

fn serve(
    mut stream: TcpStream,
    framing: Framing,
    max_frame: usize,
    source: bool,
    counter: &Counter,
) {
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut dec = Decoder::new(framing, max_frame);
    let mut buf = vec![0u8; 65536];
    let mut line = String::with_capacity(1024);
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("error: {peer}: {e}");
                break;
            }
        };
        let r = dec.decode(&mut buf[..n], |frame| {
            match frame {
                Ok(packet) => show(packet, peer, source, &mut line),
                Err(e) => eprintln!("error: {peer}: dropped a frame: {e}"),
            }
            counter.tick();
        });
        if let Err(e) = r {
            eprintln!("error: {peer}: closing the connection: {e}");
            break;
        }
    }
    if dec.buffered() > 0 {
        eprintln!(
            "error: {peer}: connection closed inside a frame ({} bytes dropped)",
            dec.buffered()
        );
    }
}

/// Prints one packet (or one error line for a malformed one).
fn show(bytes: &[u8], from: SocketAddr, source: bool, line: &mut String) {
    line.clear();
    match Packet::new_checked(bytes) {
        Ok(p) => {
            if source {
                line.push_str(&from.to_string());
                line.push(' ');
            }
            write_packet(line, &p);
            let mut out = io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
        Err(e) => eprintln!(
            "error: {from}: malformed packet ({} bytes): {e}",
            bytes.len()
        ),
    }
}
