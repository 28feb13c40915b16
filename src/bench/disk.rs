//! `strata bench disk`: the physical limit of a data directory, measured the way the storage
//! engine does I/O — O_DIRECT through io_uring on a glommio executor: sequential write and read
//! bandwidth with `depth` large writes or reads in flight, and the latency of `fdatasync` after
//! each small write (what every `--fsync always` acknowledgement waits for). When `fio` is
//! installed it runs the nearest fio jobs on the same directory right after, for comparison.
//!
//! The small writes overwrite blocks written before: the sync file (`SYNC_FILE_BYTES`) is
//! written out and synced once, then overwritten 4 KiB at a time in a loop (fio's job likewise,
//! with `--overwrite=1`). Under `--fsync always` the engine zeroes the active segment ahead of
//! its tail so that durable appends overwrite written blocks too: on ext4 a write into a
//! preallocated (unwritten) extent costs an extent conversion, and the `fdatasync` after it a
//! journal commit, about half the rate of an overwrite. Overwriting is the disk's best
//! durable-append shape, so it is the limit to print.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::try_join_all;
use glommio::io::{DmaFile, OpenOptions};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;

use super::clock::{now_ns, NS_PER_SEC};
use super::error::{BenchError, Result};
use super::fio::{self, FioJob, FioReport};
use super::meter::histogram;
use super::output::emit;
use super::report::{format_us, LatencyUs, MB};

/// Default size of each sequential write and read.
pub const DEFAULT_BLOCK_BYTES: usize = 1 << 20;
/// Default sequential writes or reads in flight.
pub const DEFAULT_DEPTH: usize = 4;
/// Default cap on the bytes the write shape writes (so a fast disk does not fill up).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 8 << 30;
/// Size of the write before each `fdatasync` in the sync-latency shape.
pub const SYNC_WRITE_BYTES: usize = 4096;
/// Size of the sync-latency shape's file (strata's and fio's): written out once, then
/// overwritten in a loop. Small, so laying it out takes a moment.
const SYNC_FILE_BYTES: u64 = 64 << 20;
/// Size of each write that lays the sync file out before it is measured.
const LAYOUT_WRITE_BYTES: usize = 1 << 20;
// The sync file is whole writes of either size.
const _: () = assert!(SYNC_FILE_BYTES % LAYOUT_WRITE_BYTES as u64 == 0);
const _: () = assert!(SYNC_FILE_BYTES % SYNC_WRITE_BYTES as u64 == 0);
/// fio's file for the read shape: at most this much is laid out first.
const FIO_READ_FILE_BYTES: u64 = 1 << 30;
/// O_DIRECT alignment of block sizes and offsets.
const ALIGN: usize = crate::storage::BLOCK as usize;

/// Settings of `strata bench disk`. Invariant (checked by `run`): `block_bytes` is a positive
/// multiple of 4 KiB, `depth` and `duration` are not zero.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    pub dir: PathBuf,
    /// Length of each shape.
    pub duration: Duration,
    pub block_bytes: usize,
    pub depth: usize,
    pub max_file_bytes: u64,
    /// Also run fio when it is installed.
    pub fio: bool,
    pub json: Option<PathBuf>,
}

/// What the engine-style I/O measured.
#[derive(Debug, Clone, Serialize)]
pub struct DiskFigures {
    /// Sequential O_DIRECT writes, without the final `fdatasync`.
    pub write_bytes_per_sec: f64,
    /// The same bytes including one `fdatasync` at the end.
    pub write_synced_bytes_per_sec: f64,
    pub read_bytes_per_sec: f64,
    /// `fdatasync` alone, after each 4 KiB overwrite of written blocks.
    pub fdatasync_latency_us: LatencyUs,
    /// The 4 KiB overwrite plus its `fdatasync`, as one durable append.
    pub write_fdatasync_latency_us: LatencyUs,
}

