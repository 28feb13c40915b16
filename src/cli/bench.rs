//! `strata bench produce|consume|e2e|disk|net`: the options of the load generator; the work is
//! in `strata::bench`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::bench::disk::{self, DiskConfig};
use crate::bench::host::{parse_cpus, CpuSpec};
use crate::bench::net::{self, NetConfig};
use crate::bench::net_latency::{self, LatencyConfig};
use crate::bench::workload::{LoadConfig, DEFAULT_MAX_IN_FLIGHT, DEFAULT_TOPIC};
use crate::bench::{consume, e2e, produce};
use crate::protocol::Acks;

use super::BrokerOpt;

/// Default seconds measured.
const DEFAULT_DURATION_S: &str = "10";
/// Default seconds of warm-up before measuring.
const DEFAULT_WARMUP_S: &str = "1";
/// Default seconds of each `bench disk` shape.
const DEFAULT_DISK_SHAPE_S: &str = "5";
/// Default seconds of `bench net` (bandwidth).
const DEFAULT_NET_S: f64 = 3.0;

/// Arguments of `strata bench`.
#[derive(Debug, Args)]
#[command(
    after_help = "Latency is measured with HdrHistogram and printed as a full percentile \
spectrum. With --rate the load is open loop: requests go out on a fixed timetable and latency counts \
from each request's due time, so a stall the generator had to wait out shows as latency of every \
request it delayed (coordinated omission corrected). Without --rate the load is closed loop (as \
fast as possible) and latency counts from the real send.\n\n\
Examples:\n  strata bench produce --create-topic --record-bytes 1024 --duration 10\n  \
strata bench consume --create-topic --record-bytes 100\n  \
strata bench e2e --create-topic --rate 50000 --json e2e.json --hdr-log e2e.hlog\n  \
strata bench disk --dir /var/lib/strata\n  strata bench net\n  \
strata bench net --rate 2000 --request-bytes 102400 --duration 5\n  \
strata bench net --rate 1000 --request-bytes 4200 --disk-dir /var/lib/strata --fsync"
)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Produce to a topic and measure throughput and acknowledgement latency.
    Produce(LoadArgs),
    /// Read a topic from its earliest offsets to its end and measure throughput and fetch
    /// latency (with --create-topic: fill a fresh topic by producing for --duration first).
    Consume(LoadArgs),
    /// Produce and consume at once and measure each record's latency from its send to the
    /// consumer.
    E2e(LoadArgs),
    /// Measure the data directory's limit: sequential O_DIRECT write and read bandwidth and
    /// the latency of fdatasync after each 4 KiB overwrite of a file written out first, as
    /// `--fsync always` appends overwrite a zeroed segment (io_uring; beside fio when installed).
    Disk(DiskArgs),
    /// Measure loopback TCP bandwidth, the network's limit for clients on this machine; with
    /// --rate, the machine's latency floor for the produce shape (requests on a fixed timetable
    /// over one loopback connection, each acked as soon as it is read, or after an O_DIRECT write
    /// with --disk-dir, and an fdatasync with --fsync).
    Net(NetArgs),
}

/// The `--acks` of produce requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    /// The broker answers once the records are as durable as its --fsync policy says.
    Leader,
    /// The broker does not answer (latency then ends when a request is written to the socket).
    None,
}

