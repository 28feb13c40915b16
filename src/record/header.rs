//! The fixed 61-byte RecordBatch v2 header, the CRC, and whole-batch validation.

use bytes::BytesMut;

use super::error::RecordError;
use super::wire::{walk_records, DeltaCheck};
use super::{HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, MAX_BATCH_BYTES};

// Byte offsets of the header fields (all big-endian).
pub(crate) const BASE_OFFSET_OFFSET: usize = 0;
pub(crate) const BATCH_LENGTH_OFFSET: usize = 8;
pub(crate) const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
pub(crate) const MAGIC_OFFSET: usize = 16;
pub(crate) const CRC_OFFSET: usize = 17;
pub(crate) const ATTRIBUTES_OFFSET: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_OFFSET: usize = 23;
pub(crate) const BASE_TIMESTAMP_OFFSET: usize = 27;
pub(crate) const MAX_TIMESTAMP_OFFSET: usize = 35;
pub(crate) const PRODUCER_ID_OFFSET: usize = 43;
pub(crate) const PRODUCER_EPOCH_OFFSET: usize = 51;
pub(crate) const BASE_SEQUENCE_OFFSET: usize = 53;
pub(crate) const RECORDS_COUNT_OFFSET: usize = 57;
/// Where the (possibly compressed) records start; equal to [`HEADER_LEN`].
pub(crate) const RECORDS_OFFSET: usize = 61;
/// The CRC covers everything from the attributes to the end of the batch.
pub(crate) const CRC_COVERED_FROM: usize = ATTRIBUTES_OFFSET;

// Attribute bits.
pub(crate) const COMPRESSION_MASK: i16 = 0x07;
pub(crate) const TIMESTAMP_TYPE_BIT: i16 = 0x08;
pub(crate) const TRANSACTIONAL_BIT: i16 = 0x10;
pub(crate) const CONTROL_BIT: i16 = 0x20;

/// Smallest legal `batchLength`: a header with an empty records section.
pub(crate) const MIN_BATCH_LENGTH: usize = HEADER_LEN - LOG_OVERHEAD;

const _: () = assert!(RECORDS_OFFSET == HEADER_LEN);
const _: () = assert!(RECORDS_COUNT_OFFSET + 4 == HEADER_LEN);
const _: () = assert!(BATCH_LENGTH_OFFSET + 4 == LOG_OVERHEAD);

#[inline]
fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

#[inline]
fn be_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

#[inline]
fn be_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// The decoded fixed header of one RecordBatch v2.
/// Invariant (when produced by [`BatchHeader::parse`]): `magic == MAGIC_V2` and
/// `batch_length` is in `[HEADER_LEN - LOG_OVERHEAD, MAX_BATCH_BYTES]`; nothing else is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

/// The codec of a batch's records section (attributes bits 0-2).
/// Invariant: `Compression::from_id(c.id()) == Ok(c)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec id stored in the attributes.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec for an id; 5..=7 (and anything larger) is [`RecordError::UnsupportedCompression`].
    pub fn from_id(id: u8) -> Result<Compression, RecordError> {
        match id {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(RecordError::UnsupportedCompression(other)),
        }
    }
}

