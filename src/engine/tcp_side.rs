//! A worker's TCP side: its `SO_REUSEPORT` listeners (one per TCP front door), its connections (a slab with generations,
//! so a stale [`ConnId`] never reaches a new connection), and what a readiness event means for
//! each. Frames read from a connection are routed like datagrams ([`State::route`]); frames
//! for a connection are framed once per framing per packet ([`Framer`]) and queued on the
//! connection ([`Conn::enqueue`], with its slow-reader policy); every connection with output
//! gets one vectored write per loop turn ([`TcpSide::after_turn`]).
//!
//! Connections that never join (a Messenger patron admitted, a router user registered) are
//! closed after their door's idle limit; a fatal framing
//! error (e.g. a length prefix over `tcp.max_frame`) closes the connection; the control thread
//! hears of every close.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::bus::{ConnId, ControlMsg, Endpoint};
use super::counters::{Counters, C};
use super::driver::{Out, FIRST_WORKER_TOKEN};
use super::tcp::{Conn, ConnConfig, Enqueue, Framer, ReadOutcome, WriteOutcome};
use super::worker::{Origin, State};
use crate::wire::framing::Framing;

/// Listener tokens: `FIRST_LISTENER + i` for the worker's i-th listener.
const FIRST_LISTENER: usize = FIRST_WORKER_TOKEN + 1;
/// Listeners one worker may have.
const MAX_LISTENERS: usize = 8;
const FIRST_CONN: usize = FIRST_LISTENER + MAX_LISTENERS;
/// Bytes read from one connection per turn before the others get their go.
const READ_BUDGET: usize = 256 * 1024;
/// The worker's read buffer.
const SCRATCH: usize = 64 * 1024;
/// A connection whose last this many frames were all malformed (bad framing, or not OSC on a
/// router connection) is closed: it is sending nothing but garbage.
const MAX_BAD_RUN: u32 = 64;

/// Packets a router connection sent while its register was being answered.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) ip: std::net::IpAddr,
    pub(crate) packets: Vec<Bytes>,
    pub(crate) bytes: usize,
    /// The connection is gone (since then); the packets wait for the register's answer.
    pub(crate) closed_at: Option<Instant>,
    /// Packets for the connection (its register answer, its user list) that wait until this
    /// worker routes it as registered, then go out first, in order.
    pub(crate) replies: Vec<Bytes>,
}

impl Held {
    pub(crate) fn new(ip: std::net::IpAddr) -> Held {
        Held {
            ip,
            packets: Vec::new(),
            bytes: 0,
            closed_at: None,
            replies: Vec::new(),
        }
    }
}

/// Most bytes held for one connection waiting for its register answer, and for all of a
/// worker's connections together; more are dropped (counted as egress queue full).
pub(crate) const MAX_HELD_BYTES: usize = 64 * 1024;
pub(crate) const MAX_HELD_TOTAL: usize = 8 << 20;

/// The front door a connection came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The Messenger patron port.
    Messenger,
    /// A tcposcrouter port.
    Router,
}

/// How the connections of one listener are run.
#[derive(Debug, Clone)]
pub struct DoorSettings {
    /// Framing, frame limit and output queue bounds.
    pub conn: ConnConfig,
    /// A connection dropping frames with no write progress for this long is closed.
    pub slow_reader: Duration,
    /// A connection that has not joined (patron admitted, router user registered) after this
    /// long is closed.
    pub idle_stranger: Duration,
}

/// TCP settings of a worker.
#[derive(Debug, Clone)]
pub struct TcpSettings {
    /// Connections one worker holds; more are closed as soon as accepted.
    pub max_conns: usize,
}

struct Listener {
    door: Door,
    listener: TcpListener,
    settings: DoorSettings,
}

