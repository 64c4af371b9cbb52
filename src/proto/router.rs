//! tcposcrouter's control protocol as a sans-IO state machine ([`Router`]): registration,
//! groups, users with several connections, user lists, private messages, pings.
//!
//! What it does: takes every control packet of a connection (its first packet, and every
//! `/oscrouter/...` message after it) and the engine's "connection closed" reports, keeps
//! users and groups, and emits [`Action`]s: replies to send, connections to close, and
//! [`Action::Membership`] whenever the group fan-out the workers do must change. It also
//! rewrites a private message for its target ([`rewrite_private`]), a pure function the
//! engine may call on any thread.
//!
//! What it does not do: forward group traffic (the workers do that from the published
//! membership: every packet from a registered connection that is not `/oscrouter/...` goes
//! to every connection of every *other* user of its group), touch sockets, read a clock, or
//! draw random numbers (the password-hashing secret is passed in).
//!
//! # The package's behaviour kept, its bugs not (specs README, tcposcrouter section)
//! - `/oscrouter/register ,ssss[i|f|s]`: user, user password, group, group password, optional
//!   session id. Success answers `/oscrouter/register/<user>/<id>` with no arguments, the id
//!   written as the client sent it: an `i` as a decimal integer, an `f` the way Python prints a
//!   float (`99.0`, `0.5`, `1e+16`), an `s` as is. Without an id: `/oscrouter/register/<user>`.
//! - The first packet of a connection must be a register that succeeds. Anything else (another
//!   message, a bundle, a malformed or refused register) gets `/oscrouter/error ,s <reason>`
//!   and the connection is closed. So does a connection that has not registered within
//!   `register_timeout`.
//! - The first user of a group creates it with its password; the group goes with its last
//!   user. A user name (per group) with the same password is another connection of that user;
//!   a wrong password is refused. A name is free again once its last connection closes.
//! - `/oscrouter/userlist ,s...` (names in join order, each once) goes once to every
//!   connection of the group when a user joins or leaves. A user's second connection gets the
//!   list once, the others nothing (nobody joined).
//! - `/oscrouter/private ,s <target> <address> <args...>` reaches the target's connections with
//!   the sender's name in place of the target; only within the sender's group; an unknown
//!   target is dropped (counted). A private message to oneself reaches one's other
//!   connections.
//! - `/oscrouter/ping` is swallowed. Any other `/oscrouter/...` from a registered connection
//!   (including a second register) is swallowed and counted, never forwarded: the package
//!   forwarded a second register to the group, password included.
//! - Refused: empty user name, user password or group name (the package's "ghost users"),
//!   names or passwords over the configured lengths, names with characters an OSC address
//!   part cannot carry (ASCII control characters, space, `# * , / ? [ ] { }`; the name goes
//!   into the reply address), and more users, groups or connections per user than allowed. An
//!   empty *group* password is allowed: it makes an open group.
//! - Addresses are compared byte for byte: `/oscrouter/reg*` is not a register.
//! - Passwords are kept only as SHA-256 of (secret, per-entry counter, password), compared in
//!   constant time, and never appear in an action, a `Debug` output or a log line. The hash is
//!   deliberately fast: the passwords live in memory only as long as their group, and a slow
//!   KDF would let a register flood stall the control thread.

use core::fmt;
use core::hash::Hash;
use core::time::Duration;
use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::wire::{write_message, Arg, Message, Packet};

/// Prefix of every router control address.
pub const PREFIX: &[u8] = b"/oscrouter";
/// Client -> router: `,ssss[i|f|s]` user, password, group, group password, session id.
pub const REGISTER: &[u8] = b"/oscrouter/register";
/// Both ways: `,ss...` target (from the client) or sender (to the client), address, args.
pub const PRIVATE: &[u8] = b"/oscrouter/private";
/// Router -> client: `,s...` the group's user names in join order.
pub const USERLIST: &[u8] = b"/oscrouter/userlist";
/// Client -> router: `,s` user; swallowed.
pub const PING: &[u8] = b"/oscrouter/ping";
/// Router -> client: `,s` reason, before a refused connection is closed.
pub const ERROR: &[u8] = b"/oscrouter/error";

