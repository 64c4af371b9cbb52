//! `dedupe`: the lock-free duplicate filter used by the workers to drop mesh and broadcast frames
//! they have already seen (the OSChat duplicate window, 10 s by default).
//!
//! What it does:
//! - [`Dedupe::check_and_insert`] answers "was this key inserted within the window?" and, if not,
//!   records it, in one lock-free call that any number of threads may make at once.
//! - [`KeyHasher`] turns frame bytes into keys with a randomly seeded hash, so a hostile sender
//!   cannot precompute a frame whose key collides with another user's frame and so suppress it.
//! - Memory is fixed at construction ([`Dedupe::memory_bytes`]) and never grows.
//!
//! What it does not do: no I/O, no clock reads (time is the `now_ms` argument), no allocation after
//! construction, no locks. It is a cache, not a set: under pressure it forgets the oldest keys, and
//! two keys that share a set and a 48-bit fingerprint are treated as the same key.
//!
//! # Layout
//!
//! The table is a power-of-two number of *sets*; each set is one 64-byte cache line
//! (`#[repr(align(64))]`) of eight `AtomicU64` slots. A key picks its set with its low bits. A slot
//! word packs
//!
//! ```text
//!  63                             16 15   13 12           0
//! +---------------------------------+-------+--------------+
//! |   fingerprint (48 bits, != 0)   |  gen  |    stamp     |
//! +---------------------------------+-------+--------------+
//! ```
//!
//! The fingerprint is the key's top 48 bits, with 0 mapped to 1, so no live word is ever 0 and 0
//! means "empty slot". Each key also has a *home* slot in its set (the key's top 3 bits).
//!
//! # Time: ticks, stamps and generations
//!
//! Time is counted in ticks of `tick_ms = ceil(window_ms / 64)`, and the window becomes
//! `window_ticks = ceil(window_ms / tick_ms)` (at most 64). The exact rule is: a key inserted at
//! `t0` is a duplicate at `t` iff `t / tick_ms - t0 / tick_ms < window_ticks` (integer division),
//! i.e. the window is honoured to within one tick (1/64 of the window, 157 ms for 10 s).
//!
//! The stamp is the tick modulo 2^13, and it alone could not tell an entry of age `a` from one of
//! age `a + 8192 ticks`. The 3-bit generation removes that ambiguity for any gap between calls:
//! the table keeps one `era` word (start tick + current generation `G`). Eras last at least
//! `ERA_TICKS` = 2048 ticks (32 windows). The first call that finds the era older than that starts a
//! new one, advancing `G` by 1, or by 3 if the era is older than two eras (the table was idle).
//! A slot is only read against its stamp if its generation is `G - 1`, `G` or `G + 1` (mod 8);
//! any other generation means "free". The thread that starts era `G` then sweeps the table once,
//! clearing words whose generation is neither `G` nor `G - 1`, so a generation value is never
//! reused while a word carrying it survives. Ages of the words that are read against their stamps
//! are then below `3 * ERA_TICKS + window_ticks` < 2^13 - window_ticks, so a stamp never wraps
//! into looking fresh, no matter how long the table or a set sat untouched: an idle table jumps
//! the generation by 3, which turns every word present into "free" at once.
//!
//! The guarantee rests on two documented assumptions about callers, both of which the workers
//! meet: concurrent callers pass `now_ms` values within one window of each other (they read the
//! same monotonic clock shortly before calling), and a call is not suspended for longer than one
//! era (about 5 minutes with the default window) in the middle of its work. Gaps *between* calls
//! may be anything; `now_ms` jumps of 2^59 ticks or more are read as going backwards.
//!
//! The sweep is the only O(table) work. It runs once per era (about every 5 minutes at the default
//! window) in whichever worker starts the era: one pass of loads over the table.
//!
//! # Insert, and why two racing inserts of one key give exactly one `New`
//!
//! `check_and_insert` reads the home slot first, then the other seven slots (Acquire). A live word
//! with the key's fingerprint anywhere means `Duplicate`. Otherwise:
//! - if the home slot is free (empty, expired or dead generation), CAS it to the new word;
//! - otherwise its live occupant `g` must move: CAS `g` into the first free slot (probe order from
//!   home), or, if all eight slots are live, over the oldest entry (greatest age, ties to the
//!   smaller fingerprint); if the oldest entry is `g` itself, it is simply replaced. Then CAS the
//!   home slot from `g` to the new word. If that CAS fails the copy is undone (CAS back) and the
//!   whole call retries.
//!
//! `New` is returned only by a thread whose CAS on the key's home slot installed its word, and a
//! key's word is only ever *created* by such a CAS (moves copy existing words). Suppose threads A
//! and B both install key `k` at home `h`, A first in `h`'s modification order. B's CAS expected
//! the value `x` that B read from `h` before scanning, and `x` is later than A's word in that order.
//! Every write to a slot is a CAS (an RMW), so B's Acquire load of `x` synchronises with the
//! Release CAS that first replaced A's word. Within the window and with a free or non-full set,
//! that replacement was a move, which copied A's word into another slot *before* replacing it;
//! B's scan of the other slots comes after its load of `h`, so it sees the copy (or a later write,
//! which would be an eviction) and returns `Duplicate`: a contradiction. Hence at most one `New`.
//! At least one: a thread returns `Duplicate` only after seeing a live word for `k`, which some
//! thread created and got `New` for. The exceptions are the documented ones: the key was evicted
//! in between (the set held eight live entries, counting transient copies of in-flight moves, one
//! per concurrent inserter), or callers' clocks disagreed by more than the window.
//! The loom tests in this file check both properties on every interleaving of small cases.

