//! One TCP connection as a worker sees it: stream decoding on the way in, a bounded queue of
//! shared frames with a slow-reader policy on the way out, and [`Framer`], which encodes a
//! packet once per framing into shared [`Bytes`] for every connection that gets it.
//!
//! What this module does: [`Conn`] wraps a non-blocking stream (a `mio::net::TcpStream` in
//! production, anything `Read + Write` in tests). The worker calls [`Conn::on_readable`] on
//! read readiness (and again next turn while it returns [`ReadOutcome::More`]),
//! [`Conn::enqueue`] for each frame to send, and [`Conn::on_writable`] on write readiness and
//! once per loop turn for connections with output. Frames are decoded by
//! [`crate::wire::framing::Decoder`]; frames are written with `write_vectored`, up to
//! [`MAX_IOV`] frames per call, until the queue is empty or the socket would block (mio's
//! readiness is edge-triggered, so stopping earlier could leave output stranded).
//!
//! What it does not do: register with mio, accept, route, parse OSC, read the clock, or close
//! the socket. Outcomes tell the caller when to close; it owns the slab and the poll registry.
//!
//! # Slow-reader policy
//! Each connection's output queue is bounded by `queue_frames` frames and `queue_bytes` bytes
//! (whole frame lengths, including the frame being written). When a new frame does not fit,
//! the oldest frames not yet started are dropped, one by one, until it does. A frame that is
//! partly written is never dropped: cutting it would corrupt the stream for the reader. A new
//! frame that cannot fit even then (larger than `queue_bytes` on its own, or too large to sit
//! beside the frame being written) is itself dropped. Every dropped frame is counted. When
//! the frames dropped since the last write that made progress reach `max_drops`,
//! [`Conn::enqueue`] returns [`Enqueue::Disconnect`]: the queue is released and the caller
//! closes the connection. A reader that keeps up, even slowly, resets that count with every
//! write that moves bytes ([`Conn::drops_since_progress`] tells the caller where it stands;
//! the engine sets `max_drops` out of reach and closes by time instead, see `tcp_side`).
//!
//! Memory per connection is bounded by `queue_bytes` (queued frames; shared with other
//! connections when they are the same [`Bytes`]) + the decoder's `max_frame` (a frame
//! straddling reads) + the queue's slots (`queue_frames` × 32 bytes at most) + a small
//! constant.

use core::fmt;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::framing::{
    encoded_len, len32_header, Decoder, FrameError, Framing, SLIP_END, SLIP_ESC, SLIP_ESC_END,
    SLIP_ESC_ESC,
};

/// The most frames handed to one `write_vectored` call (well under Linux's `IOV_MAX` of 1024;
/// more slices buy nothing once a call fills the socket buffer).
pub const MAX_IOV: usize = 64;

/// Framing, frame limit and output queue bounds of a connection.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// How frames are delimited in both directions ([`Framing::Auto`]: decided by the first
    /// received byte).
    pub framing: Framing,
    /// The largest frame accepted from the peer (see [`Decoder::new`]).
    pub max_frame: usize,
    /// The most frames queued for output (at least 1 is used).
    pub queue_frames: usize,
    /// The most bytes queued for output, counting whole frames.
    pub queue_bytes: usize,
    /// Frames dropped since the last progressing write at which the connection is given up.
    pub max_drops: u32,
}

/// Why a connection ended (or one direction of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side between frames.
    Eof,
    /// The peer closed its side in the middle of a frame; its bytes are discarded.
    EofMidFrame {
        /// Bytes of the incomplete frame that had arrived.
        buffered: usize,
    },
    /// A read or write failed with this error kind (a write that accepted 0 bytes is
    /// `WriteZero`).
    Io(io::ErrorKind),
    /// The stream cannot be decoded any further (e.g. a len32 prefix above `max_frame`).
    Framing(FrameError),
    /// The reader was too slow: `max_drops` frames were dropped without a write making
    /// progress.
    TooManyDrops {
        /// Frames dropped since the last write that made progress.
        dropped: u32,
    },
}

impl CloseReason {
    /// Whether this is a fatal framing error (the peer sent something undecodable).
    pub const fn is_fatal_framing(&self) -> bool {
        matches!(self, CloseReason::Framing(_))
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CloseReason::Eof => f.write_str("peer closed the connection"),
            CloseReason::EofMidFrame { buffered } => write!(
                f,
                "peer closed the connection in the middle of a frame ({buffered} bytes of it \
                 discarded)"
            ),
            CloseReason::Io(kind) => write!(f, "socket error: {kind}"),
            CloseReason::Framing(e) => write!(f, "unrecoverable framing error: {e}"),
            CloseReason::TooManyDrops { dropped } => write!(
                f,
                "reader too slow: {dropped} frames dropped from its queue without a write \
                 making progress (raise max_drops or the queue bounds if it is only bursty)"
            ),
        }
    }
}

/// What [`Conn::on_readable`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Everything available was read (the socket would block): wait for the next readiness.
    Open,
    /// The read budget ran out with data possibly still waiting: call again next loop turn
    /// (no new readiness event will come for it).
    More,
    /// The read side is finished; the caller closes the connection. Later calls return the
    /// same reason without reading.
    Closed(CloseReason),
}

