//! The forwarding engine: the part of oscgate that owns sockets and moves packets.
//!
//! The engine is being built. Today it holds [`udp`], the Linux batched-UDP syscall layer
//! (`recvmmsg` / `sendmmsg` / UDP GSO and the socket set-up helpers) that the mio driver uses.
//! Workers, the drivers themselves (io_uring and mio behind one interface) and the buffer pool
//! come next. Nothing here parses OSC or decides routes: that is `wire` and `route`.
//!
//! Unsafe code is denied for the whole engine; the one opt-out is the private syscall module
//! `udp::sys`, where every block carries a `// SAFETY:` comment.
#![deny(unsafe_code)]

pub mod udp;
