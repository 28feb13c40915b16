//! The group consumer: a member of a consumer group. The coordinator assigns it partitions
//! (KIP-848 style); a heartbeat thread reports what the member owns and brings back what it may
//! own. The application thread, inside `poll`, follows the assignment: it commits what it
//! consumed of a revoked partition before releasing it, and starts a newly assigned partition at
//! the group's committed offset (or at `auto_offset_reset` when there is none).
//!
//! Ownership, as the heartbeat reports it, is `owned ∪ desired`: partitions whose fetcher runs,
//! plus partitions the coordinator gave that the application has not started yet. A partition
//! leaves the report only once it is neither (released by `poll`, and no longer given), so the
//! coordinator never hands it to another member while this one may still read it.
//!
//! Records returned by `poll` count as consumed when the application calls `poll` (or `commit`,
//! or `close`) again: commits never cover records the application has not finished with.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::protocol::{
    CommitOffset, ErrorCode, GroupHeartbeatRequest, OffsetCommitRequest, OffsetSpec,
    TopicPartitions, MEMBER_EPOCH_JOIN, MEMBER_EPOCH_LEAVE,
};

use super::consumer::{Consumer, ConsumerConfig, ConsumerRecord, SeekTo};
use super::{ClientError, Connection};

/// Default session timeout a member asks for.
pub const DEFAULT_SESSION_TIMEOUT_MS: u32 = 10_000;
/// Default interval of automatic commits.
pub const DEFAULT_AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// Longest `poll` blocks in the consumer before it looks at the assignment again.
const POLL_SLICE: Duration = Duration::from_millis(50);
/// Wait before the heartbeat thread reconnects after its connection failed.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// Attempts of a commit whose epoch went stale while it was being sent.
const MAX_COMMIT_ATTEMPTS: u32 = 5;
/// Attempts of a request of the application thread that failed in a retriable way (a lost
/// connection, a restarting broker), reconnecting in between.
const MAX_REQUEST_ATTEMPTS: u32 = 10;
/// Longest a commit or offset fetch may go unanswered before its connection counts as broken.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    Earliest,
    /// Only records produced from now on (Kafka's default).
    #[default]
    Latest,
}

/// Group consumer settings.
#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    pub group: String,
    pub topics: Vec<String>,
    pub session_timeout_ms: u32,
    /// Commit consumed positions this often from `poll`; `None` commits only on `commit`,
    /// before releasing a partition, and on `close`.
    pub auto_commit_interval: Option<Duration>,
    pub auto_offset_reset: OffsetReset,
    /// `range`, `roundrobin` or `sticky`; `None` leaves the group's (default sticky).
    pub assignor: Option<String>,
    pub client_id: String,
    pub consumer: ConsumerConfig,
}

impl GroupConsumerConfig {
    pub fn new(group: &str, topics: &[&str]) -> GroupConsumerConfig {
        GroupConsumerConfig {
            group: group.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            auto_commit_interval: Some(DEFAULT_AUTO_COMMIT_INTERVAL),
            auto_offset_reset: OffsetReset::default(),
            assignor: None,
            client_id: "strata-group-consumer".to_string(),
            consumer: ConsumerConfig::default(),
        }
    }
}

type Tp = (String, u32);

/// What the application thread and the heartbeat thread share. Invariant: `owned` is exactly
/// the partitions with a running fetcher in the application's `Consumer`.
#[derive(Debug, Default)]
struct Shared {
    member_id: String,
    epoch: i32,
    /// The latest assignment from the coordinator; `None` before the first.
    desired: Option<BTreeSet<Tp>>,
    owned: BTreeSet<Tp>,
    /// The coordinator dropped the member: release everything (no commit), then rejoin.
    fenced: bool,
    /// A refusal the application must hear about (code, message); the member has stopped.
    fatal: Option<(ErrorCode, String)>,
    /// Heartbeat now rather than at the interval (something was released).
    heartbeat_now: bool,
    closing: bool,
    /// Set once the heartbeat thread sent the leave (or gave up).
    left: bool,
}

