//! Encoding OSC messages and bundles into a caller-provided `Vec<u8>`.
//!
//! The writer appends to the vector it is given and allocates only if the vector's capacity
//! runs out, so a control plane that reuses one buffer encodes without allocating. Inputs are
//! checked (address starts with `/`, no NUL inside strings, balanced arrays, sizes that fit an
//! OSC int32); on error the vector is truncated back to its length before the call.
//!
//! Bundles are written with [`write_bundle`], whose closure appends the elements through an
//! [`ElementWriter`]; each element's size prefix is patched in after it is written.

use core::fmt;

use super::packet::{padded, Arg, Packet, TimeTag, BUNDLE_TAG};

/// Why a message or bundle could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The address does not start with `/` (and is not a bundle).
    BadAddress,
    /// A string (address, `s` or `S`) contains a NUL byte; the index of the argument is given
    /// (`None` for the address).
    NulInString(Option<usize>),
    /// Array brackets in the arguments do not balance.
    UnbalancedArray,
    /// A blob or element is larger than an OSC int32 size can say.
    TooLarge,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadAddress => f.write_str("address must start with '/'"),
            Self::NulInString(None) => f.write_str("address contains a NUL byte"),
            Self::NulInString(Some(i)) => write!(f, "argument {i} contains a NUL byte"),
            Self::UnbalancedArray => f.write_str("unbalanced array brackets"),
            Self::TooLarge => f.write_str("blob or element larger than 2^31-1 bytes"),
        }
    }
}

impl std::error::Error for WriteError {}