/// Most connections one user may hold at once.
pub const MAX_CONNS_PER_USER: usize = 64;
/// Longest session id accepted as a string, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Limits and timers.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_users: usize,
    pub max_groups: usize,
    pub max_name_len: usize,
    pub max_password_len: usize,
    pub register_timeout: Duration,
}

impl Limits {
    /// The limits of a `[router]` configuration section.
    pub fn from_config(c: &crate::config::Router) -> Limits {
        Limits {
            max_users: c.max_users,
            max_groups: c.max_groups,
            max_name_len: c.max_name_len,
            max_password_len: c.max_password_len,
            register_timeout: Duration::from_secs(c.register_timeout_s),
        }
    }
}

/// Why a connection was refused and closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The first packet was not `/oscrouter/register` (or was a bundle, or not OSC).
    NotRegister,
    /// A register whose arguments are not `ssss` plus an optional `i`, `f` or `s`.
    Malformed,
    /// Empty user name, user password or group name.
    Empty,
    /// A name or password over its length limit, or a session id over [`MAX_ID_LEN`].
    TooLong,
    /// A name with a character an OSC address part cannot carry, or not UTF-8.
    BadName,
    /// The group exists with another password.
    WrongGroupPassword,
    /// The user exists in the group with another password.
    WrongPassword,
    /// `max_groups` groups exist.
    TooManyGroups,
    /// `max_users` users exist.
    TooManyUsers,
    /// The user already holds [`MAX_CONNS_PER_USER`] connections.
    TooManyConnections,
    /// No register within `register_timeout`.
    Timeout,
}

impl Refusal {
    /// The reason sent in `/oscrouter/error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotRegister => "first message must be /oscrouter/register",
            Self::Malformed => "register needs user, password, group, group password[, id]",
            Self::Empty => "empty user name, password or group name",
            Self::TooLong => "name, password or id too long",
            Self::BadName => "name has characters not allowed in an OSC address",
            Self::WrongGroupPassword => "wrong group password",
            Self::WrongPassword => "wrong password",
            Self::TooManyGroups => "too many groups",
            Self::TooManyUsers => "too many users",
            Self::TooManyConnections => "too many connections for this user",
            Self::Timeout => "no register in time",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the engine must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<C> {
    /// Send this packet to this connection.
    Send { to: C, packet: Vec<u8> },
    /// Close this connection once what was sent to it before has been written.
    Close { conn: C, reason: Refusal },
    /// Users or connections changed: recompile the group fan-out from [`Router::groups`].
    Membership,
}

/// Counters, for status and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub registered: u64,
    pub refused: u64,
    pub timeouts: u64,
    pub privates: u64,
    pub private_unknown_target: u64,
    pub pings: u64,
    /// `/oscrouter/...` messages from registered connections that are none of the above.
    pub swallowed: u64,
    pub closed: u64,
}

/// A password as stored: the hash and the counter that salted it.
struct Secret {
    salt: u64,
    hash: [u8; 32],
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug)]
struct User<C> {
    name: String,
    password: Secret,
    conns: Vec<C>,
}

#[derive(Debug)]
struct Group<C> {
    name: String,
    password: Secret,
    /// In join order.
    users: Vec<User<C>>,
}

#[derive(Debug, Clone, Copy)]
enum ConnState {
    /// Accepted at this time, not registered yet.
    Pending {
        since: Duration,
    },
    Registered,
    /// Refused; waiting for the engine to report it closed. Whatever else it sent (a
    /// pipelined second register, say) is ignored.
    Refused,
}

/// The router; see the module docs. `C` identifies a connection.
pub struct Router<C> {
    limits: Limits,
    key: [u8; 32],
    next_salt: u64,
    conns: HashMap<C, ConnState>,
    /// Registered connection -> (group name, user name).
    member_of: HashMap<C, (String, String)>,
    groups: Vec<Group<C>>,
    users: usize,
    actions: VecDeque<Action<C>>,
    counters: Counters,
}

impl<C> fmt::Debug for Router<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("groups", &self.groups.len())
            .field("users", &self.users)
            .field("connections", &self.conns.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// One group as the workers need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView<'a, C> {
    pub name: &'a str,
    /// Each user's connections, users in join order.
    pub users: Vec<(&'a str, &'a [C])>,
}