/// What [`Conn::enqueue`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueue {
    /// Queued; nothing was dropped.
    Queued,
    /// Queued after dropping this many older frames (never the one being written).
    DroppedOldest(usize),
    /// The new frame itself was dropped: it is larger than `queue_bytes` on its own, or does
    /// not fit beside the frame being written. Older frames are kept.
    Dropped,
    /// Frames dropped since the last progressing write reached `max_drops` (or the write side
    /// already failed): the queue was released; close the connection.
    Disconnect,
}

/// What [`Conn::on_writable`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The queue is empty.
    Drained,
    /// The socket would block with output still queued: wait for write readiness.
    Pending,
    /// The write side failed (or the connection was given up as too slow): close it.
    Closed(CloseReason),
}

/// Per-connection counts, summed by the worker as it likes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnCounters {
    /// Complete frames received and handed to the callback.
    pub frames_in: u64,
    /// Bytes read from the stream.
    pub bytes_in: u64,
    /// Frames received and dropped for a non-fatal framing error.
    pub bad_frames: u64,
    /// Frames written completely.
    pub frames_out: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Queued frames dropped to make room for newer ones.
    pub dropped_oldest: u64,
    /// New frames dropped because they could not fit (see [`Enqueue::Dropped`]).
    pub dropped_new: u64,
}

/// One connection: decoder, output queue and counters around a non-blocking stream. See the
/// module docs for the call order and the slow-reader policy.
#[derive(Debug)]
pub struct Conn<S> {
    stream: S,
    decoder: Decoder,
    queue: VecDeque<Bytes>,
    /// Bytes of `queue[0]` already written.
    head_written: usize,
    /// Sum of the whole lengths of the queued frames.
    held_bytes: usize,
    queue_frames: usize,
    queue_bytes: usize,
    max_drops: u32,
    /// Frames dropped since the last write that made progress.
    drops_since_progress: u32,
    read_closed: Option<CloseReason>,
    write_closed: Option<CloseReason>,
    counters: ConnCounters,
}

impl<S: Read + Write> Conn<S> {
    /// Wraps `stream` (already non-blocking). Allocates nothing until frames are queued.
    pub fn new(stream: S, cfg: &ConnConfig) -> Self {
        Conn {
            stream,
            decoder: Decoder::new(cfg.framing, cfg.max_frame),
            queue: VecDeque::new(),
            head_written: 0,
            held_bytes: 0,
            queue_frames: cfg.queue_frames.max(1),
            queue_bytes: cfg.queue_bytes,
            max_drops: cfg.max_drops,
            drops_since_progress: 0,
            read_closed: None,
            write_closed: None,
            counters: ConnCounters::default(),
        }
    }

    /// The stream.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// The stream, e.g. to (de)register it with the poll registry.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The framing to encode output in: [`Framing::Len32`] or [`Framing::Slip`]. With
    /// [`Framing::Auto`] it is len32 until the first received byte decides (a peer that
    /// speaks SLIP is expected to talk first).
    pub fn framing(&self) -> Framing {
        match self.decoder.framing() {
            Framing::Slip => Framing::Slip,
            Framing::Len32 | Framing::Auto => Framing::Len32,
        }
    }

    /// Reads until the socket would block, the peer closes, an error, or `budget` bytes
    /// (so one busy peer cannot starve the others; at least one read is made). Every
    /// complete frame (`Ok`) and every non-fatal framing error (`Err`, the frame is dropped)
    /// is passed to `on_frame`, in stream order. `scratch` is the worker's read buffer, shared
    /// by all its connections (e.g. 64 KiB).
    pub fn on_readable(
        &mut self,
        scratch: &mut [u8],
        budget: usize,
        mut on_frame: impl FnMut(Result<&[u8], FrameError>),
    ) -> ReadOutcome {
        if let Some(reason) = self.read_closed {
            return ReadOutcome::Closed(reason);
        }
        // Reading into nothing would look like EOF; an empty scratch (a caller's mistake)
        // still works, slowly.
        let mut fallback = [0u8; 64];
        let scratch = if scratch.is_empty() {
            &mut fallback[..]
        } else {
            scratch
        };
        let budget = budget.max(1);
        let mut read = 0usize;
        loop {
            if read >= budget {
                return ReadOutcome::More;
            }
            let want = scratch.len().min(budget - read);
            let n = match self.stream.read(&mut scratch[..want]) {
                Ok(0) => {
                    let reason = if self.decoder.mid_frame() {
                        CloseReason::EofMidFrame {
                            buffered: self.decoder.buffered(),
                        }
                    } else {
                        CloseReason::Eof
                    };
                    return self.close_read(reason);
                }
                Ok(n) => n.min(want),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.close_read(CloseReason::Io(e.kind())),
            };
            read += n;
            self.counters.bytes_in += n as u64;
            let counters = &mut self.counters;
            let decoded = self.decoder.decode(&mut scratch[..n], |frame| {
                match frame {
                    Ok(_) => counters.frames_in += 1,
                    Err(_) => counters.bad_frames += 1,
                }
                on_frame(frame);
            });
            if let Err(e) = decoded {
                return self.close_read(CloseReason::Framing(e));
            }
        }
    }

    fn close_read(&mut self, reason: CloseReason) -> ReadOutcome {
        self.read_closed = Some(reason);
        ReadOutcome::Closed(reason)
    }

