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

pub mod udp;
pub mod uring;
