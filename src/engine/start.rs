//! [`Engine`]: binds every socket of the enabled front doors, builds the shared state, starts
//! one worker per core (each with the driver [`driver::choose`] picked — the only place the
//! two drivers are told apart) and the control thread, and stops them in order.
//!
//! Sockets are bound here, on the calling thread, so that configuration errors (a port in use,
//! an unknown interface) are reported before anything runs, and so that a port of 0 resolves
//! once and every worker's `SO_REUSEPORT` socket shares it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};

use super::bus::{Endpoint, Mailbox, Shared, WorkerLink};
use super::chat::{self, ChatIface};
use super::counters::{self, Counters};
use super::driver::{self, Choice, DriverKind, PollDriver, UringDriver};
use super::tcp::ConnConfig;
use super::tcp_side::{DoorSettings, TcpSettings};
use super::udp;
use super::uring::UringConfig;
use super::worker::{self, ChatSockets, MessengerSockets, RouterSockets, WorkerSetup};
use crate::config::{Config, Driver as DriverChoice};
use crate::control::{self, Control};
use crate::dedupe::Dedupe;
use crate::proto::chatnode::{ChatNode, NodeConfig};
use crate::proto::mesh::{Iface, MeshConfig};
use crate::proto::messenger::{resolve_allow_list, Gateway};
use crate::proto::presence::PresenceConfig;
use crate::proto::router::{Limits as RouterLimits, Router};
use crate::wire::framing::Framing;

/// Capacity of each worker's mailbox.
const WORKER_QUEUE: usize = 64 * 1024;
/// Capacity of the queue to the edge thread.
const EDGE_QUEUE: usize = 64 * 1024;

/// Addresses the running engine listens on (ports resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The Messenger patron port (UDP and TCP), if enabled.
    pub messenger: Option<SocketAddr>,
    /// The Messenger group.
    pub group: Option<SocketAddrV4>,
    /// The interface address the group is joined and sent on.
    pub interface: Option<Ipv4Addr>,
    /// The tcposcrouter ports (length prefix, SLIP), if enabled.
    pub router: Option<(SocketAddr, SocketAddr)>,
    /// The OSChat node, if it runs.
    pub oschat: Option<BoundChat>,
    /// The HTTP listener (status, metrics, WebSocket gateway), if it runs.
    pub http: Option<SocketAddr>,
}

/// The OSChat node as started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundChat {
    /// The OSChat port (resolved).
    pub port: u16,
    /// The node's GUID.
    pub node: String,
    /// Its interfaces, in the order the mesh numbers them.
    pub ifaces: Vec<ChatIface>,
}

/// A running engine.
pub struct Engine {
    choice: Choice,
    bound: Bound,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    control: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<io::Result<()>>>,
    edge: Option<crate::edge::Edge>,
}

