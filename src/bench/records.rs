//! The records the load generator sends: one encoded batch of `--batch-records` records, built
//! once and sent as the same `Bytes` for every request, or — when each send must carry its
//! timestamp (end-to-end latency) — stamped in place into a reused buffer: the first 8 bytes of
//! every value get the send time and the batch's CRC is rewritten. Nothing is allocated per
//! record, and nothing per request once the buffer is back from the socket.

use bytes::{Bytes, BytesMut};

use crate::record::{update_crc, Batch, BatchBuilder};

use super::error::{BenchError, Result};

/// Bytes at the start of each value holding the send stamp (`now_ns`, little-endian u64).
pub const STAMP_BYTES: usize = 8;
/// Largest batch the load generator builds: under the broker's 16 MiB default frame limit with
/// room for the frame header.
pub const MAX_BATCH_BYTES: usize = 15 << 20;

/// The send stamp in a record value, if it is long enough to hold one.
pub fn read_stamp(value: &[u8]) -> Option<u64> {
    let head: [u8; STAMP_BYTES] = value.get(..STAMP_BYTES)?.try_into().ok()?;
    Some(u64::from_le_bytes(head))
}

/// An encoded batch and where each record's stamp goes. Invariant: `stamp_at` holds one offset
/// per record, each the first byte of that record's value, which is at least `STAMP_BYTES` long
/// when stamping is possible; `bytes` is a valid batch.
pub struct BatchTemplate {
    bytes: Bytes,
    stamp_at: Vec<usize>,
    records: u64,
    value_bytes: u64,
    /// The buffer of the previous stamped batch, reused once the socket is done with it.
    spare: Option<Bytes>,
}

impl BatchTemplate {
    /// `records` records of `record_bytes` value bytes each, no key, stamped with the current
    /// wall-clock time as record timestamp.
    pub fn new(records: usize, record_bytes: usize) -> Result<BatchTemplate> {
        if records == 0 {
            return Err(BenchError::Invalid(
                "--batch-records must be at least 1".into(),
            ));
        }
        let value: Vec<u8> = (0..record_bytes)
            .map(|i| (i.wrapping_mul(131) % 251) as u8)
            .collect();
        let ts = crate::clock::now_ms();
        let mut b = BatchBuilder::with_capacity(records * (record_bytes + 16) + 128);
        for _ in 0..records {
            b.append(ts, None, Some(&value), &[]);
            if b.len_bytes() > MAX_BATCH_BYTES {
                return Err(BenchError::Invalid(format!(
                    "{records} records of {record_bytes} B make a batch over {} MiB: lower --batch-records",
                    MAX_BATCH_BYTES >> 20
                )));
            }
        }
        let bytes = b.finish().freeze();
        let batch = Batch::parse(bytes.clone())
            .map_err(|e| BenchError::Invalid(format!("built a bad batch: {e}")))?;
        let base = bytes.as_ptr() as usize;
        let mut stamp_at = Vec::with_capacity(records);
        let iter = batch
            .records()
            .map_err(|e| BenchError::Invalid(format!("built a bad batch: {e}")))?;
        for r in iter {
            let r = r.map_err(|e| BenchError::Invalid(format!("built a bad batch: {e}")))?;
            let v = r.value.expect("every record has a value");
            stamp_at.push(v.as_ptr() as usize - base);
        }
        Ok(BatchTemplate {
            bytes,
            stamp_at,
            records: records as u64,
            value_bytes: (records * record_bytes) as u64,
            spare: None,
        })
    }

    /// The batch as built (every request may send this same `Bytes`).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Value bytes of all records (what the report's MB/s counts).
    pub fn value_bytes(&self) -> u64 {
        self.value_bytes
    }

    /// Whether values are long enough to carry a stamp.
    pub fn can_stamp(&self, record_bytes: usize) -> bool {
        record_bytes >= STAMP_BYTES
    }

    /// The batch with `stamp_ns` in the first bytes of every value and a fresh CRC. Reuses the
    /// previous call's buffer when nothing holds it any more (the socket copied it).
    pub fn stamped(&mut self, stamp_ns: u64) -> Bytes {
        let mut buf = match self.spare.take().map(Bytes::try_into_mut) {
            Some(Ok(mut b)) => {
                b.clear();
                b
            }
            _ => BytesMut::with_capacity(self.bytes.len()),
        };
        buf.extend_from_slice(&self.bytes);
        let stamp = stamp_ns.to_le_bytes();
        for &at in &self.stamp_at {
            buf[at..at + STAMP_BYTES].copy_from_slice(&stamp);
        }
        update_crc(&mut buf);
        let out = buf.freeze();
        self.spare = Some(out.clone());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::validate_batch;

    #[test]
    fn stamped_batches_are_valid_and_carry_the_stamp_in_every_value() {
        let mut t = BatchTemplate::new(50, 100).unwrap();
        assert_eq!((t.records(), t.value_bytes()), (50, 5_000));
        validate_batch(t.bytes()).unwrap();
        for stamp in [7u64, u64::MAX - 3] {
            let b = t.stamped(stamp);
            validate_batch(&b).unwrap();
            let batch = Batch::parse(b.clone()).unwrap();
            let values: Vec<Bytes> = batch
                .records()
                .unwrap()
                .map(|r| r.unwrap().value.unwrap())
                .collect();
            assert_eq!(values.len(), 50);
            assert!(values
                .iter()
                .all(|v| read_stamp(v) == Some(stamp) && v.len() == 100));
        }
    }

    #[test]
    fn the_stamp_buffer_is_reused_once_released() {
        let mut t = BatchTemplate::new(4, 64).unwrap();
        let first = t.stamped(1);
        let ptr = first.as_ptr();
        drop(first);
        assert_eq!(t.stamped(2).as_ptr(), ptr, "the released buffer is reused");
        let held = t.stamped(3);
        let next = t.stamped(4);
        assert_ne!(
            held.as_ptr(),
            next.as_ptr(),
            "a held buffer is never overwritten"
        );
        assert_eq!(read_stamp(&held[t.stamp_at[0]..]), Some(3));
    }

    #[test]
    fn oversized_batches_and_empty_ones_are_refused() {
        assert!(BatchTemplate::new(0, 10).is_err());
        assert!(BatchTemplate::new(2_000, 16 << 10).is_err());
        assert_eq!(read_stamp(b"short"), None);
    }
}
