//! Crash consistency of the partition log: a writer killed with SIGKILL mid-append, an active
//! segment torn by truncation, garbled bytes at the end of the active segment, and lagging or
//! missing index files. Each test checks that acknowledged data survives byte for byte, that
//! offsets stay contiguous, that nothing torn or foreign is served, and that the log takes
//! appends again after recovery.
//!
//! Randomized tests print their seed; set `STRATA_CRASH_SEED=<seed>` to replay one.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::demo::{demo_batch, DEMO_EPOCH_MS};
use strata::record::{set_base_offset, validate_batch, BatchHeader, LOG_OVERHEAD};
use strata::storage::{
    log_path, offset_index_path, time_index_path, FsyncPolicy, LogConfig, PartitionLog, BLOCK,
};

/// Environment variable that turns this test binary into a `log-demo` writer (see
/// [`log_demo_child_process`]); its value is the `log-demo` arguments separated by `\x1f`.
const CHILD_ARGS_ENV: &str = "STRATA_CRASH_TEST_LOG_DEMO_ARGS";
/// Name of the test function that runs the writer in a child process.
const CHILD_TEST_NAME: &str = "log_demo_child_process";

fn run<T>(fut: impl std::future::Future<Output = T>) -> T {
    strata::runtime::run_local("storage-crash-test", fut).expect("executor")
}

/// A seed from the clock, or `STRATA_CRASH_SEED`; printed so a failure can be replayed.
fn seed(test: &str) -> u64 {
    let seed = match std::env::var("STRATA_CRASH_SEED") {
        Ok(s) => s.parse().expect("STRATA_CRASH_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    println!("{test}: seed {seed} (replay with STRATA_CRASH_SEED={seed})");
    seed
}

/// Settings for reopening a log in the checker: reads from disk (no cache), no retention (the
/// demo timestamps are old), segments large enough for any batch the tests append.
fn checker_config() -> LogConfig {
    LogConfig {
        segment_bytes: 32 << 20,
        max_batch_bytes: 16 << 20,
        preallocate_bytes: 4 << 20,
        cache_bytes: 0,
        retention_ms: None,
        retention_bytes: None,
        segment_ms: None,
        fsync: FsyncPolicy::Always,
        ..LogConfig::default()
    }
}

/// The demo batch a `log-demo` writer with `r` records per batch puts at `offset`.
fn demo_at(offset: i64, r: u64, b: usize) -> Bytes {
    assert_eq!(
        offset % r as i64,
        0,
        "a demo batch starts at a multiple of {r}"
    );
    let mut want = demo_batch(offset as u64 / r, r as usize, b);
    set_base_offset(&mut want, offset);
    want.freeze()
}

/// Reads every batch from the earliest offset to the high watermark (from disk when the log's
/// cache is off), asserting that each batch validates and that offsets are contiguous.
async fn read_all(log: &PartitionLog) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    let mut offset = log.earliest_offset();
    let end = log.high_watermark();
    while offset < end {
        let got = log
            .read(offset, 4 << 20)
            .await
            .unwrap_or_else(|e| panic!("read at {offset} (high watermark {end}): {e}"));
        assert!(
            !got.is_empty(),
            "read at {offset} returned nothing before the high watermark {end}"
        );
        for b in got {
            let h = validate_batch(&b)
                .unwrap_or_else(|e| panic!("batch served at offset {offset} is invalid: {e}"));
            assert_eq!(
                h.base_offset, offset,
                "offsets must be contiguous: expected a batch at {offset}"
            );
            offset = h.next_offset();
            out.push((h.base_offset, b));
        }
    }
    assert_eq!(offset, end, "the last batch must end at the high watermark");
    assert!(
        log.read(end, 1 << 20).await.unwrap().is_empty(),
        "nothing may be served at the high watermark"
    );
    out
}

fn segment_bases(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            let digits = name.strip_suffix(".log")?;
            (digits.len() == 20).then(|| digits.parse().unwrap())
        })
        .collect();
    bases.sort_unstable();
    bases
}

