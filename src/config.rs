//! The TOML configuration, with every key optional and its default embedded.
//!
//! [`Config::default()`] is what oscgate runs on without a file; [`Config::from_toml`] reads a
//! file over those defaults, rejects unknown keys (naming the keys that are allowed) and checks
//! values as it reads them (addresses, CIDRs, a multicast group, a UUID), so every error
//! carries the line, column and key path where it was found ([`ConfigError`]).
//!
//! The README's configuration reference lists every key with its default; a test keeps the
//! two in step. This module reads and checks; it opens no sockets.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::wire::framing::{Framing, DEFAULT_MAX_FRAME};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub engine: Engine,
    pub tcp: Tcp,
    pub messenger: Messenger,
    pub router: Router,
    pub oschat: Oschat,
    pub http: Http,
    pub websocket: Websocket,
    pub log: Log,
}

/// `[engine]`: the forwarding workers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Engine {
    /// Number of worker threads; 0 = one per core.
    pub workers: usize,
    /// I/O driver.
    pub driver: Driver,
    /// Pin each worker to a core.
    pub pin_workers: bool,
    /// `SO_RCVBUF` / `SO_SNDBUF` asked for on every UDP socket, in KiB (the kernel doubles it
    /// and caps it at `net.core.rmem_max` / `wmem_max`). Larger absorbs longer bursts; under
    /// sustained overload it is also the queue a datagram waits in, so it bounds latency.
    pub udp_buffer_kib: usize,
    /// Capacity of the queue from the workers to the control thread, in packets. When it is
    /// full, control packets are dropped and counted (`control_queue_full`); a worker never
    /// waits for the control thread.
    pub control_queue: usize,
}

impl Default for Engine {
    fn default() -> Self {
        Self {
            workers: 0,
            driver: Driver::Auto,
            pin_workers: true,
            udp_buffer_kib: 1024,
            control_queue: 16_384,
        }
    }
}

/// Which I/O driver the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// io_uring if the kernel supports the opcodes used, else mio.
    Auto,
    Uring,
    Mio,
}

impl FromStr for Driver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "uring" => Ok(Self::Uring),
            "mio" => Ok(Self::Mio),
            _ => Err(format!("unknown driver {s:?}: use auto, uring or mio")),
        }
    }
}

/// `[tcp]`: stream framing shared by every TCP front door.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tcp {
    /// Largest accepted frame in bytes; a larger length prefix or SLIP frame is an error.
    pub max_frame: usize,
    /// A connection whose output queue is full and has had frames dropped, with no write
    /// making progress for this long, is closed (milliseconds).
    pub slow_reader_ms: u64,
}

impl Default for Tcp {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            slow_reader_ms: 5_000,
        }
    }
}

/// `[messenger]`: the OSC Messenger gateway.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Messenger {
    pub enabled: bool,
    /// Multicast group and port of the Messenger bus.
    pub group: MulticastGroup,
    /// Address or name of the interface that joins and sends to the group ("" = the system's
    /// default multicast interface).
    pub interface: String,
    /// Where patrons reach the gateway, UDP and TCP on the same port.
    pub listen: SocketAddrV4,
    /// Framing of the TCP patron listener.
    pub framing: Framing,
    /// Gateway uid; "" = a fresh upper-case UUID at start.
    pub uid: Uuid,
    pub max_patrons: usize,
    /// CIDRs patrons may come from; absent = loopback plus the subnets of the host's interfaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<Cidr>>,
    pub keepalive_s: u64,
    pub timeout_s: u64,
    /// Multicast TTL of packets sent to the group.
    pub ttl: u32,
}

impl Default for Messenger {
    fn default() -> Self {
        Self {
            enabled: true,
            group: MulticastGroup(SocketAddrV4::new(Ipv4Addr::new(239, 254, 0, 1), 3090)),
            interface: String::new(),
            listen: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9030),
            framing: Framing::Auto,
            uid: Uuid::default(),
            max_patrons: 500,
            allow: None,
            keepalive_s: 10,
            timeout_s: 30,
            ttl: 1,
        }
    }
}

