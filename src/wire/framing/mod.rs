//! OSC stream framing for TCP: OSC 1.0 length prefixes, OSC 1.1 SLIP, and auto-detection.
//!
//! What this module does:
//! - [`Decoder`]: an incremental decoder fed bytes in any chunking. A frame that lies entirely
//!   inside the chunk just fed is handed out as a slice of that chunk (SLIP escapes are removed
//!   in place, which is why the input is `&mut [u8]`). Only a frame that straddles chunks is
//!   copied into an internal buffer, and that buffer never exceeds the maximum frame size.
//! - Encoders for both framings into caller-owned `Vec<u8>`s, plus [`len32_header`] for
//!   vectored writes that leave the payload where it is, and [`encoded_len`].
//!
//! What it does not do: I/O, OSC parsing (a frame is opaque bytes; see the packet views in
//! [`crate::wire`]), or any policy on what to do with a connection after an error.
//!
//! # Framings
//! - [`Framing::Len32`] (OSC 1.0): a big-endian `int32` byte count, then the packet. A zero
//!   count is skipped (an OSC packet can never be empty). A count above the maximum frame size,
//!   or negative when read as `int32`, is fatal: the stream cannot be resynchronised.
//! - [`Framing::Slip`] (OSC 1.1, RFC 1055): `END = 0xC0` delimits frames, `ESC = 0xDB` escapes
//!   (`ESC ESC_END` = `0xC0`, `ESC ESC_ESC` = `0xDB`). The encoder writes END at both ends of a
//!   packet; the decoder skips empty frames (consecutive ENDs). Bytes before the first END form
//!   a frame like any other (some senders only write the trailing END).
//! - [`Framing::Auto`]: the first byte of the stream decides; `0xC0` means SLIP, anything else
//!   len32 (a len32 stream starts with the high byte of a length, which is `0x00` for any
//!   packet under 16 MiB). The decision holds for the life of the decoder. Encoding with
//!   `Auto` produces len32.
//!
//! # Errors
//! See [`FrameError`] and [`FrameError::is_fatal`]. Non-fatal errors drop one frame and are
//! reported through the callback in stream order, between the good frames around them;
//! a fatal error is returned by [`Decoder::decode`] after every frame before it was delivered,
//! and again by every later call.

mod fuzz;
mod len32;
mod slip;

use core::fmt;
use core::str::FromStr;

pub use fuzz::fuzz_check;

/// The default maximum frame size: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// SLIP frame delimiter.
pub const SLIP_END: u8 = 0xC0;
/// SLIP escape byte.
pub const SLIP_ESC: u8 = 0xDB;
/// Follows [`SLIP_ESC`] to stand for a literal [`SLIP_END`].
pub const SLIP_ESC_END: u8 = 0xDC;
/// Follows [`SLIP_ESC`] to stand for a literal [`SLIP_ESC`].
pub const SLIP_ESC_ESC: u8 = 0xDD;

/// The largest packet a len32 header can describe (`int32::MAX`).
pub const LEN32_MAX_PACKET: usize = i32::MAX as usize;

/// How OSC packets are delimited on a byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// OSC 1.0: big-endian int32 length prefix.
    Len32,
    /// OSC 1.1: SLIP (RFC 1055) with END at both ends of each packet.
    Slip,
    /// Decide from the first received byte (`0xC0` = SLIP, else len32); encodes as len32.
    Auto,
}

impl Framing {
    /// The configuration / command-line name: `"len32"`, `"slip"` or `"auto"`.
    pub const fn name(self) -> &'static str {
        match self {
            Framing::Len32 => "len32",
            Framing::Slip => "slip",
            Framing::Auto => "auto",
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`Framing`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownFraming;

impl fmt::Display for UnknownFraming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown framing: expected one of \"len32\", \"slip\", \"auto\"")
    }
}

impl std::error::Error for UnknownFraming {}

impl FromStr for Framing {
    type Err = UnknownFraming;

    /// Parses `"len32"`, `"slip"` or `"auto"`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Framing::Len32, Framing::Slip, Framing::Auto]
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or(UnknownFraming)
    }
}

