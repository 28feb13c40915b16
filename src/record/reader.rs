//! Zero-copy reading of a validated batch held in a `bytes::Bytes`.

use std::io::Read;
use std::iter::FusedIterator;

use bytes::Bytes;

use super::error::RecordError;
use super::header::{validate_batch, BatchHeader, Compression, RECORDS_OFFSET};
use super::wire::{read_record, walk_records, DeltaCheck};
use super::{HEADER_LEN, MAX_BATCH_BYTES};

/// Upper bound on a decompressed records section, against decompression bombs.
const MAX_DECOMPRESSED_BYTES: usize = MAX_BATCH_BYTES;

/// One RecordBatch v2 that passed [`validate_batch`].
/// Invariant: `bytes` is exactly one valid batch and `header` is its parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    bytes: Bytes,
    header: BatchHeader,
}

/// One decoded record; byte fields are slices of the batch (or of its decompressed records).
/// Invariant: `offset = base_offset + offset_delta`, `timestamp = base_timestamp + timestamp_delta`
/// (both wrapping); header keys are the raw (UTF-8) bytes; `headers` is unallocated when empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub attributes: i8,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// Iterator over a batch's records, in order. Yields at most one `Err`, after which it is done.
/// Invariant: `data[..pos]` holds exactly `index` well-formed records whose offset deltas
/// satisfied `deltas`; `index <= expected`.
#[derive(Debug, Clone)]
pub struct RecordIter {
    data: Bytes,
    pos: usize,
    index: usize,
    expected: usize,
    header_count: i32,
    deltas: DeltaCheck,
    base_offset: i64,
    base_timestamp: i64,
    done: bool,
}

impl Batch {
    /// Validates `bytes` as exactly one batch ([`validate_batch`]) and keeps it.
    pub fn parse(bytes: Bytes) -> Result<Batch, RecordError> {
        let header = validate_batch(&bytes)?;
        Ok(Batch { bytes, header })
    }

    /// The parsed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The whole batch, as received.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Gives back the whole batch.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Iterates the records. Uncompressed: slices of the batch's `Bytes`, no copy. Gzip: the
    /// records section is decompressed once, here, and records are slices of that. Snappy, LZ4
    /// and Zstd are [`RecordError::UnsupportedCompression`].
    ///
    /// Records of compressed batches are checked while iterating (malformed records, offset
    /// deltas, count), since [`validate_batch`] does not decompress.
    pub fn records(&self) -> Result<RecordIter, RecordError> {
        let data = match self.header.compression()? {
            Compression::None => self.bytes.slice(RECORDS_OFFSET..),
            Compression::Gzip => gunzip(&self.bytes[RECORDS_OFFSET..])?,
            other => return Err(RecordError::UnsupportedCompression(other.id())),
        };
        debug_assert!(self.header.record_count >= 1);
        Ok(RecordIter {
            data,
            pos: 0,
            index: 0,
            expected: self.header.record_count as usize,
            header_count: self.header.record_count,
            deltas: DeltaCheck::new(self.header.last_offset_delta),
            base_offset: self.header.base_offset,
            base_timestamp: self.header.base_timestamp,
            done: false,
        })
    }
}

/// Decompresses a gzip records section (one or more gzip members) into one `Bytes`.
fn gunzip(compressed: &[u8]) -> Result<Bytes, RecordError> {
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(1 << 20));
    flate2::read::MultiGzDecoder::new(compressed)
        .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| RecordError::Decompress(format!("gzip: {e}")))?;
    if out.len() > MAX_DECOMPRESSED_BYTES {
        return Err(RecordError::Decompress(format!(
            "gzip: records exceed {MAX_DECOMPRESSED_BYTES} bytes"
        )));
    }
    Ok(Bytes::from(out))
}

impl RecordIter {
    fn fail(&mut self, e: RecordError) -> Option<Result<Record, RecordError>> {
        self.done = true;
        Some(Err(e))
    }
}

