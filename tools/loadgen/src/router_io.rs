//! The user side of the tcposcrouter protocol as the `router` scenario speaks it: TCP
//! connections framed with OSC 1.0 length prefixes or SLIP, the register handshake, the sender
//! loop (paced or flat out, one bounded batch per write) and the receiver loop (one large read
//! per ready stream, frames decoded in place, load accounted, router control counted).
//!
//! This module runs no threads of its own and builds no report: `router` does both. The
//! protocol: the first packet is `/oscrouter/register ,ssssi` (user, password, group, group
//! password, id); success is a message at `/oscrouter/register/<user>/<id>` without arguments;
//! `/oscrouter/error ,s reason` (oscgate) or a silent close (the Python package) is a refusal;
//! `/oscrouter/userlist` arrives whenever someone joins or leaves and is only counted.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oscgate::proto::router::{ERROR, PREFIX, REGISTER, USERLIST};
use oscgate::wire::framing::{encode_slip, len32_header, Decoder, Framing, DEFAULT_MAX_FRAME};
use oscgate::wire::{write_message, Arg, Packet};
use serde::Serialize;

use crate::account::Ledger;
use crate::fanout::encode;
use crate::sys::{cpu_seconds, Epoll, PollSet, Who};

/// Bytes read from a stream per `read` (a router writes many frames per call).
pub const READ_CHUNK: usize = 256 * 1024;
/// Reads of one ready stream per turn, so one busy stream cannot starve the others.
const READ_TURNS: usize = 4;
/// Most messages a sender builds into one write.
pub const SEND_BATCH: u64 = 128;
/// After the send phase, how long a sender may wait to finish the batch it is writing.
pub const WRITE_GRACE: Duration = Duration::from_secs(2);
/// Password of every load user and of the load group.
pub const PASSWORD: &str = "load";

/// One user's connection and its receive state.
#[derive(Debug)]
pub struct User {
    pub stream: TcpStream,
    pub name: String,
    pub id: i32,
    decoder: Decoder,
    /// The stream ended or broke; it is not read again.
    pub closed: bool,
}

/// Control traffic the receivers saw, summed over users.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ControlCounts {
    /// `/oscrouter/userlist` messages.
    pub userlists: u64,
    /// `/oscrouter/error` messages after registering.
    pub errors: u64,
    /// Other `/oscrouter/...` messages (a late register reply, anything unknown).
    pub other: u64,
    /// Connections the router closed (or that broke) during the run.
    pub closed: u64,
}

impl ControlCounts {
    pub fn add(&mut self, o: &ControlCounts) {
        self.userlists += o.userlists;
        self.errors += o.errors;
        self.other += o.other;
        self.closed += o.closed;
    }

    fn on_control(&mut self, frame: &[u8]) {
        let address = frame.split(|&b| b == 0).next().unwrap_or(frame);
        if address == USERLIST {
            self.userlists += 1;
        } else if address == ERROR {
            self.errors += 1;
        } else {
            self.other += 1;
        }
    }
}

/// What registering found out.
#[derive(Debug, Clone, Serialize)]
pub struct Registered {
    pub group: String,
    pub users: usize,
    /// Seconds from the first connect to the last register reply.
    pub register_s: f64,
    /// Replies at `/oscrouter/register/<user>/<id>` (the package's form).
    pub replies_with_id: usize,
    /// Replies at `/oscrouter/register/<user>` (what oscgate answers a register without id).
    pub replies_without_id: usize,
}

/// Whether `frame` is router control (`/oscrouter` or below), from its first bytes only.
#[inline]
pub fn is_control(frame: &[u8]) -> bool {
    match frame.strip_prefix(PREFIX) {
        Some(rest) => matches!(rest.first(), Some(b'/' | 0)),
        None => false,
    }
}