use crate::sync::{AtomicU64, Ordering};
use core::hash::{BuildHasher, Hasher};

/// Default OSChat duplicate window.
pub const DEFAULT_WINDOW_MS: u64 = 10_000;

/// Slots per set: eight 64-bit words fill one 64-byte cache line.
const SLOTS: usize = 8;
/// Largest table: 2^24 sets = 128 Mi entries = 1 GiB. Larger requests are clamped.
const MAX_SETS: usize = 1 << 24;

const FP_SHIFT: u32 = 16;
const GEN_SHIFT: u32 = 13;
const GEN_MASK: u64 = 0b111;
const STAMP_MOD: u64 = 1 << GEN_SHIFT;
const STAMP_MASK: u64 = STAMP_MOD - 1;
/// Target resolution: the window is split into this many ticks.
const TICKS_PER_WINDOW: u64 = 64;
/// Minimum era length in ticks; 3 eras plus two windows must stay below `STAMP_MOD`.
const ERA_TICKS: u64 = 2048;
const _: () = assert!(3 * ERA_TICKS + 3 * TICKS_PER_WINDOW < STAMP_MOD);

/// `era` word: bit 63 = initialised, bits 3..63 = start tick (60 bits), bits 0..3 = generation.
const ERA_INIT: u64 = 1 << 63;
const ERA_START_MASK: u64 = (1 << 60) - 1;
/// An elapsed tick count at or above this (mod 2^60) is read as "now is before the era start".
const ERA_BACKWARDS: u64 = 1 << 59;

const EMPTY: u64 = 0;

/// Result of [`Dedupe::check_and_insert`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Seen {
    /// Not seen within the window: the key has now been recorded. Forward the frame.
    New,
    /// Inserted within the window and still held: drop the frame.
    Duplicate,
}

/// A keyed 64-bit hash of frame bytes (foldhash, quality variant).
///
/// [`KeyHasher::new`] draws its seed from the operating system's randomness (through
/// `std::hash::RandomState`) once, at construction; keys are only comparable between users of the
/// same `KeyHasher`.
#[derive(Clone, Debug)]
pub struct KeyHasher {
    per_hasher_seed: u64,
    shared_seed: foldhash::SharedSeed,
}

impl KeyHasher {
    /// A hasher with a fresh random seed.
    pub fn new() -> Self {
        // Two independent 64-bit values from std's randomly keyed SipHash state (its keys come
        // from the OS at first use in each thread).
        let a = std::hash::RandomState::new().hash_one(0x6f73_6367_6174_6531_u64);
        let b = std::hash::RandomState::new().hash_one(0x6f73_6367_6174_6532_u64);
        Self::with_seed(a ^ b.rotate_left(32), b)
    }

    /// A hasher with a fixed seed: for tests and reproducible benchmarks only.
    pub fn with_seed(per_hasher_seed: u64, shared_seed: u64) -> Self {
        KeyHasher {
            per_hasher_seed,
            shared_seed: foldhash::SharedSeed::from_u64(shared_seed),
        }
    }

