//! The Linux batched-UDP syscall layer of the mio driver: [`RecvBatch`] (`recvmmsg`),
//! [`SendBatch`] (`sendmmsg` with zero-copy fan-out and UDP GSO), [`Gso`] (probe and one-way
//! downgrade) and the socket set-up helpers in [`sock`].
//!
//! Everything here is non-blocking and allocation-free per call; buffers and header arrays are
//! allocated when a batch is built. The io_uring driver does not use this module for I/O.
//! It does not own sockets, decide routes or keep counters: the worker loop does.
//!
//! All unsafe code lives in the private `sys` module, the module's one opt-out from the
//! engine's `deny(unsafe_code)`.

mod gso;
mod recv;
mod send;
pub mod sock;
#[allow(unsafe_code)]
mod sys;

pub use gso::Gso;
pub use recv::{RecvBatch, MAX_SLOTS, MAX_SLOT_SIZE};
pub use send::{
    Errno, FlushResult, Full, SendBatch, MAX_CAPACITY, MAX_GSO_BYTES, MAX_GSO_SEGMENTS,
    MAX_GSO_SEGMENT_V4, MAX_GSO_SEGMENT_V6,
};
pub use sock::{
    bind_udp, join_multicast_v4, leave_multicast_v4, set_broadcast, set_multicast_if_v4,
    set_multicast_loop_v4, set_multicast_ttl_v4,
};
/// The C socket address the io_uring layer's send slots hold too (one conversion for both).
pub(in crate::engine) use sys::RawAddr;
