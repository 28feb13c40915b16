//! The consume side of the load: `--consumers` threads, each a `Consumer` (a long-polling
//! fetcher thread per partition, one fetch ahead) over its share of the partitions. Two modes:
//! reading a backlog from the earliest offset to the end offsets taken at the start (`strata
//! bench consume`: latency is each fetch's round trip), or tailing the log end while producers
//! run (`strata bench e2e`: latency is each record's age, from the send time stamped in its
//! value to the moment `poll` handed it over).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::client::{Consumer, ConsumerConfig, FetchInfo, FetchObserver, SeekTo};

use super::clock::{now_ns, secs_to_ns};
use super::error::{BenchError, Result};
use super::host::{pin_current, process_cpu, CpuUse};
use super::meter::Meter;
use super::output::{emit, open_hdr_log, watch_and_join};
use super::plot::percentile_plot;
use super::produce::{self, ProduceLoad, ProduceMeters};
use super::records::read_stamp;
use super::report::{table, Summary};
use super::workload::{
    describe, end_offsets, json_report, measured_seconds, place_clients, prepare_topic, start_time,
    LoadConfig,
};

/// `strata bench consume`: with `--create-topic`, first fills a fresh topic by producing (closed
/// loop) for `--duration`; then reads the topic from its earliest offsets to the end offsets of
/// that moment, as fast as the consumers can, for at most the warm-up plus `--duration`.
pub fn run(cfg: &LoadConfig) -> Result<()> {
    cfg.validate()?;
    let partitions = prepare_topic(cfg)?;
    let mut human = String::new();
    let mut filled = None;
    if cfg.create_topic {
        let fill = fill(cfg, partitions)?;
        human.push_str(&format!(
            "filled the topic first: {} records ({:.1} MB) in {:.1} s, closed loop\n",
            fill.records,
            fill.bytes as f64 / 1e6,
            fill.duration_s
        ));
        filled = Some(fill);
    }
    let ends = end_offsets(&cfg.broker, &cfg.topic, partitions)?;
    if ends.iter().all(|&e| e == 0) {
        return Err(BenchError::Invalid(format!(
            "topic {} is empty: nothing to consume (add --create-topic to fill a fresh one first)",
            cfg.topic
        )));
    }
    let load = ConsumeLoad {
        broker: cfg.broker.clone(),
        topic: cfg.topic.clone(),
        partitions,
        consumers: cfg.consumers,
    };
    let names: Vec<String> = (0..cfg.consumers).map(|i| format!("consume-{i}")).collect();
    let (cores, placement) = place_clients(&cfg.cpus, &names)?;
    let hdr = open_hdr_log(cfg.hdr_log.as_deref(), "consume")?;
    let (cpu_start, wall_start) = (process_cpu(), now_ns());
    let start_ns = now_ns();
    let window_start = start_ns + secs_to_ns(cfg.warmup.as_secs_f64());
    let end_ns = window_start + secs_to_ns(cfg.duration.as_secs_f64());
    let meter = Meter::new(window_start);
    let abort = Arc::new(AtomicBool::new(false));
    let mode = ConsumeMode::Backlog { ends: ends.clone() };
    let handles = start(&load, &mode, &meter, &cores, end_ns, abort)?;
    watch_and_join(
        ("consume", &meter),
        start_ns,
        window_start,
        hdr,
        cfg.quiet,
        handles,
    )?;
    let cpu = CpuUse::since(cpu_start, wall_start);
    let total = meter.total();
    let summary = Summary::new(
        &total,
        measured_seconds(window_start, total.last_done_ns, end_ns),
    );
    let backlog: i64 = ends.iter().sum();
    let mut head = describe("consume", cfg, partitions, &placement);
    head.push_str(&format!(
        "read {backlog} records from the earliest offsets to the end offsets at the start; \
         MB/s counts record bytes; latency: each fetch's round trip (request to whole answer)\n\n"
    ));
    human.insert_str(0, &head);
    human.push_str(&table(&[("consume", &summary)]));
    if let Some(plot) = percentile_plot(&total.latency) {
        human.push('\n');
        human.push_str(&plot);
    }
    human.push('\n');
    human.push_str(&cpu.line());
    human.push('\n');
    let mut json = json_report("consume", cfg, partitions, &summary, &cpu, &placement);
    json["backlog_records"] = backlog.into();
    json["latency_from"] = "each fetch's round trip, request to whole answer".into();
    if let Some(f) = filled {
        json["fill"] = serde_json::to_value(f).expect("serializes");
    }
    emit(&human, &json, cfg.json.as_deref())
}

