//! The route table: for (ingress class, OSC address) it answers forward, control, both, or drop.
//!
//! What it does: the control thread describes routes as [`Rule`]s plus destination sets in a
//! [`RouteTableBuilder`] and compiles them once ([`RouteTableBuilder::build`], slow path,
//! `thiserror` errors). The resulting [`RouteTable`] is immutable; workers call
//! [`RouteTable::lookup`] on the raw address bytes of every packet. Lookup never allocates and
//! never panics, and its cost does not grow with the number of exact or prefix routes: it
//! hashes the whole address and probes one open-addressing table of all (ingress class,
//! address prefix) trie nodes; only if that is not an exact route does it hash the
//! whole-segment prefixes in one more pass and probe them from the root, so it grows only with
//! the address's length and segment count.
//!
//! What it does not do: parse packets (see `wire`), publish tables (the caller swaps an `Arc`),
//! hold live membership (the control thread recompiles), or count traffic.
//!
//! # Rules and precedence
//! A rule is an ingress class ([`Ingress`]), a [`Matcher`] and an [`Action`]. Rules only apply
//! to packets from their own ingress class. For one lookup:
//! 1. an **exact** rule whose address equals the packet's address wins;
//! 2. otherwise the **prefix** rule with the most path segments that is a whole-segment prefix
//!    of the address wins (`/messenger/gateway` matches `/messenger/gateway` and
//!    `/messenger/gateway/who/active`, not `/messenger/gatewayX`; the prefix `/` matches every
//!    address; a trailing `/` on a prefix is ignored);
//! 3. otherwise the first **pattern** rule, in rule order, whose OSC pattern (see
//!    [`crate::wire::pattern`]) matches the address, taken as a literal, wins;
//! 4. otherwise the ingress class's default action ([`RouteTableBuilder::default_action`],
//!    initially `Drop(NoRoute)`). An address that does not start with `/` only ever gets the
//!    default action.
//!
//! Two exact rules, or two prefix rules, with the same address on the same ingress class are a
//! compile error ([`CompileError::Duplicate`]); two patterns may overlap (rule order decides).
//!
//! # Cost
//! Exact and prefix rules: an exact hit is one hash, one probe and one byte comparison; a
//! prefix hit or a miss adds one probe per matching leading segment plus one, independent of
//! the number of rules. Pattern rules are stored under the longest run of literal segments they
//! start with (`/messenger/*/say` lives under `/messenger`), and only the pattern rules stored
//! on the address's own path are tried, and only when no exact or prefix rule matched; so their
//! cost grows with the number of patterns sharing the address's literal prefix, not with the
//! table. A pattern starting with a wildcard (`//foo`, `/*/x`) is tried for every address that
//! reaches step 3 on its ingress class.

mod compile;
mod table;

pub use compile::{CompileError, RouteTableBuilder, Site};
pub use table::RouteTable;

use core::fmt;

/// An ingress class: a small id the control thread assigns to a kind of endpoint (one bus, one
/// listener, one bridge side). Valid ids are `0..ingress_classes` of the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ingress(pub u16);

impl fmt::Display for Ingress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ingress {}", self.0)
    }
}

/// Which protocol state machine gets a control packet. Add a variant (and its name) to extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Messenger gateway (spec 000).
    Messenger,
    /// tcposcrouter (spec 001).
    Router,
    /// OSChat node (spec 003).
    Oschat,
    /// OSChat mesh gateways between subnets.
    Mesh,
    /// WebSocket gateway sessions (spec 004).
    Websocket,
}

impl Protocol {
    /// A short lowercase name, for logs and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Messenger => "messenger",
            Self::Router => "router",
            Self::Oschat => "oschat",
            Self::Mesh => "mesh",
            Self::Websocket => "websocket",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a packet is dropped. Add a variant (and its name) to extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The address is reserved for oscgate itself on this ingress.
    Reserved,
    /// No rule matched and the ingress class's default is to drop.
    NoRoute,
    /// A filter rule removed it (e.g. a bridge that only passes some prefixes).
    Filtered,
    /// [`RouteTable::lookup`] was called with an ingress class the table does not have.
    UnknownIngress,
}

impl DropReason {
    /// A short lowercase name, for logs and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::NoRoute => "no_route",
            Self::Filtered => "filtered",
            Self::UnknownIngress => "unknown_ingress",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A destination set registered with [`RouteTableBuilder::dest_set`]. Rules that name the same
/// `DestSet` share one pre-built slice in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestSet(pub(crate) u32);

impl DestSet {
    /// Position of the set in registration order.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a rule (or an ingress class's default) does with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send the packet unchanged to every destination of the set.
    Forward(DestSet),
    /// Hand the packet to a protocol state machine.
    Control(Protocol),
    /// Both: forward it and hand a copy to the state machine (e.g. an OSChat hello).
    ForwardAndControl(DestSet, Protocol),
    /// Drop it.
    Drop(DropReason),
}

/// How a rule selects addresses. Build with [`Matcher::exact`], [`Matcher::prefix`] or
/// [`Matcher::pattern`]; addresses must start with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Matcher {
    /// The address equals these bytes.
    Exact(Box<[u8]>),
    /// The address starts with these whole path segments.
    Prefix(Box<[u8]>),
    /// The OSC address pattern matches the address.
    Pattern(Box<[u8]>),
}