struct Live {
    conn: Conn<TcpStream>,
    door: Door,
    idle_limit: Duration,
    peer: SocketAddr,
    accepted: Instant,
    /// Close once the output queue is empty.
    closing: bool,
    /// Close at the next write, dropping what is queued (a reader too slow to keep up).
    abort: bool,
    /// Has output queued and is on the `dirty` list.
    dirty: bool,
    /// Stopped reading because of the budget: read again next turn.
    more: bool,
    /// Malformed frames in a row.
    bad_run: u32,
    /// The close-if-still-stalled limit, and when the sweep first saw it dropping frames
    /// with no write progress.
    slow_reader: Duration,
    stalled_since: Option<Instant>,
}

struct Slot {
    generation: u32,
    live: Option<Live>,
}

/// See the module docs.
pub(crate) struct TcpSide {
    worker: u16,
    registry: Registry,
    listeners: Vec<Listener>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    dirty: Vec<u32>,
    more: Vec<u32>,
    /// Router connections whose register went to the control thread and is not answered yet:
    /// what they sent since, held in order until the published snapshot shows them registered
    /// (then replayed) or they are closed (then dropped). Bounded per connection.
    pub(crate) router_held: HashMap<ConnId, Held>,
    /// Bytes in `router_held`.
    pub(crate) held_total: usize,
    scratch: Box<[u8]>,
    pub(crate) framer: Framer,
    len32: Option<Bytes>,
    slip: Option<Bytes>,
    settings: TcpSettings,
    last_sweep: Instant,
}

impl TcpSide {
    pub(crate) fn new(
        worker: u16,
        registry: Registry,
        listeners: Vec<(Door, std::net::TcpListener, DoorSettings)>,
        settings: TcpSettings,
    ) -> io::Result<TcpSide> {
        if listeners.len() > MAX_LISTENERS {
            return Err(io::Error::other("too many TCP listeners for one worker"));
        }
        let mut registered = Vec::with_capacity(listeners.len());
        for (i, (door, l, settings)) in listeners.into_iter().enumerate() {
            l.set_nonblocking(true)?;
            let mut listener = TcpListener::from_std(l);
            registry.register(&mut listener, Token(FIRST_LISTENER + i), Interest::READABLE)?;
            registered.push(Listener {
                door,
                listener,
                settings,
            });
        }
        Ok(TcpSide {
            worker,
            registry,
            listeners: registered,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            dirty: Vec::new(),
            more: Vec::new(),
            router_held: HashMap::new(),
            held_total: 0,
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            framer: Framer::new(64 * 1024),
            len32: None,
            slip: None,
            settings,
            last_sweep: Instant::now(),
        })
    }

    /// Forgets the frames encoded for the previous packet.
    pub(crate) fn begin_packet(&mut self) {
        self.len32 = None;
        self.slip = None;
    }

    fn id_of(&self, slot: u32) -> ConnId {
        ConnId {
            worker: self.worker,
            slot,
            generation: self.slots[slot as usize].generation,
        }
    }

    fn live_mut(&mut self, c: ConnId) -> Option<&mut Live> {
        if c.worker != self.worker {
            return None;
        }
        let s = self.slots.get_mut(c.slot as usize)?;
        if s.generation != c.generation {
            return None;
        }
        s.live.as_mut()
    }

    /// Queues `packet` on local connection `c`, framed for it. False if it is gone or the
    /// packet was dropped by its slow-reader policy.
    pub(crate) fn deliver_local(&mut self, c: ConnId, packet: &[u8], counters: &Counters) -> bool {
        let framing = match self.live_mut(c) {
            // A connection being closed (expelled, or given up as too slow) takes nothing more.
            Some(l) if !l.closing && !l.abort => l.conn.framing(),
            _ => return false,
        };
        let frame = match framing {
            Framing::Slip => self
                .slip
                .get_or_insert_with(|| self.framer.slip(packet))
                .clone(),
            _ => self
                .len32
                .get_or_insert_with(|| self.framer.len32(packet))
                .clone(),
        };
        let Some(live) = self.live_mut(c) else {
            return false;
        };
        let (queued, close) = match live.conn.enqueue(frame) {
            Enqueue::Queued => (true, false),
            Enqueue::DroppedOldest(n) => {
                counters.add(C::TcpSlowDropped, n as u64);
                (true, false)
            }
            Enqueue::Dropped => {
                counters.bump(C::TcpSlowDropped);
                (false, false)
            }
            Enqueue::Disconnect => {
                counters.bump(C::TcpSlowClosed);
                (false, true)
            }
        };
        if close {
            live.abort = true;
        }
        if !live.dirty {
            live.dirty = true;
            self.dirty.push(c.slot);
        }
        queued
    }

