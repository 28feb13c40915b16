//! Storage benchmark: strata's `PartitionLog` against `fio` on the same directory, each strata
//! shape followed at once by fio's nearest shape, so the ratios come from one run of a noisy disk.
//!
//! Run: `scripts/bench-storage.sh [DIR] [OPTIONS]` (installs fio when missing), or
//! `cargo bench --bench storage -- --dir DIR [--seconds S] [--pairs N] [--depth N] [--appenders N]`.
//!
//! Shapes, strata and fio each measured for `--seconds` (fio time-based, on a fresh file). The
//! two 1 MiB append shapes alternate strata and fio `--pairs` times and show the pair with the
//! median ratio, beside every pair's ratio: the disk's speed swings by half over seconds here.
//! 1. appends of 1 MiB batches (1024 records of 1 KiB) under `FsyncPolicy::Never`, `--depth`
//!    appends in flight; fio: sequential 1 MiB O_DIRECT writes through io_uring at queue depth
//!    `--depth`, on a file preallocated to `--max-write-bytes`, as strata's segments are;
//! 2. the same under `Always`. Every append is acknowledged after an `fdatasync` that covers it,
//!    so fio must order each sync after the writes it covers. fio's `fdatasync=N` at iodepth > 1
//!    on io_uring does not (the sync is issued while writes are still in flight), so the
//!    yardstick is the psync engine writing `--depth` MiB per write (the kernel splits it into
//!    concurrent device requests) followed by an `fdatasync` each time: the same bytes and
//!    syncs, each sync after its writes, overwriting written blocks (below);
//! 3. reads of cold segments (the log reopened without its cache, so every read hits the disk),
//!    1 MiB per read, `--depth` in flight; fio reads 1 MiB blocks at the same depth;
//! 4. group commit: 4 KiB batches under `Always` from 1 appender (fio: psync, 4 KiB overwrite
//!    then `fdatasync`) and from `--appenders` appenders (fio: psync, one overwrite of
//!    `--appenders` × 4 KiB then `fdatasync`, counted as `--appenders` appends), with append
//!    latency percentiles beside fio's write and sync latencies, printed apart.
//!
//! fio's yardsticks for `Always` (2 and 4) overwrite written blocks: fio writes a small file
//! (`FIO_OVERWRITE_FILE_BYTES`) out first (`--overwrite=1`) and loops over it, back to offset 0
//! at its end. Under `Always` the engine zeroes the active segment ahead of its tail so that
//! durable appends overwrite written blocks too: on ext4 a write into a preallocated
//! (unwritten) extent costs an extent conversion, and the `fdatasync` after it a journal
//! commit, about half the rate of an overwrite on the project's machine. Overwriting is the
//! disk's best durable-append shape, so it is the limit to print beside strata. The file is
//! small because laying out GiBs would take seconds; every lap still overwrites.
//!
//! Nothing is asserted: it prints figures, ratios and the targets of the issue. Everything it
//! writes is deleted when it ends, and a run first deletes what killed runs left behind.

use std::cell::Cell;
use std::error::Error;
use std::fmt::Display;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::future::try_join_all;
use hdrhistogram::Histogram;
use strata::bench::fio::{self, FioJob, FioReport};
use strata::bench::report::LatencyUs;
use strata::preflight::{self, Requirements};
use strata::record::{BatchBuilder, ValidBatch};
use strata::runtime::{reactor_turn, run_local, IO_MEMORY_BYTES};
use strata::storage::{FsyncPolicy, LogConfig, PartitionLog};

type BenchResult<T> = Result<T, Box<dyn Error>>;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// Throughput unit: MB/s as fio prints it, 10^6 bytes per second.
const MB: f64 = 1e6;

/// Value bytes of each record of the throughput batches.
const RECORD_BYTES: usize = 1024;
/// Records per throughput batch: 1024 × 1 KiB, about 1 MiB per batch.
const RECORDS_PER_BATCH: usize = 1024;
/// Size of each group-commit batch (one record), the block size of fio's sync runs.
const SMALL_BATCH_BYTES: usize = 4096;
/// fio block size for the sequential shapes.
const FIO_BLOCK_BYTES: u64 = MIB;