/// `[router]`: the tcposcrouter-compatible group router.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Router {
    pub enabled: bool,
    /// OSC 1.0 (length prefix) listener; SLIP is auto-detected on it too.
    pub listen: SocketAddrV4,
    /// SLIP listener; the length prefix is auto-detected on it too.
    pub listen_slip: SocketAddrV4,
    pub max_users: usize,
    pub max_groups: usize,
    pub max_name_len: usize,
    pub max_password_len: usize,
    /// Frames queued per connection before the slow-reader policy applies.
    pub queue_limit: usize,
    /// A connection that has not registered after this many seconds is closed.
    pub register_timeout_s: u64,
}

impl Default for Router {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 55555),
            listen_slip: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 55556),
            max_users: 1000,
            max_groups: 100,
            max_name_len: 64,
            max_password_len: 128,
            queue_limit: 4096,
            register_timeout_s: 10,
        }
    }
}

/// `[oschat]`: the OSChat mesh node.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Oschat {
    pub enabled: bool,
    pub port: u16,
    /// Interfaces (names or addresses); absent = every IPv4 interface that is up and has a
    /// broadcast address (loopback only when named).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<String>>,
    /// Node GUID; "" = fresh at start.
    pub node: Uuid,
    pub dedupe_window_s: u64,
    pub max_hops: u32,
    pub announce_s: u64,
    pub announce_ttl_s: u64,
    pub heartbeat_ms: u64,
}

impl Default for Oschat {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 22050,
            interfaces: None,
            node: Uuid::default(),
            dedupe_window_s: 10,
            max_hops: 8,
            announce_s: 150,
            announce_ttl_s: 300,
            heartbeat_ms: 1000,
        }
    }
}

/// `[http]`: the status page, metrics and WebSocket listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    pub enabled: bool,
    pub listen: SocketAddrV4,
    /// If set, the admin pages (`/`, `/api/status`, `/metrics`) require this bearer token.
    pub admin_token: String,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9080),
            admin_token: String::new(),
        }
    }
}

/// `[websocket]`: the WebSocket gateway on the HTTP listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Websocket {
    pub enabled: bool,
    /// Tokens a client may identify with; empty = no token needed.
    pub tokens: Vec<String>,
    pub ping_s: u64,
    pub timeout_s: u64,
    /// Frames queued per session before the slow-reader policy applies.
    pub queue_limit: usize,
    /// WebSocket sessions at once.
    pub max_sessions: usize,
}

impl Default for Websocket {
    fn default() -> Self {
        Self {
            enabled: true,
            tokens: Vec::new(),
            ping_s: 15,
            timeout_s: 45,
            queue_limit: 4096,
            max_sessions: 1000,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// A tracing filter: `error`, `warn`, `info`, `debug`, `trace`, or per-module directives.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// An IPv4 multicast group and port, written `"239.254.0.1:3090"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct MulticastGroup(pub SocketAddrV4);

impl TryFrom<String> for MulticastGroup {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let a: SocketAddrV4 = s
            .parse()
            .map_err(|_| format!("{s:?} is not ADDRESS:PORT, e.g. \"239.254.0.1:3090\""))?;
        if !a.ip().is_multicast() {
            return Err(format!(
                "{} is not a multicast address (224.0.0.0/4)",
                a.ip()
            ));
        }
        Ok(Self(a))
    }
}

impl From<MulticastGroup> for String {
    fn from(g: MulticastGroup) -> String {
        g.0.to_string()
    }
}

/// An IPv4 network in CIDR form, `"10.0.0.0/8"`; a bare address means `/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// True if `ip` is inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, "32"));
        let addr = a
            .parse()
            .map_err(|_| format!("{s:?} is not a CIDR such as \"10.0.0.0/8\""))?;
        let prefix = p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: prefix length must be 0-32"))?;
        Ok(Self { addr, prefix })
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        format!("{}/{}", c.addr, c.prefix)
    }
}

