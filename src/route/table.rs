//! The compiled, immutable route table and its allocation-free lookup.
//!
//! What it does: holds one segment trie per ingress class and answers [`RouteTable::lookup`]
//! with the precedence documented in [`crate::route`]. Every trie node except the roots is
//! keyed by (ingress class, the address prefix it stands for), e.g. `/messenger/me`, in one
//! open-addressing table of compact [`Slot`]s, each carrying the node's exact action and the
//! nearest prefix action at or above it, so the deepest node on an address's path decides
//! alone. A lookup first hashes and probes the whole address (a hit is one hash, one probe and
//! one byte comparison); otherwise it hashes all whole-segment prefixes in one pass over the
//! bytes, a word at a time ([`for_each_prefix`]), probing them from the root until one is
//! missing.
//!
//! What it does not do: build itself (see `compile.rs`) or change after it is built.
//!
//! Hash collisions never decide a route: a candidate slot is accepted only after its stored
//! key bytes compare equal to the address prefix. Only configuration decides which keys are in
//! the table and it is at most a quarter full, so a hostile address can at worst make a lookup walk
//! one probe cluster; it cannot grow or degrade the table.

use core::fmt;
use core::hash::{BuildHasher, Hasher};

use foldhash::fast::FixedState;

use super::{Action, DropReason, Ingress, Verdict};
use crate::wire::pattern;

/// The `ingress` of a vacant slot (never a valid class: ids are `0..u16::MAX`).
pub(super) const VACANT: u16 = u16::MAX;

/// One non-root trie node in the key table. 32 bytes, so two share a cache line.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    /// Bits 32..64 of the key's hash; a cheap filter before the byte comparison.
    pub(super) fingerprint: u32,
    /// The ingress class, or [`VACANT`].
    pub(super) ingress: u16,
    /// This node or one of its ancestors has pattern rules.
    pub(super) patterns_on_path: bool,
    /// The key (the address prefix) is `key_bytes[key_start..key_start + key_len]`.
    pub(super) key_start: u32,
    pub(super) key_len: u32,
    /// The exact rule for this address.
    pub(super) exact: Option<Action>,
    /// The prefix rule of this node or of its nearest ancestor that has one.
    pub(super) prefix: Option<Action>,
}

impl Slot {
    pub(super) const EMPTY: Self = Self {
        fingerprint: 0,
        ingress: VACANT,
        patterns_on_path: false,
        key_start: 0,
        key_len: 0,
        exact: None,
        prefix: None,
    };
}

/// One trie node: where its pattern rules are.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Node {
    /// Pattern rules anchored here: `patterns[pat_start..pat_start + pat_len]`, in rule order.
    pub(super) pat_start: u32,
    pub(super) pat_len: u32,
    /// This node or one of its ancestors has pattern rules.
    pub(super) patterns_on_path: bool,
}

/// A pattern rule, stored under the node of its literal leading segments. `rest` is the part of
/// the pattern after those segments (empty, or starting with `/`).
#[derive(Clone, Copy, Debug)]
pub(super) struct PatternRule {
    pub(super) rule: u32,
    pub(super) rest_start: u32,
    pub(super) rest_len: u32,
    pub(super) action: Action,
}

/// Per ingress class: the root node's data and the seed of its prefix hashes.
#[derive(Clone, Copy, Debug)]
pub(super) struct IngressEntry {
    pub(super) seed: u64,
    pub(super) root: u32,
    /// Segments in the deepest key of this class: longer address prefixes cannot match.
    pub(super) depth: u32,
    pub(super) default: Action,
    /// The prefix rule `/`.
    pub(super) prefix: Option<Action>,
    /// The root has pattern rules.
    pub(super) patterns: bool,
}

/// The compiled route table; see [`crate::route`] for the rules and their precedence.
///
/// `D` is the destination type (a socket address, a connection id, ...). The table is
/// immutable; share it between threads behind an `Arc` and swap in a new one to change routes.
pub struct RouteTable<D> {
    pub(super) ingress: Box<[IngressEntry]>,
    pub(super) nodes: Box<[Node]>,
    pub(super) slots: Box<[Slot]>,
    /// The trie node of each slot (same index); only the pattern fallback needs it.
    pub(super) slot_nodes: Box<[u32]>,
    /// `slots.len() - 1`; `slots.len()` is a power of two.
    pub(super) slot_mask: usize,
    /// Key bytes; a node's key is a prefix of its descendants' keys and shares their bytes.
    pub(super) key_bytes: Box<[u8]>,
    pub(super) patterns: Box<[PatternRule]>,
    pub(super) pattern_bytes: Box<[u8]>,
    pub(super) sets: Box<[Box<[D]>]>,
}

/// Foldhash of an (id, bytes) key under the table's seeded state; the compiler derives each
/// ingress class's prefix-hash seed from it, so [`super::RouteTableBuilder::hash_seed`] changes
/// every slot position.
#[inline]
pub(super) fn edge_hash(hasher: &FixedState, parent: u32, seg: &[u8]) -> u64 {
    let mut h = hasher.build_hasher();
    h.write_u32(parent);
    h.write(seg);
    h.finish()
}

// Odd 64-bit constants (from the golden ratio and a splitmix64 output) for the multiplies.
const MUL_WORD: u64 = 0x9e37_79b9_7f4a_7c15;
const MUL_END: u64 = 0xd6e8_feb8_6659_fd93;

