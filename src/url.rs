//! liblo-style OSC URLs and the interface lookup the command line uses.
//!
//! Accepted forms (`host` may be empty, an IPv4 address, `[IPv6]` or a host name):
//!
//! | URL | transport |
//! | --- | --- |
//! | `osc.udp://host:port` | UDP; a multicast host means "join / send to the group" |
//! | `osc.tcp://host:port` | TCP; sending uses the OSC 1.0 length prefix, listening auto-detects |
//! | `osc.tcp+slip://host:port` (also `osc.slip://`) | TCP with OSC 1.1 SLIP framing |
//! | `osc.tcp+len32://host:port` | TCP, OSC 1.0 length prefix forced on both sides |
//!
//! An empty host means `0.0.0.0` for a listener and `127.0.0.1` for a sender. A path after the
//! port (`osc.udp://h:9000/`) is ignored, as liblo does.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use crate::wire::framing::Framing;

/// The transport named by a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp(Framing),
}

/// A parsed OSC URL. The host is kept unresolved until [`OscUrl::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OscUrl {
    pub transport: Transport,
    /// Host as written (without IPv6 brackets); empty for "any / local".
    pub host: String,
    pub port: u16,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "unknown scheme in {0:?}: use osc.udp://, osc.tcp://, osc.tcp+slip:// or osc.tcp+len32://"
    )]
    Scheme(String),
    #[error("missing or bad port in {0:?}: write host:port, e.g. osc.udp://127.0.0.1:9000")]
    Port(String),
    #[error("cannot resolve host {0:?}")]
    Resolve(String),
}

impl OscUrl {
    /// Parses a URL such as `osc.udp://127.0.0.1:9000`.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| UrlError::Scheme(s.into()))?;
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "osc.udp" => Transport::Udp,
            "osc.tcp" => Transport::Tcp(Framing::Auto),
            "osc.tcp+slip" | "osc.slip" | "osc.tcp.slip" => Transport::Tcp(Framing::Slip),
            "osc.tcp+len32" => Transport::Tcp(Framing::Len32),
            _ => return Err(UrlError::Scheme(s.into())),
        };
        let hostport = rest.split('/').next().unwrap_or("");
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, p) = v6
                .split_once("]:")
                .ok_or_else(|| UrlError::Port(s.into()))?;
            (h, p)
        } else {
            hostport
                .rsplit_once(':')
                .ok_or_else(|| UrlError::Port(s.into()))?
        };
        let port = port.parse::<u16>().map_err(|_| UrlError::Port(s.into()))?;
        Ok(Self {
            transport,
            host: host.to_string(),
            port,
        })
    }

    /// The address to bind a listener to (empty host = all IPv4 interfaces).
    pub fn bind_addr(&self) -> Result<SocketAddr, UrlError> {
        if self.host.is_empty() {
            return Ok(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), self.port));
        }
        self.resolve()
    }

    /// The address to send to (empty host = 127.0.0.1).
    pub fn resolve(&self) -> Result<SocketAddr, UrlError> {
        if self.host.is_empty() {
            return Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.port));
        }
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| it.find(SocketAddr::is_ipv4))
            .ok_or_else(|| UrlError::Resolve(self.host.clone()))
    }
}

impl fmt::Display for OscUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Udp => "osc.udp",
            Transport::Tcp(Framing::Auto) => "osc.tcp",
            Transport::Tcp(Framing::Slip) => "osc.tcp+slip",
            Transport::Tcp(Framing::Len32) => "osc.tcp+len32",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Finds the IPv4 address of an interface given as an address or a name (`lo`, `eth0`).
pub fn interface_addr(spec: &str) -> Result<Ipv4Addr, String> {
    if let Ok(ip) = spec.parse::<Ipv4Addr>() {
        return Ok(ip);
    }
    let ifs = if_addrs::get_if_addrs().map_err(|e| format!("cannot list interfaces: {e}"))?;
    ifs.iter()
        .filter(|i| i.name == spec)
        .find_map(|i| match i.addr {
            if_addrs::IfAddr::V4(ref v4) => Some(v4.ip),
            _ => None,
        })
        .ok_or_else(|| {
            let mut names: Vec<_> = ifs.iter().map(|i| i.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            format!(
                "no IPv4 interface named {spec:?} (have: {})",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme() {
        let u = OscUrl::parse("osc.udp://127.0.0.1:9000").unwrap();
        assert_eq!(u.transport, Transport::Udp);
        assert_eq!(u.resolve().unwrap(), "127.0.0.1:9000".parse().unwrap());
        assert_eq!(
            OscUrl::parse("osc.tcp://h:1/").unwrap().transport,
            Transport::Tcp(Framing::Auto)
        );
        assert_eq!(
            OscUrl::parse("osc.tcp+slip://h:1").unwrap().transport,
            Transport::Tcp(Framing::Slip)
        );
        assert_eq!(
            OscUrl::parse("osc.slip://h:1").unwrap().transport,
            Transport::Tcp(Framing::Slip)
        );
        assert_eq!(
            OscUrl::parse("osc.tcp+len32://h:1").unwrap().transport,
            Transport::Tcp(Framing::Len32)
        );
    }

    #[test]
    fn empty_host_and_ipv6() {
        let u = OscUrl::parse("osc.udp://:7000").unwrap();
        assert_eq!(u.bind_addr().unwrap(), "0.0.0.0:7000".parse().unwrap());
        assert_eq!(u.resolve().unwrap(), "127.0.0.1:7000".parse().unwrap());
        let u = OscUrl::parse("osc.udp://[::1]:7000").unwrap();
        assert_eq!(u.resolve().unwrap(), "[::1]:7000".parse().unwrap());
        assert_eq!(u.to_string(), "osc.udp://[::1]:7000");
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(matches!(
            OscUrl::parse("udp://h:1"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            OscUrl::parse("osc.udp://h"),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            OscUrl::parse("osc.udp://h:99999"),
            Err(UrlError::Port(_))
        ));
        assert!(matches!(
            OscUrl::parse("osc.udp://[::1:5"),
            Err(UrlError::Port(_))
        ));
    }

    #[test]
    fn loopback_interface_by_name_and_address() {
        assert_eq!(interface_addr("127.0.0.1").unwrap(), Ipv4Addr::LOCALHOST);
        assert_eq!(interface_addr("lo").unwrap(), Ipv4Addr::LOCALHOST);
        assert!(interface_addr("no-such-if0").unwrap_err().contains("lo"));
    }
}
