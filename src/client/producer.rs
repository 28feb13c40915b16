//! The producer: records are appended to a batch per partition, batches go out when full
//! (`batch_bytes`) or old (`linger`), each to the shard that owns its partition, over one
//! pipelined connection per shard with at most `max_in_flight` requests outstanding.
//!
//! Threads: the caller's (`send` only appends to a batch), one sender thread (linger and
//! routing), and a writer and a reader thread per shard connection. Delivery is at least once:
//! a batch whose connection broke or whose error is retriable is sent again (up to `retries`),
//! which may duplicate it if the broker had appended it, and may reorder it after batches sent
//! later to the same partition.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::clock::now_ms;
use crate::protocol::{Acks, ApiKey, ProduceRequest, RequestBody, ResponseBody};
use crate::record::BatchBuilder;

use super::connection::{into_body, RequestWriter, ResponseReader};
use super::metadata::{ClusterView, TopicRoute};
use super::partitioner::{partition_for_key, StickyPartitioner};
use super::{ClientError, Connection};

/// Default bytes of one batch before it is sent.
pub const DEFAULT_BATCH_BYTES: usize = 1 << 20;
/// Default time a batch may wait for more records.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);
/// Default bytes of closed batches not yet acknowledged before `send` blocks.
pub const DEFAULT_BUFFER_BYTES: usize = 64 << 20;
/// Default produce requests outstanding per connection.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 5;
/// Default retries of a batch after a retriable error.
pub const DEFAULT_RETRIES: u32 = 5;
/// Default wait before a retry (doubled each time).
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How much longer than the broker's own request timeout the client waits for an answer.
pub const RESPONSE_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);
/// Longest wait between two retries, however many came before.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// Default time the broker may take to acknowledge.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u32 = 30_000;

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub batch_bytes: usize,
    /// `send` blocks while closed batches not yet acknowledged hold this many bytes.
    pub buffer_bytes: usize,
    pub linger: Duration,
    pub acks: Acks,
    pub max_in_flight: usize,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub request_timeout_ms: u32,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            batch_bytes: DEFAULT_BATCH_BYTES,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            linger: DEFAULT_LINGER,
            acks: Acks::Leader,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            retries: DEFAULT_RETRIES,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
        }
    }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: u32,
    /// `-1` when the producer does not wait for acknowledgements (`Acks::None`).
    pub offset: i64,
}

/// The outcome of a batch, shared by the futures of its records.
type BatchOutcome = Result<(u32, i64), Arc<ClientError>>;

/// Completion of one batch. Invariant: `outcome` is set once and never changes.
#[derive(Default)]
struct Completion {
    state: Mutex<(Option<BatchOutcome>, Vec<Waker>)>,
    done: Condvar,
}