/// Copies a log directory as it is, hard-linking the closed segments' data files (recovery
/// only reads them) and copying everything else, so the original stays exactly as the crash
/// left it.
fn snapshot_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let active = segment_bases(from).last().map(|&b| log_path(from, b));
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if !e.file_type().unwrap().is_file() {
            continue;
        }
        let name = e.file_name();
        let is_closed_log = name.to_string_lossy().ends_with(".log") && Some(e.path()) != active;
        if is_closed_log {
            std::fs::hard_link(e.path(), to.join(&name)).unwrap();
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9 of a writer
// ---------------------------------------------------------------------------------------------

/// Not a test on its own: when [`CHILD_ARGS_ENV`] is set, this runs `strata log-demo` with
/// those arguments in this process and exits with its status. `kill_9_loses_no_acknowledged_append`
/// re-executes the test binary this way when the `strata` binary itself cannot start here (its
/// preflight refuses to run when RLIMIT_MEMLOCK cannot be raised; the library then works with
/// unregistered buffers, as in every in-process test).
#[test]
fn log_demo_child_process() {
    use clap::Parser;
    #[derive(Parser)]
    struct ChildCli {
        #[command(flatten)]
        args: strata::cli::log_demo::LogDemoArgs,
    }
    let Ok(args) = std::env::var(CHILD_ARGS_ENV) else {
        return;
    };
    let argv = std::iter::once("log-demo".to_string()).chain(args.split('\x1f').map(String::from));
    let cli = ChildCli::try_parse_from(argv).unwrap_or_else(|e| {
        eprintln!("strata: {e}");
        std::process::exit(2)
    });
    strata::cli::init_logging();
    match strata::cli::log_demo::run(cli.args) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("strata: {e}");
            std::process::exit(1)
        }
    }
}

/// How the writer is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// `strata log-demo`, the real binary.
    Binary,
    /// This test binary running [`log_demo_child_process`] (same code, without the preflight).
    ReExec,
}

fn writer_command(writer: Writer, args: &[String], stderr: &Path) -> Command {
    let mut cmd = match writer {
        Writer::Binary => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
            c.arg("log-demo").args(args);
            c
        }
        Writer::ReExec => {
            let mut c = Command::new(std::env::current_exe().unwrap());
            c.args([
                CHILD_TEST_NAME,
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ARGS_ENV, args.join("\x1f"));
            c
        }
    };
    cmd.env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap());
    cmd
}

#[allow(clippy::too_many_arguments)]
fn demo_args(
    dir: &Path,
    batches: u64,
    r: u64,
    b: usize,
    concurrency: u64,
    segment_bytes: u64,
) -> Vec<String> {
    [
        "--dir".to_string(),
        dir.display().to_string(),
        "--batches".into(),
        batches.to_string(),
        "--records-per-batch".into(),
        r.to_string(),
        "--record-bytes".into(),
        b.to_string(),
        "--fsync".into(),
        "always".into(),
        "--concurrency".into(),
        concurrency.to_string(),
        "--segment-bytes".into(),
        segment_bytes.to_string(),
        "--print-acks".into(),
        "--no-verify".into(),
    ]
    .into()
}

fn tail_of(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Picks the writer and the smallest segment size `log-demo` accepts here, by running one
/// tiny append with each candidate.
fn choose_writer(scratch: &Path) -> (Writer, u64) {
    let mut failures = Vec::new();
    for writer in [Writer::Binary, Writer::ReExec] {
        for segment_bytes in [1u64 << 20, 16 << 20] {
            let dir = scratch.join(format!("probe-{writer:?}-{segment_bytes}"));
            let err = scratch.join(format!("probe-{writer:?}-{segment_bytes}.stderr"));
            let args = demo_args(&dir, 1, 1, 10, 1, segment_bytes);
            let out = writer_command(writer, &args, &err).output().unwrap();
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ack 0 0\n") {
                return (writer, segment_bytes);
            }
            failures.push(format!(
                "{writer:?} with --segment-bytes {segment_bytes}: {}\n{}",
                out.status,
                tail_of(&err)
            ));
        }
    }
    panic!("no way to run log-demo here:\n{}", failures.join("\n---\n"));
}

/// One writer run: what it acknowledged and how it ended.
struct Outcome {
    acks: Vec<(i64, i64)>,
    killed_while_running: bool,
    saw_ack_before_kill: bool,
}

/// Parses the complete `ack BASE LAST` lines of a writer's stdout; a last line without its
/// newline was never fully printed, so it does not count.
fn parse_acks(out: &[u8]) -> Vec<(i64, i64)> {
    let complete = match out.iter().rposition(|&c| c == b'\n') {
        Some(i) => &out[..=i],
        None => &[][..],
    };
    String::from_utf8_lossy(complete)
        .lines()
        .filter_map(|l| l.strip_prefix("ack "))
        .map(|l| {
            let mut it = l.split(' ');
            let base = it.next().unwrap().parse().unwrap();
            let last = it.next().unwrap().parse().unwrap();
            assert!(it.next().is_none(), "malformed ack line {l:?}");
            (base, last)
        })
        .collect()
}

