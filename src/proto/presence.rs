//! OSChat presence as a sans-IO state machine ([`Presence`]): who is on the network, who is
//! connectable, which rooms they are in, each room's scrollback, the ~150 s ping schedule and
//! the answers to list requests, all from this node's own view.
//!
//! What it does: takes every OSChat message that passed the duplicate filter
//! ([`Presence::handle`]) and the passing of time ([`Presence::handle_timeout`]); emits the
//! messages this node broadcasts ([`Presence::poll_send`]): pings, and list replies.
//!
//! What it does not do: parse or write packets ([`super::oschat`] does), forward anything,
//! deduplicate, take part in the mesh, read a clock or the OS's randomness (a seed is passed
//! in).
//!
//! # Decisions where the draft is silent
//! - **Users** are learnt from any message that names them (chat message, hello, ping, pong,
//!   join, leave, list reply). A user is *connectable* once it answered one of our pings (or a
//!   list reply named it, or it said hello); a chat-only client that never answers stays
//!   unconnectable, as the draft says. `goodbye` forgets a user at once; a user unconnectable
//!   for `forget_after` is forgotten too.
//! - **Pings**: every known user is pinged `ping_every` (150 s) plus or minus up to half of
//!   `ping_jitter` after the last ping anyone sent for it (any node's ping seen resets the
//!   timer, so the network pings each user about once per period, not once per node). No pong
//!   within `reply_window` (1 s) marks it unconnectable until a later pong.
//! - **Lists**: a request (no payload) is answered with one reply per name,
//!   `/oschat/list/users ,is <seq> <name>` and so on, so that replies from several nodes about
//!   the same name are duplicates the filter drops; nothing is sent when the list is empty.
//!   Users listed: connectable ones; rooms listed: those with a connectable user.
//! - **Scrollback** is kept for every room (bounded by `scrollback` lines), not only rooms with
//!   a local user: oscgate has none of its own, and its WebSocket clients can join any room.
//! - **Bounds**: at most `max_users` users and `max_rooms` rooms; messages that would add more
//!   are still forwarded by the engine but not recorded (counted).

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::oschat::Chat;
use super::SplitMix64;

/// Timers and bounds.
#[derive(Debug, Clone)]
pub struct PresenceConfig {
    pub ping_every: Duration,
    /// The spread of the ping time around `ping_every` (plus or minus half of it).
    pub ping_jitter: Duration,
    pub reply_window: Duration,
    pub forget_after: Duration,
    /// Lines of scrollback per room.
    pub scrollback: usize,
    pub max_users: usize,
    pub max_rooms: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            ping_every: Duration::from_secs(150),
            ping_jitter: Duration::from_secs(30),
            reply_window: Duration::from_secs(1),
            forget_after: Duration::from_secs(900),
            scrollback: 200,
            max_users: 10_000,
            max_rooms: 1_000,
        }
    }
}

/// A message to broadcast, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Ping {
        user: String,
        seq: i64,
    },
    ListUsers {
        seq: i64,
        name: String,
    },
    ListRooms {
        seq: i64,
        name: String,
    },
    ListRoomUsers {
        room: String,
        seq: i64,
        name: String,
    },
}

impl Out {
    /// The message as a [`Chat`], to write.
    pub fn chat(&self) -> Chat<'_> {
        match self {
            Out::Ping { user, seq } => Chat::Ping { user, seq: *seq },
            Out::ListUsers { seq, name } => Chat::ListUsers {
                seq: *seq,
                payload: Some(name),
            },
            Out::ListRooms { seq, name } => Chat::ListRooms {
                seq: *seq,
                payload: Some(name),
            },
            Out::ListRoomUsers { room, seq, name } => Chat::ListRoomUsers {
                room,
                seq: *seq,
                payload: Some(name),
            },
        }
    }
}

/// One scrollback line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub user: String,
    pub text: String,
    pub seq: i64,
}

