//! Zero-copy, checked views of OSC 1.0 packets.
//!
//! [`Packet::new_checked`] validates a whole packet once: 4-byte alignment, NUL padding,
//! string and blob lengths, type tags against the argument data, bundle element sizes and
//! nesting depth, and that nothing trails the last element. The views it returns borrow the
//! input and decode fields on demand; after the check no accessor can panic (every read goes
//! through a bounds-checked helper that falls back to a neutral value, which a checked packet
//! never needs).
//!
//! Supported type tags: `i f s b h t d S c r m T F N I [ ]`. A message whose address is the
//! whole packet (no type tag string, as some OSC 1.0 senders do) has no arguments. Strings are
//! raw bytes: OSC does not promise UTF-8, so [`Arg::Str`] carries `&[u8]`.
//!
//! This module does not do I/O, allocate, or interpret addresses (see [`super::address`] and
//! [`super::pattern`]).

use core::fmt;

/// Bundles nested deeper than this are rejected (the top-level bundle is depth 1).
pub const MAX_BUNDLE_DEPTH: usize = 8;

/// The eight bytes that start every bundle: `#bundle\0`.
pub const BUNDLE_TAG: &[u8; 8] = b"#bundle\0";

/// What was wrong with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Zero bytes.
    Empty,
    /// The packet (or bundle element) length is not a multiple of 4.
    NotAligned,
    /// Data ended before a field did.
    Truncated,
    /// A message address does not start with `/`.
    BadAddress,
    /// A string has no terminating NUL before the end of the packet.
    UnterminatedString,
    /// Padding after a string or blob is not all NUL bytes.
    BadPadding,
    /// Bytes follow the address but do not start with a `,` type tag string.
    MissingTypeTags,
    /// A type tag this implementation does not know (the byte is given).
    UnknownTypeTag(u8),
    /// `]` without `[`, or `[` never closed.
    UnbalancedArray,
    /// A blob or bundle element size is negative.
    NegativeLength,
    /// A bundle element size of zero, or not a multiple of 4.
    BadElementSize,
    /// A bundle element is neither a message nor a bundle.
    BadElement,
    /// Bundles nested deeper than [`MAX_BUNDLE_DEPTH`].
    TooDeep,
    /// Bytes remain after the last argument.
    TrailingBytes,
}

/// A packet parse error: what, and at which byte offset of the outermost packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParseError {
    pub kind: ErrorKind,
    pub offset: usize,
}

impl ParseError {
    const fn new(kind: ErrorKind, offset: usize) -> Self {
        Self { kind, offset }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty packet"),
            Self::NotAligned => f.write_str("length is not a multiple of 4"),
            Self::Truncated => f.write_str("truncated"),
            Self::BadAddress => f.write_str("address does not start with '/'"),
            Self::UnterminatedString => f.write_str("string is not NUL-terminated"),
            Self::BadPadding => f.write_str("padding bytes are not NUL"),
            Self::MissingTypeTags => f.write_str("type tag string does not start with ','"),
            Self::UnknownTypeTag(t) if t.is_ascii_graphic() => {
                write!(f, "unknown type tag '{}'", *t as char)
            }
            Self::UnknownTypeTag(t) => write!(f, "unknown type tag 0x{t:02x}"),
            Self::UnbalancedArray => f.write_str("unbalanced array brackets in type tags"),
            Self::NegativeLength => f.write_str("negative length"),
            Self::BadElementSize => {
                f.write_str("bundle element size is zero or not a multiple of 4")
            }
            Self::BadElement => f.write_str("bundle element is neither a message nor a bundle"),
            Self::TooDeep => write!(f, "bundles nested deeper than {MAX_BUNDLE_DEPTH}"),
            Self::TrailingBytes => f.write_str("trailing bytes after the last argument"),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind, self.offset)
    }
}

impl std::error::Error for ParseError {}

/// An OSC (NTP-format) time tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeTag {
    pub seconds: u32,
    pub fraction: u32,
}

impl TimeTag {
    /// The special value meaning "immediately".
    pub const IMMEDIATE: TimeTag = TimeTag {
        seconds: 0,
        fraction: 1,
    };