/// `/oscrouter/register ,ssssi user password group password id`.
pub fn register_message(user: &str, group: &str, id: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let args = [
        Arg::str(user),
        Arg::str(PASSWORD),
        Arg::str(group),
        Arg::str(PASSWORD),
        Arg::Int(id),
    ];
    // Cannot fail: the address starts with '/', the names hold no NUL.
    let _ = write_message(&mut out, REGISTER, &args);
    out
}

/// How a frame answers `user`'s register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `/oscrouter/register/<user>/<id>` (`true`) or `/oscrouter/register/<user>` (`false`).
    Accepted { with_id: bool },
    /// `/oscrouter/error ,s reason`.
    Refused(&'a str),
    /// Anything else (a user list, another user's reply): not an answer.
    Other,
}

/// Classifies `frame` as the answer to the register of `user` with `id`.
pub fn classify_reply<'a>(frame: &'a [u8], user: &str, id: i32) -> Reply<'a> {
    let Ok(Packet::Message(m)) = Packet::new_checked(frame) else {
        return Reply::Other;
    };
    let address = m.address();
    if address == ERROR {
        let reason = m.args().next().and_then(|a| a.as_str()).unwrap_or("");
        return Reply::Refused(reason);
    }
    let Some(rest) = address
        .strip_prefix(REGISTER)
        .and_then(|r| r.strip_prefix(b"/"))
        .and_then(|r| r.strip_prefix(user.as_bytes()))
    else {
        return Reply::Other;
    };
    if rest.is_empty() {
        return Reply::Accepted { with_id: false };
    }
    if rest.strip_prefix(b"/") == Some(id.to_string().as_bytes()) {
        return Reply::Accepted { with_id: true };
    }
    Reply::Other
}

/// Appends `packet` framed with `framing` (len32 unless SLIP) to `out`.
pub fn frame_into(framing: Framing, packet: &[u8], out: &mut Vec<u8>) {
    if framing == Framing::Slip {
        encode_slip(packet, out);
    } else if let Some(h) = len32_header(packet.len()) {
        out.extend_from_slice(&h);
        out.extend_from_slice(packet);
    }
}

/// Writes all of `buf` to the non-blocking `stream`, waiting for room until `give_up`.
/// Returns the bytes written (less than `buf.len()` only with an error).
fn write_until(stream: &TcpStream, buf: &[u8], give_up: Instant) -> (usize, io::Result<()>) {
    let mut done = 0;
    let mut writable = PollSet::new(&[stream], true);
    while done < buf.len() {
        match (&*stream).write(&buf[done..]) {
            Ok(0) => return (done, Err(io::ErrorKind::WriteZero.into())),
            Ok(k) => done += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= give_up {
                    return (done, Err(io::ErrorKind::TimedOut.into()));
                }
                let _ = writable.wait(Duration::from_millis(10));
            }
            Err(e) => return (done, Err(e)),
        }
    }
    (done, Ok(()))
}

