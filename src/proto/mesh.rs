//! The OSChat mesh as a sans-IO state machine ([`Mesh`]): announces with TTLs, and the
//! election of one gateway per (segment, remote network), with heartbeats, missed-heartbeat
//! detection, elect and resign, and the random wait before a winner starts routing.
//!
//! What it does: takes mesh messages heard on each of this node's interfaces
//! ([`Mesh::handle`]) and the passing of time ([`Mesh::handle_timeout`]); emits the mesh
//! messages to broadcast on each interface ([`Mesh::poll_send`]) and answers "may I forward
//! what I hear on interface `from` to interface `to`?" ([`Mesh::forwards`]) and "must I hold
//! it for now?" ([`Mesh::holding`]).
//!
//! What it does not do: sockets, clocks, the duplicate filter, buffering the held messages
//! (the engine does, and flushes when [`Mesh::forwards`] turns true), or the standby's
//! catch-up flush.
//!
//! # Decisions (the specs README fixes the first three)
//! - The gateway on segment `s` to network `n` is, among the nodes that announced `n` on `s`
//!   (this node included if it reaches `n`), the one with the fewest hops; ties go to the
//!   lowest node GUID (string order).
//! - A heartbeat is missed after `miss_after` (1.5 s); `misses` (2) missed heartbeats start an
//!   election, and the silent gateway's announces for that network on that segment are dropped
//!   first (else it would win again until its announce expires).
//! - A node that finds itself the winner waits a random 50-250 ms before heartbeating and
//!   routing, and steps back if it hears another heartbeat for that network meanwhile; the
//!   engine holds messages for that network during the wait ([`Mesh::holding`]) and sends them
//!   when it starts routing.
//! - No pre-emption: a node that starts (or restarts) listens for `misses * miss_after` before
//!   electing, and a running gateway keeps its role until it falls silent, resigns, or loses
//!   an election someone forced with `elect`; a returning node does not take over, so a
//!   restart causes no flapping and no duplicates.
//! - A node that hears an announce from a node it has not heard on that segment before
//!   answers with its own announces there: a node that started after this one's last
//!   announce would otherwise not know it for up to 150 s, elect itself, and two gateways
//!   would forward the same traffic.
//! - A node that hears `elect` answers with its own (at most once per `miss_after` per
//!   network and segment, so elections do not echo) and re-runs the election there.
//! - A heartbeat from a node not heard announcing makes it a candidate at this node's own
//!   distance (until its announce says otherwise): two gateways that missed each other's
//!   announces settle by GUID rather than both forwarding.
//! - A node with one interface takes part in elections (it may be asked) but never wins one:
//!   it reaches no other network.

use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use super::oschat::Chat;
use super::SplitMix64;

/// One interface of this node: the network (CIDR text) its segment is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub network: String,
}

/// Timers and limits.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// This node's GUID.
    pub node: String,
    pub interfaces: Vec<Iface>,
    pub announce_every: Duration,
    pub announce_ttl: Duration,
    pub heartbeat: Duration,
    pub miss_after: Duration,
    pub misses: u32,
    pub max_hops: i64,
    pub wait_min: Duration,
    pub wait_max: Duration,
}

impl MeshConfig {
    /// The specs README's figures for `node` with these interfaces.
    pub fn new(node: &str, interfaces: Vec<Iface>) -> MeshConfig {
        MeshConfig {
            node: node.to_owned(),
            interfaces,
            announce_every: Duration::from_secs(150),
            announce_ttl: Duration::from_secs(300),
            heartbeat: Duration::from_secs(1),
            miss_after: Duration::from_millis(1500),
            misses: 2,
            max_hops: 8,
            wait_min: Duration::from_millis(50),
            wait_max: Duration::from_millis(250),
        }
    }
}

/// A mesh message to broadcast on interface `iface`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub iface: usize,
    pub msg: MeshMsg,
}

/// The mesh messages, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshMsg {
    /// `hops: None` is a withdraw.
    Announce {
        node: String,
        network: String,
        hops: Option<i64>,
    },
    Heartbeat {
        node: String,
        network: String,
    },
    Elect {
        node: String,
        network: String,
    },
    Resign {
        node: String,
        network: String,
    },
}