impl Engine {
    /// Starts everything `cfg` enables; `driver` overrides `cfg.engine.driver`.
    pub fn start(cfg: &Config, driver: Option<DriverChoice>) -> anyhow::Result<Engine> {
        let choice =
            driver::choose(driver.unwrap_or(cfg.engine.driver)).map_err(anyhow::Error::msg)?;
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let n = match cfg.engine.workers {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .clamp(1, 256);
        let udp_buffer = cfg.engine.udp_buffer_kib * 1024;

        let m = &cfg.messenger;
        let r = &cfg.router;
        let slow_reader = Duration::from_millis(cfg.tcp.slow_reader_ms);
        let messenger_door = DoorSettings {
            conn: ConnConfig {
                framing: m.framing,
                max_frame: cfg.tcp.max_frame,
                queue_frames: 4096,
                queue_bytes: 4 << 20,
                // Disconnection is time-based (`slow_reader`): a reader that is only
                // descheduled for a moment is not cut off by a fast sender.
                max_drops: u32::MAX,
            },
            slow_reader,
            idle_stranger: Duration::from_secs(m.timeout_s.max(1)),
        };
        let router_door = DoorSettings {
            conn: ConnConfig {
                // Either port detects the other framing from the first byte.
                framing: Framing::Auto,
                max_frame: cfg.tcp.max_frame,
                queue_frames: r.queue_limit.max(1),
                queue_bytes: 4 << 20,
                max_drops: u32::MAX,
            },
            slow_reader,
            idle_stranger: Duration::from_secs(r.register_timeout_s.max(1)),
        };
        let mut routers: Vec<(TcpListener, TcpListener)> = Vec::new();
        let mut bound_router = None;
        if r.enabled {
            let mut len32 = SocketAddr::V4(r.listen);
            let mut slip = SocketAddr::V4(r.listen_slip);
            for i in 0..n {
                let a = bind_tcp(len32)
                    .with_context(|| format!("router.listen: binding TCP {len32}"))?;
                let b = bind_tcp(slip)
                    .with_context(|| format!("router.listen_slip: binding TCP {slip}"))?;
                if i == 0 {
                    len32 = a.local_addr()?;
                    slip = b.local_addr()?;
                }
                routers.push((a, b));
            }
            bound_router = Some((len32, slip));
        }
        let mut per_worker: Vec<Option<MessengerSockets>> = (0..n).map(|_| None).collect();
        let mut bound = Bound {
            messenger: None,
            group: None,
            interface: None,
            router: bound_router,
            oschat: None,
            http: None,
        };
        let mut gateway = None;
        if m.enabled {
            let iface = if m.interface.is_empty() {
                Ipv4Addr::UNSPECIFIED
            } else {
                crate::url::interface_addr(&m.interface)
                    .map_err(anyhow::Error::msg)
                    .context("messenger.interface")?
            };
            let group = m.group.0;
            let mut listen = SocketAddr::V4(m.listen);
            let mut patron_socks = Vec::with_capacity(n);
            let mut listeners = Vec::with_capacity(n);
            // Port 0: the kernel picks a free UDP port, which may be taken for TCP (by any
            // outgoing connection's local port); then try another, a few times.
            let any_port = listen.port() == 0;
            let mut tries = 0;
            while patron_socks.len() < n {
                let first = patron_socks.is_empty();
                let at = if first && any_port {
                    SocketAddr::V4(m.listen)
                } else {
                    listen
                };
                let s = udp::bind_udp(at, true, Some(udp_buffer), Some(udp_buffer))
                    .with_context(|| format!("messenger.listen: binding UDP {at}"))?;
                if first {
                    listen = s.local_addr()?;
                }
                let tcp = match bind_tcp(listen) {
                    Ok(t) => t,
                    Err(e)
                        if first
                            && any_port
                            && e.kind() == io::ErrorKind::AddrInUse
                            && tries < 16 =>
                    {
                        tries += 1;
                        continue;
                    }
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("messenger.listen: binding TCP {listen}"));
                    }
                };
                if !iface.is_unspecified() {
                    udp::set_multicast_if_v4(&s, iface)?;
                }
                udp::set_multicast_ttl_v4(&s, m.ttl)?;
                udp::set_multicast_loop_v4(&s, false)?;
                patron_socks.push(s);
                listeners.push(tcp);
            }
            let group_rx = bind_group(group, iface, udp_buffer)
                .with_context(|| format!("messenger.group: joining {group} on {iface}"))?;
            let self_sources = self_sources(listen, iface);
            for (i, (udp_sock, tcp)) in patron_socks.into_iter().zip(listeners).enumerate() {
                per_worker[i] = Some(MessengerSockets {
                    patron_udp: udp_sock,
                    group_rx: None,
                    tcp: Some((tcp, messenger_door.clone())),
                    group: SocketAddr::V4(group),
                    self_sources: self_sources.clone(),
                });
            }
            if let Some(Some(w0)) = per_worker.first_mut() {
                w0.group_rx = Some(group_rx);
            }
            let uid = if m.uid.0.is_empty() {
                fresh_uid()
            } else {
                m.uid.0.clone()
            };
            let allow = resolve_allow_list(m, host_networks());
            gateway = Some(Gateway::new(m, uid, allow));
            bound.messenger = Some(listen);
            bound.group = Some(group);
            bound.interface = Some(iface);
        }

