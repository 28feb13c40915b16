//! A data shard: owns the logs of its partitions, serves connections on the shared port and on
//! its own port, runs partition operations for any shard that forwards them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::StreamExt;
use glommio::channels::channel_mesh::Senders;
use glommio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::clock::now_ms;
use crate::metadata::{partition_dir, Catalog, Topic};
use crate::protocol::{
    ErrorCode, FetchRequest, FetchResponse, ListOffsetsResponse, OffsetSpec, ProduceResponse,
    ResponseBody,
};
use crate::record::ValidBatch;
use crate::shard::{shard_for, ShardContext, Shutdown};
use crate::storage::{self, PartitionLog};

use super::config::{BrokerConfig, RETENTION_CHECK_INTERVAL};
use super::conn;
use super::errors::storage_error;
use super::msg::{Answer, OpError, OpResult, PartitionOp, PartitionStat, ShardMsg};
use super::Ready;

/// An open partition: the log and the incarnation of its topic.
struct OpenPartition {
    topic_id: u64,
    log: PartitionLog,
}

/// State of one data shard. Invariant: `logs` holds exactly the partitions of `catalog` that
/// `shard_for` assigns to `id`.
pub struct DataShard {
    pub id: u32,
    pub shard_count: u32,
    pub config: Arc<BrokerConfig>,
    pub senders: Senders<ShardMsg>,
    /// The coordinator's peer id on the mesh.
    coordinator_peer: usize,
    pub shutdown: Shutdown,
    catalog: RefCell<Arc<Catalog>>,
    logs: RefCell<HashMap<(String, u32), OpenPartition>>,
    /// Open connections, so shutdown can wait for them to drain.
    connections: Cell<usize>,
    /// Fired when connections had their grace period at shutdown: the rest are dropped.
    force_close: Shutdown,
    fire_force_close: RefCell<Option<oneshot::Sender<()>>>,
}

pub async fn run(
    ctx: ShardContext<ShardMsg>,
    config: Arc<BrokerConfig>,
    ready: mpsc::Sender<Ready>,
) -> Result<(), String> {
    let crate::shard::Role::Data(id) = ctx.role else {
        unreachable!("data shard main on the coordinator")
    };
    storage::prime_dma_probe(&config.data_dir)
        .await
        .map_err(|e| e.to_string())?;
    let coordinator_peer = ctx.coordinator_peer();
    let ShardContext {
        shard_count,
        senders,
        mut receivers,
        shutdown,
        ..
    } = ctx;
    let (fire_force_close, force_close) = Shutdown::new();
    let shard = Rc::new(DataShard {
        id,
        shard_count,
        config: config.clone(),
        senders,
        coordinator_peer,
        shutdown: shutdown.clone(),
        catalog: RefCell::new(Arc::new(Catalog::new())),
        logs: RefCell::new(HashMap::new()),
        connections: Cell::new(0),
        force_close,
        fire_force_close: RefCell::new(Some(fire_force_close)),
    });

    // Mesh messages: each runs in its own task so a slow one (a long-poll fetch) never holds up
    // the channel, and replies travel on their own oneshot (replying on the mesh can deadlock).
    let (first_catalog_tx, first_catalog) = oneshot::channel::<()>();
    let first_catalog_tx = Rc::new(RefCell::new(Some(first_catalog_tx)));
    for (_, stream) in receivers.streams() {
        let shard = shard.clone();
        let first = first_catalog_tx.clone();
        glommio::spawn_local(async move {
            let mut stream = stream;
            while let Some(msg) = stream.next().await {
                let is_catalog = matches!(msg, ShardMsg::Catalog { .. });
                let task = glommio::spawn_local(shard.clone().handle_msg(msg));
                if is_catalog {
                    // Catalog changes apply in order, before the next message is looked at.
                    task.await;
                    if let Some(tx) = first.borrow_mut().take() {
                        let _ = tx.send(());
                    }
                } else {
                    task.detach();
                }
            }
        })
        .detach();
    }

    // Serve nothing before the catalog is applied: every existing partition is open by then.
    match select(first_catalog, Box::pin(shutdown.wait())).await {
        Either::Left(_) => {}
        Either::Right(_) => return Ok(()),
    }
    let shared = bind_listener(config.listen)
        .map_err(|e| format!("shard {id}: cannot listen on {}: {e}", config.listen))?;
    let own_addr = std::net::SocketAddr::new(config.listen.ip(), config.shard_port(id));
    let own = bind_listener(own_addr)
        .map_err(|e| format!("shard {id}: cannot listen on {own_addr}: {e}"))?;
    let _ = ready.send(Ready::Shard {
        id,
        port: own_addr.port(),
    });

    let retention = glommio::spawn_local(shard.clone().retention_loop());
    let a = glommio::spawn_local(shard.clone().accept_loop(shared));
    let b = glommio::spawn_local(shard.clone().accept_loop(own));
    a.await;
    b.await;
    drop(retention);
    shard.drain_and_close().await;
    Ok(())
}

