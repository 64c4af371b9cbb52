//! oscgate: a high-throughput OSC gateway.
//!
//! The library holds the pure layers (no I/O, no clock): [`wire`] (OSC packet views, address
//! patterns, writer, stream framing), [`route`] (the precompiled route table) and [`dedupe`]
//! (the lock-free LRU), plus the [`config`] model and the small socket helpers the CLI uses
//! ([`url`]). The engine, the protocol state machines and the edge thread build on these.
// Unsafe code is denied crate-wide; the opt-outs are `engine::udp::sys` (batched-UDP
// syscalls) and `engine::uring::ring` (io_uring), where each block carries a `// SAFETY:` comment.
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

pub mod config;
pub mod control;
pub mod dedupe;
pub mod edge;
pub mod engine;
pub mod proto;
pub mod route;
pub mod status;
pub(crate) mod sync;
pub mod text;
pub mod url;
pub mod wire;