        let epoch = std::time::Instant::now();
        let mut chat_sockets = None;
        let mut chat_node = None;
        if cfg.oschat.enabled {
            match start_chat(cfg, udp_buffer)? {
                Some((sockets, node, b)) => {
                    chat_sockets = Some(sockets);
                    chat_node = Some(node);
                    bound.oschat = Some(b);
                }
                None => tracing::warn!(
                    "oschat: no IPv4 interface with a broadcast address is up (name one in \
                     oschat.interfaces); OSChat is not started"
                ),
            }
        }
        // The OSChat sockets go to the last worker (the Messenger group receiver is on the
        // first).
        let chat_worker = chat_sockets.as_ref().map(|_| n - 1);

        let patrons: Option<Vec<Endpoint>> = gateway.as_ref().map(|_| Vec::new());
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(control::messenger_snapshot(patrons.as_deref())?),
            control: Mailbox::new(cfg.engine.control_queue),
            workers: (0..n)
                .map(|_| WorkerLink {
                    mailbox: Mailbox::new(WORKER_QUEUE),
                    counters: Counters::default(),
                })
                .collect(),
            epoch,
            chat_worker,
            edge: super::bus::EdgeLink::new(EDGE_QUEUE),
            status: ArcSwap::from_pointee(crate::status::ControlStatus::default()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let max_targets = m.max_patrons + 16;
        let tcp = TcpSettings {
            max_conns: (m.max_patrons.max(64) + r.max_users.max(64)) * 2,
        };
        let mut routers = routers.into_iter();
        let mut workers = Vec::with_capacity(n);
        for (i, messenger) in per_worker.into_iter().enumerate() {
            let setup = WorkerSetup {
                id: i as u16,
                core: if cfg.engine.pin_workers {
                    cores.get(i % cores.len().max(1)).copied()
                } else {
                    None
                },
                messenger,
                router: routers.next().map(|(len32, slip)| RouterSockets {
                    len32,
                    slip,
                    settings: router_door.clone(),
                }),
                chat: if Some(i) == chat_worker {
                    chat_sockets.take()
                } else {
                    None
                },
                tcp: tcp.clone(),
            };
            let shared = Arc::clone(&shared);
            let kind = choice.kind;
            let handle = thread::Builder::new()
                .name(format!("oscgate-w{i}"))
                .spawn(move || match kind {
                    DriverKind::Uring => {
                        let d = UringDriver::new(uring_config(), max_targets)?;
                        worker::run(d, setup, shared)
                    }
                    DriverKind::Mio => worker::run(PollDriver::new(max_targets)?, setup, shared),
                })?;
            workers.push(handle);
        }
        let mut ctl = Control::new(
            gateway,
            r.enabled
                .then(|| Router::new(RouterLimits::from_config(r), random_key())),
            chat_node,
            bound
                .oschat
                .as_ref()
                .map(|c| c.ifaces.clone())
                .unwrap_or_default(),
            if cfg.http.enabled && cfg.websocket.enabled {
                cfg.websocket.max_sessions
            } else {
                0
            },
        );
        ctl.publish_status = cfg.http.enabled;
        let control = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("oscgate-control".into())
                .spawn(move || control::run(ctl, shared, stop))?
        };
        let mut edge = None;
        if cfg.http.enabled {
            let mut listening = Vec::new();
            if let (Some(l), Some(g)) = (bound.messenger, bound.group) {
                listening.push(("messenger patrons (udp+tcp)".to_owned(), l.to_string()));
                listening.push(("messenger group".to_owned(), g.to_string()));
            }
            if let Some((a, b)) = bound.router {
                listening.push(("router (len32)".to_owned(), a.to_string()));
                listening.push(("router (slip)".to_owned(), b.to_string()));
            }
            if let Some(c) = &bound.oschat {
                let ifaces: Vec<String> = c.ifaces.iter().map(|f| f.name.clone()).collect();
                listening.push((
                    "oschat".to_owned(),
                    format!("udp {} on {}", c.port, ifaces.join(", ")),
                ));
            }
            let setup = crate::edge::EdgeSetup {
                http: cfg.http.clone(),
                websocket: cfg.websocket.clone(),
                slow_reader,
                max_message: cfg.tcp.max_frame,
                info: crate::edge::Info {
                    driver: choice.kind.name().to_owned(),
                    bound: listening,
                    messenger: cfg.websocket.enabled && bound.messenger.is_some(),
                    router: cfg.websocket.enabled && bound.router.is_some(),
                    oschat: cfg.websocket.enabled && bound.oschat.is_some(),
                },
            };
            let e = crate::edge::Edge::start(setup, Arc::clone(&shared));
            match e {
                Ok(e) => {
                    bound.http = Some(e.addr());
                    edge = Some(e);
                }
                Err(e) => {
                    // Stop what runs before reporting the error.
                    let mut partial = Engine {
                        choice,
                        bound,
                        shared,
                        stop,
                        control: Some(control),
                        workers,
                        edge: None,
                    };
                    let _ = partial.stop_inner();
                    return Err(e);
                }
            }
        }
        Ok(Engine {
            choice,
            bound,
            shared,
            stop,
            control: Some(control),
            workers,
            edge,
        })
    }

    /// The driver running, and why it was chosen.
    pub fn driver(&self) -> &Choice {
        &self.choice
    }

    /// What is bound.
    pub fn bound(&self) -> &Bound {
        &self.bound
    }

    /// The workers' counters, summed, in [`counters::C::ALL`] order.
    pub fn counters(&self) -> [u64; counters::COUNT] {
        counters::sum(self.shared.workers.iter().map(|w| &w.counters))
    }

    /// Endpoints currently admitted (as published to the workers).
    pub fn members(&self) -> Vec<Endpoint> {
        let mut v: Vec<Endpoint> = self
            .shared
            .snapshot
            .load()
            .members
            .keys()
            .copied()
            .collect();
        v.sort();
        v
    }

    /// Whether a worker or the control thread has ended (it should not before [`stop`]).
    ///
    /// [`stop`]: Engine::stop
    pub fn is_degraded(&self) -> bool {
        self.workers.iter().any(|w| w.is_finished())
            || self.control.as_ref().is_none_or(|c| c.is_finished())
            || self.edge.as_ref().is_some_and(|e| e.is_finished())
    }

    /// Stops: every patron gets its shutdown message, then the workers flush and end.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> anyhow::Result<()> {
        // WebSocket sessions are closed first (they are told the gateway is going away).
        if let Some(mut e) = self.edge.take() {
            e.stop();
        }
        self.stop.store(true, Ordering::Release);
        self.shared.control.wake();
        if let Some(c) = self.control.take() {
            c.thread().unpark();
            if c.join().is_err() {
                bail!("the control thread panicked");
            }
        }
        let mut first_err = None;
        for (i, w) in self.workers.drain(..).enumerate() {
            match w.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert_with(|| anyhow::anyhow!("worker {i}: {e}"));
                }
                Err(_) => {
                    first_err.get_or_insert_with(|| anyhow::anyhow!("worker {i} panicked"));
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.control.is_some() || !self.workers.is_empty() || self.edge.is_some() {
            let _ = self.stop_inner();
        }
    }
}