/// Starts a writer, lets it run for a random while (or until a random number of acks), kills
/// it with SIGKILL and returns the acks it had fully printed.
fn run_and_kill(
    writer: Writer,
    args: &[String],
    stderr: &Path,
    rng: &mut StdRng,
    must_ack: bool,
) -> Outcome {
    let mut child: Child = writer_command(writer, args, stderr).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // One message per complete `ack` line.
                    for &c in &buf[..n] {
                        all.push(c);
                        if c == b'\n' {
                            let line_start = all[..all.len() - 1]
                                .iter()
                                .rposition(|&c| c == b'\n')
                                .map_or(0, |i| i + 1);
                            if all[line_start..].starts_with(b"ack ") {
                                let _ = tx.send(());
                            }
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("reading the writer's stdout: {e}"),
            }
        }
        all
    });

    let mut saw_ack = false;
    if must_ack {
        // Wait for the writer to recover the log and acknowledge its first append, then let it
        // run a random while or a random number of further lines.
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(()) => saw_ack = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the writer acknowledged nothing within 30 s (it could not append after recovery?)\n{}",
                    tail_of(stderr)
                );
            }
            // The writer exited: checked below.
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        let target = rng.gen_range(1..400u32);
        let until = Instant::now() + Duration::from_millis(rng.gen_range(20..400));
        let mut acks = 0;
        while acks < target {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || rx.recv_timeout(left).is_err() {
                break;
            }
            acks += 1;
        }
    } else {
        // Kill at any moment: during start-up, recovery, batch generation or the first writes.
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..150)));
    }

    let killed_while_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL (Ok as well if it has already exited)
    let status = child.wait().unwrap();
    let out = reader.join().unwrap();
    if !killed_while_running {
        assert!(
            status.success(),
            "the writer failed before it was killed: {status}\n{}",
            tail_of(stderr)
        );
    }
    let acks = parse_acks(&out);
    // An `ack` line seen complete on the pipe must be among the parsed ones.
    assert!(
        !saw_ack || !acks.is_empty(),
        "an ack line was seen but not parsed: {:?}",
        String::from_utf8_lossy(&out)
    );
    Outcome {
        saw_ack_before_kill: saw_ack,
        acks,
        killed_while_running,
    }
}

/// Reopens the log and checks it against everything acknowledged so far. Returns the earliest
/// offset and the high watermark.
fn check_after_kill(
    dir: &Path,
    r: u64,
    b: usize,
    acked: &BTreeMap<i64, i64>,
    fresh: &[(i64, i64)],
    context: &str,
) -> (i64, i64) {
    run(async {
        let log = PartitionLog::open(dir, checker_config())
            .await
            .unwrap_or_else(|e| panic!("{context}: reopening after kill -9 failed: {e}"));
        let earliest = log.earliest_offset();
        let hw = log.high_watermark();
        let all = read_all(&log).await;
        let mut starts = std::collections::HashSet::new();
        for (offset, bytes) in &all {
            assert!(
                bytes[..] == demo_at(*offset, r, b)[..],
                "{context}: the batch at offset {offset} is not the one the writer appended there"
            );
            starts.insert(*offset);
        }
        let max_acked_next = acked.values().map(|&last| last + 1).max().unwrap_or(0);
        assert!(
            hw >= max_acked_next,
            "{context}: high watermark {hw} is below the acknowledged offset {}",
            max_acked_next - 1
        );
        if earliest > 0 {
            // Only time-based retention (the demo's timestamps are old) removes segments, and
            // only whole ones: the earliest offset is the base of the first segment file.
            assert_eq!(segment_bases(dir).first(), Some(&earliest), "{context}");
        }
        for (&base, &last) in acked.range(earliest..) {
            assert!(
                starts.contains(&base),
                "{context}: acknowledged batch {base}..={last} is missing after kill -9 \
                 (log holds {earliest}..{hw})"
            );
        }
        // The acks of this run, looked up one by one through the indexes.
        let step = (fresh.len() / 200).max(1);
        for &(base, last) in fresh.iter().step_by(step) {
            if base < earliest {
                continue;
            }
            let got = log.read(base, 1).await.unwrap();
            assert!(
                !got.is_empty() && got[0][..] == demo_at(base, r, b)[..],
                "{context}: acknowledged batch {base}..={last} does not read back byte for byte"
            );
            let h = BatchHeader::parse(&got[0]).unwrap();
            assert_eq!(h.last_offset(), last, "{context}");
        }
        log.close().await.unwrap();
        (earliest, hw)
    })
}

