//! The OSC wire layer: zero-copy packet views, address patterns, a writer and stream framing.
//!
//! Nothing here does I/O or reads a clock. Views are checked once on construction
//! ([`Packet::new_checked`]); after that no accessor can panic.

pub mod address;
pub mod framing;
#[doc(hidden)]
pub mod invariants;
mod packet;
pub mod pattern;
mod writer;

pub use packet::*;
pub use writer::*;
