//! The storage engine: one [`PartitionLog`] per partition directory, a sequence of segment files
//! of Kafka RecordBatch v2 bytes written with O_DIRECT through io_uring (glommio), with sparse
//! indexes, group-committed fsync, crash recovery and retention.
//!
//! Everything here runs on one glommio executor (the shard that owns the partition); nothing is
//! `Send` and nothing locks.

mod cache;
mod config;
mod error;
mod index;
mod log;
mod probe;
mod segment;
mod tail;
mod turn;

pub use config::{FsyncPolicy, LogConfig, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
pub use error::{Result, StorageError};
pub use index::{IndexError, OffsetIndex, TimeIndex};
pub use log::{AppendInfo, LogStats, PartitionLog, RetentionOutcome};
pub use probe::{prime as prime_dma_probe, PROBE_FILE_NAME};
pub use segment::{log_path, offset_index_path, time_index_path};
pub use tail::BLOCK;
