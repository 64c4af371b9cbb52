//! What the load goes through: the in-process reference forwarders (`baseline`: the kernel's
//! limit, `recvmmsg -> sendmmsg` of one buffer to all receivers, no parsing; `naive`: std
//! `recv_from` -> rosc decode/encode -> `send_to` per receiver) or an external forwarder on
//! loopback (`udp://127.0.0.1:PORT`).
//!
//! The forwarders run until their stop flag is set and report what they did and the CPU time
//! of their own thread. This module does not generate or account load.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use oscgate::engine::udp::{bind_udp, RecvBatch, SendBatch};
use serde::Serialize;

use crate::sys::{cpu_seconds, PollSet, Who};

/// How long a forwarder waits before looking at its stop flag again.
const TICK: Duration = Duration::from_millis(20);
/// Input datagrams taken per `recvmmsg`.
const RECV_SLOTS: usize = 64;
/// Datagrams per `sendmmsg` batch (the kernel caps one call at 1024 messages).
const SEND_CAPACITY: usize = 1024;
/// Socket buffer sizes asked for (the kernel caps them at `rmem_max` / `wmem_max`).
pub const SOCK_BUF: usize = 4 << 20;

/// The forwarder under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Baseline,
    Naive,
    /// An external forwarder listening on this loopback address.
    Udp(SocketAddr),
}

impl Via {
    /// Parses `baseline`, `naive` or `udp://HOST:PORT` where HOST is an IPv4 loopback address
    /// or `localhost`; any other host is refused (this tool only loads the local machine).
    pub fn parse(s: &str) -> anyhow::Result<Via> {
        match s {
            "baseline" => return Ok(Via::Baseline),
            "naive" => return Ok(Via::Naive),
            _ => {}
        }
        let Some(rest) = s.strip_prefix("udp://") else {
            bail!("--via must be `baseline`, `naive` or `udp://127.0.0.1:PORT`, not `{s}`");
        };
        let (host, port) = rest
            .rsplit_once(':')
            .with_context(|| format!("--via `{s}`: missing `:PORT`"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .with_context(|| format!("--via `{s}`: `{port}` is not a port (1-65535)"))?;
        let ip = if host == "localhost" {
            Ipv4Addr::LOCALHOST
        } else {
            match host.parse::<IpAddr>() {
                Ok(IpAddr::V4(ip)) if ip.is_loopback() => ip,
                Ok(_) => bail!(
                    "--via `{s}`: host {host} is not an IPv4 loopback address; \
                     this tool only sends to 127.0.0.0/8"
                ),
                Err(_) => bail!("--via `{s}`: host `{host}` must be 127.0.0.1 or localhost"),
            }
        };
        Ok(Via::Udp(SocketAddr::new(IpAddr::V4(ip), port)))
    }

    /// The name used in reports.
    pub fn name(&self) -> String {
        match self {
            Via::Baseline => "baseline".into(),
            Via::Naive => "naive".into(),
            Via::Udp(a) => format!("udp://{a}"),
        }
    }
}

/// What an in-process forwarder did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ForwarderStats {
    /// Datagrams received on the input socket.
    pub received: u64,
    /// Datagrams handed to the kernel for the receivers.
    pub sent: u64,
    /// Datagrams dropped: send refused, or the output socket stayed full.
    pub dropped: u64,
    /// Inputs the naive forwarder could not decode.
    pub decode_errors: u64,
    /// CPU seconds of the forwarder thread.
    pub cpu_s: f64,
}

/// Binds the input socket of an in-process forwarder on 127.0.0.1. Its receive buffer is
/// left at the kernel default (`rmem_default`) so that at saturation the backlog, and with it
/// the queueing latency and the drain, stays small.
pub fn bind_input() -> anyhow::Result<UdpSocket> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    bind_udp(any, false, None, Some(SOCK_BUF)).context("binding the forwarder input")
}

