//! [`PartitionLog`]: the ordered, durable log of one partition.
//!
//! An append validates the batch, assigns its offsets by writing the base offset in place, copies
//! it into the aligned tail buffer and registers a waiter. One flusher task per log (spawned when
//! there is work, gone when there is none) writes everything pending in one round of concurrent
//! O_DIRECT writes, then — if any waiter needs it — one `fdatasync` for all of them: group commit.
//! A failed write or sync rolls the log back to its last good mark and fails every waiter whose
//! data was dropped, so the log stays consistent and the next append works once the cause is gone.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use glommio::io::{Directory, DmaFile};
use glommio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::cache::{BatchCache, CacheRead};
use super::config::{FsyncPolicy, LogConfig};
use super::error::{Result, StorageError};
use super::probe;
use super::segment::{self, read_bytes, IndexJob, ScanStop, Segment};
use super::tail::{align_up, Tail};
use crate::record::{set_base_offset, validate_batch, Batch, BatchHeader, HEADER_LEN};

/// Smallest read issued for a fetch that misses the cache.
const MIN_READ_BYTES: usize = 64 * 1024;
/// Canceled long-poll waiters are pruned once this many accumulate.
const READER_PRUNE_THRESHOLD: usize = 64;

/// Where an acknowledged append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
}

/// Sizes and offsets of a log, for describe commands and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStats {
    pub earliest_offset: i64,
    pub high_watermark: i64,
    pub segments: usize,
    pub bytes: u64,
    pub cached_bytes: usize,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

/// A point of the active segment reached by writes or syncs. Invariant: `carry` is the bytes of
/// the partial block ending at `pos`, and offsets below `offset` lie before `pos`.
#[derive(Debug, Clone)]
struct Mark {
    offset: i64,
    pos: u64,
    carry: Vec<u8>,
    max_timestamp: i64,
}

impl Mark {
    fn start_of(seg: &Segment) -> Mark {
        Mark {
            offset: seg.next_offset,
            pos: 0,
            carry: Vec::new(),
            max_timestamp: i64::MIN,
        }
    }
}

/// How durable a waiter needs its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Written,
    Synced,
}

/// An append or flush waiting for offsets below `upto` to reach `level`.
struct Waiter {
    upto: i64,
    level: Level,
    tx: oneshot::Sender<Result<()>>,
}

/// Mutable state of a log. Invariant: `segments` is non-empty with contiguous offsets, the last
/// one is active, and `synced.offset <= written.offset <= active.next_offset`.
struct State {
    segments: Vec<Segment>,
    tail: Tail,
    written: Mark,
    synced: Mark,
    cache: BatchCache,
    waiters: Vec<Waiter>,
    readers: Vec<oneshot::Sender<()>>,
    flusher_running: bool,
    interval_sync_pending: bool,
    active_since: Instant,
    closed: bool,
}

impl State {
    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log has at least one segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log has at least one segment")
    }

    /// The mark readers may see up to: durable data only, per the policy.
    fn visible(&self, policy: FsyncPolicy) -> &Mark {
        match policy {
            FsyncPolicy::Always => &self.synced,
            _ => &self.written,
        }
    }

    /// Completes every waiter whose need is now met.
    fn complete_waiters(&mut self) {
        let (written, synced) = (self.written.offset, self.synced.offset);
        self.waiters.retain_mut(|w| {
            let reached = match w.level {
                Level::Written => written,
                Level::Synced => synced,
            };
            if w.upto <= reached {
                let tx = std::mem::replace(&mut w.tx, oneshot::channel().0);
                let _ = tx.send(Ok(()));
                false
            } else {
                true
            }
        });
    }

    fn fail_waiters(&mut self, err: &StorageError, level: Option<Level>) {
        self.waiters.retain_mut(|w| {
            if level.is_some_and(|l| l != w.level) {
                return true;
            }
            let tx = std::mem::replace(&mut w.tx, oneshot::channel().0);
            let _ = tx.send(Err(err.clone()));
            false
        });
    }

    /// Records a finished index job on the segment it was taken from, if it still exists.
    fn index_persisted(&mut self, job: &IndexJob) {
        if let Some(seg) = self.segments.iter_mut().rev().find(|s| s.base == job.base) {
            seg.index_persisted(job);
        }
    }

    fn wake_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.send(());
        }
    }
}

