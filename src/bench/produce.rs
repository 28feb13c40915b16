//! The produce side of the load: `--producers` threads, each sending requests of one
//! pre-built batch to its share of the partitions over one pipelined connection per owning
//! shard (`Connection` halves: the producer thread writes, a reader thread per connection takes
//! the acknowledgements and records latency the moment each arrives). Open loop with `--rate`
//! (requests on a fixed timetable, latency from the due time), closed loop without (a new
//! request as soon as the in-flight window has room, latency from the real send).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use crate::client::{
    into_body, ClientError, ClusterView, Connection, RequestWriter, ResponseReader,
};
use crate::protocol::{Acks, ApiKey, ProduceRequest, RequestBody, ResponseBody};

use super::clock::{fine_timer_slack, now_ns, secs_to_ns, sleep_until_ns, NS_PER_SEC};
use super::error::{BenchError, Result};
use super::host::{pin_current, process_cpu, CpuUse};
use super::meter::{Meter, Recorder};
use super::output::{emit, open_hdr_log, watch_and_join};
use super::plot::percentile_plot;
use super::records::BatchTemplate;
use super::report::{format_us, table, LatencyUs, Summary};
use super::schedule::{Next, Pacer, Pacing, Timetable};
use super::workload::{
    describe, json_report, measured_seconds, place_clients, prepare_topic, start_time, LoadConfig,
};

/// `strata bench produce`: producers against the broker for the warm-up and the duration.
pub fn run(cfg: &LoadConfig) -> Result<()> {
    cfg.validate()?;
    let partitions = prepare_topic(cfg)?;
    let load = ProduceLoad::from_config(cfg, partitions, false);
    let names: Vec<String> = (0..cfg.producers).map(|i| format!("produce-{i}")).collect();
    let (cores, placement) = place_clients(&cfg.cpus, &names)?;
    let hdr = open_hdr_log(cfg.hdr_log.as_deref(), "produce")?;
    let batch_bytes = BatchTemplate::new(load.batch_records, load.record_bytes)?
        .bytes()
        .len();
    let (cpu_start, wall_start) = (process_cpu(), now_ns());
    let start_ns = start_time();
    let window_start = start_ns + secs_to_ns(cfg.warmup.as_secs_f64());
    let end_ns = window_start + secs_to_ns(cfg.duration.as_secs_f64());
    let meters = ProduceMeters::new(window_start);
    let abort = Arc::new(AtomicBool::new(false));
    let handles = start(&load, start_ns, end_ns, &meters, &cores, abort)?;
    watch_and_join(
        ("produce", &meters.acks),
        start_ns,
        window_start,
        hdr,
        cfg.quiet,
        handles,
    )?;
    let cpu = CpuUse::since(cpu_start, wall_start);
    let total = meters.acks.total();
    let summary = Summary::new(
        &total,
        measured_seconds(window_start, total.last_done_ns, end_ns),
    );
    let batch_rate = summary.records_per_sec / load.batch_records as f64 * batch_bytes as f64;
    let mut human = describe("produce", cfg, partitions, &placement);
    human.push_str(&format!(
        "latency: {}\n\n",
        latency_origin_text(cfg.rate > 0.0, load.acks)
    ));
    human.push_str(&table(&[("produce", &summary)]));
    human.push_str(&format!(
        "batches on the wire: {:.1} MB/s ({batch_bytes} B per request)\n",
        batch_rate / 1e6
    ));
    if let Some(plot) = percentile_plot(&total.latency) {
        human.push('\n');
        human.push_str(&plot);
    }
    human.push('\n');
    let mut json = json_report("produce", cfg, partitions, &summary, &cpu, &placement);
    human.push_str(&meters.lag_report(cfg.rate > 0.0, load.max_in_flight, &mut json));
    human.push_str(&cpu.line());
    human.push('\n');
    json["batch_bytes"] = batch_bytes.into();
    json["batch_bytes_per_sec"] = batch_rate.into();
    json["latency_from"] = latency_origin_text(cfg.rate > 0.0, load.acks).into();
    emit(&human, &json, cfg.json.as_deref())
}