#[test]
fn kill_9_loses_no_acknowledged_append() {
    let started = Instant::now();
    let seed = seed("kill_9_loses_no_acknowledged_append");
    let mut rng = StdRng::seed_from_u64(seed);
    let scratch = tempfile::tempdir().unwrap();
    let (writer, min_segment) = choose_writer(scratch.path());
    let small_segments = min_segment < (16 << 20);
    println!(
        "writer: {writer:?}; segments {}",
        if small_segments {
            "1-4 MiB"
        } else {
            "16-20 MiB (log-demo rejects segments smaller than its 16 MiB batch limit)"
        }
    );

    // One directory per batch shape (records per batch, record bytes, batches per run): small
    // batches, ~100 KiB (25 blocks), ~600 KiB (two DMA chunks) and ~15 KiB.
    let shapes: [(u64, usize, u64); 4] = [
        (10, 100, 20_000),
        (1, 100_000, 600),
        (2, 300_000, 250),
        (3, 5_000, 4_000),
    ];
    let runs_per_shape = 6;
    let mut kills_mid_run = 0;
    let mut runs = 0;
    for (shape_no, &(r, b, batches)) in shapes.iter().enumerate() {
        let dir = scratch.path().join(format!("log-{shape_no}"));
        let mut acked: BTreeMap<i64, i64> = BTreeMap::new();
        let mut retired = 0usize;
        for run_no in 0..runs_per_shape {
            runs += 1;
            let concurrency = rng.gen_range(1..=32u64);
            let segment_bytes = if small_segments {
                rng.gen_range(1u64 << 20..=4 << 20) / BLOCK * BLOCK
            } else {
                rng.gen_range(16u64 << 20..=20 << 20) / BLOCK * BLOCK
            };
            // Every third run or so is killed at a random moment, acked or not.
            let must_ack = run_no == 0 || rng.gen_bool(0.75);
            let args = demo_args(&dir, batches, r, b, concurrency, segment_bytes);
            let stderr = scratch
                .path()
                .join(format!("writer-{shape_no}-{run_no}.stderr"));
            let context = format!(
                "seed {seed}, shape {shape_no} (R={r}, B={b}), run {run_no}: concurrency {concurrency}, \
                 segment bytes {segment_bytes}, wait for acks {must_ack}"
            );
            let out = run_and_kill(writer, &args, &stderr, &mut rng, must_ack);
            if out.killed_while_running {
                kills_mid_run += 1;
            }
            if must_ack {
                assert!(
                    out.saw_ack_before_kill,
                    "{context}: the writer acknowledged nothing after recovery\n{}",
                    tail_of(&stderr)
                );
            }
            for &(base, last) in &out.acks {
                assert_eq!(
                    (last - base + 1) as u64,
                    r,
                    "{context}: ack {base} {last} is not one batch"
                );
                if let Some(prev) = acked.insert(base, last) {
                    panic!(
                        "{context}: offset {base} acknowledged twice ({prev} then {last}): \
                         an acknowledged batch was overwritten"
                    );
                }
            }
            // Check a snapshot, so the next writer recovers the log exactly as the kill left it
            // (and may itself be killed while recovering it).
            let snapshot = scratch.path().join(format!("check-{shape_no}-{run_no}"));
            snapshot_dir(&dir, &snapshot);
            let (earliest, hw) = check_after_kill(&snapshot, r, b, &acked, &out.acks, &context);
            std::fs::remove_dir_all(&snapshot).unwrap();
            retired = acked.range(..earliest).count();
            println!(
                "  shape {shape_no} run {run_no}: {} acks, killed mid-run {}, log {earliest}..{hw}, \
                 {} segment(s)",
                out.acks.len(),
                out.killed_while_running,
                segment_bases(&dir).len()
            );
        }
        // After the last kill the log still takes an append, in this process too.
        run(async {
            let log = PartitionLog::open(&dir, checker_config()).await.unwrap();
            let next = log.high_watermark();
            let want = demo_at(next, r, b);
            let info = log
                .append(BytesMut::from(&want[..]))
                .await
                .expect("append after recovery");
            assert_eq!(info.base_offset, next);
            let got = log.read(next, 1).await.unwrap();
            assert_eq!(got[0], want, "seed {seed}: appended batch reads back");
            log.close().await.unwrap();
        });
        if retired > 0 {
            println!(
                "  shape {shape_no}: {retired} acknowledged batches were in segments deleted by \
                 log-demo's time retention (demo timestamps are older than 7 days)"
            );
        }
    }
    println!(
        "{runs} runs, {kills_mid_run} killed mid-run, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        kills_mid_run * 4 >= runs * 3,
        "only {kills_mid_run} of {runs} writers were still running when killed: the test is not \
         exercising crashes (make --batches larger)"
    );
}

// ---------------------------------------------------------------------------------------------
// Logs written in-process, then damaged
// ---------------------------------------------------------------------------------------------