/// Fills the topic with a closed-loop produce run of `--duration` (no warm-up), quietly.
fn fill(cfg: &LoadConfig, partitions: u32) -> Result<Summary> {
    let load = ProduceLoad::from_config(cfg, partitions, false);
    let names: Vec<String> = (0..cfg.producers).map(|i| format!("fill-{i}")).collect();
    let (cores, _) = place_clients(&cfg.cpus, &names)?;
    let start_ns = start_time();
    let end_ns = start_ns + secs_to_ns(cfg.duration.as_secs_f64());
    let meters = ProduceMeters::new(start_ns);
    let load = ProduceLoad { rate: 0.0, ..load };
    let handles = produce::start(&load, start_ns, end_ns, &meters, &cores, Arc::default())?;
    watch_and_join(
        ("fill", &meters.acks),
        start_ns,
        start_ns,
        None,
        cfg.quiet,
        handles,
    )?;
    let total = meters.acks.total();
    Ok(Summary::new(
        &total,
        measured_seconds(start_ns, total.last_done_ns, end_ns),
    ))
}

/// Longest one `poll` blocks, so the end and an abort are noticed promptly.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// Where consumers start and what they measure.
#[derive(Debug, Clone)]
pub enum ConsumeMode {
    /// From the earliest offset up to `ends[p]` (the end offset of partition `p` at the start).
    Backlog { ends: Vec<i64> },
    /// From the end; records carry their send stamp. The run is over once `ends` is set (after
    /// the producers finished) and every partition has been read up to it.
    Tail { ends: Arc<OnceLock<Vec<i64>>> },
}

/// What the consume side reads. Invariant: `consumers` is at least 1.
#[derive(Debug, Clone)]
pub struct ConsumeLoad {
    pub broker: String,
    pub topic: String,
    pub partitions: u32,
    pub consumers: usize,
}

impl ConsumeLoad {
    /// Consumer `i`'s partitions: a round-robin share; empty for consumers beyond the partition
    /// count (a partition is read by one consumer only, so nothing is counted twice).
    pub fn partitions_of(&self, i: usize) -> Vec<u32> {
        (0..self.partitions)
            .filter(|p| *p as usize % self.consumers == i)
            .collect()
    }
}

/// Starts the consumer threads and returns once every one has its partitions assigned (so a
/// tailing consumer sees every record produced after this returns). They stop at the end of
/// the data, at `deadline_ns`, or when `abort` is set.
pub fn start(
    load: &ConsumeLoad,
    mode: &ConsumeMode,
    meter: &Meter,
    cores: &[Option<usize>],
    deadline_ns: u64,
    abort: Arc<AtomicBool>,
) -> Result<Vec<JoinHandle<Result<()>>>> {
    if load.consumers == 0 {
        return Err(BenchError::Invalid("--consumers must be at least 1".into()));
    }
    let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
    let mut handles = Vec::new();
    for i in 0..load.consumers {
        let reader = Reader {
            load: load.clone(),
            partitions: load.partitions_of(i),
            mode: mode.clone(),
            meter: meter.clone(),
            core: cores.get(i).copied().flatten(),
            deadline_ns,
            abort: abort.clone(),
        };
        let ready = ready_tx.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("bench-consume-{i}"))
                .spawn(move || reader.run(ready))
                .map_err(|e| BenchError::Thread(e.to_string()))?,
        );
    }
    drop(ready_tx);
    for _ in 0..load.consumers {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                abort.store(true, Ordering::Release);
                return Err(e);
            }
            Err(_) => return Err(BenchError::Thread("a consumer died while starting".into())),
        }
    }
    Ok(handles)
}

