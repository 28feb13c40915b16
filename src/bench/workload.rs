//! What the broker workloads (`produce`, `consume`, `e2e`) share: their settings, a fresh or
//! existing topic, the partitions' end offsets, where clients run, joining the load's threads,
//! the measured window, and the parts of the report every workload prints.

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use crate::client::{ClientError, ClusterView, Connection};
use crate::protocol::{Acks, ErrorCode, OffsetSpec, TopicSpec};

use super::clock::{now_ns, NS_PER_SEC};
use super::error::{BenchError, Result};
use super::host::{self, CpuSpec, CpuUse};
use super::report::Summary;

/// Time the clients get to connect before the load's timetable starts.
pub const START_DELAY: Duration = Duration::from_millis(200);

/// Bytes of one request's batch when `--batch-records` is not given.
pub const DEFAULT_BATCH_BYTES: usize = 1 << 20;
/// Default topic of every workload.
pub const DEFAULT_TOPIC: &str = "strata-bench";
/// Default requests in flight per producer connection.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 8;

/// Settings of a broker workload. Invariant (checked by [`LoadConfig::validate`]): counts are at
/// least 1, `rate` is finite and not negative, `duration` is not zero.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub broker: String,
    pub topic: String,
    /// Partitions of the topic `--create-topic` makes.
    pub partitions: u32,
    /// Delete the topic if it exists and create it afresh.
    pub create_topic: bool,
    pub producers: usize,
    pub consumers: usize,
    pub record_bytes: usize,
    /// Records per produce request; `None`: about [`DEFAULT_BATCH_BYTES`] per request.
    pub batch_records: Option<usize>,
    /// Records per second over all producers; 0 = closed loop, as fast as possible.
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub acks: Acks,
    pub max_in_flight: usize,
    pub cpus: CpuSpec,
    pub json: Option<PathBuf>,
    pub hdr_log: Option<PathBuf>,
    /// No progress lines.
    pub quiet: bool,
}

impl LoadConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(BenchError::Invalid(m.into()));
        if self.producers == 0 || self.consumers == 0 {
            return bad("--producers and --consumers must be at least 1");
        }
        if self.partitions == 0 {
            return bad("--partitions must be at least 1");
        }
        if self.max_in_flight == 0 {
            return bad("--max-in-flight must be at least 1");
        }
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            return bad("--rate must be a number of records per second, 0 for as fast as possible");
        }
        if self.duration.is_zero() {
            return bad("--duration must be more than 0");
        }
        if self.batch_records == Some(0) {
            return bad("--batch-records must be at least 1");
        }
        Ok(())
    }

    /// Records per produce request.
    pub fn batch_records(&self) -> usize {
        self.batch_records
            .unwrap_or_else(|| (DEFAULT_BATCH_BYTES / self.record_bytes.max(1)).max(1))
    }

    /// "open loop at R records/s" or "closed loop".
    pub fn loop_name(&self) -> String {
        if self.rate > 0.0 {
            format!("open loop at {} records/s", self.rate)
        } else {
            "closed loop (as fast as possible)".into()
        }
    }
}

/// Makes the topic ready and returns its partition count: deleted and created afresh with
/// `--create-topic`, else it must exist.
pub fn prepare_topic(cfg: &LoadConfig) -> Result<u32> {
    let topic = &cfg.topic;
    let mut conn = Connection::connect(&cfg.broker)
        .map_err(|e| BenchError::client("connecting to the broker", e))?;
    if cfg.create_topic {
        match conn.delete_topic(topic) {
            Ok(()) => tracing::info!(topic = %topic, "deleted the old benchmark topic"),
            Err(e) if e.code() == Some(ErrorCode::UnknownTopic) => {}
            Err(e) => return Err(BenchError::client(format!("deleting topic {topic}"), e)),
        }
        conn.create_topic(TopicSpec {
            name: topic.clone(),
            partitions: cfg.partitions,
            retention_bytes: None,
            retention_ms: None,
            segment_bytes: None,
        })
        .map_err(|e| BenchError::client(format!("creating topic {topic}"), e))?;
    }
    let mut view = ClusterView::connect(&cfg.broker)
        .map_err(|e| BenchError::client("reading the broker's metadata", e))?;
    match view.route(topic) {
        Ok(route) => Ok(route.partitions),
        Err(ClientError::UnknownTopic { .. }) => Err(BenchError::NoTopic(topic.clone())),
        Err(e) => Err(BenchError::client(format!("reading topic {topic}"), e)),
    }
}

/// The end offset (next offset to be written) of every partition of the topic, by partition.
pub fn end_offsets(broker: &str, topic: &str, partitions: u32) -> Result<Vec<i64>> {
    let mut view = ClusterView::connect(broker)
        .map_err(|e| BenchError::client("reading the broker's metadata", e))?;
    let route = view
        .route(topic)
        .map_err(|e| BenchError::client(format!("reading topic {topic}"), e))?
        .clone();
    let mut conns: Vec<(std::net::SocketAddr, Connection)> = Vec::new();
    let mut ends = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let addr = route
            .endpoint(p)
            .map_err(|e| BenchError::client(format!("routing {topic}/{p}"), e))?;
        let k = match conns.iter().position(|(a, _)| *a == addr) {
            Some(k) => k,
            None => {
                let c = Connection::connect(&addr.to_string())
                    .map_err(|e| BenchError::client("connecting to a shard", e))?;
                conns.push((addr, c));
                conns.len() - 1
            }
        };
        let end = conns[k]
            .1
            .list_offsets(topic, p, OffsetSpec::Latest)
            .map_err(|e| BenchError::client(format!("reading the end of {topic}/{p}"), e))?;
        ends.push(end.unwrap_or(0));
    }
    Ok(ends)
}