    /// The key of a frame.
    #[inline]
    pub fn key_of(&self, bytes: &[u8]) -> u64 {
        let mut h =
            foldhash::quality::FoldHasher::with_seed(self.per_hasher_seed, &self.shared_seed);
        h.write(bytes);
        h.finish()
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

/// One cache line of slots.
#[repr(align(64))]
struct Set {
    slots: [AtomicU64; SLOTS],
}

impl Set {
    fn new() -> Self {
        Set {
            slots: core::array::from_fn(|_| AtomicU64::new(EMPTY)),
        }
    }
}

/// The fixed-size, lock-free duplicate filter. Share it between threads by reference or `Arc`.
pub struct Dedupe {
    sets: Box<[Set]>,
    mask: usize,
    tick_ms: u64,
    window_ticks: u64,
    /// Start tick and generation of the current era; see the module docs.
    era: AtomicU64,
    hasher: KeyHasher,
}

impl core::fmt::Debug for Dedupe {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Dedupe")
            .field("sets", &self.sets.len())
            .field("tick_ms", &self.tick_ms)
            .field("window_ticks", &self.window_ticks)
            .finish_non_exhaustive()
    }
}

/// The 48-bit fingerprint stored for `key`; never 0, so a live word is never `EMPTY`.
#[inline]
pub(crate) fn fingerprint(key: u64) -> u64 {
    let fp = key >> FP_SHIFT;
    if fp == 0 {
        1
    } else {
        fp
    }
}

/// The key's home slot within its set: the fingerprint's top 3 bits (the key's bits 61..64),
/// disjoint from the set-index bits for any table up to 2^61 sets.
#[inline]
fn home_slot(fp: u64) -> usize {
    (fp >> 45) as usize & (SLOTS - 1)
}

#[inline]
fn pack(fp: u64, gen: u64, tick: u64) -> u64 {
    (fp << FP_SHIFT) | ((gen & GEN_MASK) << GEN_SHIFT) | (tick & STAMP_MASK)
}

#[inline]
fn fp_of(word: u64) -> u64 {
    word >> FP_SHIFT
}

#[inline]
fn gen_of(word: u64) -> u64 {
    (word >> GEN_SHIFT) & GEN_MASK
}

impl Dedupe {
    /// A table holding at least `capacity` entries (rounded up to a power-of-two number of
    /// 8-entry sets, at least one set, at most 2^24 sets) with a duplicate window of `window_ms`
    /// (at least 1 ms), hashing frames with a fresh random seed.
    pub fn new(capacity: usize, window_ms: u64) -> Self {
        Self::with_hasher(capacity, window_ms, KeyHasher::new())
    }

    /// As [`Dedupe::new`] with a given hasher (fixed seeds make tests reproducible).
    pub fn with_hasher(capacity: usize, window_ms: u64, hasher: KeyHasher) -> Self {
        let sets = capacity
            .div_ceil(SLOTS)
            .clamp(1, MAX_SETS)
            .next_power_of_two();
        let window_ms = window_ms.max(1);
        let tick_ms = window_ms.div_ceil(TICKS_PER_WINDOW);
        let window_ticks = window_ms.div_ceil(tick_ms);
        Dedupe {
            sets: (0..sets).map(|_| Set::new()).collect(),
            mask: sets - 1,
            tick_ms,
            window_ticks,
            era: AtomicU64::new(0),
            hasher,
        }
    }

    /// Entries the table can hold (8 per set).
    pub fn capacity(&self) -> usize {
        self.sets.len() * SLOTS
    }

    /// Bytes of memory the table uses, fixed for its lifetime.
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of_val(&*self.sets) + core::mem::size_of::<Self>()
    }

    /// Length of one tick of the coarse clock, in ms.
    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// The window as applied: `window_ticks * tick_ms` (the requested window rounded up to a tick).
    pub fn window_ms(&self) -> u64 {
        self.window_ticks * self.tick_ms
    }

    /// The key of a frame under this table's hasher.
    #[inline]
    pub fn key_of(&self, bytes: &[u8]) -> u64 {
        self.hasher.key_of(bytes)
    }

    /// [`Dedupe::check_and_insert`] on the key of `bytes`.
    #[inline]
    pub fn check_and_insert_bytes(&self, bytes: &[u8], now_ms: u64) -> Seen {
        self.check_and_insert(self.key_of(bytes), now_ms)
    }

