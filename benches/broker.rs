//! Broker benchmark: produce throughput through a real `strata broker` over loopback, next to the
//! storage engine's own append throughput for the same batches, measured in the same run.
//!
//! Run: `cargo bench --bench broker -- [--dir DIR] [--seconds S] [--depth N]`.
//!
//! Shapes, each for `--seconds`, under `--fsync never` and then `always`:
//! 1. the storage engine: `PartitionLog::append` of 1000-record batches of 1 KiB values, `--depth`
//!    appends in flight, on one executor in this process;
//! 2. the broker: a `strata broker` child process (one data shard) on a fresh data dir, one
//!    client connection pipelining `--depth` produce requests of the same batch to a
//!    one-partition topic, each acknowledged per the fsync policy.
//!
//! Nothing is asserted: it prints figures and the ratio (target: the broker at >= 0.80 of the
//! storage engine). Everything it writes is deleted when it ends.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;

mod common;

use common::{start_broker, BenchResult};
use strata::client::Connection;
use strata::protocol::{Acks, ProduceRequest, RequestBody, TopicSpec};
use strata::record::BatchBuilder;
use strata::runtime::run_local;
use strata::storage::{FsyncPolicy, LogConfig, PartitionLog};

/// Value bytes of each record.
const RECORD_BYTES: usize = 1024;
/// Records per batch.
const RECORDS_PER_BATCH: usize = 1000;
const DEFAULT_DIR: &str = "target/bench-data";
const DEFAULT_SECONDS: f64 = 4.0;
/// Produce requests (or appends) in flight.
const DEFAULT_DEPTH: usize = 8;
/// MB/s as fio prints it.
const MB: f64 = 1e6;
const TOPIC: &str = "bench";

struct Args {
    dir: PathBuf,
    run_for: Duration,
    depth: usize,
}

impl Args {
    fn parse() -> BenchResult<Args> {
        let mut args = Args {
            dir: PathBuf::from(DEFAULT_DIR),
            run_for: Duration::from_secs_f64(DEFAULT_SECONDS),
            depth: DEFAULT_DEPTH,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--bench" => {}
                "--dir" => args.dir = PathBuf::from(value()?),
                "--seconds" => args.run_for = Duration::try_from_secs_f64(value()?.parse()?)?,
                "--depth" => args.depth = value()?.parse::<usize>()?.max(1),
                "-h" | "--help" => {
                    println!("cargo bench --bench broker -- [--dir DIR] [--seconds S] [--depth N]");
                    std::process::exit(0);
                }
                _ => return Err(format!("unknown argument {arg:?}").into()),
            }
        }
        Ok(args)
    }
}

/// What one shape moved and how long it took, with per-request latency.
struct Run {
    bytes: u64,
    batches: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Run {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / MB / self.elapsed.as_secs_f64()
    }

