//! The HTTP side of the edge: routes, the admin token, `/api/status` (JSON), `/api/events`
//! (the same JSON once a second as server-sent events, for the live page), `/metrics`
//! (Prometheus text format) and the two pages served from the binary (`/`, `/demo`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::{App, PROTOCOL};
use crate::engine::counters::{self, C};

/// The counters that are drops, with the reason label `/metrics` gives them.
pub(crate) const DROPS: &[(C, &str)] = &[
    (C::DroppedNoRoute, "no_route"),
    (C::DroppedReserved, "reserved"),
    (C::DroppedSelf, "self"),
    (C::DroppedDuplicate, "duplicate"),
    (C::BadPacket, "malformed"),
    (C::Truncated, "truncated"),
    (C::ControlQueueFull, "control_queue_full"),
    (C::EgressQueueFull, "egress_queue_full"),
    (C::FanoutFull, "fanout_full"),
    (C::TcpBadFrame, "tcp_bad_frame"),
    (C::TcpSlowDropped, "slow_reader"),
];

/// The received counters per front door, with their label.
const DOORS: &[(C, &str)] = &[
    (C::RxMessenger, "messenger"),
    (C::RxRouter, "router"),
    (C::RxOschat, "oschat"),
    (C::RxWebsocket, "websocket"),
];

pub(crate) fn router(app: Arc<App>) -> Router {
    let admin = Router::new()
        .route("/", get(page))
        .route("/api/status", get(status))
        .route("/api/events", get(events))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&app), admin_only));
    Router::new()
        .merge(admin)
        .route("/demo", get(demo))
        .route("/gateway", get(super::ws::upgrade))
        .with_state(app)
}

/// Lets a request through to the admin pages when no token is configured, or it carries the
/// token as `Authorization: Bearer <token>` or `?token=<token>` (an `EventSource` cannot set
/// headers); 401 otherwise.
async fn admin_only(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let want = app.setup.http.admin_token.as_bytes();
    if want.is_empty() {
        return next.run(req).await;
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query: HashMap<String, String> =
        req.uri().query().and_then(query_pairs).unwrap_or_default();
    let given = bearer.or(query.get("token").map(String::as_str));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), want)) {
        next.run(req).await
    } else {
        unauthorized()
    }
}

/// `a=b&c=d` as a map (percent-decoded by axum's own query parser).
fn query_pairs(q: &str) -> Option<HashMap<String, String>> {
    let uri: axum::http::Uri = format!("/?{q}").parse().ok()?;
    Query::<HashMap<String, String>>::try_from_uri(&uri)
        .ok()
        .map(|Query(m)| m)
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "this page needs the admin token (Authorization: Bearer <token>, or ?token=)\n",
    )
        .into_response()
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn demo() -> Html<&'static str> {
    Html(include_str!("demo.html"))
}

async fn status(State(app): State<Arc<App>>) -> Response {
    axum::Json(status_json(&app)).into_response()
}

async fn events(State(app): State<Arc<App>>) -> Response {
    let stop = app.stop.clone();
    let stream =
        futures_util::stream::unfold((app, stop, true), |(app, mut stop, first)| async move {
            if !first {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = super::stopped(&mut stop) => return None,
                }
            }
            let ev = Event::default()
                .event("status")
                .data(status_json(&app).to_string());
            Some((Ok::<Event, Infallible>(ev), (app, stop, false)))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Everything the status page shows, as JSON (see the README for the fields).
pub(crate) fn status_json(app: &App) -> Value {
    let shared = &app.shared;
    let totals = counters::sum(shared.workers.iter().map(|w| &w.counters));
    let counters: serde_json::Map<String, Value> = C::ALL
        .iter()
        .map(|c| (c.name().to_owned(), json!(totals[*c as usize])))
        .collect();
    let rates = *app.rates.lock().unwrap_or_else(|e| e.into_inner());
    let control = shared.status.load();
    let e = &app.counters;
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": PROTOCOL,
        "driver": app.setup.info.driver,
        "uptime_s": app.started.elapsed().as_secs(),
        "listening": app
            .setup
            .info
            .bound
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<serde_json::Map<String, Value>>(),
        "workers": shared.workers.len(),
        "counters": counters,
        "rates": {
            "received_per_s": rates.received,
            "forwarded_per_s": rates.forwarded,
            "dropped_per_s": rates.dropped,
        },
        "queues": {
            "control": shared.control.len(),
            "edge": shared.edge.len(),
            "workers": shared.workers.iter().map(|w| w.mailbox.len()).collect::<Vec<_>>(),
        },
        "messenger": control.messenger,
        "router": control.router,
        "oschat": control.oschat,
        "websocket": {
            "sessions": control.websocket,
            "frames_in": e.frames_in.load(Ordering::Relaxed),
            "frames_out": e.frames_out.load(Ordering::Relaxed),
            "bad_frames": e.bad_frames.load(Ordering::Relaxed),
            "slow_dropped": e.slow_dropped.load(Ordering::Relaxed),
            "slow_closed": e.slow_closed.load(Ordering::Relaxed),
            "timed_out": e.timed_out.load(Ordering::Relaxed),
            "refused": e.sessions_refused.load(Ordering::Relaxed),
        },
    })
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics_text(&app),
    )
        .into_response()
}

/// Appends one metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

fn one(v: u64) -> Vec<(String, u64)> {
    vec![(String::new(), v)]
}

