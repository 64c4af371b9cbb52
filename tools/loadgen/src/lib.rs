//! oscgate-load: drives OSC load through a forwarder on loopback and measures what arrives
//! (delivered, lost, duplicated, reordered, latency percentiles, CPU).
//!
//! Three scenarios: [`fanout::run`], M senders -> one forwarder -> N receivers, where the
//! forwarder is the in-process kernel baseline, the in-process naive std + rosc forwarder, or
//! an external one on 127.0.0.1; and [`messenger::run`], N Messenger patrons joined to a
//! running gateway through the protocol (or the same load through the reference forwarders),
//! with [`compare::compare`] running the modes one after the other; and [`router::run`], N
//! users of a tcposcrouter-compatible router, K of them sending to the group. It never sends
//! off the local machine.
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

pub mod account;
pub mod client;
pub mod compare;
pub mod fanout;
pub mod hist;
pub mod messenger;
pub mod patrons;
pub mod report;
pub mod router;
pub mod router_io;
#[allow(unsafe_code)]
pub mod sys;
pub mod via;

pub use compare::{compare, Comparison};
pub use fanout::{run, FanoutConfig};
pub use messenger::{MessengerConfig, MessengerReport, Mode, Source};
pub use patrons::Transport;
pub use report::Report;
pub use router::{RouterConfig, RouterReport};
pub use via::Via;