    fn print(&self, what: &str) {
        let us = |q| self.latency.value_at_quantile(q) as f64 / 1e3;
        println!(
            "{what:<44} {:8.1} MB/s {:8.0} records/s  latency p50/p99/p99.9 {:.0}/{:.0}/{:.0} µs",
            self.mb_per_s(),
            (self.batches * RECORDS_PER_BATCH as u64) as f64 / self.elapsed.as_secs_f64(),
            us(0.5),
            us(0.99),
            us(0.999)
        );
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

fn batch() -> BytesMut {
    let ts = strata::clock::now_ms();
    let value = vec![b'x'; RECORD_BYTES];
    let mut b = BatchBuilder::new();
    for i in 0..RECORDS_PER_BATCH {
        b.append(ts + i as i64, None, Some(&value), &[]);
    }
    b.finish()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("broker bench failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    let args = Args::parse()?;
    strata::cli::preflight(1)?;
    let scratch = args
        .dir
        .join(format!("broker-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let template = batch();
    println!(
        "broker bench: {} records of {RECORD_BYTES} B per batch ({} bytes), {} in flight, {:?} per shape, in {}",
        RECORDS_PER_BATCH,
        template.len(),
        args.depth,
        args.run_for,
        scratch.display()
    );
    let result = (|| -> BenchResult<()> {
        for fsync in [FsyncPolicy::Never, FsyncPolicy::Always] {
            let engine = bench_engine(
                &scratch.join(format!("engine-{fsync}")),
                fsync,
                &template,
                &args,
            )?;
            engine.print(&format!("storage engine append, fsync {fsync}"));
            let broker = bench_broker(
                &scratch.join(format!("broker-{fsync}")),
                fsync,
                &template,
                &args,
            )?;
            broker.print(&format!("broker produce over loopback, fsync {fsync}"));
            println!(
                "  ratio broker / engine, fsync {fsync}: {:.2}  (target >= 0.80)",
                broker.mb_per_s() / engine.mb_per_s()
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn bench_engine(
    dir: &Path,
    fsync: FsyncPolicy,
    template: &BytesMut,
    args: &Args,
) -> BenchResult<Run> {
    let config = LogConfig {
        fsync,
        retention_ms: None,
        ..LogConfig::default()
    };
    let (template, depth, run_for) = (template.clone(), args.depth, args.run_for);
    let log_dir = dir.to_path_buf();
    let run = run_local("bench-engine", async move {
        let log = PartitionLog::open(&log_dir, config).await?;
        let mut latency = histogram();
        let (mut bytes, mut batches) = (0u64, 0u64);
        let start = Instant::now();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < depth && start.elapsed() < run_for {
                let log = log.clone();
                let b = template.clone();
                in_flight.push(async move {
                    let t = Instant::now();
                    log.append(b).await.map(|_| t.elapsed())
                });
            }
            match in_flight.next().await {
                Some(res) => {
                    let took = res?;
                    latency.saturating_record(took.as_nanos() as u64);
                    bytes += template.len() as u64;
                    batches += 1;
                }
                None => break,
            }
        }
        let elapsed = start.elapsed();
        log.close().await?;
        Ok::<Run, strata::storage::StorageError>(Run {
            bytes,
            batches,
            elapsed,
            latency,
        })
    })??;
    let _ = std::fs::remove_dir_all(dir);
    Ok(run)
}

fn bench_broker(
    dir: &Path,
    fsync: FsyncPolicy,
    template: &BytesMut,
    args: &Args,
) -> BenchResult<Run> {
    let broker = start_broker(dir, &["--fsync", &fsync.to_string()])?;
    let mut conn = Connection::connect(&broker.addr)?;
    conn.create_topic(TopicSpec {
        name: TOPIC.into(),
        partitions: 1,
        retention_bytes: None,
        retention_ms: None,
        segment_bytes: None,
    })?;
    let payload = [Bytes::from(template.clone())];
    let body = || {
        RequestBody::Produce(ProduceRequest {
            topic: TOPIC.into(),
            partition: 0,
            acks: Acks::Leader,
            timeout_ms: 30_000,
        })
    };
    let mut latency = histogram();
    let mut sent_at = std::collections::VecDeque::new();
    let (mut bytes, mut batches) = (0u64, 0u64);
    let start = Instant::now();
    loop {
        while conn.in_flight() < args.depth && start.elapsed() < args.run_for {
            conn.send(body(), &payload)?;
            sent_at.push_back(Instant::now());
        }
        if conn.in_flight() == 0 {
            break;
        }
        conn.receive_ok()?;
        let t = sent_at.pop_front().expect("one send time per request");
        latency.saturating_record(t.elapsed().as_nanos() as u64);
        bytes += template.len() as u64;
        batches += 1;
    }
    let elapsed = start.elapsed();
    drop(conn);
    drop(broker);
    let _ = std::fs::remove_dir_all(dir);
    Ok(Run {
        bytes,
        batches,
        elapsed,
        latency,
    })
}
