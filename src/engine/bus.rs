//! What workers and the control thread share: endpoint and destination names, the published
//! [`Snapshot`] (route table plus membership, swapped whole), and the bounded queues between
//! threads with their wake-ups.
//!
//! Ingress classes of the route table (see [`crate::route`]) used by the engine:
//! [`GROUP`] (the Messenger multicast group), [`PATRON`] (an admitted patron, UDP or TCP) and
//! [`STRANGER`] (anyone else on the patron port).

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

use arc_swap::ArcSwap;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;

use super::counters::Counters;
use crate::route::{Ingress, Protocol, RouteTable};

/// Traffic from the Messenger multicast group.
pub const GROUP: Ingress = Ingress(0);
/// Traffic from an admitted patron.
pub const PATRON: Ingress = Ingress(1);
/// Traffic on the patron port from anyone not admitted.
pub const STRANGER: Ingress = Ingress(2);
/// The number of ingress classes.
pub const INGRESS_CLASSES: u16 = 3;

/// A TCP connection: the worker that owns it, its slot there, and the slot's generation (so a
/// reused slot is never mistaken for the connection that had it before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub worker: u16,
    pub slot: u32,
    pub generation: u32,
}

/// The `worker` of a [`ConnId`] that stands for a WebSocket session on a tcposcrouter bus
/// (served by the edge thread, not a worker).
pub const EDGE_WORKER: u16 = u16::MAX;

impl ConnId {
    /// The connection id of WebSocket session `session` on a tcposcrouter bus.
    pub fn edge(session: u64) -> ConnId {
        ConnId {
            worker: EDGE_WORKER,
            slot: session as u32,
            generation: (session >> 32) as u32,
        }
    }

    /// The WebSocket session this id stands for, if it is one.
    pub fn edge_session(&self) -> Option<u64> {
        (self.worker == EDGE_WORKER)
            .then(|| u64::from(self.slot) | (u64::from(self.generation) << 32))
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp#{}.{}.{}", self.worker, self.slot, self.generation)
    }
}

/// A peer the protocols can address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// A UDP peer on the patron port, by source address and port.
    Udp(SocketAddr),
    /// A TCP connection.
    Tcp(ConnId),
    /// A WebSocket gateway session (served by the edge thread).
    Ws(u64),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Udp(a) => write!(f, "udp {a}"),
            Endpoint::Tcp(c) => write!(f, "{c}"),
            Endpoint::Ws(s) => write!(f, "ws#{s}"),
        }
    }
}

/// A forwarding destination in the route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dest {
    /// The Messenger multicast group.
    Group,
    /// One endpoint.
    Peer(Endpoint),
}

/// A member of a bus, as the workers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its ingress class.
    pub ingress: Ingress,
    /// Its flag in [`Snapshot::seen`].
    pub seen: u32,
}

/// Everything the workers route by, published whole by the control thread.
pub struct Snapshot {
    /// The compiled route table.
    pub table: RouteTable<Dest>,
    /// Admitted endpoints.
    pub members: HashMap<Endpoint, Member, foldhash::fast::FixedState>,
    /// One flag per member, set by a worker when the member sends anything, cleared by the
    /// control thread when it notes the traffic (keeps patrons alive without a control message
    /// per packet).
    pub seen: Arc<[AtomicBool]>,
    /// The tcposcrouter groups.
    pub router: RouterSnap,
    /// OSChat: per receiving interface, the interfaces this node forwards new messages to
    /// (bit masks; empty when OSChat is off).
    pub chat: Vec<u64>,
}

/// The tcposcrouter groups as the workers need them: who is registered, and where each
/// group's traffic goes.
#[derive(Debug, Default)]
pub struct RouterSnap {
    /// Registered connection -> (group index, user index in that group).
    pub conns: HashMap<ConnId, (u32, u32), foldhash::fast::FixedState>,
    /// By group index.
    pub groups: Vec<RouterGroup>,
}