impl<C: Copy + Eq + Hash + fmt::Debug> Router<C> {
    /// A router with these limits; `key` (random, from the OS) keys the password hashes.
    pub fn new(limits: Limits, key: [u8; 32]) -> Router<C> {
        Router {
            limits,
            key,
            next_salt: 0,
            conns: HashMap::new(),
            member_of: HashMap::new(),
            groups: Vec::new(),
            users: 0,
            actions: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// A new connection, accepted at `now`: it has `register_timeout` to register.
    pub fn opened(&mut self, now: Duration, conn: C) {
        self.conns
            .entry(conn)
            .or_insert(ConnState::Pending { since: now });
    }

    /// A packet from `conn` that the engine did not forward: the first packet of a connection,
    /// or a message addressed `/oscrouter/...` from a registered one. `now` as in
    /// [`opened`](Self::opened); an unknown connection is taken as opened now.
    pub fn handle(&mut self, now: Duration, conn: C, packet: &[u8]) {
        let state = *self
            .conns
            .entry(conn)
            .or_insert(ConnState::Pending { since: now });
        match state {
            ConnState::Pending { .. } => {
                let result = match Packet::new_checked(packet) {
                    Ok(Packet::Message(m)) if m.address() == REGISTER => self.register(conn, &m),
                    _ => Err(Refusal::NotRegister),
                };
                if let Err(r) = result {
                    self.refuse(conn, r);
                }
            }
            ConnState::Registered => self.registered(conn, packet),
            ConnState::Refused => {}
        }
    }

    /// The engine closed `conn` (peer gone, error, or a [`Action::Close`] carried out). Every
    /// connection given to [`opened`](Self::opened) or [`handle`](Self::handle) must be
    /// reported here once it is gone, refused ones included.
    pub fn closed(&mut self, conn: C) {
        if self.conns.remove(&conn).is_none() {
            return;
        }
        self.counters.closed += 1;
        let Some((group, user)) = self.member_of.remove(&conn) else {
            return;
        };
        let Some(gi) = self.groups.iter().position(|g| g.name == group) else {
            return;
        };
        let g = &mut self.groups[gi];
        let Some(ui) = g.users.iter().position(|u| u.name == user) else {
            return;
        };
        g.users[ui].conns.retain(|c| *c != conn);
        if g.users[ui].conns.is_empty() {
            g.users.remove(ui);
            self.users -= 1;
            if g.users.is_empty() {
                self.groups.remove(gi);
            } else {
                self.send_userlist(gi, None);
            }
        }
        self.actions.push_back(Action::Membership);
    }

    /// Refuses connections that have not registered in time.
    pub fn handle_timeout(&mut self, now: Duration) {
        let limit = self.limits.register_timeout;
        let late: Vec<C> = self
            .conns
            .iter()
            .filter_map(|(c, s)| match s {
                ConnState::Pending { since } if now.saturating_sub(*since) >= limit => Some(*c),
                _ => None,
            })
            .collect();
        for c in late {
            self.counters.timeouts += 1;
            self.refuse(c, Refusal::Timeout);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run: the earliest register
    /// deadline, `None` when no connection is waiting to register.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.conns
            .values()
            .filter_map(|s| match s {
                ConnState::Pending { since } => Some(*since + self.limits.register_timeout),
                ConnState::Registered | ConnState::Refused => None,
            })
            .min()
    }

    /// The next action, in order.
    pub fn poll_action(&mut self) -> Option<Action<C>> {
        self.actions.pop_front()
    }

    /// The groups with their users' connections, for the workers' fan-out.
    pub fn groups(&self) -> impl Iterator<Item = GroupView<'_, C>> + '_ {
        self.groups.iter().map(|g| GroupView {
            name: &g.name,
            users: g
                .users
                .iter()
                .map(|u| (u.name.as_str(), u.conns.as_slice()))
                .collect(),
        })
    }

    /// The (group, user) of a registered connection.
    pub fn member(&self, conn: &C) -> Option<(&str, &str)> {
        self.member_of
            .get(conn)
            .map(|(g, u)| (g.as_str(), u.as_str()))
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn user_count(&self) -> usize {
        self.users
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn refuse(&mut self, conn: C, r: Refusal) {
        self.counters.refused += u64::from(r != Refusal::Timeout);
        let mut packet = Vec::new();
        if write_message(&mut packet, ERROR, &[Arg::str(r.as_str())]).is_ok() {
            self.actions.push_back(Action::Send { to: conn, packet });
        }
        self.actions.push_back(Action::Close { conn, reason: r });
        self.conns.insert(conn, ConnState::Refused);
    }

    fn salted(&mut self, password: &[u8]) -> Secret {
        let salt = self.next_salt;
        self.next_salt += 1;
        Secret {
            salt,
            hash: hash(&self.key, salt, password),
        }
    }

    fn register(&mut self, conn: C, m: &Message<'_>) -> Result<(), Refusal> {
        let reg = parse_register(m, &self.limits)?;
        let gi = match self.groups.iter().position(|g| g.name == reg.group) {
            Some(gi) => {
                let g = &self.groups[gi];
                if !same(&self.key, &g.password, reg.group_password) {
                    return Err(Refusal::WrongGroupPassword);
                }
                gi
            }
            None => {
                if self.groups.len() >= self.limits.max_groups {
                    return Err(Refusal::TooManyGroups);
                }
                if self.users >= self.limits.max_users {
                    return Err(Refusal::TooManyUsers);
                }
                let password = self.salted(reg.group_password);
                self.groups.push(Group {
                    name: reg.group.to_owned(),
                    password,
                    users: Vec::new(),
                });
                self.groups.len() - 1
            }
        };
        let existing = self.groups[gi]
            .users
            .iter()
            .position(|u| u.name == reg.user);
        let joined = match existing {
            Some(ui) => {
                let u = &self.groups[gi].users[ui];
                if !same(&self.key, &u.password, reg.password) {
                    return Err(Refusal::WrongPassword);
                }
                if u.conns.len() >= MAX_CONNS_PER_USER {
                    return Err(Refusal::TooManyConnections);
                }
                self.groups[gi].users[ui].conns.push(conn);
                false
            }
            None => {
                if self.users >= self.limits.max_users {
                    if self.groups[gi].users.is_empty() {
                        self.groups.remove(gi);
                    }
                    return Err(Refusal::TooManyUsers);
                }
                let password = self.salted(reg.password);
                self.groups[gi].users.push(User {
                    name: reg.user.to_owned(),
                    password,
                    conns: vec![conn],
                });
                self.users += 1;
                true
            }
        };
        self.conns.insert(conn, ConnState::Registered);
        self.member_of
            .insert(conn, (reg.group.to_owned(), reg.user.to_owned()));
        self.counters.registered += 1;
        let mut address = Vec::with_capacity(REGISTER.len() + reg.user.len() + 16);
        address.extend_from_slice(REGISTER);
        address.push(b'/');
        address.extend_from_slice(reg.user.as_bytes());
        if let Some(id) = &reg.id {
            address.push(b'/');
            address.extend_from_slice(id.as_bytes());
        }
        let mut packet = Vec::new();
        if write_message(&mut packet, &address, &[]).is_ok() {
            self.actions.push_back(Action::Send { to: conn, packet });
        }
        self.actions.push_back(Action::Membership);
        if joined {
            self.send_userlist(gi, None);
        } else {
            self.send_userlist(gi, Some(conn));
        }
        Ok(())
    }

    /// The group's user list to every connection of it, or to `only`.
    fn send_userlist(&mut self, gi: usize, only: Option<C>) {
        let g = &self.groups[gi];
        let names: Vec<Arg<'_>> = g.users.iter().map(|u| Arg::str(&u.name)).collect();
        let mut packet = Vec::new();
        if write_message(&mut packet, USERLIST, &names).is_err() {
            return;
        }
        match only {
            Some(c) => self.actions.push_back(Action::Send { to: c, packet }),
            None => {
                for u in &g.users {
                    for &c in &u.conns {
                        self.actions.push_back(Action::Send {
                            to: c,
                            packet: packet.clone(),
                        });
                    }
                }
            }
        }
    }

    fn registered(&mut self, conn: C, packet: &[u8]) {
        let Ok(Packet::Message(m)) = Packet::new_checked(packet) else {
            self.counters.swallowed += 1;
            return;
        };
        match m.address() {
            PING => self.counters.pings += 1,
            PRIVATE => self.private(conn, packet),
            _ => self.counters.swallowed += 1,
        }
    }

    fn private(&mut self, conn: C, packet: &[u8]) {
        let Some((group, sender)) = self.member_of.get(&conn) else {
            return;
        };
        let mut out = Vec::new();
        let Some(target) = rewrite_private(packet, sender, &mut out) else {
            self.counters.swallowed += 1;
            return;
        };
        let Some(g) = self.groups.iter().find(|g| &g.name == group) else {
            return;
        };
        let Some(u) = g.users.iter().find(|u| u.name.as_bytes() == target) else {
            self.counters.private_unknown_target += 1;
            return;
        };
        self.counters.privates += 1;
        for &c in u.conns.iter().filter(|&&c| c != conn) {
            self.actions.push_back(Action::Send {
                to: c,
                packet: out.clone(),
            });
        }
    }
}

/// A parsed register.
struct Register<'a> {
    user: &'a str,
    password: &'a [u8],
    group: &'a str,
    group_password: &'a [u8],
    id: Option<String>,
}

fn parse_register<'a>(m: &Message<'a>, limits: &Limits) -> Result<Register<'a>, Refusal> {
    let tags = m.type_tags();
    if !(tags.len() == 4 || tags.len() == 5) || tags[..4].iter().any(|&t| t != b's') {
        return Err(Refusal::Malformed);
    }
    let mut args = m.args();
    let mut next_str = || match args.next() {
        Some(Arg::Str(s)) => Ok(s),
        _ => Err(Refusal::Malformed),
    };
    let (user, password, group, group_password) =
        (next_str()?, next_str()?, next_str()?, next_str()?);
    let id = match args.next() {
        None => None,
        Some(Arg::Int(i)) => Some(i.to_string()),
        Some(Arg::Float(f)) => Some(python_float(f64::from(f))),
        Some(Arg::Str(s)) => {
            if s.len() > MAX_ID_LEN {
                return Err(Refusal::TooLong);
            }
            let s = core::str::from_utf8(s).map_err(|_| Refusal::BadName)?;
            if s.is_empty() || !address_safe(s) {
                return Err(Refusal::BadName);
            }
            Some(s.to_owned())
        }
        Some(_) => return Err(Refusal::Malformed),
    };
    if user.is_empty() || password.is_empty() || group.is_empty() {
        return Err(Refusal::Empty);
    }
    if user.len() > limits.max_name_len
        || group.len() > limits.max_name_len
        || password.len() > limits.max_password_len
        || group_password.len() > limits.max_password_len
    {
        return Err(Refusal::TooLong);
    }
    let user = core::str::from_utf8(user).map_err(|_| Refusal::BadName)?;
    let group = core::str::from_utf8(group).map_err(|_| Refusal::BadName)?;
    if !address_safe(user) || !address_safe(group) {
        return Err(Refusal::BadName);
    }
    Ok(Register {
        user,
        password,
        group,
        group_password,
        id,
    })
}

/// Whether `s` can be one part of an OSC address (OSC 1.0's printable characters minus the
/// reserved ones; non-ASCII UTF-8 is allowed).
fn address_safe(s: &str) -> bool {
    s.bytes().all(|b| {
        !(b.is_ascii_control()
            || matches!(
                b,
                b' ' | b'#' | b'*' | b',' | b'/' | b'?' | b'[' | b']' | b'{' | b'}'
            ))
    })
}

/// `x` the way Python's `str(float)` writes it (what the package puts in the register reply
/// for a float id): `99.0`, `0.5`, `1e+16`, `1.5e-05`, `inf`, `nan`.
pub fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Shortest round-trip digits and decimal exponent, from Rust's `{:e}`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        // Positional.
        let point = exp + 1;
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{body}")
    } else {
        let m = if digits.len() == 1 {
            digits
        } else {
            format!("{}.{}", &digits[..1], &digits[1..])
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{esign}{:02}", exp.abs())
    }
}

/// The private message `packet` (`/oscrouter/private ,s<...> target address args...`) as its
/// target receives it, written into `out`: the same bytes with `sender` in place of the
/// target. Returns the target, or `None` if `packet` is not such a message (not OSC, another
/// address, no leading string argument, or no address after it).
pub fn rewrite_private<'a>(packet: &'a [u8], sender: &str, out: &mut Vec<u8>) -> Option<&'a [u8]> {
    let Ok(Packet::Message(m)) = Packet::new_checked(packet) else {
        return None;
    };
    if m.address() != PRIVATE {
        return None;
    }
    let tags = m.type_tags();
    if tags.len() < 2 || tags[0] != b's' || !matches!(tags[1], b's' | b'S') {
        return None;
    }
    let Some(Arg::Str(target)) = m.args().next() else {
        return None;
    };
    // Layout of a checked message: address, NUL-padded; ",tags", NUL-padded; arguments.
    let addr_len = padded(PRIVATE.len());
    let tags_len = padded(tags.len() + 1);
    let rest = packet.get(addr_len + tags_len + padded(target.len())..)?;
    out.clear();
    out.extend_from_slice(&packet[..addr_len + tags_len]);
    out.extend_from_slice(sender.as_bytes());
    out.resize(out.len() + padded(sender.len()) - sender.len(), 0);
    out.extend_from_slice(rest);
    Some(target)
}

