//! An OSChat node's slow path ([`ChatNode`]): presence, the mesh and the standby's catch-up
//! put together, as the control thread runs them. Sans-IO like its parts.
//!
//! What it does: takes every OSChat packet the fast path passed on ([`ChatNode::heard`]:
//! which interface, its duplicate key, whether it was new, where the fast path already
//! forwarded it) and the passing of time ([`ChatNode::handle_timeout`]); emits the packets to
//! broadcast on each interface ([`ChatNode::poll_send`]) and the forwarding flags the fast
//! path must use ([`ChatNode::forwarding`]).
//!
//! What it does not do: sockets, clocks, the duplicate check of what is received (the fast
//! path does it, with the same [`Dedupe`] this node records its own sends in).
//!
//! # How nothing is lost or sent twice
//! - The fast path forwards a new message from `i` to `j` only when the published flags say
//!   this node is the active gateway there. Everything else it heard is passed here, and the
//!   [`Catchup`] remembers it for each direction it was not carried in, until the message is
//!   heard on the other side (the active gateway did its job) or the window ends.
//! - When this node becomes active for `i -> j` (after an election's wait, or taking over
//!   from a gateway that fell silent), it first sends what the catch-up holds for that
//!   direction, oldest first: the messages held during the wait and those the old gateway
//!   never carried. Receivers' duplicate filters drop anything that did get through.
//! - Flags reach the fast path a moment after a role changes: a new message that arrives
//!   here unforwarded while this node is already active is sent from here.
//! - Everything this node says itself (pings, list replies) is recorded in the duplicate
//!   filter before it goes out, so its echo, or a copy another gateway carries back, is
//!   dropped; a list reply another node already sent is not sent again.

use core::time::Duration;
use std::collections::VecDeque;
use std::sync::Arc;

use super::catchup::Catchup;
use super::mesh::{Mesh, MeshConfig, MeshMsg};
use super::oschat::{parse, Chat};
use super::presence::{Presence, PresenceConfig};
use crate::dedupe::{Dedupe, Seen};

/// The most interfaces a node handles (forwarding flags are bit masks).
pub const MAX_IFACES: usize = 32;

/// Everything a node is configured with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub mesh: MeshConfig,
    pub presence: PresenceConfig,
    /// How long the catch-up remembers a message (longer than a failover takes, at most the
    /// duplicate window so that what it sends late is still recognised downstream).
    pub catchup_window: Duration,
    /// Bytes remembered per direction.
    pub catchup_bytes: usize,
}

/// Counters, for status and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// Packets passed in that are not OSChat (should not happen: the fast path parses first).
    pub malformed: u64,
    /// Messages sent here because the fast path's flags were not yet published.
    pub late_forwarded: u64,
    /// Messages sent from the catch-up on becoming active.
    pub caught_up: u64,
    /// Own messages not sent because an identical one was heard already.
    pub own_suppressed: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct ChatNode {
    presence: Presence,
    mesh: Mesh,
    catchup: Catchup,
    ifaces: usize,
    dedupe: Arc<Dedupe>,
    /// Per receiving interface, the interfaces the fast path forwards to (bit masks).
    flags: Vec<u64>,
    out: VecDeque<(usize, Vec<u8>)>,
    identity: Vec<u8>,
    counters: NodeCounters,
}

impl ChatNode {
    /// A node starting at `now` (it announces at once when it has several interfaces).
    /// `dedupe` is the filter the fast path uses; `seed` drives every random choice.
    pub fn new(cfg: NodeConfig, dedupe: Arc<Dedupe>, seed: u64, now: Duration) -> ChatNode {
        let ifaces = cfg.mesh.interfaces.len().min(MAX_IFACES);
        let mut n = ChatNode {
            presence: Presence::new(cfg.presence, seed ^ 0x5052_4553),
            mesh: Mesh::new(cfg.mesh, seed, now),
            catchup: Catchup::new(ifaces, cfg.catchup_window, cfg.catchup_bytes),
            ifaces,
            dedupe,
            flags: vec![0; ifaces],
            out: VecDeque::new(),
            identity: Vec::new(),
            counters: NodeCounters::default(),
        };
        n.after_mesh(now);
        n
    }

    /// A packet heard on interface `iface` at `now`: its duplicate key (0 for mesh
    /// messages), whether the duplicate filter had not seen it, and the interfaces the fast
    /// path forwarded it to (bit mask).
    pub fn heard(
        &mut self,
        now: Duration,
        iface: usize,
        key: u64,
        first: bool,
        forwarded: u64,
        packet: &[u8],
    ) {
        if iface >= self.ifaces {
            return;
        }
        let Ok(chat) = parse(packet) else {
            self.counters.malformed += 1;
            return;
        };
        if let Some(m) = MeshMsg::from_chat(&chat) {
            self.mesh.handle(now, iface, &m);
            self.after_mesh(now);
            return;
        }
        let mut skip = forwarded | (1 << iface);
        if first {
            self.presence.handle(now, &chat);
            for to in 0..self.ifaces {
                if skip & (1 << to) == 0 && self.mesh.forwards(iface, to) {
                    self.out.push_back((to, packet.to_vec()));
                    self.counters.late_forwarded += 1;
                    skip |= 1 << to;
                }
            }
        }
        self.catchup.heard(now, iface, key, packet, first, skip);
        self.drain_presence(now);
    }

