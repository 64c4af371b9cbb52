//! The route-table compiler (slow path): rules and destination sets in, [`RouteTable`] out.
//!
//! What it does: checks every rule (addresses, patterns, ingress classes, destination sets,
//! duplicates) and reports the first problem as a [`CompileError`] naming the rule; builds the
//! per-ingress segment tries, anchors each pattern under its literal leading segments, and
//! lays everything out in a few flat boxed slices for the lookup: one open-addressing table of
//! all non-root nodes keyed by (ingress class, address prefix), the nodes' pattern lists, and
//! the key bytes, shared between a node and its descendants.
//!
//! What it does not do: run on the hot path, or keep any state after `build`.

use core::fmt;
use std::collections::HashMap;

use foldhash::fast::FixedState;

use super::table::{
    edge_hash, prefix_hash, split_segment, IngressEntry, Node, PatternRule, RouteTable, Slot,
    VACANT,
};
use super::{Action, DestSet, DropReason, Ingress, Matcher, Rule};
use crate::wire::pattern::{self, PatternError};

/// Where a compile error was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// The rule with this index (in the order rules were added, from 0).
    Rule(usize),
    /// The default action of this ingress class.
    Default(Ingress),
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rule(i) => write!(f, "route rule {i}"),
            Self::Default(ing) => write!(f, "default action of ingress class {}", ing.0),
        }
    }
}

/// Why a route table could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A rule has an empty address, prefix or pattern.
    #[error("route rule {rule}: empty address; OSC addresses start with '/', e.g. \"/messenger\"")]
    EmptyAddress {
        /// Index of the rule.
        rule: usize,
    },
    /// A rule's address or prefix does not start with `/`.
    #[error("route rule {rule}: address {address:?} does not start with '/'")]
    NoLeadingSlash {
        /// Index of the rule.
        rule: usize,
        /// The address, lossily decoded.
        address: String,
    },
    /// A rule's OSC pattern is malformed.
    #[error("route rule {rule}: bad OSC address pattern {pattern:?}: {source}")]
    BadPattern {
        /// Index of the rule.
        rule: usize,
        /// The pattern, lossily decoded.
        pattern: String,
        /// What is wrong with it.
        source: PatternError,
    },
    /// A rule or default names an ingress class the builder was not created with.
    #[error("{at}: ingress class {ingress} does not exist; this table has classes 0..{classes}")]
    UnknownIngress {
        /// Where.
        at: Site,
        /// The ingress class named.
        ingress: u16,
        /// How many classes the builder has.
        classes: u16,
    },
    /// An action names a destination set that this builder did not hand out.
    #[error("{at}: destination set {set} was not registered with this builder ({sets} sets)")]
    UnknownDestSet {
        /// Where.
        at: Site,
        /// The set's index.
        set: usize,
        /// How many sets the builder has.
        sets: usize,
    },
    /// Two exact rules, or two prefix rules, have the same address and ingress class.
    #[error(
        "route rule {rule}: {kind} {address:?} on ingress class {ingress} is already routed by \
         rule {first}; remove one of them"
    )]
    Duplicate {
        /// Index of the later rule.
        rule: usize,
        /// Index of the earlier rule.
        first: usize,
        /// "exact address" or "prefix".
        kind: &'static str,
        /// The address, lossily decoded (prefixes without their trailing '/').
        address: String,
        /// The ingress class.
        ingress: u16,
    },
    /// The table would need more than `u32::MAX - 1` of something.
    #[error("route table too large: more than {limit} {what}")]
    TooLarge {
        /// What overflowed.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
}

/// Collects destination sets and rules, then compiles them into a [`RouteTable`].
///
/// ```
/// use oscgate::route::*;
/// let mut b = RouteTableBuilder::<u32>::new(2);
/// let patrons = b.dest_set(vec![1, 2, 3]);
/// b.rule(Rule::new(Ingress(0), Matcher::prefix("/messenger"), Action::Forward(patrons)));
/// b.rule(Rule::new(Ingress(0), Matcher::exact("/messenger/gateway"), Action::Control(Protocol::Messenger)));
/// let table = b.build().unwrap();
/// assert_eq!(table.lookup(Ingress(0), b"/messenger/me/say").forward(), &[1, 2, 3]);
/// assert_eq!(table.lookup(Ingress(0), b"/messenger/gateway").control(), Some(Protocol::Messenger));
/// assert_eq!(table.lookup(Ingress(1), b"/messenger/me/say").drop_reason(), Some(DropReason::NoRoute));
/// ```
#[derive(Debug)]
pub struct RouteTableBuilder<D> {
    classes: u16,
    sets: Vec<Box<[D]>>,
    rules: Vec<Rule>,
    defaults: Vec<(Ingress, Action)>,
    seed: u64,
}

