//! [`probe`]: decide at start-up whether the io_uring driver can run here, and if not, say
//! exactly what is missing so the engine can log "io_uring unavailable: ...; using mio".
//!
//! It checks the opcodes through `io_uring::Probe`, then proves the features that a probe
//! cannot show by using them once on loopback: a registered provided-buffer ring (5.19),
//! multishot `recvmsg` (6.0, same opcode number as plain `recvmsg`) and a `sendmsg`
//! completion. It takes a few milliseconds and binds two ephemeral 127.0.0.1 sockets.
//! This module does not choose the driver or log; the caller does.

use std::fmt;
use std::io;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::{opcode, IoUring, Probe};

use super::{Errno, UringConfig, UringUdp};

/// What the probe found usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringSupport {
    /// The kernel accepted `SINGLE_ISSUER | DEFER_TASKRUN` (6.1); without them rings still work.
    pub single_issuer: bool,
    /// Registering the socket as a fixed file worked.
    pub fixed_files: bool,
}

/// Why io_uring cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeError {
    /// `io_uring_setup` failed: `ENOSYS` (no io_uring), `EPERM` (disabled by
    /// `kernel.io_uring_disabled` or a seccomp policy), `ENOMEM` (memlock limit)...
    Setup(Errno),
    /// `IORING_REGISTER_PROBE` failed (kernel older than 5.6).
    ProbeOp(Errno),
    /// An opcode the driver uses is not supported.
    MissingOpcode(&'static str),
    /// A loopback socket for the live check could not be set up.
    Socket(Errno),
    /// Building the ring with a registered provided-buffer ring failed (needs Linux 5.19).
    BufRing(Errno),
    /// The multishot `recvmsg` was refused (needs Linux 6.0; `EINVAL` before).
    MultishotRecv(Errno),
    /// Nothing came back from the live receive / send check within the time allowed.
    NoCompletion(&'static str),
    /// The live `sendmsg` completed with an error.
    SendMsg(Errno),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Setup(e) => write!(f, "io_uring_setup failed: {e}"),
            ProbeError::ProbeOp(e) => write!(f, "opcode probe failed (kernel < 5.6?): {e}"),
            ProbeError::MissingOpcode(op) => write!(f, "opcode {op} not supported"),
            ProbeError::Socket(e) => write!(f, "loopback test socket: {e}"),
            ProbeError::BufRing(e) => {
                write!(
                    f,
                    "provided-buffer ring registration failed (needs 5.19): {e}"
                )
            }
            ProbeError::MultishotRecv(e) => {
                write!(f, "multishot recvmsg refused (needs 6.0): {e}")
            }
            ProbeError::NoCompletion(what) => write!(f, "no completion for the {what} check"),
            ProbeError::SendMsg(e) => write!(f, "sendmsg check failed: {e}"),
        }
    }
}

impl std::error::Error for ProbeError {}

fn errno(e: &io::Error) -> Errno {
    Errno(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Checks that io_uring and everything [`UringUdp`] uses work on this kernel.
///
/// The check runs on a short-lived thread of its own: tearing down a ring can leave kernel
/// task work queued on the thread that used it, which makes that thread's next blocking
/// system call return `EINTR`; the caller's thread must not inherit that.
pub fn probe() -> Result<UringSupport, ProbeError> {
    std::thread::scope(|s| {
        s.spawn(probe_here)
            .join()
            .unwrap_or(Err(ProbeError::Setup(Errno(libc::EIO))))
    })
}

fn probe_here() -> Result<UringSupport, ProbeError> {
    let ring: IoUring = IoUring::new(8).map_err(|e| ProbeError::Setup(errno(&e)))?;
    let mut p = Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(|e| ProbeError::ProbeOp(errno(&e)))?;
    let needed = [
        (opcode::Nop::CODE, "NOP"),
        (opcode::RecvMsg::CODE, "RECVMSG"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ];
    for (code, name) in needed {
        if !p.is_supported(code) {
            return Err(ProbeError::MissingOpcode(name));
        }
    }
    drop(ring);
    live_check()
}

/// Receives one datagram with the multishot receive and sends one back with `sendmsg`.
fn live_check() -> Result<UringSupport, ProbeError> {
    let sock_err = |e: io::Error| ProbeError::Socket(errno(&e));
    let rx = UdpSocket::bind("127.0.0.1:0").map_err(sock_err)?;
    let peer = UdpSocket::bind("127.0.0.1:0").map_err(sock_err)?;
    let rx_addr = rx.local_addr().map_err(sock_err)?;
    let peer_addr = peer.local_addr().map_err(sock_err)?;
    let cfg = UringConfig {
        recv_buffers: 4,
        max_payload: 64,
        send_slots: 4,
        sq_entries: 8,
    };
    let mut u = UringUdp::new(rx, &cfg).map_err(|e| ProbeError::BufRing(errno(&e)))?;
    u.submit()
        .map_err(|e| ProbeError::MultishotRecv(errno(&e)))?;
    peer.send_to(b"probe", rx_addr).map_err(sock_err)?;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1);
    while got.is_empty() && Instant::now() < deadline {
        u.wait(1, Duration::from_millis(50))
            .map_err(|e| ProbeError::MultishotRecv(errno(&e)))?;
        u.reap(&mut got);
        if let Some(e) = u.stats().last_recv_error {
            return Err(ProbeError::MultishotRecv(e));
        }
    }
    let ok = got.iter().any(|d| u.payload(d) == b"probe");
    for d in got {
        u.release(d);
    }
    if !ok {
        return Err(ProbeError::NoCompletion("multishot recvmsg"));
    }
    u.send(Bytes::from_static(b"probe"), peer_addr)
        .map_err(|_| ProbeError::NoCompletion("sendmsg"))?;
    let mut scratch = Vec::new();
    while u.sends_in_flight() > 0 && Instant::now() < deadline {
        u.wait(1, Duration::from_millis(50))
            .map_err(|e| ProbeError::SendMsg(errno(&e)))?;
        u.reap(&mut scratch);
    }
    for d in scratch {
        u.release(d);
    }
    let s = u.stats();
    if let Some(e) = s.first_send_error {
        return Err(ProbeError::SendMsg(e));
    }
    if s.sent == 0 {
        return Err(ProbeError::NoCompletion("sendmsg"));
    }
    Ok(UringSupport {
        single_issuer: u.single_issuer(),
        fixed_files: u.fixed_file(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_errors_say_what_is_missing() {
        let e = ProbeError::MultishotRecv(Errno(libc::EINVAL));
        assert!(e.to_string().contains("multishot recvmsg"));
        assert!(e.to_string().contains("6.0"));
        let e = ProbeError::MissingOpcode("SENDMSG");
        assert_eq!(e.to_string(), "opcode SENDMSG not supported");
        assert!(ProbeError::Setup(Errno(libc::ENOSYS))
            .to_string()
            .starts_with("io_uring_setup failed"));
    }

    #[test]
    fn a_probe_that_passes_means_rings_can_be_built() {
        match probe() {
            Ok(_) => {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                assert!(UringUdp::new(sock, &UringConfig::default()).is_ok());
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}