/// Splits a bundle into its `/oscrouter/...` messages and the rest, for a client that wraps
/// control messages in bundles (liblo's `oscsendfile` wraps everything; SuperCollider's
/// `sendBundle`): `controls` gets the byte range in `packet` of every message under
/// [`PREFIX`], depth first; `rest` gets the bundle without them, time tags and every other
/// element byte for byte, nested bundles left without a message dropped. Returns whether
/// `rest` holds any message (when not, `rest` is empty), or `None` if `packet` is not a
/// well-formed bundle.
pub fn split_bundle(
    packet: &[u8],
    rest: &mut Vec<u8>,
    controls: &mut Vec<core::ops::Range<usize>>,
) -> Option<bool> {
    fn walk(
        base: *const u8,
        b: crate::wire::Bundle<'_>,
        rest: &mut Vec<u8>,
        controls: &mut Vec<core::ops::Range<usize>>,
    ) -> bool {
        let start = rest.len();
        // "#bundle\0" and the time tag.
        rest.extend_from_slice(b.as_bytes().get(..16).unwrap_or(&[]));
        let mut kept = false;
        for e in b.elements() {
            match e {
                Packet::Message(m) if crate::wire::address::has_prefix(m.address(), PREFIX) => {
                    let at = m.as_bytes().as_ptr() as usize - base as usize;
                    controls.push(at..at + m.as_bytes().len());
                }
                Packet::Message(m) => {
                    let bytes = m.as_bytes();
                    rest.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                    rest.extend_from_slice(bytes);
                    kept = true;
                }
                Packet::Bundle(inner) => {
                    let len_at = rest.len();
                    rest.extend_from_slice(&[0; 4]);
                    if walk(base, inner, rest, controls) {
                        let n = (rest.len() - len_at - 4) as u32;
                        rest[len_at..len_at + 4].copy_from_slice(&n.to_be_bytes());
                        kept = true;
                    } else {
                        rest.truncate(len_at);
                    }
                }
            }
        }
        if !kept {
            rest.truncate(start);
        }
        kept
    }
    rest.clear();
    controls.clear();
    match Packet::new_checked(packet) {
        Ok(Packet::Bundle(b)) => Some(walk(packet.as_ptr(), b, rest, controls)),
        _ => None,
    }
}

