//! Running `fio` as a yardstick: one sequential, time-based job on a file with O_DIRECT, and
//! its JSON report read back. Shared by `strata bench disk` and `benches/storage.rs`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::error::{BenchError, Result};
use super::report::LatencyUs;

/// fio's engine for queued O_DIRECT I/O (the nearest to strata's io_uring).
pub const QUEUED_ENGINE: &str = "io_uring";
/// fio's engine for shapes where each `fdatasync` must follow the writes it covers.
pub const ORDERED_ENGINE: &str = "psync";

/// One sequential, time-based fio job on a fresh file with O_DIRECT. Invariant: `depth` is 1
/// unless `engine` is queued (io_uring).
#[derive(Debug, Clone, Copy)]
pub struct FioJob {
    pub name: &'static str,
    pub engine: &'static str,
    pub read: bool,
    pub block: u64,
    pub depth: usize,
    pub fdatasync_every: Option<usize>,
    /// fio lays the file out with writes first (`--overwrite=1`), so the job's writes overwrite
    /// written blocks, as strata's durable appends do (on a fresh preallocated file each write
    /// would convert an unwritten extent, and each `fdatasync` commit that to the journal).
    pub overwrite: bool,
    /// File size; fio loops over it if it gets to the end before `run_for` has passed.
    pub size: u64,
    pub run_for: Duration,
    /// Operations one fio I/O stands for (for rates compared with strata's operations).
    pub ops_per_io: usize,
}

/// The figures of one fio job.
#[derive(Debug, Clone)]
pub struct FioReport {
    pub bytes_per_s: f64,
    /// Operations per second this job stands for (one I/O may stand for several).
    pub ops_per_s: f64,
    /// Completion latency of the job's reads or writes.
    pub io_latency: Option<LatencyUs>,
    /// Latency of its `fdatasync`s, when it issued any.
    pub sync_latency: Option<LatencyUs>,
}