/// Appends one OSC message to `out`.
pub fn write_message(
    out: &mut Vec<u8>,
    address: &[u8],
    args: &[Arg<'_>],
) -> Result<(), WriteError> {
    let start = out.len();
    let r = write_message_inner(out, address, args);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn write_message_inner(
    out: &mut Vec<u8>,
    address: &[u8],
    args: &[Arg<'_>],
) -> Result<(), WriteError> {
    if address.first() != Some(&b'/') {
        return Err(WriteError::BadAddress);
    }
    if address.contains(&0) {
        return Err(WriteError::NulInString(None));
    }
    let mut depth = 0usize;
    for a in args {
        match a {
            Arg::ArrayOpen => depth += 1,
            Arg::ArrayClose => depth = depth.checked_sub(1).ok_or(WriteError::UnbalancedArray)?,
            _ => {}
        }
    }
    if depth != 0 {
        return Err(WriteError::UnbalancedArray);
    }
    out.reserve(encoded_len(address, args));
    put_str(out, address);
    out.push(b',');
    out.extend(args.iter().map(Arg::tag));
    out.push(0);
    pad(out);
    for (i, a) in args.iter().enumerate() {
        match *a {
            Arg::Int(v) => out.extend_from_slice(&v.to_be_bytes()),
            Arg::Float(v) => out.extend_from_slice(&v.to_bits().to_be_bytes()),
            Arg::Str(s) | Arg::Symbol(s) => {
                if s.contains(&0) {
                    return Err(WriteError::NulInString(Some(i)));
                }
                put_str(out, s);
            }
            Arg::Blob(b) => {
                let n = i32::try_from(b.len()).map_err(|_| WriteError::TooLarge)?;
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(b);
                pad(out);
            }
            Arg::Long(v) => out.extend_from_slice(&v.to_be_bytes()),
            Arg::Time(t) => out.extend_from_slice(&t.to_u64().to_be_bytes()),
            Arg::Double(v) => out.extend_from_slice(&v.to_bits().to_be_bytes()),
            Arg::Char(c) => out.extend_from_slice(&c.to_be_bytes()),
            Arg::Color(b) | Arg::Midi(b) => out.extend_from_slice(&b),
            Arg::True | Arg::False | Arg::Nil | Arg::Inf | Arg::ArrayOpen | Arg::ArrayClose => {}
        }
    }
    Ok(())
}

/// The exact number of bytes [`write_message`] appends for a valid message.
pub fn encoded_len(address: &[u8], args: &[Arg<'_>]) -> usize {
    let data: usize = args
        .iter()
        .map(|a| match a {
            Arg::Int(_) | Arg::Float(_) | Arg::Char(_) | Arg::Color(_) | Arg::Midi(_) => 4,
            Arg::Long(_) | Arg::Time(_) | Arg::Double(_) => 8,
            Arg::Str(s) | Arg::Symbol(s) => padded(s.len() + 1),
            Arg::Blob(b) => 4 + padded(b.len()),
            _ => 0,
        })
        .sum();
    padded(address.len() + 1) + padded(args.len() + 2) + data
}

/// Appends a bundle with time tag `tt` to `out`; `elements` appends its elements.
///
/// ```
/// use oscgate::wire::{write_bundle, Arg, TimeTag};
/// let mut out = Vec::new();
/// write_bundle(&mut out, TimeTag::IMMEDIATE, |b| {
///     b.message(b"/a", &[Arg::Int(1)])?;
///     b.bundle(TimeTag::IMMEDIATE, |inner| inner.message(b"/b", &[]))
/// })
/// .unwrap();
/// ```
pub fn write_bundle<F>(out: &mut Vec<u8>, tt: TimeTag, elements: F) -> Result<(), WriteError>
where
    F: FnOnce(&mut ElementWriter<'_>) -> Result<(), WriteError>,
{
    let start = out.len();
    out.extend_from_slice(BUNDLE_TAG);
    out.extend_from_slice(&tt.to_u64().to_be_bytes());
    let r = elements(&mut ElementWriter { out });
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Appends the elements of a bundle being written by [`write_bundle`].
pub struct ElementWriter<'v> {
    out: &'v mut Vec<u8>,
}

impl ElementWriter<'_> {
    /// Appends a message element.
    pub fn message(&mut self, address: &[u8], args: &[Arg<'_>]) -> Result<(), WriteError> {
        self.element(|out| write_message(out, address, args))
    }

    /// Appends a nested bundle element.
    pub fn bundle<F>(&mut self, tt: TimeTag, elements: F) -> Result<(), WriteError>
    where
        F: FnOnce(&mut ElementWriter<'_>) -> Result<(), WriteError>,
    {
        self.element(|out| write_bundle(out, tt, elements))
    }

    /// Appends an already encoded (and checked) packet as an element, bytes untouched.
    pub fn packet(&mut self, packet: &Packet<'_>) -> Result<(), WriteError> {
        self.element(|out| {
            out.extend_from_slice(packet.as_bytes());
            Ok(())
        })
    }

    fn element(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), WriteError>,
    ) -> Result<(), WriteError> {
        let at = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        write(self.out)?;
        let size = i32::try_from(self.out.len() - at - 4).map_err(|_| WriteError::TooLarge)?;
        self.out[at..at + 4].copy_from_slice(&size.to_be_bytes());
        Ok(())
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    let n = padded(out.len()) - out.len();
    out.extend_from_slice(&[0; 3][..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_through_the_parser() {
        let args = [
            Arg::Int(-1),
            Arg::Float(0.5),
            Arg::str("hello"),
            Arg::Blob(b"\x01\x02\x03\x04\x05"),
            Arg::Long(i64::MIN),
            Arg::Time(TimeTag {
                seconds: 3,
                fraction: 4,
            }),
            Arg::Double(-2.0),
            Arg::Symbol(b"sy"),
            Arg::Char(0x263a),
            Arg::Color([9, 8, 7, 6]),
            Arg::Midi([0, 0x90, 60, 100]),
            Arg::ArrayOpen,
            Arg::True,
            Arg::False,
            Arg::ArrayClose,
            Arg::Nil,
            Arg::Inf,
        ];
        let mut out = Vec::new();
        write_message(&mut out, b"/x/y", &args).unwrap();
        assert_eq!(out.len(), encoded_len(b"/x/y", &args));
        let Packet::Message(m) = Packet::new_checked(&out).unwrap() else {
            panic!()
        };
        assert_eq!(m.address(), b"/x/y");
        assert_eq!(m.args().collect::<Vec<_>>(), args);
    }

    #[test]
    fn known_bytes() {
        let mut out = Vec::new();
        write_message(&mut out, b"/cue", &[Arg::Int(1), Arg::str("go")]).unwrap();
        assert_eq!(out, b"/cue\0\0\0\0,is\0\0\0\0\x01go\0\0");
    }

    #[test]
    fn no_allocation_when_capacity_suffices() {
        let mut out = Vec::with_capacity(64);
        let ptr = out.as_ptr();
        write_message(&mut out, b"/a", &[Arg::Int(1)]).unwrap();
        write_bundle(&mut out, TimeTag::IMMEDIATE, |b| b.message(b"/b", &[])).unwrap();
        assert_eq!(out.as_ptr(), ptr);
    }

    #[test]
    fn errors_leave_the_buffer_as_it_was() {
        let mut out = b"keep".to_vec();
        assert_eq!(
            write_message(&mut out, b"nope", &[]),
            Err(WriteError::BadAddress)
        );
        assert_eq!(
            write_message(&mut out, b"/a\0", &[]),
            Err(WriteError::NulInString(None))
        );
        assert_eq!(
            write_message(&mut out, b"/a", &[Arg::Int(1), Arg::Str(b"a\0")]),
            Err(WriteError::NulInString(Some(1)))
        );
        assert_eq!(
            write_message(&mut out, b"/a", &[Arg::ArrayClose]),
            Err(WriteError::UnbalancedArray)
        );
        assert_eq!(
            write_message(&mut out, b"/a", &[Arg::ArrayOpen]),
            Err(WriteError::UnbalancedArray)
        );
        let r = write_bundle(&mut out, TimeTag::IMMEDIATE, |b| {
            b.message(b"/ok", &[])?;
            b.message(b"bad", &[])
        });
        assert_eq!(r, Err(WriteError::BadAddress));
        assert_eq!(out, b"keep");
    }

    #[test]
    fn nested_bundle_round_trips() {
        let mut out = Vec::new();
        write_bundle(&mut out, TimeTag::from_u64(77), |b| {
            b.message(b"/a", &[Arg::Int(1)])?;
            b.bundle(TimeTag::IMMEDIATE, |inner| {
                inner.message(b"/b", &[Arg::str("x")])
            })
        })
        .unwrap();
        let Packet::Bundle(b) = Packet::new_checked(&out).unwrap() else {
            panic!()
        };
        assert_eq!(b.timetag().to_u64(), 77);
        let e: Vec<_> = b.elements().collect();
        assert_eq!(e.len(), 2);
        let Packet::Bundle(inner) = e[1] else {
            panic!()
        };
        let Packet::Message(m) = inner.elements().next().unwrap() else {
            panic!()
        };
        assert_eq!(m.args().next(), Some(Arg::Str(b"x")));
        // Copying a checked packet in as an element keeps its bytes.
        let mut again = Vec::new();
        write_bundle(&mut again, TimeTag::IMMEDIATE, |w| w.packet(&e[0])).unwrap();
        assert!(again
            .windows(e[0].as_bytes().len())
            .any(|w| w == e[0].as_bytes()));
    }
}