impl DataShard {
    async fn accept_loop(self: Rc<Self>, listener: TcpListener) {
        loop {
            let accepted =
                match select(Box::pin(listener.accept()), Box::pin(self.shutdown.wait())).await {
                    Either::Left((res, _)) => res,
                    Either::Right(_) => return,
                };
            match accepted {
                Ok(stream) => {
                    let shard = self.clone();
                    shard.connections.set(shard.connections.get() + 1);
                    glommio::spawn_local(async move {
                        // Dropping `serve` (force close) cancels its reader, writer and
                        // request tasks and closes the socket.
                        let serve = Box::pin(conn::serve(shard.clone(), stream));
                        let _ = select(serve, Box::pin(shard.force_close.wait())).await;
                        shard.connections.set(shard.connections.get() - 1);
                    })
                    .detach();
                }
                Err(e) => {
                    // Out of file descriptors and the like: say so, back off, keep serving.
                    warn!(shard = self.id, error = %e, "accept failed");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// After shutdown: let connections finish their in-flight requests (for up to
    /// `SHUTDOWN_GRACE`; then the rest are dropped, so a client that stopped reading cannot
    /// hold the broker up), then flush and close every log.
    async fn drain_and_close(&self) {
        let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
        while self.connections.get() > 0 {
            if std::time::Instant::now() >= deadline {
                warn!(
                    shard = self.id,
                    connections = self.connections.get(),
                    "closing connections that did not finish in time"
                );
                if let Some(fire) = self.fire_force_close.borrow_mut().take() {
                    let _ = fire.send(());
                }
            }
            glommio::timer::sleep(DRAIN_POLL_INTERVAL).await;
        }
        let logs: Vec<(String, u32, PartitionLog)> = self
            .logs
            .borrow()
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, o.log.clone()))
            .collect();
        for (topic, partition, log) in logs {
            if let Err(e) = log.close().await {
                warn!(%topic, partition, error = %e, "closing partition log");
            }
        }
        info!(shard = self.id, "shard stopped");
    }

    async fn retention_loop(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(RETENTION_CHECK_INTERVAL).await;
            let now = now_ms();
            let logs: Vec<PartitionLog> =
                self.logs.borrow().values().map(|o| o.log.clone()).collect();
            for log in logs {
                if let Err(e) = log.enforce_retention(now) {
                    warn!(dir = %log.dir().display(), error = %e, "retention failed");
                }
            }
        }
    }

    /// The current catalog as this shard knows it.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.borrow().clone()
    }

    pub fn owner(&self, topic: &str, partition: u32) -> u32 {
        shard_for(topic, partition, self.shard_count)
    }

    /// Runs `op` on a partition: here when this shard owns it, else on the owner over the mesh.
    pub async fn partition_op(&self, topic: String, partition: u32, op: PartitionOp) -> OpResult {
        let catalog = self.catalog();
        let Some(t) = catalog.get(&topic) else {
            return Err(OpError::new(
                ErrorCode::UnknownTopic,
                format!("unknown topic {topic:?}"),
            ));
        };
        if partition >= t.config.partitions {
            return Err(OpError::new(
                ErrorCode::UnknownPartition,
                format!(
                    "topic {topic:?} has partitions 0..{}, not {partition}",
                    t.config.partitions
                ),
            ));
        }
        let owner = self.owner(&topic, partition);
        if owner == self.id {
            return self.run_op(&topic, partition, op).await;
        }
        let (tx, rx) = oneshot::channel();
        let msg = ShardMsg::Partition {
            topic,
            partition,
            op,
            reply: tx,
        };
        if self.senders.send_to(owner as usize, msg).await.is_err() {
            return Err(OpError::new(
                ErrorCode::ShuttingDown,
                format!("shard {owner} is stopping"),
            ));
        }
        rx.await.unwrap_or_else(|_| {
            Err(OpError::new(
                ErrorCode::ShuttingDown,
                format!("shard {owner} is stopping"),
            ))
        })
    }

    /// Sends `msg` to the coordinator and waits for its answer.
    pub async fn to_coordinator(&self, msg: ShardMsg) -> Result<(), OpError> {
        self.senders
            .send_to(self.coordinator_peer, msg)
            .await
            .map_err(|_| OpError::new(ErrorCode::ShuttingDown, "the coordinator is stopping"))
    }

