//! The framing fuzz oracle: decodes arbitrary bytes several ways and asserts the decoder's
//! invariants. Called by the fuzz targets, the corpus replay test and the property tests;
//! not used by the daemon.

use super::{encode, Decoder, FrameError, Framing, DEFAULT_MAX_FRAME};

/// What a decoder made of a stream.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<Result<Vec<u8>, FrameError>>,
    fatal: Option<FrameError>,
    framing: Framing,
    buffered: usize,
}

/// Feeds `stream` to a fresh decoder in pieces of the given sizes (the remainder, if any, as a
/// last piece), checking the per-call invariants.
fn run(
    framing: Framing,
    max: usize,
    stream: &[u8],
    sizes: &mut dyn Iterator<Item = usize>,
) -> Outcome {
    let mut dec = Decoder::new(framing, max);
    let mut events = Vec::new();
    let mut fatal = None;
    let mut rest = stream;
    let bound = max.max(3);
    loop {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        let mut chunk = piece.to_vec();
        let result = dec.decode(&mut chunk, |ev| {
            if let Ok(frame) = ev {
                assert!(!frame.is_empty(), "empty frame delivered");
                assert!(frame.len() <= max, "frame of {} > max {max}", frame.len());
            }
            if let Err(e) = ev {
                assert!(!e.is_fatal(), "fatal error {e:?} passed to the callback");
            }
            events.push(ev.map(<[u8]>::to_vec));
        });
        assert!(
            dec.buffered() <= bound,
            "buffered {} > {bound}",
            dec.buffered()
        );
        assert!(
            dec.buffer_capacity() <= bound,
            "capacity {} > {bound}",
            dec.buffer_capacity()
        );
        if let Err(e) = result {
            assert!(e.is_fatal(), "non-fatal error {e:?} returned");
            assert_eq!(dec.failure(), Some(e));
            assert_eq!(dec.buffered(), 0, "buffer kept after a fatal error");
            // Sticky: the same error, nothing delivered, whatever comes next.
            let before = events.len();
            let mut more = [0u8, 0, 0, 1, b'x'];
            assert_eq!(
                dec.decode(&mut more, |ev| events.push(ev.map(<[u8]>::to_vec))),
                Err(e)
            );
            assert_eq!(events.len(), before, "output after a fatal error");
            fatal = Some(e);
            break;
        }
        if rest.is_empty() {
            break;
        }
    }
    if fatal.is_none() {
        assert_eq!(dec.position(), stream.len() as u64);
    }
    Outcome {
        events,
        fatal,
        framing: dec.framing(),
        buffered: dec.buffered(),
    }
}

/// A small xorshift generator of chunk sizes in `0..=limit` (zero-length chunks included).
struct Chunks {
    state: u32,
    limit: usize,
}

impl Iterator for Chunks {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        Some(self.state as usize % (self.limit + 1))
    }
}

/// Decodes `data[3..]` with parameters taken from `data[..3]` and asserts the invariants.
///
/// - `data[0]`: framing (`% 3`: len32, SLIP, auto);
/// - `data[1]`: maximum frame size (`0` = [`DEFAULT_MAX_FRAME`], else `0..=127`, or
///   `(b & 0x7f) * 64` when the high bit is set);
/// - `data[2]`: chunking seed (low 2 bits pick the largest chunk: 1, 3, 17 or 300 bytes).
///
/// Invariants: decoding whole and in chunks gives the same frames, errors, fatal error and
/// leftover; frames are non-empty and at most the maximum; fatal errors are sticky and only
/// returned, never passed to the callback; buffered bytes and buffer capacity stay within the
/// maximum; re-encoding the frames and decoding again (with the resolved framing and with
/// auto-detection) gives the same frames and no error.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    let (params, body) = data.split_at(data.len().min(3));
    let param = |i: usize| params.get(i).copied().unwrap_or(0);
    let framing = match param(0) % 3 {
        0 => Framing::Len32,
        1 => Framing::Slip,
        _ => Framing::Auto,
    };
    let max = match param(1) {
        0 => DEFAULT_MAX_FRAME,
        b if b & 0x80 != 0 => usize::from(b & 0x7f) * 64,
        b => usize::from(b),
    };
    let seed = param(2);
    let limit = [1, 3, 17, 300][usize::from(seed & 3)];

    let whole = run(framing, max, body, &mut core::iter::empty());
    let mut chunks = Chunks {
        state: 0x9E37_79B9 ^ u32::from(seed),
        limit,
    };
    let chunked = run(framing, max, body, &mut chunks);
    assert_eq!(whole, chunked, "whole and chunked decoding differ");

    let frames: Vec<&[u8]> = whole
        .events
        .iter()
        .filter_map(|e| e.as_deref().ok())
        .collect();
    if frames.is_empty() {
        return;
    }
    let mut stream = Vec::new();
    for frame in &frames {
        encode(whole.framing, frame, &mut stream).expect("frames are at most the maximum size");
    }
    for framing in [whole.framing, Framing::Auto] {
        let again = run(framing, max, &stream, &mut core::iter::empty());
        let expected: Vec<_> = frames.iter().map(|f| Ok(f.to_vec())).collect();
        assert_eq!(
            again.events, expected,
            "re-encoded frames decode differently"
        );
        assert_eq!(again.fatal, None);
        assert_eq!(again.buffered, 0);
        assert_eq!(again.framing, whole.framing);
    }
}