impl MeshMsg {
    /// The mesh message a parsed OSChat message is, if it is one.
    pub fn from_chat(chat: &Chat<'_>) -> Option<MeshMsg> {
        let own = |n: &str, w: &str| (n.to_owned(), w.to_owned());
        Some(match *chat {
            Chat::Announce {
                node,
                network,
                hops,
            } => {
                let (node, network) = own(node, network);
                MeshMsg::Announce {
                    node,
                    network,
                    hops,
                }
            }
            Chat::Heartbeat { node, network } => {
                let (node, network) = own(node, network);
                MeshMsg::Heartbeat { node, network }
            }
            Chat::Elect { node, network } => {
                let (node, network) = own(node, network);
                MeshMsg::Elect { node, network }
            }
            Chat::Resign { node, network } => {
                let (node, network) = own(node, network);
                MeshMsg::Resign { node, network }
            }
            _ => return None,
        })
    }

    /// The message as a [`Chat`], to write.
    pub fn chat(&self) -> Chat<'_> {
        match self {
            MeshMsg::Announce {
                node,
                network,
                hops,
            } => Chat::Announce {
                node,
                network,
                hops: *hops,
            },
            MeshMsg::Heartbeat { node, network } => Chat::Heartbeat { node, network },
            MeshMsg::Elect { node, network } => Chat::Elect { node, network },
            MeshMsg::Resign { node, network } => Chat::Resign { node, network },
        }
    }
}

/// This node's role on one (segment, remote network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Someone else is (or nobody yet is) the gateway.
    Standby,
    /// Won; starts routing at this time unless another heartbeat is heard first.
    Waiting(Duration),
    /// The gateway: heartbeats and routes.
    Active,
}

#[derive(Debug, Clone)]
struct Lane {
    role: Role,
    /// The node last heard heartbeating, and when.
    gateway: Option<String>,
    last_heartbeat: Duration,
    next_heartbeat: Duration,
}

/// See the module docs.
#[derive(Debug)]
pub struct Mesh {
    cfg: MeshConfig,
    rng: SplitMix64,
    /// (interface, network) -> node -> (hops, expires).
    heard: BTreeMap<(usize, String), BTreeMap<String, (i64, Duration)>>,
    /// (interface, remote network) -> this node's role there.
    lanes: BTreeMap<(usize, String), Lane>,
    next_announce: Duration,
    out: VecDeque<Send>,
    started: Duration,
    /// Interfaces lost (down, or their address gone): nothing is sent or heard there.
    down: Vec<bool>,
    /// (interface, network) -> when this node last sent `elect` there.
    elect_sent: BTreeMap<(usize, String), Duration>,
}

impl Mesh {
    /// A mesh node starting at `now`: announces at once on every interface (when it has
    /// several) and listens before electing.
    pub fn new(cfg: MeshConfig, seed: u64, now: Duration) -> Mesh {
        let mut m = Mesh {
            cfg,
            rng: SplitMix64::new(seed),
            heard: BTreeMap::new(),
            lanes: BTreeMap::new(),
            next_announce: now,
            out: VecDeque::new(),
            started: now,
            down: Vec::new(),
            elect_sent: BTreeMap::new(),
        };
        m.down = vec![false; m.cfg.interfaces.len()];
        for (i, _) in m.cfg.interfaces.iter().enumerate() {
            for (j, other) in m.cfg.interfaces.iter().enumerate() {
                if i != j && other.network != m.cfg.interfaces[i].network {
                    m.lanes.insert(
                        (i, other.network.clone()),
                        Lane {
                            role: Role::Standby,
                            gateway: None,
                            last_heartbeat: now,
                            next_heartbeat: now,
                        },
                    );
                }
            }
        }
        m.handle_timeout(now);
        m
    }

    fn is_down(&self, iface: usize) -> bool {
        self.down.get(iface).copied().unwrap_or(true)
    }

    fn silence_limit(&self) -> Duration {
        self.cfg.miss_after * self.cfg.misses
    }

    /// Hops from this node to `network` through an interface other than `not_via`, if any:
    /// 1 when attached, else 1 + the fewest hops heard.
    fn reach(&self, network: &str, not_via: usize) -> Option<i64> {
        let direct = self
            .cfg
            .interfaces
            .iter()
            .enumerate()
            .any(|(i, f)| i != not_via && !self.is_down(i) && f.network == network);
        if direct {
            return Some(1);
        }
        self.heard
            .iter()
            .filter(|((i, n), _)| *i != not_via && !self.is_down(*i) && n == network)
            .flat_map(|(_, nodes)| nodes.values().map(|(h, _)| h + 1))
            .min()
    }