    /// Offsets of every partition of the broker, gathered from all shards.
    pub async fn all_stats(&self) -> HashMap<(String, u32), PartitionStat> {
        let mut out: HashMap<(String, u32), PartitionStat> = self
            .local_stats()
            .into_iter()
            .map(|s| ((s.topic.clone(), s.partition), s))
            .collect();
        for peer in 0..self.shard_count {
            if peer == self.id {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            if self
                .senders
                .send_to(peer as usize, ShardMsg::Stats { reply: tx })
                .await
                .is_ok()
            {
                if let Ok(stats) = rx.await {
                    out.extend(
                        stats
                            .into_iter()
                            .map(|s| ((s.topic.clone(), s.partition), s)),
                    );
                }
            }
        }
        out
    }

    fn local_stats(&self) -> Vec<PartitionStat> {
        self.logs
            .borrow()
            .iter()
            .map(|((topic, partition), o)| {
                let stats = o.log.stats();
                PartitionStat {
                    topic: topic.clone(),
                    partition: *partition,
                    earliest_offset: stats.earliest_offset,
                    high_watermark: stats.high_watermark,
                    log_bytes: stats.bytes,
                }
            })
            .collect()
    }

    async fn handle_msg(self: Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Partition {
                topic,
                partition,
                op,
                reply,
            } => {
                let res = self.run_op(&topic, partition, op).await;
                let _ = reply.send(res);
            }
            ShardMsg::Stats { reply } => {
                let _ = reply.send(self.local_stats());
            }
            ShardMsg::Catalog { catalog, reply } => {
                let _ = reply.send(self.apply_catalog(catalog).await);
            }
            ShardMsg::Admin { reply, .. } | ShardMsg::Group { reply, .. } => {
                let _ = reply.send(Err(OpError::new(
                    ErrorCode::Unknown,
                    "coordinator request sent to a data shard",
                )));
            }
        }
    }

