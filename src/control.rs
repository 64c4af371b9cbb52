//! The control thread (slow path): runs the protocol state machines and their timers, turns
//! their actions into jobs for the workers, and compiles and publishes a new [`Snapshot`]
//! (route table plus membership) whenever membership changes. It never touches a socket.
//!
//! Inputs arrive in the bounded control mailbox (packets the route table marked as control,
//! TCP closes); the workers' "seen" flags tell it which patrons sent traffic, so keepalive
//! does not need a control message per forwarded packet. Every 10 s it logs the summed worker
//! counters at debug level, and a warning (at most one per 10 s) if malformed packets or drops
//! because a queue was full were counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::engine::bus::{
    ConnId, ControlMsg, Dest, EdgeMsg, Endpoint, Joined, Member, Refusal, RouterGroup, RouterSnap,
    Shared, Snapshot, Waker, WorkerMsg, WsOpen, GROUP, INGRESS_CLASSES, PATRON, STRANGER,
};
use crate::engine::chat::{self, ChatIface};
use crate::engine::counters::{self, C};
use crate::proto::chatnode::ChatNode;
use crate::proto::messenger::{Action as MAction, Gateway, GATEWAY_PREFIX};
use crate::proto::oschat::Chat;
use crate::proto::router::{Action as RAction, Router};
use crate::route::{Action, CompileError, DropReason, Matcher, Protocol, RouteTableBuilder, Rule};
use crate::status::{
    ChatIfaceStatus, ChatRoomStatus, ChatStatus, ChatUserStatus, ControlStatus, GroupStatus,
    LaneStatus, MessengerStatus, PatronStatus, RouterStatus, RouterUserStatus, WsSessionStatus,
};

/// Control messages handled per loop iteration before timers and publishing get their turn.
const DRAIN_BUDGET: usize = 4096;
/// The longest the control thread sleeps.
const MAX_SLEEP: Duration = Duration::from_millis(250);
/// How often counters are logged and checked.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// How often the status the edge shows is rebuilt.
const STATUS_EVERY: Duration = Duration::from_millis(500);
/// How often the OSChat interfaces are checked.
const IFACE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Builds the snapshot for the current Messenger membership (`None`: the front door is off).
pub fn messenger_snapshot(patrons: Option<&[Endpoint]>) -> Result<Snapshot, CompileError> {
    let mut b = RouteTableBuilder::<Dest>::new(INGRESS_CLASSES);
    let mut members = HashMap::with_hasher(foldhash::fast::FixedState::default());
    let mut n = 0;
    if let Some(patrons) = patrons {
        let all: Vec<Dest> = patrons.iter().map(|e| Dest::Peer(*e)).collect();
        let mut everyone = Vec::with_capacity(all.len() + 1);
        everyone.push(Dest::Group);
        everyone.extend_from_slice(&all);
        let all = b.dest_set(all);
        let everyone = b.dest_set(everyone);
        b.rule(Rule::new(
            GROUP,
            Matcher::prefix(GATEWAY_PREFIX),
            Action::Drop(DropReason::Reserved),
        ));
        for ingress in [PATRON, STRANGER] {
            b.rule(Rule::new(
                ingress,
                Matcher::prefix(GATEWAY_PREFIX),
                Action::Control(Protocol::Messenger),
            ));
        }
        b.default_action(GROUP, Action::Forward(all));
        b.default_action(PATRON, Action::Forward(everyone));
        for (i, e) in patrons.iter().enumerate() {
            members.insert(
                *e,
                Member {
                    ingress: PATRON,
                    seen: i as u32,
                },
            );
        }
        n = patrons.len();
    }
    b.default_action(STRANGER, Action::Drop(DropReason::NoRoute));
    Ok(Snapshot {
        table: b.build()?,
        members,
        seen: (0..n).map(|_| AtomicBool::new(false)).collect(),
        router: RouterSnap::default(),
        chat: Vec::new(),
    })
}