/// One tcposcrouter group.
#[derive(Debug, Default)]
pub struct RouterGroup {
    /// Every connection of the group with its user index, users in join order.
    pub conns: Vec<(u32, ConnId)>,
    /// User names by user index (for private messages).
    pub users: Vec<String>,
}

impl Snapshot {
    /// The ingress class of a packet from `from`, marking the member as seen.
    #[inline]
    pub fn classify(&self, from: &Endpoint) -> Ingress {
        match self.members.get(from) {
            Some(m) => {
                if let Some(flag) = self.seen.get(m.seen as usize) {
                    // Load first so a busy patron does not bounce the cache line.
                    if !flag.load(Ordering::Relaxed) {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
                m.ingress
            }
            None => STRANGER,
        }
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("members", &self.members.len())
            .finish()
    }
}

/// A packet or event for the control thread.
#[derive(Debug)]
pub enum ControlMsg {
    /// A control packet (copied out of the receive buffer).
    Packet {
        protocol: Protocol,
        from: Endpoint,
        source_ip: Ipv4Addr,
        packet: Bytes,
    },
    /// An OSChat packet heard on interface `iface`: its duplicate key (0 for mesh messages),
    /// whether the duplicate filter had not seen it, and the interfaces it was forwarded to.
    Chat {
        iface: u8,
        key: u64,
        first: bool,
        forwarded: u64,
        packet: Bytes,
    },
    /// A TCP connection closed.
    Closed(ConnId),
    /// A WebSocket session identified and asks to join a bus.
    WsOpen(WsOpen),
    /// A WebSocket session ended.
    WsClosed(u64),
    /// A WebSocket session in an OSChat room says something (an OSChat message, checked by
    /// the edge): the node broadcasts it.
    WsChat { session: u64, packet: Bytes },
}

/// A WebSocket session's request to join a bus.
#[derive(Clone, PartialEq, Eq)]
pub struct WsOpen {
    pub session: u64,
    /// `messenger`, `router/<group>`, `oschat/<room>`.
    pub bus: String,
    pub client_type: String,
    pub client_agent: String,
    /// tcposcrouter and OSChat: the user name.
    pub user: String,
    /// tcposcrouter: the user's and the group's passwords (never printed).
    pub password: String,
    pub group_password: String,
}

impl fmt::Debug for WsOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsOpen")
            .field("session", &self.session)
            .field("bus", &self.bus)
            .field("client_type", &self.client_type)
            .field("client_agent", &self.client_agent)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Why a WebSocket session may not join a bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The error frame's code (`unknown_bus`, `too_many_sessions`, ...).
    pub code: String,
    pub message: String,
}

/// The answer to a WebSocket session's request to join.
pub type Joined = Result<(), Refusal>;

/// What the engine tells the edge thread.
#[derive(Debug)]
pub enum EdgeMsg {
    /// A packet for a session.
    Deliver { session: u64, packet: Bytes },
    /// The answer to [`ControlMsg::WsOpen`]: joined, or refused with an error code and text.
    Opened { session: u64, result: Joined },
}

/// The queue to the edge thread, with its wake-up (the edge runs on tokio).
pub struct EdgeLink {
    queue: ArrayQueue<EdgeMsg>,
    notify: tokio::sync::Notify,
}

impl EdgeLink {
    pub fn new(capacity: usize) -> EdgeLink {
        EdgeLink {
            queue: ArrayQueue::new(capacity.max(1)),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// Queues without waking; false if full.
    pub fn push(&self, msg: EdgeMsg) -> bool {
        self.queue.push(msg).is_ok()
    }

    /// Wakes the edge (a wake-up given while it is busy is kept for its next wait).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Edge side: the next message.
    pub fn pop(&self) -> Option<EdgeMsg> {
        self.queue.pop()
    }

    /// Edge side: waits for a wake-up.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// A job for one worker.
#[derive(Debug)]
pub enum WorkerMsg {
    /// Send an OSC packet (unframed) to an endpoint this worker can reach (any UDP peer, or a
    /// TCP connection it owns).
    Send { to: Endpoint, packet: Bytes },
    /// Route an OSC packet as if it had arrived from `from` (a WebSocket session's message).
    Inject { from: Endpoint, packet: Bytes },
    /// Send an OSC packet to the Messenger group.
    SendGroup { packet: Bytes },
    /// Broadcast an OSC packet on OSChat interface `iface` (the worker owning those sockets).
    SendChat { iface: u8, packet: Bytes },
    /// Close a TCP connection it owns (after flushing what is queued for it).
    Close(ConnId),
    /// Flush everything queued and stop.
    Stop,
}

/// A bounded queue with a wake-up that is only sent when the consumer may be asleep.
pub struct Mailbox<T> {
    queue: ArrayQueue<T>,
    /// Set by a producer that woke the consumer; cleared by the consumer before it drains.
    woken: AtomicBool,
    waker: OnceLock<Waker>,
}

/// How a mailbox wakes its consumer.
pub enum Waker {
    /// A worker blocked in its driver.
    Mio(mio::Waker),
    /// The control thread, parked.
    Thread(Thread),
}

impl<T> Mailbox<T> {
    /// A mailbox holding at most `capacity` items.
    pub fn new(capacity: usize) -> Mailbox<T> {
        Mailbox {
            queue: ArrayQueue::new(capacity.max(1)),
            woken: AtomicBool::new(false),
            waker: OnceLock::new(),
        }
    }

    /// Sets the wake-up (once, by the consumer when it starts).
    pub fn set_waker(&self, w: Waker) {
        let _ = self.waker.set(w);
    }

    /// Queues `item` without blocking; gives it back if the queue is full. Does not wake.
    pub fn push(&self, item: T) -> Result<(), T> {
        self.queue.push(item)
    }

    /// Wakes the consumer unless a wake-up is already pending.
    pub fn wake(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            match self.waker.get() {
                Some(Waker::Mio(w)) => {
                    let _ = w.wake();
                }
                Some(Waker::Thread(t)) => t.unpark(),
                None => {}
            }
        }
    }

    /// Queues and wakes.
    pub fn send(&self, item: T) -> Result<(), T> {
        self.push(item)?;
        self.wake();
        Ok(())
    }

    /// Consumer side: re-enables wake-ups, then takes one item.
    pub fn pop(&self) -> Option<T> {
        self.woken.store(false, Ordering::Release);
        self.queue.pop()
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// One worker's links: its mailbox and its counters.
pub struct WorkerLink {
    pub mailbox: Mailbox<WorkerMsg>,
    pub counters: Counters,
}

/// The state every engine thread shares.
pub struct Shared {
    /// The current snapshot.
    pub snapshot: ArcSwap<Snapshot>,
    /// Control packets and events, to the control thread.
    pub control: Mailbox<ControlMsg>,
    /// One per worker, by worker id.
    pub workers: Box<[WorkerLink]>,
    /// The clock every thread reads time from (the duplicate filter's times are milliseconds
    /// since this instant).
    pub epoch: std::time::Instant,
    /// The worker that owns the OSChat sockets, if OSChat runs.
    pub chat_worker: Option<usize>,
    /// To the edge thread (WebSocket sessions).
    pub edge: EdgeLink,
    /// What the control thread knows, for the status page, API and metrics.
    pub status: ArcSwap<crate::status::ControlStatus>,
}

impl Shared {
    /// The worker that should send to `to`: the owner of a TCP connection; for UDP, a worker
    /// chosen by the address (so one peer's packets keep their order).
    pub fn worker_for(&self, to: &Endpoint) -> usize {
        let n = self.workers.len().max(1);
        match to {
            Endpoint::Tcp(c) => match c.edge_session() {
                Some(s) => (s % n as u64) as usize,
                None => usize::from(c.worker) % n,
            },
            Endpoint::Udp(a) => (a.port() as usize) % n,
            Endpoint::Ws(s) => (*s % n as u64) as usize,
        }
    }
}