struct SharedState {
    state: Mutex<Shared>,
    wake: Condvar,
}

impl SharedState {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits on `wake` while `waiting` holds, until `deadline` at the latest.
    fn wait_while<'a>(
        &'a self,
        mut s: MutexGuard<'a, Shared>,
        deadline: Instant,
        waiting: impl Fn(&Shared) -> bool,
    ) -> MutexGuard<'a, Shared> {
        while waiting(&s) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = self
                .wake
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s
    }
}

/// A member of a consumer group.
pub struct GroupConsumer {
    bootstrap: String,
    config: GroupConsumerConfig,
    consumer: Consumer,
    /// For commits and offset fetches (the heartbeat thread has its own).
    conn: Connection,
    shared: Arc<SharedState>,
    heartbeat: Option<JoinHandle<()>>,
    /// Positions last committed, per partition.
    committed: BTreeMap<Tp, i64>,
    last_auto_commit: Instant,
}

impl GroupConsumer {
    /// Joins `config.group` through the broker at `bootstrap`. Returns at once; partitions
    /// arrive as the coordinator assigns them (`poll` starts them).
    pub fn connect(bootstrap: &str, config: GroupConsumerConfig) -> Result<Self, ClientError> {
        if config.topics.is_empty() {
            return Err(ClientError::Invalid(
                "a group consumer needs at least one topic".into(),
            ));
        }
        let consumer = Consumer::connect(bootstrap, config.consumer.clone())?;
        let conn = connect(bootstrap, &config.client_id, REQUEST_TIMEOUT)?;
        let hb_conn = connect(
            bootstrap,
            &config.client_id,
            Duration::from_millis(u64::from(config.session_timeout_ms)),
        )?;
        let shared = Arc::new(SharedState {
            state: Mutex::new(Shared {
                // Chosen here, so that a join whose answer is lost is replaced by its retry
                // instead of leaving an orphan member holding partitions.
                member_id: new_member_id(),
                ..Shared::default()
            }),
            wake: Condvar::new(),
        });
        let job = Heartbeater {
            shared: shared.clone(),
            bootstrap: bootstrap.to_string(),
            config: config.clone(),
        };
        let heartbeat = std::thread::Builder::new()
            .name(format!("strata-heartbeat-{}", config.group))
            .spawn(move || job.run(hb_conn))
            .map_err(|e| ClientError::Invalid(format!("cannot start the heartbeat thread: {e}")))?;
        Ok(GroupConsumer {
            bootstrap: bootstrap.to_string(),
            config,
            consumer,
            conn,
            shared,
            heartbeat: Some(heartbeat),
            committed: BTreeMap::new(),
            last_auto_commit: Instant::now(),
        })
    }

    /// The member id the coordinator gave (empty until the first heartbeat answered).
    pub fn member_id(&self) -> String {
        self.shared.lock().member_id.clone()
    }

    /// Partitions this member reads now.
    pub fn assignment(&self) -> BTreeSet<(String, u32)> {
        self.shared.lock().owned.clone()
    }

