//! [`PartitionLog`]: the ordered, durable log of one partition.
//!
//! An append validates the batch (or takes a [`ValidBatch`], checked where it arrived and not
//! again), assigns its offsets by writing the base offset in place, copies it into the aligned
//! tail buffer, registers a waiter and hands the tail to the device as a *round* of concurrent
//! O_DIRECT writes — at once, unless `MAX_ROUNDS_IN_FLIGHT` rounds are already in flight (then it
//! goes with the next round; under `Never`/`Interval` a large batch first lets the writes
//! issued in the current scheduler pass reach the kernel, see
//! `runtime::submit_queued_writes`). Rounds overlap on the device, so the queue never drains
//! between them; only the first write of a round, which rewrites the partial last block of the
//! round before, waits for that round's write of the block. One flusher task per log (spawned
//! when there is work, gone when there is none) retires rounds strictly in file order — the
//! written mark, acks and reader wake-ups advance in order — and, if any waiter needs it, runs one
//! `fdatasync` for every round retired so far: group commit. Under `Always` a zeroer task writes
//! zeros ahead of the tail so those syncs cover overwrites of written blocks, with no journal
//! commit (see `ZeroAhead`). Index entries are written by a task of their own, off that path. A
//! failed write or sync drains the rounds in flight, rolls the log back to its last good mark
//! and fails every waiter whose data was dropped, so the log stays consistent and the next
//! append works once the cause is gone.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use futures::FutureExt;
use glommio::io::{Directory, DmaBuffer, DmaFile};
use glommio::sync::Semaphore;
use glommio::Task;
use tracing::{debug, info, warn};

use super::cache::{BatchCache, CacheRead};
use super::config::{FsyncPolicy, LogConfig};
use super::error::{Result, StorageError};
use super::probe;
use super::segment::{self, read_bytes, IndexJob, ScanStop, Segment};
use super::tail::{align_up, Tail, BLOCK};
use super::turn::Turnstile;
use crate::clock::now_ms;
use crate::record::{set_base_offset, validate_batch, Batch, BatchHeader, ValidBatch, HEADER_LEN};

/// Smallest read issued for a fetch that misses the cache.
const MIN_READ_BYTES: usize = 64 * 1024;
/// Canceled long-poll waiters are pruned once this many accumulate.
const READER_PRUNE_THRESHOLD: usize = 64;
/// Rounds of writes on the device at once; appends past this wait in the tail for the next round
/// (which then carries all of them).
const MAX_ROUNDS_IN_FLIGHT: usize = 4;
/// Shortest time between two writes of a log's new index entries. A write per round cost two
/// page-cache writes (punted to io_uring workers on the shard's core) per produce request;
/// entries written this late only lengthen the recovery scan after a crash (it starts at the
/// last entry in the file).
const INDEX_PERSIST_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// Under `Always`, the active segment is zeroed this far ahead of its tail (see `ZeroAhead`).
const ZERO_AHEAD_BYTES: u64 = 8 << 20;
/// A zeroing run starts once fewer zeroed bytes than this lie ahead of the tail.
const ZERO_LOW_WATER_BYTES: u64 = 4 << 20;
/// Size of each zero write. They go one at a time, so a data write queued behind one waits
/// about 0.1 ms on this machine's disk.
const ZERO_PIECE_BYTES: usize = 256 * 1024;
/// Rounds of a segment that may wait for the zeroer before zeroing stops for that segment:
/// appends are outrunning it, and writing every byte twice would halve their bandwidth.
const ZERO_MAX_WAITS: u32 = 8;

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

/// A round of writes handed to the device. Invariant: rounds are issued and retired in file
/// order, and `mark` (where the written mark moves once this round and every earlier one are
/// done) lies past the mark of the round before.
struct InFlight {
    task: Task<std::io::Result<()>>,
    mark: Mark,
}

/// An append or flush waiting for offsets below `upto` to reach `level`.
struct Waiter {
    upto: i64,
    level: Level,
    tx: oneshot::Sender<Result<()>>,
}

