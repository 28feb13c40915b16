//! `strata log-demo`: drives one partition log end to end — concurrent appends, a roll or two,
//! read-back verified byte for byte, a lookup by timestamp — and prints what it measured.
//! The crash tests use it as the writer they `kill -9` (`--print-acks`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use bytes::BytesMut;
use clap::Args;
use futures::stream::{FuturesUnordered, StreamExt};

use crate::demo::{demo_batch, DEMO_EPOCH_MS};
use crate::record::{set_base_offset, BatchHeader};
use crate::runtime::run_local;
use crate::storage::{FsyncPolicy, LogConfig, PartitionLog};

/// Arguments of `strata log-demo`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  strata log-demo --dir /tmp/demo --batches 5000 --fsync always --concurrency 16"
)]
pub struct LogDemoArgs {
    /// Partition directory to write (created if missing; an existing demo log is appended to).
    #[arg(long, default_value = "strata-data/log-demo")]
    pub dir: PathBuf,
    /// Number of batches to append.
    #[arg(long, default_value_t = 2000)]
    pub batches: u64,
    /// Records in each batch.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub records_per_batch: u64,
    /// Value bytes of each record.
    #[arg(long, default_value_t = 100)]
    pub record_bytes: usize,
    /// Durability: always (fdatasync before the ack, group commit), never, or interval=MS.
    #[arg(long, default_value = "always")]
    pub fsync: FsyncPolicy,
    /// Appends kept in flight at once (they share fsyncs).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub concurrency: u64,
    /// Segment size before a roll.
    #[arg(long, default_value_t = 16 << 20)]
    pub segment_bytes: u64,
    /// Print `ack BASE LAST` on stdout for every acknowledged batch, as soon as it is acknowledged.
    #[arg(long)]
    pub print_acks: bool,
    /// Skip reading the log back after appending.
    #[arg(long)]
    pub no_verify: bool,
}

pub fn run(args: LogDemoArgs) -> Result<(), String> {
    let config = LogConfig {
        segment_bytes: args.segment_bytes,
        fsync: args.fsync,
        // Demo batches are stamped from a fixed 2024 epoch so they can be regenerated; age
        // retention would delete them at every roll.
        retention_ms: None,
        ..LogConfig::default()
    };
    config
        .validate()
        .map_err(|e| format!("invalid arguments: {e}"))?;
    run_local("log-demo", demo(args, config))
        .map_err(|e| format!("cannot start the executor: {e}"))?
}

async fn demo(args: LogDemoArgs, config: LogConfig) -> Result<(), String> {
    let rpb = args.records_per_batch;
    let log = PartitionLog::open(&args.dir, config)
        .await
        .map_err(|e| e.to_string())?;
    let start_offset = log.high_watermark();
    if start_offset % rpb as i64 != 0 {
        return Err(format!(
            "{} holds {start_offset} records, not a multiple of --records-per-batch {rpb}: it was written with other settings",
            args.dir.display()
        ));
    }
    let first_index = start_offset as u64 / rpb;
    eprintln!(
        "strata log-demo: appending {} batches × {rpb} records × {} B to {} (fsync {}, {} in flight), starting at offset {start_offset}",
        args.batches, args.record_bytes, args.dir.display(), args.fsync, args.concurrency
    );
    let batches: Vec<BytesMut> = (first_index..first_index + args.batches)
        .map(|i| demo_batch(i, rpb as usize, args.record_bytes))
        .collect();
    let bytes: usize = batches.iter().map(|b| b.len()).sum();

    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut stdout = std::io::stdout().lock();
    for batch in batches {
        if pending.len() as u64 >= args.concurrency {
            ack(
                &mut stdout,
                pending.next().await.expect("non-empty"),
                args.print_acks,
            )?;
        }
        pending.push(log.append(batch));
    }
    while let Some(res) = pending.next().await {
        ack(&mut stdout, res, args.print_acks)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let records = args.batches * rpb;
    eprintln!(
        "appended {records} records ({:.1} MB) in {secs:.2} s: {:.0} records/s, {:.1} MB/s",
        bytes as f64 / 1e6,
        records as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
    if !args.no_verify {
        verify(&log, rpb, args.record_bytes).await?;
        let probe_ts = DEMO_EPOCH_MS + (first_index + args.batches / 2) as i64;
        let found = log
            .offset_for_timestamp(probe_ts)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!("first offset with timestamp >= {probe_ts}: {found:?}");
    }
    log.close().await.map_err(|e| e.to_string())?;
    let stats = log.stats();
    eprintln!(
        "log {}: offsets {}..{}, {} segment(s), {} bytes",
        args.dir.display(),
        stats.earliest_offset,
        stats.high_watermark,
        stats.segments,
        stats.bytes
    );
    Ok(())
}

fn ack(
    out: &mut impl Write,
    res: crate::storage::Result<crate::storage::AppendInfo>,
    print: bool,
) -> Result<(), String> {
    let info = res.map_err(|e| format!("append failed: {e}"))?;
    if print {
        writeln!(out, "ack {} {}", info.base_offset, info.last_offset)
            .and_then(|_| out.flush())
            .map_err(|e| format!("writing acks: {e}"))?;
    }
    Ok(())
}

/// Reads the whole log back and checks every batch against the one the demo would have written.
async fn verify(log: &PartitionLog, rpb: u64, record_bytes: usize) -> Result<(), String> {
    let started = Instant::now();
    let mut offset = log.earliest_offset();
    let end = log.high_watermark();
    let mut batches = 0u64;
    while offset < end {
        let got = log
            .read(offset, 4 << 20)
            .await
            .map_err(|e| format!("read at {offset}: {e}"))?;
        if got.is_empty() {
            return Err(format!(
                "read at {offset} returned nothing before the end {end}"
            ));
        }
        for b in got {
            let h = BatchHeader::parse(&b).map_err(|e| e.to_string())?;
            if h.base_offset != offset {
                return Err(format!(
                    "expected a batch at offset {offset}, found {}",
                    h.base_offset
                ));
            }
            let mut want = demo_batch(offset as u64 / rpb, rpb as usize, record_bytes);
            set_base_offset(&mut want, offset);
            if b[..] != want[..] {
                return Err(format!(
                    "batch at offset {offset} differs from what was appended"
                ));
            }
            offset = h.next_offset();
            batches += 1;
        }
    }
    eprintln!(
        "read back {batches} batches (offsets {}..{end}) in {:.2} s: every batch matches byte for byte",
        log.earliest_offset(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