    /// The winner on segment `iface` for `network`: (hops, node).
    fn winner(&self, iface: usize, network: &str) -> Option<(i64, String)> {
        let mut best: Option<(i64, String)> = self
            .reach(network, iface)
            .map(|h| (h, self.cfg.node.clone()));
        if let Some(nodes) = self.heard.get(&(iface, network.to_owned())) {
            for (node, (hops, _)) in nodes {
                let c = (*hops, node.clone());
                if best.as_ref().is_none_or(|b| c < *b) {
                    best = Some(c);
                }
            }
        }
        best
    }

    /// Runs the election on (iface, network) with what is known now.
    fn elect(&mut self, now: Duration, iface: usize, network: &str) {
        let win = self.winner(iface, network);
        let me = self.cfg.node.clone();
        let wait = self.random_wait();
        let Some(lane) = self.lanes.get_mut(&(iface, network.to_owned())) else {
            return;
        };
        match win {
            Some((_, node)) if node == me => {
                if lane.role == Role::Standby {
                    lane.role = Role::Waiting(now + wait);
                }
            }
            _ => lane.role = Role::Standby,
        }
    }

    fn random_wait(&mut self) -> Duration {
        let span = self
            .cfg
            .wait_max
            .saturating_sub(self.cfg.wait_min)
            .as_millis() as u64;
        let r = if span == 0 {
            0
        } else {
            self.rng.next_u64() % (span + 1)
        };
        self.cfg.wait_min + Duration::from_millis(r)
    }

    /// A mesh message heard on interface `iface` at `now`.
    pub fn handle(&mut self, now: Duration, iface: usize, msg: &MeshMsg) {
        if self.is_down(iface) {
            return;
        }
        match msg {
            MeshMsg::Announce { node, .. }
            | MeshMsg::Heartbeat { node, .. }
            | MeshMsg::Elect { node, .. }
            | MeshMsg::Resign { node, .. }
                if *node == self.cfg.node =>
            {
                // Our own, heard back.
            }
            MeshMsg::Announce {
                node,
                network,
                hops: Some(hops),
            } => {
                if self
                    .cfg
                    .interfaces
                    .get(iface)
                    .is_some_and(|f| &f.network == network)
                {
                    return; // An announce of the segment itself says nothing.
                }
                let before = self.reach(network, usize::MAX);
                let newcomer = !self
                    .heard
                    .iter()
                    .any(|((i, _), nodes)| *i == iface && nodes.contains_key(node));
                if newcomer {
                    // A node we had not heard on this segment (it started after our last
                    // announce): tell it what we reach now, so it does not elect without us.
                    self.announce_on(iface);
                }
                self.heard
                    .entry((iface, network.clone()))
                    .or_default()
                    .insert(node.clone(), (*hops, now + self.cfg.announce_ttl));
                let after = self.reach(network, usize::MAX);
                // A network newly reachable, or reachable in fewer hops: tell the other
                // segments (hops + 1), within max_hops.
                if after != before && *hops < self.cfg.max_hops {
                    self.announce_except(iface, network, hops + 1);
                }
            }
            MeshMsg::Announce {
                node,
                network,
                hops: None,
            } => {
                self.drop_routes(iface, network, node);
                self.elect(now, iface, network);
            }
            MeshMsg::Heartbeat { node, network } => {
                let me = self.cfg.node.clone();
                // A heartbeating node is a candidate even if its announce was missed (lost,
                // or sent before this node listened): counted at this node's own distance
                // until an announce says better, so two gateways that do not know each
                // other agree by GUID instead of both staying.
                let key = (iface, network.clone());
                let known = self.heard.get(&key).is_some_and(|n| n.contains_key(node));
                if !known {
                    if let Some(hops) = self.reach(network, iface) {
                        self.heard
                            .entry(key)
                            .or_default()
                            .insert(node.clone(), (hops, now + self.cfg.announce_ttl));
                    }
                }
                let win = self.winner(iface, network);
                if let Some(lane) = self.lanes.get_mut(&(iface, network.clone())) {
                    lane.gateway = Some(node.clone());
                    lane.last_heartbeat = now;
                    match lane.role {
                        // Someone else started first: step back.
                        Role::Waiting(_) => lane.role = Role::Standby,
                        // Two gateways: the one the criterion prefers stays.
                        Role::Active => {
                            if win.as_ref().is_none_or(|(_, w)| *w != me) {
                                lane.role = Role::Standby;
                            }
                        }
                        Role::Standby => {}
                    }
                }
            }
            MeshMsg::Elect { network, .. } => {
                // Someone forced an election: take part with our own `elect` (once per
                // 1.5 s per network and segment, so elections do not echo forever).
                self.send_elect(now, iface, network);
                self.elect(now, iface, network);
            }
            MeshMsg::Resign { node, network } => {
                self.drop_routes(iface, network, node);
                if let Some(lane) = self.lanes.get_mut(&(iface, network.clone())) {
                    if lane.gateway.as_deref() == Some(node.as_str()) {
                        lane.gateway = None;
                    }
                }
                self.elect(now, iface, network);
            }
        }
    }