/// Zeroing of the active segment ahead of its tail, under `Always` only. ext4 writes into
/// preallocated (unwritten) extents convert them when the write completes, and the next
/// `fdatasync` must commit that to the journal: on this machine a 4 KiB durable append took twice
/// as long (write 130 µs + fdatasync 122 µs at p50) as one over blocks written before (62 + 60
/// µs). So a background task writes zeros ahead of the tail and syncs them once per run, and
/// appends overwrite written blocks. Invariant: while `writing`, blocks from the zeroer's start
/// up to `zeroed_to` hold written zeros, no round is issued past `zeroed_to`, and the zeroer's
/// next write starts at `zeroed_to`; it never starts below the tail's end.
struct ZeroAhead {
    /// Zeros are written up to here (blocks past it may be unwritten extents or holes).
    zeroed_to: u64,
    /// The zeroer is writing: rounds reaching past `zeroed_to` wait.
    writing: bool,
    /// The zeroer task exists (writing, or syncing what it wrote).
    running: bool,
    /// Rounds of this segment that had to wait for the zeroer.
    waits: u32,
    /// Tail end of the last round counted in `waits` (a round waits for several pieces).
    waited_at: u64,
    /// No zeroing for the rest of this segment: not under `Always`, appends outran it, it
    /// failed, or the segment is being cut (roll, rollback, close). A run in progress stops
    /// after its write in flight.
    off: bool,
    /// Woken whenever `zeroed_to`, `writing` or `running` change.
    progress: Vec<oneshot::Sender<()>>,
}

impl ZeroAhead {
    fn new(zeroed_to: u64, fsync: FsyncPolicy) -> Self {
        ZeroAhead {
            zeroed_to,
            writing: false,
            running: false,
            waits: 0,
            waited_at: 0,
            off: fsync != FsyncPolicy::Always,
            progress: Vec::new(),
        }
    }

    /// A receiver woken at the zeroer's next step.
    fn next_step(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.progress.push(tx);
        rx
    }