/// Connects `names.len()` users to `router`, registers each into `group` and waits up to
/// `timeout` for every reply. Frames that follow a reply stay in that user's decoder.
pub fn connect_and_register(
    router: SocketAddr,
    framing: Framing,
    names: &[String],
    group: &str,
    timeout: Duration,
) -> anyhow::Result<(Vec<User>, Registered)> {
    let start = Instant::now();
    let mut users = Vec::with_capacity(names.len());
    let mut frame = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let stream =
            TcpStream::connect_timeout(&router, Duration::from_secs(3)).with_context(|| {
                format!(
                    "user {name}: connecting to the router at {router} (is a tcposcrouter \
                     listening there? with many users, check `ulimit -n`)"
                )
            })?;
        stream.set_nodelay(true)?;
        let id = i32::try_from(i).unwrap_or(i32::MAX);
        frame.clear();
        frame_into(framing, &register_message(name, group, id), &mut frame);
        (&stream)
            .write_all(&frame)
            .with_context(|| format!("user {name}: sending the register to {router}"))?;
        stream.set_nonblocking(true)?;
        users.push(User {
            stream,
            name: name.clone(),
            id,
            decoder: Decoder::new(Framing::Auto, DEFAULT_MAX_FRAME),
            closed: false,
        });
    }
    let mut answered = vec![false; users.len()];
    let (mut with_id, mut without_id) = (0, 0);
    let mut waiting = users.len();
    let mut set = PollSet::new(&users.iter().map(|u| &u.stream).collect::<Vec<_>>(), false);
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut last_reply = start;
    while waiting > 0 {
        if start.elapsed() >= timeout {
            let first = answered.iter().position(|a| !a).unwrap_or(0);
            bail!(
                "{waiting} of {} users got no register reply from {router} within {:.1} s \
                 (first: {}); is it a tcposcrouter, and is --framing right for that port?",
                users.len(),
                timeout.as_secs_f64(),
                users[first].name
            );
        }
        if set.wait(Duration::from_millis(20)).unwrap_or(0) == 0 {
            continue;
        }
        for (i, u) in users.iter_mut().enumerate() {
            if !set.ready(i) || u.closed {
                continue;
            }
            let mut outcome: Option<Result<bool, String>> = None;
            let (name, id) = (u.name.clone(), u.id);
            let ok = read_available(u, &mut chunk, |f| {
                if outcome.is_some() {
                    return;
                }
                match classify_reply(f, &name, id) {
                    Reply::Accepted { with_id } if !answered[i] => outcome = Some(Ok(with_id)),
                    Reply::Refused(why) if !answered[i] => outcome = Some(Err(why.to_owned())),
                    _ => {}
                }
            });
            match outcome {
                Some(Ok(w)) => {
                    answered[i] = true;
                    waiting -= 1;
                    last_reply = Instant::now();
                    if w {
                        with_id += 1;
                    } else {
                        without_id += 1;
                    }
                }
                Some(Err(why)) => {
                    bail!(
                        "user {}: the router at {router} refused the register: {why}",
                        u.name
                    )
                }
                None if !ok && !answered[i] => bail!(
                    "user {}: the router at {router} closed the connection without a register \
                     reply (the Python package does that on a wrong password or a malformed \
                     register; is --framing right for that port?)",
                    u.name
                ),
                None => {}
            }
        }
    }
    Ok((
        users,
        Registered {
            group: group.to_owned(),
            users: names.len(),
            register_s: (last_reply - start).as_secs_f64(),
            replies_with_id: with_id,
            replies_without_id: without_id,
        },
    ))
}

/// Reads what `u` has now (up to [`READ_TURNS`] reads of `chunk`) and calls `on_frame` for each
/// complete frame. Returns false once the stream has ended, broken or become undecodable.
fn read_available(u: &mut User, chunk: &mut [u8], mut on_frame: impl FnMut(&[u8])) -> bool {
    for _ in 0..READ_TURNS {
        let got = match (&u.stream).read(chunk) {
            Ok(0) => {
                u.closed = true;
                break;
            }
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                u.closed = true;
                break;
            }
        };
        let fatal = u.decoder.decode(&mut chunk[..got], |f| {
            if let Ok(p) = f {
                on_frame(p);
            }
        });
        if fatal.is_err() {
            u.closed = true;
            break;
        }
        // A short read emptied the socket: a further read would only say `WouldBlock`.
        if got < chunk.len() {
            break;
        }
    }
    !u.closed
}

/// What one receiver thread returns.
#[derive(Debug)]
pub struct Received {
    /// Index of its first user in the run's user list.
    pub offset: usize,
    pub ledger: Ledger,
    pub control: ControlCounts,
    pub cpu_s: f64,
}