/// A batch the builder appended: where it is and its exact bytes.
#[derive(Clone)]
struct Written {
    index: u64,
    base: i64,
    bytes: Bytes,
}

impl Written {
    fn next(&self) -> i64 {
        BatchHeader::parse(&self.bytes).unwrap().next_offset()
    }
}

fn build_config() -> LogConfig {
    LogConfig {
        segment_bytes: 3 << 20,
        max_batch_bytes: 1 << 20,
        preallocate_bytes: 1 << 20,
        ..checker_config()
    }
}

/// Writes `count` demo batches of random shapes (small ones and multi-block ones of up to
/// ~480 KiB) with up to 8 appends in flight, closes the log and returns the batches in offset
/// order. Batch `index` is stamped `DEMO_EPOCH_MS + index`.
fn build_log(dir: &Path, count: u64, rng: &mut StdRng) -> Vec<Written> {
    let mut shapes: Vec<(usize, usize)> = (0..count)
        .map(|_| {
            if rng.gen_bool(0.08) {
                (rng.gen_range(1..=8), rng.gen_range(5_000..60_000))
            } else {
                (rng.gen_range(1..=10), rng.gen_range(0..1_500))
            }
        })
        .collect();
    let mut written = run(async {
        let log = PartitionLog::open(dir, build_config()).await.unwrap();
        let mut pending = FuturesUnordered::new();
        let mut out = Vec::new();
        for (i, &(r, b)) in shapes.iter().enumerate() {
            if pending.len() >= 8 {
                out.push(pending.next().await.unwrap());
            }
            let log = log.clone();
            pending.push(async move {
                let batch = demo_batch(i as u64, r, b);
                let info = log.append(batch).await.unwrap();
                (i as u64, info.base_offset)
            });
        }
        while let Some(x) = pending.next().await {
            out.push(x);
        }
        // Top up with small batches until the active segment holds enough to damage.
        let mut i = shapes.len();
        loop {
            let active = *segment_bases(dir).last().unwrap();
            if out.iter().filter(|&&(_, base)| base >= active).count() >= 24 {
                break;
            }
            let (r, b) = (rng.gen_range(1..=10), rng.gen_range(0..3_000));
            shapes.push((r, b));
            let info = log.append(demo_batch(i as u64, r, b)).await.unwrap();
            out.push((i as u64, info.base_offset));
            i += 1;
        }
        log.close().await.unwrap();
        out
    })
    .into_iter()
    .map(|(index, base)| {
        let (r, b) = shapes[index as usize];
        let mut bytes = demo_batch(index, r, b);
        set_base_offset(&mut bytes, base);
        Written {
            index,
            base,
            bytes: bytes.freeze(),
        }
    })
    .collect::<Vec<_>>();
    written.sort_by_key(|w| w.base);
    let mut next = 0;
    for w in &written {
        assert_eq!(w.base, next, "appends got contiguous offsets");
        next = w.next();
    }
    written
}

/// The active segment's batches with their file positions, checked against what was written.
fn active_layout(dir: &Path, written: &[Written]) -> (PathBuf, Vec<(u64, Written)>) {
    let base = *segment_bases(dir).last().unwrap();
    let path = log_path(dir, base);
    let data = std::fs::read(&path).unwrap();
    let mut pos = 0u64;
    let mut out = Vec::new();
    for w in written.iter().filter(|w| w.base >= base) {
        let at = pos as usize;
        assert_eq!(
            &data[at..at + w.bytes.len()],
            &w.bytes[..],
            "the closed log's active segment holds the batches back to back"
        );
        out.push((pos, w.clone()));
        pos += w.bytes.len() as u64;
    }
    assert_eq!(
        pos,
        data.len() as u64,
        "a closed log's active segment is cut to its exact size"
    );
    (path, out)
}