/// Options of the broker workloads (`produce`, `consume`, `e2e`).
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Topic to use.
    #[arg(long, value_name = "T", default_value = DEFAULT_TOPIC)]
    pub topic: String,
    /// Delete the topic if it exists and create it afresh with --partitions partitions.
    #[arg(long)]
    pub create_topic: bool,
    /// Partitions of the topic --create-topic makes (an existing topic keeps its own).
    #[arg(long, value_name = "P", default_value_t = 1)]
    pub partitions: u32,
    /// Producer threads, each with one connection per shard it sends to; partitions are
    /// shared out round-robin.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub producers: usize,
    /// Consumer threads; each partition is read by one of them.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub consumers: usize,
    /// Value bytes of each record (e2e needs at least 8: the send time rides in them).
    #[arg(long, value_name = "B", default_value_t = 1024)]
    pub record_bytes: usize,
    /// Records per produce request (one record batch) [default: about 1 MiB of records].
    #[arg(long, value_name = "K")]
    pub batch_records: Option<usize>,
    /// Records per second over all producers, sent on a fixed timetable (open loop); 0 sends
    /// as fast as possible (closed loop).
    #[arg(long, value_name = "RECORDS_PER_S", default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds measured, after the warm-up.
    #[arg(long, value_name = "S", default_value = DEFAULT_DURATION_S, value_parser = parse_seconds)]
    pub duration: Duration,
    /// Seconds of load before measuring starts (shown in the progress lines, not counted).
    #[arg(long, value_name = "S", default_value = DEFAULT_WARMUP_S, value_parser = parse_seconds)]
    pub warmup: Duration,
    /// When the broker acknowledges a produce.
    #[arg(long, value_enum, default_value_t = AcksArg::Leader)]
    pub acks: AcksArg,
    /// Produce requests in flight per connection before a producer waits for an answer.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Cores for the client threads: auto (one per client from the last core down, avoiding
    /// core 0 where the broker's first shard runs; shared when there are more clients than
    /// cores), none, or a list like 2,3.
    #[arg(long, value_name = "auto|none|LIST", default_value = "auto", value_parser = parse_cpus)]
    pub cpus: CpuSpec,
    /// Also write the report as JSON to FILE ("-" for stdout; the table then goes to stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the HdrHistogram interval log (one histogram per second, nanoseconds) to FILE.
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,
    /// No progress line per second.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub broker: BrokerOpt,
}

/// Options of `strata bench disk`.
#[derive(Debug, Args)]
pub struct DiskArgs {
    /// Directory on the disk to measure (a scratch directory is made in it and deleted).
    #[arg(
        long,
        value_name = "D",
        default_value = "./strata-data",
        env = "STRATA_DATA_DIR"
    )]
    pub dir: PathBuf,
    /// Seconds of each shape (write, read, fdatasync; and each fio job).
    #[arg(long, value_name = "S", default_value = DEFAULT_DISK_SHAPE_S, value_parser = parse_seconds)]
    pub duration: Duration,
    /// Bytes of each sequential write and read (a multiple of 4096).
    #[arg(long, value_name = "B", default_value_t = disk::DEFAULT_BLOCK_BYTES)]
    pub block_bytes: usize,
    /// Sequential writes or reads in flight.
    #[arg(long, value_name = "N", default_value_t = disk::DEFAULT_DEPTH)]
    pub depth: usize,
    /// Most bytes the write shape may write.
    #[arg(long, value_name = "B", default_value_t = disk::DEFAULT_MAX_FILE_BYTES)]
    pub max_file_bytes: u64,
    /// Do not run fio even if it is installed.
    #[arg(long)]
    pub no_fio: bool,
    /// Also write the report as JSON to FILE ("-" for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Options of `strata bench net`.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Seconds to send for [default: 3; with --rate 10, after the warm-up].
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub duration: Option<Duration>,
    /// Parallel TCP connections (bandwidth mode).
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with = "rate")]
    pub streams: usize,
    /// Bytes per write and per read (bandwidth mode).
    #[arg(long, value_name = "B", default_value_t = net::DEFAULT_BUFFER_BYTES, conflicts_with = "rate")]
    pub buffer_bytes: usize,
    /// Latency mode: requests per second over one connection, sent on a fixed timetable (open
    /// loop); latency counts from each request's due time to its ack.
    #[arg(long, value_name = "REQUESTS_PER_S")]
    pub rate: Option<f64>,
    /// Bytes of each request in latency mode [default: 102400, 100 records of 1 KiB].
    #[arg(long, value_name = "B", requires = "rate")]
    pub request_bytes: Option<usize>,
    /// Seconds of load before measuring starts, in latency mode [default: 1].
    #[arg(long, value_name = "S", requires = "rate", value_parser = parse_seconds)]
    pub warmup: Option<Duration>,
    /// In latency mode, write each request with O_DIRECT to a file preallocated with fallocate,
    /// made (and deleted) in the existing directory D, before acking it: the floor of a produce
    /// under --fsync never.
    #[arg(long, value_name = "D", requires = "rate")]
    pub disk_dir: Option<PathBuf>,
    /// With --disk-dir, fdatasync each write before acking: the floor of a produce under --fsync
    /// always. The file is then small (wrapped around) and written out and synced before the run,
    /// so the writes overwrite written blocks as the engine's durable appends do.
    #[arg(long, requires = "disk_dir")]
    pub fsync: bool,
    /// With --disk-dir (not --fsync), keep up to N requests' writes in flight on N writer threads
    /// and ack in request order, as the engine keeps several rounds of writes on the device: the
    /// requests that arrive while a write stalls are written meanwhile instead of queueing
    /// behind it.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        requires = "disk_dir",
        conflicts_with = "fsync"
    )]
    pub disk_writers: usize,
    /// Write the HdrHistogram interval log of latency mode to FILE.
    #[arg(long, value_name = "FILE", requires = "rate")]
    pub hdr_log: Option<PathBuf>,
    /// No progress line per second (latency mode).
    #[arg(long, short, requires = "rate")]
    pub quiet: bool,
    /// Also write the report as JSON to FILE ("-" for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a number of seconds"))
}

