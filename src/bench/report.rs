//! What a run reports: throughput and the latency percentile spectrum of a [`Tally`], as a table
//! for people and as JSON for machines (`--json`), plus the per-second progress line.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::meter::Tally;

/// Bytes in a megabyte, as MB/s is printed (10^6, like fio and Kafka's tools).
pub const MB: f64 = 1e6;

/// The quantiles of the table and of `latency_us`, with their column names.
pub const QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
];

/// Latency percentiles in microseconds. Invariant: non-decreasing from `p50` to `max`; all zero
/// when nothing was recorded (`samples` = 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyUs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
    pub mean: f64,
    /// Latency samples the percentiles are over (requests, fetches or records).
    pub samples: u64,
}

impl LatencyUs {
    /// The percentiles of a histogram of nanoseconds.
    pub fn of(h: &Histogram<u64>) -> LatencyUs {
        if h.is_empty() {
            return LatencyUs {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                p9999: 0.0,
                max: 0.0,
                mean: 0.0,
                samples: 0,
            };
        }
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        LatencyUs {
            p50: us(0.50),
            p90: us(0.90),
            p99: us(0.99),
            p999: us(0.999),
            p9999: us(0.9999),
            max: h.max() as f64 / 1e3,
            mean: h.mean() / 1e3,
            samples: h.len(),
        }
    }

    fn columns(&self) -> [f64; 6] {
        [
            self.p50, self.p90, self.p99, self.p999, self.p9999, self.max,
        ]
    }
}

/// Throughput and latency of one measured quantity over the measured window. Invariant: the
/// rates are `records` and `bytes` over `duration_s` (0 when the duration is 0).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub records: u64,
    pub bytes: u64,
    pub duration_s: f64,
    pub records_per_sec: f64,
    pub bytes_per_sec: f64,
    pub latency_us: LatencyUs,
}

impl Summary {
    /// The summary of `tally`, whose window lasted `duration_s`.
    pub fn new(tally: &Tally, duration_s: f64) -> Summary {
        let rate = |n: u64| {
            if duration_s > 0.0 {
                n as f64 / duration_s
            } else {
                0.0
            }
        };
        Summary {
            records: tally.records,
            bytes: tally.bytes,
            duration_s,
            records_per_sec: rate(tally.records),
            bytes_per_sec: rate(tally.bytes),
            latency_us: LatencyUs::of(&tally.latency),
        }
    }
}

/// A latency in microseconds, in the unit that keeps it short: `250 ns`, `850 µs`, `12.3 ms`,
/// `2.05 s`.
pub fn format_us(us: f64) -> String {
    if us < 1.0 {
        format!("{:.0} ns", us * 1e3)
    } else if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.3}", us / 1e3)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + " ms"
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// The result table: one row per `(name, summary)`.
pub fn table(rows: &[(&str, &Summary)]) -> String {
    table_of("records/s", rows)
}

/// The result table with the rate column named `rate_unit` (`requests/s` where each sample is
/// a request rather than a record).
pub fn table_of(rate_unit: &str, rows: &[(&str, &Summary)]) -> String {
    let mut header: Vec<String> = vec!["".into(), rate_unit.into(), "MB/s".into()];
    header.extend(QUANTILES.iter().map(|(n, _)| n.to_string()));
    header.push("max".into());
    let mut lines = vec![header];
    for (name, s) in rows {
        let mut line = vec![
            name.to_string(),
            format!("{:.0}", s.records_per_sec),
            format!("{:.1}", s.bytes_per_sec / MB),
        ];
        if s.latency_us.samples == 0 {
            line.extend(std::iter::repeat_n("-".to_string(), QUANTILES.len() + 1));
        } else {
            line.extend(s.latency_us.columns().iter().map(|&us| format_us(us)));
        }
        lines.push(line);
    }
    let cols = lines[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let pad = widths[c] - cell.chars().count();
                if c == 0 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One progress line: the second it ends at, the interval's rate and latency.
pub fn progress_line(
    at_s: f64,
    what: &str,
    interval: &Tally,
    interval_s: f64,
    warmup: bool,
) -> String {
    let l = LatencyUs::of(&interval.latency);
    let rate = |n: u64| {
        if interval_s > 0.0 {
            n as f64 / interval_s
        } else {
            0.0
        }
    };
    let latency = if l.samples == 0 {
        "latency -".to_string()
    } else {
        format!(
            "p50 {}  p99 {}  max {}",
            format_us(l.p50),
            format_us(l.p99),
            format_us(l.max)
        )
    };
    format!(
        "[{at_s:6.1} s] {what:<8} {:>10.0} records/s {:>9.1} MB/s  {latency}{}",
        rate(interval.records),
        rate(interval.bytes) / MB,
        if warmup { "  (warm-up)" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::meter::histogram;

    fn tally(values_us: &[u64]) -> Tally {
        let mut latency = histogram();
        for v in values_us {
            latency.record(v * 1_000).unwrap();
        }
        Tally {
            latency,
            records: values_us.len() as u64,
            bytes: values_us.len() as u64 * 1_000,
            last_done_ns: 0,
        }
    }

    #[test]
    fn summary_rates_and_percentiles() {
        let values: Vec<u64> = (1..=1000).collect();
        let s = Summary::new(&tally(&values), 2.0);
        assert_eq!(s.records, 1000);
        assert_eq!(s.records_per_sec, 500.0);
        assert_eq!(s.bytes_per_sec, 500_000.0);
        let l = s.latency_us;
        assert!((l.p50 - 500.0).abs() <= 1.0, "{l:?}");
        assert!((l.p99 - 990.0).abs() <= 1.0, "{l:?}");
        assert!((l.max - 1000.0).abs() <= 1.0, "{l:?}");
        let c = l.columns();
        assert!(c.windows(2).all(|w| w[0] <= w[1]), "non-decreasing: {c:?}");
        assert_eq!(Summary::new(&tally(&[]), 0.0).records_per_sec, 0.0);
    }

    #[test]
    fn json_has_the_keys_machines_read() {
        let s = Summary::new(&tally(&[10, 20, 30]), 1.0);
        let v = serde_json::to_value(&s).unwrap();
        for key in [
            "records_per_sec",
            "bytes_per_sec",
            "records",
            "duration_s",
            "latency_us",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        for key in ["p50", "p90", "p99", "p999", "p9999", "max"] {
            assert!(
                v["latency_us"][key].is_number(),
                "missing latency_us.{key} in {v}"
            );
        }
    }

    #[test]
    fn latencies_print_in_a_short_unit() {
        assert_eq!(format_us(850.4), "850 µs");
        assert_eq!(format_us(0.25), "250 ns");
        assert_eq!(format_us(1_500.0), "1.5 ms");
        assert_eq!(format_us(12_345.0), "12.345 ms");
        assert_eq!(format_us(2_000.0), "2 ms");
        assert_eq!(format_us(2_050_000.0), "2.05 s");
    }

    #[test]
    fn the_table_aligns_columns_and_marks_missing_latency() {
        let a = Summary::new(&tally(&[100, 200]), 1.0);
        let b = Summary::new(&tally(&[]), 1.0);
        let t = table(&[("produce", &a), ("consume", &b)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("records/s") && lines[0].contains("p99.99"));
        assert!(lines[1].starts_with("produce") && lines[1].contains("µs"));
        assert!(lines[2].contains(" -"));
        let width = |l: &str| l.chars().count();
        assert_eq!(width(lines[0]), width(lines[1]), "{t}");
    }
}
