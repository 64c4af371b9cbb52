//! The edge thread: one HTTP listener (tokio current-thread runtime + axum) serving the
//! WebSocket gateway (`/gateway`, module `ws`), the live status page (`/`), its data
//! (`/api/status`, `/api/events`), Prometheus metrics (`/metrics`) and a demo page (`/demo`)
//! (module `http`).
//!
//! WebSocket sessions are endpoints on a bus like any patron: what a session sends goes to a
//! worker's mailbox as a packet to route ([`WorkerMsg::Inject`]); what the bus carries for it
//! arrives in the edge queue ([`crate::engine::bus::EdgeLink`]), which one task here drains
//! into the sessions' own bounded queues. Joining a bus is the control thread's decision
//! ([`ControlMsg::WsOpen`]), answered through the same queue once the membership is published.
//!
//! Nothing here blocks a worker: workers only push to a bounded queue and wake this thread.
//!
//! [`WorkerMsg::Inject`]: crate::engine::bus::WorkerMsg::Inject
//! [`ControlMsg::WsOpen`]: crate::engine::bus::ControlMsg::WsOpen

pub mod frame;
mod http;
pub mod keepalive;
mod ws;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tokio::sync::{watch, Notify};

use crate::config::{Http, Websocket};
use crate::engine::bus::{EdgeMsg, Joined, Shared};

/// The gateway protocol version this build speaks (semver).
pub const PROTOCOL: &str = "1.0.0";

/// What the edge shows about the running engine.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// `uring` or `mio`.
    pub driver: String,
    /// The bound addresses, as `name -> address` lines for the status page.
    pub bound: Vec<(String, String)>,
    /// Messenger on: the Messenger bus is offered.
    pub messenger: bool,
    /// Router on: tcposcrouter groups are offered.
    pub router: bool,
    /// OSChat on: its rooms are offered.
    pub oschat: bool,
}

/// Settings of the edge.
#[derive(Debug, Clone)]
pub struct EdgeSetup {
    pub http: Http,
    pub websocket: Websocket,
    /// A session whose write makes no progress this long is closed (the TCP slow-reader time).
    pub slow_reader: Duration,
    /// The largest WebSocket message accepted.
    pub max_message: usize,
    pub info: Info,
}

