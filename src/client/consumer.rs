//! The consumer: reads assigned partitions from chosen offsets. Each partition has a fetcher
//! thread with its own connection to the owning shard that long-polls the next fetch while the
//! application handles the records of the previous ones (up to `prefetch` fetch answers are
//! buffered), so one idle partition never delays another.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::protocol::{ErrorCode, FetchRequest, OffsetSpec};
use crate::record::Batch;

use super::metadata::ClusterView;
use super::{ClientError, Connection};

/// Default largest fetch answer per partition.
pub const DEFAULT_FETCH_MAX_BYTES: u32 = 1 << 20;
/// Default time a fetch at the log end waits for new records.
pub const DEFAULT_FETCH_MAX_WAIT_MS: u32 = 500;
/// Default fetch answers buffered ahead of `poll`, across all partitions (each at most
/// `fetch_max_bytes`).
pub const DEFAULT_PREFETCH: usize = 16;
/// Wait before a fetcher reconnects after its connection failed.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// How much longer than a fetch's `max_wait_ms` the fetcher waits for its answer.
const RESPONSE_TIMEOUT_MARGIN: Duration = Duration::from_secs(30);
/// Reconnect attempts of a fetcher before it reports the error to `poll` and stops.
const MAX_RECONNECTS: u32 = 50;

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub fetch_max_bytes: u32,
    pub fetch_max_wait_ms: u32,
    pub prefetch: usize,
    /// Told about every answered fetch (on the fetcher's thread), for applications that measure
    /// their consumer; `None` by default.
    pub on_fetch: Option<FetchObserver>,
}

/// What one answered fetch brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchInfo {
    pub partition: u32,
    /// Records at or after the fetched offset (the ones `poll` will return).
    pub records: usize,
    /// Bytes of the batches in the answer.
    pub bytes: usize,
    /// Key and value bytes of those records.
    pub record_bytes: usize,
    /// From sending the fetch to having its whole answer.
    pub latency: Duration,
}

/// A callback run on a fetcher thread after each answered fetch; it must be quick (the next
/// fetch waits for it).
#[derive(Clone)]
pub struct FetchObserver(pub Arc<dyn Fn(&FetchInfo) + Send + Sync>);

impl std::fmt::Debug for FetchObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FetchObserver")
    }
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            fetch_max_bytes: DEFAULT_FETCH_MAX_BYTES,
            fetch_max_wait_ms: DEFAULT_FETCH_MAX_WAIT_MS,
            prefetch: DEFAULT_PREFETCH,
            on_fetch: None,
        }
    }
}

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The first offset still in the log.
    Earliest,
    /// The end: only records produced from now on.
    Latest,
    Offset(i64),
    /// The first record whose timestamp is at or after this (ms since the epoch); the end if
    /// there is none.
    Timestamp(i64),
}

/// One record as the application sees it; byte fields are slices of the fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// What a fetcher hands to `poll`. Invariant: `generation` is the fetcher's at its start.
enum Event {
    Records {
        generation: u64,
        records: Vec<ConsumerRecord>,
    },
    Failed {
        generation: u64,
        error: ClientError,
    },
}

/// A running fetcher thread. Dropping the stop flag's last reader ends the thread after its
/// current fetch.
struct Fetcher {
    generation: u64,
    stop: Arc<AtomicBool>,
    /// Next offset to hand to the application.
    position: i64,
    _thread: JoinHandle<()>,
}

/// Reads records of assigned partitions.
pub struct Consumer {
    cluster: ClusterView,
    config: ConsumerConfig,
    fetchers: HashMap<(Arc<str>, u32), Fetcher>,
    next_generation: u64,
    tx: mpsc::SyncSender<Event>,
    rx: mpsc::Receiver<Event>,
    /// Records received but not yet returned by `poll`.
    buffered: VecDeque<ConsumerRecord>,
    /// Partitions whose fetcher stopped on an error `poll` returned, with their positions, not
    /// yet taken.
    failed: Vec<(String, u32, i64)>,
}

impl Consumer {
    /// Connects to the broker at `bootstrap` (`HOST:PORT`).
    pub fn connect(bootstrap: &str, config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let cluster = ClusterView::connect(bootstrap)?;
        let (tx, rx) = mpsc::sync_channel(config.prefetch.max(1));
        Ok(Consumer {
            cluster,
            config,
            fetchers: HashMap::new(),
            next_generation: 0,
            tx,
            rx,
            buffered: VecDeque::new(),
            failed: Vec::new(),
        })
    }

    /// The partition count of `topic` (`UnknownTopic` if it does not exist).
    pub fn partitions(&mut self, topic: &str) -> Result<u32, ClientError> {
        Ok(self.cluster.route(topic)?.partitions)
    }