/// Reopens a damaged log and checks it holds exactly `want`, then appends (several batches,
/// some in flight together), drops the log without closing it (as a crash would), reopens and
/// checks again, and closes it.
fn check_recovered(dir: &Path, want: &[(i64, Bytes)], context: &str) {
    let want_hw = want.last().map_or(0, |(o, b)| {
        *o + i64::from(BatchHeader::parse(b).unwrap().last_offset_delta) + 1
    });
    let appended = run(async {
        let log = PartitionLog::open(dir, checker_config())
            .await
            .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
        assert_eq!(log.earliest_offset(), 0, "{context}");
        assert_eq!(log.high_watermark(), want_hw, "{context}: high watermark");
        let got = read_all(&log).await;
        check_same(&got, want, context);

        // The log takes appends at the high watermark and serves them back from disk.
        let mut appended = Vec::new();
        let first = demo_batch(1_000_000, 3, 200);
        let info = log
            .append(first.clone())
            .await
            .unwrap_or_else(|e| panic!("{context}: append after recovery failed: {e}"));
        assert_eq!(
            info.base_offset, want_hw,
            "{context}: first offset after recovery"
        );
        let mut first = first;
        set_base_offset(&mut first, info.base_offset);
        let first = first.freeze();
        let got = log.read(info.base_offset, 1).await.unwrap();
        assert_eq!(
            got,
            vec![first.clone()],
            "{context}: appended batch reads back"
        );
        appended.push((info.base_offset, first));
        let mut pending = FuturesUnordered::new();
        for k in 0..6u64 {
            let batch = demo_batch(1_000_001 + k, 2, if k == 3 { 20_000 } else { 90 });
            let log = log.clone();
            pending.push(async move {
                let info = log.append(batch.clone()).await.unwrap();
                let mut batch = batch;
                set_base_offset(&mut batch, info.base_offset);
                (info.base_offset, batch.freeze())
            });
        }
        while let Some(x) = pending.next().await {
            appended.push(x);
        }
        appended.sort_by_key(|(o, _)| *o);
        // Acknowledged under fsync always: they must survive the log being dropped unclosed.
        drop(log);
        glommio::timer::sleep(Duration::from_millis(50)).await;
        appended
    });
    let mut want_after: Vec<(i64, Bytes)> = want.to_vec();
    want_after.extend(appended);
    run(async {
        let log = PartitionLog::open(dir, checker_config())
            .await
            .unwrap_or_else(|e| panic!("{context}: second reopen failed: {e}"));
        let got = read_all(&log).await;
        check_same(
            &got,
            &want_after,
            &format!("{context}, after appending and reopening"),
        );
        log.close().await.unwrap();
    });
}

