//! `messenger --compare` (or more than one of gateway / `--baseline` / `--naive`): the same
//! `messenger` run once per mode, one after the other, then one table with a column per mode
//! and the ratios of the first mode (the gateway, when it runs) to each of the others.
//!
//! This module only sequences runs and formats; the measuring is `messenger::run`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::messenger::{self, MessengerConfig, MessengerReport, Mode};

/// The first run's figure divided by another's.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub of: &'static str,
    pub to: &'static str,
    pub delivered_per_s: Option<f64>,
    pub latency_p50: Option<f64>,
    pub latency_p99: Option<f64>,
    /// Forwarder CPU seconds per delivered message.
    pub forwarder_cpu_per_delivery: Option<f64>,
}

/// All runs of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub scenario: &'static str,
    pub runs: Vec<MessengerReport>,
    pub ratios: Vec<Ratio>,
}

/// Runs `cfg` once per mode in `modes` (in that order). Any run's set-up error ends it.
pub fn compare(cfg: &MessengerConfig, modes: &[Mode]) -> anyhow::Result<Comparison> {
    let mut runs = Vec::with_capacity(modes.len());
    for &mode in modes {
        let c = MessengerConfig {
            mode,
            ..cfg.clone()
        };
        if cfg.progress {
            eprintln!("-- {}", mode.name());
        }
        runs.push(messenger::run(&c)?);
    }
    Ok(Comparison::new(runs))
}

/// Forwarder CPU seconds per delivered message.
fn cpu_per_delivery(r: &MessengerReport) -> Option<f64> {
    let cpu = r.forwarder_cpu_s()?;
    (r.run.delivered > 0).then(|| cpu / r.run.delivered as f64)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() => Some(a / b),
        _ => None,
    }
}

impl Comparison {
    /// Wraps finished runs and works out the ratios of the first to each other one.
    pub fn new(runs: Vec<MessengerReport>) -> Comparison {
        let ratios = match runs.split_first() {
            Some((first, rest)) => rest
                .iter()
                .map(|r| Ratio {
                    of: first.mode,
                    to: r.mode,
                    delivered_per_s: ratio(
                        Some(first.run.delivered_per_s),
                        Some(r.run.delivered_per_s),
                    ),
                    latency_p50: ratio(Some(first.run.latency_us.p50), Some(r.run.latency_us.p50)),
                    latency_p99: ratio(Some(first.run.latency_us.p99), Some(r.run.latency_us.p99)),
                    forwarder_cpu_per_delivery: ratio(cpu_per_delivery(first), cpu_per_delivery(r)),
                })
                .collect(),
            None => Vec::new(),
        };
        Comparison {
            scenario: "messenger-compare",
            runs,
            ratios,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// One row per figure, one column per run, then a column per ratio (`-` where a ratio
    /// means nothing, e.g. for loss counts, or a figure is unknown). `load cpu s` is this
    /// process without the in-process forwarder thread, so the columns compare like for like.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let Some(first) = self.runs.first() else {
            return s;
        };
        let rate = match first.run.rate {
            0 => "max".to_string(),
            r => format!("{r}/s"),
        };
        let _ = writeln!(
            s,
            "messenger compare: patrons {} {}  from {}  senders {}  rate {}  size {} B  {:.2} s each",
            first.patrons,
            first.transport,
            first.from,
            first.run.senders,
            rate,
            first.run.size,
            first.run.duration_s
        );
        let _ = write!(s, "{:<18}", "");
        for r in &self.runs {
            let _ = write!(s, "{:>13}", r.mode);
        }
        for r in &self.runs[1..] {
            let _ = write!(
                s,
                "{:>13}",
                format!("{}/{}", short(first.mode), short(r.mode))
            );
        }
        s.push('\n');
        type Get = fn(&MessengerReport) -> Option<f64>;
        let rows: [(&str, Get, bool, usize); 12] = [
            ("sent", |r| Some(r.run.sent as f64), true, 0),
            ("delivered", |r| Some(r.run.delivered as f64), true, 0),
            ("deliv/s", |r| Some(r.run.delivered_per_s), true, 0),
            ("lost", |r| Some(r.run.lost as f64), false, 0),
            ("dup", |r| Some(r.run.duplicated as f64), false, 0),
            ("reorder", |r| Some(r.run.reordered as f64), false, 0),
            ("p50 us", |r| Some(r.run.latency_us.p50), true, 1),
            ("p99 us", |r| Some(r.run.latency_us.p99), true, 1),
            ("max us", |r| Some(r.run.latency_us.max), true, 1),
            ("fwd cpu s", |r| r.forwarder_cpu_s(), true, 2),
            (
                "fwd cpu ns/deliv",
                |r| cpu_per_delivery(r).map(|c| c * 1e9),
                true,
                1,
            ),
            (
                "load cpu s",
                |r| Some(r.run.cpu.process_s - r.run.cpu.forwarder_s.unwrap_or(0.0)),
                true,
                2,
            ),
        ];
        for (name, get, with_ratio, digits) in rows {
            let _ = write!(s, "{name:<18}");
            for r in &self.runs {
                let cell = get(r).map_or("-".to_string(), |v| format!("{v:.digits$}"));
                let _ = write!(s, "{cell:>13}");
            }
            for r in &self.runs[1..] {
                let cell = match (with_ratio, ratio(get(first), get(r))) {
                    (true, Some(x)) => format!("{x:.2}"),
                    _ => "-".to_string(),
                };
                let _ = write!(s, "{cell:>13}");
            }
            s.push('\n');
        }
        if first.mode == Mode::Gateway.name() && first.gateway_process.is_none() {
            s += "gateway cpu unknown: pass --gateway-pid (no single `oscgate` process found)\n";
        }
        s
    }
}