/// A framing error. Offsets count bytes from the start of the stream (all bytes ever fed to
/// the decoder).
///
/// Fatal errors ([`FrameError::is_fatal`]) end the stream: the decoder keeps returning the same
/// error and consumes nothing more. Non-fatal errors drop one frame; decoding resumes at the
/// next frame boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fatal. A len32 prefix declared a frame longer than the maximum frame size.
    Len32TooLong {
        /// The declared length.
        declared: u32,
        /// The decoder's maximum frame size.
        max: usize,
        /// Offset of the first byte of the length prefix.
        offset: u64,
    },
    /// Fatal. A len32 prefix is negative when read as a big-endian `int32`.
    Len32Negative {
        /// The declared length, as read.
        declared: i32,
        /// Offset of the first byte of the length prefix.
        offset: u64,
    },
    /// Not fatal. A SLIP frame grew past the maximum frame size; it is discarded up to the
    /// next END and reported once.
    SlipTooLong {
        /// The decoder's maximum frame size.
        max: usize,
        /// Offset of the first byte of the frame.
        offset: u64,
    },
    /// Not fatal. A SLIP ESC was followed by something other than ESC_END / ESC_ESC; the frame
    /// is discarded up to the next END (which may be the offending byte itself).
    SlipBadEscape {
        /// The byte that followed ESC.
        byte: u8,
        /// Offset of that byte.
        offset: u64,
    },
}

impl FrameError {
    /// Whether the stream is unusable after this error. True for the len32 errors (the
    /// boundary of the next frame is unknown), false for the SLIP errors (END resynchronises).
    pub const fn is_fatal(&self) -> bool {
        matches!(
            self,
            FrameError::Len32TooLong { .. } | FrameError::Len32Negative { .. }
        )
    }

    /// The stream offset the error refers to.
    pub const fn offset(&self) -> u64 {
        match *self {
            FrameError::Len32TooLong { offset, .. }
            | FrameError::Len32Negative { offset, .. }
            | FrameError::SlipTooLong { offset, .. }
            | FrameError::SlipBadEscape { offset, .. } => offset,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::Len32TooLong {
                declared,
                max,
                offset,
            } => write!(
                f,
                "len32 prefix at byte {offset} declares {declared} bytes, above the maximum frame \
                 size of {max}; closing the stream (raise the maximum frame size, or check that \
                 the peer really uses OSC 1.0 length-prefix framing)"
            ),
            FrameError::Len32Negative { declared, offset } => write!(
                f,
                "len32 prefix at byte {offset} is negative ({declared}); closing the stream \
                 (is the peer using SLIP? use framing \"slip\" or \"auto\")"
            ),
            FrameError::SlipTooLong { max, offset } => write!(
                f,
                "SLIP frame starting at byte {offset} is longer than the maximum frame size of \
                 {max}; dropped it up to the next END"
            ),
            FrameError::SlipBadEscape { byte, offset } => write!(
                f,
                "SLIP escape followed by 0x{byte:02X} at byte {offset} (expected 0xDC or 0xDD); \
                 dropped the frame up to the next END"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// A packet too long to be described by a len32 header (more than `i32::MAX` bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketTooLong {
    /// The packet's length.
    pub len: usize,
}

impl fmt::Display for PacketTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "packet of {} bytes is too long for a len32 header (max {LEN32_MAX_PACKET})",
            self.len
        )
    }
}

impl std::error::Error for PacketTooLong {}

/// The 4-byte OSC 1.0 header for a packet of `len` bytes, or `None` if `len > i32::MAX`.
///
/// For vectored writes: send the header and the untouched payload as two slices. A zero length
/// gives a valid header for a frame that decoders skip.
pub fn len32_header(len: usize) -> Option<[u8; 4]> {
    let len = i32::try_from(len).ok()?;
    Some(len.to_be_bytes())
}