/// The workers' view of the router's groups.
pub fn router_snapshot(r: &Router<ConnId>) -> RouterSnap {
    let mut snap = RouterSnap::default();
    for (gi, g) in r.groups().enumerate() {
        let mut group = RouterGroup::default();
        for (ui, (name, conns)) in g.users.iter().enumerate() {
            group.users.push((*name).to_owned());
            for &c in conns.iter() {
                group.conns.push((ui as u32, c));
                snap.conns.insert(c, (gi as u32, ui as u32));
            }
        }
        snap.groups.push(group);
    }
    snap
}

/// What the control thread runs.
pub struct Control {
    /// The Messenger gateway, if enabled.
    pub messenger: Option<Gateway<Endpoint>>,
    /// The tcposcrouter router, if enabled.
    pub router: Option<Router<ConnId>>,
    /// The OSChat node, if it runs.
    pub oschat: Option<ChatNode>,
    /// Its interfaces, watched for loss (link down, address gone) and return.
    pub chat_ifaces: Vec<ChatIface>,
    /// WebSocket sessions on a bus, by session id.
    ws: BTreeMap<u64, WsOpen>,
    /// The most WebSocket sessions at once.
    max_ws: usize,
    /// Answers to WebSocket sessions' requests, sent once the membership is published.
    ws_replies: Vec<(u64, Joined)>,
    /// WebSocket membership changed.
    ws_dirty: bool,
    /// Sequence numbers of what this node says for WebSocket users.
    chat_seq: i64,
    /// WebSocket sessions registering with the router, until it answers.
    router_pending: HashMap<ConnId, WsOpen>,
    /// Someone reads the status (the edge runs): rebuild it twice a second. Off, the control
    /// thread allocates nothing while traffic flows.
    pub publish_status: bool,
}

impl Control {
    /// A control thread for these state machines (no WebSocket session yet).
    pub fn new(
        messenger: Option<Gateway<Endpoint>>,
        router: Option<Router<ConnId>>,
        oschat: Option<ChatNode>,
        chat_ifaces: Vec<ChatIface>,
        max_ws: usize,
    ) -> Control {
        Control {
            messenger,
            router,
            oschat,
            chat_ifaces,
            ws: BTreeMap::new(),
            max_ws,
            ws_replies: Vec::new(),
            ws_dirty: false,
            router_pending: HashMap::new(),
            chat_seq: 0,
            publish_status: false,
        }
    }

    /// A WebSocket session asks to join a bus.
    fn ws_open(&mut self, now: Duration, open: WsOpen) {
        let session = open.session;
        let refuse = |code: &str, message: String| {
            Err(Refusal {
                code: code.to_owned(),
                message,
            })
        };
        let result = if self.ws.len() >= self.max_ws {
            refuse(
                "too_many_sessions",
                format!("{} WebSocket sessions already", self.ws.len()),
            )
        } else if open.bus == "messenger" {
            if self.messenger.is_some() {
                Ok(())
            } else {
                refuse(
                    "bus_unavailable",
                    "the Messenger gateway is not running".into(),
                )
            }
        } else if let Some(room) = open.bus.strip_prefix("oschat/") {
            let name_ok = |n: &str| !n.is_empty() && !n.contains(['/', '\0']);
            if self.oschat.is_none() {
                refuse("bus_unavailable", "the OSChat node is not running".into())
            } else if !name_ok(room) || !name_ok(&open.user) {
                refuse(
                    "bad_identify",
                    "an OSChat bus needs a room and a user (no '/' in either)".into(),
                )
            } else {
                Ok(())
            }
        } else if let Some(group) = open.bus.strip_prefix("router/") {
            match self.router.as_mut() {
                None => refuse(
                    "bus_unavailable",
                    "the tcposcrouter router is not running".into(),
                ),
                Some(r) => match register_packet(&open, group) {
                    None => refuse(
                        "bad_identify",
                        "a router bus needs a group name and a user (no NUL characters)".into(),
                    ),
                    Some(packet) => {
                        // The router answers like for a TCP client; `apply` turns its answer
                        // into `ready` or a refusal.
                        let c = ConnId::edge(session);
                        r.handle(now, c, &packet);
                        self.router_pending.insert(c, open);
                        return;
                    }
                },
            }
        } else {
            refuse(
                "unknown_bus",
                format!(
                    "{:?} is not a bus this gateway offers (\"messenger\", \"router/GROUP\", \
                     \"oschat/ROOM\")",
                    open.bus
                ),
            )
        };
        if result.is_ok() {
            tracing::info!(session, bus = %open.bus, agent = %open.client_agent, "websocket session joined");
            if let (Some(room), Some(node)) =
                (open.bus.strip_prefix("oschat/"), self.oschat.as_mut())
            {
                // The user says hello and joins the room, on every interface.
                self.chat_seq += 1;
                for c in [
                    Chat::Hello {
                        user: &open.user,
                        seq: self.chat_seq,
                    },
                    Chat::Join {
                        room,
                        user: &open.user,
                        seq: self.chat_seq,
                    },
                ] {
                    let mut p = Vec::new();
                    if c.write(&mut p).is_ok() {
                        node.originate(now, &p);
                    }
                }
            }
            self.ws.insert(session, open);
            self.ws_dirty = true;
        }
        self.ws_replies.push((session, result));
    }