/// What the produce latency is measured from and to.
pub fn latency_origin_text(open_loop: bool, acks: Acks) -> &'static str {
    match (open_loop, acks) {
        (true, Acks::Leader) => {
            "from each request's due time on the fixed timetable to its acknowledgement \
             (coordinated omission corrected)"
        }
        (false, Acks::Leader) => "from each request's send to its acknowledgement (closed loop)",
        (true, Acks::None) => {
            "from each request's due time until it was written to the socket (acks none: no \
             acknowledgements)"
        }
        (false, Acks::None) => {
            "from each request's send until it was written to the socket (acks none: no \
             acknowledgements)"
        }
    }
}

/// How late the open-loop sends went out: if this is large, the load generator (or the
/// window of requests in flight) could not keep the timetable.
pub fn lag_line(open_loop: bool, lag: &LatencyUs) -> String {
    if !open_loop || lag.samples == 0 {
        return String::new();
    }
    format!(
        "send lag behind the timetable: p50 {}  p99 {}  max {} (time requests waited for the \
         generator or for room in the window; included in the latency above)\n",
        format_us(lag.p50),
        format_us(lag.p99),
        format_us(lag.max)
    )
}

/// The broker's time limit for acknowledging a produce.
pub const PRODUCE_TIMEOUT_MS: u32 = 30_000;
/// How long a reader waits for an answer before the connection counts as hung.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a producer waits at the end for its requests in flight to be answered.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What the produce side sends. Invariant: `producers`, `batch_records` and `max_in_flight`
/// are at least 1; `rate` is records per second over all producers, 0 for closed loop.
#[derive(Debug, Clone)]
pub struct ProduceLoad {
    pub broker: String,
    pub topic: String,
    pub partitions: u32,
    pub producers: usize,
    pub record_bytes: usize,
    pub batch_records: usize,
    pub rate: f64,
    pub acks: Acks,
    pub max_in_flight: usize,
    /// Stamp each request's latency origin into its record values (end-to-end runs).
    pub stamp: bool,
}

impl ProduceLoad {
    /// The produce side of a workload on a topic of `partitions` partitions.
    pub fn from_config(cfg: &LoadConfig, partitions: u32, stamp: bool) -> ProduceLoad {
        ProduceLoad {
            broker: cfg.broker.clone(),
            topic: cfg.topic.clone(),
            partitions,
            producers: cfg.producers,
            record_bytes: cfg.record_bytes,
            batch_records: cfg.batch_records(),
            rate: cfg.rate,
            acks: cfg.acks,
            max_in_flight: cfg.max_in_flight,
            stamp,
        }
    }

    /// Requests per second of one producer in open loop.
    fn request_rate(&self) -> Option<f64> {
        (self.rate > 0.0).then(|| self.rate / self.batch_records as f64 / self.producers as f64)
    }

    /// The partitions producer `i` sends to (round-robin share; shared when producers
    /// outnumber partitions).
    pub fn partitions_of(&self, i: usize) -> Vec<u32> {
        let n = self.producers as u32;
        let mine: Vec<u32> = (0..self.partitions)
            .filter(|p| p % n == i as u32 % n)
            .collect();
        if mine.is_empty() {
            vec![i as u32 % self.partitions.max(1)]
        } else {
            mine
        }
    }
}

/// What the producers report besides latency: how late the open-loop sends went out, and how
/// long sends were blocked on the broker. Invariant: each send records one sample in `lag` and
/// one in `blocked`.
pub struct ProduceMeters {
    /// Acknowledgement latency (or, with `--acks none`, until the request was written).
    pub acks: Meter,
    /// Send lag: actual send time minus due time (open loop only; zero in closed loop).
    pub lag: Meter,
    /// Time each send was blocked on the broker: waiting for room in its connection's window of
    /// requests in flight, then writing the request to a socket that may not take it at once.
    /// A broker that stops answering or reading shows up here (and makes the next sends late);
    /// a generator that cannot keep up does not.
    pub blocked: Meter,
}

impl ProduceMeters {
    /// Meters counting from `window_start_ns` (the end of the warm-up).
    pub fn new(window_start_ns: u64) -> Self {
        ProduceMeters {
            acks: Meter::new(window_start_ns),
            lag: Meter::new(window_start_ns),
            blocked: Meter::new(window_start_ns),
        }
    }