/// Binds the OSChat sockets and builds the node; `None` when no interface qualifies.
fn start_chat(
    cfg: &Config,
    udp_buffer: usize,
) -> anyhow::Result<Option<(ChatSockets, ChatNode, BoundChat)>> {
    let o = &cfg.oschat;
    let host = chat::host_addrs().context("oschat.interfaces: listing the host's interfaces")?;
    let ifaces = chat::choose_ifaces(&host, o.interfaces.as_deref())
        .map_err(anyhow::Error::msg)
        .context("oschat.interfaces")?;
    if ifaces.is_empty() {
        return Ok(None);
    }
    let mut port = o.port;
    let mut socks = Vec::with_capacity(ifaces.len());
    for f in &ifaces {
        let s = chat::bind_iface(f, port, udp_buffer)
            .with_context(|| format!("oschat: binding UDP port {port} on {}", f.name))?;
        if port == 0 {
            port = s.local_addr()?.port();
        }
        socks.push((s, SocketAddr::from((f.broadcast, port))));
    }
    let window = Duration::from_secs(o.dedupe_window_s);
    let dedupe = Arc::new(Dedupe::new(CHAT_DEDUPE_ENTRIES, o.dedupe_window_s * 1000));
    let node = if o.node.0.is_empty() {
        fresh_uid()
    } else {
        o.node.0.clone()
    };
    let heartbeat = Duration::from_millis(o.heartbeat_ms);
    let mesh = MeshConfig {
        announce_every: Duration::from_secs(o.announce_s),
        announce_ttl: Duration::from_secs(o.announce_ttl_s),
        heartbeat,
        miss_after: heartbeat * 3 / 2,
        max_hops: i64::from(o.max_hops),
        ..MeshConfig::new(
            &node,
            ifaces
                .iter()
                .map(|f| Iface {
                    network: f.network(),
                })
                .collect(),
        )
    };
    let node_cfg = NodeConfig {
        mesh,
        presence: PresenceConfig::default(),
        catchup_window: window,
        catchup_bytes: 1 << 20,
    };
    let seed = u64::from_le_bytes(random_bytes());
    let chat_node = ChatNode::new(node_cfg, Arc::clone(&dedupe), seed, Duration::ZERO);
    Ok(Some((
        ChatSockets { socks, dedupe },
        chat_node,
        BoundChat { port, node, ifaces },
    )))
}

