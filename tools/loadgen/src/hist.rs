//! A fixed-memory log-linear latency histogram in nanoseconds.
//!
//! Values below 128 ns are counted exactly; above that each power of two is split into 64
//! equal buckets, so a bucket is at most 1/64 (1.6 %) of the values it holds wide. Values above
//! [`MAX_VALUE`] (about 17 s) go into the last bucket, and the exact maximum is kept aside.
//! Memory is one fixed array, whatever is recorded. This module does not read clocks.

/// Sub-bucket bits: 2^7 = 128 exact values, then 64 buckets per power of two.
const SUB_BITS: u32 = 7;
const HALF: u64 = 1 << (SUB_BITS - 1);
/// Largest value with its own bucket: 2^34 - 1 ns (about 17 s).
pub const MAX_VALUE: u64 = (1 << 34) - 1;
/// Number of buckets: the index of `MAX_VALUE`, plus one.
pub const BUCKETS: usize = index(MAX_VALUE) + 1;

/// Bucket index of `v` (clamped to `MAX_VALUE`).
const fn index(v: u64) -> usize {
    let v = if v > MAX_VALUE { MAX_VALUE } else { v };
    if v < (1 << SUB_BITS) {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb + 1 - SUB_BITS;
    (shift as u64 * HALF + (v >> shift)) as usize
}

/// Lowest value and width of bucket `i`.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < (1 << SUB_BITS) {
        return (i, 1);
    }
    let shift = i / HALF - 1;
    let sub = i - shift * HALF;
    (sub << shift, 1 << shift)
}

/// Latency histogram: counts per bucket, total, exact min and max.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max: u64,
    min: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("min", &self.min())
            .field("max", &self.max)
            .finish()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            max: 0,
            min: u64::MAX,
        }
    }

    /// Counts one value.
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
        self.min = self.min.min(v);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += *b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.min = self.min.min(other.min);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Exact largest value (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Exact smallest value (0 when empty).
    pub fn min(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.min
        }
    }

    /// The `q` quantile (`0.0..=1.0`): the value of rank `ceil(q * count)` in sorted order,
    /// to within the bucket's width (the bucket's midpoint, kept inside `min..=max`).
    /// 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, width) = bucket_range(i);
                return (lo + width / 2).clamp(self.min(), self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn buckets_are_contiguous_and_cover_their_values() {
        for v in (0..100_000u64).chain([MAX_VALUE - 1, MAX_VALUE, 1 << 33]) {
            let (lo, w) = bucket_range(index(v));
            assert!(lo <= v && v < lo + w, "v {v} in bucket [{lo}, {})", lo + w);
            if v >= 128 {
                assert!(w * 64 <= lo, "bucket of {v} too wide: {w}");
            }
        }
        for i in 1..BUCKETS {
            let (lo, _) = bucket_range(i);
            let (plo, pw) = bucket_range(i - 1);
            assert_eq!(plo + pw, lo, "gap before bucket {i}");
        }
    }

    #[test]
    fn percentiles_match_sorted_reference_within_two_percent() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..5 {
            let mut h = Histogram::new();
            let n = 10_000 + round * 7_777;
            // Log-uniform from 1 us to 10 s, like real latencies.
            let mut values: Vec<u64> = (0..n)
                .map(|_| {
                    let r = (xorshift(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
                    (1_000.0 * 10f64.powf(7.0 * r)) as u64
                })
                .collect();
            for &v in &values {
                h.record(v);
            }
            values.sort_unstable();
            for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
                let want = values[rank - 1] as f64;
                let got = h.quantile(q) as f64;
                assert!(
                    (got - want).abs() <= want * 0.02,
                    "q {q}: got {got}, want {want}"
                );
            }
            assert_eq!(h.max(), *values.last().unwrap());
            assert_eq!(h.min(), values[0]);
            assert_eq!(h.count(), n as u64);
        }
    }

    #[test]
    fn memory_is_fixed_and_huge_values_clamp() {
        let mut h = Histogram::new();
        let before = std::mem::size_of_val(&*h.counts);
        for i in 0..200_000u64 {
            h.record(i.wrapping_mul(0x1234_5678_9abc));
        }
        h.record(u64::MAX);
        assert_eq!(std::mem::size_of_val(&*h.counts), before);
        assert_eq!(before, BUCKETS * 8);
        const { assert!(BUCKETS < 2_000) };
        assert_eq!(h.max(), u64::MAX);
        assert!(h.quantile(1.0) >= MAX_VALUE / 2);
    }

    #[test]
    fn empty_and_merge() {
        let mut a = Histogram::new();
        assert_eq!(a.quantile(0.99), 0);
        assert_eq!(a.min(), 0);
        let mut b = Histogram::new();
        for v in [10, 20, 30] {
            a.record(v);
        }
        for v in [40, 50] {
            b.record(v);
        }
        a.merge(&b);
        assert_eq!(a.count(), 5);
        assert_eq!(a.quantile(0.5), 30);
        assert_eq!(a.max(), 50);
        assert_eq!(a.min(), 10);
    }
}
