//! `GET /gateway`: one WebSocket session, from the handshake to the close.
//!
//! 1. Query: `?encoding=json` (default) | `protobuf` | `osc`, `?version=` (semver, optional).
//!    Anything else is answered with an error frame and a close.
//! 2. The server sends the handshake; the client has 10 s to identify (token if
//!    `[websocket].tokens` is set, the bus it wants). The control thread decides whether it
//!    joins; the answer is `ready` (with the session id) or an error frame and a close.
//! 3. Then OSC both ways: what the client sends is routed from `Endpoint::Ws(session)` by a
//!    worker, like a TCP patron's packet; what the bus carries arrives in the session's
//!    bounded queue (the oldest dropped when full) and is sent in the session's encoding.
//!    A send that makes no progress for the TCP slow-reader time closes the session. The
//!    server pings every `ping_s` and closes after `timeout_s` of silence. A malformed frame
//!    gets an error frame and the session goes on; 64 in a row close it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use bytes::Bytes;

use super::frame::{Frame, Handshake, Ready};
use super::keepalive::{Keepalive, Tick};
use super::{App, EdgeCounters, SessionQueue, PROTOCOL};
use crate::engine::bus::{ControlMsg, Endpoint, Joined, Refusal, WorkerMsg, WsOpen};
use crate::wire::Packet;

/// How long a client has to identify after the handshake.
const IDENTIFY_WITHIN: Duration = Duration::from_secs(10);
/// How long the control thread has to answer a join.
const JOIN_WITHIN: Duration = Duration::from_secs(5);
/// Malformed frames in a row that close a session.
const MAX_BAD_RUN: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enc {
    Json,
    Protobuf,
    Osc,
}

pub(crate) async fn upgrade(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let max = app.setup.max_message;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let mut s = Session { ws: socket, app };
            s.run(q).await;
        })
}

/// Whether the protocol version a client asks for is one this server speaks: same major,
/// and not a newer minor (or patch, within the same minor).
fn version_ok(asked: &str) -> Result<(), String> {
    let parse = |v: &str| -> Option<[u64; 3]> {
        let mut out = [0u64; 3];
        let parts: Vec<&str> = v.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return None;
        }
        for (i, p) in parts.iter().enumerate() {
            out[i] = p.parse().ok()?;
        }
        Some(out)
    };
    let ours = parse(PROTOCOL).unwrap_or([1, 0, 0]);
    let Some(theirs) = parse(asked.trim_start_matches('v')) else {
        return Err(format!(
            "version {asked:?} is not MAJOR[.MINOR[.PATCH]]; this server speaks {PROTOCOL}"
        ));
    };
    if theirs[0] != ours[0] || theirs[1..] > ours[1..] {
        return Err(format!(
            "protocol version {asked} is not supported; this server speaks {PROTOCOL}"
        ));
    }
    Ok(())
}

/// Whether `packet` is, or a bundle holding at any depth, a message under `prefix`.
fn touches(packet: &[u8], prefix: &[u8]) -> bool {
    fn walk(p: Packet<'_>, prefix: &[u8]) -> bool {
        match p {
            Packet::Message(m) => crate::wire::address::has_prefix(m.address(), prefix),
            Packet::Bundle(b) => b.elements().any(|e| walk(e, prefix)),
        }
    }
    Packet::new_checked(packet).is_ok_and(|p| walk(p, prefix))
}

struct Session {
    ws: WebSocket,
    app: Arc<App>,
}

enum Next {
    Frame(Frame),
    Bad(super::frame::FrameError),
    Closed,
}

