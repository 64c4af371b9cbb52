//! `engine::tcp` over real sockets and under the counting allocator: two `Conn`s on a loopback
//! `mio` TCP pair exchange 10 000 frames each way with every byte checked (len32, SLIP, and a
//! SLIP peer met by auto-detection), with small socket buffers so partial writes and write
//! readiness are exercised; and `Framer` + `enqueue` + `on_writable` + `on_readable` make no
//! heap allocation per frame once warmed up. The counting allocator of `tests/support` counts
//! per thread, so the socket tests running beside the allocation tests do not disturb them.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use oscgate::engine::tcp::{Conn, ConnConfig, Enqueue, Framer, ReadOutcome, WriteOutcome};
use oscgate::wire::framing::{Decoder, Framing, DEFAULT_MAX_FRAME, SLIP_END, SLIP_ESC};

mod support;
use support::allocs;

const FRAMES: usize = 10_000;

fn config(framing: Framing) -> ConnConfig {
    ConnConfig {
        framing,
        max_frame: DEFAULT_MAX_FRAME,
        queue_frames: 1024,
        queue_bytes: 1 << 20,
        max_drops: 16,
    }
}

/// The `i`th packet sent by side `side`: 1 to 500 bytes that name both, with SLIP's special
/// bytes mixed in.
fn packet(side: usize, i: usize, out: &mut Vec<u8>) {
    out.clear();
    let len = 1 + (i * 7919 + side * 13) % 500;
    out.extend((0..len).map(|j| match (i + j) % 11 {
        0 => SLIP_END,
        1 => SLIP_ESC,
        2 => side as u8,
        _ => (i >> (8 * (j % 3))) as u8 ^ j as u8,
    }));
}

fn loopback_pair() -> (TcpStream, TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (b, _) = listener.accept().unwrap();
    for s in [&a, &b] {
        s.set_nonblocking(true).unwrap();
        s.set_nodelay(true).unwrap();
        // A small send buffer: the kernel takes a few dozen frames at a time, so writes end
        // partly done and the queues wait for write readiness. (The receive buffer keeps its
        // default: a tiny one makes loopback TCP crawl on zero-window probes.)
        let sock = socket2::SockRef::from(s);
        sock.set_send_buffer_size(16 * 1024).unwrap();
    }
    (TcpStream::from_std(a), TcpStream::from_std(b))
}