    /// Sends `elect` for `network` on `iface` unless this node did within `miss_after`.
    fn send_elect(&mut self, now: Duration, iface: usize, network: &str) {
        let key = (iface, network.to_owned());
        let recent = self
            .elect_sent
            .get(&key)
            .is_some_and(|t| now.saturating_sub(*t) < self.cfg.miss_after);
        if recent {
            return;
        }
        self.elect_sent.insert(key, now);
        self.out.push_back(Send {
            iface,
            msg: MeshMsg::Elect {
                node: self.cfg.node.clone(),
                network: network.to_owned(),
            },
        });
    }

    fn drop_routes(&mut self, iface: usize, network: &str, node: &str) {
        if let Some(nodes) = self.heard.get_mut(&(iface, network.to_owned())) {
            nodes.remove(node);
        }
    }

    fn announce_except(&mut self, except: usize, network: &str, hops: i64) {
        for i in 0..self.cfg.interfaces.len() {
            if i != except && !self.is_down(i) && self.cfg.interfaces[i].network != network {
                self.out.push_back(Send {
                    iface: i,
                    msg: MeshMsg::Announce {
                        node: self.cfg.node.clone(),
                        network: network.to_owned(),
                        hops: Some(hops),
                    },
                });
            }
        }
    }

    /// Announces on `iface` the networks of this node's other interfaces (one hop).
    fn announce_on(&mut self, iface: usize) {
        if self.is_down(iface) {
            return;
        }
        for j in 0..self.cfg.interfaces.len() {
            if self.is_down(j) {
                continue;
            }
            let network = self.cfg.interfaces[j].network.clone();
            if iface != j && self.cfg.interfaces[iface].network != network {
                self.out.push_back(Send {
                    iface,
                    msg: MeshMsg::Announce {
                        node: self.cfg.node.clone(),
                        network,
                        hops: Some(1),
                    },
                });
            }
        }
    }

