//! UDP GSO (`UDP_SEGMENT`) availability: a runtime probe and a one-way "off for good" switch.
//!
//! GSO lets one `sendmsg` carry up to 64 equal-size datagrams to one destination; the kernel (or
//! the NIC) cuts them apart. Support depends on the kernel (>= 4.18) and on the egress device's
//! checksum offload, which a probe cannot see, so the probe only says "the kernel knows the
//! option" and the first GSO send that fails with `EIO` or `EINVAL` turns GSO off for every
//! batch sharing this [`Gso`], for good, with one warning in the log (never one per packet).
//!
//! This module does not send anything; [`super::SendBatch`] consults it and reports failures.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

use super::sys;

/// Whether GSO may be used on a socket (or a group of sockets with the same egress path).
/// Shared between batches with an `Arc`; every operation is one relaxed atomic access.
#[derive(Debug)]
pub struct Gso {
    enabled: AtomicBool,
    warned: AtomicBool,
}

impl Gso {
    /// Probes `sock`: enabled if the kernel accepts `getsockopt(SOL_UDP, UDP_SEGMENT)`.
    /// A failed probe is logged once, at debug level, and yields a disabled state.
    pub fn probe(sock: &impl AsFd) -> Gso {
        match sys::udp_segment_supported(sock.as_fd()) {
            Ok(()) => Gso::new(true),
            Err(errno) => {
                tracing::debug!(
                    error = %std::io::Error::from_raw_os_error(errno),
                    "UDP GSO unavailable (UDP_SEGMENT getsockopt failed); sending one datagram per message"
                );
                Gso::new(false)
            }
        }
    }

    /// A state with a known answer (configuration forcing GSO off, or tests).
    pub const fn new(enabled: bool) -> Gso {
        Gso {
            enabled: AtomicBool::new(enabled),
            warned: AtomicBool::new(false),
        }
    }

    /// Whether GSO sends may be attempted.
    pub fn is_enabled(&self) -> bool {
        // Relaxed: a stale `true` only costs one more failed GSO send, which is then resent
        // datagram by datagram.
        self.enabled.load(Ordering::Relaxed)
    }

    /// Turns GSO off for good after a GSO send failed with `errno`. Logs a warning the first
    /// time only. There is no way back on.
    pub fn disable(&self, errno: i32) {
        self.enabled.store(false, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %std::io::Error::from_raw_os_error(errno),
                "UDP GSO send failed; GSO is now off for this socket, sending one datagram per message"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disable_is_one_way() {
        let g = Gso::new(true);
        assert!(g.is_enabled());
        g.disable(libc::EIO);
        assert!(!g.is_enabled());
        g.disable(libc::EINVAL);
        assert!(!g.is_enabled());
        assert!(g.warned.load(Ordering::Relaxed));
    }

    #[test]
    fn probe_on_a_udp_socket_of_this_kernel_says_enabled() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(Gso::probe(&s).is_enabled());
    }

    #[test]
    fn probe_on_a_non_udp_fd_says_disabled() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!Gso::probe(&l).is_enabled());
    }
}
