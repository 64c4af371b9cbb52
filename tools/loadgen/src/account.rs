//! Delivery accounting: per (sender, receiver) pair, which sequence numbers arrived, with
//! fixed memory per pair, and the latency histogram of one receiver thread.
//!
//! Each pair keeps the highest sequence seen and a 1024-bit window below it. A sequence above
//! the highest is new; one inside the window is a duplicate if its bit is set, else new and
//! reordered; one older than the window is counted new, reordered and `late` (a duplicate that
//! old cannot be told apart). `lost = sent - unique` per pair, never negative.
//! This module does not read clocks or sockets: the receiver loop feeds it parsed datagrams.

use oscgate::wire::{Arg, Packet};

use crate::hist::Histogram;

/// Sequence window per pair, in bits.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// What one pair has seen.
#[derive(Debug, Clone, Default)]
pub struct PairState {
    highest: Option<u64>,
    bits: [u64; WORDS],
    /// Distinct sequences delivered (within the window's memory).
    pub unique: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Reordered by more than [`WINDOW`]: counted unique without a duplicate check.
    pub late: u64,
}

impl PairState {
    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn set(&mut self, seq: u64) -> bool {
        let (w, m) = Self::bit(seq);
        let was = self.bits[w] & m != 0;
        self.bits[w] |= m;
        was
    }

    /// Counts one delivery of `seq`.
    pub fn observe(&mut self, seq: u64) {
        let Some(high) = self.highest else {
            self.highest = Some(seq);
            self.set(seq);
            self.unique += 1;
            return;
        };
        if seq > high {
            if seq - high >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                for s in high + 1..seq {
                    let (w, m) = Self::bit(s);
                    self.bits[w] &= !m;
                }
            }
            let (w, m) = Self::bit(seq);
            self.bits[w] &= !m;
            self.set(seq);
            self.highest = Some(seq);
            self.unique += 1;
        } else if high - seq < WINDOW {
            if self.set(seq) {
                self.duplicated += 1;
            } else {
                self.unique += 1;
                self.reordered += 1;
            }
        } else {
            self.unique += 1;
            self.reordered += 1;
            self.late += 1;
        }
    }
}

/// Why a received datagram could not be accounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Not a valid OSC packet, or a bundle.
    NotOsc,
    /// Arguments are not `i h h b`.
    BadArgs,
    /// Sender id outside `0..senders`, or a negative sequence.
    BadIds,
}

/// The fields a load message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sender: usize,
    pub seq: u64,
    pub sent_ns: u64,
}

/// Reads sender id, sequence and send time from a load message (`i h h b`). The sequence and
/// the time may also arrive as `i`: a relay that decodes and re-encodes arguments (the Python
/// tcposcrouter does) writes a 64-bit integer that fits in 31 bits as `i`.
///
/// A message laid out exactly as `fanout::encode` writes it is read at fixed offsets (a
/// receiver accounts millions per second); anything else goes through the full OSC parser.
/// Both give the same answer for every input.
pub fn parse(datagram: &[u8], senders: usize) -> Result<Stamp, Malformed> {
    match parse_fixed(datagram) {
        Some((id, seq, ts)) => check_ids(id, seq, ts, senders),
        None => parse_any(datagram, senders),
    }
}

/// Layout of `fanout::encode`'s message: address `/load/NN` padded to 12 bytes, tags
/// `,ihhb` padded to 8, then id, sequence, time and the blob's length.
const FIXED_ADDRESS: std::ops::Range<usize> = 0..12;
const FIXED_TAGS: &[u8; 8] = b",ihhb\0\0\0";
const FIXED_HEADER: usize = 44;

/// The fast path of [`parse`]: `(id, seq, time)` when `m` has exactly the fixed layout (digits
/// in the address, a blob that ends the message with zero padding), else `None`.
fn parse_fixed(m: &[u8]) -> Option<(i32, i64, i64)> {
    let header: &[u8; FIXED_HEADER] = m.get(..FIXED_HEADER)?.try_into().ok()?;
    let address = &header[FIXED_ADDRESS];
    if &address[..6] != b"/load/"
        || !address[6..8].iter().all(u8::is_ascii_digit)
        || address[8..] != [0; 4]
        || &header[12..20] != FIXED_TAGS
    {
        return None;
    }
    let be4 = |r: std::ops::Range<usize>| <[u8; 4]>::try_from(&header[r]).ok();
    let be8 = |r: std::ops::Range<usize>| <[u8; 8]>::try_from(&header[r]).ok();
    let blob = usize::try_from(i32::from_be_bytes(be4(40..44)?)).ok()?;
    let rest = &m[FIXED_HEADER..];
    if rest.len() != blob.next_multiple_of(4) || rest[blob..].iter().any(|&b| b != 0) {
        return None;
    }
    Some((
        i32::from_be_bytes(be4(20..24)?),
        i64::from_be_bytes(be8(24..32)?),
        i64::from_be_bytes(be8(32..40)?),
    ))
}