/// Entries in the OSChat duplicate filter (48 KiB; a venue's chat is far below this per
/// window).
const CHAT_DEDUPE_ENTRIES: usize = 4096;

fn uring_config() -> UringConfig {
    UringConfig {
        recv_buffers: 512,
        max_payload: super::MAX_DATAGRAM,
        send_slots: 16 * 1024,
        sq_entries: 1024,
    }
}

/// A TCP listener on `addr` with `SO_REUSEPORT` (one per worker), non-blocking.
fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// The group receiver: bound to the group address (so only group traffic arrives), shared
/// with other programs on the host, joined on `iface`.
fn bind_group(group: SocketAddrV4, iface: Ipv4Addr, buffer: usize) -> io::Result<UdpSocket> {
    let s = udp::bind_udp(SocketAddr::V4(group), true, Some(buffer), None)?;
    udp::join_multicast_v4(&s, *group.ip(), iface)?;
    Ok(s)
}

/// The source addresses oscgate's own group sends carry: the patron port on the interface
/// address, or on every local address when either is unspecified.
fn self_sources(listen: SocketAddr, iface: Ipv4Addr) -> Vec<SocketAddr> {
    let port = listen.port();
    match (listen.ip(), iface) {
        (IpAddr::V4(ip), _) if !ip.is_unspecified() => vec![SocketAddr::from((ip, port))],
        (_, iface) if !iface.is_unspecified() => vec![SocketAddr::from((iface, port))],
        _ => host_networks()
            .into_iter()
            .map(|(ip, _)| SocketAddr::from((ip, port)))
            .chain(std::iter::once(SocketAddr::from((
                Ipv4Addr::LOCALHOST,
                port,
            ))))
            .collect(),
    }
}

/// The host's IPv4 addresses with their prefix lengths.
fn host_networks() -> Vec<(Ipv4Addr, u8)> {
    if_addrs::get_if_addrs()
        .map(|ifs| {
            ifs.into_iter()
                .filter_map(|i| match i.addr {
                    if_addrs::IfAddr::V4(a) => {
                        Some((a.ip, u32::from(a.netmask).count_ones() as u8))
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A fresh upper-case UUID (version 4) from the kernel's random source.
/// `N` random bytes from the OS; without a random source, bytes from the clock and pid
/// (unique enough for a uid, and a hashing key that only has to differ between runs).
fn random_bytes<const N: usize>() -> [u8; N] {
    use std::io::Read;
    let mut bytes = [0u8; N];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !ok {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let seed = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = seed[i % seed.len()] ^ (i as u8).wrapping_mul(151);
        }
    }
    bytes
}

fn fresh_uid() -> String {
    crate::proto::uuid_from_bytes(random_bytes())
}

/// The key of the router's password hashes.
fn random_key() -> [u8; 32] {
    random_bytes()
}
