//! The offsets log: the coordinator's own partition log (`DATA/internal/__strata_offsets/0/`),
//! fsynced like any log with `Always`, holding the entries of `records.rs`. Replayed at start-up;
//! compacted by appending a snapshot of the live state and deleting the segments before it.
//! Runs on the coordinator core only (`PartitionLog` is `!Send`).

use std::cell::Cell;
use std::path::{Path, PathBuf};

use crate::record::BatchHeader;
use crate::storage::{self, FsyncPolicy, LogConfig, PartitionLog, StorageError};

use super::records::{decode_batch, encode_batches, Entry, RecordsError};

/// The internal topic's name.
pub const OFFSETS_TOPIC: &str = "__strata_offsets";
/// The directory of internal logs, in the data directory.
pub const INTERNAL_DIR_NAME: &str = "internal";
/// Segment size of the offsets log: small, so compaction frees space soon.
const OFFSETS_SEGMENT_BYTES: u64 = 8 << 20;
/// Bytes read per step of the replay.
const REPLAY_READ_BYTES: usize = 1 << 20;
/// Compact once this many bytes were appended since the last snapshot, by default (and at least
/// as many as the last snapshot took).
pub const DEFAULT_COMPACT_BYTES: u64 = 64 << 20;

/// Why the offsets log failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("offsets log {}: {source}", .dir.display())]
    Storage {
        dir: PathBuf,
        #[source]
        source: StorageError,
    },
    #[error("offsets log {}: {source}", .dir.display())]
    Records {
        dir: PathBuf,
        #[source]
        source: RecordsError,
    },
}

/// The offsets log and its compaction counter. Invariant: replaying the log from its earliest
/// offset gives the coordinator's durable state (every append is whole entries, in the order
/// the state machine produced them).
pub struct OffsetStore {
    log: PartitionLog,
    compact_bytes: u64,
    /// Bytes appended since the last snapshot (or since start-up).
    appended: Cell<u64>,
    /// Bytes the last snapshot took.
    snapshot_bytes: Cell<u64>,
}

/// `DATA/internal/__strata_offsets/0`.
pub fn offsets_dir(data_dir: &Path) -> PathBuf {
    data_dir
        .join(INTERNAL_DIR_NAME)
        .join(OFFSETS_TOPIC)
        .join("0")
}

impl OffsetStore {
    /// Opens (creating if needed) and recovers the log, then reads back every entry in order.
    pub async fn open(
        data_dir: &Path,
        compact_bytes: u64,
    ) -> Result<(OffsetStore, Vec<Entry>), StoreError> {
        let dir = offsets_dir(data_dir);
        let err = |source| StoreError::Storage {
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(|e| err(StorageError::io("creating", &dir, e)))?;
        storage::prime_dma_probe(data_dir).await.map_err(err)?;
        let config = LogConfig {
            segment_bytes: OFFSETS_SEGMENT_BYTES,
            fsync: FsyncPolicy::Always,
            retention_bytes: None,
            retention_ms: None,
            segment_ms: None,
            preallocate_bytes: OFFSETS_SEGMENT_BYTES,
            cache_bytes: 1 << 20,
            max_batch_bytes: OFFSETS_SEGMENT_BYTES as usize / 2,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&dir, config).await.map_err(err)?;
        let store = OffsetStore {
            appended: Cell::new(log.stats().bytes),
            snapshot_bytes: Cell::new(0),
            log,
            compact_bytes,
        };
        let entries = store.replay().await?;
        Ok((store, entries))
    }

    /// Every entry of the log, in order.
    pub async fn replay(&self) -> Result<Vec<Entry>, StoreError> {
        let records = |source| StoreError::Records {
            dir: self.log.dir().to_path_buf(),
            source,
        };
        let mut entries = Vec::new();
        let mut offset = self.log.earliest_offset();
        let end = self.log.high_watermark();
        while offset < end {
            let batches = self
                .log
                .read(offset, REPLAY_READ_BYTES)
                .await
                .map_err(|e| self.storage_error(e))?;
            if batches.is_empty() {
                break;
            }
            for batch in batches {
                let header = BatchHeader::parse(&batch).map_err(|e| records(e.into()))?;
                offset = header.last_offset() + 1;
                entries.extend(decode_batch(batch).map_err(records)?);
            }
        }
        Ok(entries)
    }

    fn storage_error(&self, source: StorageError) -> StoreError {
        StoreError::Storage {
            dir: self.log.dir().to_path_buf(),
            source,
        }
    }

    /// Appends `entries` in order; resolves once they are durable. Returns the offset of the
    /// first record written. Entries that need more than one batch are not atomic: on an error,
    /// some may be durable (replay then applies them).
    pub async fn append(&self, entries: &[Entry], now_ms: i64) -> Result<i64, StoreError> {
        debug_assert!(!entries.is_empty());
        let batches = encode_batches(entries, now_ms);
        let bytes: u64 = batches.iter().map(|b| b.len() as u64).sum();
        // All in flight at once (the log keeps call order and shares one fdatasync).
        let appends = batches.into_iter().map(|b| self.log.append(b));
        let mut first = None;
        for result in futures::future::join_all(appends).await {
            let info = result.map_err(|e| self.storage_error(e))?;
            first.get_or_insert(info.base_offset);
        }
        self.appended.set(self.appended.get() + bytes);
        Ok(first.expect("at least one batch"))
    }

    /// True when enough was appended since the last snapshot that compacting pays.
    pub fn wants_compaction(&self) -> bool {
        self.appended.get() >= self.compact_bytes.max(self.snapshot_bytes.get())
    }

    /// Writes `snapshot` (the whole live state) and deletes every segment wholly before it.
    /// A crash at any point leaves a log that replays to the same state.
    pub async fn compact(&self, snapshot: &[Entry], now_ms: i64) -> Result<(), StoreError> {
        let before = self.log.stats().bytes;
        let appended_before = self.appended.get();
        let start = if snapshot.is_empty() {
            self.log.high_watermark()
        } else {
            self.append(snapshot, now_ms).await?
        };
        let deleted = self
            .log
            .delete_segments_before(start)
            .map_err(|e| self.storage_error(e))?;
        let after = self.log.stats().bytes;
        self.snapshot_bytes
            .set(self.appended.get() - appended_before);
        self.appended.set(0);
        tracing::info!(
            entries = snapshot.len(),
            segments_deleted = deleted.segments_deleted,
            bytes_before = before,
            bytes_after = after,
            "offsets log compacted"
        );
        Ok(())
    }

    /// Bytes of the log on disk.
    pub fn bytes(&self) -> u64 {
        self.log.stats().bytes
    }

    pub async fn close(&self) -> Result<(), StoreError> {
        self.log.close().await.map_err(|e| self.storage_error(e))
    }
}
