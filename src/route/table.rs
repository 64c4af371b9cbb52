//! The compiled, immutable route table and its allocation-free lookup.
//!
//! What it does: holds one segment trie per ingress class, with all trie edges of all classes
//! in a single open-addressing hash table keyed by (parent node, segment bytes), and answers
//! [`RouteTable::lookup`] with the precedence documented in [`crate::route`].
//!
//! What it does not do: build itself (see `compile.rs`) or change after it is built.
//!
//! The edge table uses foldhash with a seed fixed at compile time. Only configuration decides
//! which keys are in it, and it is at most half full, so a hostile address can at worst make a
//! lookup miss after a short probe; it cannot grow or degrade the table.

use core::fmt;
use core::hash::{BuildHasher, Hasher};

use foldhash::fast::FixedState;

use super::{Action, DropReason, Ingress, Verdict};
use crate::wire::pattern;

/// Marks a vacant slot in the edge table.
pub(super) const VACANT: u32 = u32::MAX;

/// One trie edge: `parent --segment--> child`. The segment bytes live in `seg_bytes`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Edge {
    pub(super) hash: u64,
    pub(super) parent: u32,
    pub(super) child: u32,
    pub(super) seg_start: u32,
    pub(super) seg_len: u32,
}

impl Edge {
    pub(super) const EMPTY: Self = Self {
        hash: 0,
        parent: VACANT,
        child: VACANT,
        seg_start: 0,
        seg_len: 0,
    };
}

/// One trie node: the actions of rules whose literal path ends here.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Node {
    pub(super) exact: Option<Action>,
    pub(super) prefix: Option<Action>,
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

#[derive(Clone, Copy, Debug)]
pub(super) struct IngressEntry {
    pub(super) root: u32,
    pub(super) default: Action,
}

/// The compiled route table; see [`crate::route`] for the rules and their precedence.
///
/// `D` is the destination type (a socket address, a connection id, ...). The table is
/// immutable; share it between threads behind an `Arc` and swap in a new one to change routes.
pub struct RouteTable<D> {
    pub(super) ingress: Box<[IngressEntry]>,
    pub(super) nodes: Box<[Node]>,
    pub(super) edges: Box<[Edge]>,
    /// `edges.len() - 1`; `edges.len()` is a power of two.
    pub(super) edge_mask: usize,
    pub(super) seg_bytes: Box<[u8]>,
    pub(super) patterns: Box<[PatternRule]>,
    pub(super) pattern_bytes: Box<[u8]>,
    pub(super) sets: Box<[Box<[D]>]>,
    pub(super) hasher: FixedState,
}

/// Hash of one trie edge key.
#[inline]
pub(super) fn edge_hash(hasher: &FixedState, parent: u32, seg: &[u8]) -> u64 {
    let mut h = hasher.build_hasher();
    h.write_u32(parent);
    h.write(seg);
    h.finish()
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

/// Slice equality without a library `memcmp` call: segments are short, and the call overhead
/// was a third of a lookup in profiles.
#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let x = u64::from_ne_bytes(x.try_into().unwrap_or([0; 8]));
        let y = u64::from_ne_bytes(y.try_into().unwrap_or([0; 8]));
        if x != y {
            return false;
        }
    }
    let mut diff = 0u8;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        diff |= x ^ y;
    }
    diff == 0
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
        let Some(mut node) = self.nodes.get(entry.root as usize) else {
            return self.verdict(entry.default);
        };
        let mut node_id = entry.root;
        let mut prefix = node.prefix;
        let mut exact = None;
        let mut pos = Some(1);
        while let Some(start) = pos {
            let (seg, next) = split_segment(address, start);
            let Some((child_id, child)) = self.child(node_id, seg) else {
                break;
            };
            node_id = child_id;
            node = child;
            if node.prefix.is_some() {
                prefix = node.prefix;
            }
            if next.is_none() {
                exact = node.exact;
            }
            pos = next;
        }
        if let Some(action) = exact.or(prefix) {
            return self.verdict(action);
        }
        if node.patterns_on_path {
            if let Some(action) = self.match_patterns(entry.root, address) {
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

    /// Follows the edge `parent --seg-->`.
    #[inline]
    fn child(&self, parent: u32, seg: &[u8]) -> Option<(u32, &Node)> {
        let hash = edge_hash(&self.hasher, parent, seg);
        let mut slot = (hash as usize) & self.edge_mask;
        // The table is at most half full, so a vacant slot ends every probe; the bound only
        // guards against a broken invariant.
        for _ in 0..self.edges.len() {
            let edge = self.edges.get(slot)?;
            if edge.child == VACANT {
                return None;
            }
            if edge.hash == hash && edge.parent == parent {
                let start = edge.seg_start as usize;
                let stored = self.seg_bytes.get(start..start + edge.seg_len as usize)?;
                if bytes_eq(stored, seg) {
                    return self.nodes.get(edge.child as usize).map(|n| (edge.child, n));
                }
            }
            slot = (slot + 1) & self.edge_mask;
        }
        None
    }

    /// Second walk, only when no exact or prefix rule matched and some node on the path has
    /// pattern rules: the first matching pattern rule in rule order.
    fn match_patterns(&self, root: u32, address: &[u8]) -> Option<Action> {
        let mut best: Option<(u32, Action)> = None;
        let mut node_id = root;
        // `rest_at`: where the address continues after the current node's segments.
        let mut rest_at = 0;
        let mut pos = Some(1);
        loop {
            let node = self.nodes.get(node_id as usize)?;
            let rest = address.get(rest_at..).unwrap_or(&[]);
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
                    best = Some((p.rule, p.action));
                    break;
                }
            }
            let Some(start) = pos else { break };
            let (seg, next) = split_segment(address, start);
            let Some((child_id, _)) = self.child(node_id, seg) else {
                break;
            };
            node_id = child_id;
            rest_at = next.map_or(address.len(), |n| n - 1);
            pos = next;
        }
        best.map(|(_, action)| action)
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
            .field("edge_slots", &self.edges.len())
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