fn short(mode: &str) -> &str {
    match mode {
        "gateway" => "gw",
        "baseline" => "base",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messenger::GatewayProcess;
    use crate::patrons::PatronEvents;
    use crate::report::{Cpu, Latency, Report};

    fn report(mode: &'static str, per_s: f64, p50: f64, fwd: Option<f64>) -> MessengerReport {
        MessengerReport {
            scenario: "messenger",
            mode,
            transport: "udp",
            from: "group",
            patrons: 3,
            group_senders: 1,
            patron_senders: 0,
            gateway_addr: None,
            group: "239.254.0.1:3090".into(),
            run: Report {
                via: mode.into(),
                receivers: 3,
                senders: 1,
                rate: 0,
                size: 64,
                duration_s: 1.0,
                sent: 100,
                expected: 300,
                delivered: 300,
                delivered_in_window: 300,
                delivered_per_s: per_s,
                lost: 0,
                duplicated: 0,
                reordered: 0,
                late: 0,
                malformed: 0,
                latency_us: Latency {
                    samples: 300,
                    p50,
                    p99: p50 * 2.0,
                    p999: p50 * 3.0,
                    max: p50 * 4.0,
                },
                cpu: Cpu {
                    process_s: 0.5,
                    forwarder_s: fwd,
                    senders_s: 0.1,
                    receivers_s: 0.1,
                },
                pinned: false,
                forwarder: None,
                receiver_addrs: Vec::new(),
            },
            unexpected: 0,
            join: None,
            patron_events: PatronEvents::default(),
            group_listener: None,
            gateway_process: None,
        }
    }

    #[test]
    fn ratios_and_table_columns() {
        let mut gw = report("gateway", 900.0, 30.0, None);
        gw.gateway_process = Some(GatewayProcess {
            pid: 1,
            cpu_s: 0.3,
            rss_kib: 1,
            peak_rss_kib: 1,
        });
        let c = Comparison::new(vec![
            gw,
            report("baseline", 1000.0, 20.0, Some(0.15)),
            report("naive", 300.0, 60.0, None),
        ]);
        assert_eq!(c.ratios.len(), 2);
        let base = &c.ratios[0];
        assert_eq!((base.of, base.to), ("gateway", "baseline"));
        assert!((base.delivered_per_s.unwrap() - 0.9).abs() < 1e-9);
        assert!((base.latency_p50.unwrap() - 1.5).abs() < 1e-9);
        assert!((base.forwarder_cpu_per_delivery.unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(c.ratios[1].forwarder_cpu_per_delivery, None);
        let t = c.to_table();
        assert!(t.contains("gw/base") && t.contains("gw/naive"), "{t}");
        let line = |name: &str| t.lines().find(|l| l.starts_with(name)).unwrap().to_owned();
        let cols = |name: &str| -> Vec<String> {
            line(name)[18..]
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(cols("deliv/s"), ["900", "1000", "300", "0.90", "3.00"]);
        assert_eq!(cols("lost"), ["0", "0", "0", "-", "-"]);
        assert_eq!(cols("fwd cpu s"), ["0.30", "0.15", "-", "2.00", "-"]);
        let v: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(v["runs"][1]["mode"], "baseline");
        assert_eq!(v["runs"][1]["delivered_per_s"], 1000.0);
        assert_eq!(v["ratios"][0]["to"], "baseline");
    }
}