    fn ws_closed(&mut self, now: Duration, session: u64) {
        let c = ConnId::edge(session);
        if let Some(r) = self.router.as_mut() {
            // A router session leaves like a closed connection (its user list goes out).
            if self.router_pending.remove(&c).is_some()
                || self
                    .ws
                    .get(&session)
                    .is_some_and(|o| o.bus.starts_with("router/"))
            {
                r.closed(c);
            }
        }
        if let Some(open) = self.ws.get(&session) {
            if let (Some(room), Some(node)) =
                (open.bus.strip_prefix("oschat/"), self.oschat.as_mut())
            {
                // The user leaves the room and says goodbye.
                self.chat_seq += 1;
                for c in [
                    Chat::Leave {
                        room,
                        user: &open.user,
                        seq: self.chat_seq,
                    },
                    Chat::Goodbye {
                        user: &open.user,
                        seq: self.chat_seq,
                    },
                ] {
                    let mut p = Vec::new();
                    if c.write(&mut p).is_ok() {
                        node.originate(now, &p);
                    }
                }
            }
        }
        if self.ws.remove(&session).is_some() {
            tracing::info!(session, "websocket session left");
            self.ws_dirty = true;
        }
    }
}

/// Runs the control thread until `stop` is set; then sends every patron its shutdown message,
/// tells every worker to stop (after those sends), and returns.
pub fn run(mut ctl: Control, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    shared.control.set_waker(Waker::Thread(thread::current()));
    let start = shared.epoch;
    let mut last_report = Instant::now();
    let mut last_totals = [0u64; counters::COUNT];
    let mut last_refused = 0u64;
    let mut last_iface_check = Instant::now();
    let mut last_status: Option<Instant> = None;
    let mut ifaces_up = vec![true; ctl.chat_ifaces.len()];
    loop {
        let now = start.elapsed();
        for _ in 0..DRAIN_BUDGET {
            let Some(msg) = shared.control.pop() else {
                break;
            };
            match msg {
                ControlMsg::Packet {
                    protocol: Protocol::Messenger,
                    from,
                    source_ip,
                    packet,
                } => {
                    if let Some(gw) = ctl.messenger.as_mut() {
                        gw.handle(now, from, source_ip, &packet);
                    }
                }
                ControlMsg::Packet {
                    protocol: Protocol::Router,
                    from: Endpoint::Tcp(c),
                    packet,
                    ..
                } => {
                    if let Some(r) = ctl.router.as_mut() {
                        r.handle(now, c, &packet);
                    }
                }
                ControlMsg::Packet { .. } => {}
                ControlMsg::Chat {
                    iface,
                    key,
                    first,
                    forwarded,
                    packet,
                } => {
                    if let Some(node) = ctl.oschat.as_mut() {
                        node.heard(now, usize::from(iface), key, first, forwarded, &packet);
                        if first {
                            deliver_to_room(&ctl.ws, &shared, &packet, None);
                        }
                    }
                }
                ControlMsg::WsChat { session, packet } => {
                    let in_room = ctl
                        .ws
                        .get(&session)
                        .is_some_and(|o| o.bus.starts_with("oschat/"));
                    if let (true, Some(node)) = (in_room, ctl.oschat.as_mut()) {
                        if node.originate(now, &packet) {
                            deliver_to_room(&ctl.ws, &shared, &packet, Some(session));
                        }
                    }
                }
                ControlMsg::WsOpen(open) => ctl.ws_open(now, open),
                ControlMsg::WsClosed(session) => ctl.ws_closed(now, session),
                ControlMsg::Closed(c) => {
                    if let Some(gw) = ctl.messenger.as_mut() {
                        gw.endpoint_closed(Endpoint::Tcp(c));
                    }
                    if let Some(r) = ctl.router.as_mut() {
                        r.closed(c);
                    }
                }
            }
        }
        if let Some(r) = ctl.router.as_mut() {
            if r.poll_timeout().is_some_and(|t| t <= now) {
                r.handle_timeout(now);
            }
        }
        if let Some(node) = ctl.oschat.as_mut() {
            if last_iface_check.elapsed() >= IFACE_CHECK_EVERY {
                last_iface_check = Instant::now();
                watch_ifaces(node, &ctl.chat_ifaces, &mut ifaces_up, now);
            }
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
        }
        if let Some(gw) = ctl.messenger.as_mut() {
            let snap = shared.snapshot.load();
            for (ep, m) in &snap.members {
                if let Some(flag) = snap.seen.get(m.seen as usize) {
                    if flag.swap(false, Ordering::Relaxed) {
                        gw.note_traffic(now, *ep);
                    }
                }
            }
            if gw.poll_timeout().is_some_and(|t| t <= now) {
                gw.handle_timeout(now);
            }
        }
        apply(&mut ctl, &shared);
        if ctl.publish_status && last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
            last_status = Some(Instant::now());
            shared.status.store(Arc::new(build_status(&ctl, now)));
        }
        if last_report.elapsed() >= REPORT_EVERY {
            last_report = Instant::now();
            report(&shared, &mut last_totals);
            if let Some(r) = ctl.router.as_ref() {
                let c = r.counters();
                let refused = c.refused + c.timeouts;
                if refused > last_refused {
                    tracing::warn!(
                        count = refused - last_refused,
                        users = r.user_count(),
                        groups = r.group_count(),
                        "router connections refused in the last 10 s (bad or missing register)"
                    );
                }
                last_refused = refused;
            }
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
        let next = [
            ctl.messenger.as_ref().and_then(|g| g.poll_timeout()),
            ctl.router.as_ref().and_then(|r| r.poll_timeout()),
            ctl.oschat.as_ref().and_then(|n| n.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        let sleep = next
            .map(|t| t.saturating_sub(start.elapsed()))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        if shared.control.is_empty() {
            thread::park_timeout(sleep);
        }
    }
    // Shutdown: every patron gets `/messenger/gateway/me/shutdown`, then the workers stop
    // (their mailboxes are FIFO, so the messages go out first).
    if let Some(gw) = ctl.messenger.as_mut() {
        gw.shutdown(start.elapsed());
    }
    // OSChat: resign every gateway role, so the standby takes over at once.
    if let Some(node) = ctl.oschat.as_mut() {
        node.shutdown(start.elapsed());
    }
    apply(&mut ctl, &shared);
    for w in shared.workers.iter() {
        // A full mailbox is drained within a turn; retry briefly rather than lose the stop.
        let mut msg = WorkerMsg::Stop;
        for _ in 0..1000 {
            match w.mailbox.send(msg) {
                Ok(()) => break,
                Err(back) => {
                    msg = back;
                    thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

/// What the control thread knows, for the status page, API and metrics.
fn build_status(ctl: &Control, now: Duration) -> ControlStatus {
    ControlStatus {
        messenger: ctl.messenger.as_ref().map(|g| MessengerStatus {
            patrons: g
                .patrons()
                .map(|p| PatronStatus {
                    endpoint: p.endpoint.to_string(),
                    uid: p.uid.to_owned(),
                    admitted_s: now.saturating_sub(p.admitted_at).as_secs(),
                    idle_s: now.saturating_sub(p.last_heard).as_secs(),
                })
                .collect(),
        }),
        router: ctl.router.as_ref().map(|r| RouterStatus {
            groups: r
                .groups()
                .map(|g| GroupStatus {
                    name: g.name.to_owned(),
                    users: g
                        .users
                        .iter()
                        .map(|(name, conns)| RouterUserStatus {
                            name: (*name).to_owned(),
                            connections: conns.len(),
                        })
                        .collect(),
                })
                .collect(),
        }),
        oschat: ctl
            .oschat
            .as_ref()
            .map(|n| chat_status(n, &ctl.chat_ifaces)),
        websocket: ctl
            .ws
            .values()
            .map(|o| WsSessionStatus {
                session: o.session.to_string(),
                bus: o.bus.clone(),
                client_type: o.client_type.clone(),
                client_agent: o.client_agent.clone(),
            })
            .collect(),
    }
}

fn chat_status(n: &ChatNode, ifaces: &[ChatIface]) -> ChatStatus {
    use crate::proto::mesh::Role;
    let mesh = n.mesh();
    let segment = |i: usize| ifaces.get(i).map(|f| f.network()).unwrap_or_default();
    ChatStatus {
        node: mesh.node().to_owned(),
        interfaces: ifaces
            .iter()
            .enumerate()
            .map(|(i, f)| ChatIfaceStatus {
                name: f.name.clone(),
                address: f.addr.to_string(),
                network: f.network(),
                up: mesh.is_up(i),
            })
            .collect(),
        lanes: mesh
            .lanes()
            .map(|(i, network, role, gateway)| LaneStatus {
                segment: segment(i),
                network: network.to_owned(),
                role: match role {
                    Role::Active => "active",
                    Role::Waiting(_) => "waiting",
                    Role::Standby => "standby",
                },
                gateway: match role {
                    Role::Active => Some(mesh.node().to_owned()),
                    _ => gateway.map(str::to_owned),
                },
            })
            .collect(),
        users: n
            .presence()
            .users()
            .map(|(name, connectable)| ChatUserStatus {
                name: name.to_owned(),
                connectable,
            })
            .collect(),
        rooms: n
            .presence()
            .rooms()
            .map(|(name, users)| ChatRoomStatus {
                name: name.to_owned(),
                users: users.into_iter().map(str::to_owned).collect(),
            })
            .collect(),
    }
}

/// Tells the OSChat node which of its interfaces were lost (down, or their address gone) or
/// came back since the last check.
fn watch_ifaces(node: &mut ChatNode, ifaces: &[ChatIface], up: &mut [bool], now: Duration) {
    let Ok(host) = chat::host_addrs() else {
        return;
    };
    for (i, f) in ifaces.iter().enumerate() {
        let is_up = host
            .iter()
            .any(|h| h.name == f.name && h.addr == f.addr && h.up);
        if is_up != up[i] {
            up[i] = is_up;
            if is_up {
                tracing::info!(interface = %f.name, "oschat: interface back; announcing again");
            } else {
                tracing::warn!(
                    interface = %f.name,
                    "oschat: interface lost (down or address gone); resigning any gateway role \
                     to its network"
                );
            }
            node.set_iface_up(now, i, is_up);
        }
    }
}

/// Turns the state machines' actions into worker jobs, publishing a new snapshot first if
/// membership changed (so a patron that hears `accept`, or a router user that hears its
/// register reply, is already routed as one).
fn apply(ctl: &mut Control, shared: &Shared) {
    let mut dirty = false;
    let mut sends = Vec::new();
    let mut closes = Vec::new();
    if let Some(r) = ctl.router.as_mut() {
        while let Some(a) = r.poll_action() {
            match a {
                RAction::Send { to, packet } => {
                    let answer = crate::wire::address::peek(&packet).is_ok_and(|p| {
                        matches!(p, crate::wire::address::Peek::Message { address, .. }
                            if crate::wire::address::has_prefix(address, b"/oscrouter/register/"))
                    });
                    if let Some(open) = answer.then(|| ctl.router_pending.remove(&to)).flatten() {
                        // A WebSocket session's register answer: it joined (the client
                        // hears `ready` once the membership is published).
                        tracing::info!(session = open.session, bus = %open.bus, "websocket session joined");
                        ctl.ws_replies.push((open.session, Ok(())));
                        ctl.ws.insert(open.session, open);
                        continue;
                    }
                    sends.push((Endpoint::Tcp(to), packet))
                }
                RAction::Close { conn, reason } => {
                    if let Some(open) = ctl.router_pending.remove(&conn) {
                        ctl.ws_replies.push((
                            open.session,
                            Err(Refusal {
                                code: "refused".into(),
                                message: format!("the router refused the register: {reason}"),
                            }),
                        ));
                        continue;
                    }
                    tracing::debug!(conn = %conn, %reason, "router connection refused");
                    if conn.edge_session().is_none() {
                        closes.push(conn);
                    }
                }
                RAction::Membership => dirty = true,
            }
        }
    }
    // Router replies to connections not routed yet (a newcomer's register answer and user
    // list, a refusal) go out before the membership they belong to is published: the workers
    // run their mailbox before routing with a new table, so a newcomer hears them before any
    // group traffic (what it sends meanwhile is held by its worker until the table shows it
    // registered). Replies to members already routed (the user list naming the newcomer) go
    // out after: a member that reacts to it at once must reach the newcomer.
    let (early, late): (Vec<_>, Vec<_>) = {
        let snap = shared.snapshot.load();
        std::mem::take(&mut sends)
            .into_iter()
            .partition(|(to, _)| match to {
                Endpoint::Tcp(c) => !snap.router.conns.contains_key(c),
                _ => true,
            })
    };
    dispatch(shared, early);
    sends = late;
    if let Some(gw) = ctl.messenger.as_mut() {
        messenger_actions(gw, shared, &mut sends, &mut dirty);
    }
    dirty |= std::mem::take(&mut ctl.ws_dirty);
    if let Some(node) = ctl.oschat.as_mut() {
        // What the node broadcasts (a catch-up flush above all) goes out before the flags
        // that start the fast path forwarding are published: workers run their mailbox
        // before routing with a new table, so a flush keeps its place ahead of newer traffic.
        if let Some(w) = shared.chat_worker {
            while let Some((iface, packet)) = node.poll_send() {
                let msg = WorkerMsg::SendChat {
                    iface: iface as u8,
                    packet: Bytes::from(packet),
                };
                if shared.workers[w].mailbox.send(msg).is_err() {
                    tracing::debug!(iface, "worker mailbox full: OSChat broadcast dropped");
                }
            }
        }
        if shared.snapshot.load().chat.as_slice() != node.forwarding() {
            tracing::info!(forwarding = ?node.forwarding(), "oschat: gateway roles changed");
            dirty = true;
        }
    }
    if dirty {
        publish(ctl, shared);
    }
    // Messenger replies after: a patron that hears `accept` is already routed as one; so
    // are WebSocket sessions told they joined.
    dispatch(shared, sends);
    if !ctl.ws_replies.is_empty() {
        for (session, result) in ctl.ws_replies.drain(..) {
            if !shared.edge.push(EdgeMsg::Opened { session, result }) {
                tracing::warn!(session, "edge queue full: websocket session answer dropped");
            }
        }
        shared.edge.wake();
    }
    // After the sends: a refused connection gets its error message first.
    for c in closes {
        let w = shared.worker_for(&Endpoint::Tcp(c));
        let _ = shared.workers[w].mailbox.send(WorkerMsg::Close(c));
    }
}

/// Queues each packet on the mailbox of the worker that owns its endpoint (the edge's queue
/// for a WebSocket session).
fn dispatch(shared: &Shared, sends: Vec<(Endpoint, Vec<u8>)>) {
    let mut edge = false;
    for (to, packet) in sends {
        let session = match to {
            Endpoint::Ws(s) => Some(s),
            Endpoint::Tcp(c) => c.edge_session(),
            Endpoint::Udp(_) => None,
        };
        if let Some(session) = session {
            let packet = Bytes::from(packet);
            if !shared.edge.push(EdgeMsg::Deliver { session, packet }) {
                tracing::debug!(%to, "edge queue full: control reply dropped");
            }
            edge = true;
            continue;
        }
        let w = shared.worker_for(&to);
        let msg = WorkerMsg::Send {
            to,
            packet: Bytes::from(packet),
        };
        if shared.workers[w].mailbox.send(msg).is_err() {
            tracing::debug!(%to, "worker mailbox full: control reply dropped");
        }
    }
    if edge {
        shared.edge.wake();
    }
}

/// Gives an OSChat packet about a room (a message to it, a join or leave) to the WebSocket
/// sessions in that room, but `except`.
fn deliver_to_room(
    ws: &BTreeMap<u64, WsOpen>,
    shared: &Shared,
    packet: &[u8],
    except: Option<u64>,
) {
    let room = match crate::proto::oschat::parse(packet) {
        Ok(Chat::Message { room, .. } | Chat::Join { room, .. } | Chat::Leave { room, .. }) => room,
        _ => return,
    };
    let mut any = false;
    for (session, open) in ws {
        if Some(*session) == except || open.bus.strip_prefix("oschat/") != Some(room) {
            continue;
        }
        let msg = EdgeMsg::Deliver {
            session: *session,
            packet: Bytes::copy_from_slice(packet),
        };
        if !shared.edge.push(msg) {
            tracing::debug!(
                session,
                "edge queue full: OSChat message for a session dropped"
            );
        }
        any = true;
    }
    if any {
        shared.edge.wake();
    }
}

/// The `/oscrouter/register` a WebSocket session's identify stands for.
fn register_packet(open: &WsOpen, group: &str) -> Option<Vec<u8>> {
    use crate::wire::{write_message, Arg};
    if group.is_empty() || open.user.is_empty() {
        return None;
    }
    let mut p = Vec::new();
    let id = (open.session & 0x7fff_ffff) as i32;
    write_message(
        &mut p,
        crate::proto::router::REGISTER,
        &[
            Arg::str(&open.user),
            Arg::str(&open.password),
            Arg::str(group),
            Arg::str(&open.group_password),
            Arg::Int(id),
        ],
    )
    .ok()?;
    Some(p)
}

fn messenger_actions(
    gw: &mut Gateway<Endpoint>,
    shared: &Shared,
    sends: &mut Vec<(Endpoint, Vec<u8>)>,
    dirty: &mut bool,
) {
    while let Some(a) = gw.poll_action() {
        match a {
            MAction::Send { to, packet } => sends.push((to, packet)),
            MAction::Admit { endpoint, uid } => {
                tracing::info!(patron = %endpoint, %uid, "patron admitted");
                *dirty = true;
            }
            MAction::Expel {
                endpoint,
                uid,
                reason,
            } => {
                tracing::info!(patron = %endpoint, %uid, %reason, "patron removed");
                if let (Endpoint::Tcp(c), crate::proto::messenger::Reason::Expired) =
                    (endpoint, reason)
                {
                    let w = shared.worker_for(&endpoint);
                    let _ = shared.workers[w].mailbox.send(WorkerMsg::Close(c));
                }
                *dirty = true;
            }
        }
    }
}

/// Compiles and publishes the snapshot for the current membership.
fn publish(ctl: &Control, shared: &Shared) {
    let patrons: Option<Vec<Endpoint>> = ctl.messenger.as_ref().map(|g| {
        g.patrons()
            .map(|p| p.endpoint)
            .chain(
                ctl.ws
                    .values()
                    .filter(|o| o.bus == "messenger")
                    .map(|o| Endpoint::Ws(o.session)),
            )
            .collect()
    });
    let mut snap = match messenger_snapshot(patrons.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            // Only fixed rules and endpoints go in, so this is a bug; keep the old table.
            tracing::error!(error = %e, "route table failed to compile; keeping the previous one");
            return;
        }
    };
    if let Some(r) = ctl.router.as_ref() {
        snap.router = router_snapshot(r);
    }
    if let Some(node) = ctl.oschat.as_ref() {
        snap.chat = node.forwarding().to_vec();
    }
    // Carry "seen" marks over so traffic just before the swap is not forgotten.
    let old = shared.snapshot.load();
    for (ep, m) in &snap.members {
        if let Some(o) = old.members.get(ep) {
            let was = old
                .seen
                .get(o.seen as usize)
                .is_some_and(|f| f.load(Ordering::Relaxed));
            if was {
                if let Some(f) = snap.seen.get(m.seen as usize) {
                    f.store(true, Ordering::Relaxed);
                }
            }
        }
    }
    shared.snapshot.store(Arc::new(snap));
    // Workers pick the new table up at their next turn; wake them so that one holding a
    // newcomer's register answer (until its table shows it registered) sends it now.
    for w in shared.workers.iter() {
        w.mailbox.wake();
    }
}

/// Logs the summed counters, and a warning for malformed input or full queues since the last
/// report.
fn report(shared: &Shared, last: &mut [u64; counters::COUNT]) {
    let now = counters::sum(shared.workers.iter().map(|w| &w.counters));
    let delta = |c: C| now[c as usize].wrapping_sub(last[c as usize]);
    tracing::debug!(
        received = now[C::Received as usize],
        forwarded = now[C::Forwarded as usize],
        control = now[C::Control as usize],
        bad = now[C::BadPacket as usize],
        "worker counters"
    );
    let bad = delta(C::BadPacket) + delta(C::TcpBadFrame) + delta(C::TcpFatal);
    if bad > 0 {
        tracing::warn!(
            count = bad,
            "malformed packets or frames dropped in the last 10 s"
        );
    }
    let full = delta(C::ControlQueueFull) + delta(C::EgressQueueFull) + delta(C::FanoutFull);
    if full > 0 {
        tracing::warn!(
            count = full,
            "packets dropped on full queues in the last 10 s"
        );
    }
    *last = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn udp(p: u16) -> Endpoint {
        Endpoint::Udp(SocketAddr::from(([127, 0, 0, 1], p)))
    }

    #[test]
    fn messenger_routes_group_to_patrons_and_patrons_to_everyone() {
        let patrons = [udp(1), udp(2)];
        let s = messenger_snapshot(Some(&patrons)).unwrap();
        let v = s.table.lookup(GROUP, b"/cue/go");
        assert_eq!(v.forward(), &[Dest::Peer(udp(1)), Dest::Peer(udp(2))]);
        let v = s.table.lookup(PATRON, b"/cue/go");
        assert_eq!(v.forward()[0], Dest::Group);
        assert_eq!(v.forward().len(), 3);
        assert_eq!(
            s.table
                .lookup(GROUP, b"/messenger/gateway/me/request")
                .drop_reason(),
            Some(DropReason::Reserved)
        );
        for ingress in [PATRON, STRANGER] {
            let v = s.table.lookup(ingress, b"/messenger/gateway/me/request");
            assert_eq!(v.control(), Some(Protocol::Messenger));
            assert!(v.forward().is_empty());
        }
        assert_eq!(
            s.table.lookup(STRANGER, b"/cue/go").drop_reason(),
            Some(DropReason::NoRoute)
        );
        assert_eq!(s.classify(&udp(2)), PATRON);
        assert!(
            s.seen[1].load(Ordering::Relaxed),
            "classify marks the patron as seen"
        );
        assert_eq!(s.classify(&udp(3)), STRANGER);
    }

    #[test]
    fn without_the_messenger_everything_is_dropped() {
        let s = messenger_snapshot(None).unwrap();
        for ingress in [GROUP, PATRON, STRANGER] {
            assert!(s.table.lookup(ingress, b"/x").drop_reason().is_some());
        }
    }
}