/// The full 128-bit product of `a` and `b`, its halves xored: a cheap, well-mixing step.
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Absorbs one whole 8-byte word of a key.
#[inline(always)]
fn absorb(state: u64, word: u64) -> u64 {
    fold_mul(state ^ word, MUL_WORD)
}

/// Finishes a key of `len` bytes whose last `len % 8` bytes, zero-padded, are `tail`.
#[inline(always)]
fn finish(state: u64, tail: u64, len: usize) -> u64 {
    fold_mul(state ^ tail, MUL_END ^ len as u64)
}

/// The hash of one key (an address prefix): whole little-endian words, then the zero-padded
/// tail and the length. [`for_each_prefix`] computes the same values for all prefixes at once.
#[inline(always)]
pub(super) fn prefix_hash(seed: u64, key: &[u8]) -> u64 {
    let mut words = key.chunks_exact(8);
    let mut state = seed;
    for w in &mut words {
        state = absorb(state, u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
    }
    finish(state, tail_word(key, words.remainder().len()), key.len())
}

/// Up to 8 bytes as a little-endian word, zero-padded (more bytes: the first 8). Two or three
/// small loads, which overlap, instead of a byte loop or a `memcpy` call.
#[inline(always)]
fn load_tail(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    if let Some(w) = bytes.first_chunk::<8>() {
        return u64::from_le_bytes(*w);
    }
    if n >= 4 {
        let lo = bytes
            .first_chunk::<4>()
            .map_or(0, |b| u32::from_le_bytes(*b));
        let hi = bytes
            .last_chunk::<4>()
            .map_or(0, |b| u32::from_le_bytes(*b));
        return u64::from(lo) | (u64::from(hi) << (8 * (n - 4)));
    }
    let byte = |i: usize| u64::from(bytes.get(i).copied().unwrap_or(0)) << (8 * i);
    if n == 0 {
        0
    } else {
        byte(0) | byte(n / 2) | byte(n - 1)
    }
}

/// The last `rest` (< 8) bytes of `address` as a little-endian word, zero-padded: one
/// overlapping load when the address has at least 8 bytes.
#[inline(always)]
fn tail_word(address: &[u8], rest: usize) -> u64 {
    match address.last_chunk::<8>() {
        Some(last) if rest > 0 => u64::from_le_bytes(*last) >> (8 * (8 - rest)),
        Some(_) => 0,
        None => load_tail(address),
    }
}

/// The top bit of every byte of `word` that is `/`, and no other bit.
#[inline(always)]
fn slash_bits(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ 0x2f2f_2f2f_2f2f_2f2f;
    // Per byte: the top bit of (low 7 bits + 0x7f) is set iff the low 7 bits are non-zero;
    // no byte carries into the next.
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// Calls `f(hash, len)` for the proper whole-segment prefixes of an address that starts with
/// `/` (the bytes before each `/` after the first), shortest first, until `f` returns `false`;
/// the k-th call has a prefix of k segments. `hash` is [`prefix_hash`] of the prefix. One pass
/// over the bytes, a word at a time. Returns the hash of the whole address, or `None` if `f`
/// stopped the walk.
#[inline(always)]
pub(super) fn for_each_prefix(
    seed: u64,
    address: &[u8],
    mut f: impl FnMut(u64, usize) -> bool,
) -> Option<u64> {
    let mut state = seed;
    let mut offset = 0;
    // The leading `/` starts the first segment; it ends no prefix.
    let mut skip = !0x80u64;
    let mut words = address.chunks_exact(8);
    for w in &mut words {
        let word = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        if !each_slash(word, skip, state, offset, &mut f) {
            return None;
        }
        skip = !0;
        state = absorb(state, word);
        offset += 8;
    }
    let word = tail_word(address, words.remainder().len());
    if !each_slash(word, skip, state, offset, &mut f) {
        return None;
    }
    Some(finish(state, word, address.len()))
}

/// [`for_each_prefix`] for one word at `offset`, after the whole words hashed into `state`.
#[inline(always)]
fn each_slash(
    word: u64,
    skip: u64,
    state: u64,
    offset: usize,
    f: &mut impl FnMut(u64, usize) -> bool,
) -> bool {
    let mut slashes = slash_bits(word) & skip;
    while slashes != 0 {
        let at = (slashes.trailing_zeros() / 8) as usize;
        slashes &= slashes - 1;
        // The bytes of this word before the `/`; `at` is at most 7.
        let tail = word & ((1u64 << (8 * at)) - 1);
        if !f(finish(state, tail, offset + at), offset + at) {
            return false;
        }
    }
    true
}

/// Splits off the address segment starting at `start` (just after a `/`): returns the segment
/// and the start of the next one, or `None` if it is the last.
#[inline]
pub(super) fn split_segment(address: &[u8], start: usize) -> (&[u8], Option<usize>) {
    let rest = address.get(start..).unwrap_or(&[]);
    match rest.iter().position(|&b| b == b'/') {
        Some(i) => (rest.get(..i).unwrap_or(&[]), Some(start + i + 1)),
        None => (rest, None),
    }
}

/// Slice equality without a library `memcmp` call: keys are short, and the call overhead was a
/// third of a lookup in profiles. Whole words, then the last (overlapping) word or smaller.
#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |s: &[u8]| u64::from_ne_bytes(s.try_into().unwrap_or([0; 8]));
    let n = a.len();
    if n >= 8 {
        let mut ca = a.chunks_exact(8);
        let mut cb = b.chunks_exact(8);
        for (x, y) in (&mut ca).zip(&mut cb) {
            if word(x) != word(y) {
                return false;
            }
        }
        // The last 8 bytes, overlapping the words already compared.
        return ca.remainder().is_empty()
            || word(a.get(n - 8..).unwrap_or(&[])) == word(b.get(n - 8..).unwrap_or(&[]));
    }
    load_tail(a) == load_tail(b)
}

impl<D> RouteTable<D> {
    /// Looks up the verdict for a packet with OSC address `address` (raw bytes, no padding)
    /// that arrived on ingress class `ingress`. Never allocates, never panics; an unknown
    /// ingress class gets `Drop(UnknownIngress)`.
    #[inline]
    pub fn lookup(&self, ingress: Ingress, address: &[u8]) -> Verdict<'_, D> {
        let Some(entry) = self.ingress.get(usize::from(ingress.0)) else {
            return Verdict::Drop(DropReason::UnknownIngress);
        };
        if address.first() != Some(&b'/') {
            return self.verdict(entry.default);
        }
        // The deepest node on the address's path decides: its exact rule if it is the whole
        // address, else the nearest prefix rule at or above it. The whole address first: a
        // hit is one hash, one probe and one byte comparison.
        let mut deepest = None;
        if entry.depth > 0 {
            let hash = prefix_hash(entry.seed, address);
            deepest = match self.find(ingress.0, hash, address) {
                Some((_, slot)) => {
                    if let Some(action) = slot.exact {
                        return self.verdict(action);
                    }
                    Some(slot)
                }
                None => self.deepest_proper_prefix(ingress.0, entry, address),
            };
        }
        let (prefix, patterns_on_path) = match deepest {
            Some(slot) => (slot.prefix, slot.patterns_on_path),
            None => (entry.prefix, entry.patterns),
        };
        if let Some(action) = prefix {
            return self.verdict(action);
        }
        if patterns_on_path {
            if let Some(action) = self.match_patterns(ingress.0, entry, address) {
                return self.verdict(action);
            }
        }
        self.verdict(entry.default)
    }

    /// The number of ingress classes (valid ids are `0..n`).
    pub fn ingress_classes(&self) -> u16 {
        u16::try_from(self.ingress.len()).unwrap_or(u16::MAX)
    }

    /// The destination sets, indexed by [`super::DestSet::index`].
    pub fn dest_sets(&self) -> &[Box<[D]>] {
        &self.sets
    }

    /// The deepest node whose key is a proper prefix of the address, or `None` for the root;
    /// only called when the whole address is not a node.
    ///
    /// Walks the prefixes from the root and stops at the first that is not a node (nor are
    /// its descendants). Only the deepest node decides (its ancestors' prefix actions were
    /// folded into it at compile time), so the steps match on the fingerprint alone and only
    /// the deepest candidate is compared byte for byte. If that comparison fails (a
    /// fingerprint collision, about 2^-32 per occupied slot probed), the answer comes from
    /// [`Self::deepest_verified`] instead, which compares at every step.
    #[inline(always)]
    fn deepest_proper_prefix(
        &self,
        ingress: u16,
        entry: &IngressEntry,
        address: &[u8],
    ) -> Option<&Slot> {
        let mut found = None;
        // Prefixes with more segments than the deepest key of the class cannot be nodes.
        let mut left = entry.depth;
        for_each_prefix(entry.seed, address, |hash, len| {
            if left == 0 {
                return false;
            }
            left -= 1;
            match self.probe(ingress, hash, len) {
                Some(i) => {
                    found = Some((i, len));
                    true
                }
                None => false,
            }
        });
        let (i, len) = found?;
        let slot = self.slots.get(i)?;
        if self.key_is(slot, address.get(..len)?) {
            Some(slot)
        } else {
            self.deepest_verified(ingress, entry, address)
        }
    }

    /// The deepest node whose key is a proper prefix of the address, comparing bytes at every
    /// step.
    #[cold]
    fn deepest_verified(
        &self,
        ingress: u16,
        entry: &IngressEntry,
        address: &[u8],
    ) -> Option<&Slot> {
        let mut found = None;
        for_each_prefix(entry.seed, address, |hash, len| {
            let slot = address
                .get(..len)
                .and_then(|key| self.find(ingress, hash, key));
            if let Some((_, slot)) = slot {
                found = Some(slot);
            }
            slot.is_some()
        });
        found
    }

    /// The first slot on `hash`'s probe path for `ingress` whose fingerprint and key length
    /// match; the key bytes are not compared.
    #[inline(always)]
    fn probe(&self, ingress: u16, hash: u64, len: usize) -> Option<usize> {
        let fingerprint = (hash >> 32) as u32;
        let mut i = hash as usize & self.slot_mask;
        // The table is at most a quarter full, so a vacant slot ends every probe; the bound
        // only guards against a broken invariant.
        for _ in 0..self.slots.len() {
            let slot = self.slots.get(i)?;
            if slot.ingress == VACANT {
                return None;
            }
            if slot.fingerprint == fingerprint
                && slot.ingress == ingress
                && slot.key_len as usize == len
            {
                return Some(i);
            }
            i = (i + 1) & self.slot_mask;
        }
        None
    }

    /// The slot (and its index) whose key is `key` on `ingress`; `hash` is the key's hash.
    #[inline(always)]
    fn find(&self, ingress: u16, hash: u64, key: &[u8]) -> Option<(usize, &Slot)> {
        let fingerprint = (hash >> 32) as u32;
        let mut i = hash as usize & self.slot_mask;
        for _ in 0..self.slots.len() {
            let slot = self.slots.get(i)?;
            if slot.ingress == VACANT {
                return None;
            }
            if slot.fingerprint == fingerprint && slot.ingress == ingress && self.key_is(slot, key)
            {
                return Some((i, slot));
            }
            i = (i + 1) & self.slot_mask;
        }
        None
    }

    /// Whether the slot's key is `key`.
    #[inline(always)]
    fn key_is(&self, slot: &Slot, key: &[u8]) -> bool {
        let start = slot.key_start as usize;
        slot.key_len as usize == key.len()
            && self
                .key_bytes
                .get(start..start + key.len())
                .is_some_and(|stored| bytes_eq(stored, key))
    }

    /// Only when no exact or prefix rule matched and some node on the path has pattern rules:
    /// walks the path from the root and returns the first matching pattern rule in rule order.
    fn match_patterns(&self, ingress: u16, entry: &IngressEntry, address: &[u8]) -> Option<Action> {
        let mut best: Option<(u32, Action)> = None;
        self.node_patterns(entry.root, address, &mut best);
        let mut visit = |hash: u64, len: usize| {
            let Some((i, slot)) = address
                .get(..len)
                .and_then(|key| self.find(ingress, hash, key))
            else {
                return false;
            };
            if slot.patterns_on_path {
                if let Some(&node) = self.slot_nodes.get(i) {
                    self.node_patterns(node, address.get(len..).unwrap_or(&[]), &mut best);
                }
            }
            true
        };
        if let Some(hash) = for_each_prefix(entry.seed, address, &mut visit) {
            visit(hash, address.len());
        }
        best.map(|(_, action)| action)
    }

    /// Tries the pattern rules anchored at `node` on `rest` (the address after the node's key),
    /// keeping in `best` the earliest rule that matches.
    fn node_patterns(&self, node: u32, rest: &[u8], best: &mut Option<(u32, Action)>) {
        let Some(node) = self.nodes.get(node as usize) else {
            return;
        };
        let start = node.pat_start as usize;
        let list = self
            .patterns
            .get(start..start + node.pat_len as usize)
            .unwrap_or(&[]);
        for p in list {
            if best.is_some_and(|(rule, _)| rule < p.rule) {
                break;
            }
            if self.pattern_matches(p, rest) {
                *best = Some((p.rule, p.action));
                break;
            }
        }
    }

    #[inline]
    fn pattern_matches(&self, p: &PatternRule, rest: &[u8]) -> bool {
        let start = p.rest_start as usize;
        match self.pattern_bytes.get(start..start + p.rest_len as usize) {
            Some([]) => rest.is_empty(),
            Some(pat) => pattern::matches_validated(pat, rest),
            None => false,
        }
    }

    #[inline]
    fn verdict(&self, action: Action) -> Verdict<'_, D> {
        let set = |s: super::DestSet| self.sets.get(s.index()).map_or(&[][..], |b| &b[..]);
        match action {
            Action::Forward(s) => Verdict::Forward(set(s)),
            Action::Control(p) => Verdict::Control(p),
            Action::ForwardAndControl(s, p) => Verdict::ForwardAndControl(set(s), p),
            Action::Drop(r) => Verdict::Drop(r),
        }
    }
}