/// A receiver thread: waits on its users' streams with `epoll`, reads each ready one in large
/// chunks, accounts load frames (the ledger numbers receivers by their place in `users`) and
/// counts control frames, until `stop`. `delivered` counts load frames as they arrive.
pub fn receive(
    users: &mut [User],
    offset: usize,
    senders: usize,
    epoch: Instant,
    stop: &AtomicBool,
    delivered: &AtomicU64,
) -> Received {
    let mut ledger = Ledger::new(users.len(), senders);
    let mut control = ControlCounts::default();
    let mut chunk = vec![0u8; READ_CHUNK];
    let Ok(mut ep) = Epoll::new(users.len().max(1)) else {
        // Nothing to wait with: every stream counts as closed, the ledger stays empty.
        control.closed = users.len() as u64;
        return Received {
            offset,
            ledger,
            control,
            cpu_s: cpu_seconds(Who::Thread),
        };
    };
    for (i, u) in users.iter().enumerate() {
        // A stream closed since it registered, or one epoll refuses (cannot happen with
        // distinct open sockets), is counted rather than lost silently.
        if u.closed || ep.add(&u.stream, i as u64).is_err() {
            control.closed += 1;
        }
    }
    let mut ready = Vec::with_capacity(users.len());
    while !stop.load(Ordering::Relaxed) {
        ready.clear();
        match ep.wait(Duration::from_millis(20)) {
            Ok(it) => ready.extend(it.map(|t| t as usize)),
            Err(_) => break,
        }
        for &r in &ready {
            let Some(u) = users.get_mut(r) else { continue };
            if u.closed {
                continue;
            }
            let mut n = 0u64;
            // One timestamp per read turn, as `fanout` takes one per receive batch.
            let now = epoch.elapsed().as_nanos() as u64;
            let (ledger, control) = (&mut ledger, &mut control);
            let open = read_available(u, &mut chunk, |f| {
                if is_control(f) {
                    control.on_control(f);
                } else {
                    n += 1;
                    ledger.record(r, f, now);
                }
            });
            delivered.fetch_add(n, Ordering::Relaxed);
            if !open {
                control.closed += 1;
                let _ = ep.remove(&u.stream);
            }
        }
    }
    Received {
        offset,
        ledger,
        control,
        cpu_s: cpu_seconds(Who::Thread),
    }
}