fn check_ids(id: i32, seq: i64, ts: i64, senders: usize) -> Result<Stamp, Malformed> {
    let (Ok(sender), Ok(seq)) = (usize::try_from(id), u64::try_from(seq)) else {
        return Err(Malformed::BadIds);
    };
    if sender >= senders {
        return Err(Malformed::BadIds);
    }
    Ok(Stamp {
        sender,
        seq,
        sent_ns: u64::try_from(ts).unwrap_or(0),
    })
}

/// The general path of [`parse`]: the full OSC parser.
fn parse_any(datagram: &[u8], senders: usize) -> Result<Stamp, Malformed> {
    let Ok(Packet::Message(m)) = Packet::new_checked(datagram) else {
        return Err(Malformed::NotOsc);
    };
    let wide = |a: Option<Arg<'_>>| match a {
        Some(Arg::Long(v)) => Some(v),
        Some(Arg::Int(v)) => Some(i64::from(v)),
        _ => None,
    };
    let mut args = m.args();
    let (Some(Arg::Int(id)), Some(seq), Some(ts), Some(Arg::Blob(_)), None) = (
        args.next(),
        wide(args.next()),
        wide(args.next()),
        args.next(),
        args.next(),
    ) else {
        return Err(Malformed::BadArgs);
    };
    check_ids(id, seq, ts, senders)
}

/// The accounting of one receiver thread: pairs for its receivers, latencies, malformed.
#[derive(Debug)]
pub struct Ledger {
    senders: usize,
    /// Indexed `receiver_slot * senders + sender`.
    pairs: Vec<PairState>,
    pub latency: Histogram,
    pub delivered: u64,
    pub malformed: u64,
}

impl Ledger {
    /// A ledger for `receivers` receivers (numbered `0..receivers` by the caller) and
    /// `senders` senders.
    pub fn new(receivers: usize, senders: usize) -> Ledger {
        Ledger {
            senders,
            pairs: vec![PairState::default(); receivers * senders],
            latency: Histogram::new(),
            delivered: 0,
            malformed: 0,
        }
    }

    /// Accounts one datagram received by `receiver` at `now_ns` (same epoch as the stamps).
    pub fn record(&mut self, receiver: usize, datagram: &[u8], now_ns: u64) {
        self.delivered += 1;
        let stamp = match parse(datagram, self.senders) {
            Ok(s) => s,
            Err(_) => {
                self.malformed += 1;
                return;
            }
        };
        let Some(pair) = self.pairs.get_mut(receiver * self.senders + stamp.sender) else {
            self.malformed += 1;
            return;
        };
        pair.observe(stamp.seq);
        self.latency.record(now_ns.saturating_sub(stamp.sent_ns));
    }

    /// Sums over all pairs given how many messages each sender sent.
    pub fn totals(&self, sent_per_sender: &[u64]) -> Totals {
        self.totals_where(sent_per_sender, |_, _| Pick::Expected)
    }

    /// Sums over the pairs `pick(receiver, sender)` calls [`Pick::Expected`]; deliveries on
    /// [`Pick::Unexpected`] pairs (a message that should not have reached that receiver) are
    /// counted in `unexpected` only, and [`Pick::Ignore`] pairs not at all. `delivered` is
    /// then the deliveries on expected pairs plus the malformed datagrams.
    pub fn totals_where(
        &self,
        sent_per_sender: &[u64],
        pick: impl Fn(usize, usize) -> Pick,
    ) -> Totals {
        let mut t = Totals {
            delivered: self.malformed,
            malformed: self.malformed,
            ..Totals::default()
        };
        for (i, p) in self.pairs.iter().enumerate() {
            let (receiver, sender) = (i / self.senders, i % self.senders);
            match pick(receiver, sender) {
                Pick::Expected => {}
                Pick::Unexpected => {
                    t.unexpected += p.unique + p.duplicated;
                    continue;
                }
                Pick::Ignore => continue,
            }
            let sent = sent_per_sender.get(sender).copied().unwrap_or(0);
            t.delivered += p.unique + p.duplicated;
            t.expected += sent;
            t.unique += p.unique;
            t.lost += sent.saturating_sub(p.unique);
            t.duplicated += p.duplicated;
            t.reordered += p.reordered;
            t.late += p.late;
        }
        t
    }
}