#[derive(Debug, Clone)]
struct User {
    connectable: bool,
    /// When it was last found unconnectable (cleared by a pong).
    unconnectable_since: Option<Duration>,
    next_ping: Duration,
    /// Our outstanding ping: its sequence and the reply deadline.
    awaiting: Option<(i64, Duration)>,
    rooms: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
struct Room {
    users: BTreeSet<String>,
    lines: VecDeque<Line>,
}

/// Counters, for status and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub pings_sent: u64,
    pub pongs_matched: u64,
    pub unanswered: u64,
    pub forgotten: u64,
    /// Users or rooms not recorded because a bound was reached.
    pub over_limit: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Presence {
    cfg: PresenceConfig,
    rng: SplitMix64,
    next_seq: i64,
    users: BTreeMap<String, User>,
    rooms: BTreeMap<String, Room>,
    out: VecDeque<Out>,
    counters: Counters,
}

impl Presence {
    pub fn new(cfg: PresenceConfig, seed: u64) -> Presence {
        Presence {
            cfg,
            rng: SplitMix64::new(seed),
            next_seq: 1,
            users: BTreeMap::new(),
            rooms: BTreeMap::new(),
            out: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// The next ping time after `now`: `ping_every` plus or minus half of `ping_jitter`.
    fn schedule(&mut self, now: Duration) -> Duration {
        let jitter = self.cfg.ping_jitter.as_millis() as u64;
        let offset = if jitter == 0 {
            0
        } else {
            self.rng.next_u64() % (jitter + 1)
        };
        (now + self.cfg.ping_every + Duration::from_millis(offset))
            .saturating_sub(Duration::from_millis(jitter / 2))
    }

    /// The user, created (unconnectable, ping scheduled) if new and the bound allows.
    fn user(&mut self, now: Duration, name: &str) -> Option<&mut User> {
        if !self.users.contains_key(name) {
            if self.users.len() >= self.cfg.max_users {
                self.counters.over_limit += 1;
                return None;
            }
            let next_ping = self.schedule(now);
            self.users.insert(
                name.to_owned(),
                User {
                    connectable: false,
                    unconnectable_since: Some(now),
                    next_ping,
                    awaiting: None,
                    rooms: BTreeSet::new(),
                },
            );
        }
        self.users.get_mut(name)
    }

    fn connectable(&mut self, now: Duration, name: &str) {
        if let Some(u) = self.user(now, name) {
            u.connectable = true;
            u.unconnectable_since = None;
        }
    }

    fn room(&mut self, name: &str) -> Option<&mut Room> {
        if !self.rooms.contains_key(name) {
            if self.rooms.len() >= self.cfg.max_rooms {
                self.counters.over_limit += 1;
                return None;
            }
            self.rooms.insert(name.to_owned(), Room::default());
        }
        self.rooms.get_mut(name)
    }

    fn enter(&mut self, now: Duration, room: &str, user: &str) {
        if self.user(now, user).is_none() || self.room(room).is_none() {
            return;
        }
        if let Some(u) = self.users.get_mut(user) {
            u.rooms.insert(room.to_owned());
        }
        if let Some(r) = self.rooms.get_mut(room) {
            r.users.insert(user.to_owned());
        }
    }

    fn forget(&mut self, name: &str) {
        if let Some(u) = self.users.remove(name) {
            for room in u.rooms {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.users.remove(name);
                }
            }
        }
    }

    /// A message heard on the network (after the duplicate filter), at `now`.
    pub fn handle(&mut self, now: Duration, chat: &Chat<'_>) {
        match *chat {
            Chat::Message {
                room,
                text,
                user,
                seq,
            } => {
                self.enter(now, room, user);
                let keep = self.cfg.scrollback;
                if let Some(r) = self.rooms.get_mut(room) {
                    if keep > 0 {
                        if r.lines.len() == keep {
                            r.lines.pop_front();
                        }
                        r.lines.push_back(Line {
                            user: user.to_owned(),
                            text: text.to_owned(),
                            seq,
                        });
                    }
                }
            }
            Chat::Hello { user, .. } => self.connectable(now, user),
            Chat::Goodbye { user, .. } => self.forget(user),
            Chat::Ping { user, .. } => {
                // Someone pinged it: our timer starts again from zero.
                let next = self.schedule(now);
                if let Some(u) = self.user(now, user) {
                    u.next_ping = next;
                }
            }
            Chat::Pong { user, seq } => {
                let mut matched = false;
                if let Some(u) = self.user(now, user) {
                    if u.awaiting.is_some_and(|(s, _)| s == seq) {
                        u.awaiting = None;
                        matched = true;
                    }
                    u.connectable = true;
                    u.unconnectable_since = None;
                }
                self.counters.pongs_matched += u64::from(matched);
            }
            Chat::Join { room, user, .. } => self.enter(now, room, user),
            Chat::Leave { room, user, .. } => {
                if let Some(u) = self.users.get_mut(user) {
                    u.rooms.remove(room);
                }
                if let Some(r) = self.rooms.get_mut(room) {
                    r.users.remove(user);
                }
            }
            Chat::ListUsers { seq, payload: None } => {
                let names: Vec<String> = self.connectable_users().map(str::to_owned).collect();
                self.out
                    .extend(names.into_iter().map(|name| Out::ListUsers { seq, name }));
            }
            Chat::ListUsers {
                payload: Some(name),
                ..
            } => self.connectable(now, name),
            Chat::ListRooms { seq, payload: None } => {
                let names: Vec<String> = self
                    .rooms
                    .iter()
                    .filter(|(_, r)| r.users.iter().any(|u| self.is_connectable(u)))
                    .map(|(n, _)| n.clone())
                    .collect();
                self.out
                    .extend(names.into_iter().map(|name| Out::ListRooms { seq, name }));
            }
            Chat::ListRooms {
                payload: Some(name),
                ..
            } => {
                let _ = self.room(name);
            }
            Chat::ListRoomUsers {
                room,
                seq,
                payload: None,
            } => {
                let names: Vec<String> = self
                    .rooms
                    .get(room)
                    .map(|r| {
                        r.users
                            .iter()
                            .filter(|u| self.is_connectable(u))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                self.out
                    .extend(names.into_iter().map(|name| Out::ListRoomUsers {
                        room: room.to_owned(),
                        seq,
                        name,
                    }));
            }
            Chat::ListRoomUsers {
                room,
                payload: Some(name),
                ..
            } => {
                self.enter(now, room, name);
                self.connectable(now, name);
            }
            Chat::Announce { .. }
            | Chat::Heartbeat { .. }
            | Chat::Elect { .. }
            | Chat::Resign { .. } => {}
        }
    }

    /// Sends due pings, marks unanswered ones, forgets users unconnectable for too long.
    pub fn handle_timeout(&mut self, now: Duration) {
        let mut forget = Vec::new();
        let mut due = Vec::new();
        for (name, u) in &mut self.users {
            if let Some((_, deadline)) = u.awaiting {
                if now >= deadline {
                    u.awaiting = None;
                    u.connectable = false;
                    u.unconnectable_since.get_or_insert(now);
                    self.counters.unanswered += 1;
                }
            }
            if u.unconnectable_since
                .is_some_and(|t| now.saturating_sub(t) >= self.cfg.forget_after)
            {
                forget.push(name.clone());
                continue;
            }
            if u.awaiting.is_none() && now >= u.next_ping {
                due.push(name.clone());
            }
        }
        for name in forget {
            self.counters.forgotten += 1;
            self.forget(&name);
        }
        for name in due {
            let seq = self.next_seq;
            self.next_seq += 1;
            let next = self.schedule(now);
            if let Some(u) = self.users.get_mut(&name) {
                u.awaiting = Some((seq, now + self.cfg.reply_window));
                u.next_ping = next;
            }
            self.counters.pings_sent += 1;
            self.out.push_back(Out::Ping { user: name, seq });
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.users
            .values()
            .flat_map(|u| {
                [
                    Some(u.next_ping),
                    u.awaiting.map(|(_, d)| d),
                    u.unconnectable_since.map(|t| t + self.cfg.forget_after),
                ]
            })
            .flatten()
            .min()
    }

    /// The next message to broadcast.
    pub fn poll_send(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    fn is_connectable(&self, name: &str) -> bool {
        self.users.get(name).is_some_and(|u| u.connectable)
    }

    /// Connectable users, in name order.
    pub fn connectable_users(&self) -> impl Iterator<Item = &str> {
        self.users
            .iter()
            .filter(|(_, u)| u.connectable)
            .map(|(n, _)| n.as_str())
    }

    /// Every known user with whether it is connectable, in name order.
    pub fn users(&self) -> impl Iterator<Item = (&str, bool)> {
        self.users.iter().map(|(n, u)| (n.as_str(), u.connectable))
    }

    /// Rooms with their users, in name order.
    pub fn rooms(&self) -> impl Iterator<Item = (&str, Vec<&str>)> {
        self.rooms
            .iter()
            .map(|(n, r)| (n.as_str(), r.users.iter().map(String::as_str).collect()))
    }

    /// A room's scrollback, oldest first.
    pub fn scrollback(&self, room: &str) -> impl Iterator<Item = &Line> {
        self.rooms
            .get(room)
            .into_iter()
            .flat_map(|r| r.lines.iter())
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }
}

#[cfg(test)]
mod tests;