    /// The send lag line of the human report (open loop only: closed-loop sends have no due
    /// time), and its figures as `send_lag_us` and `send_blocked_us` in `json`. A large lag
    /// with little blocking means the generator itself could not keep the timetable.
    pub fn lag_report(
        &self,
        open_loop: bool,
        max_in_flight: usize,
        json: &mut serde_json::Value,
    ) -> String {
        let lag = LatencyUs::of(&self.lag.total().latency);
        let blocked = LatencyUs::of(&self.blocked.total().latency);
        let mut line = lag_line(open_loop, &lag);
        if !line.is_empty() {
            line.push_str(&format!(
                "sends blocked on the broker (room in the window of {max_in_flight} requests, \
                 then the socket write): p99 {}  max {} (a blocked send makes the next ones \
                 late; lag beyond it is the generator's own)\n",
                format_us(blocked.p99),
                format_us(blocked.max)
            ));
        }
        json["send_lag_us"] = serde_json::to_value(lag).expect("serializes");
        json["send_blocked_us"] = serde_json::to_value(blocked).expect("serializes");
        line
    }
}

/// Starts the producer threads; they run until `end_ns`, then drain.
pub fn start(
    load: &ProduceLoad,
    start_ns: u64,
    end_ns: u64,
    meters: &ProduceMeters,
    cores: &[Option<usize>],
    abort: Arc<AtomicBool>,
) -> Result<Vec<JoinHandle<Result<()>>>> {
    if load.producers == 0 || load.batch_records == 0 || load.max_in_flight == 0 {
        return Err(BenchError::Invalid(
            "--producers, --batch-records and --max-in-flight must be at least 1".into(),
        ));
    }
    let mut handles = Vec::new();
    for i in 0..load.producers {
        let pacing = match load.request_rate() {
            Some(r) => {
                // Producers are spread across one interval so their sends do not coincide.
                let t = Timetable::new(start_ns, r)?;
                let phase = (t.interval_ns() * i as f64 / load.producers as f64) as u64;
                Pacing::Open(Timetable::new(start_ns + phase, r)?)
            }
            None => Pacing::Closed,
        };
        // Built once here, never per request, and moved into the thread.
        let template = BatchTemplate::new(load.batch_records, load.record_bytes)?;
        if load.stamp && !template.can_stamp(load.record_bytes) {
            return Err(BenchError::Invalid(format!(
                "--record-bytes must be at least {} to carry the send time",
                super::records::STAMP_BYTES
            )));
        }
        let worker = Worker {
            load: load.clone(),
            partitions: load.partitions_of(i),
            pacer: Pacer::new(pacing, end_ns),
            start_ns,
            acks: meters.acks.clone(),
            lag: meters.lag.recorder(),
            blocked: meters.blocked.recorder(),
            core: cores.get(i).copied().flatten(),
            abort: abort.clone(),
        };
        handles.push(
            std::thread::Builder::new()
                .name(format!("bench-produce-{i}"))
                .spawn(move || worker.run(template))
                .map_err(|e| BenchError::Thread(e.to_string()))?,
        );
    }
    Ok(handles)
}

/// One producer thread's state.
struct Worker {
    load: ProduceLoad,
    partitions: Vec<u32>,
    pacer: Pacer,
    start_ns: u64,
    acks: Meter,
    lag: Recorder,
    blocked: Recorder,
    core: Option<usize>,
    abort: Arc<AtomicBool>,
}

impl Worker {
    fn run(mut self, mut template: BatchTemplate) -> Result<()> {
        pin_current(self.core);
        fine_timer_slack();
        let result = self.send_all(&mut template);
        if result.is_err() {
            self.abort.store(true, Ordering::Release);
        }
        result
    }