/// Default seed of the key hash; any value works (see `table.rs`).
const DEFAULT_SEED: u64 = 0x6f73_6367_6174_6521;

impl<D> RouteTableBuilder<D> {
    /// A builder for ingress classes `0..ingress_classes`, every default `Drop(NoRoute)`.
    pub fn new(ingress_classes: u16) -> Self {
        Self {
            classes: ingress_classes,
            sets: Vec::new(),
            rules: Vec::new(),
            defaults: Vec::new(),
            seed: DEFAULT_SEED,
        }
    }

    /// Registers a destination set. Every action that names the returned id shares the one
    /// slice in the table.
    pub fn dest_set(&mut self, destinations: impl Into<Box<[D]>>) -> DestSet {
        let id = DestSet(u32::try_from(self.sets.len()).unwrap_or(u32::MAX));
        self.sets.push(destinations.into());
        id
    }

    /// Adds a rule. Rule indices (for pattern order and error messages) count from 0 in the
    /// order of these calls.
    pub fn rule(&mut self, rule: Rule) -> &mut Self {
        self.rules.push(rule);
        self
    }

    /// Sets the action for packets on `ingress` that no rule matches (default
    /// `Drop(NoRoute)`). The last call for a class wins.
    pub fn default_action(&mut self, ingress: Ingress, action: Action) -> &mut Self {
        self.defaults.push((ingress, action));
        self
    }

    /// Sets the seed of the key hash (mainly for tests; the default is fine).
    pub fn hash_seed(&mut self, seed: u64) -> &mut Self {
        self.seed = seed;
        self
    }

    /// Checks every rule and compiles the table.
    pub fn build(self) -> Result<RouteTable<D>, CompileError> {
        let classes = self.classes;
        let sets = self.sets.len();
        let check_ingress = |at: Site, ing: Ingress| {
            if ing.0 < classes {
                Ok(())
            } else {
                Err(CompileError::UnknownIngress {
                    at,
                    ingress: ing.0,
                    classes,
                })
            }
        };
        let check_action = |at: Site, action: Action| match action {
            Action::Forward(s) | Action::ForwardAndControl(s, _) if s.index() >= sets => {
                Err(CompileError::UnknownDestSet {
                    at,
                    set: s.index(),
                    sets,
                })
            }
            _ => Ok(()),
        };
        if u32::try_from(sets).is_err() {
            return Err(too_large("destination sets"));
        }

        let mut defaults = vec![Action::Drop(DropReason::NoRoute); usize::from(classes)];
        for &(ing, action) in &self.defaults {
            check_ingress(Site::Default(ing), ing)?;
            check_action(Site::Default(ing), action)?;
            defaults[usize::from(ing.0)] = action;
        }

        let mut trie = Trie::new(classes);
        for (i, rule) in self.rules.iter().enumerate() {
            check_ingress(Site::Rule(i), rule.ingress)?;
            check_action(Site::Rule(i), rule.action)?;
            let rule_id = u32::try_from(i).map_err(|_| too_large("rules"))?;
            let root = u32::from(rule.ingress.0);
            let dup = |first: usize, kind: &'static str, address: &[u8]| CompileError::Duplicate {
                rule: i,
                first,
                kind,
                address: lossy(address),
                ingress: rule.ingress.0,
            };
            match &rule.matcher {
                Matcher::Exact(address) => {
                    check_address(i, address)?;
                    let node = trie.path(root, Segments::new(address))?;
                    let slot = &mut trie.nodes[node].exact;
                    if let Some((first, _)) = *slot {
                        return Err(dup(first, "exact address", address));
                    }
                    *slot = Some((i, rule.action));
                }
                Matcher::Prefix(prefix) => {
                    check_address(i, prefix)?;
                    let prefix = trim_trailing_slashes(prefix);
                    let node = if prefix == b"/" {
                        root as usize
                    } else {
                        trie.path(root, Segments::new(prefix))?
                    };
                    let slot = &mut trie.nodes[node].prefix;
                    if let Some((first, _)) = *slot {
                        return Err(dup(first, "prefix", prefix));
                    }
                    *slot = Some((i, rule.action));
                }
                Matcher::Pattern(pat) => {
                    if let Err(source) = pattern::validate(pat) {
                        return Err(if source == PatternError::Empty {
                            CompileError::EmptyAddress { rule: i }
                        } else {
                            CompileError::BadPattern {
                                rule: i,
                                pattern: lossy(pat),
                                source,
                            }
                        });
                    }
                    let rest_at = literal_prefix_len(pat);
                    let anchor = pat.get(..rest_at).unwrap_or(&[]);
                    let node = if anchor.is_empty() {
                        root as usize
                    } else {
                        trie.path(root, Segments::new(anchor))?
                    };
                    let rest = pat.get(rest_at..).unwrap_or(&[]);
                    trie.add_pattern(node, rule_id, rest, rule.action)?;
                }
            }
        }