/// The scratch directory of one run, deleted with its contents when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(cfg: &DiskConfig) -> Result<()> {
    if cfg.block_bytes == 0 || cfg.block_bytes % ALIGN != 0 {
        return Err(BenchError::Invalid(format!(
            "--block-bytes must be a positive multiple of {ALIGN}"
        )));
    }
    if cfg.depth == 0 || cfg.duration.is_zero() {
        return Err(BenchError::Invalid(
            "--depth and --duration must be more than 0".into(),
        ));
    }
    std::fs::create_dir_all(&cfg.dir)
        .map_err(|e| BenchError::io(format!("creating {}", cfg.dir.display()), e))?;
    let scratch = Scratch(
        cfg.dir
            .join(format!("strata-bench-disk-{}", std::process::id())),
    );
    std::fs::create_dir_all(&scratch.0)
        .map_err(|e| BenchError::io(format!("creating {}", scratch.0.display()), e))?;
    let fio_version = cfg.fio.then(fio::version).flatten();
    eprintln!(
        "strata bench disk: {} — {:.1} s per shape, {} KiB × {} in flight, fio: {}",
        scratch.0.display(),
        cfg.duration.as_secs_f64(),
        cfg.block_bytes >> 10,
        cfg.depth,
        fio_version.as_deref().unwrap_or("not run")
    );
    let (dir, c) = (scratch.0.clone(), cfg.clone());
    let figures = crate::runtime::run_local("bench-disk", async move { measure(&dir, &c).await })
        .map_err(|e| BenchError::Thread(format!("cannot start an executor: {e}")))??;
    let fio = match &fio_version {
        Some(_) => Some(run_fio(cfg, &scratch.0)?),
        None => None,
    };
    let human = human_report(
        cfg,
        &scratch.0,
        &figures,
        fio.as_ref(),
        fio_version.as_deref(),
    );
    let mut v = serde_json::to_value(&figures).expect("serializes");
    v["command"] = "disk".into();
    v["dir"] = cfg.dir.display().to_string().into();
    v["block_bytes"] = cfg.block_bytes.into();
    v["depth"] = cfg.depth.into();
    v["duration_s"] = cfg.duration.as_secs_f64().into();
    v["fio"] = match (&fio, &fio_version) {
        (Some(f), Some(version)) => json!({
            "version": version,
            "write_bytes_per_sec": f.write.bytes_per_s,
            "read_bytes_per_sec": f.read.bytes_per_s,
            "fdatasync_latency_us": f.sync.sync_latency,
            "write_latency_us": f.sync.io_latency,
        }),
        _ => serde_json::Value::Null,
    };
    emit(&human, &v, cfg.json.as_deref())
}

async fn measure(dir: &Path, cfg: &DiskConfig) -> Result<DiskFigures> {
    crate::storage::prime_dma_probe(dir).await.map_err(|e| {
        BenchError::io(
            "priming O_DIRECT reads",
            std::io::Error::other(e.to_string()),
        )
    })?;
    let data = dir.join("sequential");
    let file = open(&data, cfg.max_file_bytes).await?;
    let (written, write_ns, synced_ns) = sequential_write(&file, cfg).await?;
    let read = sequential_read(&file, cfg, written).await?;
    close(file, &data).await?;
    let _ = std::fs::remove_file(&data);
    let sync_path = dir.join("sync");
    let file = open(&sync_path, SYNC_FILE_BYTES).await?;
    lay_out(&file, SYNC_FILE_BYTES).await?;
    let (sync, op) = sync_latency(&file, cfg.duration).await?;
    close(file, &sync_path).await?;
    let rate = |bytes: u64, ns: u64| bytes as f64 / (ns.max(1) as f64 / NS_PER_SEC as f64);
    Ok(DiskFigures {
        write_bytes_per_sec: rate(written, write_ns),
        write_synced_bytes_per_sec: rate(written, synced_ns),
        read_bytes_per_sec: read,
        fdatasync_latency_us: LatencyUs::of(&sync),
        write_fdatasync_latency_us: LatencyUs::of(&op),
    })
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> BenchError {
    BenchError::io(
        format!("{what} {}", path.display()),
        std::io::Error::other(e.to_string()),
    )
}

/// A fresh file opened for O_DIRECT reads and writes, preallocated to `bytes` as the storage
/// engine preallocates its segments.
async fn open(path: &Path, bytes: u64) -> Result<DmaFile> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .dma_open(path)
        .await
        .map_err(|e| io_err("opening", path, e))?;
    if bytes > 0 {
        file.pre_allocate(bytes, false)
            .await
            .map_err(|e| io_err("preallocating", path, e))?;
    }
    Ok(file)
}

async fn close(file: DmaFile, path: &Path) -> Result<()> {
    file.close().await.map_err(|e| io_err("closing", path, e))
}