fn check_same(got: &[(i64, Bytes)], want: &[(i64, Bytes)], context: &str) {
    for (i, ((go, gb), (wo, wb))) in got.iter().zip(want).enumerate() {
        assert_eq!(go, wo, "{context}: batch {i} offset");
        assert!(
            gb == wb,
            "{context}: batch {i} at offset {go} differs from what was written"
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{context}: the log holds {} batches, expected {} (last expected offset {:?}, last found {:?})",
        got.len(),
        want.len(),
        want.last().map(|w| w.0),
        got.last().map(|g| g.0)
    );
}

#[test]
fn torn_tail_by_truncation_is_cut_cleanly() {
    let seed = seed("torn_tail_by_truncation_is_cut_cleanly");
    let mut rng = StdRng::seed_from_u64(seed);
    let original = tempfile::tempdir().unwrap();
    let written = build_log(original.path(), 400, &mut rng);
    let (active_path, layout) = active_layout(original.path(), &written);
    let active_name = active_path.file_name().unwrap().to_owned();
    let size = std::fs::metadata(&active_path).unwrap().len();
    let active_base = layout[0].1.base;
    println!(
        "{} batches, {} segments, active segment {} bytes holding {} batches",
        written.len(),
        segment_bases(original.path()).len(),
        size,
        layout.len()
    );
    assert!(layout.len() >= 24 && segment_bases(original.path()).len() >= 2);

    let mut failures = Vec::new();
    for trial in 0..24 {
        let (_, pick) = layout[rng.gen_range(0..layout.len())].clone();
        let start = layout.iter().find(|(_, w)| w.base == pick.base).unwrap().0;
        let cut = match trial % 6 {
            0 => rng.gen_range(0..=size),                         // anywhere
            1 => start,                                           // on a batch boundary
            2 => start + rng.gen_range(1..=LOG_OVERHEAD as u64),  // in the length prefix
            3 => start + rng.gen_range(1..61),                    // in the header
            4 => size - rng.gen_range(1..=BLOCK.min(size)),       // in the last block
            _ => (start + pick.bytes.len() as u64 - 1).min(size), // one byte short
        };
        let cut = cut.min(size);
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(&active_name))
            .unwrap();
        f.set_len(cut).unwrap();
        f.sync_all().unwrap();
        drop(f);

        let want: Vec<(i64, Bytes)> = written
            .iter()
            .filter(|w| {
                w.base < active_base || {
                    let pos = layout.iter().find(|(_, l)| l.base == w.base).unwrap().0;
                    pos + w.bytes.len() as u64 <= cut
                }
            })
            .map(|w| (w.base, w.bytes.clone()))
            .collect();
        let context = format!(
            "seed {seed}, trial {trial}: active segment cut at byte {cut} of {size}, {} batches kept",
            want.len()
        );
        if let Err(msg) = catch(|| check_recovered(dir.path(), &want, &context)) {
            failures.push(msg);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 24 torn logs were not recovered correctly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn garbled_last_block_is_detected() {
    let seed = seed("garbled_last_block_is_detected");
    let mut rng = StdRng::seed_from_u64(seed);
    let original = tempfile::tempdir().unwrap();
    let written = build_log(original.path(), 400, &mut rng);
    let (active_path, layout) = active_layout(original.path(), &written);
    let active_name = active_path.file_name().unwrap().to_owned();
    let data = std::fs::read(&active_path).unwrap();
    let size = data.len() as u64;
    let active_base = layout[0].1.base;
    // Damage lands in the last few blocks of the file.
    let zone = size.saturating_sub(4 * BLOCK);
    let mut trials = 0;
    let mut attempts = 0;
    let mut failures = Vec::new();
    while trials < 24 {
        attempts += 1;
        assert!(attempts < 1000);
        let mut damaged = data.clone();
        let how = if rng.gen_bool(0.3) {
            // A whole block (the last one may be partial) replaced by random bytes.
            let first_block = zone / BLOCK;
            let last_block = (size - 1) / BLOCK;
            let block = rng.gen_range(first_block..=last_block);
            let from = block * BLOCK;
            let to = (from + BLOCK).min(size);
            rng.fill(&mut damaged[from as usize..to as usize]);
            format!("block {block} ({from}..{to}) replaced by random bytes")
        } else {
            let len = rng.gen_range(1..=64u64).min(size - zone);
            let from = rng.gen_range(zone..=size - len);
            rng.fill(&mut damaged[from as usize..(from + len) as usize]);
            format!("{len} random bytes at {from}")
        };
        // The first batch whose checked bytes changed. Bytes 12..16 (partitionLeaderEpoch) are
        // outside the CRC and not checked by anything, so damage confined to them cannot be seen.
        let first_bad = (0..data.len())
            .filter(|&i| data[i] != damaged[i])
            .map(|i| {
                let k = layout.partition_point(|(pos, _)| *pos <= i as u64) - 1;
                (k, i as u64 - layout[k].0)
            })
            .find(|(_, within)| !(12..16).contains(within))
            .map(|(k, _)| k);
        let Some(first_bad) = first_bad else {
            continue; // nothing detectable changed; draw again
        };
        let trial = trials;
        trials += 1;
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        std::fs::write(dir.path().join(&active_name), &damaged).unwrap();

        // Batches before the damaged one survive as they are on disk (equal to what was written
        // except, possibly, an undetectable partitionLeaderEpoch).
        let mut want: Vec<(i64, Bytes)> = written
            .iter()
            .filter(|w| w.base < active_base)
            .map(|w| (w.base, w.bytes.clone()))
            .collect();
        for (pos, w) in &layout[..first_bad] {
            let on_disk = &damaged[*pos as usize..*pos as usize + w.bytes.len()];
            want.push((w.base, Bytes::copy_from_slice(on_disk)));
        }
        let (bad_pos, bad) = &layout[first_bad];
        let context = format!(
            "seed {seed}, trial {trial}: {how}; first damaged batch at byte {bad_pos} \
             (offset {}, {} bytes, demo index {}) of a {size}-byte active segment",
            bad.base,
            bad.bytes.len(),
            bad.index
        );
        let index_note = match last_index_position(dir.path()) {
            Some(p) if p > *bad_pos => format!(
                "; the last entry of the active offset index points at byte {p}, after the damaged batch"
            ),
            Some(p) => format!("; the last entry of the active offset index points at byte {p}"),
            None => String::new(),
        };
        let context = format!("{context}{index_note}");
        if let Err(msg) = catch(|| check_recovered(dir.path(), &want, &context)) {
            failures.push(msg);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {trials} garbled logs were not recovered correctly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// File position of the last entry in the active segment's offset index, if any.
fn last_index_position(dir: &Path) -> Option<u64> {
    let base = *segment_bases(dir).last()?;
    let bytes = std::fs::read(offset_index_path(dir, base)).ok()?;
    let last = bytes.chunks_exact(8).last()?;
    Some(u64::from(u32::from_le_bytes(
        last[4..8].try_into().unwrap(),
    )))
}

/// Runs `f`, turning a panic into its message (so one test can report every failing case).
fn catch(f: impl FnOnce()) -> Result<(), String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

#[test]
fn missing_or_lagging_indexes_are_rebuilt() {
    let seed = seed("missing_or_lagging_indexes_are_rebuilt");
    let mut rng = StdRng::seed_from_u64(seed);
    let original = tempfile::tempdir().unwrap();
    // ~15 MB of random batches over 3 MiB segments: at least 3 segments for any seed (500
    // batches left only 2 now and then).
    let written = build_log(original.path(), 1000, &mut rng);
    let bases = segment_bases(original.path());
    assert!(bases.len() >= 3, "want several segments, got {bases:?}");
    let active = *bases.last().unwrap();
    let want: Vec<(i64, Bytes)> = written.iter().map(|w| (w.base, w.bytes.clone())).collect();

    let truncate_entries = |path: &Path, entry: u64, rng: &mut StdRng| {
        let len = std::fs::metadata(path).unwrap().len();
        let keep = rng.gen_range(0..=len / entry) * entry;
        // Sometimes a torn last entry as well.
        let keep = if rng.gen_bool(0.3) && keep + 1 < len {
            keep + rng.gen_range(1..entry)
        } else {
            keep
        };
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(keep.min(len))
            .unwrap();
    };

    for variant in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let closed = bases[rng.gen_range(0..bases.len() - 1)];
        let what = match variant {
            0 => {
                std::fs::remove_file(offset_index_path(dir.path(), active)).unwrap();
                std::fs::remove_file(offset_index_path(dir.path(), closed)).unwrap();
                "offset index of the active and of one closed segment deleted"
            }
            1 => {
                for base in [active, closed] {
                    std::fs::remove_file(offset_index_path(dir.path(), base)).unwrap();
                    std::fs::remove_file(time_index_path(dir.path(), base)).unwrap();
                }
                "both indexes of the active and of one closed segment deleted"
            }
            2 => {
                // The indexes are written after the data and never synced on the hot path: after
                // a crash they may hold only a prefix of their entries.
                for base in [active, closed] {
                    truncate_entries(&offset_index_path(dir.path(), base), 8, &mut rng);
                    truncate_entries(&time_index_path(dir.path(), base), 12, &mut rng);
                }
                "indexes of the active and of one closed segment cut to a prefix"
            }
            _ => {
                std::fs::write(offset_index_path(dir.path(), active), []).unwrap();
                std::fs::remove_file(time_index_path(dir.path(), closed)).unwrap();
                "active offset index empty, one closed time index deleted"
            }
        };
        let context = format!("seed {seed}, variant {variant}: {what} (closed segment {closed})");
        run(async {
            let log = PartitionLog::open(dir.path(), checker_config())
                .await
                .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
            let got = read_all(&log).await;
            check_same(&got, &want, &context);
            // Every batch is found by offset (through the rebuilt index) and by timestamp: the
            // first batch in offset order stamped at or after batch `index`'s timestamp.
            for w in written.iter().step_by(7) {
                let got = log.read(w.base, 1).await.unwrap();
                assert_eq!(got[0], w.bytes, "{context}: read at {}", w.base);
                let mid = w.base + (w.next() - w.base) / 2;
                let got = log.read(mid, 1).await.unwrap();
                assert_eq!(got[0], w.bytes, "{context}: read at {mid}");
                let found = log
                    .offset_for_timestamp(DEMO_EPOCH_MS + w.index as i64)
                    .await
                    .unwrap();
                let expected = written.iter().find(|x| x.index >= w.index).map(|x| x.base);
                assert_eq!(
                    found, expected,
                    "{context}: first offset at timestamp of batch {}",
                    w.index
                );
            }
            let past = DEMO_EPOCH_MS + written.len() as i64;
            assert_eq!(
                log.offset_for_timestamp(past).await.unwrap(),
                None,
                "{context}"
            );
            log.close().await.unwrap();
        });
        check_recovered(dir.path(), &want, &context);
    }
}

#[test]
fn rebuilt_indexes_are_written_back() {
    // A deleted index is rebuilt in memory at open; it should also be written back, or every
    // later open scans (and CRC-checks) the whole segment again.
    let seed = seed("rebuilt_indexes_are_written_back");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 300, &mut rng);
    let bases = segment_bases(dir.path());
    assert!(bases.len() >= 2, "want a closed segment, got {bases:?}");
    for &base in &bases {
        std::fs::remove_file(offset_index_path(dir.path(), base)).unwrap();
        std::fs::remove_file(time_index_path(dir.path(), base)).unwrap();
    }
    run(async {
        let log = PartitionLog::open(dir.path(), checker_config())
            .await
            .unwrap();
        log.close().await.unwrap();
    });
    let mut missing = Vec::new();
    for &base in &bases {
        let closed = if base == *bases.last().unwrap() {
            "active"
        } else {
            "closed"
        };
        for p in [
            offset_index_path(dir.path(), base),
            time_index_path(dir.path(), base),
        ] {
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            if len == 0 {
                missing.push(format!("{} ({closed} segment)", p.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "seed {seed}: after reopening and closing, these index files are still empty or missing: {missing:?}"
    );
}