struct Inner {
    dir: PathBuf,
    config: LogConfig,
    state: RefCell<State>,
    /// Serializes appends (and the rolls they trigger) so offsets are assigned in order.
    append_lock: Semaphore,
}

/// The log of one partition, owned by one executor. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct PartitionLog {
    inner: Rc<Inner>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn sync_dir(dir: &Path) -> Result<()> {
    let d = Directory::open(dir)
        .await
        .map_err(|e| StorageError::io("opening directory", dir, e))?;
    d.sync()
        .await
        .map_err(|e| StorageError::io("syncing directory", dir, e))?;
    d.close()
        .await
        .map_err(|e| StorageError::io("closing directory", dir, e))
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`, recovering it: every segment is validated
    /// from its last good index entry; a torn tail of the active segment is cut off and logged.
    pub async fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<PartitionLog> {
        // glommio's `Directory::open` fails with EBADF on a relative path: work with absolute ones.
        let dir = std::path::absolute(dir.as_ref())
            .map_err(|e| StorageError::io("resolving", dir.as_ref(), e))?;
        config.validate().map_err(StorageError::Config)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| StorageError::io("creating directory", &dir, e))?;
        probe::prime(&dir).await?;

        let mut bases = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| StorageError::io("listing", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io("listing", &dir, e))?;
            if let Some(base) = entry.file_name().to_str().and_then(segment::parse_log_name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let interval = config.index_interval_bytes;

        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let mut carry = Vec::new();
        if bases.is_empty() {
            segments.push(Segment::create(&dir, 0).await?);
            sync_dir(&dir).await?;
        }
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            let (seg, stop, seg_carry) = Segment::open(&dir, base, interval).await?;
            if let Some(prev) = segments.last() {
                if prev.next_offset != seg.base {
                    return Err(StorageError::Corrupt {
                        path: dir.clone(),
                        reason: format!(
                            "segment {} ends at offset {} but the next segment starts at {}",
                            prev.path.display(),
                            prev.next_offset,
                            seg.base
                        ),
                    });
                }
            }
            match (&stop, is_last) {
                (ScanStop::Corrupt(reason), false) => {
                    return Err(StorageError::Corrupt {
                        path: seg.path.clone(),
                        reason: format!(
                            "closed segment is damaged ({reason}); refusing to drop data behind it"
                        ),
                    });
                }
                (ScanStop::Corrupt(reason), true) => {
                    warn!(segment = %seg.path.display(), position = seg.size, next_offset = seg.next_offset,
                        dropped_bytes = seg.allocated.saturating_sub(seg.size), %reason,
                        "truncating torn tail of the active segment");
                }
                _ => {}
            }
            if is_last {
                carry = seg_carry;
            }
            segments.push(seg);
        }

        let active = segments.last_mut().expect("at least one segment");
        // Cut whatever lies past the last valid batch (torn bytes, stale data, preallocation):
        // the next append then never lands in front of stale bytes a later recovery could trust.
        let cut = align_up(active.size);
        active
            .file
            .truncate(cut)
            .await
            .map_err(|e| StorageError::io("truncating", &active.path, e))?;
        active.allocated = cut;
        // What the scan accepted may have been written but never synced before a crash.
        active
            .file
            .fdatasync()
            .await
            .map_err(|e| StorageError::io("syncing", &active.path, e))?;
        let job = active.index_job().run().await?;
        active.index_persisted(&job);

        let mark = Mark {
            offset: active.next_offset,
            pos: active.size,
            carry: carry.clone(),
            max_timestamp: active.max_timestamp,
        };
        let tail = Tail::new(active.size, carry);
        info!(dir = %dir.display(), segments = segments.len(), earliest = segments[0].base,
            next_offset = mark.offset, "opened partition log");
        let state = State {
            segments,
            tail,
            written: mark.clone(),
            synced: mark,
            cache: BatchCache::new(config.cache_bytes),
            waiters: Vec::new(),
            readers: Vec::new(),
            flusher_running: false,
            interval_sync_pending: false,
            active_since: Instant::now(),
            closed: false,
        };
        Ok(PartitionLog {
            inner: Rc::new(Inner {
                dir,
                config,
                state: RefCell::new(state),
                append_lock: Semaphore::new(1),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// Appends one record batch (Kafka RecordBatch v2, exactly one batch). Its offsets are
    /// assigned here, in place; the future resolves when the batch is as durable as the log's
    /// fsync policy demands. On error nothing of this batch is visible.
    pub async fn append(&self, mut batch: BytesMut) -> Result<AppendInfo> {
        let inner = &self.inner;
        let header = validate_batch(&batch)?;
        if batch.len() > inner.config.max_batch_bytes {
            return Err(StorageError::BatchTooLarge {
                size: batch.len(),
                limit: inner.config.max_batch_bytes,
            });
        }
        let _permit = inner
            .append_lock
            .acquire_permit(1)
            .await
            .map_err(|_| self.closed_error())?;
        if inner.state.borrow().closed {
            return Err(self.closed_error());
        }
        self.maybe_roll(&header).await?;
        self.ensure_allocated(batch.len() as u64).await?;

        let level = match inner.config.fsync {
            FsyncPolicy::Always => Level::Synced,
            _ => Level::Written,
        };
        let (info, rx) = {
            let mut st = inner.state.borrow_mut();
            let base_offset = st.active().next_offset;
            set_base_offset(&mut batch, base_offset);
            let header = BatchHeader {
                base_offset,
                ..header
            };
            let pos = st.tail.end();
            let file = st.active().file.clone();
            st.tail.push(&file, &batch);
            st.active_mut()
                .note_batch(pos, &header, inner.config.index_interval_bytes);
            st.cache
                .push(base_offset, header.next_offset(), batch.freeze());
            let (tx, rx) = oneshot::channel();
            st.waiters.push(Waiter {
                upto: header.next_offset(),
                level,
                tx,
            });
            (
                AppendInfo {
                    base_offset,
                    last_offset: header.last_offset(),
                },
                rx,
            )
        };
        self.ensure_flusher();
        drop(_permit);
        rx.await.map_err(|_| self.closed_error())??;
        Ok(info)
    }

    /// Waits until everything appended so far is written and synced, whatever the policy.
    pub async fn flush(&self) -> Result<()> {
        let rx = {
            let mut st = self.inner.state.borrow_mut();
            let upto = st.active().next_offset;
            if st.synced.offset >= upto {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            st.waiters.push(Waiter {
                upto,
                level: Level::Synced,
                tx,
            });
            rx
        };
        self.ensure_flusher();
        rx.await.map_err(|_| self.closed_error())?
    }

    /// Flushes, seals the active segment's indexes and stops accepting appends. Reads keep
    /// working on the open handles.
    pub async fn close(&self) -> Result<()> {
        let _permit = self
            .inner
            .append_lock
            .acquire_permit(1)
            .await
            .map_err(|_| self.closed_error())?;
        if self.inner.state.borrow().closed {
            return Ok(());
        }
        self.flush().await?;
        self.finalize_active().await?;
        self.inner.state.borrow_mut().closed = true;
        self.inner.append_lock.close();
        Ok(())
    }

    fn closed_error(&self) -> StorageError {
        StorageError::Closed {
            path: self.inner.dir.clone(),
        }
    }

    /// Offset of the oldest record still in the log.
    pub fn earliest_offset(&self) -> i64 {
        self.inner.state.borrow().segments[0].base
    }

    /// One past the last offset readers may see (acknowledged data only, per the policy).
    pub fn high_watermark(&self) -> i64 {
        let st = self.inner.state.borrow();
        st.visible(self.inner.config.fsync).offset
    }

    pub fn stats(&self) -> LogStats {
        let st = self.inner.state.borrow();
        LogStats {
            earliest_offset: st.segments[0].base,
            high_watermark: st.visible(self.inner.config.fsync).offset,
            segments: st.segments.len(),
            bytes: st.segments.iter().map(|s| s.size).sum(),
            cached_bytes: st.cache.bytes(),
        }
    }

    /// Resolves once the high watermark passes `offset` (for long-polling fetches). Woken by
    /// appends, never by polling.
    pub async fn wait_for_data(&self, offset: i64) {
        loop {
            let rx = {
                let mut st = self.inner.state.borrow_mut();
                if st.visible(self.inner.config.fsync).offset > offset {
                    return;
                }
                if st.readers.len() >= READER_PRUNE_THRESHOLD {
                    st.readers.retain(|r| !r.is_canceled());
                }
                let (tx, rx) = oneshot::channel();
                st.readers.push(tx);
                rx
            };
            let _ = rx.await;
        }
    }

    /// Whole batches starting with the one that holds `offset`, up to `max_bytes` (at least one
    /// batch when there is one). Empty at or past the high watermark; never blocks for data.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Vec<Bytes>> {
        let (file, path, start, end, visible) = {
            let st = self.inner.state.borrow();
            let mark = st.visible(self.inner.config.fsync);
            let visible = mark.offset;
            let earliest = st.segments[0].base;
            if offset < earliest {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    earliest,
                    latest: visible,
                });
            }
            if offset >= visible {
                return Ok(Vec::new());
            }
            if let CacheRead::Hit(batches) = st.cache.read(offset, max_bytes, visible) {
                return Ok(batches);
            }
            let i = st.segments.partition_point(|s| s.base <= offset) - 1;
            let seg = &st.segments[i];
            let start = seg
                .offset_index
                .lookup(seg.rel(offset))
                .map_or(0, |e| u64::from(e.position));
            let end = if i + 1 == st.segments.len() {
                mark.pos
            } else {
                seg.size
            };
            (seg.file.clone(), seg.path.clone(), start, end, visible)
        };
        read_batches(&file, &path, start, end, offset, max_bytes, visible).await
    }

    /// The first offset whose record timestamp is at or after `timestamp`, or `None` when every
    /// visible record is older.
    pub async fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<i64>> {
        let (file, path, start, end, visible) = {
            let st = self.inner.state.borrow();
            let mark = st.visible(self.inner.config.fsync);
            let Some(i) = st
                .segments
                .iter()
                .position(|s| s.max_timestamp >= timestamp)
            else {
                return Ok(None);
            };
            let seg = &st.segments[i];
            let start = seg
                .time_index
                .last_before(timestamp)
                .and_then(|t| seg.offset_index.lookup(t.rel_offset))
                .map_or(0, |e| u64::from(e.position));
            let end = if i + 1 == st.segments.len() {
                mark.pos
            } else {
                seg.size
            };
            (seg.file.clone(), seg.path.clone(), start, end, mark.offset)
        };
        let mut pos = start;
        while pos < end {
            let batches =
                read_batches(&file, &path, pos, end, i64::MIN, MIN_READ_BYTES, visible).await?;
            if batches.is_empty() {
                break;
            }
            for b in batches {
                pos += b.len() as u64;
                let header = BatchHeader::parse(&b)?;
                if header.max_timestamp < timestamp {
                    continue;
                }
                let batch = Batch::parse(b)?;
                let first = match batch.records() {
                    Ok(records) => records
                        .filter_map(|r| r.ok())
                        .find(|r| r.timestamp >= timestamp)
                        .map_or(header.base_offset, |r| r.offset),
                    // Records we cannot decode (an unsupported codec): the batch is the answer.
                    Err(_) => header.base_offset,
                };
                return Ok(Some(first));
            }
        }
        Ok(None)
    }

    /// Deletes the oldest closed segments while the log exceeds its byte limit, and closed
    /// segments whose newest record is past the age limit. Never the active segment.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let cfg = &self.inner.config;
        let doomed: Vec<Segment> = {
            let mut st = self.inner.state.borrow_mut();
            let mut remaining: u64 = st.segments.iter().map(|s| s.size).sum();
            let mut n = 0;
            while n + 1 < st.segments.len() {
                let seg = &st.segments[n];
                let by_bytes = cfg
                    .retention_bytes
                    .is_some_and(|limit| remaining - seg.size >= limit);
                let by_age = cfg.retention_ms.is_some_and(|ms| {
                    seg.max_timestamp != i64::MIN
                        && now_ms.saturating_sub(seg.max_timestamp) > ms as i64
                });
                if !(by_bytes || by_age) {
                    break;
                }
                remaining -= seg.size;
                n += 1;
            }
            st.segments.drain(..n).collect()
        };
        let mut out = RetentionOutcome::default();
        for seg in doomed {
            seg.remove_files()?;
            info!(segment = %seg.path.display(), bytes = seg.size, "retention deleted segment");
            out.segments_deleted += 1;
            out.bytes_deleted += seg.size;
        }
        Ok(out)
    }

    /// Rolls to a new segment if this batch would overflow the active one (by size or offset
    /// range) or the active one is older than `segment_ms`.
    async fn maybe_roll(&self, header: &BatchHeader) -> Result<()> {
        let cfg = &self.inner.config;
        let needed = {
            let st = self.inner.state.borrow();
            let seg = st.active();
            seg.size > 0
                && (seg.size + header.total_len() as u64 > cfg.segment_bytes
                    || seg.next_offset + i64::from(header.last_offset_delta) - seg.base
                        > i64::from(u32::MAX)
                    || cfg
                        .segment_ms
                        .is_some_and(|ms| st.active_since.elapsed().as_millis() >= u128::from(ms)))
        };
        if !needed {
            return Ok(());
        }
        self.flush().await?;
        self.finalize_active().await?;
        let base = self.inner.state.borrow().active().next_offset;
        let seg = Segment::create(&self.inner.dir, base).await?;
        sync_dir(&self.inner.dir).await?;
        {
            let mut st = self.inner.state.borrow_mut();
            let mark = Mark::start_of(&seg);
            st.tail = Tail::new(0, Vec::new());
            st.written = mark.clone();
            st.synced = mark;
            st.segments.push(seg);
            st.active_since = Instant::now();
        }
        debug!(dir = %self.inner.dir.display(), base, "rolled to a new segment");
        self.enforce_retention(now_ms())?;
        Ok(())
    }

    /// Seals the active segment: final time entry, indexes written and synced, data file cut to
    /// its exact size and synced. Called with the append lock held and nothing pending.
    async fn finalize_active(&self) -> Result<()> {
        let (job, file, path, size) = {
            let mut st = self.inner.state.borrow_mut();
            debug_assert!(!st.tail.is_dirty(), "finalize after a flush");
            let seg = st.active_mut();
            seg.seal_time_index();
            (
                seg.index_job(),
                seg.file.clone(),
                seg.path.clone(),
                seg.size,
            )
        };
        let job = job.run().await?;
        job.sync().await?;
        file.truncate(size)
            .await
            .map_err(|e| StorageError::io("truncating", &path, e))?;
        file.fdatasync()
            .await
            .map_err(|e| StorageError::io("syncing", &path, e))?;
        let mut st = self.inner.state.borrow_mut();
        let seg = st.active_mut();
        seg.index_persisted(&job);
        seg.allocated = size;
        Ok(())
    }

    /// Preallocates the active segment in large steps so appends overwrite reserved blocks; a
    /// full disk fails here, before the batch gets offsets.
    async fn ensure_allocated(&self, len: u64) -> Result<()> {
        let cfg = &self.inner.config;
        let (file, path, need, target) = {
            let st = self.inner.state.borrow();
            let seg = st.active();
            let need = align_up(st.tail.end() + len);
            if need <= seg.allocated {
                return Ok(());
            }
            let step =
                align_up(seg.allocated + cfg.preallocate_bytes).min(align_up(cfg.segment_bytes));
            (seg.file.clone(), seg.path.clone(), need, step.max(need))
        };
        let got = match file.pre_allocate(target, false).await {
            Ok(()) => target,
            Err(e) => {
                let err = StorageError::io("preallocating", &path, e);
                if !err.is_no_space() || target == need {
                    return Err(err);
                }
                // Not room for a whole step: take just what this batch needs.
                file.pre_allocate(need, false)
                    .await
                    .map_err(|e| StorageError::io("preallocating", &path, e))?;
                need
            }
        };
        self.inner.state.borrow_mut().active_mut().allocated = got;
        Ok(())
    }

    fn ensure_flusher(&self) {
        {
            let mut st = self.inner.state.borrow_mut();
            if st.flusher_running {
                return;
            }
            st.flusher_running = true;
        }
        let inner = self.inner.clone();
        glommio::spawn_local(async move { run_flusher(inner).await }).detach();
    }
}

/// The one writer of a log: rounds of "write everything pending, then sync if anyone needs
/// it" until no work is left.
async fn run_flusher(inner: Rc<Inner>) {
    let policy = inner.config.fsync;
    loop {
        let (write, file, path, max_timestamp, upto) = {
            let mut st = inner.state.borrow_mut();
            let write = st.tail.take();
            let wants_sync = st
                .waiters
                .iter()
                .any(|w| w.level == Level::Synced && w.upto > st.synced.offset);
            if write.is_none() && !wants_sync {
                st.flusher_running = false;
                return;
            }
            let seg = st.active();
            (
                write,
                seg.file.clone(),
                seg.path.clone(),
                seg.max_timestamp,
                seg.next_offset,
            )
        };

        if let Some(w) = write {
            let writes = w.chunks.into_iter().map(|(buf, pos)| {
                let file = &file;
                async move {
                    let len = buf.len();
                    match file.write_at(buf, pos).await {
                        Ok(n) if n == len => Ok(()),
                        Ok(n) => Err(std::io::Error::other(format!(
                            "short write: {n} of {len} bytes at {pos}"
                        ))),
                        Err(e) => Err(super::error::IoCause::into_io(e)),
                    }
                }
            });
            let failed = futures::future::join_all(writes)
                .await
                .into_iter()
                .find_map(|r| r.err());
            if let Some(e) = failed {
                let err = StorageError::io("writing", &path, e);
                let to = if policy == FsyncPolicy::Always {
                    Level::Synced
                } else {
                    Level::Written
                };
                rollback(&inner, to, &err).await;
                continue;
            }
            {
                let mut st = inner.state.borrow_mut();
                st.written = Mark {
                    offset: upto,
                    pos: w.end,
                    carry: w.carry,
                    max_timestamp,
                };
                st.complete_waiters();
                if policy != FsyncPolicy::Always {
                    st.wake_readers();
                }
            }
            if let FsyncPolicy::Interval(every) = policy {
                schedule_interval_sync(&inner, every);
            }
        }

        let sync_to = {
            let st = inner.state.borrow();
            let wants = policy == FsyncPolicy::Always
                || st
                    .waiters
                    .iter()
                    .any(|w| w.level == Level::Synced && w.upto > st.synced.offset);
            (wants && st.synced.offset < st.written.offset).then(|| st.written.clone())
        };
        if let Some(mark) = sync_to {
            match file.fdatasync().await {
                Ok(()) => {
                    let mut st = inner.state.borrow_mut();
                    st.synced = mark;
                    st.complete_waiters();
                    if policy == FsyncPolicy::Always {
                        st.wake_readers();
                    }
                }
                Err(e) => {
                    let err = StorageError::io("syncing", &path, e);
                    if policy == FsyncPolicy::Always {
                        rollback(&inner, Level::Synced, &err).await;
                    } else {
                        // Written data is already acknowledged: only the flush requests fail.
                        warn!(error = %err, "fdatasync failed");
                        inner
                            .state
                            .borrow_mut()
                            .fail_waiters(&err, Some(Level::Synced));
                    }
                }
            }
        }

        // Index entries go out after the acknowledgements: they are rebuildable, so a failure
        // here costs recovery time, not data, and never delays an ack.
        let job = inner.state.borrow().active().index_job();
        match job.run().await {
            Ok(job) => inner.state.borrow_mut().index_persisted(&job),
            Err(e) => {
                warn!(error = %e, "could not write index entries; they will be rebuilt at recovery")
            }
        }
    }
}

/// Under `Interval`, makes sure one sync is due within `every` of this write.
fn schedule_interval_sync(inner: &Rc<Inner>, every: std::time::Duration) {
    {
        let mut st = inner.state.borrow_mut();
        if st.interval_sync_pending {
            return;
        }
        st.interval_sync_pending = true;
    }
    let inner = inner.clone();
    glommio::spawn_local(async move {
        glommio::timer::sleep(every).await;
        let (file, path, mark, base) = {
            let st = inner.state.borrow();
            let seg = st.active();
            (
                seg.file.clone(),
                seg.path.clone(),
                st.written.clone(),
                seg.base,
            )
        };
        let res = file.fdatasync().await;
        let mut st = inner.state.borrow_mut();
        st.interval_sync_pending = false;
        match res {
            // A roll in the meantime synced everything and reset the marks.
            Ok(()) if st.active().base == base && mark.offset > st.synced.offset => {
                st.synced = mark;
                st.complete_waiters();
            }
            Ok(()) => {}
            Err(e) => {
                warn!(error = %StorageError::io("syncing", &path, e), "interval fdatasync failed")
            }
        }
    })
    .detach();
}

/// Drops everything past the mark of `to` after a failed write or sync: the tail, index entries
/// and cached batches go, every waiter fails with `err`, and the file is cut after the mark so no
/// half-written bytes stay on disk.
async fn rollback(inner: &Rc<Inner>, to: Level, err: &StorageError) {
    let (file, path, cut, job) = {
        let mut st = inner.state.borrow_mut();
        let mark = match to {
            Level::Written => st.written.clone(),
            Level::Synced => st.synced.clone(),
        };
        warn!(error = %err, next_offset = mark.offset, discarded_from = mark.pos,
            "write failed: rolling the log back to its last good point");
        st.tail = Tail::new(mark.pos, mark.carry.clone());
        st.written = mark.clone();
        st.cache.truncate_from(mark.offset);
        let cut = align_up(mark.pos);
        let seg = st.active_mut();
        let rel = seg.rel(mark.offset);
        seg.offset_index.truncate_from(rel);
        seg.time_index.truncate_from(rel);
        seg.size = mark.pos;
        seg.next_offset = mark.offset;
        seg.max_timestamp = mark.max_timestamp;
        seg.recount_since_index();
        seg.allocated = seg.allocated.min(cut);
        let out = (seg.file.clone(), seg.path.clone(), cut, seg.index_job());
        st.fail_waiters(err, None);
        out
    };
    if let Err(e) = file.truncate(cut).await {
        warn!(file = %path.display(), error = %e, "could not cut the file after a failed write; recovery will");
    }
    match job.run().await {
        Ok(job) => inner.state.borrow_mut().index_persisted(&job),
        Err(e) => warn!(error = %e, "could not rewrite index entries after a failed write"),
    }
}

/// Reads whole batches of one segment from position `start` (a batch boundary at or before
/// `offset`) to `end`, skipping batches before `offset` and stopping at `visible`.
async fn read_batches(
    file: &DmaFile,
    path: &Path,
    start: u64,
    end: u64,
    offset: i64,
    max_bytes: usize,
    visible: i64,
) -> Result<Vec<Bytes>> {
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut out = Vec::new();
    let mut total = 0usize;
    let mut pos = start;
    let mut window = Bytes::new();
    let mut window_pos = start;
    while pos < end {
        let in_window = |p: u64, len: usize| {
            p >= window_pos && p + len as u64 <= window_pos + window.len() as u64
        };
        if !in_window(pos, HEADER_LEN) {
            let len =
                ((end - pos) as usize).min(max_bytes.saturating_sub(total).max(MIN_READ_BYTES));
            window = read_bytes(file, path, pos, len).await?;
            window_pos = pos;
            if window.len() < HEADER_LEN {
                return Err(corrupt(format!(
                    "short batch header at {pos} (segment end {end})"
                )));
            }
        }
        let at = (pos - window_pos) as usize;
        let header =
            BatchHeader::parse(&window[at..]).map_err(|e| corrupt(format!("at {pos}: {e}")))?;
        let len = header.total_len();
        if header.base_offset >= visible {
            break;
        }
        if pos + len as u64 > end {
            return Err(corrupt(format!(
                "batch at {pos} of {len} bytes runs past the segment end {end}"
            )));
        }
        if header.next_offset() <= offset {
            pos += len as u64;
            continue;
        }
        if !out.is_empty() && total + len > max_bytes {
            break;
        }
        let in_window = pos + len as u64 <= window_pos + window.len() as u64;
        let bytes = if in_window {
            window.slice(at..at + len)
        } else {
            let want = ((end - pos) as usize).min(len.max(max_bytes.saturating_sub(total)));
            window = read_bytes(file, path, pos, want).await?;
            window_pos = pos;
            if window.len() < len {
                return Err(corrupt(format!(
                    "batch at {pos} of {len} bytes is cut short"
                )));
            }
            window.slice(0..len)
        };
        total += len;
        out.push(bytes);
        pos += len as u64;
        if total >= max_bytes {
            break;
        }
    }
    Ok(out)
}