impl Matcher {
    /// Matches exactly `address`.
    pub fn exact(address: impl AsRef<[u8]>) -> Self {
        Self::Exact(address.as_ref().into())
    }

    /// Matches `prefix` and every address below it, on whole path segments.
    pub fn prefix(prefix: impl AsRef<[u8]>) -> Self {
        Self::Prefix(prefix.as_ref().into())
    }

    /// Matches every address the OSC address pattern `pattern` matches.
    pub fn pattern(pattern: impl AsRef<[u8]>) -> Self {
        Self::Pattern(pattern.as_ref().into())
    }

    /// The address, prefix or pattern bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Exact(b) | Self::Prefix(b) | Self::Pattern(b) => b,
        }
    }
}

/// One route: packets from `ingress` whose address `matcher` selects get `action`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The ingress class the rule applies to.
    pub ingress: Ingress,
    /// Which addresses it selects.
    pub matcher: Matcher,
    /// What happens to them.
    pub action: Action,
}

impl Rule {
    /// Shorthand for the struct literal.
    pub fn new(ingress: Ingress, matcher: Matcher, action: Action) -> Self {
        Self {
            ingress,
            matcher,
            action,
        }
    }
}

/// The answer of [`RouteTable::lookup`]: an [`Action`] with its destination set resolved to a
/// slice borrowed from the table. `Copy`, two words plus a tag.
pub enum Verdict<'a, D> {
    /// Send to every destination in the slice (which may be empty).
    Forward(&'a [D]),
    /// Hand to a protocol state machine.
    Control(Protocol),
    /// Forward and hand to the state machine.
    ForwardAndControl(&'a [D], Protocol),
    /// Drop.
    Drop(DropReason),
}

impl<'a, D> Verdict<'a, D> {
    /// The destinations to forward to; empty unless the verdict forwards.
    pub fn forward(&self) -> &'a [D] {
        match *self {
            Self::Forward(d) | Self::ForwardAndControl(d, _) => d,
            Self::Control(_) | Self::Drop(_) => &[],
        }
    }

    /// The protocol to hand the packet to, if any.
    pub fn control(&self) -> Option<Protocol> {
        match *self {
            Self::Control(p) | Self::ForwardAndControl(_, p) => Some(p),
            Self::Forward(_) | Self::Drop(_) => None,
        }
    }

    /// Why the packet is dropped, if it is.
    pub fn drop_reason(&self) -> Option<DropReason> {
        match *self {
            Self::Drop(r) => Some(r),
            _ => None,
        }
    }
}

impl<D> Clone for Verdict<'_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D> Copy for Verdict<'_, D> {}

impl<D: fmt::Debug> fmt::Debug for Verdict<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Forward(d) => f.debug_tuple("Forward").field(d).finish(),
            Self::Control(p) => f.debug_tuple("Control").field(p).finish(),
            Self::ForwardAndControl(d, p) => f
                .debug_tuple("ForwardAndControl")
                .field(d)
                .field(p)
                .finish(),
            Self::Drop(r) => f.debug_tuple("Drop").field(r).finish(),
        }
    }
}

impl<D: PartialEq> PartialEq for Verdict<'_, D> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Forward(a), Self::Forward(b)) => a == b,
            (Self::Control(a), Self::Control(b)) => a == b,
            (Self::ForwardAndControl(a, p), Self::ForwardAndControl(b, q)) => a == b && p == q,
            (Self::Drop(a), Self::Drop(b)) => a == b,
            _ => false,
        }
    }
}

impl<D: Eq> Eq for Verdict<'_, D> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_accessors() {
        let d = [1u32, 2];
        let v: Verdict<'_, u32> = Verdict::ForwardAndControl(&d, Protocol::Oschat);
        assert_eq!(v.forward(), &[1, 2]);
        assert_eq!(v.control(), Some(Protocol::Oschat));
        assert_eq!(v.drop_reason(), None);
        let w = v; // Copy
        assert_eq!(v, w);
        let f: Verdict<'_, u32> = Verdict::Forward(&d);
        assert_eq!((f.forward().len(), f.control()), (2, None));
        let c: Verdict<'_, u32> = Verdict::Control(Protocol::Mesh);
        assert!(c.forward().is_empty());
        assert_eq!(c.control(), Some(Protocol::Mesh));
        let x: Verdict<'_, u32> = Verdict::Drop(DropReason::Filtered);
        assert_eq!(x.drop_reason(), Some(DropReason::Filtered));
        assert_ne!(x, c);
        assert_eq!(format!("{x:?}"), "Drop(Filtered)");
    }

    #[test]
    fn names() {
        assert_eq!(Protocol::Websocket.to_string(), "websocket");
        assert_eq!(DropReason::NoRoute.to_string(), "no_route");
        assert_eq!(Ingress(3).to_string(), "ingress 3");
        assert_eq!(Matcher::prefix("/a").bytes(), b"/a");
    }

    #[test]
    fn verdict_is_small() {
        assert!(core::mem::size_of::<Verdict<'_, u64>>() <= 4 * core::mem::size_of::<usize>());
        assert!(core::mem::size_of::<Action>() <= 8);
    }
}