        trie.finish(defaults, self.sets, FixedState::with_seed(self.seed))
    }
}

fn too_large(what: &'static str) -> CompileError {
    CompileError::TooLarge {
        what,
        limit: u64::from(u32::MAX - 1),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check_address(rule: usize, address: &[u8]) -> Result<(), CompileError> {
    match address.first() {
        None => Err(CompileError::EmptyAddress { rule }),
        Some(b'/') => Ok(()),
        Some(_) => Err(CompileError::NoLeadingSlash {
            rule,
            address: lossy(address),
        }),
    }
}

/// `/a/b/` -> `/a/b`; `/` stays `/`.
fn trim_trailing_slashes(prefix: &[u8]) -> &[u8] {
    let mut p = prefix;
    while p.len() > 1 && p.ends_with(b"/") {
        p = p.get(..p.len() - 1).unwrap_or(p);
    }
    p
}

/// Length of the run of literal leading segments of a valid pattern (`/messenger/*/say` -> 10,
/// the length of `/messenger`). A segment is literal when it has no `?*[{` and is not the empty
/// segment of a `//`. The rest of the pattern is empty or starts with `/`.
fn literal_prefix_len(pat: &[u8]) -> usize {
    let mut start = Some(1);
    while let Some(s) = start {
        let (seg, next) = split_segment(pat, s);
        let marker = seg.is_empty() && next.is_some();
        if marker || seg.iter().any(|b| matches!(b, b'?' | b'*' | b'[' | b'{')) {
            return s - 1;
        }
        start = next;
    }
    pat.len()
}

/// The segments of an address that starts with `/`.
struct Segments<'a> {
    address: &'a [u8],
    pos: Option<usize>,
}

impl<'a> Segments<'a> {
    fn new(address: &'a [u8]) -> Self {
        Self {
            address,
            pos: Some(1),
        }
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let (seg, next) = split_segment(self.address, self.pos?);
        self.pos = next;
        Some(seg)
    }
}

#[derive(Default)]
struct BuildNode {
    parent: Option<usize>,
    /// The address prefix this node stands for (`/a/b`); empty for the roots.
    key: Vec<u8>,
    exact: Option<(usize, Action)>,
    prefix: Option<(usize, Action)>,
    /// (rule, rest start, rest len) into `Trie::pattern_bytes`, in rule order.
    patterns: Vec<(u32, u32, u32, Action)>,
}

/// The trie while it is being built: nodes 0..classes are the roots.
struct Trie {
    nodes: Vec<BuildNode>,
    edges: HashMap<(usize, Box<[u8]>), usize>,
    pattern_bytes: Vec<u8>,
}

impl Trie {
    fn new(classes: u16) -> Self {
        Self {
            nodes: (0..classes).map(|_| BuildNode::default()).collect(),
            edges: HashMap::new(),
            pattern_bytes: Vec::new(),
        }
    }

    /// The node reached from `root` along `segments`, created as needed.
    fn path<'s>(
        &mut self,
        root: u32,
        segments: impl Iterator<Item = &'s [u8]>,
    ) -> Result<usize, CompileError> {
        let mut node = root as usize;
        for seg in segments {
            let key = (node, Box::<[u8]>::from(seg));
            node = match self.edges.get(&key) {
                Some(&child) => child,
                None => {
                    let child = self.nodes.len();
                    if child >= (u32::MAX - 1) as usize {
                        return Err(too_large("trie nodes"));
                    }
                    let parent_key = &self.nodes[node].key;
                    let mut full = Vec::with_capacity(parent_key.len() + 1 + seg.len());
                    full.extend_from_slice(parent_key);
                    full.push(b'/');
                    full.extend_from_slice(seg);
                    if u32::try_from(full.len()).is_err() {
                        return Err(too_large("address bytes"));
                    }
                    self.nodes.push(BuildNode {
                        parent: Some(node),
                        key: full,
                        ..BuildNode::default()
                    });
                    self.edges.insert(key, child);
                    child
                }
            };
        }
        Ok(node)
    }

    fn add_pattern(
        &mut self,
        node: usize,
        rule: u32,
        rest: &[u8],
        action: Action,
    ) -> Result<(), CompileError> {
        let start =
            u32::try_from(self.pattern_bytes.len()).map_err(|_| too_large("pattern bytes"))?;
        let len = u32::try_from(rest.len()).map_err(|_| too_large("pattern bytes"))?;
        start
            .checked_add(len)
            .ok_or_else(|| too_large("pattern bytes"))?;
        self.pattern_bytes.extend_from_slice(rest);
        self.nodes[node].patterns.push((rule, start, len, action));
        Ok(())
    }

    fn finish<D>(
        self,
        defaults: Vec<Action>,
        sets: Vec<Box<[D]>>,
        hasher: FixedState,
    ) -> Result<RouteTable<D>, CompileError> {
        let classes = defaults.len();
        // Per node, in index order (parents always have smaller indices than their children):
        // its ingress class, segment count and the nearest prefix action at or above it.
        let mut nodes: Vec<Node> = Vec::with_capacity(self.nodes.len());
        let mut info: Vec<(u16, u32, Option<Action>)> = Vec::with_capacity(self.nodes.len());
        let mut patterns = Vec::new();
        for (i, b) in self.nodes.iter().enumerate() {
            let pat_start =
                u32::try_from(patterns.len()).map_err(|_| too_large("pattern rules"))?;
            for &(rule, rest_start, rest_len, action) in &b.patterns {
                patterns.push(PatternRule {
                    rule,
                    rest_start,
                    rest_len,
                    action,
                });
            }
            let pat_len =
                u32::try_from(b.patterns.len()).map_err(|_| too_large("pattern rules"))?;
            let own_prefix = b.prefix.map(|(_, a)| a);
            let (inherited, here) = match b.parent.and_then(|p| Some((nodes.get(p)?, info.get(p)?)))
            {
                Some((pn, &(ing, depth, prefix))) => {
                    (pn.patterns_on_path, (ing, depth + 1, own_prefix.or(prefix)))
                }
                None => (false, (u16::try_from(i).unwrap_or(VACANT), 0, own_prefix)),
            };
            nodes.push(Node {
                pat_start,
                pat_len,
                patterns_on_path: inherited || !b.patterns.is_empty(),
            });
            info.push(here);
        }

        // Key bytes: a node's key is a prefix of its children's keys, so walking the nodes
        // backwards, a node reuses the bytes of its first child seen, and only leaves add bytes.
        let mut key_start: Vec<Option<u32>> = vec![None; self.nodes.len()];
        let mut key_bytes = Vec::new();
        for i in (classes..self.nodes.len()).rev() {
            let b = &self.nodes[i];
            let start = match key_start[i] {
                Some(start) => start,
                None => {
                    let start = u32::try_from(key_bytes.len())
                        .ok()
                        .filter(|s| s.checked_add(b.key.len() as u32).is_some())
                        .ok_or_else(|| too_large("address bytes"))?;
                    key_bytes.extend_from_slice(&b.key);
                    key_start[i] = Some(start);
                    start
                }
            };
            if let Some(p) = b.parent {
                key_start[p].get_or_insert(start);
            }
        }

        // Per-class seeds for the prefix hashes, from the seeded foldhash state.
        let seeds: Vec<u64> = (0..classes)
            .map(|c| edge_hash(&hasher, c as u32, &[]))
            .collect();

        // Slots: open addressing, linear probing, at most a quarter full (short probe runs for
        // misses; 32-byte slots keep even 10 000 routes within a few MB).
        let keyed = self.nodes.len() - classes;
        let slot_count = (keyed * 4).max(8).next_power_of_two();
        let mask = slot_count - 1;
        let mut slots = vec![Slot::EMPTY; slot_count];
        let mut slot_nodes = vec![u32::MAX; slot_count];
        let mut depths = vec![0u32; classes];
        for i in classes..self.nodes.len() {
            let b = &self.nodes[i];
            let (ing, depth, prefix) = info[i];
            let seed = seeds[usize::from(ing)];
            depths[usize::from(ing)] = depths[usize::from(ing)].max(depth);
            let hash = prefix_hash(seed, &b.key);
            let mut at = (hash as usize) & mask;
            while slots[at].ingress != VACANT {
                at = (at + 1) & mask;
            }
            slots[at] = Slot {
                fingerprint: (hash >> 32) as u32,
                ingress: ing,
                patterns_on_path: nodes[i].patterns_on_path,
                key_start: key_start[i].unwrap_or(0),
                key_len: b.key.len() as u32,
                exact: b.exact.map(|(_, a)| a),
                prefix,
            };
            slot_nodes[at] = i as u32;
        }

        let ingress = defaults
            .into_iter()
            .enumerate()
            .map(|(i, default)| IngressEntry {
                seed: seeds[i],
                root: i as u32,
                depth: depths[i],
                default,
                prefix: info[i].2,
                patterns: nodes[i].patterns_on_path,
            })
            .collect();
        Ok(RouteTable {
            ingress,
            nodes: nodes.into_boxed_slice(),
            slots: slots.into_boxed_slice(),
            slot_nodes: slot_nodes.into_boxed_slice(),
            slot_mask: mask,
            key_bytes: key_bytes.into_boxed_slice(),
            patterns: patterns.into_boxed_slice(),
            pattern_bytes: self.pattern_bytes.into_boxed_slice(),
            sets: sets.into_boxed_slice(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Protocol;

    const I0: Ingress = Ingress(0);

    fn build_one(matcher: Matcher) -> Result<RouteTable<u32>, CompileError> {
        let mut b = RouteTableBuilder::new(1);
        b.rule(Rule::new(
            I0,
            Matcher::exact("/ok"),
            Action::Control(Protocol::Mesh),
        ))
        .rule(Rule::new(I0, matcher, Action::Drop(DropReason::Filtered)));
        b.build()
    }

    #[test]
    fn address_errors_name_the_rule() {
        for m in [
            Matcher::exact(""),
            Matcher::prefix(""),
            Matcher::pattern(""),
        ] {
            assert_eq!(
                build_one(m).unwrap_err(),
                CompileError::EmptyAddress { rule: 1 }
            );
        }
        for m in [Matcher::exact("a/b"), Matcher::prefix("a")] {
            let e = build_one(m).unwrap_err();
            assert!(
                matches!(e, CompileError::NoLeadingSlash { rule: 1, .. }),
                "{e:?}"
            );
            assert!(e.to_string().contains("route rule 1"), "{e}");
        }
        let e = build_one(Matcher::pattern("/a/[bc")).unwrap_err();
        assert_eq!(
            e,
            CompileError::BadPattern {
                rule: 1,
                pattern: "/a/[bc".into(),
                source: PatternError::UnclosedBracket { offset: 3 },
            }
        );
        assert!(e.to_string().contains("byte 3"), "{e}");
        let e = build_one(Matcher::pattern("a*")).unwrap_err();
        assert!(matches!(
            e,
            CompileError::BadPattern {
                source: PatternError::NoLeadingSlash,
                ..
            }
        ));
    }

    #[test]
    fn unknown_ingress_and_dest_set() {
        let mut b = RouteTableBuilder::<u32>::new(2);
        b.rule(Rule::new(
            Ingress(2),
            Matcher::exact("/a"),
            Action::Control(Protocol::Router),
        ));
        assert_eq!(
            b.build().unwrap_err(),
            CompileError::UnknownIngress {
                at: Site::Rule(0),
                ingress: 2,
                classes: 2
            }
        );

        let mut b = RouteTableBuilder::<u32>::new(2);
        b.default_action(Ingress(5), Action::Drop(DropReason::Reserved));
        let e = b.build().unwrap_err();
        assert!(matches!(
            e,
            CompileError::UnknownIngress {
                at: Site::Default(Ingress(5)),
                ..
            }
        ));
        assert!(
            e.to_string().contains("default action of ingress class 5"),
            "{e}"
        );

        let mut other = RouteTableBuilder::<u32>::new(1);
        other.dest_set(vec![1]);
        let foreign = other.dest_set(vec![2]);
        let mut b = RouteTableBuilder::<u32>::new(1);
        b.dest_set(vec![9]);
        b.rule(Rule::new(
            I0,
            Matcher::prefix("/a"),
            Action::ForwardAndControl(foreign, Protocol::Oschat),
        ));
        assert_eq!(
            b.build().unwrap_err(),
            CompileError::UnknownDestSet {
                at: Site::Rule(0),
                set: 1,
                sets: 1
            }
        );
        let mut b = RouteTableBuilder::<u32>::new(1);
        b.default_action(I0, Action::Forward(foreign));
        assert!(matches!(
            b.build().unwrap_err(),
            CompileError::UnknownDestSet {
                at: Site::Default(I0),
                ..
            }
        ));
    }

    #[test]
    fn duplicates_are_errors_but_overlapping_patterns_are_not() {
        let dup = |a: Matcher, b: Matcher| {
            let mut t = RouteTableBuilder::<u32>::new(2);
            t.rule(Rule::new(I0, a, Action::Drop(DropReason::Filtered)))
                .rule(Rule::new(
                    Ingress(1),
                    b.clone(),
                    Action::Drop(DropReason::Filtered),
                ))
                .rule(Rule::new(I0, b, Action::Drop(DropReason::Reserved)));
            t.build()
        };
        let e = dup(Matcher::exact("/a/b"), Matcher::exact("/a/b")).unwrap_err();
        assert!(
            matches!(
                e,
                CompileError::Duplicate {
                    rule: 2,
                    first: 0,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("already routed by rule 0"), "{e}");
        // Trailing slashes on prefixes are ignored, so these two are the same prefix.
        let e = dup(Matcher::prefix("/a/"), Matcher::prefix("/a")).unwrap_err();
        assert!(
            matches!(e, CompileError::Duplicate { kind: "prefix", .. }),
            "{e:?}"
        );
        // An exact and a prefix on the same address are distinct rules.
        assert!(dup(Matcher::exact("/a"), Matcher::prefix("/a")).is_ok());
        assert!(dup(Matcher::pattern("/a/*"), Matcher::pattern("/a/*")).is_ok());
    }

    #[test]
    fn literal_prefix_of_patterns() {
        for (p, want) in [
            ("/messenger/*/say", "/messenger"),
            ("/a/b", "/a/b"),
            ("//foo", ""),
            ("/a//b", "/a"),
            ("/*", ""),
            ("/a/{b,c}", "/a"),
            ("/a]/b?", "/a]"),
            ("/", "/"),
            ("/a/", "/a/"),
        ] {
            assert_eq!(&p[..literal_prefix_len(p.as_bytes())], want, "{p}");
        }
        assert_eq!(trim_trailing_slashes(b"/a//"), b"/a");
        assert_eq!(trim_trailing_slashes(b"//"), b"/");
        assert_eq!(trim_trailing_slashes(b"/"), b"/");
    }

    #[test]
    fn patterns_are_anchored_under_their_literal_prefix() {
        let mut b = RouteTableBuilder::<u32>::new(1);
        b.rule(Rule::new(
            I0,
            Matcher::pattern("/m/x/*"),
            Action::Drop(DropReason::Filtered),
        ))
        .rule(Rule::new(
            I0,
            Matcher::pattern("//y"),
            Action::Drop(DropReason::Filtered),
        ));
        let t = b.build().unwrap();
        // root(1) + m + x; the `//y` pattern adds no node.
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.nodes[0].pat_len, 1);
        assert_eq!(t.nodes[2].pat_len, 1);
        assert!(t.nodes.iter().all(|n| n.patterns_on_path));
    }
}
