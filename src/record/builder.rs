//! Encoding a RecordBatch v2 (uncompressed) straight into a `BytesMut`.

use bytes::{BufMut, BytesMut};

use super::header::{
    compute_crc, validate_batch, ATTRIBUTES_OFFSET, BASE_OFFSET_OFFSET, BASE_SEQUENCE_OFFSET,
    BASE_TIMESTAMP_OFFSET, BATCH_LENGTH_OFFSET, CRC_OFFSET, LAST_OFFSET_DELTA_OFFSET, MAGIC_OFFSET,
    MAX_TIMESTAMP_OFFSET, PARTITION_LEADER_EPOCH_OFFSET, PRODUCER_EPOCH_OFFSET, PRODUCER_ID_OFFSET,
    RECORDS_COUNT_OFFSET, TRANSACTIONAL_BIT,
};
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};
use super::{HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, MAX_BATCH_BYTES};

/// Capacity [`BatchBuilder::new`] starts with.
const DEFAULT_CAPACITY: usize = 1024;
/// Partition leader epoch written by [`BatchBuilder::finish`] (Kafka's "no epoch").
const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// Producer id, epoch and base sequence of a batch from a non-idempotent producer.
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;
const NO_SEQUENCE: i32 = -1;

/// One record header to append: a UTF-8 key and a nullable value.
/// Invariant: none beyond the borrow; lengths are checked (`<= i32::MAX`) when appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader<'a> {
    pub key: &'a str,
    pub value: Option<&'a [u8]>,
}

/// Builds one uncompressed RecordBatch v2, appending each record's encoding to a `BytesMut`.
/// Invariant: `buf` holds a `HEADER_LEN`-byte placeholder followed by exactly `record_count`
/// encoded records with offset deltas `0..record_count`; `base_timestamp`/`max_timestamp` are the
/// first and the largest appended timestamps (meaningless while empty).
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    record_count: usize,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new()
    }
}

/// Length of an optional field as written on the wire (-1 for null).
fn wire_len(field: Option<&[u8]>) -> i32 {
    match field {
        None => -1,
        Some(b) => i32::try_from(b.len()).expect("record field longer than i32::MAX bytes"),
    }
}

fn put_nullable<B: BufMut>(buf: &mut B, len: i32, field: Option<&[u8]>) {
    put_varint(buf, len);
    if let Some(b) = field {
        buf.put_slice(b);
    }
}

impl BatchBuilder {
    /// An empty builder with a small default capacity.
    pub fn new() -> Self {
        BatchBuilder::with_capacity(DEFAULT_CAPACITY)
    }

