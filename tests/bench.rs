//! `strata bench` end to end: the real binary against a real broker on free ports in a temporary
//! directory, a few seconds per workload. Checks that records were delivered and the reports are
//! well formed (JSON keys, HDR interval log); never asserts speed.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{wait_deadline, Broker};
use serde_json::Value;

/// Longest any one bench command may run before the test fails instead of hanging.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `strata bench ARGS` to completion (bounded by [`COMMAND_TIMEOUT`]).
fn bench(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("bench")
        .args(args)
        .env_remove("STRATA_BROKER")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let status = wait_deadline(&mut child, COMMAND_TIMEOUT).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("strata bench {args:?} did not finish within {COMMAND_TIMEOUT:?}")
    });
    Output {
        status,
        stdout: std::fs::read(out).unwrap(),
        stderr: std::fs::read(err).unwrap(),
    }
}

/// Runs a bench command that must succeed and returns its `--json` report.
/// One second of `strata bench net` in latency mode: `[rate, request bytes, warm-up seconds]`
/// and `extra` flags; its JSON report (written in `dir`) and printed table.
fn net_latency(
    dir: &Path,
    [rate, request_bytes, warmup]: [&str; 3],
    extra: &[&str],
) -> (Value, String) {
    let json = dir.join("net-latency.json");
    let mut args = vec![
        "net",
        "--rate",
        rate,
        "--request-bytes",
        request_bytes,
        "--duration",
        "1",
        "--warmup",
        warmup,
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    bench_json(&args, &json)
}

fn bench_json(args: &[&str], json: &Path) -> (Value, String) {
    let out = bench(args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "strata bench {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(json).expect("the JSON report was written");
    (
        serde_json::from_str(&text).expect("the report is JSON"),
        stdout,
    )
}

/// The keys the issue names, with records delivered.
#[track_caller]
fn assert_report(v: &Value) {
    for key in ["records_per_sec", "bytes_per_sec", "records", "duration_s"] {
        assert!(v[key].is_number(), "{key} in {v:#}");
    }
    for key in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        assert!(
            v["latency_us"][key].is_number(),
            "latency_us.{key} in {v:#}"
        );
    }
    assert!(
        v["records"].as_u64().unwrap() > 0,
        "records delivered: {v:#}"
    );
    assert!(v["latency_us"]["samples"].as_u64().unwrap() > 0, "{v:#}");
    let l = &v["latency_us"];
    let order: Vec<f64> = ["p50", "p90", "p99", "p999", "p9999", "max"]
        .iter()
        .map(|k| l[k].as_f64().unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "percentiles rise: {l}"
    );
}

/// A whole report: the summary plus the load generator's own CPU use.
#[track_caller]
fn assert_full_report(v: &Value) {
    assert_report(v);
    assert!(v["load_generator_cpu"]["cores"].is_number(), "{v:#}");
}

#[test]
fn produce_consume_and_e2e_against_a_real_broker() {
    let broker = Broker::start(1, &["--fsync", "never"]);
    let addr = broker.addr();
    let dir = tempfile::tempdir().unwrap();
    let json = |name: &str| dir.path().join(name);
    let path = |p: &Path| p.to_str().unwrap().to_string();

    // Closed loop, a fresh topic of 2 partitions, 2 producers.
    let p_json = json("produce.json");
    let (v, table) = bench_json(
        &[
            "produce",
            "--broker",
            &addr,
            "--create-topic",
            "--partitions",
            "2",
            "--producers",
            "2",
            "--record-bytes",
            "100",
            "--batch-records",
            "100",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--json",
            &path(&p_json),
        ],
        &p_json,
    );
    assert_full_report(&v);
    assert_eq!(v["command"], "produce");
    assert_eq!(v["open_loop"], false);
    assert!(
        table.contains("records/s") && table.contains("p99.99"),
        "{table}"
    );
    assert!(
        table.contains("latency by percentile"),
        "the ASCII plot: {table}"
    );
    assert!(table.contains("load generator CPU"), "{table}");

    // The backlog just written, read back by 2 consumers.
    let c_json = json("consume.json");
    let (v, _) = bench_json(
        &[
            "consume",
            "--broker",
            &addr,
            "--consumers",
            "2",
            "--duration",
            "5",
            "--warmup",
            "0",
            "--json",
            &path(&c_json),
        ],
        &c_json,
    );
    assert_full_report(&v);
    assert!(v["backlog_records"].as_i64().unwrap() > 0);
    assert!(v["records"].as_i64().unwrap() <= v["backlog_records"].as_i64().unwrap());

    // Open loop end to end on a fresh topic, with the HDR interval log.
    let e_json = json("e2e.json");
    let hlog = json("e2e.hlog");
    let (v, table) = bench_json(
        &[
            "e2e",
            "--broker",
            &addr,
            "--create-topic",
            "--rate",
            "20000",
            "--batch-records",
            "50",
            "--record-bytes",
            "64",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--json",
            &path(&e_json),
            "--hdr-log",
            &path(&hlog),
        ],
        &e_json,
    );
    assert_full_report(&v);
    assert_report(&v["produce"]);
    assert_eq!(v["open_loop"], true);
    assert!(v["send_lag_us"]["p99"].is_number(), "{v:#}");
    // How long sends were blocked on the broker: a sample per request, as for the lag.
    let blocked = &v["send_blocked_us"];
    assert!(blocked["p99"].as_f64().unwrap() > 0.0, "{v:#}");
    assert!(blocked["samples"].as_u64().unwrap() > 0, "{v:#}");
    assert!(table.contains("sends blocked on the broker"), "{table}");
    // Every record acknowledged in the window was consumed.
    assert_eq!(v["records"], v["produce"]["records"], "{v:#}");
    assert!(table.contains("coordinated omission corrected"), "{table}");
    let log = std::fs::read_to_string(&hlog).unwrap();
    assert!(log.contains("#[BaseTime:"), "{log}");
    assert!(log.lines().any(|l| l.starts_with("Tag=e2e,")), "{log}");
    assert!(log.lines().any(|l| l.starts_with("Tag=produce,")), "{log}");
}

#[test]
fn a_missing_topic_says_how_to_create_it() {
    let broker = Broker::start(1, &[]);
    let out = bench(&[
        "produce",
        "--broker",
        &broker.addr(),
        "--topic",
        "absent",
        "--duration",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--create-topic"), "{stderr}");
}

#[test]
fn disk_measures_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("disk.json");
    let (v, table) = bench_json(
        &[
            "disk",
            "--dir",
            dir.path().to_str().unwrap(),
            "--duration",
            "0.5",
            "--max-file-bytes",
            "67108864",
            "--json",
            json.to_str().unwrap(),
        ],
        &json,
    );
    for key in [
        "write_bytes_per_sec",
        "write_synced_bytes_per_sec",
        "read_bytes_per_sec",
    ] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key} in {v:#}");
    }
    for key in ["p50", "p99", "p999", "max"] {
        assert!(
            v["fdatasync_latency_us"][key].as_f64().unwrap() > 0.0,
            "{v:#}"
        );
    }
    assert!(table.contains("fdatasync"), "{table}");
    // fio runs beside it when installed; its figures are then in the report too.
    if !v["fio"].is_null() {
        assert!(
            v["fio"]["write_bytes_per_sec"].as_f64().unwrap() > 0.0,
            "{v:#}"
        );
    }
    // The scratch directory is gone.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "disk.json")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn net_measures_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("net.json");
    let (v, _) = bench_json(
        &["net", "--duration", "0.3", "--json", json.to_str().unwrap()],
        &json,
    );
    assert!(v["bytes_per_sec"].as_f64().unwrap() > 0.0, "{v:#}");
    assert_eq!(v["mode"], "bandwidth");
}

#[test]
fn net_latency_mode_answers_requests_on_the_timetable() {
    let dir = tempfile::tempdir().unwrap();
    let hlog = dir.path().join("net-latency.hlog");
    let (v, table) = net_latency(
        dir.path(),
        ["1000", "10240", "0.3"],
        &["--hdr-log", hlog.to_str().unwrap()],
    );
    assert_full_report(&v);
    assert_eq!(v["command"], "net");
    assert_eq!(v["mode"], "latency");
    assert_eq!(v["request_bytes"], 10240);
    assert!(v["send_lag_us"]["p99"].is_number(), "{v:#}");
    assert!(v["responder_cpu"]["cores"].is_number(), "{v:#}");
    // Every request of the window was answered, warm-up ones too.
    assert!(v["requests_sent"].as_u64().unwrap() > v["records"].as_u64().unwrap());
    assert_eq!(
        v["bytes"].as_u64(),
        v["records"].as_u64().map(|r| r * 10240)
    );
    assert!(
        table.contains("requests/s") && table.contains("p99.99"),
        "{table}"
    );
    assert!(table.contains("coordinated omission corrected"), "{table}");
    assert!(table.contains("send lag behind the timetable"), "{table}");
    let log = std::fs::read_to_string(&hlog).unwrap();
    assert!(log.lines().any(|l| l.starts_with("Tag=net,")), "{log}");

    // With --disk-dir each request is written first; the scratch file is gone afterwards.
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let (v, table) = net_latency(
        dir.path(),
        ["200", "10000", "0.2"],
        &["-q", "--disk-dir", disk.to_str().unwrap()],
    );
    assert_full_report(&v);
    assert_eq!(v["disk_write_bytes"], 12288, "{v:#}");
    assert_eq!(v["disk_fsync"], false, "{v:#}");
    assert!(table.contains("O_DIRECT"), "{table}");
    assert!(!table.contains("fdatasync"), "{table}");
    assert_eq!(std::fs::read_dir(&disk).unwrap().count(), 0);

    // With --fsync each write is also synced, into a file written out first; gone afterwards.
    let (v, table) = net_latency(
        dir.path(),
        ["200", "4200", "0.2"],
        &["-q", "--disk-dir", disk.to_str().unwrap(), "--fsync"],
    );
    assert_full_report(&v);
    assert_eq!(v["disk_write_bytes"], 8192, "{v:#}");
    assert_eq!(v["disk_fsync"], true, "{v:#}");
    assert!(v["requests_sent"].as_u64().unwrap() > v["records"].as_u64().unwrap());
    assert!(
        table.contains("O_DIRECT pwrite of it and an fdatasync"),
        "{table}"
    );
    assert!(table.contains("written out and synced first"), "{table}");
    assert_eq!(std::fs::read_dir(&disk).unwrap().count(), 0);

    // With --disk-writers several writes are in flight; acks still come in request order (the
    // ack reader fails the run otherwise).
    let (v, table) = net_latency(
        dir.path(),
        ["400", "10000", "0.2"],
        &[
            "-q",
            "--disk-dir",
            disk.to_str().unwrap(),
            "--disk-writers",
            "4",
        ],
    );
    assert_full_report(&v);
    assert_eq!(v["disk_writers"], 4, "{v:#}");
    assert!(table.contains("up to 4 writes in flight"), "{table}");
    assert_eq!(std::fs::read_dir(&disk).unwrap().count(), 0);
}

#[test]
fn net_disk_writers_need_a_disk_dir_and_no_fsync() {
    for args in [
        &["net", "--rate", "100", "--disk-writers", "4"][..],
        &[
            "net",
            "--rate",
            "100",
            "--disk-dir",
            "/tmp",
            "--fsync",
            "--disk-writers",
            "4",
        ],
    ] {
        let out = bench(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--disk-writers"), "{args:?}: {stderr}");
    }
}

#[test]
fn net_fsync_without_a_disk_dir_is_a_usage_error() {
    for args in [
        &["net", "--rate", "100", "--fsync"][..],
        &["net", "--fsync"],
    ] {
        let out = bench(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--disk-dir"), "{args:?}: {stderr}");
    }
}