    /// Queues one frame, already encoded in [`Conn::framing`] (typically a clone of a
    /// [`Framer`] frame shared by many connections), applying the slow-reader policy of the
    /// module docs. An empty frame is ignored.
    pub fn enqueue(&mut self, frame: Bytes) -> Enqueue {
        if self.write_closed.is_some() {
            return Enqueue::Disconnect;
        }
        let len = frame.len();
        if len == 0 {
            return Enqueue::Queued;
        }
        // The frame being written stays whatever happens; can the new one fit beside it?
        let (pinned_frames, pinned_bytes) = match self.queue.front() {
            Some(head) if self.head_written > 0 => (1, head.len()),
            _ => (0, 0),
        };
        if pinned_frames + 1 > self.queue_frames || pinned_bytes + len > self.queue_bytes {
            self.counters.dropped_new += 1;
            return self.count_drops(1, Enqueue::Dropped);
        }
        let mut dropped = 0usize;
        while self.queue.len() + 1 > self.queue_frames || self.held_bytes + len > self.queue_bytes {
            // Oldest frame not yet started: the head unless it is partly written. The check
            // above guarantees there is one while the new frame does not fit.
            let Some(old) = self.queue.remove(pinned_frames) else {
                break;
            };
            self.held_bytes -= old.len();
            dropped += 1;
        }
        self.held_bytes += len;
        self.queue.push_back(frame);
        if dropped == 0 {
            return Enqueue::Queued;
        }
        self.counters.dropped_oldest += dropped as u64;
        self.count_drops(dropped, Enqueue::DroppedOldest(dropped))
    }

    /// Adds `n` drops to the count since the last progress; gives up past `max_drops`.
    fn count_drops(&mut self, n: usize, otherwise: Enqueue) -> Enqueue {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.drops_since_progress = self.drops_since_progress.saturating_add(n);
        if self.drops_since_progress >= self.max_drops {
            self.close_write(CloseReason::TooManyDrops {
                dropped: self.drops_since_progress,
            });
            return Enqueue::Disconnect;
        }
        otherwise
    }

    /// Marks the write side finished and releases the queued frames.
    fn close_write(&mut self, reason: CloseReason) -> WriteOutcome {
        self.write_closed = Some(reason);
        self.queue = VecDeque::new();
        self.head_written = 0;
        self.held_bytes = 0;
        WriteOutcome::Closed(reason)
    }