const DEFAULT_DIR: &str = "target/bench-data";
/// Name of a run's scratch directory under `--dir`, followed by its process id.
const SCRATCH_PREFIX: &str = "storage-bench-";
const DEFAULT_SECONDS: f64 = 4.0;
/// Alternations of strata and fio in the 1 MiB append shapes.
const DEFAULT_PAIRS: usize = 3;
/// Appends or reads in flight in the 1 MiB shapes (fio's iodepth for them).
const DEFAULT_DEPTH: usize = 4;
/// Concurrent appenders of the group-commit shape.
const DEFAULT_APPENDERS: usize = 16;
/// Largest byte count one write shape may write, so a fast disk does not fill up.
const DEFAULT_MAX_WRITE_BYTES: u64 = 16 << 30;

/// Bytes written, then read back cold.
const READ_SET_BYTES: u64 = 1 << 30;
/// Segment size of the read set: it spans many rolled (closed) segments.
const READ_SEGMENT_BYTES: u64 = 64 << 20;
/// `max_bytes` of each read, as a consumer's per-partition fetch size.
const READ_MAX_BYTES: usize = 1 << 20;
/// Time limit of writing the read set (it stops at `READ_SET_BYTES` long before).
const READ_FILL_LIMIT: Duration = Duration::from_secs(600);
/// Size of fio's file in the shapes paired with `Always`: fio writes it out first
/// (`--overwrite=1`) and loops over it, so every synced write overwrites written blocks. Small,
/// since laying out GiBs would take seconds.
const FIO_OVERWRITE_FILE_BYTES: u64 = 64 * MIB;
/// fio's engine for queued O_DIRECT I/O (the nearest to strata's io_uring).
const FIO_QUEUED_ENGINE: &str = fio::QUEUED_ENGINE;
/// fio's engine for shapes where each `fdatasync` must follow the writes it covers.
const FIO_ORDERED_ENGINE: &str = fio::ORDERED_ENGINE;

/// Largest latency recorded (ns); longer ones are clamped to it.
const LATENCY_MAX_NS: u64 = 60_000_000_000;
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

const USAGE: &str = "\
usage: cargo bench --bench storage -- [--dir DIR] [--seconds S] [--pairs N] [--depth N] [--appenders N] [--max-write-bytes B]
  --dir DIR             directory on the disk to measure (default target/bench-data); a subdirectory
                        storage-bench-PID is created there and deleted at the end (as are
                        those left by killed runs)
  --seconds S           length of each measured shape (default 4)
  --pairs N             alternations of strata and fio for the 1 MiB append shapes; the median
                        pair is shown (default 3)
  --depth N             appends / reads / fio iodepth in flight for the 1 MiB shapes (default 4)
  --appenders N         concurrent appenders of the group-commit shape (default 16)
  --max-write-bytes B   cap on the bytes one write shape writes (default 16 GiB)
";

/// Command-line settings.
#[derive(Debug)]
struct Args {
    dir: PathBuf,
    run_for: Duration,
    pairs: usize,
    depth: usize,
    appenders: usize,
    max_write_bytes: u64,
}

impl Args {
    fn parse() -> BenchResult<Args> {
        let mut args = Args {
            dir: PathBuf::from(DEFAULT_DIR),
            run_for: Duration::from_secs_f64(DEFAULT_SECONDS),
            pairs: DEFAULT_PAIRS,
            depth: DEFAULT_DEPTH,
            appenders: DEFAULT_APPENDERS,
            max_write_bytes: DEFAULT_MAX_WRITE_BYTES,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or(format!("{name} needs a value"))
            };
            match name.as_str() {
                // `cargo bench` passes `--bench` to benches without a harness.
                "--bench" => {}
                "--dir" => args.dir = PathBuf::from(value()?),
                "--seconds" => args.run_for = Duration::try_from_secs_f64(value()?.parse()?)?,
                "--pairs" => args.pairs = positive(&name, value()?.parse()?)?,
                "--depth" => args.depth = positive(&name, value()?.parse()?)?,
                "--appenders" => args.appenders = positive(&name, value()?.parse()?)?,
                "--max-write-bytes" => args.max_write_bytes = value()?.parse()?,
                "-h" | "--help" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                _ => return Err(format!("unknown argument {arg:?}\n{USAGE}").into()),
            }
        }
        Ok(args)
    }
}

fn positive(name: &str, n: usize) -> BenchResult<usize> {
    if n == 0 {
        return Err(format!("{name} must be at least 1").into());
    }
    Ok(n)
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
}

