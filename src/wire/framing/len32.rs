//! The OSC 1.0 length-prefix decoder (big-endian `int32` byte count, then the packet).
//!
//! Frames wholly inside a chunk are handed out as slices of it; a frame that straddles chunks
//! is collected in a buffer of at most the declared length (itself at most the maximum frame
//! size). A prefix that is negative or above the maximum is fatal and sticky. Zero-length
//! frames are skipped. No I/O, no allocation except for straddling frames.

use super::{release, reserve_bounded, FrameError};

#[derive(Debug)]
pub(super) struct Len32Decoder {
    max: usize,
    /// Bytes of a length prefix split across chunks.
    header: [u8; 4],
    header_len: usize,
    /// Declared length of the straddling frame being collected in `buf`; 0 while reading a
    /// prefix.
    want: usize,
    buf: Vec<u8>,
    /// Stream bytes consumed before the current chunk.
    offset: u64,
    failed: Option<FrameError>,
}

impl Len32Decoder {
    pub(super) fn new(max: usize) -> Self {
        Len32Decoder {
            max,
            header: [0; 4],
            header_len: 0,
            want: 0,
            buf: Vec::new(),
            offset: 0,
            failed: None,
        }
    }

    pub(super) fn decode(
        &mut self,
        input: &[u8],
        on_frame: &mut impl FnMut(Result<&[u8], FrameError>),
    ) -> Result<(), FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut pos = 0;
        if self.want > 0 {
            // Finish the frame carried over from earlier chunks.
            let take = (self.want - self.buf.len()).min(input.len());
            reserve_bounded(&mut self.buf, take, self.want);
            self.buf.extend_from_slice(&input[..take]);
            if self.buf.len() < self.want {
                self.offset += input.len() as u64;
                return Ok(());
            }
            on_frame(Ok(&self.buf));
            self.want = 0;
            release(&mut self.buf);
            pos = take;
        }
        loop {
            let rest = &input[pos..];
            let prefix = if self.header_len > 0 || rest.len() < 4 {
                let take = (4 - self.header_len).min(rest.len());
                self.header[self.header_len..self.header_len + take].copy_from_slice(&rest[..take]);
                self.header_len += take;
                pos += take;
                if self.header_len < 4 {
                    break;
                }
                self.header_len = 0;
                self.header
            } else {
                pos += 4;
                [rest[0], rest[1], rest[2], rest[3]]
            };
            let len = match self.check(prefix, self.offset + pos as u64 - 4) {
                Ok(len) => len,
                Err(e) => {
                    self.offset += pos as u64;
                    self.failed = Some(e);
                    self.buf = Vec::new();
                    return Err(e);
                }
            };
            if len == 0 {
                // An OSC packet is never empty; an empty frame carries nothing to deliver.
                continue;
            }
            let rest = &input[pos..];
            if let Some(frame) = rest.get(..len) {
                on_frame(Ok(frame));
                pos += len;
            } else {
                self.want = len;
                reserve_bounded(&mut self.buf, rest.len(), len);
                self.buf.extend_from_slice(rest);
                break;
            }
        }
        self.offset += input.len() as u64;
        Ok(())
    }

    /// Validates a prefix that started at stream offset `offset`.
    fn check(&self, prefix: [u8; 4], offset: u64) -> Result<usize, FrameError> {
        let declared = i32::from_be_bytes(prefix);
        if declared < 0 {
            return Err(FrameError::Len32Negative { declared, offset });
        }
        let declared = declared.unsigned_abs();
        match usize::try_from(declared) {
            Ok(len) if len <= self.max => Ok(len),
            _ => Err(FrameError::Len32TooLong {
                declared,
                max: self.max,
                offset,
            }),
        }
    }

    pub(super) fn buffered(&self) -> usize {
        self.header_len + self.buf.len()
    }

    pub(super) fn mid_frame(&self) -> bool {
        self.header_len > 0 || self.want > 0
    }

    pub(super) fn position(&self) -> u64 {
        self.offset
    }

    pub(super) fn failure(&self) -> Option<FrameError> {
        self.failed
    }

    pub(super) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}
