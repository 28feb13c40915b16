//! The one error type of the record codec.

/// Why a byte slice is not an acceptable RecordBatch v2 (or why its records cannot be read).
/// Invariant: every variant carries enough context to log without the offending bytes.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than the fixed-size part being read.
    #[error("too short: need {need} bytes, have {have}")]
    TooShort { need: usize, have: usize },

    /// The magic byte is not 2; only RecordBatch v2 is supported.
    #[error("bad magic: expected 2, found {0}")]
    BadMagic(i8),

    /// `batchLength` is outside the sane range `[min, max]`.
    #[error("batch length {length} out of range [{min}, {max}]")]
    LengthOutOfRange { length: i64, min: usize, max: usize },

    /// The slice is not exactly one batch: the header says `header` bytes in total, the slice has `actual`.
    #[error("length mismatch: header says {header} bytes, slice has {actual}")]
    LengthMismatch { header: usize, actual: usize },

    /// The stored CRC-32C does not match the one computed over bytes `[21..]`.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },

    /// `recordsCount` disagrees with the number of records actually present.
    #[error("record count mismatch: header says {header}, found {actual}")]
    RecordCountMismatch { header: i32, actual: usize },

    /// `lastOffsetDelta` cannot cover `recordsCount` strictly increasing offset deltas
    /// (it is negative or smaller than `recordsCount - 1`).
    #[error("last offset delta {last_offset_delta} cannot cover {record_count} records")]
    OffsetDeltaOutOfRange {
        last_offset_delta: i32,
        record_count: i32,
    },

    /// The batch declares zero (or a negative number of) records.
    #[error("empty batch: record count must be at least 1")]
    Empty,

    /// Record number `index` (0-based, in batch order) is not well-formed.
    #[error("malformed record {index}: {reason}")]
    MalformedRecord { index: usize, reason: &'static str },

    /// The compression codec id (attributes bits 0-2) is unknown, or known but not supported here.
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(u8),

    /// Decompressing the records section failed.
    #[error("decompression failed: {0}")]
    Decompress(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_precise_and_lowercase() {
        let e = RecordError::CrcMismatch {
            stored: 0x1234_abcd,
            computed: 0x0000_00ff,
        };
        assert_eq!(
            e.to_string(),
            "crc mismatch: stored 0x1234abcd, computed 0x000000ff"
        );
        assert_eq!(
            RecordError::TooShort { need: 61, have: 3 }.to_string(),
            "too short: need 61 bytes, have 3"
        );
        assert_eq!(
            RecordError::BadMagic(1).to_string(),
            "bad magic: expected 2, found 1"
        );
        assert_eq!(
            RecordError::MalformedRecord {
                index: 4,
                reason: "key extends past record end"
            }
            .to_string(),
            "malformed record 4: key extends past record end"
        );
        assert_eq!(
            RecordError::UnsupportedCompression(5).to_string(),
            "unsupported compression codec 5"
        );
        for e in [
            RecordError::Empty,
            RecordError::LengthMismatch {
                header: 1,
                actual: 2,
            },
            RecordError::RecordCountMismatch {
                header: 1,
                actual: 2,
            },
            RecordError::LengthOutOfRange {
                length: -1,
                min: 49,
                max: 100,
            },
            RecordError::Decompress("x".into()),
        ] {
            let s = e.to_string();
            let first = s.chars().next().unwrap();
            assert!(first.is_lowercase(), "{s}");
        }
    }
}