impl BatchHeader {
    /// Decodes the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// Checks that the magic byte is 2 and that `batchLength` is within
    /// `[HEADER_LEN - LOG_OVERHEAD, MAX_BATCH_BYTES]`. Does not check the CRC, nor that `buf`
    /// is exactly one batch (it may be a prefix of one, or hold several).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, RecordError> {
        if buf.len() < HEADER_LEN {
            return Err(RecordError::TooShort {
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != MAGIC_V2 {
            return Err(RecordError::BadMagic(magic));
        }
        let batch_length = be_i32(buf, BATCH_LENGTH_OFFSET);
        if batch_length < 0
            || (batch_length as usize) < MIN_BATCH_LENGTH
            || batch_length as usize > MAX_BATCH_BYTES
        {
            return Err(RecordError::LengthOutOfRange {
                length: i64::from(batch_length),
                min: MIN_BATCH_LENGTH,
                max: MAX_BATCH_BYTES,
            });
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_OFFSET),
            batch_length,
            partition_leader_epoch: be_i32(buf, PARTITION_LEADER_EPOCH_OFFSET),
            magic,
            crc: be_i32(buf, CRC_OFFSET) as u32,
            attributes: be_i16(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_OFFSET),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: be_i64(buf, PRODUCER_ID_OFFSET),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_OFFSET),
            base_sequence: be_i32(buf, BASE_SEQUENCE_OFFSET),
            record_count: be_i32(buf, RECORDS_COUNT_OFFSET),
        })
    }

    /// Size of the whole batch in bytes: `LOG_OVERHEAD + batch_length`.
    pub fn total_len(&self) -> usize {
        debug_assert!(self.batch_length >= 0);
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the batch's last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset the next batch in the log starts at: `last_offset() + 1`.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// The codec of the records section; ids 5..=7 are [`RecordError::UnsupportedCompression`].
    pub fn compression(&self) -> Result<Compression, RecordError> {
        Compression::from_id((self.attributes & COMPRESSION_MASK) as u8)
    }

    /// Attributes bit 3: timestamps are LogAppendTime (otherwise CreateTime).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// Attributes bit 4: the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Attributes bit 5: the batch holds a control record (commit/abort marker).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// Overwrites `baseOffset` (bytes 0..8) of `batch` in place. The CRC does not cover these bytes,
/// so a valid batch stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    debug_assert!(
        batch.len() >= HEADER_LEN,
        "not a batch: {} bytes",
        batch.len()
    );
    batch[BASE_OFFSET_OFFSET..BASE_OFFSET_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Computes the CRC-32C of `batch[21..]` (attributes through the end).
pub(crate) fn compute_crc(batch: &[u8]) -> u32 {
    debug_assert!(batch.len() >= HEADER_LEN);
    crc32c::crc32c(&batch[CRC_COVERED_FROM..])
}

/// Rewrites the stored CRC of a whole batch after its records were changed in place (a load
/// generator stamping each send into record values reuses one encoded batch this way).
pub fn update_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Checks the stored CRC against the CRC-32C of `batch[21..]`.
///
/// `batch` must be exactly `header.total_len()` bytes (otherwise [`RecordError::LengthMismatch`]).
pub fn check_crc(batch: &[u8], header: &BatchHeader) -> Result<(), RecordError> {
    if batch.len() != header.total_len() {
        return Err(RecordError::LengthMismatch {
            header: header.total_len(),
            actual: batch.len(),
        });
    }
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(RecordError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// Fully validates `batch` as exactly one RecordBatch v2, without allocating.
///
/// In order: the header parses ([`BatchHeader::parse`]); `batch.len()` is the header's total
/// length ([`RecordError::LengthMismatch`]); the CRC matches; the codec is known; the batch holds
/// at least one record ([`RecordError::Empty`]) and `lastOffsetDelta` can cover them
/// ([`RecordError::OffsetDeltaOutOfRange`]). For uncompressed batches every record is then walked:
/// each record's length fits the batch, its fields are well-formed and fill it exactly, offset
/// deltas are non-negative, strictly increasing and at most `lastOffsetDelta`, and the number of
/// records equals `recordsCount`. Compressed batches are not decompressed: their records are
/// checked only when read ([`crate::record::Batch::records`]). Header keys are not checked for
/// UTF-8 validity (Kafka does not either).
pub fn validate_batch(batch: &[u8]) -> Result<BatchHeader, RecordError> {
    let header = BatchHeader::parse(batch)?;
    if batch.len() != header.total_len() {
        return Err(RecordError::LengthMismatch {
            header: header.total_len(),
            actual: batch.len(),
        });
    }
    check_crc(batch, &header)?;
    let compression = header.compression()?;
    check_counts(&header)?;
    if compression == Compression::None {
        let mut deltas = DeltaCheck::new(header.last_offset_delta);
        let found = walk_records(&batch[RECORDS_OFFSET..], 0, 0, &mut deltas)?;
        if found != header.record_count as usize {
            return Err(RecordError::RecordCountMismatch {
                header: header.record_count,
                actual: found,
            });
        }
    }
    Ok(header)
}

/// One batch that passed [`validate_batch`], still in its (mutable) receive buffer: the proof
/// the append path asks for, so a batch checked where it arrived is not checked again where it
/// is stored.
///
/// Invariant: `bytes` is exactly one batch that [`validate_batch`] accepted, and `header` is what
/// it returned. Only [`ValidBatch::validate`] builds one, and nothing hands out `&mut` access to
/// the bytes, so the invariant holds for the value's whole life; [`ValidBatch::into_parts`] ends
/// it (the caller may then rewrite `baseOffset`, which the CRC does not cover).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidBatch {
    bytes: BytesMut,
    header: BatchHeader,
}

impl ValidBatch {
    /// Validates `bytes` as exactly one batch ([`validate_batch`]) and keeps it, uncopied.
    pub fn validate(bytes: BytesMut) -> Result<ValidBatch, RecordError> {
        let header = validate_batch(&bytes)?;
        Ok(ValidBatch { bytes, header })
    }

    /// The parsed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The whole batch, as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Gives back the batch and its header.
    pub fn into_parts(self) -> (BytesMut, BatchHeader) {
        (self.bytes, self.header)
    }
}

/// Header-only consistency of `recordsCount` and `lastOffsetDelta`.
pub(crate) fn check_counts(header: &BatchHeader) -> Result<(), RecordError> {
    if header.record_count < 1 {
        return Err(RecordError::Empty);
    }
    if header.last_offset_delta < header.record_count - 1 {
        return Err(RecordError::OffsetDeltaOutOfRange {
            last_offset_delta: header.last_offset_delta,
            record_count: header.record_count,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::BatchBuilder;

    fn sample() -> Vec<u8> {
        let mut b = BatchBuilder::new().producer(7, 2, 40);
        b.append(1_000, Some(b"k"), Some(b"v"), &[]);
        b.append(1_005, None, Some(b"w"), &[]);
        b.finish().to_vec()
    }

    #[test]
    fn parse_reads_every_field() {
        let buf = sample();
        let h = BatchHeader::parse(&buf).unwrap();
        assert_eq!(h.base_offset, 0);
        assert_eq!(h.total_len(), buf.len());
        assert_eq!(h.partition_leader_epoch, -1);
        assert_eq!(h.magic, MAGIC_V2);
        assert_eq!(h.crc, crc32c::crc32c(&buf[21..]));
        assert_eq!(h.attributes, 0);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_005);
        assert_eq!(h.producer_id, 7);
        assert_eq!(h.producer_epoch, 2);
        assert_eq!(h.base_sequence, 40);
        assert_eq!(h.record_count, 2);
        assert_eq!(h.last_offset(), 1);
        assert_eq!(h.next_offset(), 2);
        assert_eq!(h.compression(), Ok(Compression::None));
        assert!(!h.is_transactional() && !h.is_control() && !h.is_log_append_time());
    }

    #[test]
    fn parse_only_needs_the_header() {
        let buf = sample();
        assert!(BatchHeader::parse(&buf[..HEADER_LEN]).is_ok());
        assert_eq!(
            BatchHeader::parse(&buf[..HEADER_LEN - 1]),
            Err(RecordError::TooShort {
                need: HEADER_LEN,
                have: HEADER_LEN - 1
            })
        );
    }

    #[test]
    fn parse_rejects_bad_magic_and_length() {
        let mut buf = sample();
        buf[MAGIC_OFFSET] = 1;
        assert_eq!(BatchHeader::parse(&buf), Err(RecordError::BadMagic(1)));
        let mut buf = sample();
        for bad in [-1i32, 0, 48, i32::MIN] {
            buf[8..12].copy_from_slice(&bad.to_be_bytes());
            assert_eq!(
                BatchHeader::parse(&buf),
                Err(RecordError::LengthOutOfRange {
                    length: i64::from(bad),
                    min: 49,
                    max: MAX_BATCH_BYTES
                })
            );
        }
        buf[8..12].copy_from_slice(&49i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&buf).unwrap().total_len(), HEADER_LEN);
    }

    #[test]
    fn attribute_bits() {
        let mut h = BatchHeader::parse(&sample()).unwrap();
        for (id, c) in [
            (0, Compression::None),
            (1, Compression::Gzip),
            (2, Compression::Snappy),
            (3, Compression::Lz4),
            (4, Compression::Zstd),
        ] {
            h.attributes = id | TRANSACTIONAL_BIT;
            assert_eq!(h.compression(), Ok(c));
            assert_eq!(c.id() as i16, id);
            assert!(h.is_transactional());
        }
        for id in 5..=7 {
            h.attributes = id;
            assert_eq!(
                h.compression(),
                Err(RecordError::UnsupportedCompression(id as u8))
            );
        }
        h.attributes = CONTROL_BIT | TIMESTAMP_TYPE_BIT;
        assert!(h.is_control() && h.is_log_append_time() && !h.is_transactional());
    }

    #[test]
    fn set_base_offset_keeps_crc() {
        let mut buf = sample();
        set_base_offset(&mut buf, 987_654_321);
        let h = validate_batch(&buf).unwrap();
        assert_eq!(h.base_offset, 987_654_321);
        assert_eq!(h.last_offset(), 987_654_322);
    }

    #[test]
    fn valid_batch_is_built_only_by_validating() {
        let buf = sample();
        let valid = ValidBatch::validate(BytesMut::from(&buf[..])).unwrap();
        assert_eq!(valid.as_bytes(), &buf[..]);
        assert_eq!(Ok(*valid.header()), validate_batch(&buf));
        let (bytes, header) = valid.into_parts();
        assert_eq!((&bytes[..], Ok(header)), (&buf[..], validate_batch(&buf)));
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            ValidBatch::validate(BytesMut::from(&bad[..])),
            Err(RecordError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn validate_detects_length_mismatch() {
        let buf = sample();
        let mut longer = buf.clone();
        longer.push(0);
        assert_eq!(
            validate_batch(&longer),
            Err(RecordError::LengthMismatch {
                header: buf.len(),
                actual: buf.len() + 1
            })
        );
        assert_eq!(
            validate_batch(&buf[..buf.len() - 1]),
            Err(RecordError::LengthMismatch {
                header: buf.len(),
                actual: buf.len() - 1
            })
        );
        let h = BatchHeader::parse(&buf).unwrap();
        assert!(matches!(
            check_crc(&buf[..buf.len() - 1], &h),
            Err(RecordError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn validate_detects_crc_mismatch() {
        let mut buf = sample();
        let last = buf.len() - 1;
        buf[last] ^= 0x40;
        match validate_batch(&buf) {
            Err(RecordError::CrcMismatch { stored, computed }) => {
                assert_eq!(stored, BatchHeader::parse(&buf).unwrap().crc);
                assert_eq!(computed, crc32c::crc32c(&buf[21..]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn validate_detects_count_problems() {
        let mut buf = sample();
        buf[RECORDS_COUNT_OFFSET..HEADER_LEN].copy_from_slice(&0i32.to_be_bytes());
        update_crc(&mut buf);
        assert_eq!(validate_batch(&buf), Err(RecordError::Empty));

        let mut buf = sample();
        buf[RECORDS_COUNT_OFFSET..HEADER_LEN].copy_from_slice(&1i32.to_be_bytes());
        update_crc(&mut buf);
        assert_eq!(
            validate_batch(&buf),
            Err(RecordError::RecordCountMismatch {
                header: 1,
                actual: 2
            })
        );

        let mut buf = sample();
        buf[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
            .copy_from_slice(&0i32.to_be_bytes());
        update_crc(&mut buf);
        assert_eq!(
            validate_batch(&buf),
            Err(RecordError::OffsetDeltaOutOfRange {
                last_offset_delta: 0,
                record_count: 2
            })
        );
    }

    #[test]
    fn validate_accepts_gaps_in_offset_deltas() {
        // As after compaction: lastOffsetDelta larger than the last record's delta.
        let mut buf = sample();
        buf[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
            .copy_from_slice(&9i32.to_be_bytes());
        update_crc(&mut buf);
        assert_eq!(validate_batch(&buf).unwrap().next_offset(), 10);
    }

    #[test]
    fn validate_compressed_checks_header_only() {
        // A "gzip" batch whose payload is not gzip: the hot path accepts it (no decompression).
        let mut buf = sample();
        buf[ATTRIBUTES_OFFSET + 1] = 1;
        update_crc(&mut buf);
        assert_eq!(
            validate_batch(&buf).unwrap().compression(),
            Ok(Compression::Gzip)
        );
        buf[ATTRIBUTES_OFFSET + 1] = 6;
        update_crc(&mut buf);
        assert_eq!(
            validate_batch(&buf),
            Err(RecordError::UnsupportedCompression(6))
        );
    }
}