    /// Records whether a frame of `c` was well-formed; true when its run of malformed frames
    /// has reached the limit (then it should be closed).
    pub(crate) fn track_bad(&mut self, c: ConnId, good: bool) -> bool {
        let Some(live) = self.live_mut(c) else {
            return false;
        };
        live.bad_run = if good {
            0
        } else {
            live.bad_run.saturating_add(1)
        };
        live.bad_run >= MAX_BAD_RUN
    }

    /// Closes `c` now (if it is still open).
    pub(crate) fn close_now(
        &mut self,
        c: ConnId,
        counters: &Counters,
        control: &super::bus::Mailbox<ControlMsg>,
    ) {
        if self.live_mut(c).is_some() {
            self.close(c.slot, counters, control);
        }
    }

    /// Closes `c` once what is queued for it has been written.
    pub(crate) fn close_after_flush(
        &mut self,
        c: ConnId,
        control: &super::bus::Mailbox<ControlMsg>,
    ) {
        // The control thread closes a router connection only when it refused it: what it
        // sent after its register is dropped; if it is gone already, it is gone now.
        if let Some(h) = self.router_held.remove(&c) {
            self.held_total -= h.bytes;
            if h.closed_at.is_some() {
                let _ = control.push(ControlMsg::Closed(c));
            }
        }
        if let Some(live) = self.live_mut(c) {
            live.closing = true;
            if !live.dirty {
                live.dirty = true;
                self.dirty.push(c.slot);
            }
        }
    }