/// A default number of seconds (a constant above).
fn default_seconds(s: &str) -> Duration {
    parse_seconds(s).expect("a valid default")
}

impl LoadArgs {
    fn config(self) -> LoadConfig {
        LoadConfig {
            broker: self.broker.broker,
            topic: self.topic,
            partitions: self.partitions,
            create_topic: self.create_topic,
            producers: self.producers,
            consumers: self.consumers,
            record_bytes: self.record_bytes,
            batch_records: self.batch_records,
            rate: self.rate,
            duration: self.duration,
            warmup: self.warmup,
            acks: match self.acks {
                AcksArg::Leader => Acks::Leader,
                AcksArg::None => Acks::None,
            },
            max_in_flight: self.max_in_flight,
            cpus: self.cpus,
            json: self.json,
            hdr_log: self.hdr_log,
            quiet: self.quiet,
        }
    }
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    let result = match args.command {
        BenchCommand::Produce(a) => produce::run(&a.config()),
        BenchCommand::Consume(a) => consume::run(&a.config()),
        BenchCommand::E2e(a) => e2e::run(&a.config()),
        BenchCommand::Disk(a) => {
            super::preflight(1)?;
            disk::run(&DiskConfig {
                dir: a.dir,
                duration: a.duration,
                block_bytes: a.block_bytes,
                depth: a.depth,
                max_file_bytes: a.max_file_bytes,
                fio: !a.no_fio,
                json: a.json,
            })
        }
        BenchCommand::Net(a) => match a.rate {
            Some(rate) => net_latency::run(&LatencyConfig {
                rate,
                request_bytes: a
                    .request_bytes
                    .unwrap_or(net_latency::DEFAULT_REQUEST_BYTES),
                warmup: a
                    .warmup
                    .unwrap_or_else(|| default_seconds(DEFAULT_WARMUP_S)),
                duration: a
                    .duration
                    .unwrap_or_else(|| default_seconds(DEFAULT_DURATION_S)),
                disk_dir: a.disk_dir,
                disk_fsync: a.fsync,
                disk_writers: a.disk_writers,
                json: a.json,
                hdr_log: a.hdr_log,
                quiet: a.quiet,
            }),
            None => net::run(&NetConfig {
                duration: a.duration.unwrap_or(Duration::from_secs_f64(DEFAULT_NET_S)),
                buffer_bytes: a.buffer_bytes,
                streams: a.streams,
                json: a.json,
            }),
        },
    };
    result.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_as_fractions() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("ten").is_err());
    }
}