/// A UUID in upper-case hex `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`, or empty (= generate one).
/// Lower-case input is accepted and upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Uuid(pub String);

impl TryFrom<String> for Uuid {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() {
            return Ok(Self(s));
        }
        let ok = s.len() == 36
            && s.char_indices().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
        if !ok {
            return Err(format!(
                "{s:?} is not a UUID (XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX, hex) nor \"\""
            ));
        }
        Ok(Self(s.to_ascii_uppercase()))
    }
}

impl From<Uuid> for String {
    fn from(u: Uuid) -> String {
        u.0
    }
}

/// A configuration error with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line and column, if the error points into the file.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key path of the offending key, e.g. `messenger.group`, if known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, "line {l}, column {c}: ")?;
        }
        if let Some(k) = &self.key {
            write!(f, "key `{k}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads a configuration from TOML text; keys not given keep their defaults.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| locate(text, &e))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// The full configuration as TOML (every key, with its value).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot serialise: {e}\n"))
    }

    /// Checks relations between keys that single values cannot express.
    fn check(&self) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| {
            Err(ConfigError {
                line: None,
                column: None,
                key: Some(key.into()),
                message,
            })
        };
        if !(64..=65_536).contains(&self.engine.udp_buffer_kib) {
            return err(
                "engine.udp_buffer_kib",
                format!("{} is outside 64..=65536", self.engine.udp_buffer_kib),
            );
        }
        if !(4..=1 << 20).contains(&self.engine.control_queue) {
            return err(
                "engine.control_queue",
                format!("{} is outside 4..=1048576", self.engine.control_queue),
            );
        }
        if !(100..=600_000).contains(&self.tcp.slow_reader_ms) {
            return err(
                "tcp.slow_reader_ms",
                format!("{} is outside 100..=600000", self.tcp.slow_reader_ms),
            );
        }
        if self.tcp.max_frame < 16 || self.tcp.max_frame > i32::MAX as usize {
            return err(
                "tcp.max_frame",
                format!("{} is outside 16..=2147483647", self.tcp.max_frame),
            );
        }
        let m = &self.messenger;
        if m.timeout_s <= m.keepalive_s {
            return err(
                "messenger.timeout_s",
                format!(
                    "must be longer than messenger.keepalive_s ({} <= {})",
                    m.timeout_s, m.keepalive_s
                ),
            );
        }
        if m.keepalive_s == 0 {
            return err("messenger.keepalive_s", "must be at least 1".into());
        }
        if m.ttl > 255 {
            return err("messenger.ttl", format!("{} is outside 0..=255", m.ttl));
        }
        let r = &self.router;
        // Port 0 (any free port) is allowed on both: they resolve to different ports.
        if r.enabled && r.listen == r.listen_slip && r.listen.port() != 0 {
            return err(
                "router.listen_slip",
                "must differ from router.listen".into(),
            );
        }
        let o = &self.oschat;
        if o.announce_ttl_s <= o.announce_s {
            return err(
                "oschat.announce_ttl_s",
                "must be longer than oschat.announce_s".into(),
            );
        }
        if o.heartbeat_ms == 0 || o.dedupe_window_s == 0 {
            return err(
                "oschat.heartbeat_ms",
                "oschat.heartbeat_ms and dedupe_window_s must be positive".into(),
            );
        }
        let w = &self.websocket;
        if w.timeout_s <= w.ping_s {
            return err(
                "websocket.timeout_s",
                "must be longer than websocket.ping_s".into(),
            );
        }
        for q in [
            ("router.queue_limit", r.queue_limit),
            ("websocket.queue_limit", w.queue_limit),
            ("websocket.max_sessions", w.max_sessions),
        ] {
            if q.1 == 0 {
                return err(q.0, "must be at least 1".into());
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return err(
                "log.level",
                format!("{:?} is not a log filter such as \"info\"", self.log.level),
            );
        }
        Ok(())
    }
}