    pub const fn from_u64(v: u64) -> Self {
        Self {
            seconds: (v >> 32) as u32,
            fraction: v as u32,
        }
    }

    pub const fn to_u64(self) -> u64 {
        ((self.seconds as u64) << 32) | self.fraction as u64
    }
}

/// One argument of a message, borrowed from the packet.
///
/// Arrays are flattened: `[` and `]` appear as [`Arg::ArrayOpen`] and [`Arg::ArrayClose`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg<'a> {
    /// `i`
    Int(i32),
    /// `f`
    Float(f32),
    /// `s`: the bytes before the terminating NUL.
    Str(&'a [u8]),
    /// `b`
    Blob(&'a [u8]),
    /// `h`
    Long(i64),
    /// `t`
    Time(TimeTag),
    /// `d`
    Double(f64),
    /// `S`
    Symbol(&'a [u8]),
    /// `c`: a 32-bit character code (not necessarily a valid `char`).
    Char(u32),
    /// `r`: red, green, blue, alpha.
    Color([u8; 4]),
    /// `m`: port, status, data1, data2.
    Midi([u8; 4]),
    /// `T`
    True,
    /// `F`
    False,
    /// `N`
    Nil,
    /// `I`
    Inf,
    /// `[`
    ArrayOpen,
    /// `]`
    ArrayClose,
}

impl<'a> Arg<'a> {
    /// A string argument from a `&str`.
    pub fn str(s: &'a str) -> Self {
        Arg::Str(s.as_bytes())
    }

    /// The type tag byte of this argument.
    pub fn tag(&self) -> u8 {
        match self {
            Arg::Int(_) => b'i',
            Arg::Float(_) => b'f',
            Arg::Str(_) => b's',
            Arg::Blob(_) => b'b',
            Arg::Long(_) => b'h',
            Arg::Time(_) => b't',
            Arg::Double(_) => b'd',
            Arg::Symbol(_) => b'S',
            Arg::Char(_) => b'c',
            Arg::Color(_) => b'r',
            Arg::Midi(_) => b'm',
            Arg::True => b'T',
            Arg::False => b'F',
            Arg::Nil => b'N',
            Arg::Inf => b'I',
            Arg::ArrayOpen => b'[',
            Arg::ArrayClose => b']',
        }
    }

    /// The string of an `s` or `S` argument as UTF-8, if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Arg::Str(s) | Arg::Symbol(s) => core::str::from_utf8(s).ok(),
            _ => None,
        }
    }
}

/// A checked OSC packet: a message or a bundle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Packet<'a> {
    Message(Message<'a>),
    Bundle(Bundle<'a>),
}

/// A checked OSC message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    buf: &'a [u8],
    /// End of the address (index of its NUL).
    addr_end: usize,
    /// The type tags, without the leading comma.
    tags: &'a [u8],
    /// Offset of the first argument byte.
    args_start: usize,
}

/// A checked OSC bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bundle<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Checks the whole packet and returns a view of it.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, ParseError> {
        check_packet(buf, 0, 1)?;
        Ok(Self::from_checked(buf))
    }

    /// Builds a view of bytes that [`check_packet`] accepted.
    fn from_checked(buf: &'a [u8]) -> Self {
        if buf.starts_with(BUNDLE_TAG) {
            Packet::Bundle(Bundle { buf })
        } else {
            Packet::Message(Message::from_checked(buf))
        }
    }

    /// The bytes of the whole packet.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Packet::Message(m) => m.buf,
            Packet::Bundle(b) => b.buf,
        }
    }
}

