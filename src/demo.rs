//! Deterministic record batches for `strata log-demo`, the crash tests and the benchmarks: batch
//! `index` always has the same bytes, so a checker can regenerate what a writer appended.

use bytes::BytesMut;

use crate::record::BatchBuilder;

/// Timestamp of batch 0 (2024-11-24T00:00:00Z); batch `i` is stamped `DEMO_EPOCH_MS + i`.
pub const DEMO_EPOCH_MS: i64 = 1_732_406_400_000;

/// Batch number `index`: `records` records of `record_bytes` value bytes each, keyed
/// `key-<index>-<n>`, with base offset 0 (the log assigns the real one).
pub fn demo_batch(index: u64, records: usize, record_bytes: usize) -> BytesMut {
    assert!(records > 0, "a batch holds at least one record");
    let mut b = BatchBuilder::with_capacity(records * (record_bytes + 32) + 64);
    let mut value = vec![0u8; record_bytes];
    let mut key = String::new();
    for n in 0..records {
        fill_value(&mut value, index, n as u64);
        key.clear();
        use std::fmt::Write;
        let _ = write!(key, "key-{index}-{n}");
        b.append(
            DEMO_EPOCH_MS + index as i64,
            Some(key.as_bytes()),
            Some(&value),
            &[],
        );
    }
    b.finish()
}

/// Cheap deterministic bytes (xorshift) so batches differ and CRCs mean something.
fn fill_value(out: &mut [u8], index: u64, n: u64) {
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ n.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::validate_batch;

    #[test]
    fn demo_batches_are_deterministic_and_valid() {
        let a = demo_batch(7, 10, 100);
        assert_eq!(a, demo_batch(7, 10, 100));
        assert_ne!(a, demo_batch(8, 10, 100));
        let h = validate_batch(&a).unwrap();
        assert_eq!(h.record_count, 10);
        assert_eq!(h.max_timestamp, DEMO_EPOCH_MS + 7);
    }
}
