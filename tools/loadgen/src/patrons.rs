//! The sockets of the `messenger` scenario and what they do besides carrying load: patrons
//! connecting to a gateway over UDP or TCP (OSC 1.0 len32 framing), joining it, answering its
//! keepalives and leaving; plain UDP receivers for the reference forwarders; and the
//! multicast group sockets.
//!
//! [`Conn`] is one socket; [`Rx`] is the receive state that goes with it (the TCP frame
//! decoder), owned by whichever thread reads the socket. This module does not account load
//! (see `account`) nor run threads (see `messenger`).

use std::io::{self, IoSlice, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oscgate::engine::udp::RecvBatch;
use oscgate::engine::udp::{
    bind_udp, join_multicast_v4, set_multicast_if_v4, set_multicast_ttl_v4,
};
use oscgate::wire::framing::{len32_header, Decoder, Framing, DEFAULT_MAX_FRAME};

use crate::client::{self, Control};
use crate::sys::PollSet;
use crate::via::SOCK_BUF;

/// How long a TCP write may wait for room before the connection is taken as stuck.
pub const WRITE_STALL: Duration = Duration::from_secs(2);
/// A request unanswered this long is sent again (UDP requests can be lost in a burst).
pub const REQUEST_RETRY: Duration = Duration::from_secs(1);
/// Bytes read from a TCP stream per `read`.
const TCP_CHUNK: usize = 64 * 1024;

/// How patrons reach the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// One socket of the scenario.
#[derive(Debug)]
pub enum Conn {
    /// A UDP patron: its own port on 127.0.0.1, talking to the gateway.
    Udp {
        sock: UdpSocket,
        gateway: SocketAddr,
    },
    /// A TCP patron; writes from the sender and the receiver threads take the lock so frames
    /// never interleave.
    Tcp { stream: TcpStream, write: Mutex<()> },
    /// A receive-only UDP socket (reference-forwarder receiver, group listener).
    Plain(UdpSocket),
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Conn::Udp { sock, .. } | Conn::Plain(sock) => sock.as_fd(),
            Conn::Tcp { stream, .. } => stream.as_fd(),
        }
    }
}

/// Receive state of one [`Conn`].
#[derive(Debug)]
pub struct Rx {
    decoder: Option<Decoder>,
    /// The TCP stream ended or broke; it is not read again.
    pub closed: bool,
}

impl Rx {
    /// The state a fresh `conn` starts with.
    pub fn new(conn: &Conn) -> Rx {
        Rx {
            decoder: matches!(conn, Conn::Tcp { .. })
                .then(|| Decoder::new(Framing::Len32, DEFAULT_MAX_FRAME)),
            closed: false,
        }
    }
}

/// Scratch buffers for reading, one per reading thread.
pub struct Reader {
    batch: RecvBatch,
    chunk: Vec<u8>,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            batch: RecvBatch::new(64, 65_536),
            chunk: vec![0; TCP_CHUNK],
        }
    }
}

impl Reader {
    /// Reads what `conn` has now (at most `turns` syscalls) and calls `on_packet` with each
    /// OSC packet (a datagram, or a len32 frame). Returns how many packets there were.
    pub fn read(
        &mut self,
        conn: &Conn,
        rx: &mut Rx,
        turns: usize,
        mut on_packet: impl FnMut(&[u8]),
    ) -> u64 {
        let mut n = 0u64;
        match conn {
            Conn::Udp { sock, .. } | Conn::Plain(sock) => {
                for _ in 0..turns {
                    match self.batch.recv(sock) {
                        Ok(k) if k > 0 => {}
                        _ => break,
                    }
                    for (payload, _, truncated) in self.batch.iter() {
                        if !truncated {
                            n += 1;
                            on_packet(payload);
                        }
                    }
                }
            }
            Conn::Tcp { stream, .. } => {
                let Some(dec) = rx.decoder.as_mut().filter(|_| !rx.closed) else {
                    return 0;
                };
                for _ in 0..turns {
                    let got = match (&*stream).read(&mut self.chunk) {
                        Ok(0) => {
                            rx.closed = true;
                            break;
                        }
                        Ok(k) => k,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            rx.closed = true;
                            break;
                        }
                    };
                    let fatal = dec.decode(&mut self.chunk[..got], |frame| {
                        if let Ok(p) = frame {
                            n += 1;
                            on_packet(p);
                        }
                    });
                    if fatal.is_err() {
                        rx.closed = true;
                        break;
                    }
                }
            }
        }
        n
    }
}