    /// An empty builder whose buffer can hold `bytes` bytes (header included) before growing.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(bytes.max(HEADER_LEN));
        buf.put_bytes(0, HEADER_LEN);
        BatchBuilder {
            buf,
            record_count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional: false,
        }
    }

    /// Sets the idempotent-producer fields (defaults: -1, -1, -1).
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch transactional (attributes bit 4).
    pub fn transactional(mut self, yes: bool) -> Self {
        self.transactional = yes;
        self
    }

    /// Appends one record with the next offset delta (0, 1, 2, …). The first record's timestamp
    /// becomes the batch's base timestamp; the largest one its max timestamp.
    ///
    /// Panics if a key, value or header is longer than `i32::MAX` bytes, or after `i32::MAX` records.
    pub fn append(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader<'_>],
    ) {
        let offset_delta =
            i32::try_from(self.record_count).expect("more than i32::MAX records in one batch");
        if self.record_count == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        } else {
            self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        }
        // Wrapping, like the reader's base + delta, so every i64 timestamp round-trips.
        let timestamp_delta = timestamp_ms.wrapping_sub(self.base_timestamp);
        let key_len = wire_len(key);
        let value_len = wire_len(value);
        let header_count = i32::try_from(headers.len()).expect("too many headers");

        let mut body = 1 // attributes
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta)
            + varint_len(key_len)
            + key.map_or(0, <[u8]>::len)
            + varint_len(value_len)
            + value.map_or(0, <[u8]>::len)
            + varint_len(header_count);
        for h in headers {
            let hk = wire_len(Some(h.key.as_bytes()));
            let hv = wire_len(h.value);
            body += varint_len(hk) + h.key.len() + varint_len(hv) + h.value.map_or(0, <[u8]>::len);
        }
        let body_len = i32::try_from(body).expect("record longer than i32::MAX bytes");

        self.buf.reserve(varint_len(body_len) + body);
        put_varint(&mut self.buf, body_len);
        let body_start = self.buf.len();
        self.buf.put_i8(0); // record attributes: unused in v2
        put_varlong(&mut self.buf, timestamp_delta);
        put_varint(&mut self.buf, offset_delta);
        put_nullable(&mut self.buf, key_len, key);
        put_nullable(&mut self.buf, value_len, value);
        put_varint(&mut self.buf, header_count);
        for h in headers {
            put_nullable(&mut self.buf, h.key.len() as i32, Some(h.key.as_bytes()));
            put_nullable(&mut self.buf, wire_len(h.value), h.value);
        }
        debug_assert_eq!(self.buf.len() - body_start, body);
        self.record_count += 1;
    }

    /// Number of records appended so far.
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// True until the first [`append`](Self::append).
    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Size of the batch [`finish`](Self::finish) would return, header included.
    pub fn len_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Fills in the header (base offset 0, partition leader epoch -1, lengths, counts, timestamps,
    /// producer fields, attributes, CRC) and returns the finished batch.
    ///
    /// Panics if no record was appended, or if the batch exceeds [`MAX_BATCH_BYTES`].
    pub fn finish(self) -> BytesMut {
        assert!(
            self.record_count > 0,
            "BatchBuilder::finish: a batch needs at least one record"
        );
        let mut buf = self.buf;
        let batch_length = buf.len() - LOG_OVERHEAD;
        assert!(
            batch_length <= MAX_BATCH_BYTES,
            "BatchBuilder::finish: batch length {batch_length} exceeds {MAX_BATCH_BYTES}"
        );
        let attributes: i16 = if self.transactional {
            TRANSACTIONAL_BIT
        } else {
            0
        };
        let put = |buf: &mut BytesMut, at: usize, bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
        };
        put(&mut buf, BASE_OFFSET_OFFSET, &0i64.to_be_bytes());
        put(
            &mut buf,
            BATCH_LENGTH_OFFSET,
            &(batch_length as i32).to_be_bytes(),
        );
        put(
            &mut buf,
            PARTITION_LEADER_EPOCH_OFFSET,
            &NO_PARTITION_LEADER_EPOCH.to_be_bytes(),
        );
        put(&mut buf, MAGIC_OFFSET, &MAGIC_V2.to_be_bytes());
        put(&mut buf, ATTRIBUTES_OFFSET, &attributes.to_be_bytes());
        put(
            &mut buf,
            LAST_OFFSET_DELTA_OFFSET,
            &(self.record_count as i32 - 1).to_be_bytes(),
        );
        put(
            &mut buf,
            BASE_TIMESTAMP_OFFSET,
            &self.base_timestamp.to_be_bytes(),
        );
        put(
            &mut buf,
            MAX_TIMESTAMP_OFFSET,
            &self.max_timestamp.to_be_bytes(),
        );
        put(
            &mut buf,
            PRODUCER_ID_OFFSET,
            &self.producer_id.to_be_bytes(),
        );
        put(
            &mut buf,
            PRODUCER_EPOCH_OFFSET,
            &self.producer_epoch.to_be_bytes(),
        );
        put(
            &mut buf,
            BASE_SEQUENCE_OFFSET,
            &self.base_sequence.to_be_bytes(),
        );
        put(
            &mut buf,
            RECORDS_COUNT_OFFSET,
            &(self.record_count as i32).to_be_bytes(),
        );
        let crc = compute_crc(&buf);
        put(&mut buf, CRC_OFFSET, &crc.to_be_bytes());
        debug_assert_eq!(validate_batch(&buf).map(|h| h.crc), Ok(crc));
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Batch, BatchHeader};

    #[test]
    fn single_record_matches_hand_encoding() {
        let mut b = BatchBuilder::new();
        assert!(b.is_empty());
        assert_eq!(b.len_bytes(), HEADER_LEN);
        b.append(1_732_406_400_000, None, Some(b"hello"), &[]);
        assert_eq!(b.record_count(), 1);
        let len = b.len_bytes();
        let out = b.finish();
        assert_eq!(out.len(), len);
        // length 11 (zigzag 0x16), attrs, ts delta 0, offset delta 0, key -1, value 5 "hello", 0 headers
        assert_eq!(
            &out[HEADER_LEN..],
            &[0x16, 0, 0, 0, 0x01, 0x0a, b'h', b'e', b'l', b'l', b'o', 0][..]
        );
        let h = BatchHeader::parse(&out).unwrap();
        assert_eq!(h.partition_leader_epoch, -1);
        assert_eq!(h.base_offset, 0);
        assert_eq!(h.batch_length as usize, out.len() - LOG_OVERHEAD);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (-1, -1, -1)
        );
    }

    #[test]
    fn header_fields() {
        let mut b = BatchBuilder::with_capacity(0)
            .producer(42, 7, 100)
            .transactional(true);
        b.append(50, Some(b"a"), None, &[]);
        b.append(10, None, None, &[]);
        b.append(70, None, None, &[]);
        b.append(60, None, None, &[]);
        let h = validate_batch(&b.finish()).unwrap();
        assert_eq!(h.base_timestamp, 50);
        assert_eq!(h.max_timestamp, 70);
        assert_eq!(h.last_offset_delta, 3);
        assert_eq!(h.record_count, 4);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (42, 7, 100)
        );
        assert!(h.is_transactional());
        assert!(!h.is_control());
    }

    #[test]
    fn headers_roundtrip() {
        let mut b = BatchBuilder::default();
        b.append(
            5,
            Some(b""),
            Some(b""),
            &[
                RecordHeader {
                    key: "trace",
                    value: Some(b"abc"),
                },
                RecordHeader {
                    key: "",
                    value: None,
                },
                RecordHeader {
                    key: "é",
                    value: Some(b""),
                },
            ],
        );
        let batch = Batch::parse(b.finish().freeze()).unwrap();
        let recs: Vec<_> = batch.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.key.as_deref(), Some(&b""[..]));
        assert_eq!(r.value.as_deref(), Some(&b""[..]));
        assert_eq!(r.headers.len(), 3);
        assert_eq!(&r.headers[0].0[..], b"trace");
        assert_eq!(r.headers[0].1.as_deref(), Some(&b"abc"[..]));
        assert_eq!(&r.headers[1].0[..], b"");
        assert_eq!(r.headers[1].1, None);
        assert_eq!(&r.headers[2].0[..], "é".as_bytes());
        assert_eq!(r.headers[2].1.as_deref(), Some(&b""[..]));
    }

    #[test]
    #[should_panic(expected = "at least one record")]
    fn finish_empty_panics() {
        let _ = BatchBuilder::new().finish();
    }
}