/// The running edge thread.
pub struct Edge {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Edge {
    /// Binds `setup.http.listen` (errors now, on this thread) and starts the edge thread.
    pub fn start(setup: EdgeSetup, shared: Arc<Shared>) -> anyhow::Result<Edge> {
        let listener = std::net::TcpListener::bind(setup.http.listen)
            .with_context(|| format!("http.listen: binding TCP {}", setup.http.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let app = Arc::new(App::new(setup, shared, stop_rx));
        let thread = std::thread::Builder::new()
            .name("oscgate-edge".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "edge: cannot start its runtime");
                        return;
                    }
                };
                rt.block_on(async move {
                    if let Err(e) = serve(listener, app).await {
                        tracing::error!(error = %e, "edge: HTTP server stopped");
                    }
                });
            })?;
        Ok(Edge {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where HTTP is served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the edge thread has ended (it should not before [`stop`](Self::stop)).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Closes every session and stops serving.
    pub fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: std::net::TcpListener, app: Arc<App>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tokio::spawn(dispatch(Arc::clone(&app)));
    tokio::spawn(sample_rates(Arc::clone(&app)));
    let mut stop = app.stop.clone();
    let router = http::router(Arc::clone(&app));
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { stopped(&mut stop).await })
        .await
}

/// Resolves once the edge is told to stop (or its stop sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Counters of the edge's own (summed into `/metrics` beside the workers').
#[derive(Debug, Default)]
pub(crate) struct EdgeCounters {
    pub sessions_opened: AtomicU64,
    pub sessions_refused: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bad_frames: AtomicU64,
    pub slow_dropped: AtomicU64,
    pub slow_closed: AtomicU64,
    pub timed_out: AtomicU64,
    pub inject_full: AtomicU64,
}

impl EdgeCounters {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// One session's inbox: packets from the bus (bounded: the oldest go first when full) and the
/// control thread's answer to its join.
pub(crate) struct SessionQueue {
    state: Mutex<QueueState>,
    notify: Notify,
    limit: usize,
}

#[derive(Default)]
struct QueueState {
    packets: VecDeque<Bytes>,
    opened: Option<Joined>,
    dropped: u64,
}

impl SessionQueue {
    fn new(limit: usize) -> SessionQueue {
        SessionQueue {
            state: Mutex::new(QueueState::default()),
            notify: Notify::new(),
            limit: limit.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a packet; drops the oldest when full. Returns false if one was dropped.
    fn push(&self, packet: Bytes) -> bool {
        let kept = {
            let mut s = self.lock();
            let full = s.packets.len() >= self.limit;
            if full {
                s.packets.pop_front();
                s.dropped += 1;
            }
            s.packets.push_back(packet);
            !full
        };
        self.notify.notify_one();
        kept
    }

    fn opened(&self, result: Joined) {
        self.lock().opened = Some(result);
        self.notify.notify_one();
    }

    pub(crate) fn take_opened(&self) -> Option<Joined> {
        self.lock().opened.take()
    }

    pub(crate) fn pop(&self) -> Option<Bytes> {
        self.lock().packets.pop_front()
    }

    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Makes the next [`notified`](Self::notified) return at once (packets that arrived
    /// while the session waited for its join answer are then sent).
    pub(crate) fn kick(&self) {
        self.notify.notify_one();
    }
}

/// Figures sampled once a second for the rates the status page shows.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Rates {
    pub received: f64,
    pub forwarded: f64,
    pub dropped: f64,
}

/// What every handler shares.
pub(crate) struct App {
    pub shared: Arc<Shared>,
    pub setup: EdgeSetup,
    pub started: Instant,
    pub stop: watch::Receiver<bool>,
    pub sessions: Mutex<HashMap<u64, Arc<SessionQueue>>>,
    pub next_session: AtomicU64,
    pub counters: EdgeCounters,
    pub rates: Mutex<Rates>,
}

impl App {
    fn new(setup: EdgeSetup, shared: Arc<Shared>, stop: watch::Receiver<bool>) -> App {
        App {
            shared,
            setup,
            started: Instant::now(),
            stop,
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            counters: EdgeCounters::default(),
            rates: Mutex::new(Rates::default()),
        }
    }

    pub(crate) fn session(&self, id: u64) -> Option<Arc<SessionQueue>> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    pub(crate) fn add_session(&self, id: u64) -> Arc<SessionQueue> {
        let q = Arc::new(SessionQueue::new(self.setup.websocket.queue_limit));
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::clone(&q));
        q
    }

    pub(crate) fn remove_session(&self, id: u64) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// Moves what the engine queued for the edge into the sessions' inboxes.
async fn dispatch(app: Arc<App>) {
    let mut stop = app.stop.clone();
    loop {
        tokio::select! {
            _ = app.shared.edge.notified() => {}
            _ = stopped(&mut stop) => return,
        }
        while let Some(msg) = app.shared.edge.pop() {
            match msg {
                EdgeMsg::Deliver { session, packet } => {
                    if let Some(q) = app.session(session) {
                        if !q.push(packet) {
                            EdgeCounters::bump(&app.counters.slow_dropped);
                        }
                    }
                }
                EdgeMsg::Opened { session, result } => {
                    if let Some(q) = app.session(session) {
                        q.opened(result);
                    }
                }
            }
        }
    }
}

/// Samples the summed worker counters once a second for the status page's rates.
async fn sample_rates(app: Arc<App>) {
    use crate::engine::counters::{self, C};
    let mut stop = app.stop.clone();
    let mut last = counters::sum(app.shared.workers.iter().map(|w| &w.counters));
    let mut at = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut stop) => return,
        }
        let now = counters::sum(app.shared.workers.iter().map(|w| &w.counters));
        let dt = at.elapsed().as_secs_f64().max(1e-3);
        at = Instant::now();
        let d = |c: C| now[c as usize].wrapping_sub(last[c as usize]) as f64 / dt;
        let dropped = http::DROPS.iter().map(|(c, _)| d(*c)).sum();
        *app.rates.lock().unwrap_or_else(|e| e.into_inner()) = Rates {
            received: d(C::Received),
            forwarded: d(C::Forwarded),
            dropped,
        };
        last = now;
    }
}