    /// Returns `Duplicate` iff `key` was inserted (returned `New`) within the window before
    /// `now_ms` and has not been evicted since; otherwise records `key` at `now_ms` and returns
    /// `New`. Lock-free; see the module docs for the exactly-one-`New` argument.
    pub fn check_and_insert(&self, key: u64, now_ms: u64) -> Seen {
        let tick = now_ms / self.tick_ms;
        let gen = self.view(tick);
        let set = &self.sets[(key as usize) & self.mask];
        let fp = fingerprint(key);
        let home = home_slot(fp);
        let mine = pack(fp, gen, tick);
        loop {
            // Home first: the exactly-one-New argument needs the home value read before the rest.
            let mut words = [EMPTY; SLOTS];
            for i in 0..SLOTS {
                let j = (home + i) & (SLOTS - 1);
                let w = set.slots[j].load(Ordering::Acquire);
                if fp_of(w) == fp && self.live(w, gen, tick) {
                    return Seen::Duplicate;
                }
                words[j] = w;
            }
            let occupant = words[home];
            let target = if self.live(occupant, gen, tick) {
                self.victim(&words, home, gen, tick)
            } else {
                home
            };
            if target != home
                && set.slots[target]
                    .compare_exchange(words[target], occupant, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            {
                continue;
            }
            match set.slots[home].compare_exchange(
                occupant,
                mine,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Seen::New,
                Err(_) => {
                    if target != home {
                        // Undo the copy unless someone has already overwritten it. Whoever
                        // replaced the home word made their own copy if it was to be kept.
                        let _ = set.slots[target].compare_exchange(
                            occupant,
                            words[target],
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        );
                    }
                }
            }
        }
    }

    /// Is `word` a live entry for a caller at `tick` whose view of the generation is `gen`?
    #[inline]
    fn live(&self, word: u64, gen: u64, tick: u64) -> bool {
        if word == EMPTY {
            return false;
        }
        // 0: same generation, 1: previous, 7: next (a caller that has not yet seen a new era).
        let dg = gen.wrapping_sub(gen_of(word)) & GEN_MASK;
        if dg != 0 && dg != 1 && dg != GEN_MASK {
            return false;
        }
        let d = tick.wrapping_sub(word) & STAMP_MASK;
        d < self.window_ticks || d >= STAMP_MOD - self.window_ticks
    }

    /// Age in ticks of a live word; negative if stamped by a caller slightly ahead of us.
    #[inline]
    fn age(&self, word: u64, tick: u64) -> i64 {
        let d = tick.wrapping_sub(word) & STAMP_MASK;
        if d >= STAMP_MOD - self.window_ticks {
            d as i64 - STAMP_MOD as i64
        } else {
            d as i64
        }
    }

    /// Where to put the live home occupant: the first free slot after home, else the oldest entry
    /// of the set (which may be the home occupant itself, meaning "evict it").
    #[inline]
    fn victim(&self, words: &[u64; SLOTS], home: usize, gen: u64, tick: u64) -> usize {
        for i in 1..SLOTS {
            let j = (home + i) & (SLOTS - 1);
            if !self.live(words[j], gen, tick) {
                return j;
            }
        }
        let mut best = home;
        let mut best_key = (self.age(words[home], tick), u64::MAX - fp_of(words[home]));
        for i in 1..SLOTS {
            let j = (home + i) & (SLOTS - 1);
            let k = (self.age(words[j], tick), u64::MAX - fp_of(words[j]));
            if k > best_key {
                best = j;
                best_key = k;
            }
        }
        best
    }

    /// The caller's generation at `tick`, starting a new era (and sweeping) when one is due.
    #[inline]
    fn view(&self, tick: u64) -> u64 {
        let mut era = self.era.load(Ordering::Acquire);
        loop {
            let start = tick & ERA_START_MASK;
            let next = if era & ERA_INIT == 0 {
                // First call: the table is empty, any generation will do.
                ERA_INIT | (start << 3)
            } else {
                let gen = era & GEN_MASK;
                let elapsed = start.wrapping_sub((era >> 3) & ERA_START_MASK) & ERA_START_MASK;
                if !(ERA_TICKS..ERA_BACKWARDS).contains(&elapsed) {
                    return gen;
                }
                // After a long idle gap every word present is long expired: jump far enough that
                // none of their generations (G-1, G, G+1) is readable from the new one.
                let step = if elapsed < 2 * ERA_TICKS { 1 } else { 3 };
                ERA_INIT | (start << 3) | ((gen + step) & GEN_MASK)
            };
            match self
                .era
                .compare_exchange(era, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let gen = next & GEN_MASK;
                    if era & ERA_INIT != 0 {
                        self.sweep(gen);
                    }
                    return gen;
                }
                Err(current) => era = current,
            }
        }
    }