/// One consumer thread's state.
struct Reader {
    load: ConsumeLoad,
    partitions: Vec<u32>,
    mode: ConsumeMode,
    meter: Meter,
    core: Option<usize>,
    deadline_ns: u64,
    abort: Arc<AtomicBool>,
}

impl Reader {
    fn run(self, ready: mpsc::Sender<Result<()>>) -> Result<()> {
        pin_current(self.core);
        let mut consumer = match self.open() {
            Ok(c) => c,
            Err(e) => {
                let text = e.to_string();
                let _ = ready.send(Err(e));
                return Err(BenchError::Thread(text));
            }
        };
        let _ = ready.send(Ok(()));
        let result = self.read(&mut consumer);
        if result.is_err() {
            self.abort.store(true, Ordering::Release);
        }
        result
    }

    fn open(&self) -> Result<Option<Consumer>> {
        if self.partitions.is_empty() {
            return Ok(None);
        }
        let mut config = ConsumerConfig::default();
        let from = match &self.mode {
            ConsumeMode::Backlog { .. } => {
                // Each fetch's round trip, recorded on its fetcher thread.
                let rec = self.meter.recorder();
                config.on_fetch = Some(FetchObserver(Arc::new(move |f: &FetchInfo| {
                    if f.records == 0 {
                        return; // a long poll at the end that timed out: not a read
                    }
                    let done = now_ns();
                    let took = f.latency.as_nanos() as u64;
                    rec.record(
                        done.saturating_sub(took),
                        done,
                        f.records as u64,
                        f.record_bytes as u64,
                    );
                })));
                SeekTo::Earliest
            }
            ConsumeMode::Tail { .. } => SeekTo::Latest,
        };
        let topic = &self.load.topic;
        let mut consumer = Consumer::connect(&self.load.broker, config)
            .map_err(|e| BenchError::client("connecting a consumer", e))?;
        consumer
            .assign(topic, Some(&self.partitions), from)
            .map_err(|e| BenchError::client(format!("assigning partitions of {topic}"), e))?;
        Ok(Some(consumer))
    }

    fn read(&self, consumer: &mut Option<Consumer>) -> Result<()> {
        let Some(consumer) = consumer else {
            return Ok(());
        };
        let rec = self.meter.recorder();
        let topic = &self.load.topic;
        loop {
            if self.abort.load(Ordering::Acquire) || now_ns() >= self.deadline_ns {
                return Ok(());
            }
            let ends = match &self.mode {
                ConsumeMode::Backlog { ends } => Some(ends.as_slice()),
                ConsumeMode::Tail { ends } => ends.get().map(Vec::as_slice),
            };
            if let Some(ends) = ends {
                let caught_up = self
                    .partitions
                    .iter()
                    .all(|&p| consumer.position(topic, p).unwrap_or(0) >= ends[p as usize]);
                if caught_up {
                    return Ok(());
                }
            }
            let records = consumer
                .poll(POLL_SLICE)
                .map_err(|e| BenchError::client(format!("consuming {topic}"), e))?;
            if let ConsumeMode::Tail { .. } = self.mode {
                let done = now_ns();
                let mut rec = rec.lock();
                for r in &records {
                    let value = r.value.as_deref().unwrap_or_default();
                    let stamp = read_stamp(value).ok_or_else(|| {
                        BenchError::BadRecord(format!(
                            "{topic}/{} offset {} has no send stamp (was it written by strata bench?)",
                            r.partition, r.offset
                        ))
                    })?;
                    rec.record(stamp, done, 1, value.len() as u64);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_partition_is_read_by_one_consumer() {
        let l = ConsumeLoad {
            broker: String::new(),
            topic: "t".into(),
            partitions: 3,
            consumers: 2,
        };
        assert_eq!(l.partitions_of(0), vec![0, 2]);
        assert_eq!(l.partitions_of(1), vec![1]);
        let l = ConsumeLoad { consumers: 4, ..l };
        assert!(l.partitions_of(3).is_empty());
    }
}