/// Appends `packet` with an OSC 1.0 length prefix to `out`. Writes nothing if the packet is
/// too long for the prefix.
pub fn encode_len32(packet: &[u8], out: &mut Vec<u8>) -> Result<(), PacketTooLong> {
    let header = len32_header(packet.len()).ok_or(PacketTooLong { len: packet.len() })?;
    out.reserve(4 + packet.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(packet);
    Ok(())
}

/// Appends `packet` SLIP-encoded to `out`: END, the escaped bytes, END.
pub fn encode_slip(packet: &[u8], out: &mut Vec<u8>) {
    out.reserve(slip_encoded_len(packet));
    out.push(SLIP_END);
    let mut rest = packet;
    while let Some(i) = rest.iter().position(|&b| b == SLIP_END || b == SLIP_ESC) {
        out.extend_from_slice(&rest[..i]);
        let escaped = if rest[i] == SLIP_END {
            SLIP_ESC_END
        } else {
            SLIP_ESC_ESC
        };
        out.extend_from_slice(&[SLIP_ESC, escaped]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(SLIP_END);
}

/// Appends `packet` framed with `framing` to `out` ([`Framing::Auto`] encodes as len32).
/// Only len32 can fail, for a packet over `i32::MAX` bytes; then nothing is written.
pub fn encode(framing: Framing, packet: &[u8], out: &mut Vec<u8>) -> Result<(), PacketTooLong> {
    match framing {
        Framing::Len32 | Framing::Auto => encode_len32(packet, out),
        Framing::Slip => {
            encode_slip(packet, out);
            Ok(())
        }
    }
}

/// The exact number of bytes [`encode`] appends for `packet` (for len32, assuming the packet
/// fits the prefix; see [`LEN32_MAX_PACKET`]). SLIP needs a pass over the packet to count the
/// bytes that need escaping.
pub fn encoded_len(framing: Framing, packet: &[u8]) -> usize {
    match framing {
        Framing::Len32 | Framing::Auto => packet.len().saturating_add(4),
        Framing::Slip => slip_encoded_len(packet),
    }
}

fn slip_encoded_len(packet: &[u8]) -> usize {
    let escapes = packet
        .iter()
        .filter(|&&b| b == SLIP_END || b == SLIP_ESC)
        .count();
    packet.len().saturating_add(escapes).saturating_add(2)
}

/// Grows `buf` so that `additional` more bytes fit, doubling up to `limit` but never
/// reserving beyond it (callers check `buf.len() + additional <= limit` first), so the
/// capacity of a decoder's buffer is bounded by its maximum frame size.
fn reserve_bounded(buf: &mut Vec<u8>, additional: usize, limit: usize) {
    let needed = buf.len() + additional;
    if needed > buf.capacity() {
        let target = buf
            .capacity()
            .saturating_mul(2)
            .clamp(needed, limit.max(needed));
        buf.reserve_exact(target - buf.len());
    }
}

/// A buffer of this capacity or less is kept between straddling frames; a larger one (left by
/// an unusually large frame) is freed once its frame is delivered, so idle connections do not
/// each pin up to the maximum frame size.
const RETAIN_CAPACITY: usize = 64 * 1024;

fn release(buf: &mut Vec<u8>) {
    buf.clear();
    if buf.capacity() > RETAIN_CAPACITY {
        *buf = Vec::new();
    }
}

#[derive(Debug)]
enum Inner {
    /// Auto framing before the first byte.
    Undecided,
    Len32(len32::Len32Decoder),
    Slip(slip::SlipDecoder),
}

/// An incremental OSC stream decoder for one connection.
///
/// Feed every received chunk, in order, to [`Decoder::decode`]:
///
/// ```
/// use oscgate::wire::framing::{Decoder, Framing, DEFAULT_MAX_FRAME};
///
/// let mut dec = Decoder::new(Framing::Auto, DEFAULT_MAX_FRAME);
/// let mut chunk = *b"\xC0/a\0\0,\0\0\0\xC0\xC0/b\0\0";
/// let mut frames = Vec::new();
/// dec.decode(&mut chunk, |frame| match frame {
///     Ok(packet) => frames.push(packet.to_vec()),
///     Err(e) => eprintln!("dropped a frame: {e}"),
/// })
/// .expect("SLIP errors are never fatal");
/// assert_eq!(frames, [b"/a\0\0,\0\0\0".to_vec()]);
/// assert_eq!(dec.framing(), Framing::Slip);
/// assert_eq!(dec.buffered(), 4); // "/b\0\0" waits for its END
/// ```
#[derive(Debug)]
pub struct Decoder {
    inner: Inner,
    max_frame: usize,
}

impl Decoder {
    /// A decoder for `framing` that never accepts or buffers a frame longer than `max_frame`
    /// bytes (typically [`DEFAULT_MAX_FRAME`]).
    pub fn new(framing: Framing, max_frame: usize) -> Self {
        let inner = match framing {
            Framing::Len32 => Inner::Len32(len32::Len32Decoder::new(max_frame)),
            Framing::Slip => Inner::Slip(slip::SlipDecoder::new(max_frame)),
            Framing::Auto => Inner::Undecided,
        };
        Decoder { inner, max_frame }
    }

    /// Decodes one chunk of the stream.
    ///
    /// `on_frame` is called, in stream order, with `Ok(frame)` for each complete non-empty
    /// frame and `Err(e)` for each non-fatal error (the frame concerned is dropped). A frame is
    /// a slice of `input` when it lies entirely inside it (SLIP frames are unescaped in place,
    /// so `input` is left modified), otherwise of the decoder's buffer. Bytes of an incomplete
    /// frame at the end of `input` are kept until the next call.
    ///
    /// Returns `Err(e)` with a fatal error (`e.is_fatal()`) once the stream can no longer be
    /// decoded; every frame before the error has been delivered, nothing after it is, and every
    /// later call returns the same error without reading its input.
    pub fn decode(
        &mut self,
        input: &mut [u8],
        mut on_frame: impl FnMut(Result<&[u8], FrameError>),
    ) -> Result<(), FrameError> {
        if let Inner::Undecided = self.inner {
            match input.first() {
                None => return Ok(()),
                Some(&SLIP_END) => self.inner = Inner::Slip(slip::SlipDecoder::new(self.max_frame)),
                Some(_) => self.inner = Inner::Len32(len32::Len32Decoder::new(self.max_frame)),
            }
        }
        match &mut self.inner {
            Inner::Undecided => Ok(()),
            Inner::Len32(d) => d.decode(input, &mut on_frame),
            Inner::Slip(d) => {
                d.decode(input, &mut on_frame);
                Ok(())
            }
        }
    }

    /// The framing in use: the one given to [`Decoder::new`], or for [`Framing::Auto`] the one
    /// detected (still `Auto` until the first byte arrives).
    pub fn framing(&self) -> Framing {
        match self.inner {
            Inner::Undecided => Framing::Auto,
            Inner::Len32(_) => Framing::Len32,
            Inner::Slip(_) => Framing::Slip,
        }
    }

    /// Bytes of an incomplete frame held between calls (for len32 including a partial
    /// header). Never more than `max(max_frame, 3)`.
    pub fn buffered(&self) -> usize {
        match &self.inner {
            Inner::Undecided => 0,
            Inner::Len32(d) => d.buffered(),
            Inner::Slip(d) => d.buffered(),
        }
    }

    /// Whether the stream stopped inside a frame: some of a frame (even just its whole
    /// length prefix, when [`buffered`](Self::buffered) is 0) has arrived and not all of it.
    pub fn mid_frame(&self) -> bool {
        match &self.inner {
            Inner::Undecided => false,
            Inner::Len32(d) => d.mid_frame(),
            Inner::Slip(d) => d.buffered() > 0,
        }
    }

    /// The maximum frame size given to [`Decoder::new`].
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The total number of bytes fed so far (up to a fatal error, which stops the count).
    pub fn position(&self) -> u64 {
        match &self.inner {
            Inner::Undecided => 0,
            Inner::Len32(d) => d.position(),
            Inner::Slip(d) => d.position(),
        }
    }

    /// The fatal error this decoder stopped at, if any.
    pub fn failure(&self) -> Option<FrameError> {
        match &self.inner {
            Inner::Len32(d) => d.failure(),
            Inner::Undecided | Inner::Slip(_) => None,
        }
    }

    /// Capacity of the internal buffer, for the bounded-memory tests and fuzz invariants.
    fn buffer_capacity(&self) -> usize {
        match &self.inner {
            Inner::Undecided => 0,
            Inner::Len32(d) => d.buffer_capacity(),
            Inner::Slip(d) => d.buffer_capacity(),
        }
    }
}

#[cfg(test)]
mod tests;