/// Whether a (receiver, sender) pair should carry traffic; see [`Ledger::totals_where`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Every message of the sender should reach the receiver.
    Expected,
    /// None should (e.g. a patron's own message coming back to it).
    Unexpected,
    /// Not part of this count.
    Ignore,
}

/// Sums of a ledger (or several, added with [`Totals::add`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub expected: u64,
    pub delivered: u64,
    pub unique: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub late: u64,
    pub malformed: u64,
    /// Deliveries on pairs that should carry nothing ([`Pick::Unexpected`]).
    pub unexpected: u64,
}

impl Totals {
    /// Adds `o` field by field.
    pub fn add(&mut self, o: &Totals) {
        self.expected += o.expected;
        self.delivered += o.delivered;
        self.unique += o.unique;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.late += o.late;
        self.malformed += o.malformed;
        self.unexpected += o.unexpected;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oscgate::wire::write_message;

    fn msg(sender: i32, seq: i64, ts: i64) -> Vec<u8> {
        let mut out = Vec::new();
        let args = [
            Arg::Int(sender),
            Arg::Long(seq),
            Arg::Long(ts),
            Arg::Blob(&[0; 8]),
        ];
        write_message(&mut out, b"/load/0", &args).unwrap();
        out
    }

    fn run(seqs: &[u64]) -> PairState {
        let mut p = PairState::default();
        for &s in seqs {
            p.observe(s);
        }
        p
    }

    #[test]
    fn in_order_is_clean() {
        let p = run(&(0..5000).collect::<Vec<_>>());
        assert_eq!(
            (p.unique, p.duplicated, p.reordered, p.late),
            (5000, 0, 0, 0)
        );
    }

    #[test]
    fn loss_dup_and_reorder() {
        // 0..10 sent; 3 and 7 lost; 5 duplicated; 8 before 6 (6 reordered); 9 twice.
        let p = run(&[0, 1, 2, 4, 5, 5, 8, 6, 9, 9]);
        assert_eq!(p.unique, 8);
        assert_eq!(p.duplicated, 2);
        assert_eq!(p.reordered, 1);
        let mut l = Ledger::new(1, 1);
        l.pairs[0] = p;
        let t = l.totals(&[10]);
        assert_eq!(
            (t.expected, t.lost, t.duplicated, t.reordered),
            (10, 2, 2, 1)
        );
    }

    #[test]
    fn duplicate_of_reordered_and_window_reuse() {
        // A reordered sequence seen twice is one reorder and one duplicate.
        let p = run(&[0, 2, 1, 1]);
        assert_eq!((p.unique, p.duplicated, p.reordered), (3, 1, 1));
        // After a jump the old bits of the ring are cleared: seq 1 + WINDOW is not a dup.
        let p = run(&[0, 1, WINDOW + 1, 2 * WINDOW + 1]);
        assert_eq!((p.unique, p.duplicated), (4, 0));
        let p = run(&[0, 1, WINDOW, WINDOW + 1]);
        assert_eq!((p.unique, p.duplicated, p.reordered), (4, 0, 0));
    }

    #[test]
    fn too_old_counts_late() {
        let p = run(&[5000, 10]);
        assert_eq!((p.unique, p.reordered, p.late, p.duplicated), (2, 1, 1, 0));
    }

    #[test]
    fn ledger_parses_and_rejects() {
        let mut l = Ledger::new(2, 2);
        l.record(0, &msg(0, 0, 100), 1_100);
        l.record(1, &msg(1, 0, 100), 2_100);
        l.record(1, &msg(1, 1, 100), 2_100);
        l.record(1, &msg(2, 0, 100), 2_100); // unknown sender
        l.record(1, &msg(0, -1, 100), 2_100); // negative sequence
        l.record(0, b"garbage", 0);
        l.record(0, &[], 0);
        let mut other = Vec::new();
        write_message(&mut other, b"/x", &[Arg::Int(1)]).unwrap();
        l.record(0, &other, 0);
        let t = l.totals(&[1, 2]);
        assert_eq!(t.delivered, 8);
        assert_eq!(t.malformed, 5);
        assert_eq!(t.unique, 3);
        // Expected: receivers 0 and 1 each 1 from sender 0 and 2 from sender 1.
        assert_eq!(t.expected, 6);
        assert_eq!(t.lost, 3);
        assert_eq!(l.latency.count(), 3);
        assert_eq!(l.latency.max(), 2_000);
        assert_eq!(
            parse(&msg(0, 7, 9), 1),
            Ok(Stamp {
                sender: 0,
                seq: 7,
                sent_ns: 9
            })
        );
        assert_eq!(parse(b"", 1), Err(Malformed::NotOsc));
        // Re-typed by a relay: small 64-bit integers as `i`.
        let mut narrow = Vec::new();
        let args = [Arg::Int(0), Arg::Int(7), Arg::Int(9), Arg::Blob(&[0; 4])];
        write_message(&mut narrow, b"/load/00", &args).unwrap();
        assert_eq!(parse(&narrow, 1).map(|s| (s.seq, s.sent_ns)), Ok((7, 9)));
        let mut float = Vec::new();
        let args = [Arg::Int(0), Arg::Float(7.0), Arg::Int(9), Arg::Blob(&[])];
        write_message(&mut float, b"/load/00", &args).unwrap();
        assert_eq!(parse(&float, 1), Err(Malformed::BadArgs));
        assert_eq!(parse(&other, 1), Err(Malformed::BadArgs));
    }

    #[test]
    fn fixed_layout_fast_path_agrees_with_the_full_parser() {
        let encoded = |sender: usize, seq: u64, ts: u64, pad: usize| {
            let mut out = Vec::new();
            crate::fanout::encode(&mut out, sender, seq, ts, &vec![0; pad]);
            out
        };
        let mut samples = vec![
            encoded(0, 0, 0, 0),
            encoded(3, 42, 7_000, 20),
            encoded(12, u64::MAX >> 1, 1 << 40, 3),
            encoded(1, 5, 5, 1000),
        ];
        for m in &samples {
            assert!(parse_fixed(m).is_some(), "{m:?}");
        }
        // Not the fixed layout (a 7-byte address): the full parser's business.
        samples.extend([msg(0, -1, 100), msg(-1, 1, 100)]);
        assert!(parse_fixed(&samples[samples.len() - 1]).is_none());
        // Every single-byte change and truncation of a good message: same verdict both ways.
        let base = encoded(2, 77, 123_456, 9);
        for i in 0..base.len() {
            for v in [0x00, 0x01, b'0', b'9', b'/', b'h', b'i', 0x80, 0xC0, 0xFF] {
                let mut m = base.clone();
                m[i] = v;
                samples.push(m);
            }
            samples.push(base[..i].to_vec());
        }
        let mut longer = base.clone();
        longer.extend_from_slice(&[0; 4]);
        samples.push(longer);
        for m in &samples {
            for senders in [1, 3, 13] {
                assert_eq!(parse(m, senders), parse_any(m, senders), "{m:?}");
            }
        }
    }

    #[test]
    fn picked_pairs_split_expected_unexpected_and_ignored() {
        // Receivers 0 and 1, senders 0 and 1; sender 1 is receiver 1 itself (must not echo).
        let mut l = Ledger::new(2, 2);
        for seq in 0..3 {
            l.record(0, &msg(0, seq, 0), 10);
            l.record(1, &msg(0, seq, 0), 10);
            l.record(0, &msg(1, seq, 0), 10);
        }
        l.record(1, &msg(1, 0, 0), 10); // an echo
        l.record(1, b"junk", 10);
        let t = l.totals_where(&[3, 4], |r, s| match (r, s) {
            (1, 1) => Pick::Unexpected,
            _ => Pick::Expected,
        });
        assert_eq!(t.expected, 3 + 3 + 4);
        assert_eq!(t.delivered, 9 + 1);
        assert_eq!((t.unique, t.lost, t.unexpected, t.malformed), (9, 1, 1, 1));
        let only_sender_1 =
            l.totals_where(
                &[3, 4],
                |_, s| {
                    if s == 1 {
                        Pick::Expected
                    } else {
                        Pick::Ignore
                    }
                },
            );
        assert_eq!(only_sender_1.expected, 8);
        assert_eq!(only_sender_1.unique, 4);
        assert_eq!(only_sender_1.unexpected, 0);
        // The plain totals still count every datagram.
        assert_eq!(l.totals(&[3, 4]).delivered, l.delivered);
    }
}
