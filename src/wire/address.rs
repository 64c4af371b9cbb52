//! Cheap looks at a packet's address, and address-prefix helpers on raw bytes.
//!
//! [`peek`] reads only what the forwarding path needs (the address and type tags of a message,
//! or the fact that a packet is a bundle) without checking the arguments; it is what a worker
//! runs per packet before the route table lookup. The prefix helpers work on whole path
//! segments: `/a/b` is a prefix of `/a/b` and `/a/b/c`, not of `/a/bc`.
//!
//! Nothing here allocates or matches patterns (see [`super::pattern`]).

use super::packet::{find_nul as nul_in, padded, ErrorKind, ParseError, BUNDLE_TAG};

/// What [`peek`] found at the start of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek<'a> {
    /// A message: its address and its type tags (without the comma; empty if none).
    Message {
        address: &'a [u8],
        type_tags: &'a [u8],
    },
    /// A bundle (its time tag is at bytes 8..16).
    Bundle,
}

/// Reads the address and type tags of a message, or recognises a bundle, without checking
/// the rest of the packet. Use [`super::Packet::new_checked`] before reading arguments.
#[inline]
pub fn peek(buf: &[u8]) -> Result<Peek<'_>, ParseError> {
    match buf.first() {
        None => Err(ParseError {
            kind: ErrorKind::Empty,
            offset: 0,
        }),
        Some(b'/') => {
            let nul = find_nul(buf, 0)?;
            let address = &buf[..nul];
            let tags_at = padded(nul + 1);
            let type_tags = match buf.get(tags_at) {
                None => &[][..],
                Some(b',') => &buf[tags_at + 1..find_nul(buf, tags_at)?],
                Some(_) => {
                    return Err(ParseError {
                        kind: ErrorKind::MissingTypeTags,
                        offset: tags_at,
                    })
                }
            };
            Ok(Peek::Message { address, type_tags })
        }
        Some(b'#') if buf.starts_with(BUNDLE_TAG) && buf.len() >= 16 => Ok(Peek::Bundle),
        Some(_) => Err(ParseError {
            kind: ErrorKind::BadAddress,
            offset: 0,
        }),
    }
}

fn find_nul(buf: &[u8], from: usize) -> Result<usize, ParseError> {
    buf.get(from..)
        .and_then(nul_in)
        .map(|i| from + i)
        .ok_or(ParseError {
            kind: ErrorKind::UnterminatedString,
            offset: buf.len(),
        })
}

/// True if `prefix` is `address` or a leading run of its whole path segments.
/// The empty prefix and `/` match every address.
#[inline]
pub fn has_prefix(address: &[u8], prefix: &[u8]) -> bool {
    let prefix = prefix.strip_suffix(b"/").unwrap_or(prefix);
    match address.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest[0] == b'/',
        None => false,
    }
}

/// The part of `address` after `prefix` (which must be a segment prefix), starting with `/`,
/// or empty if they are equal.
#[inline]
pub fn strip_prefix<'a>(address: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    if !has_prefix(address, prefix) {
        return None;
    }
    let prefix = prefix.strip_suffix(b"/").unwrap_or(prefix);
    address.get(prefix.len()..)
}

/// The path segments of an address: `/a/b/c` gives `a`, `b`, `c`.
#[inline]
pub fn segments(address: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    address
        .strip_prefix(b"/")
        .unwrap_or(address)
        .split(|&b| b == b'/')
}

/// The first path segment of an address (`a` for `/a/b`).
#[inline]
pub fn first_segment(address: &[u8]) -> &[u8] {
    segments(address).next().unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_message_and_bundle() {
        assert_eq!(
            peek(b"/a/b\0\0\0\0,if\0junk").unwrap(),
            Peek::Message {
                address: b"/a/b",
                type_tags: b"if"
            }
        );
        assert_eq!(
            peek(b"/old\0\0\0\0").unwrap(),
            Peek::Message {
                address: b"/old",
                type_tags: b""
            }
        );
        assert_eq!(peek(b"#bundle\0\0\0\0\0\0\0\0\x01").unwrap(), Peek::Bundle);
    }

    #[test]
    fn peek_errors() {
        assert_eq!(peek(b"").unwrap_err().kind, ErrorKind::Empty);
        assert_eq!(peek(b"x\0\0\0").unwrap_err().kind, ErrorKind::BadAddress);
        assert_eq!(
            peek(b"/abc").unwrap_err().kind,
            ErrorKind::UnterminatedString
        );
        assert_eq!(
            peek(b"/a\0\0,ii").unwrap_err().kind,
            ErrorKind::UnterminatedString
        );
        assert_eq!(
            peek(b"/a\0\0x\0\0\0").unwrap_err().kind,
            ErrorKind::MissingTypeTags
        );
        assert_eq!(peek(b"#bundle\0").unwrap_err().kind, ErrorKind::BadAddress);
    }

    #[test]
    fn prefixes_respect_segments() {
        assert!(has_prefix(b"/a/b", b"/a/b"));
        assert!(has_prefix(b"/a/b/c", b"/a/b"));
        assert!(has_prefix(b"/a/b/c", b"/a/b/"));
        assert!(!has_prefix(b"/a/bc", b"/a/b"));
        assert!(!has_prefix(b"/a", b"/a/b"));
        assert!(has_prefix(b"/anything", b"/"));
        assert!(has_prefix(b"/anything", b""));
        assert_eq!(strip_prefix(b"/a/b/c", b"/a"), Some(&b"/b/c"[..]));
        assert_eq!(strip_prefix(b"/a/b", b"/a/b/"), Some(&b""[..]));
        assert_eq!(strip_prefix(b"/ab", b"/a"), None);
    }

    #[test]
    fn segment_split() {
        assert_eq!(
            segments(b"/a/bb/c").collect::<Vec<_>>(),
            vec![&b"a"[..], b"bb", b"c"]
        );
        assert_eq!(first_segment(b"/messenger/me/say"), b"messenger");
        assert_eq!(first_segment(b"/"), b"");
    }
}