impl Latency {
    /// The subset printed here of a full percentile set (fio's).
    fn from_us(l: LatencyUs) -> Latency {
        Latency {
            p50: l.p50,
            p99: l.p99,
            p999: l.p999,
        }
    }

    fn of(hist: &Histogram<u64>) -> Latency {
        let us = |q| hist.value_at_quantile(q) as f64 / 1e3;
        Latency {
            p50: us(0.50),
            p99: us(0.99),
            p999: us(0.999),
        }
    }
}

impl Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0}/{:.0}/{:.0} µs", self.p50, self.p99, self.p999)
    }
}

/// What one measured strata shape moved, and how long it took.
#[derive(Debug)]
struct Run {
    bytes: u64,
    ops: u64,
    elapsed: Duration,
    latency: Option<Latency>,
}

impl Run {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / MB / self.elapsed.as_secs_f64()
    }

    fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

/// The benchmark's own directory under `--dir`, deleted with everything in it when dropped.
struct Scratch {
    path: PathBuf,
    /// `--dir` itself, when this run created it (removed too if left empty).
    created_root: Option<PathBuf>,
}

impl Scratch {
    fn create(root: &Path) -> BenchResult<Scratch> {
        let created_root = (!root.exists()).then(|| root.to_path_buf());
        remove_stale(root);
        let path = root.join(format!("{SCRATCH_PREFIX}{}", std::process::id()));
        fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Scratch { path, created_root })
    }

    /// An empty subdirectory path for one shape (the log or fio creates it).
    fn fresh(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        remove(&p);
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove(&self.path);
        if let Some(root) = &self.created_root {
            let _ = fs::remove_dir(root);
        }
    }
}

/// Deletes the scratch directories under `root` of bench runs that were killed (their process
/// is gone, so their `Drop` never ran): a killed run at full speed leaves GBs behind.
fn remove_stale(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SCRATCH_PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!(
                "removing {}, left by an interrupted run",
                entry.path().display()
            );
            remove(&entry.path());
        }
    }
}

/// Deletes a file or directory tree if it exists.
fn remove(path: &Path) {
    let _ = fs::remove_dir_all(path).or_else(|_| fs::remove_file(path));
}