    /// Timers: pings and their reply windows, announces and their expiry, heartbeats,
    /// elections, the end of a winner's wait.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.presence.handle_timeout(now);
        self.mesh.handle_timeout(now);
        self.after_mesh(now);
        self.drain_presence(now);
        self.catchup.expire(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Duration> {
        [self.presence.poll_timeout(), self.mesh.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next packet to broadcast, and the interface to broadcast it on.
    pub fn poll_send(&mut self) -> Option<(usize, Vec<u8>)> {
        self.out.pop_front()
    }

    /// Per receiving interface, the interfaces the fast path forwards new messages to.
    pub fn forwarding(&self) -> &[u64] {
        &self.flags
    }

    /// A message this node says itself (for a WebSocket client in a room): recorded in
    /// presence and in the duplicate filter, then broadcast on every interface in use.
    /// False (nothing sent) if it is not a chat message this node may say (a mesh message,
    /// not OSChat) or an identical one was heard within the window.
    pub fn originate(&mut self, now: Duration, packet: &[u8]) -> bool {
        let Ok(chat) = parse(packet) else {
            return false;
        };
        if chat.is_mesh() {
            return false;
        }
        let key = key_of(&self.dedupe, &chat, &mut self.identity);
        if self.dedupe.check_and_insert(key, now.as_millis() as u64) == Seen::Duplicate {
            self.counters.own_suppressed += 1;
            return false;
        }
        self.presence.handle(now, &chat);
        for i in (0..self.ifaces).filter(|i| self.mesh.is_up(*i)) {
            self.out.push_back((i, packet.to_vec()));
        }
        self.drain_presence(now);
        true
    }

    /// Interface `iface` was lost (`up` false) or is back: see [`Mesh::set_iface_up`]. Nothing
    /// is sent on a lost interface.
    pub fn set_iface_up(&mut self, now: Duration, iface: usize, up: bool) {
        self.mesh.set_iface_up(now, iface, up);
        self.after_mesh(now);
    }

    /// Shutting down: resigns every gateway role (the resignations are queued to send).
    pub fn shutdown(&mut self, now: Duration) {
        self.mesh.resign_all();
        self.after_mesh(now);
    }

    /// Presence as this node sees it.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    /// The mesh as this node sees it.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// Counters.
    pub fn counters(&self) -> NodeCounters {
        self.counters
    }

    /// Messages the catch-up dropped to stay within its bound.
    pub fn catchup_evicted(&self) -> u64 {
        self.catchup.evicted()
    }

    /// Sends what the mesh queued; on every direction newly active, sends what the catch-up
    /// holds for it first; recomputes the flags.
    fn after_mesh(&mut self, now: Duration) {
        let mut buf = Vec::new();
        while let Some(s) = self.mesh.poll_send() {
            if s.iface < self.ifaces && s.msg.chat().write(&mut buf).is_ok() {
                self.out.push_back((s.iface, std::mem::take(&mut buf)));
            }
        }
        for from in 0..self.ifaces {
            let mut mask = 0u64;
            for to in 0..self.ifaces {
                if self.mesh.forwards(from, to) {
                    mask |= 1 << to;
                    if self.flags[from] & (1 << to) == 0 {
                        for p in self.catchup.take_over(now, from, to) {
                            self.counters.caught_up += 1;
                            self.out.push_back((to, p));
                        }
                    }
                }
            }
            self.flags[from] = mask;
        }
    }

    /// Sends what presence queued on every interface, each recorded in the duplicate filter
    /// first (skipped if an identical message was heard within the window).
    fn drain_presence(&mut self, now: Duration) {
        let now_ms = now.as_millis() as u64;
        let mut buf = Vec::new();
        while let Some(o) = self.presence.poll_send() {
            let chat = o.chat();
            chat.identity(&mut self.identity);
            let key = self.dedupe.key_of(&self.identity);
            if self.dedupe.check_and_insert(key, now_ms) == Seen::Duplicate {
                self.counters.own_suppressed += 1;
                continue;
            }
            if chat.write(&mut buf).is_err() {
                continue;
            }
            for i in (0..self.ifaces).filter(|i| self.mesh.is_up(*i)) {
                self.out.push_back((i, buf.clone()));
            }
        }
    }
}

/// The duplicate key of a parsed OSChat message under `dedupe`'s hasher (`scratch` holds
/// the identity bytes).
pub fn key_of(dedupe: &Dedupe, chat: &Chat<'_>, scratch: &mut Vec<u8>) -> u64 {
    chat.identity(scratch);
    dedupe.key_of(scratch)
}

#[cfg(test)]
mod tests;