/// `fio --version`, or `None` when fio cannot be run.
pub fn version() -> Option<String> {
    let out = Command::new("fio").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs `job` on `file` (created by fio, deleted afterwards) and parses its report.
pub fn run(job: &FioJob, file: &Path) -> Result<FioReport> {
    let out = command(job, file).output();
    let _ = std::fs::remove_file(file);
    let out = out.map_err(|e| BenchError::Fio(format!("cannot run fio: {e}")))?;
    if !out.status.success() {
        return Err(BenchError::Fio(format!(
            "job {} failed: {}",
            job.name,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse(&String::from_utf8_lossy(&out.stdout), job)
}

/// The fio command line of `job` on `file`.
fn command(job: &FioJob, file: &Path) -> Command {
    let mut cmd = Command::new("fio");
    cmd.arg(format!("--name={}", job.name))
        // fio splits --filename on ':'.
        .arg(format!(
            "--filename={}",
            file.display().to_string().replace(':', "\\:")
        ))
        .arg(format!("--ioengine={}", job.engine))
        .args(["--direct=1", "--output-format=json"])
        .arg(format!("--rw={}", if job.read { "read" } else { "write" }))
        .arg(format!("--bs={}", job.block))
        .arg(format!("--iodepth={}", job.depth))
        .arg(format!("--size={}", job.size));
    if let Some(n) = job.fdatasync_every {
        cmd.arg(format!("--fdatasync={n}"));
    }
    if job.overwrite {
        cmd.arg("--overwrite=1");
    }
    cmd.arg(format!("--runtime={}ms", job.run_for.as_millis()))
        .arg("--time_based");
    cmd
}

/// Reads fio's `--output-format=json` report of a single job.
pub fn parse(stdout: &str, job: &FioJob) -> Result<FioReport> {
    let json = stdout
        .find('{')
        .map(|i| &stdout[i..])
        .ok_or_else(|| BenchError::Fio("no JSON in fio's output".into()))?;
    let report: Value =
        serde_json::from_str(json).map_err(|e| BenchError::Fio(format!("bad JSON: {e}")))?;
    let j = &report["jobs"][0];
    if j["error"].as_i64() != Some(0) {
        return Err(BenchError::Fio(format!(
            "fio reported error {}",
            j["error"]
        )));
    }
    let io = &j[if job.read { "read" } else { "write" }];
    let number = |v: &Value| {
        v.as_f64()
            .ok_or_else(|| BenchError::Fio(format!("the report lacks a number: {v}")))
    };
    Ok(FioReport {
        bytes_per_s: number(&io["bw_bytes"])?,
        ops_per_s: number(&io["iops"])? * job.ops_per_io as f64,
        io_latency: latency(&io["clat_ns"]),
        sync_latency: latency(&j["sync"]["lat_ns"]),
    })
}

/// Percentiles of one of fio's `*_ns` latency objects, when it recorded any.
fn latency(v: &Value) -> Option<LatencyUs> {
    let samples = v["N"].as_u64().unwrap_or(0);
    if samples == 0 {
        return None;
    }
    let us = |key: &str| v["percentile"][key].as_f64().map(|ns| ns / 1e3);
    Some(LatencyUs {
        p50: us("50.000000")?,
        p90: us("90.000000")?,
        p99: us("99.000000")?,
        p999: us("99.900000")?,
        p9999: us("99.990000")?,
        max: v["max"].as_f64()? / 1e3,
        mean: v["mean"].as_f64()? / 1e3,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4 KiB write + fdatasync job standing for 2 operations per I/O.
    fn sync_job(overwrite: bool) -> FioJob {
        FioJob {
            name: "t",
            engine: ORDERED_ENGINE,
            read: false,
            block: 4096,
            depth: 1,
            fdatasync_every: Some(1),
            overwrite,
            size: 1 << 20,
            run_for: Duration::from_secs(1),
            ops_per_io: 2,
        }
    }

    fn args(job: &FioJob) -> Vec<String> {
        command(job, Path::new("/d/a:b"))
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn overwrite_lays_the_file_out_first() {
        let on = args(&sync_job(true));
        assert!(on.iter().any(|a| a == "--overwrite=1"), "{on:?}");
        assert!(on.iter().any(|a| a == "--fdatasync=1"), "{on:?}");
        assert!(on.iter().any(|a| a == "--filename=/d/a\\:b"), "{on:?}");
        let off = args(&sync_job(false));
        assert!(!off.iter().any(|a| a.starts_with("--overwrite")), "{off:?}");
    }

    #[test]
    fn reads_fio_json_with_sync_latency() {
        let job = sync_job(true);
        let pct = |base: f64| {
            serde_json::json!({"50.000000": base, "90.000000": base * 2.0, "99.000000": base * 3.0,
                "99.900000": base * 4.0, "99.990000": base * 5.0})
        };
        let report = serde_json::json!({"jobs": [{"error": 0,
            "write": {"bw_bytes": 4.0e6, "iops": 1000.0,
                      "clat_ns": {"N": 10, "max": 9000.0, "mean": 1500.0, "percentile": pct(1000.0)}},
            "sync": {"lat_ns": {"N": 10, "max": 90000.0, "mean": 15000.0, "percentile": pct(10000.0)}}}]});
        let text = format!("fio-3.33 noise\n{report}");
        let r = parse(&text, &job).unwrap();
        assert_eq!(r.bytes_per_s, 4.0e6);
        assert_eq!(r.ops_per_s, 2000.0);
        let io = r.io_latency.unwrap();
        assert_eq!((io.p50, io.p99, io.max, io.samples), (1.0, 3.0, 9.0, 10));
        let sync = r.sync_latency.unwrap();
        assert_eq!((sync.p50, sync.p9999), (10.0, 50.0));
        assert!(parse("no json", &job).is_err());
    }
}
