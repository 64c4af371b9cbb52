//! oscgate-load: drives UDP fan-out load through a forwarder on loopback and measures what
//! arrives (delivered, lost, duplicated, reordered, latency percentiles, CPU).
//!
//! Today it has one scenario, [`fanout::run`]: M senders -> one forwarder -> N receivers, where
//! the forwarder is the in-process kernel baseline, the in-process naive std + rosc forwarder,
//! or an external one on 127.0.0.1. It never sends off the local machine. Protocol scenarios
//! (Messenger patrons joining a running oscgate) are not here yet.
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

pub mod account;
pub mod fanout;
pub mod hist;
pub mod report;
#[allow(unsafe_code)]
pub mod sys;
pub mod via;

pub use fanout::{run, FanoutConfig};
pub use report::Report;
pub use via::Via;