    /// Records of the assigned partitions, waiting up to `timeout` for the first. Calling it
    /// marks every record returned before as consumed (auto-commit and revocation commit them).
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        self.poll_max(timeout, usize::MAX)
    }

    /// `poll`, returning at most `max` records (the rest are not consumed yet).
    pub fn poll_max(
        &mut self,
        timeout: Duration,
        max: usize,
    ) -> Result<Vec<ConsumerRecord>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.follow_assignment()?;
            if let Some(every) = self.config.auto_commit_interval {
                if self.last_auto_commit.elapsed() >= every {
                    self.commit_owned()?;
                    self.last_auto_commit = Instant::now();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let records = match self.consumer.poll_max(left.min(POLL_SLICE), max) {
                Ok(records) => records,
                Err(e) => {
                    let failed = self.consumer.take_failed();
                    if failed.is_empty() {
                        return Err(e);
                    }
                    self.release_failed(failed, &e)?;
                    continue;
                }
            };
            if !records.is_empty() || left.is_zero() {
                return Ok(records);
            }
        }
    }

    /// Commits the position of every owned partition (everything `poll` returned so far).
    pub fn commit(&mut self) -> Result<(), ClientError> {
        self.commit_owned()
    }

    /// Commits what was consumed, releases every partition and leaves the group.
    pub fn close(mut self) -> Result<(), ClientError> {
        let committed = self.commit_owned();
        self.leave();
        committed
    }

    fn leave(&mut self) {
        let owned: Vec<Tp> = self.shared.lock().owned.iter().cloned().collect();
        for (topic, partition) in owned {
            self.consumer.unassign(&topic, partition);
        }
        {
            let mut s = self.shared.lock();
            s.owned.clear();
            s.closing = true;
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.heartbeat.take() {
            let _ = t.join();
        }
    }

    /// Partitions whose fetcher gave up (e.g. the committed offset fell out of the log): commit
    /// what was consumed and release them; the coordinator gives them back at the next
    /// heartbeat and they restart from the committed offset.
    fn release_failed(
        &mut self,
        failed: Vec<(String, u32, i64)>,
        error: &ClientError,
    ) -> Result<(), ClientError> {
        let offsets: Vec<(Tp, i64)> = failed
            .into_iter()
            .map(|(t, p, position)| ((t, p), position))
            .collect();
        tracing::warn!(group = %self.config.group, partitions = ?offsets, %error, "fetching failed; releasing the partitions to restart them");
        self.commit_offsets(&offsets)?;
        let mut s = self.shared.lock();
        for (p, _) in &offsets {
            s.owned.remove(p);
            self.committed.remove(p);
        }
        s.heartbeat_now = true;
        drop(s);
        self.shared.wake.notify_all();
        Ok(())
    }

    /// Runs `call` on the application's connection, reconnecting and retrying while it fails in
    /// a retriable way (a lost connection, a broker restarting or briefly failing).
    fn request<T>(
        &mut self,
        mut call: impl FnMut(&mut Connection) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut attempt = 1;
        loop {
            match call(&mut self.conn) {
                Err(e) if e.is_retriable() && attempt < MAX_REQUEST_ATTEMPTS => {
                    tracing::debug!(group = %self.config.group, error = %e, attempt, "request failed; reconnecting");
                    std::thread::sleep(RECONNECT_BACKOFF * attempt);
                    if let Ok(c) = connect(&self.bootstrap, &self.config.client_id, REQUEST_TIMEOUT)
                    {
                        self.conn = c;
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Applies what the heartbeat thread learned: release what was taken (after committing
    /// it), start what was given.
    fn follow_assignment(&mut self) -> Result<(), ClientError> {
        let (fenced, revoke, add) = {
            let s = self.shared.lock();
            if let Some((code, message)) = &s.fatal {
                return Err(ClientError::Broker {
                    code: *code,
                    message: message.clone(),
                });
            }
            let desired = s.desired.clone().unwrap_or_default();
            let revoke: Vec<Tp> = s.owned.difference(&desired).cloned().collect();
            let add: Vec<Tp> = desired.difference(&s.owned).cloned().collect();
            (s.fenced, revoke, add)
        };
        if fenced {
            let owned: Vec<Tp> = self.shared.lock().owned.iter().cloned().collect();
            for (topic, partition) in &owned {
                self.consumer.unassign(topic, *partition);
            }
            let mut s = self.shared.lock();
            s.owned.clear();
            s.fenced = false;
            s.heartbeat_now = true;
            drop(s);
            self.shared.wake.notify_all();
            tracing::warn!(group = %self.config.group, released = owned.len(), "fenced by the coordinator; rejoining");
            return Ok(());
        }
        if !revoke.is_empty() {
            self.commit_partitions(&revoke)?;
            for (topic, partition) in &revoke {
                self.consumer.unassign(topic, *partition);
                self.committed.remove(&(topic.clone(), *partition));
            }
            let mut s = self.shared.lock();
            for p in &revoke {
                s.owned.remove(p);
            }
            s.heartbeat_now = true;
            drop(s);
            self.shared.wake.notify_all();
        }
        if !add.is_empty() {
            // Claim first (under the lock, only what is still given), then start: from the
            // claim on, the heartbeat reports the partition owned.
            let claimed: Vec<Tp> = {
                let mut s = self.shared.lock();
                let desired = s.desired.clone().unwrap_or_default();
                add.into_iter()
                    .filter(|p| desired.contains(p) && s.owned.insert(p.clone()))
                    .collect()
            };
            if let Err(e) = self.start(&claimed) {
                // Give back what did not start, so it is not reported owned while unread.
                let mut s = self.shared.lock();
                for p in &claimed {
                    if self.consumer.position(&p.0, p.1).is_none() {
                        s.owned.remove(p);
                    }
                }
                s.heartbeat_now = true;
                drop(s);
                self.shared.wake.notify_all();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Starts fetchers for `partitions` at the committed offsets.
    fn start(&mut self, partitions: &[Tp]) -> Result<(), ClientError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let topics: Vec<String> = partitions
            .iter()
            .map(|(t, _)| t.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let group = self.config.group.clone();
        let committed: BTreeMap<Tp, i64> = match self.request(|c| c.offset_fetch(&group, &topics)) {
            Ok(list) => list
                .into_iter()
                .map(|c| ((c.topic, c.partition), c.offset))
                .collect(),
            Err(e) if e.code() == Some(ErrorCode::UnknownGroup) => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        let reset = match self.config.auto_offset_reset {
            OffsetReset::Earliest => SeekTo::Earliest,
            OffsetReset::Latest => SeekTo::Latest,
        };
        for p in partitions {
            // A committed offset outside the log (retention deleted it, or the topic was
            // re-created) is no place to start: the reset policy decides, as in Kafka.
            let from = match committed.get(p) {
                Some(&o) if self.in_log(p, o)? => SeekTo::Offset(o),
                Some(&o) => {
                    tracing::warn!(group = %self.config.group, topic = %p.0, partition = p.1, committed = o, ?reset, "committed offset is outside the log; using the reset policy");
                    reset
                }
                None => reset,
            };
            self.consumer.seek(&p.0, p.1, from)?;
            if let SeekTo::Offset(o) = from {
                self.committed.insert(p.clone(), o);
            }
            tracing::debug!(group = %self.config.group, topic = %p.0, partition = p.1, ?from, "partition assigned");
        }
        Ok(())
    }

    /// True when `offset` is within the partition's log (from its first offset to its end).
    fn in_log(&mut self, p: &Tp, offset: i64) -> Result<bool, ClientError> {
        let (topic, partition) = (p.0.as_str(), p.1);
        let earliest = self.request(|c| c.list_offsets(topic, partition, OffsetSpec::Earliest))?;
        let latest = self.request(|c| c.list_offsets(topic, partition, OffsetSpec::Latest))?;
        Ok(earliest.unwrap_or(0) <= offset && offset <= latest.unwrap_or(0))
    }

    fn commit_owned(&mut self) -> Result<(), ClientError> {
        let owned: Vec<Tp> = self.shared.lock().owned.iter().cloned().collect();
        self.commit_partitions(&owned)
    }

    /// Commits the consumed positions of `partitions`.
    fn commit_partitions(&mut self, partitions: &[Tp]) -> Result<(), ClientError> {
        let offsets: Vec<(Tp, i64)> = partitions
            .iter()
            .filter_map(|p| Some((p.clone(), self.consumer.position(&p.0, p.1)?)))
            .collect();
        self.commit_offsets(&offsets)
    }

    /// Commits `offsets` that moved since their last commit. A member the coordinator no longer
    /// knows cannot commit: that is logged, not an error (its partitions are someone else's now
    /// and will be read again from the last commit).
    fn commit_offsets(&mut self, offsets: &[(Tp, i64)]) -> Result<(), ClientError> {
        let offsets: Vec<CommitOffset> = offsets
            .iter()
            .filter(|(p, pos)| self.committed.get(p) != Some(pos))
            .map(|((topic, partition), pos)| CommitOffset {
                topic: topic.clone(),
                partition: *partition,
                offset: *pos,
                metadata: String::new(),
            })
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        for attempt in 1..=MAX_COMMIT_ATTEMPTS {
            let (member_id, epoch) = {
                let s = self.shared.lock();
                (s.member_id.clone(), s.epoch)
            };
            let req = OffsetCommitRequest {
                group: self.config.group.clone(),
                member_id,
                member_epoch: epoch,
                offsets: offsets.clone(),
            };
            match self.request(|c| c.offset_commit(req.clone())) {
                Ok(results) => {
                    for r in results {
                        if r.error == ErrorCode::None {
                            let offset = offsets
                                .iter()
                                .find(|o| o.topic == r.topic && o.partition == r.partition)
                                .map(|o| o.offset);
                            if let Some(o) = offset {
                                self.committed.insert((r.topic, r.partition), o);
                            }
                        } else {
                            tracing::warn!(group = %self.config.group, topic = %r.topic, partition = r.partition, error = ?r.error, message = ?r.message, "offset not committed");
                        }
                    }
                    return Ok(());
                }
                Err(e)
                    if e.code() == Some(ErrorCode::StaleMemberEpoch)
                        && attempt < MAX_COMMIT_ATTEMPTS =>
                {
                    // A heartbeat answer is on its way (or was lost): ask for one now and
                    // wait for the new epoch.
                    self.wait_for_new_epoch(epoch);
                }
                Err(e)
                    if matches!(
                        e.code(),
                        Some(ErrorCode::UnknownMember | ErrorCode::FencedMemberEpoch)
                    ) =>
                {
                    tracing::warn!(group = %self.config.group, error = %e, "commit refused: no longer a member");
                    return Ok(());
                }
                Err(e) if e.code() == Some(ErrorCode::StaleMemberEpoch) => {
                    tracing::warn!(group = %self.config.group, error = %e, "commit refused: the member epoch kept moving");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Has the heartbeat thread heartbeat now, and waits (up to a session timeout) until the
    /// member's epoch is no longer `epoch`.
    fn wait_for_new_epoch(&self, epoch: i32) {
        let deadline =
            Instant::now() + Duration::from_millis(u64::from(self.config.session_timeout_ms));
        let mut s = self.shared.lock();
        s.heartbeat_now = true;
        self.shared.wake.notify_all();
        drop(
            self.shared
                .wait_while(s, deadline, |s| s.epoch == epoch && !s.closing),
        );
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if self.heartbeat.is_some() {
            self.leave();
        }
    }
}

/// The heartbeat thread's job.
struct Heartbeater {
    shared: Arc<SharedState>,
    bootstrap: String,
    config: GroupConsumerConfig,
}

impl Heartbeater {
    fn run(self, mut conn: Connection) {
        let session = Duration::from_millis(u64::from(self.config.session_timeout_ms));
        let mut interval = session / 3;
        let mut joined_once = false;
        let mut last_answer = Instant::now();
        loop {
            let req = {
                let s = self.shared.lock();
                if s.closing {
                    break;
                }
                if s.fenced {
                    // Wait for the application to release everything before rejoining.
                    drop(self.wait(s, interval));
                    continue;
                }
                let mut report: BTreeSet<Tp> = s.owned.clone();
                report.extend(s.desired.iter().flatten().cloned());
                GroupHeartbeatRequest {
                    group: self.config.group.clone(),
                    member_id: s.member_id.clone(),
                    member_epoch: s.epoch,
                    session_timeout_ms: self.config.session_timeout_ms,
                    topics: self.config.topics.clone(),
                    owned: to_wire(&report),
                    assignor: (!joined_once)
                        .then(|| self.config.assignor.clone())
                        .flatten(),
                }
            };
            match conn.group_heartbeat(req) {
                Ok(resp) => {
                    joined_once = true;
                    last_answer = Instant::now();
                    interval = Duration::from_millis(u64::from(resp.heartbeat_interval_ms.max(1)));
                    let mut s = self.shared.lock();
                    s.member_id = resp.member_id;
                    s.epoch = resp.member_epoch;
                    s.desired = Some(from_wire(&resp.assignment));
                    self.shared.wake.notify_all();
                    drop(self.wait(s, interval));
                }
                Err(e) => match e.code() {
                    Some(ErrorCode::UnknownMember | ErrorCode::FencedMemberEpoch) => {
                        tracing::warn!(group = %self.config.group, error = %e, "member dropped by the coordinator");
                        let mut s = self.shared.lock();
                        s.fenced = true;
                        s.epoch = MEMBER_EPOCH_JOIN;
                        s.desired = Some(BTreeSet::new());
                    }
                    Some(code) if !e.is_retriable() && code != ErrorCode::ShuttingDown => {
                        let message = match &e {
                            ClientError::Broker { message, .. } => message.clone(),
                            other => other.to_string(),
                        };
                        let mut s = self.shared.lock();
                        s.fatal = Some((code, message));
                        s.left = true;
                        return;
                    }
                    _ => {
                        tracing::debug!(group = %self.config.group, error = %e, "heartbeat failed; reconnecting");
                        if last_answer.elapsed() >= session {
                            // The coordinator has dropped us by now: stop reading, rejoin.
                            let mut s = self.shared.lock();
                            s.fenced = true;
                            s.epoch = MEMBER_EPOCH_JOIN;
                            s.desired = Some(BTreeSet::new());
                            last_answer = Instant::now();
                        }
                        std::thread::sleep(RECONNECT_BACKOFF);
                        if let Ok(c) = connect(&self.bootstrap, &self.config.client_id, session) {
                            conn = c;
                        }
                    }
                },
            }
        }
        // Leave: the application released everything before setting `closing`.
        let member_id = self.shared.lock().member_id.clone();
        if !member_id.is_empty() {
            let req = GroupHeartbeatRequest {
                group: self.config.group.clone(),
                member_id,
                member_epoch: MEMBER_EPOCH_LEAVE,
                session_timeout_ms: self.config.session_timeout_ms,
                topics: Vec::new(),
                owned: Vec::new(),
                assignor: None,
            };
            if let Err(e) = conn.group_heartbeat(req) {
                tracing::debug!(group = %self.config.group, error = %e, "leave failed; the session will expire");
            }
        }
        self.shared.lock().left = true;
    }

    /// Sleeps up to `interval`, waking early for `heartbeat_now` or `closing`.
    fn wait<'a>(&'a self, s: MutexGuard<'a, Shared>, interval: Duration) -> MutexGuard<'a, Shared> {
        let deadline = Instant::now() + interval;
        let mut s = self
            .shared
            .wait_while(s, deadline, |s| !s.heartbeat_now && !s.closing);
        s.heartbeat_now = false;
        s
    }
}

/// A connection whose answers count as lost after `timeout`.
fn connect(bootstrap: &str, client_id: &str, timeout: Duration) -> Result<Connection, ClientError> {
    let conn = Connection::connect(bootstrap)?.with_client_id(client_id.to_string());
    conn.set_read_timeout(Some(timeout))?;
    Ok(conn)
}

/// A member id unlikely to be anyone else's: 128 random bits (std's per-process hash keys).
fn new_member_id() -> String {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    let a = state.hash_one(std::process::id());
    let b = state.hash_one(Instant::now());
    format!("{a:016x}{b:016x}")
}

fn to_wire(partitions: &BTreeSet<Tp>) -> Vec<TopicPartitions> {
    TopicPartitions::group(partitions.iter().map(|(t, p)| (t.as_str(), *p)))
}

fn from_wire(list: &[TopicPartitions]) -> BTreeSet<Tp> {
    TopicPartitions::pairs(list)
        .map(|(t, p)| (t.to_string(), p))
        .collect()
}