    /// Opens this shard's partitions of new topics and closes (and deletes) those of topics
    /// that are gone.
    async fn apply_catalog(&self, catalog: Arc<Catalog>) -> Result<(), String> {
        let gone: Vec<((String, u32), OpenPartition)> = {
            let mut logs = self.logs.borrow_mut();
            let keys: Vec<(String, u32)> = logs
                .iter()
                .filter(|((t, _), o)| catalog.get(t).is_none_or(|topic| topic.id != o.topic_id))
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .map(|k| {
                    let v = logs.remove(&k).expect("listed");
                    (k, v)
                })
                .collect()
        };
        for ((topic, partition), open) in gone {
            let dir = open.log.dir().to_path_buf();
            if let Err(e) = open.log.close().await {
                warn!(%topic, partition, error = %e, "closing deleted partition");
            }
            drop(open);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                warn!(dir = %dir.display(), error = %e, "removing deleted partition");
            }
            info!(shard = self.id, %topic, partition, "partition deleted");
        }
        let wanted: Vec<(Topic, u32)> = catalog
            .topics()
            .flat_map(|t| (0..t.config.partitions).map(move |p| (t.clone(), p)))
            .filter(|(t, p)| self.owner(&t.name, *p) == self.id)
            .filter(|(t, p)| !self.logs.borrow().contains_key(&(t.name.clone(), *p)))
            .collect();
        for (topic, partition) in wanted {
            let dir = partition_dir(&self.config.data_dir, &topic, partition);
            let cfg = self.config.log_config(
                topic.config.segment_bytes,
                topic.config.retention_bytes,
                topic.config.retention_ms,
            );
            let log = PartitionLog::open(&dir, cfg).await.map_err(|e| {
                format!(
                    "shard {}: cannot open {}/{partition}: {e}",
                    self.id, topic.name
                )
            })?;
            debug!(shard = self.id, topic = %topic.name, partition, "partition open");
            self.logs.borrow_mut().insert(
                (topic.name.clone(), partition),
                OpenPartition {
                    topic_id: topic.id,
                    log,
                },
            );
        }
        *self.catalog.borrow_mut() = catalog;
        Ok(())
    }

    fn log(&self, topic: &str, partition: u32) -> Result<PartitionLog, OpError> {
        self.logs
            .borrow()
            .get(&(topic.to_string(), partition))
            .map(|o| o.log.clone())
            .ok_or_else(|| {
                OpError::new(
                    ErrorCode::UnknownTopic,
                    format!("unknown topic {topic:?} (or partition {partition})"),
                )
            })
    }

    async fn run_op(&self, topic: &str, partition: u32, op: PartitionOp) -> OpResult {
        let log = self.log(topic, partition)?;
        match op {
            PartitionOp::Produce {
                batches,
                timeout_ms,
            } => {
                self.produce(topic, partition, &log, batches, timeout_ms)
                    .await
            }
            PartitionOp::Fetch(req) => self.fetch(topic, partition, &log, req).await,
            PartitionOp::ListOffsets(spec) => {
                let offset = match spec {
                    OffsetSpec::Earliest => Some(log.earliest_offset()),
                    OffsetSpec::Latest => Some(log.high_watermark()),
                    OffsetSpec::Timestamp(ts) => log
                        .offset_for_timestamp(ts)
                        .await
                        .map_err(|e| storage_error(topic, partition, &e))?,
                };
                Ok(Answer::new(ResponseBody::ListOffsets(
                    ListOffsetsResponse { offset },
                )))
            }
        }
    }

    async fn produce(
        &self,
        topic: &str,
        partition: u32,
        log: &PartitionLog,
        batches: Vec<ValidBatch>,
        timeout_ms: u32,
    ) -> OpResult {
        // Appends start in order (each takes the log's append lock in call order), so the
        // batches of one request get contiguous offsets, and share one group commit. They were
        // validated where the request arrived (`ValidBatch`), so not again here.
        let appends = futures::future::join_all(batches.into_iter().map(|b| log.append_valid(b)));
        let results = match glommio::timer::timeout(Duration::from_millis(u64::from(timeout_ms.max(1))), async {
            Ok(appends.await)
        })
        .await
        {
            Ok(r) => r,
            Err(_) => {
                return Err(OpError::new(
                    ErrorCode::Timeout,
                    format!("{topic}/{partition}: not acknowledged within {timeout_ms} ms; the records may still be appended"),
                ))
            }
        };
        let mut first = None;
        let mut last = None;
        for r in results {
            let info = r.map_err(|e| storage_error(topic, partition, &e))?;
            first.get_or_insert(info.base_offset);
            last = Some(info.last_offset);
        }
        let (Some(base_offset), Some(last_offset)) = (first, last) else {
            return Err(OpError::new(
                ErrorCode::InvalidRequest,
                "produce payload holds no record batch",
            ));
        };
        Ok(Answer::new(ResponseBody::Produce(ProduceResponse {
            base_offset,
            last_offset,
            log_append_time_ms: now_ms(),
        })))
    }

    async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        log: &PartitionLog,
        req: FetchRequest,
    ) -> OpResult {
        let hw = log.high_watermark();
        if req.offset > hw {
            return Err(OpError::new(
                ErrorCode::OffsetOutOfRange,
                format!(
                    "{topic}/{partition}: offset {} is past the end; the log holds {}..{hw}",
                    req.offset,
                    log.earliest_offset()
                ),
            ));
        }
        let max_bytes = (req.max_bytes as usize).max(1);
        let deadline =
            std::time::Instant::now() + Duration::from_millis(u64::from(req.max_wait_ms));
        loop {
            if log.is_closed() && !self.shutdown.is_fired() {
                // Closed while the broker runs: the topic was deleted under this fetch.
                return Err(OpError::new(
                    ErrorCode::UnknownTopic,
                    format!("topic {topic:?} was deleted"),
                ));
            }
            let batches = log
                .read(req.offset, max_bytes)
                .await
                .map_err(|e| storage_error(topic, partition, &e))?;
            let bytes: usize = batches.iter().map(|b| b.len()).sum();
            let now = std::time::Instant::now();
            if bytes >= req.min_bytes as usize || now >= deadline || self.shutdown.is_fired() {
                let body = ResponseBody::Fetch(FetchResponse {
                    high_watermark: log.high_watermark(),
                    log_start_offset: log.earliest_offset(),
                });
                return Ok(Answer {
                    body,
                    payload: batches,
                });
            }
            // Long poll: woken by the next append that moves the high watermark, not by polling.
            let wake_at = log.high_watermark();
            let wait = Box::pin(log.wait_for_data(wake_at));
            let timer = Box::pin(glommio::timer::sleep(deadline - now));
            let stop = Box::pin(self.shutdown.wait());
            let _ = futures::future::select(wait, futures::future::select(timer, stop)).await;
        }
    }
}

/// How long shutdown waits for connections to finish their requests before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often shutdown checks whether every connection has finished.
const DRAIN_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Backlog of each listening socket.
const LISTEN_BACKLOG: i32 = 1024;

/// A listener on `addr` shared by every shard (SO_REUSEPORT: the kernel spreads connections)
/// that can be bound again right after a restart (SO_REUSEADDR: glommio's own `bind` leaves it
/// off, so every connection the broker closed kept the port unusable for a minute in TIME_WAIT).
fn bind_listener(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::os::unix::io::{FromRawFd, IntoRawFd};
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(LISTEN_BACKLOG)?;
    // SAFETY: the fd is a bound, listening TCP socket that we own and hand over whole.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}