/// A sender thread on user `id`'s stream: message `seq` stamped when built, `rate` messages/s
/// (0 = flat out), built in batches of at most [`SEND_BATCH`] that are each written whole
/// (waiting for room: a slow router slows the sender, nothing queues here). Stops at
/// `deadline`; a batch under way then gets [`WRITE_GRACE`] to finish. `counter` holds the
/// messages fully handed to the kernel. Returns the thread's CPU seconds and the write error
/// that ended it early, if any.
#[allow(clippy::too_many_arguments)]
pub fn send(
    stream: &TcpStream,
    id: usize,
    framing: Framing,
    rate: u64,
    pad: &[u8],
    epoch: Instant,
    deadline: Instant,
    counter: &AtomicU64,
) -> (f64, Option<String>) {
    let mut msg = Vec::with_capacity(pad.len() + 64);
    let mut batch = Vec::with_capacity((pad.len() + 80) * SEND_BATCH as usize);
    let mut ends = Vec::with_capacity(SEND_BATCH as usize);
    let start = Instant::now();
    let mut seq = 0u64;
    let mut error = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let burst = if rate == 0 {
            SEND_BATCH
        } else {
            let due = (now - start).as_nanos() * rate as u128 / 1_000_000_000;
            let due = u64::try_from(due).unwrap_or(u64::MAX);
            if due <= seq {
                let next = start + Duration::from_nanos((seq + 1) * 1_000_000_000 / rate);
                thread::sleep(
                    next.saturating_duration_since(now)
                        .min(Duration::from_millis(1)),
                );
                continue;
            }
            (due - seq).min(SEND_BATCH)
        };
        batch.clear();
        ends.clear();
        for k in 0..burst {
            encode(
                &mut msg,
                id,
                seq + k,
                epoch.elapsed().as_nanos() as u64,
                pad,
            );
            frame_into(framing, &msg, &mut batch);
            ends.push(batch.len());
        }
        let (written, r) = write_until(stream, &batch, deadline.max(Instant::now()) + WRITE_GRACE);
        seq += ends.iter().take_while(|&&e| e <= written).count() as u64;
        counter.store(seq, Ordering::Relaxed);
        if let Err(e) = r {
            error = Some(format!("sender {id}: writing to the router: {e}"));
            break;
        }
    }
    counter.store(seq, Ordering::Relaxed);
    (cpu_seconds(Who::Thread), error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oscgate::wire::framing::encode_len32;

    fn msg(address: &[u8], args: &[Arg<'_>]) -> Vec<u8> {
        let mut v = Vec::new();
        write_message(&mut v, address, args).unwrap();
        v
    }

    #[test]
    fn register_carries_user_group_passwords_and_id() {
        let p = register_message("user3", "g1", 3);
        let Ok(Packet::Message(m)) = Packet::new_checked(&p) else {
            panic!("not a message")
        };
        assert_eq!(m.address(), REGISTER);
        assert_eq!(m.type_tags(), b"ssssi");
        let args: Vec<Arg<'_>> = m.args().collect();
        assert_eq!(args[0].as_str(), Some("user3"));
        assert_eq!(args[2].as_str(), Some("g1"));
        assert_eq!(args[4], Arg::Int(3));
        assert!(is_control(&p));
    }

    #[test]
    fn replies_are_told_apart() {
        let with_id = msg(b"/oscrouter/register/user3/3", &[]);
        let without = msg(b"/oscrouter/register/user3", &[]);
        let other_user = msg(b"/oscrouter/register/user30/3", &[]);
        let wrong_id = msg(b"/oscrouter/register/user3/4", &[]);
        let list = msg(USERLIST, &[Arg::str("user3")]);
        let error = msg(ERROR, &[Arg::str("wrong password")]);
        assert_eq!(
            classify_reply(&with_id, "user3", 3),
            Reply::Accepted { with_id: true }
        );
        assert_eq!(
            classify_reply(&without, "user3", 3),
            Reply::Accepted { with_id: false }
        );
        for p in [&other_user, &wrong_id, &list] {
            assert_eq!(classify_reply(p, "user3", 3), Reply::Other);
        }
        assert_eq!(
            classify_reply(&error, "user3", 3),
            Reply::Refused("wrong password")
        );
        assert_eq!(classify_reply(b"garbage", "user3", 3), Reply::Other);
    }

    #[test]
    fn control_frames_are_recognised_and_counted() {
        let mut c = ControlCounts::default();
        for p in [
            msg(USERLIST, &[Arg::str("a")]),
            msg(ERROR, &[Arg::str("x")]),
            msg(b"/oscrouter/register/a/1", &[]),
        ] {
            assert!(is_control(&p));
            c.on_control(&p);
        }
        assert_eq!((c.userlists, c.errors, c.other), (1, 1, 1));
        assert!(!is_control(&msg(b"/load/00", &[Arg::Int(1)])));
        assert!(!is_control(&msg(b"/oscrouterX", &[])));
        assert!(!is_control(b""));
    }

    #[test]
    fn frames_both_ways() {
        let p = msg(b"/load/00", &[Arg::Blob(&[0xC0, 0xDB, 1])]);
        let mut len32 = Vec::new();
        frame_into(Framing::Len32, &p, &mut len32);
        let mut want = Vec::new();
        encode_len32(&p, &mut want).unwrap();
        assert_eq!(len32, want);
        let mut slip = Vec::new();
        frame_into(Framing::Slip, &p, &mut slip);
        let mut dec = Decoder::new(Framing::Auto, DEFAULT_MAX_FRAME);
        let mut got = Vec::new();
        dec.decode(&mut slip, |f| got.push(f.unwrap().to_vec()))
            .unwrap();
        assert_eq!(got, [p]);
    }
}
