//! Running a workload's report: a progress line per second per meter (stderr) and the HDR
//! interval log while the load runs; at the end the human report (stdout, or stderr when the
//! JSON goes to stdout) and the `--json` file.

use std::io::Write;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::clock::{now_ns, sleep_until_ns, NS_PER_SEC};
use super::error::{BenchError, Result};
use super::hdrlog::HdrLog;
use super::meter::Meter;
use super::report::progress_line;
use super::workload::{all_finished, join_all};

/// Seconds between progress lines and between HDR log intervals.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// How often the watcher checks whether the load has finished.
const DONE_POLL_NS: u64 = 20_000_000;

/// The `--json` path that means standard output.
pub const STDOUT: &str = "-";

/// The end of a load run by one set of threads: [`watch`]es `meter` until every thread has
/// finished, joins them, then closes the HDR log. The first error of the three is returned.
pub fn watch_and_join(
    meter: (&str, &Meter),
    start_ns: u64,
    window_start_ns: u64,
    mut hdr: Option<HdrLog>,
    quiet: bool,
    handles: Vec<JoinHandle<Result<()>>>,
) -> Result<()> {
    let watched = watch(
        &[meter],
        start_ns,
        window_start_ns,
        hdr.as_mut(),
        quiet,
        || Ok(all_finished(&handles)),
    );
    let joined = join_all(handles);
    watched?;
    joined?;
    if let Some(h) = hdr {
        h.finish()?;
    }
    Ok(())
}

/// Prints a progress line per meter every [`INTERVAL`] from `start_ns` until `done()` is true,
/// and writes each measured interval (from `window_start_ns` on) to `hdr`, tagged with the
/// meter's name. `done` is called often; it may do the work that ends the run.
pub fn watch(
    meters: &[(&str, &Meter)],
    start_ns: u64,
    window_start_ns: u64,
    mut hdr: Option<&mut HdrLog>,
    quiet: bool,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let step = INTERVAL.as_nanos() as u64;
    let mut whole = 1u64;
    let mut prev = start_ns;
    loop {
        // The next tick: the next whole interval, or the end of warm-up if that comes first.
        let mut tick = start_ns + whole * step;
        if prev < window_start_ns && window_start_ns < tick {
            tick = window_start_ns;
        }
        let mut finished = done()?;
        while !finished && now_ns() < tick {
            sleep_until_ns(tick.min(now_ns() + DONE_POLL_NS));
            finished = done()?;
        }
        let now = now_ns();
        if now >= start_ns + whole * step {
            whole = (now - start_ns) / step + 1;
        }
        let (at_s, length) = ((now - start_ns) as f64 / NS_PER_SEC as f64, now - prev);
        for (name, meter) in meters {
            let interval = meter.take_interval();
            if !quiet {
                eprintln!(
                    "{}",
                    progress_line(
                        at_s,
                        name,
                        &interval,
                        length as f64 / NS_PER_SEC as f64,
                        prev < window_start_ns
                    )
                );
            }
            if let Some(log) = hdr.as_deref_mut() {
                if prev >= window_start_ns && !interval.latency.is_empty() {
                    log.interval(
                        &interval.latency,
                        Duration::from_nanos(prev - start_ns),
                        Duration::from_nanos(length),
                        name,
                    )?;
                }
            }
        }
        prev = now;
        if finished {
            return Ok(());
        }
    }
}

/// Opens the `--hdr-log` file, if asked for.
pub fn open_hdr_log(path: Option<&Path>, command: &str) -> Result<Option<HdrLog>> {
    path.map(|p| {
        HdrLog::create(
            p,
            SystemTime::now(),
            &format!("strata bench {command}: interval histograms of latency"),
        )
    })
    .transpose()
}

/// Prints the human report and writes the JSON where `--json` said.
pub fn emit(human: &str, json: &Value, json_path: Option<&Path>) -> Result<()> {
    let to_stdout = json_path.is_some_and(|p| p == Path::new(STDOUT));
    if to_stdout {
        eprint!("{human}");
        let mut out = std::io::stdout().lock();
        writeln!(out, "{json:#}").map_err(|e| BenchError::io("writing the JSON report", e))?;
    } else {
        print!("{human}");
        if let Some(p) = json_path {
            std::fs::write(p, format!("{json:#}\n"))
                .map_err(|e| BenchError::io(format!("writing {}", p.display()), e))?;
        }
    }
    Ok(())
}