/// Turns a TOML error into one with line, column and the dotted key path.
fn locate(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    let Some(span) = e.span() else {
        return ConfigError {
            line: None,
            column: None,
            key: None,
            message,
        };
    };
    let at = span.start.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    // The table is the last `[header]` above the error; the key is the word at the span
    // (for a value error, the key on the same line before `=`).
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let line_text = text[at - (column - 1).min(at)..]
        .lines()
        .next()
        .unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let key = match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    };
    ConfigError {
        line: Some(line),
        column: Some(column),
        key,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = Config::default().to_toml();
        assert_eq!(Config::from_toml(&text).unwrap(), Config::default());
        assert!(text.contains("[messenger]") && text.contains("group = \"239.254.0.1:3090\""));
    }

    #[test]
    fn values_are_read() {
        let c = Config::from_toml(
            "[engine]\nworkers = 2\ndriver = \"mio\"\n[messenger]\nallow = [\"10.0.0.0/8\", \"127.0.0.1\"]\nuid = \"abcdef01-2345-6789-abcd-ef0123456789\"\n",
        )
        .unwrap();
        assert_eq!(c.engine.workers, 2);
        assert_eq!(c.engine.driver, Driver::Mio);
        let allow = c.messenger.allow.unwrap();
        assert!(allow[0].contains(Ipv4Addr::new(10, 9, 8, 7)));
        assert!(!allow[0].contains(Ipv4Addr::new(11, 0, 0, 1)));
        assert!(
            allow[1].contains(Ipv4Addr::LOCALHOST)
                && !allow[1].contains(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert_eq!(c.messenger.uid.0, "ABCDEF01-2345-6789-ABCD-EF0123456789");
    }

    #[test]
    fn unknown_key_names_line_column_key_and_the_allowed_keys() {
        let e = Config::from_toml("[messenger]\nenabled = true\nmax_patron = 5\n").unwrap_err();
        assert_eq!((e.line, e.column), (Some(3), Some(1)));
        assert_eq!(e.key.as_deref(), Some("messenger.max_patron"));
        assert!(e.message.contains("max_patrons"), "{e}");
        let e = Config::from_toml("[nope]\n").unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("messenger"), "{e}");
    }

    #[test]
    fn bad_values_are_located() {
        let e = Config::from_toml("\n[messenger]\ngroup = \"10.0.0.1:3090\"\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("messenger.group"));
        assert!(e.message.contains("not a multicast"), "{e}");
        let e = Config::from_toml("[messenger]\nallow = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("messenger.allow"));
        let e = Config::from_toml("[engine]\ndriver = \"epoll\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("engine.driver"));
        let e = Config::from_toml("[messenger]\nuid = \"nope\"\n").unwrap_err();
        assert!(e.message.contains("UUID"));
        let e = Config::from_toml("[http]\nlisten = \"localhost\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("http.listen"));
        let e = Config::from_toml("[engine]\nudp_buffer_kib = 16\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("engine.udp_buffer_kib"));
        let e = Config::from_toml("[engine\n").unwrap_err();
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn cross_key_checks() {
        let e = Config::from_toml("[messenger]\nkeepalive_s = 30\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("messenger.timeout_s"));
        let e = Config::from_toml("[tcp]\nmax_frame = 1\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("tcp.max_frame"));
        let e = Config::from_toml("[router]\nlisten_slip = \"0.0.0.0:55555\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("router.listen_slip"));
        let e = Config::from_toml("[log]\nlevel = \"[[[\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("log.level"));
    }

    #[test]
    fn cidr_edges() {
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
        assert!("1.2.3.4/x".parse::<Cidr>().is_err());
        assert_eq!(
            String::from("10.1.0.0/16".parse::<Cidr>().unwrap()),
            "10.1.0.0/16"
        );
    }
}
