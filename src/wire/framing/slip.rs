//! The OSC 1.1 SLIP decoder (RFC 1055 framing, END at either or both ends of a packet).
//!
//! Escapes are removed in place in the caller's chunk (unescaping only shrinks), so a frame
//! wholly inside a chunk is handed out as a slice of it. A frame that straddles chunks is
//! collected, unescaped, in a buffer that never exceeds the maximum frame size. A frame that
//! grows past the maximum or holds a bad escape is reported once and dropped up to the next
//! END; decoding then resumes. Empty frames are skipped. No I/O, no allocation except for
//! straddling frames.

use super::{release, reserve_bounded, FrameError, SLIP_END, SLIP_ESC, SLIP_ESC_END, SLIP_ESC_ESC};

#[derive(Debug)]
pub(super) struct SlipDecoder {
    max: usize,
    /// Unescaped bytes of a frame begun in an earlier chunk; never longer than `max`.
    buf: Vec<u8>,
    /// The previous chunk ended with an ESC inside the open frame.
    esc: bool,
    /// Dropping bytes up to the next END after an error.
    discard: bool,
    /// Stream offset of the first byte of the current frame.
    frame_start: u64,
    /// Stream bytes consumed before the current chunk.
    offset: u64,
}

/// How far [`unescape`] got through the bytes after the current position.
enum Scan {
    /// Found END at index `end`; the frame's `out` unescaped bytes are at the start.
    Terminated { out: usize, end: usize },
    /// Ran out of input inside the frame; `out` unescaped bytes, and whether the last byte was
    /// an unfinished ESC.
    Open { out: usize, esc: bool },
    /// ESC followed by `byte` (possibly END) at index `at`.
    BadEscape { byte: u8, at: usize },
    /// The byte at index `at` would make the frame longer than allowed.
    TooLong { at: usize },
}

/// Unescapes `data` in place up to the first END, starting in the escape state `esc`,
/// producing at most `budget` bytes. Runs of plain bytes are found with `memchr2` and moved
/// down as a block; before the first escape nothing moves at all.
fn unescape(data: &mut [u8], mut esc: bool, budget: usize) -> Scan {
    let (mut r, mut w) = (0, 0);
    loop {
        if esc {
            // The byte after an ESC (which may have ended the previous chunk).
            let Some(&b) = data.get(r) else {
                return Scan::Open { out: w, esc: true };
            };
            let value = match b {
                SLIP_ESC_END => SLIP_END,
                SLIP_ESC_ESC => SLIP_ESC,
                _ => return Scan::BadEscape { byte: b, at: r },
            };
            if w == budget {
                return Scan::TooLong { at: r };
            }
            data[w] = value;
            w += 1;
            r += 1;
        }
        let run = memchr::memchr2(SLIP_END, SLIP_ESC, &data[r..]).unwrap_or(data.len() - r);
        if run > budget - w {
            // The first byte past the budget is where the frame became too long.
            return Scan::TooLong {
                at: r + (budget - w),
            };
        }
        if w != r {
            data.copy_within(r..r + run, w);
        }
        w += run;
        r += run;
        match data.get(r) {
            None => return Scan::Open { out: w, esc: false },
            Some(&SLIP_END) => return Scan::Terminated { out: w, end: r },
            Some(_) => {
                esc = true;
                r += 1;
            }
        }
    }
}

impl SlipDecoder {
    pub(super) fn new(max: usize) -> Self {
        SlipDecoder {
            max,
            buf: Vec::new(),
            esc: false,
            discard: false,
            frame_start: 0,
            offset: 0,
        }
    }

    pub(super) fn decode(
        &mut self,
        input: &mut [u8],
        on_frame: &mut impl FnMut(Result<&[u8], FrameError>),
    ) {
        let mut pos = 0;
        while pos < input.len() {
            if self.discard {
                match memchr::memchr(SLIP_END, &input[pos..]) {
                    Some(i) => {
                        self.discard = false;
                        pos += i + 1;
                        continue;
                    }
                    None => break,
                }
            }
            if self.buf.is_empty() && !self.esc {
                self.frame_start = self.offset + pos as u64;
            }
            let budget = self.max - self.buf.len();
            match unescape(&mut input[pos..], self.esc, budget) {
                Scan::Terminated { out, end } => {
                    let frame = &input[pos..pos + out];
                    if self.buf.is_empty() {
                        if !frame.is_empty() {
                            on_frame(Ok(frame));
                        }
                    } else {
                        // `out <= budget`, so the buffer stays within `max`.
                        reserve_bounded(&mut self.buf, out, self.max);
                        self.buf.extend_from_slice(frame);
                        on_frame(Ok(&self.buf));
                        release(&mut self.buf);
                    }
                    self.esc = false;
                    pos += end + 1;
                }
                Scan::Open { out, esc } => {
                    reserve_bounded(&mut self.buf, out, self.max);
                    self.buf.extend_from_slice(&input[pos..pos + out]);
                    self.esc = esc;
                    break;
                }
                Scan::BadEscape { byte, at } => {
                    on_frame(Err(FrameError::SlipBadEscape {
                        byte,
                        offset: self.offset + (pos + at) as u64,
                    }));
                    release(&mut self.buf);
                    self.esc = false;
                    // ESC END ends the frame right here; any other bad byte leaves the rest
                    // of the frame to skip.
                    self.discard = byte != SLIP_END;
                    pos += at + 1;
                }
                Scan::TooLong { at } => {
                    on_frame(Err(FrameError::SlipTooLong {
                        max: self.max,
                        offset: self.frame_start,
                    }));
                    release(&mut self.buf);
                    self.esc = false;
                    self.discard = true;
                    pos += at;
                }
            }
        }
        self.offset += input.len() as u64;
    }

    pub(super) fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn position(&self) -> u64 {
        self.offset
    }

    pub(super) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}