fn main() {
    if let Err(e) = run() {
        eprintln!("storage bench failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    let args = Args::parse()?;
    init_logging();
    preflight::ensure(&Requirements {
        executors: 1,
        io_memory_bytes: IO_MEMORY_BYTES,
    })?;
    let scratch = Scratch::create(&args.dir)?;
    let fio_found = fio::version();
    print_header(&args, &scratch, fio_found.as_deref());
    let fio_on = fio_found.is_some();
    let mut rows = Vec::new();

    let never = alternate(
        &args,
        || bench_append_throughput(&args, &scratch, FsyncPolicy::Never),
        fio_on.then_some(|| fio_write_queued(&args, &scratch)),
    )?;
    rows.push(never.row(
        format!("append 1 MiB batches, never, {} in flight", args.depth),
        "target ≥ 0.90 of fio",
    ));

    let always = alternate(
        &args,
        || bench_append_throughput(&args, &scratch, FsyncPolicy::Always),
        fio_on.then_some(|| fio_write_synced(&args, &scratch)),
    )?;
    rows.push(always.row(
        format!("append 1 MiB batches, always, {} in flight", args.depth),
        &format!(
            "fio: psync, {} MiB overwrite + fdatasync",
            args.depth as u64 * FIO_BLOCK_BYTES / MIB
        ),
    ));

    let read = bench_cold_read(&args, &scratch)?;
    let fio_read = fio_on.then(|| fio_read_like(&args, &scratch)).transpose()?;
    rows.push(throughput_row(
        format!("cold read, 1 MiB reads, {} in flight", args.depth),
        &read,
        fio_read.as_ref(),
        "",
    ));

    let one = bench_group_commit(&args, &scratch, 1)?;
    let fio_one = fio_on
        .then(|| fio_group_commit(&args, &scratch, 1))
        .transpose()?;
    let many = bench_group_commit(&args, &scratch, args.appenders)?;
    let fio_many = fio_on
        .then(|| fio_group_commit(&args, &scratch, args.appenders))
        .transpose()?;
    rows.push(rate_row(
        "4 KiB appends, always, 1 appender".into(),
        &one,
        fio_one.as_ref(),
        "fio: psync, 4 KiB overwrite + fdatasync",
    ));
    rows.push(rate_row(
        format!("4 KiB appends, always, {} appenders", args.appenders),
        &many,
        fio_many.as_ref(),
        &format!(
            "fio: psync, {} KiB overwrite + fdatasync = {} appends",
            args.appenders * SMALL_BATCH_BYTES / KIB as usize,
            args.appenders
        ),
    ));
    rows.extend(group_commit_rows(
        &args,
        &one,
        &many,
        fio_one.as_ref(),
        fio_many.as_ref(),
    ));

    print_table(&rows);
    if !fio_on {
        println!("\nfio was not found: only strata's figures are shown (scripts/bench-storage.sh installs fio).");
    }
    Ok(())
}

/// Shows warnings (from strata, and glommio's through `log`) unless RUST_LOG says otherwise.
fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn print_header(args: &Args, scratch: &Scratch, fio: Option<&str>) {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("strata storage bench");
    println!("  directory   {}", scratch.path.display());
    println!("  kernel      {}", kernel.trim());
    println!("  fio         {}", fio.unwrap_or("not found"));
    println!(
        "  shapes      {:.1} s each, 1 MiB append shapes {} times alternated with fio; \
         1 MiB batches = {RECORDS_PER_BATCH} records × {RECORD_BYTES} B; \
         {SMALL_BATCH_BYTES} B batches for group commit; MB = 10^6 B",
        args.run_for.as_secs_f64(),
        args.pairs
    );
    println!();
}

/// Runs one strata shape on a fresh executor of its own.
fn on_executor<T>(
    name: &str,
    fut: impl Future<Output = strata::storage::Result<T>>,
) -> BenchResult<T> {
    Ok(run_local(name, fut)??)
}

/// Settings of every benchmark log: nothing is deleted by age (batches carry fixed timestamps).
fn log_config(fsync: FsyncPolicy) -> LogConfig {
    LogConfig {
        fsync,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// One valid batch of `records` records of `value_bytes` bytes each, no keys.
fn batch(records: usize, value_bytes: usize) -> BytesMut {
    let value: Vec<u8> = (0..value_bytes).map(|i| (i * 131 % 251) as u8).collect();
    let mut b = BatchBuilder::with_capacity(records * (value_bytes + 16) + 128);
    let ts = strata::clock::now_ms();
    for _ in 0..records {
        b.append(ts, None, Some(&value), &[]);
    }
    b.finish()
}

/// The ~1 MiB batch of the throughput shapes.
fn large_batch() -> BytesMut {
    batch(RECORDS_PER_BATCH, RECORD_BYTES)
}

/// A one-record batch of exactly `SMALL_BATCH_BYTES` bytes, so each lands on whole blocks.
fn small_batch() -> BytesMut {
    let overhead = batch(1, 0).len() + 4; // + the value's and record's longer varints
    let b = batch(1, SMALL_BATCH_BYTES - overhead);
    let b = batch(
        1,
        SMALL_BATCH_BYTES - overhead + SMALL_BATCH_BYTES - b.len(),
    );
    assert_eq!(b.len(), SMALL_BATCH_BYTES, "small batch size");
    b
}

/// Appends copies of `template` from `appenders` concurrent appenders until `run_for` has
/// passed or `max_bytes` more would be appended, recording each append's latency.
///
/// Each appender builds and validates its next batch while its current append is in flight,
/// and only after one reactor turn: glommio hands queued I/O to the kernel between scheduler
/// passes, so building a 1 MiB batch (a copy and a CRC, ~0.2 ms) right after an append would
/// hold that append's write, and the writes of every appender woken with it, out of the device
/// queue. A broker reads and checks its next request while the last one is written too; what
/// is measured is the log.
async fn drive_appends(
    log: &PartitionLog,
    template: &[u8],
    appenders: usize,
    run_for: Duration,
    max_bytes: u64,
) -> strata::storage::Result<Run> {
    let budget = Cell::new(max_bytes / template.len() as u64);
    let start = Instant::now();
    let deadline = start + run_for;
    let prepare = || ValidBatch::validate(BytesMut::from(template));
    let appender = || async {
        let mut hist = new_histogram();
        let mut next = prepare()?;
        while Instant::now() < deadline && budget.get() > 0 {
            budget.set(budget.get() - 1);
            let append = async {
                let t = Instant::now();
                log.append_valid(next).await?;
                hist.saturating_record(t.elapsed().as_nanos() as u64);
                Ok::<_, strata::storage::StorageError>(())
            };
            let build_next = async {
                reactor_turn().await;
                prepare()
            };
            let (appended, built) = futures::join!(append, build_next);
            appended?;
            next = built?;
        }
        Ok::<_, strata::storage::StorageError>(hist)
    };
    let hists = try_join_all((0..appenders).map(|_| appender())).await?;
    let elapsed = start.elapsed();
    let mut all = new_histogram();
    for h in &hists {
        all.add(h).expect("histograms share their bounds");
    }
    let ops = all.len();
    Ok(Run {
        bytes: ops * template.len() as u64,
        ops,
        elapsed,
        latency: Some(Latency::of(&all)),
    })
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGNIFICANT_DIGITS)
        .expect("valid histogram bounds")
}

/// Opens a fresh log, appends to it as `drive_appends` does, and closes it (not timed).
async fn append_to_fresh_log(
    dir: PathBuf,
    config: LogConfig,
    template: BytesMut,
    appenders: usize,
    run_for: Duration,
    max_bytes: u64,
) -> strata::storage::Result<Run> {
    let log = PartitionLog::open(&dir, config).await?;
    let run = drive_appends(&log, &template, appenders, run_for, max_bytes).await?;
    log.close().await?;
    Ok(run)
}

/// A throughput shape measured in `--pairs` alternations of strata and its fio yardstick. The
/// disk's speed swings over seconds, so one pair's ratio is noise; the median pair is shown.
struct Paired {
    /// The pair whose ratio is the median (the first when fio is missing).
    run: Run,
    fio: Option<FioReport>,
    /// strata ÷ fio of every pair, in the order run.
    ratios: Vec<f64>,
}

impl Paired {
    fn row(&self, shape: String, note: &str) -> Row {
        let note = if self.ratios.len() > 1 {
            let each: Vec<String> = self.ratios.iter().map(|r| format!("{r:.2}")).collect();
            format!(
                "median of {} pairs ({}); {note}",
                self.ratios.len(),
                each.join(" ")
            )
        } else {
            note.to_string()
        };
        throughput_row(shape, &self.run, self.fio.as_ref(), &note)
    }
}

/// Runs `strata` then `fio` (when given), `--pairs` times, and keeps the median pair (of an
/// even count, the upper of the two middle ones).
fn alternate(
    args: &Args,
    strata: impl Fn() -> BenchResult<Run>,
    fio: Option<impl Fn() -> BenchResult<FioReport>>,
) -> BenchResult<Paired> {
    let mut pairs = Vec::with_capacity(args.pairs);
    for _ in 0..args.pairs {
        let run = strata()?;
        let yardstick = fio.as_ref().map(|f| f()).transpose()?;
        pairs.push((run, yardstick));
    }
    let ratio_of = |(run, fio): &(Run, Option<FioReport>)| {
        fio.as_ref().map(|f| run.mb_per_s() / fio_mb_per_s(f))
    };
    // Every pair has a fio report, or none has: `ratios[i]` belongs to `pairs[i]`.
    let ratios: Vec<f64> = pairs.iter().filter_map(ratio_of).collect();
    let median = if ratios.is_empty() {
        0
    } else {
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.sort_by(|&a, &b| ratios[a].total_cmp(&ratios[b]));
        order[order.len() / 2]
    };
    let (run, fio) = pairs.swap_remove(median);
    Ok(Paired { run, fio, ratios })
}

/// Shapes 1 and 2: 1 MiB batches, `--depth` in flight, on a fresh log.
fn bench_append_throughput(args: &Args, scratch: &Scratch, fsync: FsyncPolicy) -> BenchResult<Run> {
    let dir = scratch.fresh(&format!("append-{fsync}"));
    let fut = append_to_fresh_log(
        dir.clone(),
        log_config(fsync),
        large_batch(),
        args.depth,
        args.run_for,
        args.max_write_bytes,
    );
    let run = on_executor("bench-append", fut)?;
    remove(&dir);
    println!(
        "strata  append 1 MiB batches, fsync {fsync:<6}: {:8.1} MB/s  {:7.0} appends/s  latency p50/p99/p99.9 {}",
        run.mb_per_s(),
        run.ops_per_s(),
        run.latency.expect("appends record latency")
    );
    Ok(run)
}

/// Shape 4: `SMALL_BATCH_BYTES` batches under `Always` from `appenders` appenders.
fn bench_group_commit(args: &Args, scratch: &Scratch, appenders: usize) -> BenchResult<Run> {
    let dir = scratch.fresh(&format!("group-commit-{appenders}"));
    let fut = append_to_fresh_log(
        dir.clone(),
        log_config(FsyncPolicy::Always),
        small_batch(),
        appenders,
        args.run_for,
        args.max_write_bytes,
    );
    let run = on_executor("bench-group-commit", fut)?;
    remove(&dir);
    println!(
        "strata  4 KiB appends, always, {appenders:2} appender(s): {:8.0} appends/s  latency p50/p99/p99.9 {}",
        run.ops_per_s(),
        run.latency.expect("appends record latency")
    );
    Ok(run)
}

/// Shape 3: writes `READ_SET_BYTES` in `READ_SEGMENT_BYTES` segments, then reads it back cold.
fn bench_cold_read(args: &Args, scratch: &Scratch) -> BenchResult<Run> {
    let dir = scratch.fresh("cold-read");
    let config = LogConfig {
        segment_bytes: READ_SEGMENT_BYTES,
        ..log_config(FsyncPolicy::Never)
    };
    let fill = append_to_fresh_log(
        dir.clone(),
        config.clone(),
        large_batch(),
        args.depth,
        READ_FILL_LIMIT,
        READ_SET_BYTES,
    );
    on_executor("bench-read-fill", fill)?;
    let cold = LogConfig {
        cache_bytes: 0,
        ..config
    };
    let run = on_executor(
        "bench-read",
        read_log(dir.clone(), cold, args.depth, args.run_for),
    )?;
    remove(&dir);
    println!(
        "strata  cold read, 1 MiB reads              : {:8.1} MB/s  {:7.0} reads/s    latency p50/p99/p99.9 {}",
        run.mb_per_s(),
        run.ops_per_s(),
        run.latency.expect("reads record latency")
    );
    Ok(run)
}

/// Reopens the log in `dir` and reads it from `readers` concurrent readers, each taking the next
/// unread range, from offset 0 to the end and around again until `run_for` has passed.
async fn read_log(
    dir: PathBuf,
    config: LogConfig,
    readers: usize,
    run_for: Duration,
) -> strata::storage::Result<Run> {
    let log = PartitionLog::open(&dir, config).await?;
    let end = log.high_watermark();
    let batch_bytes = large_batch().len();
    // Every batch holds RECORDS_PER_BATCH offsets and a read returns whole batches up to
    // READ_MAX_BYTES (at least one), so this is exactly the offsets one read covers.
    let stride = (READ_MAX_BYTES / batch_bytes).max(1) as i64 * RECORDS_PER_BATCH as i64;
    let cursor = Cell::new(0i64);
    let start = Instant::now();
    let deadline = start + run_for;
    let reader = || async {
        let (mut bytes, mut hist) = (0u64, new_histogram());
        while Instant::now() < deadline {
            let offset = cursor.get();
            cursor.set(if offset + stride >= end {
                0
            } else {
                offset + stride
            });
            let t = Instant::now();
            let batches = log.read(offset, READ_MAX_BYTES).await?;
            hist.saturating_record(t.elapsed().as_nanos() as u64);
            bytes += batches.iter().map(|b| b.len() as u64).sum::<u64>();
        }
        Ok::<_, strata::storage::StorageError>((bytes, hist))
    };
    let results = try_join_all((0..readers).map(|_| reader())).await?;
    let elapsed = start.elapsed();
    let mut all = new_histogram();
    let mut bytes = 0;
    for (b, h) in &results {
        bytes += b;
        all.add(h).expect("histograms share their bounds");
    }
    log.close().await?;
    Ok(Run {
        bytes,
        ops: all.len(),
        elapsed,
        latency: Some(Latency::of(&all)),
    })
}

/// fio's yardstick for `Never`: sequential 1 MiB writes at queue depth `--depth`.
fn fio_write_queued(args: &Args, scratch: &Scratch) -> BenchResult<FioReport> {
    let job = FioJob {
        name: "seq-write",
        engine: FIO_QUEUED_ENGINE,
        read: false,
        block: FIO_BLOCK_BYTES,
        depth: args.depth,
        fdatasync_every: None,
        overwrite: false,
        size: fio_write_file_bytes(args),
        run_for: args.run_for,
        ops_per_io: 1,
    };
    run_fio(scratch, &job)
}

/// fio's yardstick for `Always`: `--depth` MiB per write, each followed by an `fdatasync`
/// that covers it (psync: the sync starts only after the write is done), overwriting a file
/// written out first.
fn fio_write_synced(args: &Args, scratch: &Scratch) -> BenchResult<FioReport> {
    let block = FIO_BLOCK_BYTES * args.depth as u64;
    let job = FioJob {
        name: "seq-write-fdatasync",
        engine: FIO_ORDERED_ENGINE,
        read: false,
        block,
        depth: 1,
        fdatasync_every: Some(1),
        overwrite: true,
        size: fio_overwrite_file_bytes(block),
        run_for: args.run_for,
        ops_per_io: args.depth,
    };
    run_fio(scratch, &job)
}

/// Size of fio's file in the queued write shape: as much as strata may write, whole blocks.
fn fio_write_file_bytes(args: &Args) -> u64 {
    let unit = FIO_BLOCK_BYTES * args.depth as u64;
    (args.max_write_bytes / unit).max(1) * unit
}

/// Size of fio's file in the overwrite shapes: `FIO_OVERWRITE_FILE_BYTES` in whole blocks of
/// `block`, at least one.
fn fio_overwrite_file_bytes(block: u64) -> u64 {
    FIO_OVERWRITE_FILE_BYTES.div_ceil(block) * block
}

/// fio reading a file of `READ_SET_BYTES` sequentially in 1 MiB blocks (laid out first).
fn fio_read_like(args: &Args, scratch: &Scratch) -> BenchResult<FioReport> {
    let job = FioJob {
        name: "seq-read",
        engine: FIO_QUEUED_ENGINE,
        read: true,
        block: FIO_BLOCK_BYTES,
        depth: args.depth,
        fdatasync_every: None,
        overwrite: false,
        size: READ_SET_BYTES,
        run_for: args.run_for,
        ops_per_io: 1,
    };
    run_fio(scratch, &job)
}

/// fio's yardstick for `appenders` group-committed 4 KiB appends: one write of `appenders`
/// × 4 KiB, then an `fdatasync` covering it, overwriting a file written out first.
fn fio_group_commit(args: &Args, scratch: &Scratch, appenders: usize) -> BenchResult<FioReport> {
    let block = (SMALL_BATCH_BYTES * appenders) as u64;
    let job = FioJob {
        name: "sync-write-4k",
        engine: FIO_ORDERED_ENGINE,
        read: false,
        block,
        depth: 1,
        fdatasync_every: Some(1),
        overwrite: true,
        size: fio_overwrite_file_bytes(block),
        run_for: args.run_for,
        ops_per_io: appenders,
    };
    run_fio(scratch, &job)
}

/// Runs `job` on a fresh file in the scratch directory (deleted after) and prints its figures.
fn run_fio(scratch: &Scratch, job: &FioJob) -> BenchResult<FioReport> {
    let report = fio::run(job, &scratch.fresh(&format!("fio-{}", job.name)))?;
    print_fio(job, &report);
    Ok(report)
}

/// A fio job's bandwidth in MB/s.
fn fio_mb_per_s(r: &FioReport) -> f64 {
    r.bytes_per_s / MB
}

/// What a fio job does to its file: reads, writes, or overwrites blocks it wrote out first.
fn fio_direction(job: &FioJob) -> &'static str {
    match (job.read, job.overwrite) {
        (true, _) => "read",
        (false, true) => "overwrite",
        (false, false) => "write",
    }
}

fn print_fio(job: &FioJob, r: &FioReport) {
    let sync = job
        .fdatasync_every
        .map_or(String::new(), |n| format!(", fdatasync/{n}"));
    let shape = format!(
        "{} {} {} KiB, qd {}{sync}",
        job.engine,
        fio_direction(job),
        job.block / KIB,
        job.depth
    );
    let lat = |l: Option<Latency>| l.map_or("-".to_string(), |l| l.to_string());
    println!(
        "fio     {shape:<44}: {:8.1} MB/s  {:7.0} IOs/s      clat {}  fdatasync {}",
        fio_mb_per_s(r),
        r.ops_per_s / job.ops_per_io as f64,
        lat(r.io_latency.map(Latency::from_us)),
        lat(r.sync_latency.map(Latency::from_us))
    );
}

/// One line of the summary table.
struct Row {
    shape: String,
    strata: String,
    fio: String,
    ratio: String,
    note: String,
}

fn ratio(strata: f64, fio: f64) -> String {
    format!("{:.2}", strata / fio)
}

fn throughput_row(shape: String, run: &Run, fio: Option<&FioReport>, note: &str) -> Row {
    Row {
        shape,
        strata: format!("{:.0} MB/s", run.mb_per_s()),
        fio: fio.map_or("-".into(), |f| format!("{:.0} MB/s", fio_mb_per_s(f))),
        ratio: fio.map_or("-".into(), |f| ratio(run.mb_per_s(), fio_mb_per_s(f))),
        note: note.into(),
    }
}

fn rate_row(shape: String, run: &Run, fio: Option<&FioReport>, note: &str) -> Row {
    Row {
        shape,
        strata: format!("{:.0} /s", run.ops_per_s()),
        fio: fio.map_or("-".into(), |f| format!("{:.0} /s", f.ops_per_s)),
        ratio: fio.map_or("-".into(), |f| ratio(run.ops_per_s(), f.ops_per_s)),
        note: note.into(),
    }
}

/// The gain of group commit and the append latencies, beside the disk's own sync latency.
fn group_commit_rows(
    args: &Args,
    one: &Run,
    many: &Run,
    fio_one: Option<&FioReport>,
    fio_many: Option<&FioReport>,
) -> Vec<Row> {
    let gain = |a: f64, b: f64| format!("{:.1}x", a / b);
    let latency = |r: &Run| r.latency.expect("appends record latency").to_string();
    let lat = |l: Option<Latency>| l.map_or("-".to_string(), |l| l.to_string());
    let fio_write =
        |f: Option<&FioReport>| f.map_or("-".into(), |f| lat(f.io_latency.map(Latency::from_us)));
    let fio_sync =
        |f: Option<&FioReport>| f.map_or("-".into(), |f| lat(f.sync_latency.map(Latency::from_us)));
    let many_block = args.appenders * SMALL_BATCH_BYTES / KIB as usize;
    vec![
        Row {
            shape: format!("group commit gain, {} vs 1 appender", args.appenders),
            strata: gain(many.ops_per_s(), one.ops_per_s()),
            fio: match (fio_one, fio_many) {
                (Some(a), Some(b)) => gain(b.ops_per_s, a.ops_per_s),
                _ => "-".into(),
            },
            ratio: String::new(),
            note: "target ≥ 8x; fio: appends/s of the psync shapes".into(),
        },
        Row {
            shape: format!("append latency p50/p99/p99.9, {} appenders", args.appenders),
            strata: latency(many),
            fio: fio_write(fio_many),
            ratio: String::new(),
            note: format!("fio: the {many_block} KiB overwrite alone"),
        },
        Row {
            shape: String::new(),
            strata: String::new(),
            fio: fio_sync(fio_many),
            ratio: String::new(),
            note: "fio: the fdatasync after it alone".into(),
        },
        Row {
            shape: "append latency p50/p99/p99.9, 1 appender".into(),
            strata: latency(one),
            fio: fio_write(fio_one),
            ratio: String::new(),
            note: "fio: the 4 KiB overwrite alone".into(),
        },
        Row {
            shape: String::new(),
            strata: String::new(),
            fio: fio_sync(fio_one),
            ratio: String::new(),
            note: "fio: the fdatasync after it alone".into(),
        },
    ]
}

fn print_table(rows: &[Row]) {
    let header = Row {
        shape: "shape".into(),
        strata: "strata".into(),
        fio: "fio".into(),
        ratio: "strata/fio".into(),
        note: String::new(),
    };
    let width = |f: fn(&Row) -> &String| {
        rows.iter()
            .chain([&header])
            .map(|r| f(r).chars().count())
            .max()
            .unwrap_or(0)
    };
    let (ws, wt, wf, wr) = (
        width(|r| &r.shape),
        width(|r| &r.strata),
        width(|r| &r.fio),
        width(|r| &r.ratio),
    );
    println!();
    for r in [&header].into_iter().chain(rows) {
        println!(
            "{:<ws$}  {:>wt$}  {:>wf$}  {:>wr$}  {}",
            r.shape, r.strata, r.fio, r.ratio, r.note
        );
    }
}