    /// Starts reading `partitions` of `topic` (every partition when `None`) from `from`.
    pub fn assign(
        &mut self,
        topic: &str,
        partitions: Option<&[u32]>,
        from: SeekTo,
    ) -> Result<(), ClientError> {
        let count = self.partitions(topic)?;
        let list: Vec<u32> = match partitions {
            Some(ps) => ps.to_vec(),
            None => (0..count).collect(),
        };
        for p in list {
            if p >= count {
                return Err(ClientError::UnknownTopic {
                    topic: topic.to_string(),
                    partition: Some(p),
                });
            }
            self.seek(topic, p, from)?;
        }
        Ok(())
    }

    /// Moves a partition to `to`: records not yet returned from before the seek are dropped.
    pub fn seek(&mut self, topic: &str, partition: u32, to: SeekTo) -> Result<(), ClientError> {
        let addr = self.cluster.route(topic)?.endpoint(partition)?;
        let mut conn = Connection::connect(&addr.to_string())?.with_client_id("strata-consumer");
        let offset = resolve(&mut conn, topic, partition, to)?;
        self.unassign(topic, partition);
        let topic: Arc<str> = Arc::from(topic);
        self.next_generation += 1;
        let generation = self.next_generation;
        let stop = Arc::new(AtomicBool::new(false));
        let job = FetchJob {
            topic: topic.clone(),
            partition,
            offset,
            generation,
            stop: stop.clone(),
            tx: self.tx.clone(),
            config: self.config.clone(),
            bootstrap: self.cluster.bootstrap().to_string(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("strata-fetch-{partition}"))
            .spawn(move || job.run(conn))
            .map_err(|e| ClientError::Invalid(format!("cannot start a fetcher thread: {e}")))?;
        self.fetchers.insert(
            (topic, partition),
            Fetcher {
                generation,
                stop,
                position: offset,
                _thread: thread,
            },
        );
        Ok(())
    }

    /// Partitions no longer read because their fetcher failed (each error was returned by
    /// `poll` once), with the position they had; seek to read them again.
    pub fn take_failed(&mut self) -> Vec<(String, u32, i64)> {
        std::mem::take(&mut self.failed)
    }

    /// Stops reading a partition; its records not yet returned by `poll` are dropped.
    pub fn unassign(&mut self, topic: &str, partition: u32) {
        let topic: Arc<str> = Arc::from(topic);
        if let Some(old) = self.fetchers.remove(&(topic.clone(), partition)) {
            old.stop.store(true, Ordering::Release);
        }
        self.buffered
            .retain(|r| !(r.topic == topic && r.partition == partition));
    }

    /// The offset after the last record `poll` returned of a partition (where it started, if
    /// none yet).
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.fetchers
            .get(&(Arc::from(topic), partition))
            .map(|f| f.position)
    }

    /// Records that arrived, waiting up to `timeout` for the first; empty when none came.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        self.poll_max(timeout, usize::MAX)
    }

    /// `poll`, returning at most `max` records; the rest wait for the next call (a partition's
    /// `position` moves only past records returned).
    pub fn poll_max(
        &mut self,
        timeout: Duration,
        max: usize,
    ) -> Result<Vec<ConsumerRecord>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.buffered.is_empty() && max > 0 {
                let n = max.min(self.buffered.len());
                let out: Vec<ConsumerRecord> = self.buffered.drain(..n).collect();
                self.advance_positions(&out);
                return Ok(out);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match self.rx.recv_timeout(left) {
                Ok(e) => e,
                Err(mpsc::RecvTimeoutError::Timeout) => return Ok(Vec::new()),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(ClientError::Invalid("every fetcher stopped".into()))
                }
            };
            match event {
                Event::Records {
                    generation,
                    records,
                } => {
                    let Some(first) = records.first() else {
                        continue;
                    };
                    let key = (first.topic.clone(), first.partition);
                    match self.fetchers.get(&key) {
                        Some(f) if f.generation == generation => self.buffered.extend(records),
                        // From before a seek, or of a partition no longer assigned.
                        _ => continue,
                    }
                }
                Event::Failed { generation, error } => {
                    let failed = self
                        .fetchers
                        .iter()
                        .find(|(_, f)| f.generation == generation)
                        .map(|(key, _)| key.clone());
                    if let Some(key) = failed {
                        // The fetcher has stopped: the partition is no longer read.
                        let f = self.fetchers.remove(&key).expect("found above");
                        self.failed.push((key.0.to_string(), key.1, f.position));
                        return Err(error);
                    }
                }
            }
        }
    }

    /// Moves each partition's position past the last of its records in `delivered`.
    fn advance_positions(&mut self, delivered: &[ConsumerRecord]) {
        for (i, r) in delivered.iter().enumerate() {
            let last_of_run = delivered
                .get(i + 1)
                .is_none_or(|next| next.partition != r.partition || next.topic != r.topic);
            if last_of_run {
                if let Some(f) = self.fetchers.get_mut(&(r.topic.clone(), r.partition)) {
                    debug_assert!(r.offset >= f.position, "positions only move forward");
                    f.position = r.offset + 1;
                }
            }
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        for f in self.fetchers.values() {
            f.stop.store(true, Ordering::Release);
        }
    }
}