    /// Clear every word whose generation is neither `gen` nor `gen - 1`, so that generation
    /// numbers can be reused (see the module docs).
    #[cold]
    fn sweep(&self, gen: u64) {
        for set in self.sets.iter() {
            for slot in set.slots.iter() {
                let w = slot.load(Ordering::Acquire);
                if w == EMPTY {
                    continue;
                }
                let dg = gen.wrapping_sub(gen_of(w)) & GEN_MASK;
                if dg > 1 {
                    let _ = slot.compare_exchange(w, EMPTY, Ordering::AcqRel, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(all(test, not(oscgate_loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::{Arc, Barrier};

    const W: u64 = DEFAULT_WINDOW_MS;

    fn table(capacity: usize, window_ms: u64) -> Dedupe {
        Dedupe::with_hasher(capacity, window_ms, KeyHasher::with_seed(1, 2))
    }

    /// A key with the given fingerprint bits landing in `set`.
    fn key(set: u64, fp: u64) -> u64 {
        (fp << FP_SHIFT) | set
    }

    /// Distinct live fingerprints in `set` as seen at `now_ms` (test-only inspection).
    fn live_fps(d: &Dedupe, set: usize, now_ms: u64) -> Vec<u64> {
        let tick = now_ms / d.tick_ms;
        let gen = d.era.load(Ordering::Acquire) & GEN_MASK;
        let mut v: Vec<u64> = d.sets[set]
            .slots
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .filter(|&w| d.live(w, gen, tick))
            .map(fp_of)
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn geometry_and_memory() {
        assert_eq!(core::mem::size_of::<Set>(), 64);
        assert_eq!(core::mem::align_of::<Set>(), 64);
        let d = table(1000, W);
        assert_eq!(d.capacity(), 1024);
        assert!(d.memory_bytes() >= 128 * 64 && d.memory_bytes() < 128 * 64 + 256);
        assert_eq!(table(0, W).capacity(), 8);
        assert_eq!(table(9, W).capacity(), 16);
        assert_eq!(table(usize::MAX, W).sets.len(), MAX_SETS);
    }

    #[test]
    fn window_is_rounded_to_ticks() {
        let d = table(8, W);
        assert_eq!(d.tick_ms(), 157);
        assert_eq!(d.window_ms(), 64 * 157);
        let d = table(8, 20);
        assert_eq!((d.tick_ms(), d.window_ms()), (1, 20));
        let d = table(8, 0);
        assert_eq!((d.tick_ms(), d.window_ms()), (1, 1));
    }

    #[test]
    fn window_expiry_exact_tick_boundary() {
        let d = table(64, W);
        let k = key(3, 0xabcdef);
        let t0 = 1_000_000 * 157; // tick-aligned
        assert_eq!(d.check_and_insert(k, t0), Seen::New);
        assert_eq!(d.check_and_insert(k, t0 + 156), Seen::Duplicate);
        assert_eq!(
            d.check_and_insert(k, t0 + d.window_ms() - 1),
            Seen::Duplicate
        );
        assert_eq!(d.check_and_insert(k, t0 + d.window_ms()), Seen::New);
        assert_eq!(
            d.check_and_insert(k, t0 + d.window_ms() + 1),
            Seen::Duplicate
        );
    }

    #[test]
    fn duplicate_does_not_refresh_the_entry() {
        let d = table(64, W);
        let k = key(1, 77);
        assert_eq!(d.check_and_insert(k, 0), Seen::New);
        assert_eq!(d.check_and_insert(k, 5_000), Seen::Duplicate);
        assert_eq!(d.check_and_insert(k, 9_000), Seen::Duplicate);
        assert_eq!(d.check_and_insert(k, d.window_ms()), Seen::New);
    }

    #[test]
    fn full_set_evicts_the_oldest() {
        let d = table(8, W);
        let tick = d.tick_ms();
        // All eight share home slot 0, so every insert after the first moves an entry.
        for i in 0..8 {
            assert_eq!(d.check_and_insert(key(0, 10 + i), i * tick), Seen::New);
        }
        assert_eq!(d.check_and_insert(key(0, 99), 8 * tick), Seen::New);
        assert_eq!(
            live_fps(&d, 0, 8 * tick),
            vec![11, 12, 13, 14, 15, 16, 17, 99]
        );
        for i in 1..8 {
            assert_eq!(
                d.check_and_insert(key(0, 10 + i), 9 * tick),
                Seen::Duplicate
            );
        }
        assert_eq!(d.check_and_insert(key(0, 10), 9 * tick), Seen::New);
        // Re-inserting 10 evicted the next oldest, 11.
        assert_eq!(
            live_fps(&d, 0, 9 * tick),
            vec![10, 12, 13, 14, 15, 16, 17, 99]
        );
    }

    #[test]
    fn eviction_ties_go_to_the_smallest_fingerprint() {
        let d = table(8, W);
        let fps = [40, 7 | (5 << 45), 31, 9 | (2 << 45), 50, 8, 60, 70];
        for &f in &fps {
            assert_eq!(d.check_and_insert(key(0, f), 100), Seen::New);
        }
        assert_eq!(d.check_and_insert(key(0, 1 << 45), 100), Seen::New);
        let live = live_fps(&d, 0, 100);
        assert!(!live.contains(&8), "{live:?}");
        assert_eq!(live.len(), 8);
    }

    #[test]
    fn expired_entries_are_free_slots() {
        let d = table(8, W);
        for i in 0..8 {
            assert_eq!(d.check_and_insert(key(0, 10 + i), 0), Seen::New);
        }
        // One window later all eight are free: nine new keys fit without evicting each other
        // (the ninth evicts the oldest of the new ones).
        let t = d.window_ms();
        for i in 0..8 {
            assert_eq!(d.check_and_insert(key(0, 100 + i), t + i), Seen::New);
        }
        assert_eq!(live_fps(&d, 0, t + 8).len(), 8);
        assert_eq!(d.check_and_insert(key(0, 10), t + 8), Seen::New);
    }

    #[test]
    fn zero_fingerprint_is_not_an_empty_slot() {
        let d = table(16, W);
        // Fingerprint bits 0, generation 0, tick 0: packing the raw bits would give word 0.
        let k = key(1, 0);
        assert_eq!(d.check_and_insert(k, 0), Seen::New);
        assert_eq!(d.check_and_insert(k, 1), Seen::Duplicate);
        assert_eq!(live_fps(&d, 1, 1), vec![1]);
        // Documented: fingerprints 0 and 1 are the same entry.
        assert_eq!(d.check_and_insert(key(1, 1), 2), Seen::Duplicate);
        // Same fingerprint, other set: a different entry.
        assert_eq!(d.check_and_insert(key(0, 0), 2), Seen::New);
    }

    #[test]
    fn stamp_wraparound_never_revives_an_entry() {
        let d = table(16, W);
        let tick = d.tick_ms();
        let k = key(0, 5);
        assert_eq!(d.check_and_insert(k, 0), Seen::New);
        // Exactly whole stamp periods later the 13-bit stamp matches again.
        for periods in [1u64, 2, 3, 4, 5, 1 << 20] {
            let now = periods * STAMP_MOD * tick;
            let fresh = table(16, W);
            assert_eq!(fresh.check_and_insert(k, 0), Seen::New);
            assert_eq!(
                fresh.check_and_insert(k, now),
                Seen::New,
                "gap {periods} periods"
            );
            assert_eq!(fresh.check_and_insert(k, now + 1), Seen::Duplicate);
        }
        assert_eq!(d.check_and_insert(k, STAMP_MOD * tick), Seen::New);
    }

    #[test]
    fn untouched_set_survives_generation_wraparound() {
        // Set 0 holds key A; only set 1 is touched, once per era, until the generation counter
        // has wrapped and the stamp aliases A's. Without the sweep A would read as fresh.
        let d = table(16, W);
        let tick = d.tick_ms();
        let a = key(0, 5);
        assert_eq!(d.check_and_insert(a, 0), Seen::New);
        for m in 1..=16u64 {
            assert_eq!(
                d.check_and_insert(key(1, 100 + m), m * ERA_TICKS * tick),
                Seen::New
            );
        }
        let now = 16 * ERA_TICKS * tick;
        assert_eq!((now / tick) & STAMP_MASK, 0);
        assert_eq!(d.era.load(Ordering::Relaxed) & GEN_MASK, 0);
        assert_eq!(d.check_and_insert(a, now), Seen::New);
    }

    #[test]
    fn idle_gap_jumps_generations() {
        let d = table(16, W);
        let tick = d.tick_ms();
        let a = key(0, 5);
        assert_eq!(d.check_and_insert(a, 0), Seen::New);
        // A gap of just under three eras whose stamp aliases A's, at one era boundary.
        for gap_eras in [2u64, 3, 4, 8, 12, 4096] {
            let now = gap_eras * ERA_TICKS * tick * 2;
            let fresh = table(16, W);
            assert_eq!(fresh.check_and_insert(a, 0), Seen::New);
            assert_eq!(fresh.check_and_insert(a, now), Seen::New, "gap {gap_eras}");
        }
    }

    #[test]
    fn small_backward_steps_keep_entries_and_large_ones_do_not_panic() {
        let d = table(16, W);
        let k = key(0, 9);
        assert_eq!(d.check_and_insert(k, 1_000_000), Seen::New);
        assert_eq!(d.check_and_insert(k, 1_000_000 - 5_000), Seen::Duplicate);
        let _ = d.check_and_insert(k, 3);
        let _ = d.check_and_insert(k, u64::MAX);
        let _ = d.check_and_insert(k, 0);
    }

    #[test]
    fn key_of_is_keyed_and_deterministic_per_seed() {
        let a = KeyHasher::with_seed(1, 2);
        let b = KeyHasher::with_seed(1, 2);
        let c = KeyHasher::with_seed(3, 2);
        let frame = b"/chat/msg\0\0\0,s\0\0hello\0\0\0";
        assert_eq!(a.key_of(frame), b.key_of(frame));
        assert_ne!(a.key_of(frame), c.key_of(frame));
        assert_ne!(a.key_of(frame), a.key_of(&frame[1..]));
        assert_ne!(
            KeyHasher::new().key_of(frame),
            KeyHasher::new().key_of(frame)
        );
    }

    #[test]
    fn check_and_insert_bytes_uses_the_tables_hasher() {
        let d = table(64, W);
        assert_eq!(d.check_and_insert_bytes(b"frame one", 0), Seen::New);
        assert_eq!(d.check_and_insert_bytes(b"frame two", 0), Seen::New);
        assert_eq!(d.check_and_insert_bytes(b"frame one", 10), Seen::Duplicate);
        assert_eq!(
            d.check_and_insert(d.key_of(b"frame two"), 10),
            Seen::Duplicate
        );
    }

    #[test]
    fn module_reads_no_clock() {
        let src = include_str!("dedupe.rs");
        for needle in [concat!("Instant", "::now"), concat!("SystemTime", "::now")] {
            assert!(!src.contains(needle), "{needle} in a pure module");
        }
    }

    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Threads race over the same keys; with at most `8 - THREADS` keys per set (room for one
    /// in-flight move per thread) every key must be `New` exactly once in total.
    #[test]
    fn stress_each_key_is_new_exactly_once() {
        const THREADS: usize = 4;
        const SETS: usize = 2048;
        const PER_SET: usize = 8 - THREADS;
        let d = Arc::new(table(SETS * 8, W));
        let mut rng = 42;
        let keys: Arc<Vec<u64>> = Arc::new(
            (0..SETS * PER_SET)
                .map(|i| (splitmix(&mut rng) & !(SETS as u64 - 1)) | (i % SETS) as u64)
                .collect(),
        );
        let news: Arc<Vec<AtomicU32>> = Arc::new(keys.iter().map(|_| AtomicU32::new(0)).collect());
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (d, keys, news, barrier) =
                    (d.clone(), keys.clone(), news.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for pass in 0..3 {
                        for n in 0..keys.len() {
                            // Half the threads walk forwards, half backwards, so both same-key
                            // races and same-set races with different keys happen.
                            let i = if t % 2 == 0 { n } else { keys.len() - 1 - n };
                            let now = 50_000 + (pass * 100 + t) as u64;
                            if d.check_and_insert(keys[i], now) == Seen::New {
                                news[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        for (i, n) in news.iter().enumerate() {
            assert_eq!(n.load(std::sync::atomic::Ordering::Relaxed), 1, "key {i}");
        }
    }

    /// Reference model: per set, the live (fingerprint, tick) entries; expired ones dropped; a
    /// full set evicts the smallest (tick, fingerprint).
    struct Model {
        sets: Vec<Vec<(u64, u64)>>,
        mask: usize,
        tick_ms: u64,
        window_ticks: u64,
    }

    impl Model {
        fn check_and_insert(&mut self, key: u64, now_ms: u64) -> Seen {
            let tick = now_ms / self.tick_ms;
            let w = self.window_ticks;
            let set = &mut self.sets[(key as usize) & self.mask];
            set.retain(|&(_, t)| tick - t < w);
            let fp = fingerprint(key);
            if set.iter().any(|&(f, _)| f == fp) {
                return Seen::Duplicate;
            }
            if set.len() == SLOTS {
                let (i, _) = set
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, &(f, t))| (t, f))
                    .unwrap();
                set.swap_remove(i);
            }
            set.push((fp, tick));
            Seen::New
        }
    }

    fn time_step() -> impl Strategy<Value = u64> {
        // Steps in ticks: within the window, around its edge, whole eras and stamp periods
        // (aliasing gaps), and arbitrary long idles.
        prop_oneof![
            4 => 0u64..3,
            3 => 60u64..70,
            1 => (1u64..20).prop_map(|k| k * ERA_TICKS),
            1 => (1u64..10, 0u64..3).prop_map(|(k, e)| k * STAMP_MOD + e),
            1 => 0u64..(1 << 30),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn matches_reference_model(
            window_ms in prop_oneof![Just(W), 1u64..200],
            ops in prop::collection::vec((0u64..2, 0u64..20, time_step(), 0u64..1000), 1..300),
        ) {
            let d = table(16, window_ms);
            let mut m = Model {
                sets: vec![Vec::new(); 2],
                mask: 1,
                tick_ms: d.tick_ms,
                window_ticks: d.window_ticks,
            };
            let mut now = 0u64;
            for (set, c, step, sub) in ops {
                now += step * d.tick_ms + sub % d.tick_ms;
                // Small fingerprints (0 and 1 collide by design), spread over the home slots.
                let k = key(set, ((c % 8) << 45) | c);
                prop_assert_eq!(d.check_and_insert(k, now), m.check_and_insert(k, now), "now {}", now);
            }
        }
    }
}

#[cfg(all(test, oscgate_loom))]
mod loom_tests {
    //! Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib dedupe`.
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    const NOW: u64 = 1_000_000;

    fn key(set: u64, fp: u64) -> u64 {
        (fp << FP_SHIFT) | set
    }

    /// Exhaustive exploration (no preemption bound): these models are small enough.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        loom::model::Builder::new().check(f);
    }

    fn table() -> Arc<Dedupe> {
        let d = Dedupe::with_hasher(8, DEFAULT_WINDOW_MS, KeyHasher::with_seed(1, 2));
        d.view(NOW / d.tick_ms);
        Arc::new(d)
    }

    /// `a` at `now` on this thread races `b` at `now` on another.
    fn race(d: &Arc<Dedupe>, a: u64, b: u64, now: u64) -> (Seen, Seen) {
        let d2 = d.clone();
        let t = thread::spawn(move || d2.check_and_insert(b, now));
        let ra = d.check_and_insert(a, now);
        (ra, t.join().unwrap())
    }

    fn live_words(d: &Dedupe) -> Vec<u64> {
        let tick = NOW / d.tick_ms + 10;
        let gen = d.era.load(Ordering::Acquire) & GEN_MASK;
        let mut v: Vec<u64> = d.sets[0]
            .slots
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .filter(|&w| d.live(w, gen, tick))
            .map(fp_of)
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn same_key_empty_set_exactly_one_new() {
        model(|| {
            let d = table();
            let k = key(0, 5);
            let (a, b) = race(&d, k, k, NOW + 1);
            assert!((a == Seen::New) ^ (b == Seen::New), "{a:?} {b:?}");
            assert_eq!(d.check_and_insert(k, NOW + 2), Seen::Duplicate);
        });
    }

    #[test]
    fn same_key_home_occupied_exactly_one_new() {
        model(|| {
            let d = table();
            let g = key(0, 3);
            assert_eq!(d.check_and_insert(g, NOW), Seen::New);
            let k = key(0, 5); // same home slot as g: both threads must move g
            let (a, b) = race(&d, k, k, NOW);
            assert!((a == Seen::New) ^ (b == Seen::New), "{a:?} {b:?}");
            assert_eq!(live_words(&d), vec![3, 5]);
        });
    }

    #[test]
    fn same_key_races_a_move_of_itself() {
        // Two inserts of k race a third thread whose key x shares k's home, so x may move k out
        // of its home slot between the other two threads' reads.
        model(|| {
            let d = table();
            let k = key(0, 5);
            let x = key(0, 6);
            let d2 = d.clone();
            let t2 = thread::spawn(move || d2.check_and_insert(x, NOW));
            let d3 = d.clone();
            let t3 = thread::spawn(move || d3.check_and_insert(k, NOW));
            let a = d.check_and_insert(k, NOW);
            let b = t3.join().unwrap();
            assert_eq!(t2.join().unwrap(), Seen::New);
            assert!((a == Seen::New) ^ (b == Seen::New), "{a:?} {b:?}");
            assert_eq!(live_words(&d), vec![5, 6]);
        });
    }

    #[test]
    fn era_change_and_sweep_race_an_insert() {
        model(|| {
            let d = table();
            let later = NOW + ERA_TICKS * d.tick_ms;
            let old = key(0, 3);
            assert_eq!(d.check_and_insert(old, NOW), Seen::New);
            let k = key(0, 5);
            // Both calls see the era as due; one starts it and sweeps while the other inserts.
            let (a, b) = race(&d, k, k, later);
            assert!((a == Seen::New) ^ (b == Seen::New), "{a:?} {b:?}");
            assert_eq!(d.check_and_insert(k, later + 1), Seen::Duplicate);
            assert_eq!(d.check_and_insert(old, later + 1), Seen::New);
        });
    }

    #[test]
    fn different_keys_same_home_both_kept() {
        model(|| {
            let d = table();
            let g = key(0, 3);
            assert_eq!(d.check_and_insert(g, NOW), Seen::New);
            let (a, b) = race(&d, key(0, 5), key(0, 6), NOW);
            assert_eq!((a, b), (Seen::New, Seen::New));
            assert_eq!(live_words(&d), vec![3, 5, 6]);
            for f in [3, 5, 6] {
                assert_eq!(d.check_and_insert(key(0, f), NOW + 1), Seen::Duplicate);
            }
        });
    }

    #[test]
    fn full_set_eviction_races_insert() {
        model(|| {
            let d = table();
            let tick = d.tick_ms;
            for i in 0..8 {
                assert_eq!(
                    d.check_and_insert(key(0, 10 + i), NOW - 8 * tick + i * tick),
                    Seen::New
                );
            }
            let (a, b) = race(&d, key(0, 20), key(0, 21), NOW);
            assert_eq!((a, b), (Seen::New, Seen::New));
            let live = live_words(&d);
            assert_eq!(live, vec![12, 13, 14, 15, 16, 17, 20, 21]);
        });
    }

    #[test]
    fn eviction_races_reinsert_of_a_live_key() {
        model(|| {
            let d = table();
            let tick = d.tick_ms;
            for i in 0..8 {
                assert_eq!(
                    d.check_and_insert(key(0, 10 + i), NOW - 8 * tick + i * tick),
                    Seen::New
                );
            }
            // 17 is the youngest: whatever the interleaving it is never the one evicted.
            let (a, b) = race(&d, key(0, 20), key(0, 17), NOW);
            assert_eq!((a, b), (Seen::New, Seen::Duplicate));
            assert_eq!(live_words(&d), vec![11, 12, 13, 14, 15, 16, 17, 20]);
        });
    }
}
