//! The forwarding engine: the part of oscgate that owns sockets and moves packets.
//!
//! The engine is being built. Today it holds [`udp`], the Linux batched-UDP syscall layer
//! (`recvmmsg` / `sendmmsg` / UDP GSO and the socket set-up helpers) that the mio driver uses,
//! and [`uring`], the io_uring UDP layer (opcode probe, multishot recvmsg over a provided-buffer
//! ring, zero-copy SENDMSG fan-out) that the io_uring driver uses. Workers, the drivers
//! themselves (behind one interface, chosen in one place) and the control thread come next.
//! Nothing here parses OSC or decides routes: that is `wire` and `route`.
//!
//! Unsafe code is denied for the whole engine; the opt-outs are the private modules `udp::sys`
//! (batched syscalls) and `uring::ring` (the ring and the memory the kernel reads and writes),
//! where every block carries a `// SAFETY:` comment.
#![deny(unsafe_code)]

pub mod bus;
pub mod chat;
pub mod counters;
pub mod driver;
mod start;
pub mod tcp;
mod tcp_side;
pub mod udp;
pub mod uring;
pub mod worker;

pub use start::{Bound, BoundChat, Engine};

/// The largest datagram the engine receives whole (a longer one is counted as truncated and
/// dropped): 16 KiB, far above any OSC message a venue sends and a fixed cost per receive
/// buffer.
pub const MAX_DATAGRAM: usize = 16 * 1024;