    /// Writes what is queued: `write_vectored` calls of up to [`MAX_IOV`] frames, resuming a
    /// partly written frame where it stopped, until the queue is empty or the socket would
    /// block.
    pub fn on_writable(&mut self) -> WriteOutcome {
        if let Some(reason) = self.write_closed {
            return WriteOutcome::Closed(reason);
        }
        loop {
            if self.queue.is_empty() {
                return WriteOutcome::Drained;
            }
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            let mut offered = 0;
            for (slot, frame) in iov.iter_mut().zip(self.queue.iter()) {
                let rest = if count == 0 {
                    &frame[self.head_written..]
                } else {
                    &frame[..]
                };
                *slot = IoSlice::new(rest);
                offered += rest.len();
                count += 1;
            }
            match self.stream.write_vectored(&iov[..count]) {
                Ok(0) => return self.close_write(CloseReason::Io(io::ErrorKind::WriteZero)),
                Ok(n) => self.advance(n.min(offered)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return WriteOutcome::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.close_write(CloseReason::Io(e.kind())),
            }
        }
    }

    /// Consumes `n` written bytes from the front of the queue.
    fn advance(&mut self, mut n: usize) {
        self.counters.bytes_out += n as u64;
        self.drops_since_progress = 0;
        while n > 0 {
            let Some(head) = self.queue.front() else {
                break;
            };
            let rest = head.len() - self.head_written;
            if n < rest {
                self.head_written += n;
                break;
            }
            n -= rest;
            self.held_bytes -= head.len();
            self.head_written = 0;
            self.queue.pop_front();
            self.counters.frames_out += 1;
        }
    }

    /// Frames dropped since the last write that made progress (0 once a write moves bytes).
    pub fn drops_since_progress(&self) -> u32 {
        self.drops_since_progress
    }

    /// Whether output is queued (register or keep write interest).
    pub fn wants_write(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Frames queued (including one partly written) and their bytes not yet written.
    pub fn queued(&self) -> (usize, usize) {
        (self.queue.len(), self.held_bytes - self.head_written)
    }

    /// This connection's counts.
    pub fn counters(&self) -> &ConnCounters {
        &self.counters
    }

    /// Why reading ended, if it has.
    pub fn read_closed(&self) -> Option<CloseReason> {
        self.read_closed
    }

    /// Why writing ended (a write error, or given up as too slow), if it has.
    pub fn write_closed(&self) -> Option<CloseReason> {
        self.write_closed
    }
}

/// Chunks kept besides the current one, to be reused once the frames cut from them are gone.
const SPARE_CHUNKS: usize = 3;

/// Encodes packets into shared [`Bytes`] carved from a few arena chunks per worker.
///
/// Each frame is a slice of the current chunk. When the chunk is used up it is set aside and
/// a spare whose frames have all been dropped is reused in its place; only when every spare
/// still has live frames (queued on slow connections) is a new chunk allocated, and the oldest
/// spare is then let go (freed when its last frame is). So encoding makes no heap allocation
/// per frame in steady state, and at worst one new chunk per `chunk` bytes encoded. Memory
/// held by the framer itself: at most `1 + SPARE_CHUNKS` chunks. A frame larger than `chunk`
/// gets a chunk of its own size.
#[derive(Debug)]
pub struct Framer {
    arena: BytesMut,
    spares: VecDeque<BytesMut>,
    chunk: usize,
}

impl Framer {
    /// A framer whose arena chunks hold `chunk` bytes (e.g. 64 KiB). Allocates the first one.
    pub fn new(chunk: usize) -> Self {
        let chunk = chunk.max(64);
        Framer {
            arena: BytesMut::with_capacity(chunk),
            spares: VecDeque::with_capacity(SPARE_CHUNKS),
            chunk,
        }
    }

    /// Makes room for `need` bytes at the start of the (empty) arena.
    fn room(&mut self, need: usize) {
        // The arena is always empty here: every frame is split off whole.
        if self.arena.capacity() >= need {
            return;
        }
        // Asking for a whole chunk makes a reclaimed buffer start over at its beginning.
        let want = need.max(self.chunk);
        if self.arena.try_reclaim(want) {
            return;
        }
        for _ in 0..self.spares.len() {
            let Some(mut spare) = self.spares.pop_front() else {
                break;
            };
            if spare.try_reclaim(want) {
                let busy = std::mem::replace(&mut self.arena, spare);
                self.spares.push_back(busy);
                return;
            }
            self.spares.push_back(spare);
        }
        let busy = std::mem::replace(&mut self.arena, BytesMut::with_capacity(want));
        if self.spares.len() == SPARE_CHUNKS {
            self.spares.pop_front();
        }
        self.spares.push_back(busy);
    }

    /// `packet` with an OSC 1.0 length prefix. A packet over `i32::MAX` bytes (which no
    /// datagram or bounded frame can be) gives an empty frame, which [`Conn::enqueue`]
    /// ignores.
    pub fn len32(&mut self, packet: &[u8]) -> Bytes {
        let Some(header) = len32_header(packet.len()) else {
            return Bytes::new();
        };
        self.room(4 + packet.len());
        self.arena.put_slice(&header);
        self.arena.put_slice(packet);
        self.arena.split().freeze()
    }

    /// `packet` SLIP-encoded: END, the escaped bytes, END.
    pub fn slip(&mut self, packet: &[u8]) -> Bytes {
        self.room(encoded_len(Framing::Slip, packet));
        self.arena.put_u8(SLIP_END);
        let mut rest = packet;
        while let Some(i) = memchr::memchr2(SLIP_END, SLIP_ESC, rest) {
            self.arena.put_slice(&rest[..i]);
            let escaped = if rest[i] == SLIP_END {
                SLIP_ESC_END
            } else {
                SLIP_ESC_ESC
            };
            self.arena.put_slice(&[SLIP_ESC, escaped]);
            rest = &rest[i + 1..];
        }
        self.arena.put_slice(rest);
        self.arena.put_u8(SLIP_END);
        self.arena.split().freeze()
    }

    /// `packet` framed for `framing` ([`Framing::Auto`] encodes as len32).
    pub fn frame(&mut self, framing: Framing, packet: &[u8]) -> Bytes {
        match framing {
            Framing::Slip => self.slip(packet),
            Framing::Len32 | Framing::Auto => self.len32(packet),
        }
    }

    /// An unframed copy of `packet` (for datagram sends that outlive the receive buffer).
    pub fn raw(&mut self, packet: &[u8]) -> Bytes {
        self.room(packet.len());
        self.arena.put_slice(packet);
        self.arena.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::framing::{encode, DEFAULT_MAX_FRAME};

    /// One scripted step of a [`Mock`] stream's read side.
    #[derive(Debug)]
    enum Step {
        Data(Vec<u8>),
        Block,
        Eof,
        Fail(io::ErrorKind),
    }

    /// A scripted stream: reads follow `reads` (then block); writes accept `accept` more
    /// bytes (then block) and record what was written and how.
    #[derive(Debug, Default)]
    struct Mock {
        reads: VecDeque<Step>,
        written: Vec<u8>,
        accept: usize,
        write_calls: usize,
        max_slices: usize,
        write_error: Option<io::ErrorKind>,
    }

    impl Mock {
        fn with_data(data: &[u8], chunk: usize) -> Mock {
            let mut m = Mock::default();
            for c in data.chunks(chunk.max(1)) {
                m.reads.push_back(Step::Data(c.to_vec()));
            }
            m
        }
    }

    impl Read for Mock {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.reads.pop_front() {
                None | Some(Step::Block) => Err(io::ErrorKind::WouldBlock.into()),
                Some(Step::Eof) => {
                    self.reads.push_front(Step::Eof);
                    Ok(0)
                }
                Some(Step::Fail(kind)) => Err(kind.into()),
                Some(Step::Data(mut d)) => {
                    let n = d.len().min(buf.len());
                    buf[..n].copy_from_slice(&d[..n]);
                    if n < d.len() {
                        self.reads.push_front(Step::Data(d.split_off(n)));
                    }
                    Ok(n)
                }
            }
        }
    }

    impl Write for Mock {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if let Some(kind) = self.write_error {
                return Err(kind.into());
            }
            if self.accept == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.write_calls += 1;
            self.max_slices = self.max_slices.max(bufs.len());
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.accept - n);
                self.written.extend_from_slice(&b[..take]);
                n += take;
            }
            self.accept -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn cfg(framing: Framing) -> ConnConfig {
        ConnConfig {
            framing,
            max_frame: DEFAULT_MAX_FRAME,
            queue_frames: 1024,
            queue_bytes: 1 << 20,
            max_drops: 1000,
        }
    }

    /// Packets of assorted lengths, full of the bytes SLIP must escape.
    fn packets() -> Vec<Vec<u8>> {
        (0..40u32)
            .map(|i| {
                let len = 1 + (i as usize * 37) % 300;
                (0..len)
                    .map(|j| match (i as usize + j) % 7 {
                        0 => SLIP_END,
                        1 => SLIP_ESC,
                        _ => (i as usize * 31 + j) as u8,
                    })
                    .collect()
            })
            .collect()
    }

    fn stream_of(framing: Framing, packets: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in packets {
            encode(framing, p, &mut out).unwrap();
        }
        out
    }

    /// Reads everything the mock has; returns the frames, the errors and the final outcome.
    fn read_all(
        conn: &mut Conn<Mock>,
        scratch: usize,
        budget: usize,
    ) -> (Vec<Vec<u8>>, Vec<FrameError>, ReadOutcome) {
        let mut scratch = vec![0u8; scratch];
        let (mut frames, mut errors) = (Vec::new(), Vec::new());
        loop {
            let outcome = conn.on_readable(&mut scratch, budget, |f| match f {
                Ok(p) => frames.push(p.to_vec()),
                Err(e) => errors.push(e),
            });
            if outcome != ReadOutcome::More {
                return (frames, errors, outcome);
            }
        }
    }

    #[test]
    fn frames_arrive_whole_in_any_chunking() {
        let packets = packets();
        let cases = [
            (Framing::Len32, Framing::Len32),
            (Framing::Slip, Framing::Slip),
            (Framing::Auto, Framing::Len32),
            (Framing::Auto, Framing::Slip),
        ];
        for (configured, sent) in cases {
            let data = stream_of(sent, &packets);
            for chunk in [1, 2, 3, 7, 64, 1000, data.len()] {
                for scratch in [1, 5, 4096] {
                    let mut conn = Conn::new(Mock::with_data(&data, chunk), &cfg(configured));
                    let (frames, errors, outcome) = read_all(&mut conn, scratch, usize::MAX);
                    let what = format!("{configured} reading {sent}, chunk {chunk}/{scratch}");
                    assert_eq!(frames, packets, "{what}");
                    assert!(errors.is_empty(), "{what}");
                    assert_eq!(outcome, ReadOutcome::Open, "{what}");
                    assert_eq!(conn.framing(), sent, "{what}");
                    let c = conn.counters();
                    assert_eq!(c.frames_in, packets.len() as u64, "{what}");
                    assert_eq!(c.bytes_in, data.len() as u64, "{what}");
                }
            }
        }
    }

    #[test]
    fn auto_framing_writes_len32_until_the_peer_speaks() {
        let mut conn = Conn::new(Mock::default(), &cfg(Framing::Auto));
        assert_eq!(conn.framing(), Framing::Len32);
        let mut scratch = [0u8; 16];
        assert_eq!(
            conn.on_readable(&mut scratch, 64, |_| {}),
            ReadOutcome::Open
        );
        assert_eq!(conn.framing(), Framing::Len32, "no byte yet");
        conn.stream_mut().reads.push_back(Step::Block);
        conn.stream_mut()
            .reads
            .push_back(Step::Data(vec![SLIP_END]));
        assert_eq!(
            conn.on_readable(&mut scratch, 64, |_| {}),
            ReadOutcome::Open
        );
        assert_eq!(conn.framing(), Framing::Len32, "stopped at WouldBlock");
        assert_eq!(
            conn.on_readable(&mut scratch, 64, |_| {}),
            ReadOutcome::Open
        );
        assert_eq!(conn.framing(), Framing::Slip);
    }

    #[test]
    fn giant_length_prefix_ends_the_connection_with_its_reason() {
        let mut data = stream_of(Framing::Len32, &[b"/ok\0,\0\0\0".to_vec()]);
        data.extend_from_slice(&0x7fff_0000u32.to_be_bytes());
        data.extend_from_slice(&[0; 64]);
        let mut c = cfg(Framing::Len32);
        c.max_frame = 1024;
        let mut conn = Conn::new(Mock::with_data(&data, 5), &c);
        let (frames, _, outcome) = read_all(&mut conn, 4096, usize::MAX);
        assert_eq!(
            frames,
            [b"/ok\0,\0\0\0".to_vec()],
            "the frame before is delivered"
        );
        let ReadOutcome::Closed(reason) = outcome else {
            panic!("expected Closed, got {outcome:?}");
        };
        assert!(reason.is_fatal_framing());
        assert_eq!(
            reason,
            CloseReason::Framing(FrameError::Len32TooLong {
                declared: 0x7fff_0000,
                max: 1024,
                offset: 12,
            })
        );
        assert!(reason
            .to_string()
            .contains("above the maximum frame size of 1024"));
        // Terminal: nothing more is read.
        conn.stream_mut().reads.push_front(Step::Data(data.clone()));
        let steps = conn.stream().reads.len();
        let mut scratch = [0u8; 64];
        let again = conn.on_readable(&mut scratch, 1024, |_| panic!("no frame after fatal"));
        assert_eq!(again, ReadOutcome::Closed(reason));
        assert_eq!(conn.stream().reads.len(), steps, "did not read");
        assert_eq!(conn.read_closed(), Some(reason));
    }

    #[test]
    fn invalid_slip_escape_drops_one_frame_only() {
        let mut data = stream_of(Framing::Slip, &[b"first".to_vec()]);
        data.extend_from_slice(&[SLIP_END, b'x', SLIP_ESC, 0x01, b'y', SLIP_END]);
        data.extend(stream_of(Framing::Slip, &[b"third".to_vec()]));
        for chunk in [1, 3, data.len()] {
            let mut conn = Conn::new(Mock::with_data(&data, chunk), &cfg(Framing::Slip));
            let mut order = Vec::new();
            let mut scratch = [0u8; 256];
            let outcome = conn.on_readable(&mut scratch, usize::MAX, |f| {
                order.push(f.map(<[u8]>::to_vec));
            });
            assert_eq!(outcome, ReadOutcome::Open);
            assert_eq!(order.len(), 3);
            assert_eq!(order[0], Ok(b"first".to_vec()));
            assert!(matches!(
                order[1],
                Err(FrameError::SlipBadEscape { byte: 0x01, .. })
            ));
            assert_eq!(order[2], Ok(b"third".to_vec()));
            assert_eq!(conn.counters().bad_frames, 1);
            assert_eq!(conn.counters().frames_in, 2);
        }
    }

    #[test]
    fn eof_between_frames_and_mid_frame() {
        let data = stream_of(Framing::Len32, &[b"/a\0\0".to_vec()]);
        let mut mock = Mock::with_data(&data, 3);
        mock.reads.push_back(Step::Eof);
        let mut conn = Conn::new(mock, &cfg(Framing::Len32));
        let (frames, _, outcome) = read_all(&mut conn, 64, usize::MAX);
        assert_eq!(frames.len(), 1);
        assert_eq!(outcome, ReadOutcome::Closed(CloseReason::Eof));

        let mut mock = Mock::with_data(&data[..6], 4);
        mock.reads.push_back(Step::Eof);
        let mut conn = Conn::new(mock, &cfg(Framing::Len32));
        let (frames, _, outcome) = read_all(&mut conn, 64, usize::MAX);
        assert!(frames.is_empty());
        let ReadOutcome::Closed(reason @ CloseReason::EofMidFrame { buffered }) = outcome else {
            panic!("expected EofMidFrame, got {outcome:?}");
        };
        assert!(buffered > 0);
        assert!(!reason.is_fatal_framing());
        assert!(reason.to_string().contains("middle of a frame"));

        // A bare length prefix, then EOF: also mid-frame (no payload byte buffered yet).
        let mut mock = Mock::with_data(&data[..4], 4);
        mock.reads.push_back(Step::Eof);
        let mut conn = Conn::new(mock, &cfg(Framing::Len32));
        let (frames, _, outcome) = read_all(&mut conn, 64, usize::MAX);
        assert!(frames.is_empty());
        assert_eq!(
            outcome,
            ReadOutcome::Closed(CloseReason::EofMidFrame { buffered: 0 })
        );
    }

    #[test]
    fn read_errors_close_and_interrupts_retry() {
        let mut mock = Mock::default();
        mock.reads.push_back(Step::Fail(io::ErrorKind::Interrupted));
        mock.reads
            .push_back(Step::Data(stream_of(Framing::Len32, &[b"/x\0\0".to_vec()])));
        mock.reads
            .push_back(Step::Fail(io::ErrorKind::ConnectionReset));
        let mut conn = Conn::new(mock, &cfg(Framing::Len32));
        let (frames, _, outcome) = read_all(&mut conn, 64, usize::MAX);
        assert_eq!(frames, [b"/x\0\0".to_vec()]);
        let reason = CloseReason::Io(io::ErrorKind::ConnectionReset);
        assert_eq!(outcome, ReadOutcome::Closed(reason));
        assert!(reason.to_string().contains("socket error"));
    }

    #[test]
    fn read_budget_returns_more_and_resumes() {
        let packets = packets();
        let data = stream_of(Framing::Len32, &packets);
        let mut conn = Conn::new(Mock::with_data(&data, 1000), &cfg(Framing::Len32));
        let mut scratch = [0u8; 64];
        let mut frames = Vec::new();
        let mut turns = 0;
        loop {
            let before = conn.counters().bytes_in;
            let outcome = conn.on_readable(&mut scratch, 100, |f| frames.push(f.unwrap().to_vec()));
            let read = conn.counters().bytes_in - before;
            assert!(read <= 100, "read {read} over a budget of 100");
            turns += 1;
            match outcome {
                ReadOutcome::More => assert_eq!(read, 100),
                ReadOutcome::Open => break,
                ReadOutcome::Closed(r) => panic!("closed: {r}"),
            }
        }
        assert_eq!(turns, data.len() / 100 + 1);
        assert_eq!(frames, packets);
    }

    #[test]
    fn an_empty_scratch_buffer_still_reads_everything() {
        let packets = packets();
        let data = stream_of(Framing::Slip, &packets);
        let mut conn = Conn::new(Mock::with_data(&data, 500), &cfg(Framing::Slip));
        let (frames, _, outcome) = read_all(&mut conn, 0, usize::MAX);
        assert_eq!(outcome, ReadOutcome::Open, "not mistaken for EOF");
        assert_eq!(frames, packets);
    }

    /// Drains `conn` through writes of `sizes` bytes (cycled), checking the outcomes.
    fn drain(conn: &mut Conn<Mock>, sizes: &[usize]) {
        for &n in sizes.iter().cycle() {
            conn.stream_mut().accept = n;
            match conn.on_writable() {
                WriteOutcome::Drained => return,
                WriteOutcome::Pending => assert_eq!(conn.stream().accept, 0),
                WriteOutcome::Closed(r) => panic!("closed: {r}"),
            }
        }
    }

    #[test]
    fn partial_writes_keep_byte_exact_order() {
        let mut framer = Framer::new(256);
        let packets = packets();
        for sizes in [&[1usize][..], &[3, 1, 7], &[13, 64, 2], &[100_000]] {
            let mut conn = Conn::new(Mock::default(), &cfg(Framing::Slip));
            let mut expected = Vec::new();
            for (i, p) in packets.iter().enumerate() {
                let frame = framer.slip(p);
                expected.extend_from_slice(&frame);
                assert_eq!(conn.enqueue(frame), Enqueue::Queued);
                if i % 5 == 4 {
                    // Interleave writes with enqueues.
                    conn.stream_mut().accept = sizes[0];
                    assert_ne!(conn.on_writable(), WriteOutcome::Closed(CloseReason::Eof));
                }
            }
            assert!(conn.wants_write() || sizes[0] == 100_000);
            drain(&mut conn, sizes);
            assert_eq!(conn.stream().written, expected, "sizes {sizes:?}");
            assert!(!conn.wants_write());
            assert_eq!(conn.queued(), (0, 0));
            let c = conn.counters();
            assert_eq!(c.frames_out, packets.len() as u64);
            assert_eq!(c.bytes_out, expected.len() as u64);
            // And the SLIP stream reads back as the packets.
            let mut dec = Decoder::new(Framing::Slip, DEFAULT_MAX_FRAME);
            let mut back = Vec::new();
            let mut written = conn.stream().written.clone();
            dec.decode(&mut written, |f| back.push(f.unwrap().to_vec()))
                .unwrap();
            assert_eq!(back, packets);
        }
    }

    #[test]
    fn one_call_writes_past_max_iov_frames_until_the_socket_blocks() {
        let mut conn = Conn::new(Mock::default(), &cfg(Framing::Len32));
        let mut framer = Framer::new(4096);
        let mut expected = Vec::new();
        for i in 0..200u32 {
            let frame = framer.len32(&i.to_be_bytes());
            expected.extend_from_slice(&frame);
            conn.enqueue(frame);
        }
        assert_eq!(conn.queued(), (200, 200 * 8));
        conn.stream_mut().accept = usize::MAX;
        assert_eq!(conn.on_writable(), WriteOutcome::Drained);
        assert_eq!(conn.stream().written, expected);
        assert_eq!(conn.stream().max_slices, MAX_IOV);
        assert_eq!(conn.stream().write_calls, 200_usize.div_ceil(MAX_IOV));
    }

    fn small_queue(queue_frames: usize, queue_bytes: usize, max_drops: u32) -> ConnConfig {
        ConnConfig {
            queue_frames,
            queue_bytes,
            max_drops,
            ..cfg(Framing::Len32)
        }
    }

    fn frame(tag: u8, len: usize) -> Bytes {
        Bytes::from(vec![tag; len])
    }

    #[test]
    fn drop_oldest_skips_the_partly_written_frame() {
        let mut conn = Conn::new(Mock::default(), &small_queue(4, 1000, 100));
        for tag in b"ABCD" {
            assert_eq!(conn.enqueue(frame(*tag, 10)), Enqueue::Queued);
        }
        conn.stream_mut().accept = 3;
        assert_eq!(conn.on_writable(), WriteOutcome::Pending);
        // Full by count: B goes, not the partly written A.
        assert_eq!(conn.enqueue(frame(b'E', 10)), Enqueue::DroppedOldest(1));
        assert_eq!(conn.queued(), (4, 37));
        drain(&mut conn, &[4]);
        let mut expected = Vec::new();
        for tag in b"ACDE" {
            expected.extend_from_slice(&[*tag; 10]);
        }
        assert_eq!(conn.stream().written, expected);
        assert_eq!(conn.counters().dropped_oldest, 1);
    }

    #[test]
    fn drop_oldest_by_bytes_drops_as_many_as_needed() {
        let mut conn = Conn::new(Mock::default(), &small_queue(100, 100, 100));
        for tag in b"ABCDE" {
            assert_eq!(conn.enqueue(frame(*tag, 20)), Enqueue::Queued);
        }
        // Not started: A is the oldest and may go.
        assert_eq!(conn.enqueue(frame(b'F', 50)), Enqueue::DroppedOldest(3));
        assert_eq!(conn.queued(), (3, 90));
        drain(&mut conn, &[1000]);
        let mut expected = vec![b'D'; 20];
        expected.extend_from_slice(&[b'E'; 20]);
        expected.extend_from_slice(&[b'F'; 50]);
        assert_eq!(conn.stream().written, expected);
    }

    #[test]
    fn a_frame_that_cannot_fit_is_dropped_itself() {
        let mut conn = Conn::new(Mock::default(), &small_queue(10, 100, 100));
        assert_eq!(conn.enqueue(frame(b'A', 60)), Enqueue::Queued);
        assert_eq!(conn.enqueue(frame(b'X', 101)), Enqueue::Dropped);
        conn.stream_mut().accept = 1;
        assert_eq!(conn.on_writable(), WriteOutcome::Pending);
        // 60 (pinned, partly written) + 41 > 100: the new frame goes, A stays.
        assert_eq!(conn.enqueue(frame(b'Y', 41)), Enqueue::Dropped);
        assert_eq!(conn.enqueue(frame(b'B', 40)), Enqueue::Queued);
        assert_eq!(conn.counters().dropped_new, 2);
        assert_eq!(conn.counters().dropped_oldest, 0);
        drain(&mut conn, &[7]);
        let mut expected = vec![b'A'; 60];
        expected.extend_from_slice(&[b'B'; 40]);
        assert_eq!(conn.stream().written, expected);
        // An empty frame is ignored.
        assert_eq!(conn.enqueue(Bytes::new()), Enqueue::Queued);
        assert!(!conn.wants_write());
    }

    #[test]
    fn disconnect_after_max_drops_without_progress() {
        let mut conn = Conn::new(Mock::default(), &small_queue(2, 1000, 3));
        conn.enqueue(frame(b'A', 10));
        conn.enqueue(frame(b'B', 10));
        assert_eq!(conn.enqueue(frame(b'C', 10)), Enqueue::DroppedOldest(1));
        assert_eq!(conn.enqueue(frame(b'D', 10)), Enqueue::DroppedOldest(1));
        // Progress resets the count.
        conn.stream_mut().accept = 1;
        assert_eq!(conn.on_writable(), WriteOutcome::Pending);
        assert_eq!(conn.enqueue(frame(b'E', 10)), Enqueue::DroppedOldest(1));
        assert_eq!(conn.enqueue(frame(b'F', 10)), Enqueue::DroppedOldest(1));
        // A write that moves nothing does not.
        assert_eq!(conn.on_writable(), WriteOutcome::Pending);
        assert_eq!(conn.enqueue(frame(b'G', 10)), Enqueue::Disconnect);
        assert_eq!(conn.counters().dropped_oldest, 5);
        let reason = CloseReason::TooManyDrops { dropped: 3 };
        assert_eq!(conn.write_closed(), Some(reason));
        assert!(!conn.wants_write(), "queue released");
        assert_eq!(conn.queued(), (0, 0));
        conn.stream_mut().accept = 1000;
        assert_eq!(conn.on_writable(), WriteOutcome::Closed(reason));
        assert_eq!(
            conn.stream().written,
            b"C",
            "nothing written after giving up"
        );
        assert_eq!(conn.enqueue(frame(b'H', 10)), Enqueue::Disconnect);
        assert!(reason.to_string().contains("too slow"));
    }

    #[test]
    fn dropped_new_frames_count_towards_max_drops() {
        let mut conn = Conn::new(Mock::default(), &small_queue(10, 100, 2));
        assert_eq!(conn.enqueue(frame(b'X', 101)), Enqueue::Dropped);
        assert_eq!(conn.enqueue(frame(b'X', 101)), Enqueue::Disconnect);
    }

    #[test]
    fn write_errors_close_the_write_side() {
        let mut conn = Conn::new(Mock::default(), &cfg(Framing::Len32));
        conn.enqueue(frame(b'A', 10));
        conn.stream_mut().accept = 10;
        conn.stream_mut().write_error = Some(io::ErrorKind::BrokenPipe);
        let reason = CloseReason::Io(io::ErrorKind::BrokenPipe);
        assert_eq!(conn.on_writable(), WriteOutcome::Closed(reason));
        assert_eq!(conn.write_closed(), Some(reason));
        assert_eq!(conn.enqueue(frame(b'B', 10)), Enqueue::Disconnect);
        assert_eq!(conn.read_closed(), None, "reading is separate");
    }

    #[test]
    fn framer_frames_decode_back_and_survive_arena_reuse() {
        let packets = packets();
        // A small chunk, so the arena is reclaimed and replaced many times.
        let mut framer = Framer::new(128);
        let mut held = Vec::new();
        for round in 0..3 {
            for p in &packets {
                held.push((framer.len32(p), framer.slip(p), framer.raw(p)));
            }
            // Drop some, keep some: reused chunks must not overwrite held frames.
            if round == 1 {
                held.truncate(10);
            }
        }
        let expected: Vec<&Vec<u8>> = packets
            .iter()
            .take(10)
            .chain(packets.iter().cycle().take(packets.len()))
            .collect();
        assert_eq!(held.len(), expected.len());
        for (i, ((l, s, r), p)) in held.iter().zip(expected).enumerate() {
            assert_eq!(&r[..], &p[..], "raw {i}");
            for (framing, f) in [(Framing::Len32, l), (Framing::Slip, s)] {
                let mut want = Vec::new();
                encode(framing, p, &mut want).unwrap();
                assert_eq!(&f[..], &want[..], "{framing} {i}");
                assert_eq!(f, &framer.frame(framing, p));
            }
        }
        assert_eq!(&framer.frame(Framing::Auto, b"abcd")[..], b"\0\0\0\x04abcd");
        // A frame larger than a chunk gets room of its own.
        let big = vec![SLIP_END; 1000];
        let f = framer.slip(&big);
        assert_eq!(f.len(), 2002);
    }
}