/// Side 0 (framing `a`) and side 1 (framing `b`) each send `FRAMES` packets to the other, as a
/// worker would: top up the queue, one `on_writable` per turn, reads on readiness with a
/// budget. Side 1 starts sending only once it has read, so an `Auto` side knows its framing.
fn exchange(a: Framing, b: Framing) {
    let (sa, sb) = loopback_pair();
    let mut conns = [Conn::new(sa, &config(a)), Conn::new(sb, &config(b))];
    let mut poll = Poll::new().unwrap();
    for (i, c) in conns.iter_mut().enumerate() {
        poll.registry()
            .register(
                c.stream_mut(),
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .unwrap();
    }
    let mut events = Events::with_capacity(8);
    let mut framer = Framer::new(64 * 1024);
    let mut scratch = vec![0u8; 16 * 1024];
    let (mut sent, mut received, mut more) = ([0usize; 2], [0usize; 2], [false; 2]);
    let (mut buf, mut want) = (Vec::new(), Vec::new());
    let mut pendings = 0;
    while received != [FRAMES; 2] {
        for side in 0..2 {
            let may_send = side == 0 || received[1] > 0;
            while may_send && sent[side] < FRAMES && conns[side].queued().0 < 200 {
                packet(side, sent[side], &mut buf);
                let frame = framer.frame(conns[side].framing(), &buf);
                assert_eq!(conns[side].enqueue(frame), Enqueue::Queued);
                sent[side] += 1;
            }
            match conns[side].on_writable() {
                WriteOutcome::Drained => {}
                WriteOutcome::Pending => pendings += 1,
                WriteOutcome::Closed(r) => panic!("side {side} closed: {r}"),
            }
        }
        let timeout = if more.contains(&true) {
            Duration::ZERO
        } else {
            Duration::from_secs(5)
        };
        poll.poll(&mut events, Some(timeout)).unwrap();
        assert!(
            !events.is_empty() || timeout.is_zero(),
            "stalled at sent {sent:?}, received {received:?}"
        );
        let mut ready = more;
        more = [false; 2];
        for ev in &events {
            let side = ev.token().0;
            ready[side] |= ev.is_readable();
            if ev.is_writable() {
                if let WriteOutcome::Closed(r) = conns[side].on_writable() {
                    panic!("side {side} closed: {r}");
                }
            }
        }
        for side in 0..2 {
            if !ready[side] {
                continue;
            }
            let from = 1 - side;
            let count = &mut received[side];
            let outcome = conns[side].on_readable(&mut scratch, 32 * 1024, |f| {
                let got = f.expect("no framing errors on a clean stream");
                packet(from, *count, &mut want);
                assert!(got == want.as_slice(), "side {side}: frame {count} differs");
                *count += 1;
            });
            match outcome {
                ReadOutcome::Open => {}
                ReadOutcome::More => more[side] = true,
                ReadOutcome::Closed(r) => panic!("side {side} closed: {r}"),
            }
        }
    }
    assert_eq!(sent, [FRAMES; 2]);
    assert!(
        pendings > 0,
        "the small buffers should have filled at least once"
    );
    let expect_framing = if a == Framing::Auto { b } else { a };
    assert_eq!(conns[1].framing(), expect_framing);
    for (side, c) in conns.iter().enumerate() {
        let n = c.counters();
        assert_eq!(n.frames_out, FRAMES as u64, "side {side}");
        assert_eq!(n.frames_in, FRAMES as u64, "side {side}");
        assert_eq!(n.bad_frames + n.dropped_oldest + n.dropped_new, 0);
        assert_eq!(n.bytes_in, conns[1 - side].counters().bytes_out);
    }
}

#[test]
fn loopback_exchange_len32() {
    exchange(Framing::Len32, Framing::Len32);
}

#[test]
fn loopback_exchange_slip() {
    exchange(Framing::Slip, Framing::Slip);
}

#[test]
fn loopback_exchange_slip_peer_detected_by_auto() {
    exchange(Framing::Slip, Framing::Auto);
}

/// One end of an in-memory byte pipe with fixed capacity (full: `WouldBlock`), so the
/// allocation test measures the connection code and nothing else.
struct PipeEnd {
    rx: Rc<RefCell<VecDeque<u8>>>,
    tx: Rc<RefCell<VecDeque<u8>>>,
}

const PIPE: usize = 2048;

fn pipe() -> (PipeEnd, PipeEnd) {
    let one = Rc::new(RefCell::new(VecDeque::with_capacity(PIPE)));
    let two = Rc::new(RefCell::new(VecDeque::with_capacity(PIPE)));
    (
        PipeEnd {
            rx: one.clone(),
            tx: two.clone(),
        },
        PipeEnd { rx: two, tx: one },
    )
}

impl Read for PipeEnd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut q = self.rx.borrow_mut();
        if q.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(q.len());
        for (dst, src) in buf.iter_mut().zip(q.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl Write for PipeEnd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut q = self.tx.borrow_mut();
        if q.len() == PIPE {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(PIPE - q.len());
            q.extend(&b[..take]);
            n += take;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn framer_and_conn_make_no_allocation_per_frame() {
    let framings = [Framing::Len32, Framing::Slip, Framing::Len32];
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for f in framings {
        let (a, b) = pipe();
        senders.push(Conn::new(a, &config(f)));
        receivers.push(Conn::new(b, &config(f)));
    }
    let packets: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            let mut p = Vec::new();
            packet(0, i * 37, &mut p);
            p
        })
        .collect();
    let mut framer = Framer::new(64 * 1024);
    let mut scratch = vec![0u8; 1500];
    let mut delivered = 0usize;
    let mut round = |framer: &mut Framer, n: usize| {
        let p = &packets[n % packets.len()];
        let (len32, slip) = (framer.len32(p), framer.slip(p));
        for (i, s) in senders.iter_mut().enumerate() {
            let f = if framings[i] == Framing::Slip {
                slip.clone()
            } else {
                len32.clone()
            };
            assert_eq!(s.enqueue(f), Enqueue::Queued);
        }
        // Writes, reads and writes again until everything is through the small pipes.
        loop {
            let mut pending = false;
            for (s, r) in senders.iter_mut().zip(receivers.iter_mut()) {
                pending |= s.on_writable() == WriteOutcome::Pending;
                let outcome = r.on_readable(&mut scratch, usize::MAX, |f| {
                    assert!(f == Ok(p.as_slice()));
                    delivered += 1;
                });
                assert_eq!(outcome, ReadOutcome::Open);
            }
            if !pending {
                break;
            }
        }
    };
    for n in 0..2_000 {
        round(&mut framer, n);
    }
    let before = allocs();
    for n in 0..10_000 {
        round(&mut framer, n);
    }
    let during = allocs() - before;
    assert_eq!(
        during, 0,
        "{during} allocations in 10 000 frames x 3 connections"
    );
    assert_eq!(delivered, 12_000 * 3, "the loop did the work");

    // A framed packet reads back through the decoder.
    let mut dec = Decoder::new(Framing::Slip, DEFAULT_MAX_FRAME);
    let mut copy = framer.slip(&packets[5]).to_vec();
    let mut back = Vec::new();
    dec.decode(&mut copy, |f| back.push(f.unwrap().to_vec()))
        .unwrap();
    assert_eq!(back, [packets[5].clone()]);

    // And the counter does count.
    let probe = allocs();
    drop(std::hint::black_box(Vec::<u8>::with_capacity(8)));
    assert!(allocs() > probe);
}

#[test]
fn framer_allocates_per_chunk_not_per_frame_while_frames_are_held() {
    let mut framer = Framer::new(16 * 1024);
    // Far more than the framer's spare chunks cover.
    const HELD: usize = 1_000;
    let mut held: VecDeque<Bytes> = VecDeque::with_capacity(HELD);
    let mut p = Vec::new();
    let mut bytes = 0usize;
    for i in 0..1_000 {
        packet(1, i, &mut p);
        held.push_back(framer.len32(&p));
    }
    held.clear();
    let before = allocs();
    for i in 0..20_000 {
        packet(1, i, &mut p);
        // Held like a slow connection's queue: the chunk is never free when it runs out.
        if held.len() == HELD {
            held.pop_front();
        }
        let f = framer.slip(&p);
        bytes += f.len();
        held.push_back(f);
    }
    let during = allocs() - before;
    // A new chunk is a buffer plus its shared header: two allocations per chunk. A chunk
    // holds at least its size less one largest frame (1 002 bytes SLIP-encoded).
    let chunks = (bytes / (16 * 1024 - 1002) + 1) as u64;
    assert!(
        during <= 2 * chunks,
        "{during} allocations for {chunks} chunks of frames"
    );
    assert!(during > 0, "frames were held, so chunks had to be replaced");
    let last = held.back().unwrap();
    assert_eq!((last[0], last[last.len() - 1]), (SLIP_END, SLIP_END));
}