    /// Announces, expiries, heartbeats, missed heartbeats and the end of a wait.
    pub fn handle_timeout(&mut self, now: Duration) {
        if now >= self.next_announce {
            self.next_announce = now + self.cfg.announce_every;
            for i in 0..self.cfg.interfaces.len() {
                self.announce_on(i);
            }
        }
        for nodes in self.heard.values_mut() {
            nodes.retain(|_, (_, expires)| *expires > now);
        }
        let silence = self.silence_limit();
        let keys: Vec<(usize, String)> = self.lanes.keys().cloned().collect();
        for (iface, network) in keys {
            if self.is_down(iface) {
                continue;
            }
            let Some(lane) = self.lanes.get(&(iface, network.clone())) else {
                continue;
            };
            match lane.role {
                Role::Waiting(at) if now >= at => {
                    let lane = self.lanes.get_mut(&(iface, network.clone())).expect("lane");
                    lane.role = Role::Active;
                    lane.next_heartbeat = now;
                }
                Role::Standby
                    if now.saturating_sub(lane.last_heartbeat) >= silence
                        && now.saturating_sub(self.started) >= silence =>
                {
                    // The gateway (if any) fell silent: forget it there, and elect.
                    if let Some(g) = lane.gateway.clone() {
                        self.drop_routes(iface, &network, &g);
                    }
                    let lane = self.lanes.get_mut(&(iface, network.clone())).expect("lane");
                    lane.gateway = None;
                    lane.last_heartbeat = now;
                    self.send_elect(now, iface, &network);
                    self.elect(now, iface, &network);
                }
                _ => {}
            }
            let lane = self.lanes.get_mut(&(iface, network.clone())).expect("lane");
            if lane.role == Role::Active && now >= lane.next_heartbeat {
                lane.next_heartbeat = now + self.cfg.heartbeat;
                lane.last_heartbeat = now;
                self.out.push_back(Send {
                    iface,
                    msg: MeshMsg::Heartbeat {
                        node: self.cfg.node.clone(),
                        network,
                    },
                });
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let silence = self.silence_limit();
        let lanes = self
            .lanes
            .iter()
            .filter(|((i, _), _)| !self.is_down(*i))
            .map(|(_, l)| match l.role {
                Role::Waiting(at) => at,
                Role::Active => l.next_heartbeat,
                Role::Standby => (l.last_heartbeat + silence).max(self.started + silence),
            });
        let expiries = self
            .heard
            .values()
            .flat_map(|n| n.values().map(|(_, e)| *e));
        lanes.chain(expiries).chain([self.next_announce]).min()
    }

    /// The next mesh message to broadcast.
    pub fn poll_send(&mut self) -> Option<Send> {
        self.out.pop_front()
    }

    /// This node's role on segment `iface` for `network`.
    pub fn role(&self, iface: usize, network: &str) -> Option<Role> {
        self.lanes.get(&(iface, network.to_owned())).map(|l| l.role)
    }

    /// Whether traffic heard on interface `from` goes out on interface `to`: this node must
    /// be the active gateway on `from`'s segment for `to`'s network.
    pub fn forwards(&self, from: usize, to: usize) -> bool {
        let Some(net) = self.cfg.interfaces.get(to).map(|f| f.network.clone()) else {
            return false;
        };
        from != to
            && !self.is_down(from)
            && !self.is_down(to)
            && self.role(from, &net) == Some(Role::Active)
    }

    /// Whether traffic from `from` for `to` must be held: this node won and is waiting.
    pub fn holding(&self, from: usize, to: usize) -> bool {
        let Some(net) = self.cfg.interfaces.get(to).map(|f| f.network.clone()) else {
            return false;
        };
        matches!(self.role(from, &net), Some(Role::Waiting(_)))
    }

    /// This node's lanes: (interface, remote network, role there, the node last heard
    /// heartbeating there).
    pub fn lanes(&self) -> impl Iterator<Item = (usize, &str, Role, Option<&str>)> + '_ {
        self.lanes
            .iter()
            .map(|((i, n), l)| (*i, n.as_str(), l.role, l.gateway.as_deref()))
    }

    /// This node's GUID.
    pub fn node(&self) -> &str {
        &self.cfg.node
    }

    /// Whether interface `iface` is in use (not lost).
    pub fn is_up(&self, iface: usize) -> bool {
        !self.is_down(iface)
    }

    /// Interface `iface` was lost (`up` false: link down or address gone) or is back.
    ///
    /// Lost: nothing is sent or heard there any more; what was heard there is forgotten; on
    /// every other segment this node resigns where it was the gateway to the lost network
    /// (or about to be), and withdraws its announce of that network elsewhere. Back: it
    /// announces again, and listens on that segment for two heartbeat misses before
    /// electing there, as at start-up (no pre-emption).
    pub fn set_iface_up(&mut self, now: Duration, iface: usize, up: bool) {
        if iface >= self.down.len() || self.down[iface] != up {
            return;
        }
        if up {
            self.down[iface] = false;
            for ((i, _), lane) in &mut self.lanes {
                if *i == iface {
                    lane.last_heartbeat = now;
                }
            }
            for i in 0..self.cfg.interfaces.len() {
                self.announce_on(i);
            }
            return;
        }
        let lost = self.cfg.interfaces[iface].network.clone();
        for ((i, _), lane) in &mut self.lanes {
            if *i == iface {
                lane.role = Role::Standby;
                lane.gateway = None;
            }
        }
        self.heard.retain(|(i, _), _| *i != iface);
        self.down[iface] = true;
        for i in 0..self.cfg.interfaces.len() {
            if self.is_down(i) || self.cfg.interfaces[i].network == lost {
                continue;
            }
            let node = self.cfg.node.clone();
            let network = lost.clone();
            let msg = match self.lanes.get_mut(&(i, lost.clone())) {
                Some(lane) if lane.role != Role::Standby => {
                    lane.role = Role::Standby;
                    MeshMsg::Resign { node, network }
                }
                _ => MeshMsg::Announce {
                    node,
                    network,
                    hops: None,
                },
            };
            self.out.push_back(Send { iface: i, msg });
        }
    }

    /// Resigns every active role (shutting down): a resign on each segment.
    pub fn resign_all(&mut self) {
        for ((iface, network), lane) in &mut self.lanes {
            if lane.role != Role::Standby {
                lane.role = Role::Standby;
                self.out.push_back(Send {
                    iface: *iface,
                    msg: MeshMsg::Resign {
                        node: self.cfg.node.clone(),
                        network: network.clone(),
                    },
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