impl Completion {
    fn complete(&self, outcome: BatchOutcome) {
        let wakers = {
            let mut st = lock(&self.state);
            debug_assert!(st.0.is_none(), "a batch completes once");
            st.0 = Some(outcome);
            std::mem::take(&mut st.1)
        };
        self.done.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// The acknowledgement of one record: a future, or `wait()` to block for it.
pub struct DeliveryFuture {
    completion: Arc<Completion>,
    /// The record's offset delta within its batch.
    index: u32,
}

impl DeliveryFuture {
    fn resolve(&self, outcome: &BatchOutcome) -> Result<RecordMetadata, Arc<ClientError>> {
        match outcome {
            Ok((partition, base)) => Ok(RecordMetadata {
                partition: *partition,
                offset: if *base < 0 {
                    -1
                } else {
                    base + i64::from(self.index)
                },
            }),
            Err(e) => Err(e.clone()),
        }
    }

    /// Blocks until the record is acknowledged or has failed for good.
    pub fn wait(self) -> Result<RecordMetadata, Arc<ClientError>> {
        let mut st = lock(&self.completion.state);
        loop {
            if let Some(outcome) = &st.0 {
                return self.resolve(outcome);
            }
            st = self
                .completion
                .done
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, Arc<ClientError>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = lock(&self.completion.state);
        if let Some(outcome) = &st.0 {
            return Poll::Ready(self.resolve(outcome));
        }
        if !st.1.iter().any(|w| w.will_wake(cx.waker())) {
            st.1.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A batch being filled. Invariant: `builder` holds `records` records, all for `partition`.
struct OpenBatch {
    builder: BatchBuilder,
    records: u32,
    created: Instant,
    completion: Arc<Completion>,
}

/// A closed batch on its way to the broker.
struct ReadyBatch {
    topic: String,
    partition: u32,
    bytes: Bytes,
    completion: Arc<Completion>,
    attempts: u32,
    /// Not before this instant (retry backoff).
    not_before: Instant,
}

/// Everything the threads share. Invariant: `unacked` counts batches closed but not completed,
/// and `buffered_bytes` their bytes.
struct State {
    cluster: ClusterView,
    /// Open batches by topic, then partition.
    open: HashMap<String, HashMap<u32, OpenBatch>>,
    ready: VecDeque<ReadyBatch>,
    sticky: HashMap<String, StickyPartitioner>,
    unacked: usize,
    buffered_bytes: usize,
    flush_requested: bool,
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when `ready` or `open` change, or on close.
    wake_sender: Condvar,
    /// Signalled when a batch completes.
    progress: Condvar,
    config: ProducerConfig,
}

/// Sends records to a broker's topics. Cheap to share between threads (`&self` methods).
pub struct Producer {
    shared: Arc<Shared>,
    sender: Option<JoinHandle<()>>,
}

impl Producer {
    /// Connects to the broker at `bootstrap` (`HOST:PORT`), reads its metadata.
    pub fn connect(bootstrap: &str, config: ProducerConfig) -> Result<Producer, ClientError> {
        if config.batch_bytes == 0 || config.buffer_bytes == 0 || config.max_in_flight == 0 {
            return Err(ClientError::Invalid(
                "batch_bytes, buffer_bytes and max_in_flight must be at least 1".into(),
            ));
        }
        let cluster = ClusterView::connect(bootstrap)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                cluster,
                open: HashMap::new(),
                ready: VecDeque::new(),
                sticky: HashMap::new(),
                unacked: 0,
                buffered_bytes: 0,
                flush_requested: false,
                closing: false,
            }),
            wake_sender: Condvar::new(),
            progress: Condvar::new(),
            config,
        });
        let for_thread = shared.clone();
        let sender = std::thread::Builder::new()
            .name("strata-producer".into())
            .spawn(move || sender_loop(for_thread))
            .map_err(|e| ClientError::Invalid(format!("cannot start the producer thread: {e}")))?;
        Ok(Producer {
            shared,
            sender: Some(sender),
        })
    }

    /// The partitions of `topic` (reads metadata the first time).
    pub fn partitions(&self, topic: &str) -> Result<u32, ClientError> {
        let mut st = lock(&self.shared.state);
        Ok(st.cluster.route(topic)?.partitions)
    }

    /// Appends a record to the batch of its partition: `partition` when given, else the murmur2
    /// of `key` (as Kafka clients), else the sticky partition. Returns at once; the future
    /// resolves when the broker acknowledged the record's batch.
    pub fn send(
        &self,
        topic: &str,
        partition: Option<u32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<DeliveryFuture, ClientError> {
        let timestamp = now_ms();
        let config = &self.shared.config;
        let mut st = lock(&self.shared.state);
        // Back-pressure: a producer faster than the broker waits here, not in memory.
        while st.buffered_bytes >= config.buffer_bytes && !st.closing {
            st = self
                .shared
                .progress
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
        if st.closing {
            return Err(ClientError::Invalid("the producer is closed".into()));
        }
        // A known topic is routed by its cached partition count: refreshing stale metadata is
        // the sender thread's job, so `send` does no I/O once the topic has been seen.
        let partitions = match st.cluster.known_partitions(topic) {
            Some(n) => n,
            None => st.cluster.route(topic)?.partitions,
        };
        let partition = match (partition, key) {
            (Some(p), _) if p < partitions => p,
            (Some(p), _) => {
                return Err(ClientError::UnknownTopic {
                    topic: topic.to_string(),
                    partition: Some(p),
                })
            }
            (None, Some(k)) => partition_for_key(k, partitions),
            (None, None) => match st.sticky.get(topic) {
                Some(sticky) => sticky.partition(partitions),
                None => {
                    st.sticky
                        .insert(topic.to_string(), StickyPartitioner::default());
                    0
                }
            },
        };
        // Allocates only for a new topic or batch, never per record.
        if !st.open.contains_key(topic) {
            st.open.insert(topic.to_string(), HashMap::new());
        }
        let batches = st.open.get_mut(topic).expect("inserted above");
        let open = batches.entry(partition).or_insert_with(|| OpenBatch {
            builder: BatchBuilder::with_capacity(config.batch_bytes.min(DEFAULT_BATCH_BYTES)),
            records: 0,
            created: Instant::now(),
            completion: Arc::new(Completion::default()),
        });
        open.builder.append(timestamp, key, value, &[]);
        let future = DeliveryFuture {
            completion: open.completion.clone(),
            index: open.records,
        };
        open.records += 1;
        let (full, first) = (
            open.builder.len_bytes() >= config.batch_bytes,
            open.records == 1,
        );
        if full {
            close_batch(&mut st, topic, partition, partitions);
        }
        if full || first {
            // A full batch to send, or a new batch whose linger deadline the sender must learn.
            self.shared.wake_sender.notify_one();
        }
        Ok(future)
    }

    /// Sends every batch now and waits until each record sent before is acknowledged or failed.
    pub fn flush(&self) {
        let mut st = lock(&self.shared.state);
        st.flush_requested = true;
        self.shared.wake_sender.notify_one();
        while st.unacked > 0 || !st.open.is_empty() {
            st = self
                .shared
                .progress
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
        st.flush_requested = false;
    }

    /// Flushes, then stops the producer's threads.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(sender) = self.sender.take() {
            self.flush();
            lock(&self.shared.state).closing = true;
            self.shared.wake_sender.notify_all();
            let _ = sender.join();
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Moves the open batch of `topic`/`partition` to the ready queue.
fn close_batch(st: &mut State, topic: &str, partition: u32, partitions: u32) {
    let Some(batches) = st.open.get_mut(topic) else {
        return;
    };
    let Some(open) = batches.remove(&partition) else {
        return;
    };
    if batches.is_empty() {
        st.open.remove(topic);
    }
    debug_assert!(open.records > 0, "an open batch holds a record");
    if let Some(sticky) = st.sticky.get_mut(topic) {
        if sticky.partition(partitions) == partition {
            sticky.batch_sent(partitions);
        }
    }
    let bytes = open.builder.finish().freeze();
    st.unacked += 1;
    st.buffered_bytes += bytes.len();
    st.ready.push_back(ReadyBatch {
        topic: topic.to_string(),
        partition,
        bytes,
        completion: open.completion,
        attempts: 0,
        not_before: Instant::now(),
    });
}

/// A shard connection's writer end: batches go in, the writer thread sends them.
struct Link {
    tx: mpsc::Sender<ReadyBatch>,
    /// Set by either thread when the connection broke; the link is then replaced.
    broken: Arc<AtomicBool>,
}

/// The sender thread: closes batches whose linger ran out (or all, on flush) and hands ready
/// batches to the link of the shard that owns their partition.
fn sender_loop(shared: Arc<Shared>) {
    let mut links: HashMap<std::net::SocketAddr, Link> = HashMap::new();
    loop {
        let (batches, routes) = {
            let mut st = lock(&shared.state);
            loop {
                let now = Instant::now();
                let linger = shared.config.linger;
                let all = st.flush_requested || st.closing;
                let expired: Vec<(String, u32)> = st
                    .open
                    .iter()
                    .flat_map(|(t, batches)| batches.iter().map(move |(p, b)| (t, *p, b)))
                    .filter(|(_, _, b)| all || now >= b.created + linger)
                    .map(|(t, p, _)| (t.clone(), p))
                    .collect();
                for (topic, partition) in expired {
                    let partitions = st.cluster.known_partitions(&topic).unwrap_or(1);
                    close_batch(&mut st, &topic, partition, partitions);
                }
                let due = st.ready.iter().any(|b| b.not_before <= now);
                if due {
                    break;
                }
                if st.closing && st.unacked == 0 && st.open.is_empty() {
                    return;
                }
                let next_linger = st
                    .open
                    .values()
                    .flat_map(|batches| batches.values())
                    .map(|b| b.created + linger)
                    .min();
                let next_retry = st.ready.iter().map(|b| b.not_before).min();
                let wait = [next_linger, next_retry]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|t| t.saturating_duration_since(now));
                st = match wait {
                    Some(d) => {
                        shared
                            .wake_sender
                            .wait_timeout(st, d.max(Duration::from_micros(100)))
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                    None => shared
                        .wake_sender
                        .wait(st)
                        .unwrap_or_else(|e| e.into_inner()),
                };
            }
            let now = Instant::now();
            let (due, later): (VecDeque<ReadyBatch>, VecDeque<ReadyBatch>) =
                std::mem::take(&mut st.ready)
                    .into_iter()
                    .partition(|b| b.not_before <= now);
            st.ready = later;
            let routes: Vec<Result<TopicRoute, ClientError>> = due
                .iter()
                .map(|b| st.cluster.route(&b.topic).cloned())
                .collect();
            (due, routes)
        };
        for (batch, route) in batches.into_iter().zip(routes) {
            let endpoint = route.and_then(|r| r.endpoint(batch.partition));
            match endpoint {
                Ok(addr) => {
                    links.retain(|_, l| !l.broken.load(Ordering::Acquire));
                    let link = match links.get(&addr) {
                        Some(l) => l,
                        None => match open_link(&shared, addr) {
                            Ok(l) => links.entry(addr).or_insert(l),
                            Err(e) => {
                                retry_or_fail(&shared, batch, e);
                                continue;
                            }
                        },
                    };
                    if let Err(mpsc::SendError(batch)) = link.tx.send(batch) {
                        links.remove(&addr);
                        let addr_err = ClientError::Closed { addr };
                        retry_or_fail(&shared, batch, addr_err);
                    }
                }
                Err(e) => retry_or_fail(&shared, batch, e),
            }
        }
    }
}

/// Puts a failed batch back for a retry after backoff, or fails its records for good.
fn retry_or_fail(shared: &Shared, mut batch: ReadyBatch, err: ClientError) {
    let retriable = err.is_retriable() && batch.attempts < shared.config.retries;
    let mut st = lock(&shared.state);
    if retriable && !st.closing {
        tracing::debug!(topic = %batch.topic, partition = batch.partition, attempt = batch.attempts + 1, error = %err, "retrying batch");
        let backoff = (shared.config.retry_backoff * 2u32.saturating_pow(batch.attempts.min(10)))
            .min(MAX_RETRY_BACKOFF);
        batch.attempts += 1;
        batch.not_before = Instant::now() + backoff;
        // The partition may have moved or the broker restarted: read metadata again.
        st.cluster.invalidate();
        st.ready.push_back(batch);
        drop(st);
        shared.wake_sender.notify_one();
    } else {
        st.unacked -= 1;
        st.buffered_bytes -= batch.bytes.len();
        drop(st);
        batch.completion.complete(Err(Arc::new(err)));
        shared.progress.notify_all();
    }
}

fn succeed(shared: &Shared, batch: ReadyBatch, base_offset: i64) {
    batch
        .completion
        .complete(Ok((batch.partition, base_offset)));
    {
        let mut st = lock(&shared.state);
        st.unacked -= 1;
        st.buffered_bytes -= batch.bytes.len();
    }
    shared.progress.notify_all();
}

/// Connects to a shard and starts its writer and reader threads.
fn open_link(shared: &Arc<Shared>, addr: std::net::SocketAddr) -> Result<Link, ClientError> {
    let conn = Connection::connect(&addr.to_string())?.with_client_id("strata-producer");
    // A hung broker must not hold `flush` forever: no answer within the request timeout plus
    // a margin breaks the connection, and the batches in flight are retried.
    conn.set_read_timeout(Some(
        Duration::from_millis(u64::from(shared.config.request_timeout_ms))
            + RESPONSE_TIMEOUT_MARGIN,
    ))?;
    let (writer, reader) = conn.into_split();
    let (tx, rx) = mpsc::channel::<ReadyBatch>();
    let broken = Arc::new(AtomicBool::new(false));
    // Batches written and not yet answered, oldest first; bounded by max_in_flight.
    let in_flight: Arc<(Mutex<VecDeque<ReadyBatch>>, Condvar)> = Arc::default();
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|e| ClientError::Invalid(format!("cannot start a producer thread: {e}")))
    };
    {
        let (shared, in_flight, broken) = (shared.clone(), in_flight.clone(), broken.clone());
        spawn(
            "strata-producer-write",
            Box::new(move || write_loop(shared, writer, rx, in_flight, broken)),
        )?;
    }
    if shared.config.acks != Acks::None {
        let (shared, in_flight, broken) = (shared.clone(), in_flight.clone(), broken.clone());
        spawn(
            "strata-producer-read",
            Box::new(move || read_loop(shared, reader, in_flight, broken)),
        )?;
    }
    Ok(Link { tx, broken })
}

fn write_loop(
    shared: Arc<Shared>,
    mut writer: RequestWriter,
    rx: mpsc::Receiver<ReadyBatch>,
    in_flight: Arc<(Mutex<VecDeque<ReadyBatch>>, Condvar)>,
    broken: Arc<AtomicBool>,
) {
    let config = &shared.config;
    // A batch that reaches a broken connection goes back for a retry on a new one.
    let closed = |writer: &RequestWriter| ClientError::Closed {
        addr: writer.addr(),
    };
    while let Ok(batch) = rx.recv() {
        if broken.load(Ordering::Acquire) {
            retry_or_fail(&shared, batch, closed(&writer));
            continue;
        }
        let body = RequestBody::Produce(ProduceRequest {
            topic: batch.topic.clone(),
            partition: batch.partition,
            acks: config.acks,
            timeout_ms: config.request_timeout_ms,
        });
        let payload = [batch.bytes.clone()];
        if config.acks == Acks::None {
            match writer.send(body, &payload) {
                Ok(_) => succeed(&shared, batch, -1),
                Err(e) => {
                    broken.store(true, Ordering::Release);
                    retry_or_fail(&shared, batch, e);
                }
            }
            continue;
        }
        {
            let (queue, room) = &*in_flight;
            let mut q = lock(queue);
            while q.len() >= config.max_in_flight && !broken.load(Ordering::Acquire) {
                q = room.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if broken.load(Ordering::Acquire) {
                drop(q);
                retry_or_fail(&shared, batch, closed(&writer));
                continue;
            }
            // Queued before it is written, so the reader always finds the batch it answers.
            q.push_back(batch);
        }
        if let Err(e) = writer.send(body, &payload) {
            tracing::debug!(error = %e, "produce connection broke");
            broken.store(true, Ordering::Release);
            // The reader fails everything in flight once its read errors out.
            writer.shutdown();
        }
    }
    writer.shutdown();
}

fn read_loop(
    shared: Arc<Shared>,
    mut reader: ResponseReader,
    in_flight: Arc<(Mutex<VecDeque<ReadyBatch>>, Condvar)>,
    broken: Arc<AtomicBool>,
) {
    let (queue, room) = &*in_flight;
    loop {
        let response = match reader.read() {
            Ok((response, _payload)) => response,
            Err(err) => {
                // Every batch in flight on this connection fails with it (and may be retried).
                broken.store(true, Ordering::Release);
                let pending: Vec<ReadyBatch> = lock(queue).drain(..).collect();
                room.notify_all();
                for batch in pending {
                    retry_or_fail(&shared, batch, err.clone());
                }
                return;
            }
        };
        let Some(batch) = lock(queue).pop_front() else {
            // An answer nobody asked for: the stream can no longer be trusted.
            broken.store(true, Ordering::Release);
            return;
        };
        room.notify_all();
        match into_body(reader.addr(), ApiKey::Produce, response) {
            Ok(ResponseBody::Produce(p)) => succeed(&shared, batch, p.base_offset),
            Ok(other) => retry_or_fail(
                &shared,
                batch,
                ClientError::Invalid(format!("a produce was answered with {:?}", other.api_key())),
            ),
            Err(e) => retry_or_fail(&shared, batch, e),
        }
    }
}