    fn send_all(&mut self, template: &mut BatchTemplate) -> Result<()> {
        let load = &self.load;
        let mut cluster = ClusterView::connect(&load.broker)
            .map_err(|e| BenchError::client("reading the broker's metadata", e))?;
        let route = cluster
            .route(&load.topic)
            .map_err(|e| BenchError::client(format!("routing topic {}", load.topic), e))?
            .clone();
        // One link per owning shard; `targets[k]` is (partition, its link).
        let mut links: Vec<Link> = Vec::new();
        let mut targets: Vec<(u32, usize)> = Vec::new();
        for &p in &self.partitions {
            let addr = route
                .endpoint(p)
                .map_err(|e| BenchError::client(format!("routing {}/{p}", load.topic), e))?;
            let k = match links.iter().position(|l| l.addr == addr) {
                Some(k) => k,
                None => {
                    links.push(Link::open(addr, load, self.acks.recorder())?);
                    links.len() - 1
                }
            };
            targets.push((p, k));
        }
        let (records, value_bytes) = (template.records(), template.value_bytes());
        // Closed loop starts with the timetable's start too (open loop waits for it anyway).
        sleep_until_ns(self.start_ns);
        let mut outcome = Ok(());
        loop {
            if self.abort.load(Ordering::Acquire) {
                break;
            }
            let (partition, k) = targets[(self.pacer.sent() % targets.len() as u64) as usize];
            match self.pacer.next(now_ns()) {
                Next::Stop => break,
                Next::WaitUntil(t) => sleep_until_ns(t.min(now_ns() + NS_PER_SEC / 10)),
                Next::Send { intended_ns } => {
                    let link = &mut links[k];
                    let asked = now_ns();
                    if let Err(e) = link.acquire() {
                        outcome = Err(e);
                        break;
                    }
                    let sent = now_ns();
                    self.lag.record(intended_ns, sent, 1, 0);
                    let origin = self.pacer.latency_origin(intended_ns, sent);
                    let payload = if load.stamp {
                        template.stamped(origin)
                    } else {
                        template.bytes().clone()
                    };
                    let writing = now_ns();
                    if let Err(e) =
                        link.send(load, partition, payload, origin, records, value_bytes)
                    {
                        outcome = Err(e);
                        break;
                    }
                    // The window wait and the socket write, not the stamping between them.
                    let written = now_ns();
                    let blocked = (sent - asked) + (written - writing);
                    self.blocked.record(written - blocked, written, 1, 0);
                }
            }
        }
        for link in links {
            let drained = link.finish();
            if outcome.is_ok() {
                outcome = drained;
            }
        }
        outcome
    }
}

/// A request written and not yet answered.
struct Pending {
    origin_ns: u64,
    records: u64,
    bytes: u64,
}

/// The requests in flight on one connection. Invariant: `pending` is in write order (the order
/// answers come back in) and never longer than the window; `failed` is set once, by the reader.
#[derive(Default)]
struct WindowState {
    pending: VecDeque<Pending>,
    failed: Option<String>,
    /// The writer is done: the reader exits once `pending` is empty.
    closing: bool,
}

#[derive(Default)]
struct Window {
    state: Mutex<WindowState>,
    /// Signalled when an answer frees a slot, on failure, and when the last answer arrived.
    changed: Condvar,
}

impl Window {
    fn lock(&self) -> MutexGuard<'_, WindowState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One pipelined connection to a shard: the producer thread writes, a reader thread answers.
struct Link {
    addr: SocketAddr,
    writer: RequestWriter,
    window: Arc<Window>,
    max_in_flight: usize,
    /// `None` with `--acks none`: there are no answers; latency is recorded at the write.
    reader: Option<JoinHandle<()>>,
    recorder: Recorder,
}

impl Link {
    fn open(addr: SocketAddr, load: &ProduceLoad, recorder: Recorder) -> Result<Link> {
        let conn = Connection::connect(&addr.to_string())
            .map_err(|e| BenchError::client("connecting a producer", e))?
            .with_client_id("strata-bench");
        conn.set_read_timeout(Some(RESPONSE_TIMEOUT))
            .map_err(|e| BenchError::client("connecting a producer", e))?;
        let (writer, reader) = conn.into_split();
        let window = Arc::new(Window::default());
        let reader = if load.acks == Acks::None {
            None
        } else {
            let (window, rec) = (window.clone(), recorder.clone());
            Some(
                std::thread::Builder::new()
                    .name("bench-produce-acks".into())
                    .spawn(move || read_acks(reader, window, rec))
                    .map_err(|e| BenchError::Thread(e.to_string()))?,
            )
        };
        Ok(Link {
            addr,
            writer,
            window,
            max_in_flight: load.max_in_flight,
            reader,
            recorder,
        })
    }