impl Iterator for RecordIter {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        debug_assert!(self.index <= self.expected && self.pos <= self.data.len());
        if self.pos == self.data.len() {
            self.done = true;
            if self.index == self.expected {
                return None;
            }
            return Some(Err(RecordError::RecordCountMismatch {
                header: self.header_count,
                actual: self.index,
            }));
        }
        if self.index == self.expected {
            // Bytes left over after the declared records: count them for the error.
            let e = match walk_records(&self.data, self.pos, self.index, &mut self.deltas) {
                Ok(actual) => RecordError::RecordCountMismatch {
                    header: self.header_count,
                    actual,
                },
                Err(e) => e,
            };
            return self.fail(e);
        }

        let data = &self.data;
        let mut headers = Vec::new();
        let raw = match read_record(data, self.pos, self.index, |k, v| {
            headers.push((data.slice(k), v.map(|v| data.slice(v))));
        }) {
            Ok(raw) => raw,
            Err(e) => return self.fail(e),
        };
        if let Err(e) = self.deltas.check(raw.offset_delta, self.index) {
            return self.fail(e);
        }
        let record = Record {
            offset: self.base_offset.wrapping_add(i64::from(raw.offset_delta)),
            timestamp: self.base_timestamp.wrapping_add(raw.timestamp_delta),
            attributes: raw.attributes,
            key: raw.key.map(|r| data.slice(r)),
            value: raw.value.map(|r| data.slice(r)),
            headers,
        };
        self.pos = raw.end;
        self.index += 1;
        Some(Ok(record))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            // One more item at most for a trailing error.
            (0, Some(self.expected - self.index + 1))
        }
    }
}

impl FusedIterator for RecordIter {}

