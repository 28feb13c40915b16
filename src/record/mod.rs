//! Kafka RecordBatch v2, byte for byte, without I/O.
//!
//! A batch is a 61-byte big-endian header followed by its records (possibly compressed as one
//! block):
//!
//! | offset | field                | type |
//! |-------:|----------------------|------|
//! | 0      | baseOffset           | i64  |
//! | 8      | batchLength          | i32 (bytes after this field) |
//! | 12     | partitionLeaderEpoch | i32  |
//! | 16     | magic                | i8 (= 2) |
//! | 17     | crc                  | u32, CRC-32C of bytes `[21..]` |
//! | 21     | attributes           | i16: bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control |
//! | 23     | lastOffsetDelta      | i32  |
//! | 27     | baseTimestamp        | i64  |
//! | 35     | maxTimestamp         | i64  |
//! | 43     | producerId           | i64  |
//! | 51     | producerEpoch        | i16  |
//! | 53     | baseSequence         | i32  |
//! | 57     | recordsCount         | i32  |
//! | 61     | records              | …    |
//!
//! Each record is `length: varint`, `attributes: i8`, `timestampDelta: varlong`,
//! `offsetDelta: varint`, `key` and `value` (varint length, -1 for null, then bytes), and a
//! varint count of headers, each a string key (varint length + UTF-8) and a nullable value.
//! Varints are zigzag-encoded (see [`varint`]).
//!
//! - [`validate_batch`] is the broker's hot-path check of one batch (no allocation, no
//!   decompression); [`ValidBatch`] carries a batch that passed it to the log, so it is checked
//!   once; [`BatchHeader::parse`] and [`next_batch_len`] read just the header.
//! - [`BatchBuilder`] encodes an uncompressed batch straight into a `BytesMut`.
//! - [`Batch`] holds a validated batch in a `Bytes` and iterates its [`Record`]s without copying
//!   (gzip batches are decompressed once).
//! - [`set_base_offset`] rewrites the base offset in place (outside the CRC).

mod builder;
mod error;
mod header;
mod reader;
pub mod varint;
mod wire;

#[cfg(test)]
mod proptests;

pub use builder::{BatchBuilder, RecordHeader};
pub use error::RecordError;
pub use header::{
    check_crc, set_base_offset, update_crc, validate_batch, BatchHeader, Compression, ValidBatch,
};
pub use reader::{next_batch_len, Batch, Record, RecordIter};
pub use varint::{
    get_varint, get_varlong, put_varint, put_varlong, varint_len, varlong_len, VarintError,
    MAX_VARINT_LEN, MAX_VARLONG_LEN,
};

/// Bytes from baseOffset through recordsCount: the fixed header before the records.
pub const HEADER_LEN: usize = 61;

/// baseOffset + batchLength: the bytes of a batch that `batchLength` does not count.
pub const LOG_OVERHEAD: usize = 12;

/// The only supported magic (format version) byte.
pub const MAGIC_V2: i8 = 2;

/// Upper bound on `batchLength` accepted by [`BatchHeader::parse`]: `i32::MAX - LOG_OVERHEAD`, so
/// that a whole batch (`LOG_OVERHEAD + batchLength`) also fits in an `i32`. A sanity limit for the
/// codec only; storage and the network layer enforce their own, much smaller, limits.
pub const MAX_BATCH_BYTES: usize = i32::MAX as usize - LOG_OVERHEAD;