impl<'a> Message<'a> {
    /// Checks `buf` as a message (not a bundle) and returns a view of it.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, ParseError> {
        match Packet::new_checked(buf)? {
            Packet::Message(m) => Ok(m),
            Packet::Bundle(_) => Err(ParseError::new(ErrorKind::BadAddress, 0)),
        }
    }

    fn from_checked(buf: &'a [u8]) -> Self {
        let addr_end = find_nul(buf).unwrap_or(buf.len());
        let tags_start = padded(addr_end + 1);
        let (tags, args_start) = match buf.get(tags_start..) {
            Some(rest) if rest.first() == Some(&b',') => {
                let end = find_nul(rest).unwrap_or(rest.len());
                let tags = rest.get(1..end).unwrap_or(&[]);
                (tags, tags_start + padded(end + 1))
            }
            _ => (&[][..], buf.len()),
        };
        Self {
            buf,
            addr_end,
            tags,
            args_start,
        }
    }

    /// The address (or address pattern), without its NUL padding.
    pub fn address(&self) -> &'a [u8] {
        self.buf.get(..self.addr_end).unwrap_or(&[])
    }

    /// The address as UTF-8, if it is valid UTF-8.
    pub fn address_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.address()).ok()
    }

    /// The type tags without the leading comma (empty if the message has none).
    pub fn type_tags(&self) -> &'a [u8] {
        self.tags
    }

    /// The arguments, in order (arrays flattened).
    pub fn args(&self) -> Args<'a> {
        Args {
            tags: self.tags,
            data: self.buf.get(self.args_start..).unwrap_or(&[]),
        }
    }

    /// The bytes of the whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

impl<'a> Bundle<'a> {
    /// The bundle's time tag.
    pub fn timetag(&self) -> TimeTag {
        TimeTag {
            seconds: be_u32(self.buf, 8),
            fraction: be_u32(self.buf, 12),
        }
    }

    /// The bundle's elements, in order.
    pub fn elements(&self) -> Elements<'a> {
        Elements {
            rest: self.buf.get(16..).unwrap_or(&[]),
        }
    }

    /// The bytes of the whole bundle.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

/// Iterator over the arguments of a checked message.
#[derive(Debug, Clone)]
pub struct Args<'a> {
    tags: &'a [u8],
    data: &'a [u8],
}

impl<'a> Iterator for Args<'a> {
    type Item = Arg<'a>;

    fn next(&mut self) -> Option<Arg<'a>> {
        let (&tag, tags) = self.tags.split_first()?;
        self.tags = tags;
        // The packet was checked, so `data_len` and the reads below always succeed; the
        // fallbacks only keep this function total.
        let len = match data_len(tag, self.data, 0) {
            Ok(len) => len,
            Err(_) => {
                self.tags = &[];
                return None;
            }
        };
        let data = self.data;
        self.data = data.get(len..).unwrap_or(&[]);
        Some(match tag {
            b'i' => Arg::Int(be_u32(data, 0) as i32),
            b'f' => Arg::Float(f32::from_bits(be_u32(data, 0))),
            b's' => Arg::Str(cstr(data)),
            b'S' => Arg::Symbol(cstr(data)),
            b'b' => {
                let n = be_u32(data, 0) as usize;
                Arg::Blob(data.get(4..4 + n).unwrap_or(&[]))
            }
            b'h' => Arg::Long(be_u64(data, 0) as i64),
            b't' => Arg::Time(TimeTag::from_u64(be_u64(data, 0))),
            b'd' => Arg::Double(f64::from_bits(be_u64(data, 0))),
            b'c' => Arg::Char(be_u32(data, 0)),
            b'r' => Arg::Color(be_u32(data, 0).to_be_bytes()),
            b'm' => Arg::Midi(be_u32(data, 0).to_be_bytes()),
            b'T' => Arg::True,
            b'F' => Arg::False,
            b'N' => Arg::Nil,
            b'I' => Arg::Inf,
            b'[' => Arg::ArrayOpen,
            _ => Arg::ArrayClose,
        })
    }
}

/// Iterator over the elements of a checked bundle.
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Elements<'a> {
    type Item = Packet<'a>;

    fn next(&mut self) -> Option<Packet<'a>> {
        if self.rest.len() < 4 {
            return None;
        }
        let size = be_u32(self.rest, 0) as usize;
        let elem = self.rest.get(4..4 + size)?;
        self.rest = self.rest.get(4 + size..).unwrap_or(&[]);
        Some(Packet::from_checked(elem))
    }
}

/// Checks a packet (message or bundle) at nesting `depth`; `base` is its offset in the
/// outermost packet, used only to report errors.
fn check_packet(buf: &[u8], base: usize, depth: usize) -> Result<(), ParseError> {
    if buf.is_empty() {
        return Err(ParseError::new(ErrorKind::Empty, base));
    }
    if buf.len() % 4 != 0 {
        return Err(ParseError::new(ErrorKind::NotAligned, base + buf.len()));
    }
    match buf[0] {
        b'/' => check_message(buf, base),
        b'#' if buf.starts_with(BUNDLE_TAG) => check_bundle(buf, base, depth),
        _ => Err(ParseError::new(ErrorKind::BadAddress, base)),
    }
}