    fn wake(&mut self) {
        for tx in self.progress.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// Mutable state of a log. Invariant: `segments` is non-empty with contiguous offsets, the last
/// one is active, `synced.offset <= written.offset <= active.next_offset`, and every round in
/// flight belongs to the active segment and lies past `written`.
struct State {
    segments: Vec<Segment>,
    tail: Tail,
    written: Mark,
    synced: Mark,
    cache: BatchCache,
    waiters: Vec<Waiter>,
    readers: Vec<oneshot::Sender<()>>,
    /// Rounds issued and not yet taken by the flusher, oldest first.
    inflight: VecDeque<InFlight>,
    /// Rounds issued and not yet retired (those in `inflight` plus one the flusher awaits).
    rounds_in_flight: usize,
    /// Fires once the newest round's last chunk is written: the next round's rewrite of the
    /// partial block they share waits for it.
    last_block_written: Option<oneshot::Receiver<()>>,
    /// Set while a rollback drains the rounds in flight and cuts the file: nothing is issued.
    draining: bool,
    flusher_running: bool,
    indexer_running: bool,
    interval_sync_pending: bool,
    zero: ZeroAhead,
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
    /// Call order of appends (the semaphore alone does not keep it).
    append_turns: Turnstile,
    /// Serializes index jobs: each captures the entries when it starts, so files see them in order.
    index_lock: Semaphore,
}

/// The log of one partition, owned by one executor. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct PartitionLog {
    inner: Rc<Inner>,
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
            let (seg, stop, seg_carry) = Segment::open(&dir, base, interval, is_last).await?;
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

        // Closed segments whose index was missing or rebuilt get it written back (and synced, as
        // when they were sealed), so the next open does not scan them again.
        let closed = segments.len() - 1;
        for seg in &mut segments[..closed] {
            if let Err(e) = seg.write_back_index(true).await {
                warn!(segment = %seg.path.display(), error = %e,
                    "could not write back the rebuilt index; the next open rebuilds it again");
            }
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
            inflight: VecDeque::new(),
            rounds_in_flight: 0,
            last_block_written: None,
            draining: false,
            flusher_running: false,
            indexer_running: false,
            interval_sync_pending: false,
            zero: ZeroAhead::new(cut, config.fsync),
            active_since: Instant::now(),
            closed: false,
        };
        Ok(PartitionLog {
            inner: Rc::new(Inner {
                dir,
                config,
                state: RefCell::new(state),
                append_lock: Semaphore::new(1),
                append_turns: Turnstile::default(),
                index_lock: Semaphore::new(1),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// Appends one record batch (Kafka RecordBatch v2, exactly one batch): validates it
    /// ([`ValidBatch::validate`]), then [`PartitionLog::append_valid`]. On error nothing of this
    /// batch is visible.
    pub async fn append(&self, batch: BytesMut) -> Result<AppendInfo> {
        self.append_valid(ValidBatch::validate(batch)?).await
    }

    /// Appends one batch that was validated already (the broker checks every batch of a produce
    /// request where it arrives, before any is appended, and does not check it twice). Its
    /// offsets are assigned here, in place; the future resolves when the batch is as durable as
    /// the log's fsync policy demands. On error nothing of this batch is visible.
    pub async fn append_valid(&self, batch: ValidBatch) -> Result<AppendInfo> {
        let inner = &self.inner;
        // Taken before any await: batches get offsets in the order `append`/`append_valid` was
        // called.
        let turn = inner.append_turns.ticket();
        // `ValidBatch`'s invariant: exactly one batch, CRC and records checked, `header` parsed
        // from it. Only `baseOffset` (outside the CRC) is rewritten below.
        let (mut batch, header) = batch.into_parts();
        debug_assert_eq!(validate_batch(&batch), Ok(header));
        if batch.len() > inner.config.max_batch_bytes {
            return Err(StorageError::BatchTooLarge {
                size: batch.len(),
                limit: inner.config.max_batch_bytes,
            });
        }
        turn.wait_turn().await;
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
        // Under `Always` the flusher takes the tail after each sync, and an appender deferred
        // here would miss that round (measured: 1 MiB appends fell to 0.75-0.85 of fio).
        if inner.config.fsync != FsyncPolicy::Always
            && batch.len() >= crate::runtime::SUBMIT_BEFORE_BYTES
        {
            crate::runtime::submit_queued_writes().await;
        }

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
            // One write with the carried block when that block's last write is done and the
            // blocks after it are zeroed (see `Tail::push`).
            let carry_alone = st.rounds_in_flight > 0 || st.zero.zeroed_to < align_up(pos) + BLOCK;
            st.tail.push(&file, &batch, carry_alone);
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
        if inner.config.fsync != FsyncPolicy::Always {
            // Straight to the device: acks wait for the write only.
            issue_writes(&self.inner);
        }
        // Under `Always` the flusher takes the tail: appends woken by the last sync all land
        // in it before the flusher runs again, so one round and one fdatasync cover them all
        // (issuing here sent the first of them out alone, halving the appends per sync).
        self.ensure_flusher();
        drop(_permit);
        drop(turn);
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
        {
            let mut st = self.inner.state.borrow_mut();
            st.closed = true;
            // Long polls must not wait on a log that takes no more appends.
            st.wake_readers();
        }
        self.inner.append_lock.close();
        Ok(())
    }

    /// True once `close` finished: no more appends; reads still work.
    pub fn is_closed(&self) -> bool {
        self.inner.state.borrow().closed
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

    /// Resolves once the high watermark passes `offset` or the log is closed (for long-polling
    /// fetches). Woken by appends and by `close`, never by polling.
    pub async fn wait_for_data(&self, offset: i64) {
        loop {
            let rx = {
                let mut st = self.inner.state.borrow_mut();
                if st.closed || st.visible(self.inner.config.fsync).offset > offset {
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
        let (file, path, start, end, visible, first_read) = {
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
            // The batch holding `offset` ends by the next index entry: one read covers it even
            // when it is larger than `max_bytes` (else the first read would be thrown away).
            let holder_end = seg
                .offset_index
                .next_after(seg.rel(offset))
                .map_or(end, |e| u64::from(e.position).min(end));
            let first_read = max_bytes.max((holder_end - start) as usize);
            (
                seg.file.clone(),
                seg.path.clone(),
                start,
                end,
                visible,
                first_read,
            )
        };
        let span = ReadSpan {
            start,
            end,
            first_read,
        };
        read_batches(&file, &path, span, offset, max_bytes, visible).await
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
            let span = ReadSpan {
                start: pos,
                end,
                first_read: MIN_READ_BYTES,
            };
            let batches =
                read_batches(&file, &path, span, i64::MIN, MIN_READ_BYTES, visible).await?;
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
        remove_segments(doomed, "retention")
    }

    /// Deletes the closed segments that hold only offsets below `offset`: the log's start moved
    /// forward (the coordinator's offsets log does this after writing a compacted snapshot).
    /// Never the active segment.
    pub fn delete_segments_before(&self, offset: i64) -> Result<RetentionOutcome> {
        let doomed: Vec<Segment> = {
            let mut st = self.inner.state.borrow_mut();
            let n = st
                .segments
                .windows(2)
                .take_while(|pair| pair[1].base <= offset)
                .count();
            debug_assert!(n < st.segments.len(), "the active segment is never deleted");
            st.segments.drain(..n).collect()
        };
        remove_segments(doomed, "log start moved")
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
        // A roll cut short (its append cancelled, or a failed directory sync) may have left the
        // new, empty file behind: nothing was ever appended to it (only non-empty segments
        // roll, so no live segment has this base).
        let leftover = segment::log_path(&self.inner.dir, base);
        if leftover.exists() {
            warn!(file = %leftover.display(), "removing the file of an interrupted roll");
            std::fs::remove_file(&leftover)
                .map_err(|e| StorageError::io("removing", &leftover, e))?;
        }
        let seg = Segment::create(&self.inner.dir, base).await?;
        sync_dir(&self.inner.dir).await?;
        {
            let mut st = self.inner.state.borrow_mut();
            debug_assert_eq!(
                st.rounds_in_flight, 0,
                "a flushed log has no writes in flight"
            );
            let mark = Mark::start_of(&seg);
            st.tail = Tail::new(0, Vec::new());
            st.last_block_written = None;
            st.written = mark.clone();
            st.synced = mark;
            st.segments.push(seg);
            st.zero = ZeroAhead::new(0, self.inner.config.fsync);
            st.active_since = Instant::now();
        }
        debug!(dir = %self.inner.dir.display(), base, "rolled to a new segment");
        self.enforce_retention(now_ms())?;
        Ok(())
    }

    /// Seals the active segment: final time entry, indexes written and synced, data file cut to
    /// its exact size and synced. Called with the append lock held and nothing pending.
    async fn finalize_active(&self) -> Result<()> {
        // No zero write may land after the cut.
        stop_zeroer(&self.inner).await;
        let _index_permit = self
            .inner
            .index_lock
            .acquire_permit(1)
            .await
            .map_err(|_| self.closed_error())?;
        let (job, file, path, size) = {
            let mut st = self.inner.state.borrow_mut();
            debug_assert!(!st.tail.is_dirty(), "finalize after a flush");
            debug_assert_eq!(st.rounds_in_flight, 0, "finalize after a flush");
            let seg = st.active_mut();
            seg.seal_time_index();
            (
                seg.index_job(),
                seg.file.clone(),
                seg.path.clone(),
                seg.size,
            )
        };
        // The data is synced already (rolls and close flush first), so the indexes and the cut
        // of the data file may become durable in either order: run them at once, which lets
        // ext4 cover their syncs with one journal commit (one after the other, sealing took
        // 1.1-1.5 ms of the ~2 ms that a roll holds appends at 250 MB/s).
        let index = async {
            let job = job.run().await?;
            job.sync().await?;
            Ok(job)
        };
        let data = async {
            file.truncate(size)
                .await
                .map_err(|e| StorageError::io("truncating", &path, e))?;
            file.fdatasync()
                .await
                .map_err(|e| StorageError::io("syncing", &path, e))
        };
        let (job, ()) = futures::future::try_join(index, data).await?;
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
        // The zeroer may have got further meanwhile.
        let mut st = self.inner.state.borrow_mut();
        let seg = st.active_mut();
        seg.allocated = seg.allocated.max(got);
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

/// Hands the tail to the device as one more round, unless `MAX_ROUNDS_IN_FLIGHT` rounds are in
/// flight (the flusher issues it when one retires) or a rollback is under way.
fn issue_writes(inner: &Rc<Inner>) {
    let mut st = inner.state.borrow_mut();
    if st.draining || st.rounds_in_flight >= MAX_ROUNDS_IN_FLIGHT || waits_for_zeroer(&st) {
        return;
    }
    let Some(w) = st.tail.take() else {
        return;
    };
    let seg = st.active();
    let mark = Mark {
        offset: seg.next_offset,
        pos: w.end,
        carry: w.carry,
        max_timestamp: seg.max_timestamp,
    };
    let file = seg.file.clone();
    debug_assert!(
        st.inflight.back().map_or(st.written.pos, |r| r.mark.pos) < mark.pos,
        "rounds are issued in file order"
    );
    let (last_done, next_waits_on) = oneshot::channel();
    let previous = st.last_block_written.replace(next_waits_on);
    // Only a round that rewrites the previous round's partial last block must wait for it.
    let after = if w.rewrites_carry { previous } else { None };
    let task = glommio::spawn_local(write_round(file, w.chunks, after, last_done));
    st.inflight.push_back(InFlight { task, mark });
    st.rounds_in_flight += 1;
    if inner.config.fsync != FsyncPolicy::Always {
        // Under `Always` nothing defers work for these writes: the flusher takes the tail right
        // after each sync, and an appender deferred then would miss that round.
        crate::runtime::note_writes_queued();
    }
}

/// Writes one round's chunks concurrently. The first waits for `after` (the previous round's
/// write of the block it rewrites, so two writes of one block never race; while that write may
/// still be in flight, such a first chunk is that one block alone, so the new blocks go to the
/// device at once); `last_done` fires once the last chunk is written, whatever the outcome.
async fn write_round(
    file: Rc<DmaFile>,
    chunks: Vec<(DmaBuffer, u64)>,
    mut after: Option<oneshot::Receiver<()>>,
    last_done: oneshot::Sender<()>,
) -> std::io::Result<()> {
    let last = chunks.len().saturating_sub(1);
    let mut last_done = Some(last_done);
    let file = &file;
    let writes = chunks.into_iter().enumerate().map(|(i, (buf, pos))| {
        let wait = if i == 0 { after.take() } else { None };
        let signal = if i == last { last_done.take() } else { None };
        async move {
            if let Some(rx) = wait {
                // A dropped sender means that write is over too.
                let _ = rx.await;
            }
            let res = write_chunk(file, buf, pos).await;
            if let Some(tx) = signal {
                let _ = tx.send(());
            }
            res
        }
    });
    futures::future::join_all(writes)
        .await
        .into_iter()
        .find(|r| r.is_err())
        .unwrap_or(Ok(()))
}

/// One O_DIRECT write of a whole aligned chunk; a short write is an error.
async fn write_chunk(file: &DmaFile, buf: DmaBuffer, pos: u64) -> std::io::Result<()> {
    let len = buf.len();
    match file.write_at(buf, pos).await {
        Ok(n) if n == len => Ok(()),
        Ok(n) => Err(std::io::Error::other(format!(
            "short write: {n} of {len} bytes at {pos}"
        ))),
        Err(e) => Err(super::error::IoCause::into_io(e)),
    }
}

/// The one retirer of a log's writes: takes rounds in file order as they complete, moves the
/// written mark and acknowledges, then syncs if anyone needs it, until no work is left.
async fn run_flusher(inner: Rc<Inner>) {
    loop {
        start_zeroer(&inner);
        issue_writes(&inner);
        let next = inner.state.borrow_mut().inflight.pop_front();
        if let Some(round) = next {
            let res = round.task.await;
            if !retire(&inner, round.mark, res).await {
                continue;
            }
            // Under `Always` every round on the device is awaited so one fdatasync covers them
            // all (a sync per round measured 0.5-0.8x the throughput); otherwise only the
            // rounds already done are retired, so acks never wait for later writes.
            let retired = if inner.config.fsync == FsyncPolicy::Always {
                retire_all(&inner).await
            } else {
                retire_completed(&inner).await
            };
            if !retired {
                continue;
            }
        }
        let sync_to = {
            let mut st = inner.state.borrow_mut();
            let wants = inner.config.fsync == FsyncPolicy::Always || wants_sync(&st);
            let sync_to =
                (wants && st.synced.offset < st.written.offset).then(|| st.written.clone());
            if sync_to.is_none() && st.rounds_in_flight == 0 && !st.tail.is_dirty() {
                // Everything appended is written (and synced where needed).
                debug_assert!(!wants_sync(&st), "a sync waiter past everything appended");
                st.flusher_running = false;
                return;
            }
            sync_to
        };
        if let Some(mark) = sync_to {
            sync_to_mark(&inner, mark).await;
            if inner.config.fsync == FsyncPolicy::Always {
                // The appenders this sync woke append again before the next round is taken:
                // taking the tail at once sent a lone straggler out in a round and fdatasync
                // of its own while the woken ones waited for the next, halving appends per sync.
                glommio::executor().yield_now().await;
            }
        } else if waits_for_zeroer(&inner.state.borrow()) {
            wait_for_zeroer(&inner).await;
        }
    }
}

/// True when the tail reaches past the zeroes written so far while the zeroer is still writing:
/// its round must wait, or it could race a zero write to the same blocks (or be zeroed later).
fn waits_for_zeroer(st: &State) -> bool {
    st.zero.writing && st.tail.is_dirty() && align_up(st.tail.end()) > st.zero.zeroed_to
}

/// Starts a zeroing run (under `Always`) when fewer than `ZERO_LOW_WATER_BYTES` zeroed bytes lie
/// ahead of the tail: zeros from there to `ZERO_AHEAD_BYTES` past the tail, within the space
/// preallocated so far (writes past the end of the file would journal a size change each, and
/// the append path's preallocation is where a full disk is reported).
fn start_zeroer(inner: &Rc<Inner>) {
    let mut st = inner.state.borrow_mut();
    if st.zero.off || st.zero.running || st.draining || st.closed {
        return;
    }
    let tail_end = align_up(st.tail.end());
    let from = st.zero.zeroed_to.max(tail_end);
    let to = (tail_end + ZERO_AHEAD_BYTES)
        .min(align_up(inner.config.segment_bytes))
        .min(st.active().allocated);
    if from >= to || from - tail_end >= ZERO_LOW_WATER_BYTES {
        return;
    }
    st.zero.zeroed_to = from;
    st.zero.writing = true;
    st.zero.running = true;
    let file = st.active().file.clone();
    drop(st);
    glommio::spawn_local(run_zeroer(inner.clone(), file, from, to)).detach();
}

/// Writes zeros over `from..to` of the active segment, one piece at a time (stopping early once
/// zeroing is turned off), then syncs them once to commit the extent conversions. Rounds may
/// land on a piece as soon as it is written; until that sync, the first data `fdatasync` after a
/// piece commits its conversion instead. A failure only ends zeroing for this segment: appends
/// then write unwritten extents.
async fn run_zeroer(inner: Rc<Inner>, file: Rc<DmaFile>, from: u64, to: u64) {
    let mut pos = from;
    let mut failed = None;
    while pos < to && !inner.state.borrow().zero.off {
        let len = ZERO_PIECE_BYTES.min((to - pos) as usize);
        let mut buf = file.alloc_dma_buffer(len);
        buf.as_bytes_mut().fill(0);
        if let Err(e) = write_chunk(&file, buf, pos).await {
            failed = Some(e);
            break;
        }
        pos += len as u64;
        let mut st = inner.state.borrow_mut();
        st.zero.zeroed_to = pos;
        st.zero.wake();
    }
    {
        let mut st = inner.state.borrow_mut();
        st.zero.writing = false;
        st.zero.wake();
    }
    if failed.is_none() && pos > from {
        failed = file
            .fdatasync()
            .await
            .err()
            .map(super::error::IoCause::into_io);
    }
    let mut st = inner.state.borrow_mut();
    if let Some(e) = failed {
        warn!(segment = %st.active().path.display(), error = %e,
            "zeroing ahead of the tail failed; appends to this segment write unzeroed blocks");
        st.zero.off = true;
    }
    st.zero.running = false;
    st.zero.wake();
}

/// Waits for the zeroer's next step, as a round that reaches past its zeros must. After
/// `ZERO_MAX_WAITS` such waits in one segment, zeroing stops there.
async fn wait_for_zeroer(inner: &Rc<Inner>) {
    let rx = {
        let mut st = inner.state.borrow_mut();
        let tail_end = st.tail.end();
        if st.zero.waited_at != tail_end {
            st.zero.waited_at = tail_end;
            st.zero.waits += 1;
        }
        if st.zero.waits >= ZERO_MAX_WAITS && !st.zero.off {
            debug!(segment = %st.active().path.display(),
                "appends outrun the zeroer: no more zeroing ahead in this segment");
            st.zero.off = true;
        }
        st.zero.next_step()
    };
    let _ = rx.await;
}

/// Ends zeroing for the rest of the active segment and waits until the zeroer's task is over, so
/// nothing writes the file while it is cut. Zeroing stays off (the flusher may still loop and
/// would start a run otherwise) until a roll gives the next segment a fresh `ZeroAhead`.
async fn stop_zeroer(inner: &Rc<Inner>) {
    loop {
        let rx = {
            let mut st = inner.state.borrow_mut();
            st.zero.off = true;
            if !st.zero.running {
                return;
            }
            st.zero.next_step()
        };
        let _ = rx.await;
    }
}

/// Whether some waiter needs data synced that is not yet.
fn wants_sync(st: &State) -> bool {
    st.waiters
        .iter()
        .any(|w| w.level == Level::Synced && w.upto > st.synced.offset)
}

/// Moves the written mark to a completed round's end and acknowledges; on a failed write, rolls
/// the log back instead. Returns false after a rollback.
async fn retire(inner: &Rc<Inner>, mark: Mark, res: std::io::Result<()>) -> bool {
    let policy = inner.config.fsync;
    let path = {
        let mut st = inner.state.borrow_mut();
        debug_assert!(st.rounds_in_flight > 0);
        st.rounds_in_flight -= 1;
        st.active().path.clone()
    };
    if let Err(e) = res {
        let err = StorageError::io("writing", &path, e);
        let to = if policy == FsyncPolicy::Always {
            Level::Synced
        } else {
            Level::Written
        };
        rollback(inner, to, &err).await;
        return false;
    }
    {
        let mut st = inner.state.borrow_mut();
        debug_assert!(mark.offset >= st.written.offset && mark.pos > st.written.pos);
        st.written = mark;
        st.complete_waiters();
        if policy != FsyncPolicy::Always {
            st.wake_readers();
        }
    }
    if let FsyncPolicy::Interval(every) = policy {
        schedule_interval_sync(inner, every);
    }
    ensure_indexer(inner);
    true
}

/// Awaits and retires, in order, the rounds in flight when called. Returns false after a
/// rollback.
async fn retire_all(inner: &Rc<Inner>) -> bool {
    // Only the rounds on the device now: rounds issued meanwhile wait for the next sync, so a
    // steady stream of appends cannot put the sync off.
    let count = inner.state.borrow().inflight.len();
    for _ in 0..count {
        let Some(round) = inner.state.borrow_mut().inflight.pop_front() else {
            return true;
        };
        let res = round.task.await;
        if !retire(inner, round.mark, res).await {
            return false;
        }
    }
    true
}

/// Retires, in order, the rounds that have already completed (so one sync covers them all).
/// Returns false after a rollback.
async fn retire_completed(inner: &Rc<Inner>) -> bool {
    loop {
        let Some(mut round) = inner.state.borrow_mut().inflight.pop_front() else {
            return true;
        };
        match (&mut round.task).now_or_never() {
            Some(res) => {
                if !retire(inner, round.mark, res).await {
                    return false;
                }
            }
            None => {
                inner.state.borrow_mut().inflight.push_front(round);
                return true;
            }
        }
    }
}

/// One `fdatasync` covering every write retired so far (`mark`): moves the synced mark, or on
/// failure rolls back (`Always`) or fails the flush requests (data already acknowledged).
async fn sync_to_mark(inner: &Rc<Inner>, mark: Mark) {
    let policy = inner.config.fsync;
    let (file, path) = {
        let st = inner.state.borrow();
        (st.active().file.clone(), st.active().path.clone())
    };
    match file.fdatasync().await {
        Ok(()) => {
            let mut st = inner.state.borrow_mut();
            debug_assert!(mark.offset <= st.written.offset);
            if mark.offset > st.synced.offset {
                st.synced = mark;
            }
            st.complete_waiters();
            if policy == FsyncPolicy::Always {
                st.wake_readers();
            }
        }
        Err(e) => {
            let err = StorageError::io("syncing", &path, e);
            if policy == FsyncPolicy::Always {
                rollback(inner, Level::Synced, &err).await;
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

/// Starts the index writer unless it runs or has nothing to do.
fn ensure_indexer(inner: &Rc<Inner>) {
    {
        let mut st = inner.state.borrow_mut();
        if st.indexer_running || !st.active().index_dirty() {
            return;
        }
        st.indexer_running = true;
    }
    let inner = inner.clone();
    glommio::spawn_local(async move { run_indexer(inner).await }).detach();
}

/// Writes the active segment's new index entries while there are any, one job per
/// `INDEX_PERSIST_INTERVAL` at most. Index entries are rebuildable hints, so this never delays
/// an acknowledgement, and a failure (or a crash before a job) costs recovery time, not data.
async fn run_indexer(inner: Rc<Inner>) {
    loop {
        {
            let Ok(_permit) = inner.index_lock.acquire_permit(1).await else {
                inner.state.borrow_mut().indexer_running = false;
                return;
            };
            let job = {
                let mut st = inner.state.borrow_mut();
                if !st.active().index_dirty() {
                    st.indexer_running = false;
                    return;
                }
                st.active().index_job()
            };
            match job.run().await {
                Ok(job) => inner.state.borrow_mut().index_persisted(&job),
                Err(e) => {
                    warn!(error = %e, "could not write index entries; they will be rebuilt at recovery");
                    inner.state.borrow_mut().indexer_running = false;
                    return;
                }
            }
        }
        // Not holding the index lock: a roll or close seals the indexes meanwhile.
        glommio::timer::sleep(INDEX_PERSIST_INTERVAL).await;
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
/// Removes the files of segments already taken out of the log's state.
fn remove_segments(doomed: Vec<Segment>, why: &str) -> Result<RetentionOutcome> {
    let mut out = RetentionOutcome::default();
    for seg in doomed {
        seg.remove_files()?;
        info!(segment = %seg.path.display(), bytes = seg.size, "{why}: deleted segment");
        out.segments_deleted += 1;
        out.bytes_deleted += seg.size;
    }
    Ok(out)
}

async fn rollback(inner: &Rc<Inner>, to: Level, err: &StorageError) {
    drain_rounds(inner).await;
    stop_zeroer(inner).await;
    let (file, path, cut) = {
        let mut st = inner.state.borrow_mut();
        let mark = match to {
            Level::Written => st.written.clone(),
            Level::Synced => st.synced.clone(),
        };
        warn!(error = %err, next_offset = mark.offset, discarded_from = mark.pos,
            "write failed: rolling the log back to its last good point");
        st.tail = Tail::new(mark.pos, mark.carry.clone());
        st.last_block_written = None;
        st.written = mark.clone();
        st.cache.truncate_from(mark.offset);
        let cut = align_up(mark.pos);
        let seg = st.active_mut();
        let rel = seg.rel(mark.offset);
        seg.truncate_indexes_from(rel);
        seg.size = mark.pos;
        seg.next_offset = mark.offset;
        seg.max_timestamp = mark.max_timestamp;
        seg.recount_since_index();
        seg.allocated = seg.allocated.min(cut);
        let out = (seg.file.clone(), seg.path.clone(), cut);
        st.zero.zeroed_to = st.zero.zeroed_to.min(cut);
        st.fail_waiters(err, None);
        out
    };
    if let Err(e) = file.truncate(cut).await {
        warn!(file = %path.display(), error = %e, "could not cut the file after a failed write; recovery will");
    }
    inner.state.borrow_mut().draining = false;
    rewrite_index(inner).await;
}

/// Stops issuing rounds and waits for every round in flight to finish (their outcome no longer
/// matters: the caller rolls back past them), so nothing writes the file while it is cut.
async fn drain_rounds(inner: &Rc<Inner>) {
    inner.state.borrow_mut().draining = true;
    loop {
        let Some(round) = inner.state.borrow_mut().inflight.pop_front() else {
            break;
        };
        let _ = round.task.await;
        inner.state.borrow_mut().rounds_in_flight -= 1;
    }
    debug_assert_eq!(inner.state.borrow().rounds_in_flight, 0);
}

/// Rewrites the active segment's index files to the (rolled back) in-memory indexes.
async fn rewrite_index(inner: &Rc<Inner>) {
    let Ok(_permit) = inner.index_lock.acquire_permit(1).await else {
        return;
    };
    let job = inner.state.borrow().active().index_job();
    match job.run().await {
        Ok(job) => inner.state.borrow_mut().index_persisted(&job),
        Err(e) => warn!(error = %e, "could not rewrite index entries after a failed write"),
    }
}

/// Where a read of one segment goes. Invariant: `start <= end`, `start` is a batch boundary.
#[derive(Debug, Clone, Copy)]
struct ReadSpan {
    start: u64,
    end: u64,
    /// Bytes of the first disk read (more are read only if the batches need them).
    first_read: usize,
}

/// Reads whole batches of one segment from `span.start` (a batch boundary at or before
/// `offset`) to `span.end`, skipping batches before `offset` and stopping at `visible`.
async fn read_batches(
    file: &DmaFile,
    path: &Path,
    span: ReadSpan,
    offset: i64,
    max_bytes: usize,
    visible: i64,
) -> Result<Vec<Bytes>> {
    let ReadSpan {
        start,
        end,
        first_read,
    } = span;
    debug_assert!(start <= end);
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
            let want = if pos == start {
                first_read
            } else {
                max_bytes.saturating_sub(total)
            };
            let len = ((end - pos) as usize).min(want.max(MIN_READ_BYTES));
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