impl<D> fmt::Debug for RouteTable<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("ingress_classes", &self.ingress.len())
            .field("nodes", &self.nodes.len())
            .field("key_slots", &self.slots.len())
            .field("pattern_rules", &self.patterns.len())
            .field("dest_sets", &self.sets.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;
    use proptest::prelude::*;

    const I0: Ingress = Ingress(0);
    const I1: Ingress = Ingress(1);

    fn fwd(t: &RouteTable<u32>, ing: Ingress, a: &str) -> Vec<u32> {
        t.lookup(ing, a.as_bytes()).forward().to_vec()
    }

    #[test]
    fn table_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<RouteTable<std::net::SocketAddr>>();
        check::<Verdict<'static, std::net::SocketAddr>>();
    }

    #[test]
    fn bytes_eq_cases() {
        let long = b"abcdefghijklmnopq";
        for i in 0..long.len() {
            assert!(bytes_eq(&long[..i], &long[..i]));
            let mut other = long[..i].to_vec();
            if let Some(last) = other.last_mut() {
                *last ^= 1;
                assert!(!bytes_eq(&long[..i], &other), "{i}");
            }
            if i > 0 {
                let mut first = long[..i].to_vec();
                first[0] ^= 1;
                assert!(!bytes_eq(&long[..i], &first), "{i}");
            }
        }
        assert!(!bytes_eq(b"ab", b"abc"));
    }

    #[test]
    fn word_helpers() {
        for b in 0..=255u8 {
            let word = u64::from_le_bytes([b'a', b, b'/', 0, b, 0xaf, b, b'.']);
            let want = (0x80u64 << 16)
                | if b == b'/' {
                    (0x80 << 8) | (0x80 << 32) | (0x80 << 48)
                } else {
                    0
                };
            assert_eq!(slash_bits(word), want, "{b:#x}");
        }
        let bytes = b"0123456789abcdef";
        for n in 0..=bytes.len() {
            let mut buf = [0u8; 8];
            let k = n.min(8);
            buf[..k].copy_from_slice(&bytes[..k]);
            assert_eq!(load_tail(&bytes[..n]), u64::from_le_bytes(buf), "{n}");
            let rest = n % 8;
            let mut tail = [0u8; 8];
            tail[..rest].copy_from_slice(&bytes[n - rest..n]);
            assert_eq!(
                tail_word(&bytes[..n], rest),
                u64::from_le_bytes(tail),
                "{n}"
            );
        }
    }

    #[test]
    fn prefix_walk_hashes_every_prefix_once() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut a = vec![b'/'];
            let segs = (rng % 7) as usize;
            for i in 0..segs {
                if i > 0 {
                    a.push(b'/');
                }
                let len = random_segment(&mut rng).len() % 11;
                a.extend(std::iter::repeat_n(b'q', len));
            }
            let mut seen = Vec::new();
            let whole = for_each_prefix(99, &a, |h, len| {
                seen.push((h, len));
                true
            });
            let want: Vec<(u64, usize)> = (1..a.len())
                .filter(|&i| a[i] == b'/')
                .map(|i| (prefix_hash(99, &a[..i]), i))
                .collect();
            assert_eq!(seen, want, "{}", String::from_utf8_lossy(&a));
            assert_eq!(whole, Some(prefix_hash(99, &a)));
            // Stopping early reports no whole-address hash.
            if !want.is_empty() {
                assert_eq!(for_each_prefix(99, &a, |_, _| false), None);
            }
        }
        assert_ne!(prefix_hash(1, b"/a"), prefix_hash(1, b"/a\0"));
        assert_ne!(prefix_hash(1, b"/a"), prefix_hash(2, b"/a"));
    }

    #[test]
    fn fingerprint_collisions_never_pick_the_wrong_node() {
        let mut b = RouteTableBuilder::<u32>::new(1);
        let p = b.dest_set(vec![1]);
        let e = b.dest_set(vec![2]);
        b.rule(Rule::new(I0, Matcher::prefix("/x"), Action::Forward(p)))
            .rule(Rule::new(I0, Matcher::exact("/x/yy/z"), Action::Forward(e)));
        let mut t = b.build().unwrap();
        let seed = t.ingress[0].seed;
        let real = t
            .slots
            .iter()
            .position(|s| s.ingress == 0 && s.key_len == 5)
            .unwrap();
        // Plant a copy of the `/x/yy` node where `/x/zz` and `/x/zz/q` would be, with their
        // fingerprints: only the byte comparison tells them apart.
        for fake in ["/x/zz", "/x/zz/q"] {
            let hash = prefix_hash(seed, fake.as_bytes());
            let mut at = hash as usize & t.slot_mask;
            while t.slots[at].ingress != VACANT {
                at = (at + 1) & t.slot_mask;
            }
            t.slots[at] = Slot {
                fingerprint: (hash >> 32) as u32,
                key_len: fake.len() as u32,
                exact: Some(Action::Drop(DropReason::Reserved)),
                prefix: Some(Action::Drop(DropReason::Filtered)),
                ..t.slots[real]
            };
        }
        assert_eq!(fwd(&t, I0, "/x/zz/q"), [1]);
        assert_eq!(fwd(&t, I0, "/x/zz"), [1]);
        assert_eq!(fwd(&t, I0, "/x/zz/q/r"), [1]);
        assert_eq!(fwd(&t, I0, "/x/yy/z"), [2]);
        assert_eq!(fwd(&t, I0, "/x/yy"), [1]);
    }

    #[test]
    fn deep_addresses_agree_with_naive_scan() {
        let mut b = RouteTableBuilder::<u32>::new(3);
        let sets: Vec<DestSet> = (0..8).map(|i| b.dest_set(vec![i])).collect();
        let deep: String = (0..20).map(|i| format!("/s{i}")).collect();
        let rules = vec![
            Rule::new(I0, Matcher::exact(&deep), Action::Forward(sets[0])),
            Rule::new(I0, Matcher::prefix(&deep[..15]), Action::Forward(sets[1])),
            Rule::new(I0, Matcher::prefix("/s0"), Action::Forward(sets[2])),
            Rule::new(
                I0,
                Matcher::pattern("/s0/s1/*/s3"),
                Action::Forward(sets[3]),
            ),
            Rule::new(I0, Matcher::exact("/abcdefgh"), Action::Forward(sets[4])),
            Rule::new(
                I0,
                Matcher::prefix("/abcdefg/ijklmno"),
                Action::Forward(sets[5]),
            ),
            // Class 1 has only a root prefix: no keys at all.
            Rule::new(I1, Matcher::prefix("/"), Action::Forward(sets[6])),
        ];
        for r in &rules {
            b.rule(r.clone());
        }
        let t = b.build().unwrap();
        let defaults = [Action::Drop(DropReason::NoRoute); 3];
        let mut addrs: Vec<String> = (1..=deep.len()).map(|n| deep[..n].to_string()).collect();
        addrs.extend((0..24).map(|n| format!("{deep}{}", "/t".repeat(n))));
        addrs.extend(
            [
                "/abcdefgh",
                "/abcdefg",
                "/abcdefgh/",
                "/abcdefg/ijklmno",
                "/abcdefg/ijklmnop",
                "/abcdefg/ijklmno/p",
                "/s0/s1/s2/s3",
                "/s0/s1/x/s3",
                "/s0/s1/x/s3/",
                "//",
                "/",
                "/s0//s1",
            ]
            .map(String::from),
        );
        for a in &addrs {
            for ing in [I0, I1, Ingress(2)] {
                let want = t.verdict(naive(&rules, &defaults, ing, a.as_bytes()));
                assert_eq!(t.lookup(ing, a.as_bytes()), want, "{a} on {ing}");
            }
        }
    }

    #[test]
    fn split_segment_cases() {
        assert_eq!(split_segment(b"/a/bc", 1), (&b"a"[..], Some(3)));
        assert_eq!(split_segment(b"/a/bc", 3), (&b"bc"[..], None));
        assert_eq!(split_segment(b"/", 1), (&b""[..], None));
        assert_eq!(split_segment(b"/a/", 3), (&b""[..], None));
        assert_eq!(split_segment(b"/a", 9), (&b""[..], None));
    }

    #[test]
    fn edge_hash_depends_on_parent_and_segment() {
        let h = FixedState::with_seed(7);
        assert_eq!(edge_hash(&h, 1, b"x"), edge_hash(&h, 1, b"x"));
        assert_ne!(edge_hash(&h, 1, b"x"), edge_hash(&h, 2, b"x"));
        assert_ne!(edge_hash(&h, 1, b"x"), edge_hash(&h, 1, b"y"));
    }

    #[test]
    fn precedence_exact_then_longest_prefix_then_pattern_then_default() {
        let mut b = RouteTableBuilder::<u32>::new(2);
        let s: Vec<DestSet> = (0..6).map(|i| b.dest_set(vec![i])).collect();
        b.rule(Rule::new(
            I0,
            Matcher::pattern("/m/*/say"),
            Action::Forward(s[0]),
        ))
        .rule(Rule::new(I0, Matcher::prefix("/m"), Action::Forward(s[1])))
        .rule(Rule::new(
            I0,
            Matcher::prefix("/m/me"),
            Action::Forward(s[2]),
        ))
        .rule(Rule::new(
            I0,
            Matcher::exact("/m/me/say"),
            Action::Forward(s[3]),
        ))
        .rule(Rule::new(
            I0,
            Matcher::pattern("/x/*"),
            Action::Forward(s[4]),
        ))
        .rule(Rule::new(
            I0,
            Matcher::pattern("/x/[a-z]"),
            Action::Forward(s[5]),
        ));
        let t = b.build().unwrap();
        assert_eq!(fwd(&t, I0, "/m/me/say"), [3]); // exact beats everything
        assert_eq!(fwd(&t, I0, "/m/me/shout"), [2]); // longest prefix
        assert_eq!(fwd(&t, I0, "/m/me"), [2]);
        assert_eq!(fwd(&t, I0, "/m/you/say"), [1]); // prefix beats the pattern
        assert_eq!(fwd(&t, I0, "/m"), [1]);
        assert_eq!(fwd(&t, I0, "/x/q"), [4]); // first pattern in rule order
        assert_eq!(fwd(&t, I0, "/x/qq"), [4]);
        assert_eq!(t.lookup(I0, b"/y").drop_reason(), Some(DropReason::NoRoute));
        // Rules are per ingress class.
        assert_eq!(
            t.lookup(I1, b"/m/me/say").drop_reason(),
            Some(DropReason::NoRoute)
        );
    }

    #[test]
    fn pattern_order_across_anchors() {
        // A later pattern anchored deeper must not beat an earlier one anchored at the root.
        let mut b = RouteTableBuilder::<u32>::new(1);
        let s0 = b.dest_set(vec![0]);
        let s1 = b.dest_set(vec![1]);
        let s2 = b.dest_set(vec![2]);
        b.rule(Rule::new(
            I0,
            Matcher::pattern("//say"),
            Action::Forward(s0),
        ))
        .rule(Rule::new(
            I0,
            Matcher::pattern("/m/me/*"),
            Action::Forward(s1),
        ))
        .rule(Rule::new(
            I0,
            Matcher::pattern("/m/{me,you}/x"),
            Action::Forward(s2),
        ));
        let t = b.build().unwrap();
        assert_eq!(fwd(&t, I0, "/m/me/say"), [0]);
        assert_eq!(fwd(&t, I0, "/m/me/x"), [1]);
        assert_eq!(fwd(&t, I0, "/m/you/x"), [2]);
        assert_eq!(fwd(&t, I0, "/q/r/say"), [0]);
        assert!(t.lookup(I0, b"/m/you/y").drop_reason().is_some());
    }

    #[test]
    fn prefix_matches_whole_segments_only() {
        let mut b = RouteTableBuilder::<u32>::new(1);
        let s = b.dest_set(vec![7]);
        b.rule(Rule::new(
            I0,
            Matcher::prefix("/messenger/gateway"),
            Action::Forward(s),
        ));
        let t = b.build().unwrap();
        for hit in [
            "/messenger/gateway",
            "/messenger/gateway/who/active",
            "/messenger/gateway/",
        ] {
            assert_eq!(fwd(&t, I0, hit), [7], "{hit}");
        }
        for miss in [
            "/messenger/gatewayX",
            "/messenger",
            "/messenger/gate",
            "/messenger/",
            "/",
        ] {
            assert!(
                t.lookup(I0, miss.as_bytes()).drop_reason().is_some(),
                "{miss}"
            );
        }
    }

    #[test]
    fn root_prefix_and_trailing_slash() {
        let mut b = RouteTableBuilder::<u32>::new(1);
        let all = b.dest_set(vec![1]);
        let a = b.dest_set(vec![2]);
        b.rule(Rule::new(I0, Matcher::prefix("/"), Action::Forward(all)))
            .rule(Rule::new(I0, Matcher::prefix("/a/"), Action::Forward(a)));
        let t = b.build().unwrap();
        assert_eq!(fwd(&t, I0, "/"), [1]);
        assert_eq!(fwd(&t, I0, "/zz/top"), [1]);
        assert_eq!(fwd(&t, I0, "/a"), [2]);
        assert_eq!(fwd(&t, I0, "/a/b"), [2]);
        // Not an OSC address: only the default applies.
        assert_eq!(
            t.lookup(I0, b"a/b").drop_reason(),
            Some(DropReason::NoRoute)
        );
        assert_eq!(t.lookup(I0, b"").drop_reason(), Some(DropReason::NoRoute));
    }

    #[test]
    fn forward_and_control_and_defaults() {
        let mut b = RouteTableBuilder::<&'static str>::new(3);
        let peers = b.dest_set(vec!["peer1", "peer2"]);
        let gw = b.dest_set(vec!["gw"]);
        b.rule(Rule::new(
            I0,
            Matcher::exact("/oschat/hello"),
            Action::ForwardAndControl(peers, Protocol::Oschat),
        ))
        .rule(Rule::new(
            I0,
            Matcher::prefix("/router"),
            Action::Control(Protocol::Router),
        ))
        .rule(Rule::new(
            I1,
            Matcher::prefix("/oscgate"),
            Action::Drop(DropReason::Reserved),
        ))
        .default_action(I1, Action::Forward(gw))
        .default_action(Ingress(2), Action::Drop(DropReason::Filtered));
        let t = b.build().unwrap();
        let v = t.lookup(I0, b"/oschat/hello");
        assert_eq!(v.forward(), &["peer1", "peer2"]);
        assert_eq!(v.control(), Some(Protocol::Oschat));
        assert_eq!(
            t.lookup(I0, b"/router/group/x"),
            Verdict::Control(Protocol::Router)
        );
        assert_eq!(
            t.lookup(I1, b"/oscgate/x").drop_reason(),
            Some(DropReason::Reserved)
        );
        assert_eq!(t.lookup(I1, b"/anything").forward(), &["gw"]);
        assert_eq!(t.lookup(I1, b"junk").forward(), &["gw"]);
        assert_eq!(
            t.lookup(Ingress(2), b"/x").drop_reason(),
            Some(DropReason::Filtered)
        );
        assert_eq!(
            t.lookup(Ingress(3), b"/x").drop_reason(),
            Some(DropReason::UnknownIngress)
        );
        assert_eq!(t.ingress_classes(), 3);
    }

    #[test]
    fn dest_sets_are_shared() {
        let mut b = RouteTableBuilder::<u32>::new(1);
        let s = b.dest_set(vec![1, 2, 3]);
        b.rule(Rule::new(I0, Matcher::exact("/a"), Action::Forward(s)))
            .rule(Rule::new(I0, Matcher::exact("/b"), Action::Forward(s)));
        let t = b.build().unwrap();
        let a = t.lookup(I0, b"/a").forward();
        let bb = t.lookup(I0, b"/b").forward();
        assert!(core::ptr::eq(a, bb));
        assert_eq!(t.dest_sets().len(), 1);
    }

    #[test]
    fn literal_pattern_and_empty_segments() {
        let mut b = RouteTableBuilder::<u32>::new(1);
        let s0 = b.dest_set(vec![0]);
        let s1 = b.dest_set(vec![1]);
        let s2 = b.dest_set(vec![2]);
        b.rule(Rule::new(
            I0,
            Matcher::pattern("/lit/eral"),
            Action::Forward(s0),
        ))
        .rule(Rule::new(I0, Matcher::exact("/a//b"), Action::Forward(s1)))
        .rule(Rule::new(I0, Matcher::pattern("/"), Action::Forward(s2)));
        let t = b.build().unwrap();
        assert_eq!(fwd(&t, I0, "/lit/eral"), [0]);
        assert!(fwd(&t, I0, "/lit/eral/x").is_empty());
        assert!(fwd(&t, I0, "/lit").is_empty());
        assert_eq!(fwd(&t, I0, "/a//b"), [1]);
        assert!(fwd(&t, I0, "/a/b").is_empty());
        assert_eq!(fwd(&t, I0, "/"), [2]);
    }

    fn random_segment(rng: &mut u64) -> String {
        // xorshift: deterministic, no extra dependency
        let mut next = || {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *rng
        };
        let len = 1 + (next() % 10) as usize;
        (0..len)
            .map(|_| (b'a' + (next() % 26) as u8) as char)
            .collect()
    }

    fn random_address(rng: &mut u64) -> String {
        let depth = 1 + (*rng % 4) as usize;
        let mut s = String::new();
        for _ in 0..depth {
            s.push('/');
            s.push_str(&random_segment(rng));
        }
        s
    }

    #[test]
    fn ten_thousand_random_routes() {
        let mut rng = 0x1234_5678_9abc_def1u64;
        let mut b = RouteTableBuilder::<u32>::new(2);
        let mut routes = std::collections::HashMap::new();
        while routes.len() < 10_000 {
            let a = random_address(&mut rng);
            if routes.contains_key(&a) {
                continue;
            }
            let id = routes.len() as u32;
            let set = b.dest_set(vec![id]);
            b.rule(Rule::new(I0, Matcher::exact(&a), Action::Forward(set)));
            routes.insert(a, id);
        }
        let t = b.build().unwrap();
        for (a, id) in &routes {
            assert_eq!(fwd(&t, I0, a), [*id], "{a}");
            assert!(t.lookup(I1, a.as_bytes()).drop_reason().is_some());
        }
        let mut misses = 0;
        while misses < 10_000 {
            let a = random_address(&mut rng);
            if routes.contains_key(&a) {
                continue;
            }
            misses += 1;
            assert_eq!(
                t.lookup(I0, a.as_bytes()).drop_reason(),
                Some(DropReason::NoRoute),
                "{a}"
            );
            // A route with an extra segment is not an exact match either.
            let longer = format!("{}/x", routes.keys().next().unwrap());
            assert!(t.lookup(I0, longer.as_bytes()).drop_reason().is_some());
        }
    }

    // ---- naive reference: scan all rules, apply the documented precedence ----

    fn trim(p: &[u8]) -> &[u8] {
        let mut p = p;
        while p.len() > 1 && p.ends_with(b"/") {
            p = &p[..p.len() - 1];
        }
        p
    }

    fn naive(rules: &[Rule], defaults: &[Action], ing: Ingress, addr: &[u8]) -> Action {
        let Some(&default) = defaults.get(ing.0 as usize) else {
            return Action::Drop(DropReason::UnknownIngress);
        };
        if addr.first() != Some(&b'/') {
            return default;
        }
        let mine = || rules.iter().filter(|r| r.ingress == ing);
        if let Some(r) = mine().find(|r| matches!(&r.matcher, Matcher::Exact(a) if &a[..] == addr))
        {
            return r.action;
        }
        let best_prefix = mine()
            .filter_map(|r| match &r.matcher {
                Matcher::Prefix(p) => {
                    let p = trim(p);
                    let hit = p == b"/"
                        || addr == p
                        || (addr.starts_with(p) && addr.get(p.len()) == Some(&b'/'));
                    hit.then_some((p.len(), r.action))
                }
                _ => None,
            })
            .max_by_key(|&(len, _)| len);
        if let Some((_, action)) = best_prefix {
            return action;
        }
        mine()
            .find(|r| matches!(&r.matcher, Matcher::Pattern(p) if crate::wire::pattern::matches(p, addr)))
            .map_or(default, |r| r.action)
    }

    fn seg() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "ab", "c", ""])
    }

    fn address() -> impl Strategy<Value = String> {
        proptest::collection::vec(seg(), 1..5).prop_map(|s| format!("/{}", s.join("/")))
    }

    fn pattern_str() -> impl Strategy<Value = String> {
        let pseg = prop::sample::select(vec![
            "a", "b", "ab", "c", "*", "?", "[ab]", "{a,ab}", "a*", "", "[!c]",
        ]);
        proptest::collection::vec(pseg, 1..5).prop_map(|s| format!("/{}", s.join("/")))
    }

    fn rule_strategy() -> impl Strategy<Value = (u16, u8, String, u8)> {
        (
            0u16..2,
            0u8..3,
            prop_oneof![address(), pattern_str(), Just("/".to_string())],
            0u8..8,
        )
    }

    fn action_for(k: u8, sets: &[DestSet]) -> Action {
        match k {
            0 => Action::Drop(DropReason::Filtered),
            1 => Action::Control(Protocol::Mesh),
            2 => Action::ForwardAndControl(sets[0], Protocol::Oschat),
            n => Action::Forward(sets[usize::from(n) % sets.len()]),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn lookup_agrees_with_naive_scan(
            raw in proptest::collection::vec(rule_strategy(), 0..30),
            default_kind in 0u8..8,
            addrs in proptest::collection::vec(address(), 1..30),
        ) {
            let mut b = RouteTableBuilder::<u32>::new(2);
            let sets: Vec<DestSet> = (0..5).map(|i| b.dest_set(vec![i, 100 + i])).collect();
            let mut rules = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (ing, kind, text, act) in raw {
                let matcher = match kind {
                    0 => Matcher::exact(&text),
                    1 => Matcher::prefix(&text),
                    _ => Matcher::pattern(&text),
                };
                let key = match &matcher {
                    Matcher::Exact(a) => Some((ing, 0, a.to_vec())),
                    Matcher::Prefix(p) => Some((ing, 1, trim(p).to_vec())),
                    Matcher::Pattern(_) => None,
                };
                if let Some(k) = key {
                    if !seen.insert(k) {
                        continue;
                    }
                }
                let rule = Rule::new(Ingress(ing), matcher, action_for(act, &sets));
                b.rule(rule.clone());
                rules.push(rule);
            }
            let default = action_for(default_kind, &sets);
            b.default_action(I1, default);
            let defaults = [Action::Drop(DropReason::NoRoute), default];
            let t = b.build().unwrap();
            for a in addrs.iter().map(String::as_str).chain(["/", "x", ""]) {
                for ing in [I0, I1, Ingress(2)] {
                    let want = t.verdict(naive(&rules, &defaults, ing, a.as_bytes()));
                    prop_assert_eq!(t.lookup(ing, a.as_bytes()), want, "{:?} on {:?}", a, ing);
                }
            }
        }

        #[test]
        fn lookup_never_panics(addr in proptest::collection::vec(any::<u8>(), 0..64), ing in any::<u16>()) {
            let mut b = RouteTableBuilder::<u32>::new(1);
            let s = b.dest_set(vec![1]);
            b.rule(Rule::new(I0, Matcher::pattern("//*"), Action::Forward(s)))
                .rule(Rule::new(I0, Matcher::prefix("/a"), Action::Control(Protocol::Messenger)));
            let t = b.build().unwrap();
            let v = t.lookup(Ingress(ing), &addr);
            if ing > 0 {
                prop_assert_eq!(v.drop_reason(), Some(DropReason::UnknownIngress));
            }
        }
    }
}