fn check_bundle(buf: &[u8], base: usize, depth: usize) -> Result<(), ParseError> {
    if depth > MAX_BUNDLE_DEPTH {
        return Err(ParseError::new(ErrorKind::TooDeep, base));
    }
    if buf.len() < 16 {
        return Err(ParseError::new(ErrorKind::Truncated, base + buf.len()));
    }
    let mut pos = 16;
    while pos < buf.len() {
        if buf.len() - pos < 4 {
            return Err(ParseError::new(ErrorKind::Truncated, base + buf.len()));
        }
        let size = be_u32(buf, pos) as i32;
        if size < 0 {
            return Err(ParseError::new(ErrorKind::NegativeLength, base + pos));
        }
        let size = size as usize;
        if size == 0 || size % 4 != 0 {
            return Err(ParseError::new(ErrorKind::BadElementSize, base + pos));
        }
        let start = pos + 4;
        let elem = buf
            .get(start..start + size)
            .ok_or(ParseError::new(ErrorKind::Truncated, base + buf.len()))?;
        match elem[0] {
            b'/' | b'#' => check_packet(elem, base + start, depth + 1)?,
            _ => return Err(ParseError::new(ErrorKind::BadElement, base + start)),
        }
        pos = start + size;
    }
    Ok(())
}

fn check_message(buf: &[u8], base: usize) -> Result<(), ParseError> {
    let tags_start = check_string(buf, 0, base)?;
    if tags_start == buf.len() {
        // OSC 1.0 permits (old) messages without a type tag string.
        return Ok(());
    }
    if buf[tags_start] != b',' {
        return Err(ParseError::new(
            ErrorKind::MissingTypeTags,
            base + tags_start,
        ));
    }
    let mut pos = check_string(buf, tags_start, base)?;
    let tags_end = tags_start + find_nul(&buf[tags_start..]).unwrap_or(0);
    let mut open_arrays = 0usize;
    for (i, &tag) in buf[tags_start + 1..tags_end].iter().enumerate() {
        let tag_offset = base + tags_start + 1 + i;
        match tag {
            b'[' => open_arrays += 1,
            b']' => {
                open_arrays = open_arrays
                    .checked_sub(1)
                    .ok_or(ParseError::new(ErrorKind::UnbalancedArray, tag_offset))?;
            }
            _ => {}
        }
        let len = data_len(tag, &buf[pos..], base + pos).map_err(|mut e| {
            if let ErrorKind::UnknownTypeTag(_) = e.kind {
                e.offset = tag_offset;
            }
            e
        })?;
        match tag {
            b's' | b'S' => {
                check_string(buf, pos, base)?;
            }
            b'b' => check_padding(buf, pos + 4 + be_u32(buf, pos) as usize, pos + len, base)?,
            _ => {}
        }
        pos += len;
    }
    if open_arrays != 0 {
        return Err(ParseError::new(ErrorKind::UnbalancedArray, base + tags_end));
    }
    if pos != buf.len() {
        return Err(ParseError::new(ErrorKind::TrailingBytes, base + pos));
    }
    Ok(())
}

/// Checks the NUL-terminated, NUL-padded string at `start`; returns the offset after it.
fn check_string(buf: &[u8], start: usize, base: usize) -> Result<usize, ParseError> {
    let rest = buf.get(start..).unwrap_or(&[]);
    let nul = find_nul(rest).ok_or(ParseError::new(
        ErrorKind::UnterminatedString,
        base + buf.len(),
    ))?;
    let end = start + padded(nul + 1);
    if end > buf.len() {
        return Err(ParseError::new(ErrorKind::Truncated, base + buf.len()));
    }
    check_padding(buf, start + nul + 1, end, base)?;
    Ok(end)
}

fn check_padding(buf: &[u8], from: usize, to: usize, base: usize) -> Result<(), ParseError> {
    match buf
        .get(from..to)
        .and_then(|pad| pad.iter().position(|&b| b != 0))
    {
        Some(i) => Err(ParseError::new(ErrorKind::BadPadding, base + from + i)),
        None => Ok(()),
    }
}