/// Given a buffer starting at a batch boundary, the total length of that first batch:
/// `Ok(None)` if fewer than [`HEADER_LEN`] bytes are present, `Ok(Some(total_len))` from its
/// parsed header (magic and length checked, not the CRC), `Err` if the header is bad.
/// Used to split a stream of concatenated batches; the batch itself may not be complete yet.
pub fn next_batch_len(buf: &[u8]) -> Result<Option<usize>, RecordError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    BatchHeader::parse(buf).map(|h| Some(h.total_len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::header::{compute_crc, ATTRIBUTES_OFFSET, CRC_OFFSET};
    use crate::record::{BatchBuilder, RecordHeader};
    use bytes::{BufMut, BytesMut};
    use std::io::Write;

    fn build(n: usize) -> BytesMut {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            let v = format!("value-{i}");
            b.append(
                1_000 + i as i64,
                Some(format!("k{i}").as_bytes()),
                Some(v.as_bytes()),
                &[RecordHeader {
                    key: "h",
                    value: Some(b"x"),
                }],
            );
        }
        b.finish()
    }

    /// Re-encodes an uncompressed batch's records section with gzip.
    fn gzipped(plain: &[u8]) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&plain[HEADER_LEN..]).unwrap();
        let z = enc.finish().unwrap();
        let mut out = BytesMut::from(&plain[..HEADER_LEN]);
        out.put_slice(&z);
        let batch_length = (out.len() - 12) as i32;
        out[8..12].copy_from_slice(&batch_length.to_be_bytes());
        out[ATTRIBUTES_OFFSET + 1] |= 1;
        let crc = compute_crc(&out);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }

    #[test]
    fn uncompressed_records_are_zero_copy() {
        let bytes = build(3).freeze();
        let batch = Batch::parse(bytes.clone()).unwrap();
        assert_eq!(batch.as_bytes(), &bytes);
        let range = bytes.as_ptr_range();
        let recs: Vec<Record> = batch.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(recs.len(), 3);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.timestamp, 1_000 + i as i64);
            let v = r.value.as_ref().unwrap();
            assert_eq!(&v[..], format!("value-{i}").as_bytes());
            assert!(range.contains(&v.as_ptr()), "value was copied");
            assert!(
                range.contains(&r.headers[0].0.as_ptr()),
                "header was copied"
            );
        }
    }

    #[test]
    fn gzip_records_decode() {
        let plain = build(20);
        let z = gzipped(&plain);
        let batch = Batch::parse(z).unwrap();
        assert_eq!(batch.header().compression(), Ok(Compression::Gzip));
        let a: Vec<Record> = batch.records().unwrap().map(Result::unwrap).collect();
        let b: Vec<Record> = Batch::parse(plain.freeze())
            .unwrap()
            .records()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_gzip_is_decompress_error() {
        let plain = build(2);
        let mut z = BytesMut::from(&gzipped(&plain)[..]);
        let mid = HEADER_LEN + 12;
        z[mid] ^= 0xff;
        let crc = compute_crc(&z);
        z[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        let batch = Batch::parse(z.freeze()).unwrap(); // hot path does not decompress
        match batch.records() {
            Err(RecordError::Decompress(_)) => {}
            Ok(mut it) => assert!(it.any(|r| r.is_err())),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn compressed_count_mismatch_found_while_iterating() {
        let plain = build(3);
        let mut z = BytesMut::from(&gzipped(&plain)[..]);
        z[57..61].copy_from_slice(&2i32.to_be_bytes());
        let crc = compute_crc(&z);
        z[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        let batch = Batch::parse(z.freeze()).unwrap();
        let items: Vec<_> = batch.records().unwrap().collect();
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        assert_eq!(
            items[2],
            Err(RecordError::RecordCountMismatch {
                header: 2,
                actual: 3
            })
        );

        let mut z = BytesMut::from(&gzipped(&plain)[..]);
        z[57..61].copy_from_slice(&4i32.to_be_bytes());
        z[23..27].copy_from_slice(&3i32.to_be_bytes());
        let crc = compute_crc(&z);
        z[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        let items: Vec<_> = Batch::parse(z.freeze())
            .unwrap()
            .records()
            .unwrap()
            .collect();
        assert_eq!(items.len(), 4);
        assert_eq!(
            items[3],
            Err(RecordError::RecordCountMismatch {
                header: 4,
                actual: 3
            })
        );
    }

    #[test]
    fn other_codecs_unsupported_for_reading() {
        for id in 2u8..=4 {
            let mut b = build(1);
            b[ATTRIBUTES_OFFSET + 1] = id;
            let crc = compute_crc(&b);
            b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
            let batch = Batch::parse(b.freeze()).unwrap();
            assert_eq!(
                batch.records().err(),
                Some(RecordError::UnsupportedCompression(id))
            );
        }
    }

    #[test]
    fn no_headers_means_no_allocation() {
        let mut b = BatchBuilder::new();
        b.append(0, None, None, &[]);
        let batch = Batch::parse(b.finish().freeze()).unwrap();
        let r = batch.records().unwrap().next().unwrap().unwrap();
        assert_eq!(r.headers.capacity(), 0);
        assert_eq!((r.key, r.value), (None, None));
    }

    #[test]
    fn splits_concatenated_batches() {
        let mut stream = BytesMut::new();
        let sizes: Vec<usize> = (1..=4)
            .map(|n| {
                let b = build(n);
                stream.put_slice(&b);
                b.len()
            })
            .collect();
        let stream = stream.freeze();
        let mut pos = 0;
        let mut found = Vec::new();
        while let Some(len) = next_batch_len(&stream[pos..]).unwrap() {
            let batch = Batch::parse(stream.slice(pos..pos + len)).unwrap();
            assert_eq!(batch.header().record_count as usize, found.len() + 1);
            found.push(len);
            pos += len;
        }
        assert_eq!(found, sizes);
        assert_eq!(pos, stream.len());
        assert_eq!(next_batch_len(&stream[..HEADER_LEN - 1]), Ok(None));
        let mut bad = stream[..HEADER_LEN].to_vec();
        bad[16] = 1;
        assert_eq!(next_batch_len(&bad), Err(RecordError::BadMagic(1)));
    }
}