/// The first message of `packet`, depth first (the packet itself if it is a message), as a
/// byte range in `packet`; `None` if it holds none or is not OSC.
pub fn first_message(packet: &[u8]) -> Option<core::ops::Range<usize>> {
    fn first<'a>(p: Packet<'a>) -> Option<Message<'a>> {
        match p {
            Packet::Message(m) => Some(m),
            Packet::Bundle(b) => b.elements().find_map(first),
        }
    }
    let m = first(Packet::new_checked(packet).ok()?)?;
    let at = m.as_bytes().as_ptr() as usize - packet.as_ptr() as usize;
    Some(at..at + m.as_bytes().len())
}

/// Length of an OSC string of `n` bytes with its NUL and padding.
fn padded(n: usize) -> usize {
    (n + 4) & !3
}

fn hash(key: &[u8; 32], salt: u64, password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key);
    h.update(salt.to_be_bytes());
    h.update(password);
    h.finalize().into()
}

/// Whether `password` is the stored one, in time independent of where they differ.
fn same(key: &[u8; 32], stored: &Secret, password: &[u8]) -> bool {
    let h = hash(key, stored.salt, password);
    let diff = h
        .iter()
        .zip(stored.hash.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    // Keep the compiler from turning the fold into an early-exit comparison.
    core::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests;
