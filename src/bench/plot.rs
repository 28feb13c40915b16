//! The latency percentile spectrum as an ASCII plot for the terminal: x is the percentile on
//! HdrHistogram's usual "nines" scale (0%, 90%, 99%, 99.9%, …), y the latency on a log scale, so
//! the median and the worst case both stay readable. The last column is always the maximum.

use hdrhistogram::Histogram;

use super::report::format_us;

/// Columns of the plot area.
pub const PLOT_WIDTH: usize = 64;
/// Rows of the plot area.
pub const PLOT_HEIGHT: usize = 12;
/// The highest percentile plotted: 99.999% (five nines).
const MAX_NINES: f64 = 5.0;
/// Width of the latency labels left of the axis.
const LABEL_WIDTH: usize = 10;

/// The x position (in nines) of quantile `q`: 0 → 0, 0.9 → 1, 0.99 → 2, …
fn nines(q: f64) -> f64 {
    -(1.0 - q).log10()
}

/// The plot of a histogram of nanoseconds, or `None` when it holds nothing. Percentiles beyond
/// what the sample count supports (99.99% needs 10,000 samples) are not drawn.
pub fn percentile_plot(h: &Histogram<u64>) -> Option<String> {
    if h.is_empty() {
        return None;
    }
    let span = (h.len() as f64).log10().clamp(1.0, MAX_NINES);
    // Columns 0..=last cover 0 to `span` nines; the last one is the maximum.
    let last = PLOT_WIDTH - 2;
    let values: Vec<f64> = (0..PLOT_WIDTH)
        .map(|c| {
            let q = if c > last {
                1.0
            } else {
                1.0 - 10f64.powf(-(c as f64 / last as f64 * span))
            };
            (h.value_at_quantile(q).max(1) as f64) / 1e3
        })
        .collect();
    let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let mut hi = values.iter().cloned().fold(0.0, f64::max);
    if hi <= lo * 1.01 {
        hi = lo * 2.0;
    }
    let (ln_lo, ln_hi) = (lo.ln(), hi.ln());
    let row_of = |v: f64| {
        let frac = (v.ln() - ln_lo) / (ln_hi - ln_lo);
        PLOT_HEIGHT - 1 - (frac * (PLOT_HEIGHT - 1) as f64).round() as usize
    };
    let mut grid = vec![vec![' '; PLOT_WIDTH]; PLOT_HEIGHT];
    let mut prev: Option<usize> = None;
    for (c, &v) in values.iter().enumerate() {
        let r = row_of(v);
        if let Some(p) = prev {
            for row in grid.iter_mut().take(p).skip(r + 1) {
                row[c] = '|';
            }
        }
        grid[r][c] = '*';
        prev = Some(r);
    }
    let mut out = String::from("latency by percentile (log scale)\n");
    for (r, row) in grid.iter().enumerate() {
        let label = if r == 0 || r == PLOT_HEIGHT - 1 || r == PLOT_HEIGHT / 2 {
            let frac = (PLOT_HEIGHT - 1 - r) as f64 / (PLOT_HEIGHT - 1) as f64;
            format_us((ln_lo + frac * (ln_hi - ln_lo)).exp())
        } else {
            String::new()
        };
        let line: String = row.iter().collect();
        out.push_str(&format!("{label:>LABEL_WIDTH$} |{}\n", line.trim_end()));
    }
    out.push_str(&format!(
        "{:>LABEL_WIDTH$} +{}\n",
        "",
        "-".repeat(PLOT_WIDTH)
    ));
    let mut ticks = vec![' '; PLOT_WIDTH + 12];
    for (label, q) in [
        ("0%", 0.0),
        ("90%", 0.9),
        ("99%", 0.99),
        ("99.9%", 0.999),
        ("99.99%", 0.9999),
        ("99.999%", 0.99999),
        ("max", 1.0),
    ] {
        let col = if q == 1.0 {
            PLOT_WIDTH + 5 // right of the last column, clear of the 99.999% tick
        } else {
            let x = nines(q);
            if x > span + 1e-9 {
                continue;
            }
            (x / span * last as f64).round() as usize
        };
        let start = col
            .saturating_sub(label.len() / 2)
            .min(ticks.len() - label.len());
        if ticks[start.saturating_sub(1)..start + label.len()]
            .iter()
            .all(|&c| c == ' ')
        {
            for (i, ch) in label.chars().enumerate() {
                ticks[start + i] = ch;
            }
        }
    }
    let ticks: String = ticks.into_iter().collect();
    out.push_str(&format!("{:>LABEL_WIDTH$}  {}\n", "", ticks.trim_end()));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::meter::histogram;

    #[test]
    fn the_plot_rises_to_the_maximum_and_labels_its_axes() {
        let mut h = histogram();
        for v in 1..=100_000u64 {
            h.record(v * 10).unwrap(); // 10 ns .. 1 ms
        }
        h.record(50_000_000).unwrap(); // one 50 ms outlier
        let plot = percentile_plot(&h).unwrap();
        let lines: Vec<&str> = plot.lines().collect();
        assert_eq!(lines.len(), 1 + PLOT_HEIGHT + 2, "{plot}");
        assert!(
            lines[1].trim_start().starts_with("50") && lines[1].contains(" ms"),
            "top label is the max: {plot}"
        );
        assert!(
            lines[1].trim_end().ends_with('*'),
            "the max is top right: {plot}"
        );
        let axis = lines.last().unwrap();
        for tick in ["0%", "90%", "99%", "99.9%", "99.99%", "max"] {
            assert!(axis.contains(tick), "tick {tick} in {axis:?}");
        }
        // Non-decreasing: each column's point is no lower than the one before.
        let rows_of_points: Vec<usize> = (0..PLOT_WIDTH)
            .map(|c| {
                (1..=PLOT_HEIGHT)
                    .find(|&r| lines[r].chars().nth(LABEL_WIDTH + 2 + c) == Some('*'))
                    .unwrap_or_else(|| panic!("column {c} has a point: {plot}"))
            })
            .collect();
        assert!(rows_of_points.windows(2).all(|w| w[1] <= w[0]), "{plot}");
    }

    #[test]
    fn short_runs_plot_only_the_percentiles_they_support_and_empty_ones_none() {
        let mut h = histogram();
        for v in 1..=500u64 {
            h.record(v * 1_000).unwrap();
        }
        let plot = percentile_plot(&h).unwrap();
        let axis = plot.lines().last().unwrap();
        assert!(axis.contains("99%") && !axis.contains("99.9%"), "{axis}");
        assert!(percentile_plot(&histogram()).is_none());
        let mut flat = histogram();
        flat.record_n(1_000, 50).unwrap();
        assert!(percentile_plot(&flat).is_some());
    }
}