/// The kernel-limit replicator: each received datagram goes, unparsed, to every destination
/// through batched `sendmmsg` with GSO off. Runs until `stop`.
pub fn run_baseline(input: &UdpSocket, dests: &[SocketAddr], stop: &AtomicBool) -> ForwarderStats {
    let mut st = ForwarderStats::default();
    let mut rb = RecvBatch::new(RECV_SLOTS, 2048);
    let mut readable = PollSet::new(&[input], false);
    let mut writable = PollSet::new(&[input], true);
    while !stop.load(Ordering::Relaxed) {
        let n = match rb.recv(input) {
            Ok(0) => {
                let _ = readable.wait(TICK);
                continue;
            }
            Ok(n) => n,
            Err(_) => {
                std::thread::sleep(TICK);
                continue;
            }
        };
        st.received += n as u64;
        // The batch borrows this round's receive buffers; it is rebuilt each round (one
        // allocation per up to 64 inputs, next to 64 * N send syscalls' worth of work).
        let mut sb = SendBatch::new(SEND_CAPACITY);
        for (payload, _, truncated) in rb.iter() {
            if truncated {
                st.dropped += dests.len() as u64;
                continue;
            }
            for &to in dests {
                if sb.push(payload, to).is_err() {
                    flush_all(&mut sb, input, &mut writable, &mut st);
                    if sb.push(payload, to).is_err() {
                        st.dropped += 1;
                    }
                }
            }
        }
        flush_all(&mut sb, input, &mut writable, &mut st);
    }
    st.cpu_s = cpu_seconds(Who::Thread);
    st
}

/// Flushes until the batch is empty; waits (bounded) for writability when the socket is full,
/// then drops what is left.
fn flush_all(
    sb: &mut SendBatch<'_>,
    sock: &UdpSocket,
    writable: &mut PollSet,
    st: &mut ForwarderStats,
) {
    for _ in 0..50 {
        let r = sb.flush(sock);
        st.sent += r.sent as u64;
        st.dropped += r.failed as u64;
        if sb.is_empty() {
            return;
        }
        if r.blocked {
            let _ = writable.wait(Duration::from_millis(2));
        } else if r.sent == 0 && r.failed == 0 {
            break;
        }
    }
    st.dropped += sb.len() as u64;
    sb.clear();
}

/// The naive forwarder: blocking `recv_from`, rosc decode and re-encode, one `send_to` per
/// destination. Runs until `stop`.
pub fn run_naive(input: &UdpSocket, dests: &[SocketAddr], stop: &AtomicBool) -> ForwarderStats {
    let mut st = ForwarderStats::default();
    let sock = match input.try_clone() {
        Ok(s) => s,
        Err(_) => return st,
    };
    // A blocking socket with a timeout, as a plain std program would have.
    if sock.set_nonblocking(false).is_err() || sock.set_read_timeout(Some(TICK)).is_err() {
        return st;
    }
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let n = match sock.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(_) => continue,
        };
        st.received += 1;
        let packet = match rosc::decoder::decode_udp(&buf[..n]) {
            Ok((_, p)) => p,
            Err(_) => {
                st.decode_errors += 1;
                continue;
            }
        };
        let out = match rosc::encoder::encode(&packet) {
            Ok(o) => o,
            Err(_) => {
                st.decode_errors += 1;
                continue;
            }
        };
        for to in dests {
            match sock.send_to(&out, to) {
                Ok(_) => st.sent += 1,
                Err(_) => st.dropped += 1,
            }
        }
    }
    st.cpu_s = cpu_seconds(Who::Thread);
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes_and_refuses_remote_hosts() {
        assert_eq!(Via::parse("baseline").unwrap(), Via::Baseline);
        assert_eq!(Via::parse("naive").unwrap(), Via::Naive);
        assert_eq!(
            Via::parse("udp://127.0.0.1:9000").unwrap(),
            Via::Udp("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(
            Via::parse("udp://localhost:9").unwrap(),
            Via::Udp("127.0.0.1:9".parse().unwrap())
        );
        for bad in [
            "udp://10.0.0.1:9000",
            "udp://8.8.8.8:53",
            "udp://[::1]:9000",
            "udp://example.com:9000",
            "udp://127.0.0.1",
            "udp://127.0.0.1:0",
            "udp://127.0.0.1:99999",
            "tcp://127.0.0.1:9000",
            "",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad} accepted");
        }
        let e = Via::parse("udp://10.0.0.1:9000").unwrap_err().to_string();
        assert!(e.contains("not an IPv4 loopback"), "{e}");
    }
}