/// Cores for `names.len()` clients, and the line saying where they went.
pub fn place_clients(spec: &CpuSpec, names: &[String]) -> Result<(Vec<Option<usize>>, String)> {
    let cores = host::plan(spec, names.len(), &host::machine_cores())?;
    let line = host::describe_plan(names, &cores);
    Ok((cores, line))
}

/// The start of the timetable: [`START_DELAY`] from now.
pub fn start_time() -> u64 {
    now_ns() + START_DELAY.as_nanos() as u64
}

/// Joins every thread; the first error wins.
pub fn join_all(handles: Vec<JoinHandle<Result<()>>>) -> Result<()> {
    let mut first = Ok(());
    for h in handles {
        let r = h
            .join()
            .unwrap_or_else(|_| Err(BenchError::Thread("a load thread panicked".into())));
        if first.is_ok() {
            first = r;
        }
    }
    first
}

/// True when every thread has finished.
pub fn all_finished(handles: &[JoinHandle<Result<()>>]) -> bool {
    handles.iter().all(JoinHandle::is_finished)
}

/// Seconds of the measured window: from its start to the last counted completion (or to
/// `end_ns` when nothing completed).
pub fn measured_seconds(window_start_ns: u64, last_done_ns: u64, end_ns: u64) -> f64 {
    let end = if last_done_ns > window_start_ns {
        last_done_ns
    } else {
        end_ns
    };
    end.saturating_sub(window_start_ns) as f64 / NS_PER_SEC as f64
}

/// The first lines of every report: what ran, against what, and where the clients ran.
pub fn describe(command: &str, cfg: &LoadConfig, partitions: u32, placement: &str) -> String {
    let acks = match cfg.acks {
        Acks::None => "none",
        Acks::Leader => "leader",
    };
    format!(
        "strata bench {command}: topic {} ({partitions} partitions) at {}, {} producer(s), \
         {} consumer(s), {} B records, {} records per request, {}, acks {acks}, {:.1} s measured \
         after {:.1} s warm-up\nclients: {placement}\n",
        cfg.topic,
        cfg.broker,
        cfg.producers,
        cfg.consumers,
        cfg.record_bytes,
        cfg.batch_records(),
        cfg.loop_name(),
        cfg.duration.as_secs_f64(),
        cfg.warmup.as_secs_f64(),
    )
}

/// The JSON report's common part: the settings, the load generator's footprint and the
/// headline summary's fields at the top level.
pub fn json_report(
    command: &str,
    cfg: &LoadConfig,
    partitions: u32,
    summary: &Summary,
    cpu: &CpuUse,
    placement: &str,
) -> Value {
    let mut v = serde_json::to_value(summary).expect("a summary serializes");
    let extra = json!({
        "command": command,
        "broker": cfg.broker,
        "topic": cfg.topic,
        "partitions": partitions,
        "producers": cfg.producers,
        "consumers": cfg.consumers,
        "record_bytes": cfg.record_bytes,
        "batch_records": cfg.batch_records(),
        "rate": cfg.rate,
        "open_loop": cfg.rate > 0.0,
        "acks": match cfg.acks { Acks::None => "none", Acks::Leader => "leader" },
        "warmup_s": cfg.warmup.as_secs_f64(),
        "requested_duration_s": cfg.duration.as_secs_f64(),
        "load_generator_cpu": cpu,
        "clients": placement,
    });
    if let (Value::Object(top), Value::Object(more)) = (&mut v, extra) {
        top.extend(more);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn config() -> LoadConfig {
        LoadConfig {
            broker: "127.0.0.1:1".into(),
            topic: DEFAULT_TOPIC.into(),
            partitions: 1,
            create_topic: false,
            producers: 1,
            consumers: 1,
            record_bytes: 1024,
            batch_records: None,
            rate: 0.0,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            acks: Acks::Leader,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            cpus: CpuSpec::None,
            json: None,
            hdr_log: None,
            quiet: true,
        }
    }

    #[test]
    fn batches_default_to_about_a_mebibyte() {
        let mut c = config();
        assert_eq!(c.batch_records(), 1024);
        c.record_bytes = 100;
        assert_eq!(c.batch_records(), 10_485);
        c.record_bytes = 16 << 10;
        assert_eq!(c.batch_records(), 64);
        c.record_bytes = 4 << 20;
        assert_eq!(c.batch_records(), 1);
        c.batch_records = Some(7);
        assert_eq!(c.batch_records(), 7);
    }

    #[test]
    fn invalid_settings_are_refused_with_the_option_named() {
        let c = config();
        assert!(c.validate().is_ok());
        let e = LoadConfig {
            rate: -1.0,
            ..c.clone()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("--rate"), "{e}");
        let e = LoadConfig {
            producers: 0,
            ..c.clone()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("--producers"), "{e}");
        let e = LoadConfig {
            duration: Duration::ZERO,
            ..c
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("--duration"), "{e}");
    }
}