/// Writes blocks from offset 0 with `depth` writes in flight for the duration (or up to the
/// file cap); returns the bytes written, the time without and with a final `fdatasync`.
async fn sequential_write(file: &DmaFile, cfg: &DiskConfig) -> Result<(u64, u64, u64)> {
    let next = Cell::new(0u64);
    let block = cfg.block_bytes as u64;
    let start = now_ns();
    let deadline = start + cfg.duration.as_nanos() as u64;
    let writer = || async {
        loop {
            let pos = next.get();
            if now_ns() >= deadline || pos + block > cfg.max_file_bytes {
                return Ok::<(), BenchError>(());
            }
            next.set(pos + block);
            let mut buf = file.alloc_dma_buffer(cfg.block_bytes);
            buf.as_bytes_mut().fill(0xa5);
            let n = file
                .write_at(buf, pos)
                .await
                .map_err(|e| io_err("writing", Path::new("the sequential file"), e))?;
            if n != cfg.block_bytes {
                return Err(BenchError::Invalid(format!(
                    "short write: {n} bytes at {pos}"
                )));
            }
        }
    };
    try_join_all((0..cfg.depth).map(|_| writer())).await?;
    let written_ns = now_ns() - start;
    file.fdatasync()
        .await
        .map_err(|e| io_err("syncing", Path::new("the sequential file"), e))?;
    Ok((
        next.get().min(cfg.max_file_bytes),
        written_ns,
        now_ns() - start,
    ))
}

/// Reads the first `size` bytes in blocks with `depth` reads in flight, around again until the
/// duration is over; returns bytes per second.
async fn sequential_read(file: &DmaFile, cfg: &DiskConfig, size: u64) -> Result<f64> {
    let block = cfg.block_bytes as u64;
    if size < block {
        return Ok(0.0);
    }
    let next = Cell::new(0u64);
    let total = Cell::new(0u64);
    let start = now_ns();
    let deadline = start + cfg.duration.as_nanos() as u64;
    let reader = || async {
        while now_ns() < deadline {
            let pos = next.get();
            next.set(next_block(pos, block, size));
            let got = file
                .read_at_aligned(pos, cfg.block_bytes)
                .await
                .map_err(|e| io_err("reading", Path::new("the sequential file"), e))?;
            total.set(total.get() + got.len() as u64);
        }
        Ok::<(), BenchError>(())
    };
    try_join_all((0..cfg.depth).map(|_| reader())).await?;
    Ok(total.get() as f64 / ((now_ns() - start) as f64 / NS_PER_SEC as f64))
}

/// The offset of the block after the one at `pos`, back to 0 when a whole `block` no longer
/// fits before `size`.
fn next_block(pos: u64, block: u64, size: u64) -> u64 {
    if pos + 2 * block > size {
        0
    } else {
        pos + block
    }
}

/// Writes the first `size` bytes of `file` (a multiple of `LAYOUT_WRITE_BYTES`) with large
/// O_DIRECT writes, then one `fdatasync`: its blocks are then written, no longer unwritten
/// extents, and the metadata saying so is on disk.
async fn lay_out(file: &DmaFile, size: u64) -> Result<()> {
    let path = Path::new("the sync file");
    let mut pos = 0u64;
    while pos < size {
        let mut buf = file.alloc_dma_buffer(LAYOUT_WRITE_BYTES);
        buf.as_bytes_mut().fill(0);
        let n = file
            .write_at(buf, pos)
            .await
            .map_err(|e| io_err("laying out", path, e))?;
        if n != LAYOUT_WRITE_BYTES {
            return Err(BenchError::Invalid(format!(
                "short write: {n} bytes at {pos}"
            )));
        }
        pos += LAYOUT_WRITE_BYTES as u64;
    }
    file.fdatasync()
        .await
        .map_err(|e| io_err("syncing", path, e))
}

/// 4 KiB sequential overwrites of the laid-out sync file, each followed by an `fdatasync`, for
/// the duration (around the file again from offset 0 at its end): the latency of the sync alone
/// and of the whole durable append.
async fn sync_latency(
    file: &DmaFile,
    duration: Duration,
) -> Result<(Histogram<u64>, Histogram<u64>)> {
    let (mut sync, mut op) = (histogram(), histogram());
    let deadline = now_ns() + duration.as_nanos() as u64;
    let mut pos = 0u64;
    let path = Path::new("the sync file");
    while now_ns() < deadline {
        let mut buf = file.alloc_dma_buffer(SYNC_WRITE_BYTES);
        buf.as_bytes_mut().fill(0x5a);
        let t0 = now_ns();
        file.write_at(buf, pos)
            .await
            .map_err(|e| io_err("writing", path, e))?;
        let t1 = now_ns();
        file.fdatasync()
            .await
            .map_err(|e| io_err("syncing", path, e))?;
        let t2 = now_ns();
        sync.saturating_record((t2 - t1).max(1));
        op.saturating_record((t2 - t0).max(1));
        pos = next_block(pos, SYNC_WRITE_BYTES as u64, SYNC_FILE_BYTES);
    }
    Ok((sync, op))
}

