//! What the control thread knows, published for the status page, `/api/status` and
//! `/metrics` ([`ControlStatus`]): patrons, router groups, the OSChat node's view, WebSocket
//! sessions. Plain data, serialised as the API's JSON; the control thread rebuilds it at most
//! twice a second and publishes it by pointer swap, so readers never wait for it.

use serde::Serialize;

/// See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ControlStatus {
    /// The Messenger gateway, if it runs.
    pub messenger: Option<MessengerStatus>,
    /// The tcposcrouter router, if it runs.
    pub router: Option<RouterStatus>,
    /// The OSChat node, if it runs.
    pub oschat: Option<ChatStatus>,
    /// WebSocket gateway sessions.
    pub websocket: Vec<WsSessionStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MessengerStatus {
    pub patrons: Vec<PatronStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatronStatus {
    /// `udp 10.0.0.5:57120` or `tcp#0.3.1` (WebSocket sessions are listed apart).
    pub endpoint: String,
    pub uid: String,
    /// Seconds since it was admitted.
    pub admitted_s: u64,
    /// Seconds since it was last heard.
    pub idle_s: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouterStatus {
    pub groups: Vec<GroupStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStatus {
    pub name: String,
    /// Users in join order, with how many connections each has.
    pub users: Vec<RouterUserStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouterUserStatus {
    pub name: String,
    pub connections: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatStatus {
    pub node: String,
    pub interfaces: Vec<ChatIfaceStatus>,
    /// This node's role per (segment, remote network).
    pub lanes: Vec<LaneStatus>,
    pub users: Vec<ChatUserStatus>,
    pub rooms: Vec<ChatRoomStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatIfaceStatus {
    pub name: String,
    pub address: String,
    pub network: String,
    pub up: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaneStatus {
    /// The segment (network) this role is on.
    pub segment: String,
    /// The network traffic is carried to.
    pub network: String,
    /// `active`, `waiting` or `standby`.
    pub role: &'static str,
    /// The node last heard heartbeating for it there, if any.
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatUserStatus {
    pub name: String,
    pub connectable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRoomStatus {
    pub name: String,
    pub users: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WsSessionStatus {
    pub session: String,
    pub bus: String,
    pub client_type: String,
    pub client_agent: String,
}