    /// Waits for room in the window (back-pressure from the broker).
    fn acquire(&self) -> Result<()> {
        if self.reader.is_none() {
            return Ok(());
        }
        let mut st = self.window.lock();
        loop {
            if let Some(f) = &st.failed {
                return Err(BenchError::client(
                    format!("producing to {}", self.addr),
                    ClientError::Invalid(f.clone()),
                ));
            }
            if st.pending.len() < self.max_in_flight {
                return Ok(());
            }
            st = self
                .window
                .changed
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn send(
        &mut self,
        load: &ProduceLoad,
        partition: u32,
        payload: Bytes,
        origin_ns: u64,
        records: u64,
        bytes: u64,
    ) -> Result<()> {
        let body = RequestBody::Produce(ProduceRequest {
            topic: load.topic.clone(),
            partition,
            acks: load.acks,
            timeout_ms: PRODUCE_TIMEOUT_MS,
        });
        if self.reader.is_some() {
            // Queued before it is written, so the reader always finds what it answers.
            self.window.lock().pending.push_back(Pending {
                origin_ns,
                records,
                bytes,
            });
        }
        let payload = [payload];
        self.writer
            .send(body, &payload)
            .map_err(|e| BenchError::client(format!("producing to {}", self.addr), e))?;
        if self.reader.is_none() {
            self.recorder.record(origin_ns, now_ns(), records, bytes);
        }
        Ok(())
    }

    /// Waits for every answer, then closes the connection.
    fn finish(self) -> Result<()> {
        let mut failed = None;
        if let Some(reader) = self.reader {
            let mut st = self.window.lock();
            st.closing = true;
            let deadline = now_ns() + DRAIN_TIMEOUT.as_nanos() as u64;
            while !st.pending.is_empty() && st.failed.is_none() && now_ns() < deadline {
                st = self
                    .window
                    .changed
                    .wait_timeout(st, Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if !st.pending.is_empty() && st.failed.is_none() {
                failed = Some(format!(
                    "{} requests unanswered after {DRAIN_TIMEOUT:?}",
                    st.pending.len()
                ));
            }
            failed = failed.or_else(|| st.failed.clone());
            drop(st);
            self.writer.shutdown();
            let _ = reader.join();
        } else {
            self.writer.shutdown();
        }
        match failed {
            Some(f) => Err(BenchError::client(
                format!("producing to {}", self.addr),
                ClientError::Invalid(f),
            )),
            None => Ok(()),
        }
    }
}

/// The reader thread of a link: each answer completes the oldest request in flight.
fn read_acks(mut reader: ResponseReader, window: Arc<Window>, rec: Recorder) {
    loop {
        let answer = reader.read();
        let done = now_ns();
        let mut st = window.lock();
        let outcome = match answer {
            Ok((response, _)) => match st.pending.pop_front() {
                Some(p) => match into_body(reader.addr(), ApiKey::Produce, response) {
                    Ok(ResponseBody::Produce(_)) => {
                        rec.record(p.origin_ns, done, p.records, p.bytes);
                        Ok(())
                    }
                    Ok(other) => Err(format!("a produce was answered with {:?}", other.api_key())),
                    Err(e) => Err(e.to_string()),
                },
                None => Err("an answer to no request".to_string()),
            },
            Err(_) if st.closing && st.pending.is_empty() => return,
            Err(e) => Err(e.to_string()),
        };
        if let Err(f) = outcome {
            st.failed.get_or_insert(f);
            window.changed.notify_all();
            return;
        }
        window.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(partitions: u32, producers: usize) -> ProduceLoad {
        ProduceLoad {
            broker: String::new(),
            topic: "t".into(),
            partitions,
            producers,
            record_bytes: 100,
            batch_records: 10,
            rate: 0.0,
            acks: Acks::Leader,
            max_in_flight: 1,
            stamp: false,
        }
    }

    #[test]
    fn partitions_are_shared_out_round_robin() {
        let l = load(5, 2);
        assert_eq!(l.partitions_of(0), vec![0, 2, 4]);
        assert_eq!(l.partitions_of(1), vec![1, 3]);
        let l = load(1, 3);
        assert_eq!(
            l.partitions_of(2),
            vec![0],
            "more producers than partitions share"
        );
    }

    #[test]
    fn the_record_rate_is_split_into_request_rates_per_producer() {
        let mut l = load(1, 4);
        assert_eq!(l.request_rate(), None);
        l.rate = 40_000.0;
        assert_eq!(l.request_rate(), Some(1_000.0));
    }
}
