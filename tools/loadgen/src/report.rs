//! The result of a run: a serialisable [`Report`], printed as a table for people or as JSON
//! (`--json`) for scripts. This module does no measuring.

use std::fmt::Write;

use serde::Serialize;

use crate::hist::Histogram;
use crate::via::ForwarderStats;

/// Latency percentiles in microseconds (receive time minus the sender's timestamp).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub samples: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds.
    pub fn from_hist(h: &Histogram) -> Latency {
        let us = |ns: u64| ns as f64 / 1_000.0;
        Latency {
            samples: h.count(),
            p50: us(h.quantile(0.50)),
            p99: us(h.quantile(0.99)),
            p999: us(h.quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// CPU seconds (user + system) spent during the run.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Cpu {
    /// The whole process (senders, receivers, forwarder if in-process, the main thread).
    pub process_s: f64,
    /// The in-process forwarder thread alone.
    pub forwarder_s: Option<f64>,
    pub senders_s: f64,
    pub receivers_s: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub via: String,
    pub receivers: usize,
    pub senders: usize,
    /// Asked rate, messages/s over all senders (0 = as fast as possible).
    pub rate: u64,
    /// Bytes per datagram.
    pub size: usize,
    /// Length of the send phase in seconds.
    pub duration_s: f64,
    /// Messages the senders handed to the kernel.
    pub sent: u64,
    /// Deliveries that would be lossless: sent x receivers.
    pub expected: u64,
    /// Datagrams the receivers got (duplicates and malformed included).
    pub delivered: u64,
    /// Of `delivered`, those that arrived during the send phase (not during the drain).
    pub delivered_in_window: u64,
    /// `delivered_in_window / duration_s`: the sustained rate, without the drain's tail.
    pub delivered_per_s: f64,
    /// Per (sender, receiver): sent minus distinct sequences received, summed.
    pub lost: u64,
    pub duplicated: u64,
    /// Arrived after a higher sequence of the same pair.
    pub reordered: u64,
    /// Reordered by more than the 1024-message window (duplicates not detectable there).
    pub late: u64,
    /// Not a load message (bad OSC, wrong arguments, unknown sender).
    pub malformed: u64,
    pub latency_us: Latency,
    pub cpu: Cpu,
    /// Whether the forwarder and the load threads were pinned to different CPUs.
    pub pinned: bool,
    /// The in-process forwarder's own counters.
    pub forwarder: Option<ForwarderStats>,
    /// Where the receivers listened (so an external forwarder can be told).
    pub receiver_addrs: Vec<String>,
}

/// What a run measured, for [`Report::measured`].
pub struct Measured<'a> {
    pub via: String,
    pub receivers: usize,
    pub senders: usize,
    pub rate: u64,
    pub size: usize,
    /// Per sender.
    pub sent: &'a [u64],
    pub totals: &'a crate::account::Totals,
    pub latency: &'a Histogram,
    /// Length of the send phase, and what was delivered during it.
    pub elapsed: std::time::Duration,
    pub in_window: u64,
    pub cpu: Cpu,
}

impl Report {
    /// The report of a run, with rates derived from the send phase; not pinned, no
    /// in-process forwarder and no receiver addresses (set those after, where they apply).
    pub fn measured(m: Measured<'_>) -> Report {
        let secs = m.elapsed.as_secs_f64().max(1e-9);
        let t = m.totals;
        Report {
            via: m.via,
            receivers: m.receivers,
            senders: m.senders,
            rate: m.rate,
            size: m.size,
            duration_s: secs,
            sent: m.sent.iter().sum(),
            expected: t.expected,
            delivered: t.delivered,
            delivered_in_window: m.in_window,
            delivered_per_s: m.in_window as f64 / secs,
            lost: t.lost,
            duplicated: t.duplicated,
            reordered: t.reordered,
            late: t.late,
            malformed: t.malformed,
            latency_us: Latency::from_hist(m.latency),
            cpu: m.cpu,
            pinned: false,
            forwarder: None,
            receiver_addrs: Vec::new(),
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report as a small text table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "via {}  receivers {}  senders {}  rate {}  size {} B  {:.2} s{}",
            self.via,
            self.receivers,
            self.senders,
            if self.rate == 0 {
                "max".to_string()
            } else {
                format!("{}/s", self.rate)
            },
            self.size,
            self.duration_s,
            if self.pinned { "  pinned" } else { "" }
        );
        let _ = writeln!(
            s,
            "{:>10} {:>12} {:>12} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "sent",
            "delivered",
            "deliv/s",
            "lost",
            "dup",
            "reorder",
            "p50 us",
            "p99 us",
            "max us",
            "cpu s"
        );
        let _ = writeln!(
            s,
            "{:>10} {:>12} {:>12.0} {:>10} {:>8} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>7.2}",
            self.sent,
            self.delivered,
            self.delivered_per_s,
            self.lost,
            self.duplicated,
            self.reordered,
            self.latency_us.p50,
            self.latency_us.p99,
            self.latency_us.max,
            self.cpu.process_s
        );
        let fwd = self
            .cpu
            .forwarder_s
            .map(|f| format!("forwarder {f:.2}  "))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "cpu s: {fwd}senders {:.2}  receivers {:.2}   late {}  malformed {}  p999 {:.1} us",
            self.cpu.senders_s,
            self.cpu.receivers_s,
            self.late,
            self.malformed,
            self.latency_us.p999
        );
        if let Some(f) = &self.forwarder {
            let _ = writeln!(
                s,
                "forwarder: received {}  sent {}  dropped {}  decode errors {}",
                f.received, f.sent, f.dropped, f.decode_errors
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_json_carry_the_numbers() {
        let mut h = Histogram::new();
        h.record(1_500);
        let r = Report {
            via: "baseline".into(),
            receivers: 10,
            senders: 1,
            rate: 0,
            size: 64,
            duration_s: 1.0,
            sent: 123,
            expected: 1230,
            delivered: 1229,
            delivered_in_window: 1229,
            delivered_per_s: 1229.0,
            lost: 1,
            duplicated: 0,
            reordered: 0,
            late: 0,
            malformed: 0,
            latency_us: Latency::from_hist(&h),
            cpu: Cpu::default(),
            pinned: false,
            forwarder: Some(ForwarderStats::default()),
            receiver_addrs: vec!["127.0.0.1:1".into()],
        };
        let t = r.to_table();
        assert!(
            t.contains("1229") && t.contains("123") && t.contains("1.5"),
            "{t}"
        );
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["delivered"], 1229);
        assert_eq!(v["lost"], 1);
        assert_eq!(v["latency_us"]["max"], 1.5);
        assert_eq!(v["forwarder"]["sent"], 0);
    }
}