/// `/metrics`: per-worker counters summed, the edge's own, queue depths, members.
pub(crate) fn metrics_text(app: &App) -> String {
    let shared = &app.shared;
    let t = counters::sum(shared.workers.iter().map(|w| &w.counters));
    let control = shared.status.load();
    let e = &app.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "oscgate_info",
        "gauge",
        "Build and driver (always 1).",
        &[(
            format!(
                "version=\"{}\",protocol=\"{}\",driver=\"{}\"",
                env!("CARGO_PKG_VERSION"),
                PROTOCOL,
                app.setup.info.driver
            ),
            1,
        )],
    );
    family(
        &mut out,
        "oscgate_uptime_seconds",
        "gauge",
        "Seconds since start.",
        &one(app.started.elapsed().as_secs()),
    );
    family(
        &mut out,
        "oscgate_received_total",
        "counter",
        "Packets received, per front door.",
        &DOORS
            .iter()
            .map(|(c, door)| (format!("door=\"{door}\""), t[*c as usize]))
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "oscgate_forwarded_total",
        "counter",
        "Deliveries handed to a socket, connection or session queue (one per destination).",
        &one(t[C::Forwarded as usize]),
    );
    family(
        &mut out,
        "oscgate_control_total",
        "counter",
        "Packets passed to the control thread.",
        &one(t[C::Control as usize]),
    );
    let mut drops: Vec<(String, u64)> = DROPS
        .iter()
        .map(|(c, reason)| (format!("reason=\"{reason}\""), t[*c as usize]))
        .collect();
    drops.push(("reason=\"ws_slow_reader\"".into(), load(&e.slow_dropped)));
    drops.push(("reason=\"ws_bad_frame\"".into(), load(&e.bad_frames)));
    drops.push((
        "reason=\"ws_worker_queue_full\"".into(),
        load(&e.inject_full),
    ));
    family(
        &mut out,
        "oscgate_dropped_total",
        "counter",
        "Packets or deliveries dropped, by reason.",
        &drops,
    );
    family(
        &mut out,
        "oscgate_tcp_connections_total",
        "counter",
        "TCP connections, by event.",
        &[
            ("event=\"accepted\"".into(), t[C::TcpAccepted as usize]),
            ("event=\"refused\"".into(), t[C::TcpRefused as usize]),
            ("event=\"closed\"".into(), t[C::TcpClosed as usize]),
            ("event=\"fatal\"".into(), t[C::TcpFatal as usize]),
            ("event=\"slow_closed\"".into(), t[C::TcpSlowClosed as usize]),
        ],
    );
    let mut queues = vec![
        ("queue=\"control\"".to_owned(), shared.control.len() as u64),
        ("queue=\"edge\"".to_owned(), shared.edge.len() as u64),
    ];
    for (i, w) in shared.workers.iter().enumerate() {
        queues.push((
            format!("queue=\"worker\",worker=\"{i}\""),
            w.mailbox.len() as u64,
        ));
    }
    family(
        &mut out,
        "oscgate_queue_depth",
        "gauge",
        "Items waiting in the queues between threads.",
        &queues,
    );
    family(
        &mut out,
        "oscgate_messenger_patrons",
        "gauge",
        "Messenger patrons admitted (UDP and TCP).",
        &one(control.messenger.as_ref().map_or(0, |m| m.patrons.len()) as u64),
    );
    let (groups, users) = control.router.as_ref().map_or((0, 0), |r| {
        (r.groups.len(), r.groups.iter().map(|g| g.users.len()).sum())
    });
    family(
        &mut out,
        "oscgate_router_groups",
        "gauge",
        "tcposcrouter groups.",
        &one(groups as u64),
    );
    family(
        &mut out,
        "oscgate_router_users",
        "gauge",
        "tcposcrouter users registered.",
        &one(users as u64),
    );
    let chat = control.oschat.as_ref();
    family(
        &mut out,
        "oscgate_oschat_users",
        "gauge",
        "OSChat users known, by connectability.",
        &[true, false]
            .iter()
            .map(|c| {
                (
                    format!("connectable=\"{c}\""),
                    chat.map_or(0, |s| {
                        s.users.iter().filter(|u| u.connectable == *c).count()
                    }) as u64,
                )
            })
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "oscgate_oschat_gateway_roles",
        "gauge",
        "This node's OSChat gateway roles, by role.",
        &["active", "waiting", "standby"]
            .iter()
            .map(|r| {
                (
                    format!("role=\"{r}\""),
                    chat.map_or(0, |s| s.lanes.iter().filter(|l| l.role == *r).count()) as u64,
                )
            })
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "oscgate_websocket_sessions",
        "gauge",
        "WebSocket gateway sessions on a bus.",
        &one(control.websocket.len() as u64),
    );
    family(
        &mut out,
        "oscgate_websocket_frames_total",
        "counter",
        "WebSocket frames carrying OSC, by direction.",
        &[
            ("direction=\"in\"".into(), load(&e.frames_in)),
            ("direction=\"out\"".into(), load(&e.frames_out)),
        ],
    );
    family(
        &mut out,
        "oscgate_websocket_sessions_total",
        "counter",
        "WebSocket sessions, by outcome.",
        &[
            ("outcome=\"opened\"".into(), load(&e.sessions_opened)),
            ("outcome=\"refused\"".into(), load(&e.sessions_refused)),
            ("outcome=\"slow_closed\"".into(), load(&e.slow_closed)),
            ("outcome=\"timed_out\"".into(), load(&e.timed_out)),
        ],
    );
    out
}