impl Session {
    async fn run(&mut self, q: HashMap<String, String>) {
        let enc = match q.get("encoding").map(String::as_str) {
            None | Some("json") => Enc::Json,
            Some("protobuf") => Enc::Protobuf,
            Some("osc") => Enc::Osc,
            Some(other) => {
                let msg = format!("encoding {other:?} is not one of json, protobuf, osc");
                return self.refuse(Enc::Json, "bad_encoding", msg).await;
            }
        };
        if let Some(v) = q.get("version") {
            if let Err(msg) = version_ok(v) {
                return self.refuse(enc, "unsupported_version", msg).await;
            }
        }
        let mut buses = Vec::new();
        if self.app.setup.info.messenger {
            buses.push("messenger".to_owned());
        }
        if self.app.setup.info.router {
            buses.push("router/GROUP".to_owned());
        }
        if self.app.setup.info.oschat {
            buses.push("oschat/ROOM".to_owned());
        }
        let hello = Frame::Handshake(Handshake {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol: PROTOCOL.to_owned(),
            encodings: vec!["json".into(), "protobuf".into(), "osc".into()],
            buses,
        });
        if !self.send_frame(enc, &hello).await {
            return;
        }
        let ident = match tokio::time::timeout(IDENTIFY_WITHIN, self.next(enc)).await {
            Err(_) => {
                return self
                    .refuse(enc, "identify_timeout", "no identify within 10 s".into())
                    .await
            }
            Ok(Next::Closed) => return,
            Ok(Next::Bad(e)) => return self.refuse(enc, e.code, e.message).await,
            Ok(Next::Frame(Frame::Identify(i))) => i,
            Ok(Next::Frame(_)) => {
                return self
                    .refuse(
                        enc,
                        "expected_identify",
                        "the first frame must be identify".into(),
                    )
                    .await
            }
        };
        let tokens = &self.app.setup.websocket.tokens;
        if !tokens.is_empty()
            && !tokens
                .iter()
                .any(|t| super::http::constant_time_eq(t.as_bytes(), ident.token.as_bytes()))
        {
            return self
                .refuse(enc, "unauthorized", "a valid token is required".into())
                .await;
        }
        let id = self
            .app
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let queue = self.app.add_session(id);
        let open = WsOpen {
            session: id,
            bus: ident.bus.clone(),
            client_type: ident.client_type.clone(),
            client_agent: ident.client_agent.clone(),
            user: ident.user.clone(),
            password: ident.password.clone(),
            group_password: ident.group_password.clone(),
        };
        if self
            .app
            .shared
            .control
            .send(ControlMsg::WsOpen(open))
            .is_err()
        {
            self.app.remove_session(id);
            return self
                .refuse(enc, "busy", "the gateway is overloaded; try again".into())
                .await;
        }
        match self.wait_joined(&queue).await {
            Some(Ok(())) => {}
            Some(Err(r)) => {
                // Also tells the control thread, in case it accepts after all (a late answer).
                self.leave(id);
                return self.refuse(enc, &r.code, r.message).await;
            }
            None => {
                self.leave(id);
                return;
            }
        }
        EdgeCounters::bump(&self.app.counters.sessions_opened);
        let ready = Frame::Ready(Ready {
            session: id.to_string(),
        });
        if self.send_frame(enc, &ready).await {
            self.serve(enc, id, &ident.bus, &queue).await;
        }
        self.leave(id);
    }