impl Conn {
    /// Sends one OSC packet to the gateway (framed for TCP). A UDP send that finds the buffer
    /// full returns `WouldBlock`; a TCP send waits up to [`WRITE_STALL`] for room, then fails.
    pub fn send_packet(&self, packet: &[u8]) -> io::Result<()> {
        match self {
            Conn::Udp { sock, gateway } => sock.send_to(packet, gateway).map(drop),
            Conn::Tcp { stream, write } => {
                let header = len32_header(packet.len())
                    .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
                let _guard = write.lock().unwrap_or_else(|p| p.into_inner());
                write_all_waiting(stream, &header, packet)
            }
            Conn::Plain(_) => Err(io::Error::from(io::ErrorKind::Unsupported)),
        }
    }
}

/// Writes `a` then `b` on a non-blocking stream, waiting for writability as needed.
fn write_all_waiting(stream: &TcpStream, a: &[u8], b: &[u8]) -> io::Result<()> {
    let total = a.len() + b.len();
    let mut done = 0;
    let mut writable = PollSet::new(&[stream], true);
    let deadline = Instant::now() + WRITE_STALL;
    while done < total {
        let parts = if done < a.len() {
            [IoSlice::new(&a[done..]), IoSlice::new(b)]
        } else {
            [IoSlice::new(&b[done - a.len()..]), IoSlice::new(&[])]
        };
        match (&*stream).write_vectored(&parts) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => done += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                let _ = writable.wait(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `n` UDP patron sockets on 127.0.0.1 for `gateway`.
pub fn udp_patrons(n: usize, gateway: SocketAddr) -> anyhow::Result<Vec<Conn>> {
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    (0..n)
        .map(|_| {
            let sock = bind_udp(local, false, Some(SOCK_BUF), Some(SOCK_BUF))?;
            Ok(Conn::Udp { sock, gateway })
        })
        .collect::<io::Result<_>>()
        .context("binding the patron sockets on 127.0.0.1")
}

/// `n` TCP patron connections to `gateway`.
pub fn tcp_patrons(n: usize, gateway: SocketAddr) -> anyhow::Result<Vec<Conn>> {
    (0..n)
        .map(|i| {
            let stream = TcpStream::connect_timeout(&gateway, Duration::from_secs(3))
                .with_context(|| {
                    format!(
                        "TCP patron {i}: connecting to the gateway at {gateway} \
                         (is `oscgate run` listening there?)"
                    )
                })?;
            stream.set_nodelay(true)?;
            stream.set_nonblocking(true)?;
            Ok(Conn::Tcp {
                stream,
                write: Mutex::new(()),
            })
        })
        .collect()
}

/// `n` receive-only UDP sockets on 127.0.0.1 and their addresses.
pub fn plain_receivers(n: usize) -> anyhow::Result<(Vec<Conn>, Vec<SocketAddr>)> {
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let socks: Vec<UdpSocket> = (0..n)
        .map(|_| bind_udp(local, false, Some(SOCK_BUF), None))
        .collect::<io::Result<_>>()
        .context("binding the receiver sockets on 127.0.0.1")?;
    let addrs = socks
        .iter()
        .map(|s| s.local_addr())
        .collect::<io::Result<_>>()?;
    Ok((socks.into_iter().map(Conn::Plain).collect(), addrs))
}

/// A socket bound to `group` (port 0: one the kernel picks) and joined to it on 127.0.0.1,
/// with its receive buffer at `recv_buf` (`None`: the kernel default).
pub fn group_socket(group: SocketAddrV4, recv_buf: Option<usize>) -> anyhow::Result<UdpSocket> {
    let sock = bind_udp(SocketAddr::V4(group), true, recv_buf, Some(SOCK_BUF))
        .with_context(|| format!("binding {group}"))?;
    join_multicast_v4(&sock, *group.ip(), Ipv4Addr::LOCALHOST)
        .with_context(|| format!("joining {} on 127.0.0.1", group.ip()))?;
    Ok(sock)
}

/// A socket that sends to multicast groups over 127.0.0.1 with TTL `ttl`.
pub fn group_sender(ttl: u32) -> anyhow::Result<UdpSocket> {
    let sock = bind_udp(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        false,
        None,
        Some(SOCK_BUF),
    )
    .context("binding a group sender on 127.0.0.1")?;
    set_multicast_if_v4(&sock, Ipv4Addr::LOCALHOST).context("IP_MULTICAST_IF 127.0.0.1")?;
    set_multicast_ttl_v4(&sock, ttl).context("IP_MULTICAST_TTL")?;
    Ok(sock)
}

/// What joining found out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Joined {
    /// The uid in the gateway's `accept`.
    pub gateway_uid: String,
    /// Patrons accepted (all of them, or joining failed).
    pub accepted: usize,
    /// Requests sent, retries included.
    pub requests: u64,
    /// Seconds from the first request to the last accept.
    pub join_s: f64,
}

/// Keepalive bookkeeping of the patrons, summed over a run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct PatronEvents {
    /// `who/active` received and answered with `me/patron`.
    pub keepalives_answered: u64,
    /// Answers that could not be sent.
    pub keepalive_send_errors: u64,
    /// `shutdown` received from the gateway.
    pub shutdowns: u64,
    /// Other gateway control messages (late accepts, unknown or malformed ones).
    pub other_control: u64,
    /// TCP connections that ended or broke during the run.
    pub closed: u64,
    /// `leave` messages sent at the end.
    pub leaves_sent: u64,
}

impl PatronEvents {
    pub fn add(&mut self, o: &PatronEvents) {
        self.keepalives_answered += o.keepalives_answered;
        self.keepalive_send_errors += o.keepalive_send_errors;
        self.shutdowns += o.shutdowns;
        self.other_control += o.other_control;
        self.closed += o.closed;
        self.leaves_sent += o.leaves_sent;
    }

    /// Handles a control packet that reached patron `conn` (uid `uid`).
    pub fn on_control(&mut self, conn: &Conn, uid: &str, packet: &[u8]) {
        match client::classify(packet) {
            Control::WhoActive { .. } => match conn.send_packet(&client::keepalive_reply(uid)) {
                Ok(()) => self.keepalives_answered += 1,
                Err(_) => self.keepalive_send_errors += 1,
            },
            Control::Shutdown { .. } => self.shutdowns += 1,
            _ => self.other_control += 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinState {
    Waiting,
    Accepted,
    Denied,
}

/// Sends every patron's request and waits up to `timeout` for all to be accepted, repeating
/// unanswered requests every [`REQUEST_RETRY`] and answering keepalives meanwhile. Fails with
/// the counts (accepted, denied, unanswered) unless every patron was accepted.
pub fn join(
    conns: &[Conn],
    rx: &mut [Rx],
    uids: &[String],
    timeout: Duration,
    events: &mut PatronEvents,
) -> anyhow::Result<Joined> {
    let start = Instant::now();
    let mut state = vec![JoinState::Waiting; conns.len()];
    let mut gateway_uid = String::new();
    let mut requests = 0u64;
    let mut reader = Reader::default();
    let mut set = PollSet::new(conns, false);
    let mut last_round: Option<Instant> = None;
    let mut accepted = 0usize;
    let mut denied = 0usize;
    let mut first_denied = None;
    let mut last_accept = start;
    while accepted + denied < conns.len() && start.elapsed() < timeout {
        if last_round.is_none_or(|t| t.elapsed() >= REQUEST_RETRY) {
            last_round = Some(Instant::now());
            for ((conn, uid), st) in conns.iter().zip(uids).zip(&state) {
                if *st == JoinState::Waiting {
                    // A lost or refused request is retried next round.
                    if conn.send_packet(&client::request(uid)).is_ok() {
                        requests += 1;
                    }
                }
            }
        }
        if set.wait(Duration::from_millis(20)).unwrap_or(0) == 0 {
            continue;
        }
        for (i, conn) in conns.iter().enumerate() {
            if !set.ready(i) {
                continue;
            }
            let uid = &uids[i];
            let mut replies = Vec::new();
            reader.read(conn, &mut rx[i], 16, |p| {
                if client::is_control(p) {
                    replies.push(p.to_vec());
                }
            });
            for p in replies {
                match client::classify(&p) {
                    Control::Accept { gateway, patron } if patron == uid => {
                        if state[i] != JoinState::Accepted {
                            if state[i] == JoinState::Denied {
                                denied -= 1;
                            }
                            state[i] = JoinState::Accepted;
                            accepted += 1;
                            last_accept = Instant::now();
                            gateway_uid = gateway.to_owned();
                        }
                    }
                    Control::Deny { patron, .. } if patron == uid => {
                        if state[i] == JoinState::Waiting {
                            state[i] = JoinState::Denied;
                            denied += 1;
                            first_denied.get_or_insert(i);
                        }
                    }
                    _ => events.on_control(conn, uid, &p),
                }
            }
            if rx[i].closed && state[i] == JoinState::Waiting {
                bail!("TCP patron {i}: the gateway closed the connection before answering");
            }
        }
    }
    if accepted == conns.len() {
        return Ok(Joined {
            gateway_uid,
            accepted,
            requests,
            join_s: (last_accept - start).as_secs_f64(),
        });
    }
    let silent = conns.len() - accepted - denied;
    let mut msg = format!(
        "{} of {} patrons were not accepted by the gateway within {:.1} s: {accepted} accepted, \
         {denied} denied, {silent} got no answer",
        conns.len() - accepted,
        conns.len(),
        timeout.as_secs_f64()
    );
    if denied > 0 {
        // The protocol's deny carries no reason; say what oscgate denies for.
        msg += if accepted > 0 {
            ". Denied after others were accepted: the gateway is most likely full \
             (messenger.max_patrons)"
        } else {
            ". Every request was denied: the source 127.0.0.1 is not in messenger.allow, \
             or the gateway is shutting down"
        };
        if let Some(i) = first_denied {
            msg += &format!(" (first denied: patron {i}, uid {})", uids[i]);
        }
    }
    if silent > 0 && accepted == 0 && denied == 0 {
        msg += ". Is `oscgate run` running with the Messenger gateway on that address?";
    }
    bail!(msg)
}

/// Sends every patron's `leave` (TCP streams are then shut down for writing). Returns how
/// many were sent.
pub fn leave(conns: &[Conn], uids: &[String]) -> u64 {
    let mut sent = 0;
    for (conn, uid) in conns.iter().zip(uids) {
        if conn.send_packet(&client::leave(uid)).is_ok() {
            sent += 1;
        }
        if let Conn::Tcp { stream, .. } = conn {
            let _ = stream.shutdown(Shutdown::Write);
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use oscgate::wire::framing::encode_len32;
    use std::net::TcpListener;

    #[test]
    fn tcp_send_is_len32_framed_and_read_back_across_chunks() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let conns = tcp_patrons(1, l.local_addr().unwrap()).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        conns[0].send_packet(&client::request("U1")).unwrap();
        let mut want = Vec::new();
        encode_len32(&client::request("U1"), &mut want).unwrap();
        let mut got = vec![0; want.len()];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, want);
        // Two frames, written in pieces that split a header and a body.
        let mut stream = Vec::new();
        encode_len32(&client::leave("A"), &mut stream).unwrap();
        encode_len32(&client::leave("BB"), &mut stream).unwrap();
        let mut rx = Rx::new(&conns[0]);
        let mut reader = Reader::default();
        let mut packets = Vec::new();
        for piece in [&stream[..2], &stream[2..17], &stream[17..]] {
            peer.write_all(piece).unwrap();
            peer.flush().unwrap();
            let deadline = Instant::now() + Duration::from_secs(2);
            let before = packets.len();
            while packets.len() == before && Instant::now() < deadline {
                let mut set = PollSet::new(&conns, false);
                let _ = set.wait(Duration::from_millis(20));
                reader.read(&conns[0], &mut rx, 4, |p| packets.push(p.to_vec()));
                if piece.len() < 4 {
                    break;
                }
            }
        }
        assert_eq!(packets, vec![client::leave("A"), client::leave("BB")]);
        drop(peer);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !rx.closed && Instant::now() < deadline {
            let _ = PollSet::new(&conns, false).wait(Duration::from_millis(20));
            reader.read(&conns[0], &mut rx, 4, |_| {});
        }
        assert!(rx.closed);
    }

    #[test]
    fn join_fails_with_counts_when_nobody_answers() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let conns = udp_patrons(3, silent.local_addr().unwrap()).unwrap();
        let mut rx: Vec<Rx> = conns.iter().map(Rx::new).collect();
        let uids: Vec<String> = (0..3).map(|i| client::patron_uid(1, i)).collect();
        let e = join(
            &conns,
            &mut rx,
            &uids,
            Duration::from_millis(150),
            &mut PatronEvents::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("3 of 3 patrons were not accepted"), "{e}");
        assert!(e.contains("3 got no answer"), "{e}");
        let mut buf = [0u8; 256];
        let (n, _) = silent.recv_from(&mut buf).unwrap();
        assert_eq!(client::classify(&buf[..n]), Control::Unknown);
    }

    #[test]
    fn join_reports_denials_and_answers_keepalives() {
        use oscgate::proto::messenger::{ACCEPT, DENY, WHO_ACTIVE};
        use oscgate::wire::{write_message, Arg};
        let gw = UdpSocket::bind("127.0.0.1:0").unwrap();
        gw.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let conns = udp_patrons(2, gw.local_addr().unwrap()).unwrap();
        let mut rx: Vec<Rx> = conns.iter().map(Rx::new).collect();
        let uids: Vec<String> = (0..2).map(|i| client::patron_uid(2, i)).collect();
        let fake = std::thread::scope(|s| {
            let h = s.spawn(|| {
                let mut events = PatronEvents::default();
                let r = join(&conns, &mut rx, &uids, Duration::from_secs(2), &mut events);
                (r, events)
            });
            let mut buf = [0u8; 512];
            let mut seen = 0;
            while seen < 2 {
                let (n, from) = gw.recv_from(&mut buf).unwrap();
                let Ok(oscgate::wire::Packet::Message(m)) =
                    oscgate::wire::Packet::new_checked(&buf[..n])
                else {
                    continue;
                };
                let uid = m.args().next().and_then(|a| a.as_str()).unwrap().to_owned();
                let mut out = Vec::new();
                let mut who = Vec::new();
                write_message(&mut who, WHO_ACTIVE, &[Arg::str("GW")]).unwrap();
                gw.send_to(&who, from).unwrap();
                let address = if uid == uids[0] { ACCEPT } else { DENY };
                write_message(&mut out, address, &[Arg::str("GW"), Arg::str(&uid)]).unwrap();
                gw.send_to(&out, from).unwrap();
                seen += 1;
            }
            let (n, _) = gw.recv_from(&mut buf).unwrap();
            let reply = buf[..n].to_vec();
            (h.join().unwrap(), reply)
        });
        let ((r, events), reply) = fake;
        let e = r.unwrap_err().to_string();
        assert!(e.contains("1 accepted, 1 denied"), "{e}");
        assert!(e.contains("most likely full"), "{e}");
        assert!(e.contains(&uids[1]), "{e}");
        assert!(events.keepalives_answered >= 1);
        assert!(client::is_control(&reply));
    }
}