/// fio's nearest shapes, on the same directory, right after strata's.
struct FioFigures {
    write: FioReport,
    read: FioReport,
    sync: FioReport,
}

fn run_fio(cfg: &DiskConfig, dir: &Path) -> Result<FioFigures> {
    let job = |name, engine, read, block: usize, depth, fdatasync_every, size| FioJob {
        name,
        engine,
        read,
        block: block as u64,
        depth,
        fdatasync_every,
        overwrite: false,
        size,
        run_for: cfg.duration,
        ops_per_io: 1,
    };
    let write_size = (cfg.max_file_bytes / cfg.block_bytes as u64).max(1) * cfg.block_bytes as u64;
    let read_size = write_size.min(FIO_READ_FILE_BYTES);
    Ok(FioFigures {
        write: fio::run(
            &job(
                "seq-write",
                fio::QUEUED_ENGINE,
                false,
                cfg.block_bytes,
                cfg.depth,
                None,
                write_size,
            ),
            &dir.join("fio-write"),
        )?,
        read: fio::run(
            &job(
                "seq-read",
                fio::QUEUED_ENGINE,
                true,
                cfg.block_bytes,
                cfg.depth,
                None,
                read_size,
            ),
            &dir.join("fio-read"),
        )?,
        // Overwrites, as strata's sync shape and durable appends do.
        sync: fio::run(
            &FioJob {
                overwrite: true,
                ..job(
                    "write-fdatasync",
                    fio::ORDERED_ENGINE,
                    false,
                    SYNC_WRITE_BYTES,
                    1,
                    Some(1),
                    SYNC_FILE_BYTES,
                )
            },
            &dir.join("fio-sync"),
        )?,
    })
}

fn human_report(
    cfg: &DiskConfig,
    dir: &Path,
    f: &DiskFigures,
    fio: Option<&FioFigures>,
    fio_version: Option<&str>,
) -> String {
    let mbps = |b: f64| format!("{:.0} MB/s", b / MB);
    let lat = |l: &LatencyUs| {
        format!(
            "p50 {} p99 {} p99.9 {} max {}",
            format_us(l.p50),
            format_us(l.p99),
            format_us(l.p999),
            format_us(l.max)
        )
    };
    let opt_lat = |l: Option<&LatencyUs>| l.map_or("-".to_string(), lat);
    let bs = cfg.block_bytes >> 10;
    let rows: Vec<(String, String, String)> = vec![
        (
            format!("sequential write, {bs} KiB × {}", cfg.depth),
            mbps(f.write_bytes_per_sec),
            fio.map_or("-".into(), |x| mbps(x.write.bytes_per_s)),
        ),
        (
            "  the same with a final fdatasync".into(),
            mbps(f.write_synced_bytes_per_sec),
            String::new(),
        ),
        (
            format!("sequential read, {bs} KiB × {}", cfg.depth),
            mbps(f.read_bytes_per_sec),
            fio.map_or("-".into(), |x| mbps(x.read.bytes_per_s)),
        ),
        (
            "fdatasync after a 4 KiB overwrite".into(),
            lat(&f.fdatasync_latency_us),
            opt_lat(fio.and_then(|x| x.sync.sync_latency.as_ref())),
        ),
        (
            "4 KiB overwrite + fdatasync".into(),
            lat(&f.write_fdatasync_latency_us),
            "-".into(),
        ),
    ];
    let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let w1 = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "strata bench disk: {} (O_DIRECT, io_uring via glommio; {:.1} s per shape; MB = 10^6 B)\n\n",
        dir.display(),
        cfg.duration.as_secs_f64()
    );
    out.push_str(&format!(
        "{:<w0$}  {:>w1$}  {}\n",
        "shape",
        "strata",
        fio_version.map_or("fio (not run)".to_string(), |v| v.to_string())
    ));
    for (a, b, c) in rows {
        out.push_str(&format!("{a:<w0$}  {b:>w1$}  {c}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_block_wraps_when_a_whole_block_no_longer_fits() {
        assert_eq!(next_block(0, 4096, 3 * 4096), 4096);
        assert_eq!(next_block(4096, 4096, 3 * 4096), 2 * 4096);
        assert_eq!(next_block(2 * 4096, 4096, 3 * 4096), 0);
        // A tail shorter than a block is skipped.
        assert_eq!(next_block(4096, 4096, 3 * 4096 - 1), 0);
        // One block: always the same one.
        assert_eq!(next_block(0, 4096, 4096), 0);
    }
}