/// The offset `to` names in a partition.
fn resolve(
    conn: &mut Connection,
    topic: &str,
    partition: u32,
    to: SeekTo,
) -> Result<i64, ClientError> {
    match to {
        SeekTo::Offset(o) if o >= 0 => Ok(o),
        SeekTo::Offset(o) => Err(ClientError::Invalid(format!("offset {o} is negative"))),
        SeekTo::Earliest => Ok(conn
            .list_offsets(topic, partition, OffsetSpec::Earliest)?
            .unwrap_or(0)),
        SeekTo::Latest => Ok(conn
            .list_offsets(topic, partition, OffsetSpec::Latest)?
            .unwrap_or(0)),
        SeekTo::Timestamp(ts) => {
            match conn.list_offsets(topic, partition, OffsetSpec::Timestamp(ts))? {
                Some(o) => Ok(o),
                None => Ok(conn
                    .list_offsets(topic, partition, OffsetSpec::Latest)?
                    .unwrap_or(0)),
            }
        }
    }
}

/// One partition's fetch loop.
struct FetchJob {
    topic: Arc<str>,
    partition: u32,
    offset: i64,
    generation: u64,
    stop: Arc<AtomicBool>,
    tx: mpsc::SyncSender<Event>,
    config: ConsumerConfig,
    bootstrap: String,
}

impl FetchJob {
    fn run(mut self, mut conn: Connection) {
        let mut failures = 0u32;
        let _ = conn.set_read_timeout(Some(self.response_timeout()));
        while !self.stop.load(Ordering::Acquire) {
            let req = FetchRequest {
                topic: self.topic.to_string(),
                partition: self.partition,
                offset: self.offset,
                max_bytes: self.config.fetch_max_bytes,
                max_wait_ms: self.config.fetch_max_wait_ms,
                min_bytes: 1,
            };
            let sent = Instant::now();
            let batches = match conn.fetch(req) {
                Ok((_, batches)) => {
                    failures = 0;
                    batches
                }
                Err(e) if e.is_retriable() && failures < MAX_RECONNECTS => {
                    failures += 1;
                    tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, "fetch failed; reconnecting");
                    std::thread::sleep(RECONNECT_BACKOFF);
                    match self.reconnect() {
                        Ok(c) => conn = c,
                        Err(e) => tracing::debug!(error = %e, "reconnect failed"),
                    }
                    continue;
                }
                Err(e) => {
                    let _ = self.tx.send(Event::Failed {
                        generation: self.generation,
                        error: e,
                    });
                    return;
                }
            };
            let latency = sent.elapsed();
            let bytes = batches.iter().map(Bytes::len).sum();
            let records = match self.decode(batches) {
                Ok(r) => r,
                Err(error) => {
                    let _ = self.tx.send(Event::Failed {
                        generation: self.generation,
                        error,
                    });
                    return;
                }
            };
            if let Some(observe) = &self.config.on_fetch {
                (observe.0)(&FetchInfo {
                    partition: self.partition,
                    records: records.len(),
                    bytes,
                    record_bytes: records
                        .iter()
                        .map(|r| {
                            r.key.as_ref().map_or(0, Bytes::len)
                                + r.value.as_ref().map_or(0, Bytes::len)
                        })
                        .sum(),
                    latency,
                });
            }
            if let Some(last) = records.last() {
                self.offset = last.offset + 1;
                let event = Event::Records {
                    generation: self.generation,
                    records,
                };
                if self.tx.send(event).is_err() {
                    return; // the consumer is gone
                }
            }
        }
    }

    /// A new connection to the partition's owner, found through fresh metadata.
    fn reconnect(&self) -> Result<Connection, ClientError> {
        let mut view = ClusterView::connect(&self.bootstrap)?;
        let addr = view.route(&self.topic)?.endpoint(self.partition)?;
        let conn = Connection::connect(&addr.to_string())?.with_client_id("strata-consumer");
        conn.set_read_timeout(Some(self.response_timeout()))?;
        Ok(conn)
    }

    /// How long a fetch may go unanswered before the connection counts as broken.
    fn response_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.config.fetch_max_wait_ms)) + RESPONSE_TIMEOUT_MARGIN
    }

    /// The records at or after `self.offset` (a fetch starts at the batch holding the offset).
    fn decode(&self, batches: Vec<Bytes>) -> Result<Vec<ConsumerRecord>, ClientError> {
        let bad = |e: crate::record::RecordError| ClientError::Broker {
            code: ErrorCode::CorruptBatch,
            message: format!(
                "{}/{}: fetched a bad batch: {e}",
                self.topic, self.partition
            ),
        };
        let mut out = Vec::new();
        for bytes in batches {
            let batch = Batch::parse(bytes).map_err(bad)?;
            for record in batch.records().map_err(bad)? {
                let r = record.map_err(bad)?;
                if r.offset < self.offset {
                    continue;
                }
                out.push(ConsumerRecord {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                });
            }
        }
        Ok(out)
    }
}