    /// Waits for the control thread's answer; None if the client left or time ran out.
    async fn wait_joined(&mut self, q: &SessionQueue) -> Option<Joined> {
        let deadline = tokio::time::Instant::now() + JOIN_WITHIN;
        loop {
            if let Some(r) = q.take_opened() {
                return Some(r);
            }
            tokio::select! {
                _ = q.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Some(Err(Refusal {
                        code: "busy".into(),
                        message: "no answer from the gateway".into(),
                    }));
                }
                m = self.ws.recv() => match m {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                    Some(Ok(_)) => {} // before `ready`: nothing is routed yet
                },
            }
        }
    }

    /// The session proper: OSC both ways until either side stops.
    async fn serve(&mut self, enc: Enc, id: u64, bus: &str, q: &SessionQueue) {
        let app = Arc::clone(&self.app);
        let ws_cfg = &app.setup.websocket;
        let mut keep = Keepalive::new(
            app.started.elapsed(),
            Duration::from_secs(ws_cfg.ping_s.max(1)),
            Duration::from_secs(ws_cfg.timeout_s.max(2)),
        );
        let mut stop = app.stop.clone();
        let mut bad_run = 0u32;
        // Anything queued before `ready` (a router group's user list) goes out first.
        q.kick();
        loop {
            let deadline = tokio::time::Instant::from_std(app.started + keep.deadline());
            tokio::select! {
                m = self.ws.recv() => {
                    let m = match m {
                        None | Some(Err(_)) => return,
                        Some(Ok(m)) => m,
                    };
                    keep.heard(app.started.elapsed());
                    let got = match m {
                        Message::Text(t) => Frame::from_json(t.as_str()).and_then(|f| self.packet_of(f)),
                        Message::Binary(b) if enc == Enc::Osc => Packet::new_checked(&b)
                            .map(|_| b.to_vec())
                            .map_err(|e| super::frame::FrameError { code: "bad_osc", message: e.to_string() }),
                        Message::Binary(b) => Frame::from_protobuf(&b).and_then(|f| self.packet_of(f)),
                        Message::Close(_) => return,
                        Message::Ping(_) | Message::Pong(_) => continue,
                    };
                    let result = got.and_then(|p| self.inject(id, bus, p));
                    match result {
                        Ok(()) => bad_run = 0,
                        Err(e) => {
                            EdgeCounters::bump(&app.counters.bad_frames);
                            bad_run += 1;
                            let f = Frame::error(e.code, e.message);
                            if !self.send_frame(enc, &f).await {
                                return;
                            }
                            if bad_run >= MAX_BAD_RUN {
                                return self.close(1008, "too many malformed frames").await;
                            }
                        }
                    }
                }
                _ = q.notified() => {
                    while let Some(p) = q.pop() {
                        let Some(m) = outgoing(enc, &p) else {
                            EdgeCounters::bump(&app.counters.bad_frames);
                            continue;
                        };
                        match tokio::time::timeout(app.setup.slow_reader, self.ws.send(m)).await {
                            Ok(Ok(())) => EdgeCounters::bump(&app.counters.frames_out),
                            Ok(Err(_)) => return,
                            Err(_) => {
                                EdgeCounters::bump(&app.counters.slow_closed);
                                tracing::info!(session = id, "websocket session closed: reading too slowly");
                                return;
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    match keep.poll(app.started.elapsed()) {
                        Some(Tick::Ping) if self.ws.send(Message::Ping(Bytes::new())).await.is_err() => {
                            return;
                        }
                        Some(Tick::Ping) => {}
                        Some(Tick::Expired) => {
                            EdgeCounters::bump(&app.counters.timed_out);
                            let f = Frame::error("timeout", "nothing heard from the client");
                            let _ = self.send_frame(enc, &f).await;
                            return self.close(1001, "silent too long").await;
                        }
                        None => {}
                    }
                }
                _ = super::stopped(&mut stop) => return self.close(1001, "gateway shutting down").await,
            }
        }
    }

    /// The OSC packet a client frame carries.
    fn packet_of(&self, f: Frame) -> Result<Vec<u8>, super::frame::FrameError> {
        match f {
            Frame::Osc(_) | Frame::Bundle(_) => f.to_packet(),
            Frame::Identify(_) => Err(super::frame::FrameError {
                code: "already_identified",
                message: "this session has identified already".into(),
            }),
            _ => Err(super::frame::FrameError {
                code: "unexpected_frame",
                message: "only osc and bundle frames are accepted now".into(),
            }),
        }
    }

    /// Hands a client's packet to the worker that routes this session's traffic.
    fn inject(&self, id: u64, bus: &str, packet: Vec<u8>) -> Result<(), super::frame::FrameError> {
        let reserved = match bus {
            "messenger" => Some(crate::proto::messenger::GATEWAY_PREFIX),
            _ => None,
        };
        if reserved.is_some_and(|r| touches(&packet, r)) {
            return Err(super::frame::FrameError {
                code: "reserved_address",
                message: "addresses under /messenger/gateway are the gateway's own".into(),
            });
        }
        let shared = &self.app.shared;
        if bus.starts_with("oschat/") {
            // An OSChat room: the node says it (the control thread records and broadcasts).
            use crate::proto::oschat::parse;
            match parse(&packet) {
                Ok(c) if c.is_mesh() => {
                    return Err(super::frame::FrameError {
                        code: "reserved_address",
                        message: "mesh messages are the gateways' own".into(),
                    })
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(super::frame::FrameError {
                        code: "bad_oschat",
                        message: format!("not an OSChat message: {e}"),
                    })
                }
            }
            let msg = ControlMsg::WsChat {
                session: id,
                packet: Bytes::from(packet),
            };
            return self.handed(shared.control.send(msg).is_ok());
        }
        // On a tcposcrouter bus the session is a router connection (served by the edge).
        let from = if bus.starts_with("router/") {
            Endpoint::Tcp(crate::engine::bus::ConnId::edge(id))
        } else {
            Endpoint::Ws(id)
        };
        let w = shared.worker_for(&from);
        let msg = WorkerMsg::Inject {
            from,
            packet: Bytes::from(packet),
        };
        self.handed(shared.workers[w].mailbox.send(msg).is_ok())
    }

    /// Counts a client's packet handed on (`ok`) or dropped on a full queue (`busy`).
    fn handed(&self, ok: bool) -> Result<(), super::frame::FrameError> {
        if ok {
            EdgeCounters::bump(&self.app.counters.frames_in);
            Ok(())
        } else {
            EdgeCounters::bump(&self.app.counters.inject_full);
            Err(super::frame::FrameError {
                code: "busy",
                message: "the gateway is overloaded; message dropped".into(),
            })
        }
    }

    /// The next frame from the client (before the session proper: identify).
    async fn next(&mut self, enc: Enc) -> Next {
        loop {
            match self.ws.recv().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Next::Closed,
                Some(Ok(Message::Text(t))) => {
                    return match Frame::from_json(t.as_str()) {
                        Ok(f) => Next::Frame(f),
                        Err(e) => Next::Bad(e),
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    if enc == Enc::Osc {
                        return Next::Bad(super::frame::FrameError {
                            code: "expected_identify",
                            message: "with ?encoding=osc, identify is a JSON text frame".into(),
                        });
                    }
                    return match Frame::from_protobuf(&b) {
                        Ok(f) => Next::Frame(f),
                        Err(e) => Next::Bad(e),
                    };
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Sends a gateway frame in the session's encoding (JSON text when raw OSC is chosen).
    async fn send_frame(&mut self, enc: Enc, f: &Frame) -> bool {
        let m = match enc {
            Enc::Protobuf => Message::Binary(Bytes::from(f.to_protobuf())),
            Enc::Json | Enc::Osc => Message::Text(f.to_json().into()),
        };
        self.ws.send(m).await.is_ok()
    }

    async fn refuse(&mut self, enc: Enc, code: &str, message: String) {
        EdgeCounters::bump(&self.app.counters.sessions_refused);
        let f = Frame::error(code, message);
        if self.send_frame(enc, &f).await {
            self.close(1008, code).await;
        }
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let _ = self
            .ws
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.to_owned().into(),
            })))
            .await;
    }

    /// The session is over: the control thread takes it off its bus.
    fn leave(&self, id: u64) {
        self.app.remove_session(id);
        let control = &self.app.shared.control;
        let mut msg = ControlMsg::WsClosed(id);
        for _ in 0..100 {
            match control.send(msg) {
                Ok(()) => return,
                Err(back) => {
                    msg = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        tracing::warn!(
            session = id,
            "control queue full: websocket session end not delivered"
        );
    }
}

/// A packet from the bus, in the session's encoding; None if it cannot be shown (a packet the
/// wire layer cannot read whole).
fn outgoing(enc: Enc, p: &Bytes) -> Option<Message> {
    match enc {
        Enc::Osc => Some(Message::Binary(p.clone())),
        Enc::Json => Frame::from_packet(p)
            .ok()
            .map(|f| Message::Text(f.to_json().into())),
        Enc::Protobuf => Frame::from_packet(p)
            .ok()
            .map(|f| Message::Binary(Bytes::from(f.to_protobuf()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_the_same_major_up_to_ours_are_accepted() {
        for ok in ["1", "1.0", "1.0.0", "v1"] {
            assert!(version_ok(ok).is_ok(), "{ok}");
        }
        for bad in ["2", "0.9", "1.1", "1.0.1", "x", "", "1.0.0.0", "1.-1"] {
            let e = version_ok(bad).unwrap_err();
            assert!(e.contains(PROTOCOL), "{bad}: {e}");
        }
    }

    #[test]
    fn reserved_addresses_are_found_in_bundles_too() {
        let f = Frame::from_json(
            r#"{"type":"bundle","timetag":"1","elements":[{"type":"osc","address":"/a"},
                {"type":"bundle","timetag":"1","elements":[{"type":"osc","address":"/messenger/gateway/me/request"}]}]}"#,
        )
        .unwrap();
        let p = f.to_packet().unwrap();
        assert!(touches(&p, b"/messenger/gateway"));
        assert!(!touches(&p, b"/oscrouter"));
    }
}
