//! Helpers shared by the integration tests that drive the engine over real sockets (no
//! global allocator here: the allocation tests use `support`).

#![allow(dead_code)]

pub mod netns;
pub mod ws;

/// Runs each scenario `fn name(oscgate::config::Driver)` as two tests, `mio_driver::name` and
/// `uring_driver::name`; the latter passes without running where io_uring is unusable
/// (printing why).
#[macro_export]
macro_rules! both_drivers {
    ($($name:ident),* $(,)?) => {
        mod mio_driver {
            $(#[test] fn $name() { super::$name(oscgate::config::Driver::Mio); })*
        }
        mod uring_driver {
            $(#[test] fn $name() {
                if $crate::common::uring_available() {
                    super::$name(oscgate::config::Driver::Uring);
                }
            })*
        }
    };
}

/// Whether io_uring can run here; prints why not (the io_uring half of a test then passes
/// without running, as the tests' docs say).
pub fn uring_available() -> bool {
    match oscgate::engine::uring::probe() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipped under io_uring: {e}");
            false
        }
    }
}

/// Splits a TCP byte stream into OSC packets, OSC 1.0 length prefix or SLIP (an END at both
/// ends, `DB DC` / `DB DD` escapes), written here rather than with `oscgate::wire::framing`
/// so the tests check the engine's framing against an independent decoder. Consumed bytes
/// are cut off the front only once they are most of the buffer, so a big read costs linear
/// time however many frames it holds.
#[derive(Debug, Default)]
pub struct Frames {
    pub slip: bool,
    buf: Vec<u8>,
    pos: usize,
}

impl Frames {
    pub fn new(slip: bool) -> Frames {
        Frames {
            slip,
            ..Frames::default()
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole packet, if one has arrived.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        if self.pos > 4096 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.slip {
            loop {
                let end = self.pos + self.buf[self.pos..].iter().position(|&b| b == 0xC0)?;
                let raw = &self.buf[self.pos..end];
                self.pos = end + 1;
                if raw.is_empty() {
                    continue;
                }
                let mut out = Vec::with_capacity(raw.len());
                let mut esc = false;
                for &b in raw {
                    match (esc, b) {
                        (false, 0xDB) => esc = true,
                        (true, 0xDC) => {
                            out.push(0xC0);
                            esc = false;
                        }
                        (true, 0xDD) => {
                            out.push(0xDB);
                            esc = false;
                        }
                        (_, b) => {
                            out.push(b);
                            esc = false;
                        }
                    }
                }
                return Some(out);
            }
        }
        let rest = &self.buf[self.pos..];
        if rest.len() < 4 {
            return None;
        }
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        if rest.len() < 4 + n {
            return None;
        }
        let p = rest[4..4 + n].to_vec();
        self.pos += 4 + n;
        Some(p)
    }
}