/// Number of data bytes the argument with `tag` takes at the start of `data` (with padding).
/// `offset` is where `data` starts in the outermost packet, for errors.
fn data_len(tag: u8, data: &[u8], offset: usize) -> Result<usize, ParseError> {
    let need = |n: usize| {
        if data.len() < n {
            Err(ParseError::new(ErrorKind::Truncated, offset + data.len()))
        } else {
            Ok(n)
        }
    };
    match tag {
        b'i' | b'f' | b'c' | b'r' | b'm' => need(4),
        b'h' | b't' | b'd' => need(8),
        b'T' | b'F' | b'N' | b'I' | b'[' | b']' => Ok(0),
        b's' | b'S' => match find_nul(data) {
            Some(nul) => need(padded(nul + 1)),
            None => Err(ParseError::new(
                ErrorKind::UnterminatedString,
                offset + data.len(),
            )),
        },
        b'b' => {
            need(4)?;
            let n = be_u32(data, 0) as i32;
            if n < 0 {
                return Err(ParseError::new(ErrorKind::NegativeLength, offset));
            }
            need(4 + padded(n as usize))
        }
        other => Err(ParseError::new(ErrorKind::UnknownTypeTag(other), offset)),
    }
}

/// `n` rounded up to a multiple of 4.
#[inline]
pub(crate) const fn padded(n: usize) -> usize {
    (n + 3) & !3
}

