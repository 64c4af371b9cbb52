//! The one place lock-free code imports its atomics from.
//!
//! Under `--cfg oscgate_loom` the types come from `loom`, so the model checker can explore every
//! interleaving of the code that uses them; otherwise they are the plain `std` atomics with no
//! overhead. Code that needs an atomic for `dedupe` (or any later lock-free structure) imports it
//! from here, never from `std::sync::atomic` directly.
//!
//! This module does not provide threads, locks or any other synchronisation; loom tests get those
//! from `loom` directly. Loom atomics cannot be built in a `const` or `static`, so callers create
//! them at run time (which is also why `dedupe` allocates its table with `AtomicU64::new`).

#[cfg(oscgate_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(oscgate_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