    /// A readiness event for the listener or a connection.
    pub(crate) fn event(state: &mut State, ev: &mio::event::Event, out: &mut Out) {
        let t = ev.token();
        if (FIRST_LISTENER..FIRST_CONN).contains(&t.0) {
            state.tcp.accept_all(
                t.0 - FIRST_LISTENER,
                &state.shared.workers[usize::from(state.id)].counters,
            );
            return;
        }
        let Some(slot) = t.0.checked_sub(FIRST_CONN) else {
            return;
        };
        let slot = slot as u32;
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            Self::read(state, slot, out);
        }
        if ev.is_writable() {
            Self::write(state, slot);
        }
    }

    fn accept_all(&mut self, which: usize, counters: &Counters) {
        loop {
            let Some(l) = self.listeners.get(which) else {
                return;
            };
            let (mut stream, peer) = match l.listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ECONNABORTED, EMFILE...: the next readiness tries again.
                Err(_) => return,
            };
            if self.live >= self.settings.max_conns {
                counters.bump(C::TcpRefused);
                drop(stream);
                continue;
            }
            let slot = match self.free.pop() {
                Some(s) => s,
                None => {
                    self.slots.push(Slot {
                        generation: 0,
                        live: None,
                    });
                    (self.slots.len() - 1) as u32
                }
            };
            let _ = stream.set_nodelay(true);
            let token = Token(FIRST_CONN + slot as usize);
            if self
                .registry
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                self.free.push(slot);
                counters.bump(C::TcpRefused);
                continue;
            }
            let l = &self.listeners[which];
            self.slots[slot as usize].live = Some(Live {
                conn: Conn::new(stream, &l.settings.conn),
                door: l.door,
                idle_limit: l.settings.idle_stranger,
                peer,
                accepted: Instant::now(),
                closing: false,
                abort: false,
                dirty: false,
                more: false,
                bad_run: 0,
                slow_reader: l.settings.slow_reader,
                stalled_since: None,
            });
            self.live += 1;
            counters.bump(C::TcpAccepted);
        }
    }

    /// Reads what `slot` has (up to the budget) and routes every frame.
    fn read(state: &mut State, slot: u32, out: &mut Out) {
        let Some(mut live) = state
            .tcp
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.live.take())
        else {
            return;
        };
        let id = state.tcp.id_of(slot);
        let from = Endpoint::Tcp(id);
        let ip = live.peer.ip();
        let mut scratch = std::mem::take(&mut state.tcp.scratch);
        let door = live.door;
        let mut bad_run = live.bad_run;
        let outcome = live.conn.on_readable(&mut scratch, READ_BUDGET, |frame| {
            let counters = &state.shared.workers[usize::from(state.id)].counters;
            let good = match frame {
                Ok(packet) => {
                    counters.bump(C::Received);
                    counters.bump(match door {
                        Door::Messenger => C::RxMessenger,
                        Door::Router => C::RxRouter,
                    });
                    match door {
                        Door::Messenger => {
                            state.route(Some(from), ip, packet, Origin::Stream, out);
                            true
                        }
                        Door::Router => state.route_router(id, ip, packet),
                    }
                }
                Err(_) => {
                    counters.bump(C::TcpBadFrame);
                    false
                }
            };
            bad_run = if good { 0 } else { bad_run.saturating_add(1) };
        });
        live.bad_run = bad_run;
        state.tcp.scratch = scratch;
        let counters = &state.shared.workers[usize::from(state.id)].counters;
        let garbage = bad_run >= MAX_BAD_RUN;
        if garbage {
            counters.bump(C::TcpFatal);
        }
        let close = garbage
            || match outcome {
                ReadOutcome::Open => false,
                ReadOutcome::More => {
                    if !live.more {
                        live.more = true;
                        state.tcp.more.push(slot);
                    }
                    false
                }
                ReadOutcome::Closed(reason) => {
                    if reason.is_fatal_framing() {
                        counters.bump(C::TcpFatal);
                    }
                    true
                }
            };
        state.tcp.slots[slot as usize].live = Some(live);
        if close {
            let counters = &state.shared.workers[usize::from(state.id)].counters;
            state.tcp.close(slot, counters, &state.shared.control);
            state.shared.control.wake();
        }
    }

    fn write(state: &mut State, slot: u32) {
        let counters = &state.shared.workers[usize::from(state.id)].counters;
        let tcp = &mut state.tcp;
        let Some(live) = tcp
            .slots
            .get_mut(slot as usize)
            .and_then(|s| s.live.as_mut())
        else {
            return;
        };
        let close = live.abort
            || match live.conn.on_writable() {
                WriteOutcome::Drained => live.closing,
                WriteOutcome::Pending => false,
                WriteOutcome::Closed(_) => true,
            };
        if close {
            tcp.close(slot, counters, &state.shared.control);
            state.shared.control.wake();
        }
    }

    fn close(&mut self, slot: u32, counters: &Counters, control: &super::bus::Mailbox<ControlMsg>) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(mut live) = s.live.take() else {
            return;
        };
        let id = ConnId {
            worker: self.worker,
            slot,
            generation: s.generation,
        };
        s.generation = s.generation.wrapping_add(1);
        let _ = self.registry.deregister(live.conn.stream_mut());
        drop(live);
        self.free.push(slot);
        self.live -= 1;
        counters.bump(C::TcpClosed);
        // A router client that sent its register and more, then hung up at once (liblo's
        // `oscsendfile`): what it sent still goes out once the register is answered, so the
        // control thread hears of the close only after that (see `finish_held`).
        if let Some(h) = self.router_held.get_mut(&id) {
            if !h.packets.is_empty() {
                h.closed_at = Some(Instant::now());
                return;
            }
            self.router_held.remove(&id);
        }
        // If the control queue is full the patron still expires on its timeout.
        let _ = control.push(ControlMsg::Closed(id));
    }

    /// Forgets the held packets of a router connection that is already closed, and tells the
    /// control thread it is gone.
    pub(crate) fn finish_held(&mut self, c: ConnId, control: &super::bus::Mailbox<ControlMsg>) {
        if self
            .router_held
            .get(&c)
            .is_some_and(|h| h.closed_at.is_some())
        {
            if let Some(h) = self.router_held.remove(&c) {
                self.held_total -= h.bytes;
            }
            let _ = control.push(ControlMsg::Closed(c));
        }
    }

    /// Whether reads were cut short by the budget (the next turn must not block).
    pub(crate) fn busy(&self) -> bool {
        !self.more.is_empty()
    }

    /// End of a turn (inside the driver's turn): continue budget-limited reads.
    pub(crate) fn continue_reads(state: &mut State, out: &mut Out) {
        if state.tcp.more.is_empty() {
            return;
        }
        let more = std::mem::take(&mut state.tcp.more);
        for &slot in &more {
            if let Some(l) = state.tcp.slots[slot as usize].live.as_mut() {
                l.more = false;
            }
        }
        for &slot in &more {
            Self::read(state, slot, out);
        }
        // Keep the list's allocation when nothing was re-queued.
        if state.tcp.more.is_empty() {
            let mut more = more;
            more.clear();
            state.tcp.more = more;
        }
    }

    /// After a turn: one vectored write per connection with output, and (twice a second)
    /// close strangers idle past the limit.
    pub(crate) fn after_turn(state: &mut State) {
        let dirty = std::mem::take(&mut state.tcp.dirty);
        for &slot in &dirty {
            if let Some(l) = state.tcp.slots[slot as usize].live.as_mut() {
                l.dirty = false;
            }
            Self::write(state, slot);
        }
        state.tcp.dirty = dirty;
        state.tcp.dirty.clear();
        let now = Instant::now();
        if now.duration_since(state.tcp.last_sweep) >= Duration::from_millis(500) {
            state.tcp.last_sweep = now;
            let mut idle = Vec::new();
            let mut stalled = Vec::new();
            for (i, s) in state.tcp.slots.iter_mut().enumerate() {
                if let Some(l) = &mut s.live {
                    // Slow-reader policy, the time part: dropping frames and not one write
                    // getting through for `slow_reader`.
                    if l.conn.drops_since_progress() == 0 {
                        l.stalled_since = None;
                    } else {
                        let since = *l.stalled_since.get_or_insert(now);
                        if now.duration_since(since) >= l.slow_reader {
                            stalled.push(i as u32);
                            continue;
                        }
                    }
                    let id = ConnId {
                        worker: state.id,
                        slot: i as u32,
                        generation: s.generation,
                    };
                    let joined = state.snap.as_ref().is_some_and(|s| match l.door {
                        Door::Messenger => s.members.contains_key(&Endpoint::Tcp(id)),
                        Door::Router => s.router.conns.contains_key(&id),
                    });
                    if now.duration_since(l.accepted) >= l.idle_limit && !joined {
                        idle.push(i as u32);
                    }
                }
            }
            for slot in idle {
                let counters = &state.shared.workers[usize::from(state.id)].counters;
                state.tcp.close(slot, counters, &state.shared.control);
            }
            for slot in stalled {
                let counters = &state.shared.workers[usize::from(state.id)].counters;
                counters.bump(C::TcpSlowClosed);
                state.tcp.close(slot, counters, &state.shared.control);
            }
            // Held packets of closed connections whose register was never answered.
            let stale: Vec<ConnId> = state
                .tcp
                .router_held
                .iter()
                .filter(|(_, h)| {
                    h.closed_at
                        .is_some_and(|t| now.duration_since(t) >= Duration::from_secs(10))
                })
                .map(|(c, _)| *c)
                .collect();
            for c in stale {
                state.tcp.finish_held(c, &state.shared.control);
            }
        }
    }

    /// Writes what is queued, for up to `limit` (shutdown).
    pub(crate) fn flush_all(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let mut pending = false;
            for s in &mut self.slots {
                if let Some(l) = s.live.as_mut() {
                    if l.conn.wants_write() {
                        if let WriteOutcome::Pending = l.conn.on_writable() {
                            pending = true;
                        }
                    }
                }
            }
            if !pending || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