/// Index of the first NUL byte in `hay`. OSC strings are short and start 4-aligned, so this
/// scans eight bytes at a time with the classic "has a zero byte" bit trick instead of a
/// general `memchr`, whose set-up costs more than the scan for a 20-byte address.
#[inline]
pub(crate) fn find_nul(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        // `chunks_exact(8)` always yields 8 bytes; the fallback (no zero byte) is unreachable.
        let v = <[u8; 8]>::try_from(c).map_or(u64::MAX, u64::from_le_bytes);
        // The lowest flagged byte is always a real zero (borrows only flag bytes above one).
        let z = v.wrapping_sub(LO) & !v & HI;
        if z != 0 {
            return Some(base + (z.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == 0)
        .map(|i| base + i)
}

/// The bytes of `data` before its first NUL (all of it if none).
fn cstr(data: &[u8]) -> &[u8] {
    &data[..find_nul(data).unwrap_or(data.len())]
}

#[inline]
fn be_u32(buf: &[u8], at: usize) -> u32 {
    match buf.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

#[inline]
fn be_u64(buf: &[u8], at: usize) -> u64 {
    ((be_u32(buf, at) as u64) << 32) | be_u32(buf, at + 4) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(bytes: &[u8]) -> Message<'_> {
        match Packet::new_checked(bytes).expect("valid") {
            Packet::Message(m) => m,
            Packet::Bundle(_) => panic!("not a message"),
        }
    }

    fn err(bytes: &[u8]) -> ParseError {
        Packet::new_checked(bytes).expect_err("invalid")
    }

    #[test]
    fn message_with_every_tag() {
        let mut b = Vec::new();
        b.extend_from_slice(b"/a/b\0\0\0\0");
        b.extend_from_slice(b",ifsbhtdScrmTFNI[i]\0");
        b.extend_from_slice(&7i32.to_be_bytes());
        b.extend_from_slice(&2.5f32.to_be_bytes());
        b.extend_from_slice(b"hi\0\0");
        b.extend_from_slice(&3u32.to_be_bytes());
        b.extend_from_slice(&[1, 2, 3, 0]);
        b.extend_from_slice(&(-5i64).to_be_bytes());
        b.extend_from_slice(&0x0000_0001_0000_0002u64.to_be_bytes());
        b.extend_from_slice(&1.25f64.to_be_bytes());
        b.extend_from_slice(b"sym\0");
        b.extend_from_slice(&(b'x' as u32).to_be_bytes());
        b.extend_from_slice(&[1, 2, 3, 4]);
        b.extend_from_slice(&[5, 6, 7, 8]);
        b.extend_from_slice(&9i32.to_be_bytes());
        let m = msg(&b);
        assert_eq!(m.address(), b"/a/b");
        assert_eq!(m.type_tags(), b"ifsbhtdScrmTFNI[i]");
        let args: Vec<_> = m.args().collect();
        assert_eq!(
            args,
            vec![
                Arg::Int(7),
                Arg::Float(2.5),
                Arg::Str(b"hi"),
                Arg::Blob(&[1, 2, 3]),
                Arg::Long(-5),
                Arg::Time(TimeTag {
                    seconds: 1,
                    fraction: 2
                }),
                Arg::Double(1.25),
                Arg::Symbol(b"sym"),
                Arg::Char(b'x' as u32),
                Arg::Color([1, 2, 3, 4]),
                Arg::Midi([5, 6, 7, 8]),
                Arg::True,
                Arg::False,
                Arg::Nil,
                Arg::Inf,
                Arg::ArrayOpen,
                Arg::Int(9),
                Arg::ArrayClose,
            ]
        );
        for (a, t) in args.iter().zip(m.type_tags()) {
            assert_eq!(a.tag(), *t);
        }
    }

    #[test]
    fn message_without_type_tags_has_no_args() {
        let m = msg(b"/old\0\0\0\0");
        assert_eq!(m.type_tags(), b"");
        assert_eq!(m.args().count(), 0);
    }

    #[test]
    fn empty_type_tag_string() {
        let m = msg(b"/x\0\0,\0\0\0");
        assert_eq!(m.args().count(), 0);
    }

    #[test]
    fn errors_name_kind_and_offset() {
        assert_eq!(err(b""), ParseError::new(ErrorKind::Empty, 0));
        assert_eq!(err(b"/ab"), ParseError::new(ErrorKind::NotAligned, 3));
        assert_eq!(err(b"abc\0"), ParseError::new(ErrorKind::BadAddress, 0));
        assert_eq!(
            err(b"/abc"),
            ParseError::new(ErrorKind::UnterminatedString, 4)
        );
        assert_eq!(err(b"/a\0x"), ParseError::new(ErrorKind::BadPadding, 3));
        assert_eq!(
            err(b"/a\0\0i\0\0\0"),
            ParseError::new(ErrorKind::MissingTypeTags, 4)
        );
        assert_eq!(
            err(b"/a\0\0,i\0\0"),
            ParseError::new(ErrorKind::Truncated, 8)
        );
        assert_eq!(
            err(b"/a\0\0,q\0\0"),
            ParseError::new(ErrorKind::UnknownTypeTag(b'q'), 5)
        );
        assert_eq!(
            err(b"/a\0\0,]\0\0"),
            ParseError::new(ErrorKind::UnbalancedArray, 5)
        );
        assert_eq!(
            err(b"/a\0\0,[\0\0"),
            ParseError::new(ErrorKind::UnbalancedArray, 6)
        );
        assert_eq!(
            err(b"/a\0\0,i\0\0\0\0\0\x01\0\0\0\0"),
            ParseError::new(ErrorKind::TrailingBytes, 12)
        );
        assert_eq!(
            err(b"/a\0\0,b\0\0\xff\xff\xff\xff"),
            ParseError::new(ErrorKind::NegativeLength, 8)
        );
        assert_eq!(
            err(b"/a\0\0,b\0\0\0\0\0\x09abcd"),
            ParseError::new(ErrorKind::Truncated, 16)
        );
        assert_eq!(
            err(b"/a\0\0,b\0\0\0\0\0\x01ab\0\0"),
            ParseError::new(ErrorKind::BadPadding, 13)
        );
        assert_eq!(
            err(b"/a\0\0,s\0\0hi\0x"),
            ParseError::new(ErrorKind::BadPadding, 11)
        );
    }

    fn bundle_of(tt: u64, elems: &[&[u8]]) -> Vec<u8> {
        let mut b = BUNDLE_TAG.to_vec();
        b.extend_from_slice(&tt.to_be_bytes());
        for e in elems {
            b.extend_from_slice(&(e.len() as u32).to_be_bytes());
            b.extend_from_slice(e);
        }
        b
    }

    #[test]
    fn bundles_nest_and_iterate() {
        let inner = bundle_of(5, &[b"/c\0\0,\0\0\0"]);
        let outer = bundle_of(1, &[b"/a\0\0,i\0\0\0\0\0\x02", &inner, b"/b\0\0"]);
        let Packet::Bundle(b) = Packet::new_checked(&outer).unwrap() else {
            panic!()
        };
        assert_eq!(b.timetag(), TimeTag::IMMEDIATE);
        let elems: Vec<_> = b.elements().collect();
        assert_eq!(elems.len(), 3);
        let Packet::Message(a) = elems[0] else {
            panic!()
        };
        assert_eq!(a.args().collect::<Vec<_>>(), vec![Arg::Int(2)]);
        let Packet::Bundle(inner) = elems[1] else {
            panic!()
        };
        assert_eq!(inner.timetag().to_u64(), 5);
        let Packet::Message(c) = inner.elements().next().unwrap() else {
            panic!()
        };
        assert_eq!(c.address(), b"/c");
        let Packet::Message(m) = elems[2] else {
            panic!()
        };
        assert_eq!(m.address(), b"/b");
    }

    #[test]
    fn empty_bundle_is_valid() {
        let b = bundle_of(1, &[]);
        let Packet::Bundle(b) = Packet::new_checked(&b).unwrap() else {
            panic!()
        };
        assert_eq!(b.elements().count(), 0);
    }

    #[test]
    fn bundle_errors() {
        assert_eq!(
            err(b"#bundle\0\0\0\0\0"),
            ParseError::new(ErrorKind::Truncated, 12)
        );
        let mut b = bundle_of(1, &[b"/a\0\0"]);
        b[19] = 8;
        assert_eq!(err(&b), ParseError::new(ErrorKind::Truncated, 24));
        b[19] = 3;
        assert_eq!(err(&b), ParseError::new(ErrorKind::BadElementSize, 16));
        b[16] = 0x80;
        assert_eq!(err(&b), ParseError::new(ErrorKind::NegativeLength, 16));
        let b = bundle_of(1, &[b"xa\0\0"]);
        assert_eq!(err(&b), ParseError::new(ErrorKind::BadElement, 20));
        // An error inside an element reports the offset in the outer packet.
        let b = bundle_of(1, &[b"/a\0\0,q\0\0"]);
        assert_eq!(
            err(&b),
            ParseError::new(ErrorKind::UnknownTypeTag(b'q'), 25)
        );
        let mut b = bundle_of(1, &[b"/a\0\0"]);
        b.extend_from_slice(&[0, 0]);
        assert_eq!(err(&b), ParseError::new(ErrorKind::NotAligned, 26));
    }

    #[test]
    fn depth_limit() {
        let mut p = b"/a\0\0".to_vec();
        for _ in 0..MAX_BUNDLE_DEPTH {
            p = bundle_of(1, &[&p]);
        }
        assert!(Packet::new_checked(&p).is_ok());
        let p = bundle_of(1, &[&p]);
        assert_eq!(err(&p).kind, ErrorKind::TooDeep);
    }

    #[test]
    fn find_nul_agrees_with_a_plain_scan() {
        let mut v = vec![0xffu8; 40];
        for len in 0..40 {
            for zero in 0..=len {
                let mut hay = v[..len].to_vec();
                if zero < len {
                    hay[zero] = 0;
                    // Bytes after the first zero (including 0x01, which borrows) never matter.
                    for b in hay.iter_mut().skip(zero + 1) {
                        *b = 1;
                    }
                }
                assert_eq!(find_nul(&hay), hay.iter().position(|&b| b == 0), "{hay:?}");
            }
        }
        v[3] = 0x80;
        v[4] = 0;
        assert_eq!(find_nul(&v), Some(4));
    }

    #[test]
    fn timetag_u64_round_trip() {
        let t = TimeTag {
            seconds: 0xdead_beef,
            fraction: 0x1234_5678,
        };
        assert_eq!(TimeTag::from_u64(t.to_u64()), t);
        assert_eq!(TimeTag::IMMEDIATE.to_u64(), 1);
    }

    #[test]
    fn display_is_helpful() {
        let e = err(b"/a\0\0,q\0\0");
        assert_eq!(e.to_string(), "unknown type tag 'q' at byte 5");
    }
}
