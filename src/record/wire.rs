//! Decoding of the individual records inside an (uncompressed) records section.
//!
//! Shared by [`super::validate_batch`] (walks and discards, no allocation) and
//! [`super::RecordIter`] (slices the fields out of a `Bytes`). Positions are absolute indices
//! into the records section handed in, so the reader can slice its `Bytes` without copying.

use std::ops::Range;

use super::error::RecordError;
use super::varint::{get_varint, get_varlong};

/// Offset-delta rules for the records of one batch: non-negative, strictly increasing,
/// at most `lastOffsetDelta`.
/// Invariant: `prev`, when set, is the delta of the last record accepted and is `<= last_offset_delta`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeltaCheck {
    prev: Option<i32>,
    last_offset_delta: i32,
}

impl DeltaCheck {
    pub(crate) fn new(last_offset_delta: i32) -> DeltaCheck {
        DeltaCheck {
            prev: None,
            last_offset_delta,
        }
    }

    /// Accepts record `index`'s offset delta, or says why it breaks the rules.
    pub(crate) fn check(&mut self, delta: i32, index: usize) -> Result<(), RecordError> {
        let reason = if delta < 0 {
            "negative offset delta"
        } else if self.prev.is_some_and(|p| delta <= p) {
            "offset deltas not strictly increasing"
        } else if delta > self.last_offset_delta {
            "offset delta exceeds the batch's last offset delta"
        } else {
            self.prev = Some(delta);
            return Ok(());
        };
        Err(RecordError::MalformedRecord { index, reason })
    }
}

/// The fixed fields of one decoded record and where its variable parts lie.
/// Invariant: every range lies within `start..end` of the section it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawRecord {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Range<usize>>,
    pub value: Option<Range<usize>>,
    /// Position just past this record (where the next one starts).
    pub end: usize,
}

/// A read position bounded by the end of the current record.
/// Invariant: `pos <= end <= buf.len()`.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    index: usize,
}

impl Cursor<'_> {
    fn fail<T>(&self, reason: &'static str) -> Result<T, RecordError> {
        Err(RecordError::MalformedRecord {
            index: self.index,
            reason,
        })
    }

    fn i8(&mut self, reason: &'static str) -> Result<i8, RecordError> {
        if self.pos >= self.end {
            return self.fail(reason);
        }
        let b = self.buf[self.pos] as i8;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self, reason: &'static str) -> Result<i32, RecordError> {
        match get_varint(&self.buf[self.pos..self.end]) {
            Ok((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            Err(_) => self.fail(reason),
        }
    }

    fn varlong(&mut self, reason: &'static str) -> Result<i64, RecordError> {
        match get_varlong(&self.buf[self.pos..self.end]) {
            Ok((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            Err(_) => self.fail(reason),
        }
    }

    /// `len` bytes starting here, as a range; `len` must be non-negative.
    fn take(&mut self, len: i32, reason: &'static str) -> Result<Range<usize>, RecordError> {
        debug_assert!(len >= 0);
        let len = len as usize;
        if len > self.end - self.pos {
            return self.fail(reason);
        }
        let r = self.pos..self.pos + len;
        self.pos += len;
        Ok(r)
    }

    /// A length-prefixed byte field where length -1 means null.
    fn nullable_bytes(
        &mut self,
        bad_len: &'static str,
        past_end: &'static str,
    ) -> Result<Option<Range<usize>>, RecordError> {
        match self.varint(bad_len)? {
            -1 => Ok(None),
            n if n < -1 => self.fail(bad_len),
            n => self.take(n, past_end).map(Some),
        }
    }
}

/// Decodes the record starting at `buf[start..]` (record number `index`, for errors), calling
/// `on_header(key_range, value_range)` for each of its headers in order.
pub(crate) fn read_record<F>(
    buf: &[u8],
    start: usize,
    index: usize,
    mut on_header: F,
) -> Result<RawRecord, RecordError>
where
    F: FnMut(Range<usize>, Option<Range<usize>>),
{
    debug_assert!(start <= buf.len());
    let malformed = |reason| RecordError::MalformedRecord { index, reason };
    let (length, used) =
        get_varint(&buf[start..]).map_err(|_| malformed("invalid record length varint"))?;
    if length < 0 {
        return Err(malformed("negative record length"));
    }
    let body = start + used;
    if length as usize > buf.len() - body {
        return Err(malformed("record length exceeds the records section"));
    }
    let end = body + length as usize;
    let mut c = Cursor {
        buf,
        pos: body,
        end,
        index,
    };
    let attributes = c.i8("record too short for its attributes")?;
    let timestamp_delta = c.varlong("invalid timestamp delta varlong")?;
    let offset_delta = c.varint("invalid offset delta varint")?;
    let key = c.nullable_bytes("invalid key length", "key extends past record end")?;
    let value = c.nullable_bytes("invalid value length", "value extends past record end")?;
    let header_count = c.varint("invalid header count varint")?;
    if header_count < 0 {
        return c.fail("negative header count");
    }
    for _ in 0..header_count {
        let key_len = c.varint("invalid header key length varint")?;
        if key_len < 0 {
            return c.fail("negative header key length");
        }
        let hkey = c.take(key_len, "header key extends past record end")?;
        let hvalue = c.nullable_bytes(
            "invalid header value length",
            "header value extends past record end",
        )?;
        on_header(hkey, hvalue);
    }
    if c.pos != end {
        return c.fail("record length does not match its fields");
    }
    Ok(RawRecord {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        end,
    })
}

/// Walks records from `buf[start..]` to the end of `buf`, checking each one and its offset delta.
/// `first_index` is the number of records before `start`; returns that plus the number walked.
pub(crate) fn walk_records(
    buf: &[u8],
    start: usize,
    first_index: usize,
    deltas: &mut DeltaCheck,
) -> Result<usize, RecordError> {
    let mut pos = start;
    let mut index = first_index;
    while pos < buf.len() {
        let rec = read_record(buf, pos, index, |_, _| {})?;
        deltas.check(rec.offset_delta, index)?;
        debug_assert!(rec.end > pos);
        pos = rec.end;
        index += 1;
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::varint::{put_varint, put_varlong};

    /// Encodes a record field by field (with a caller-chosen length prefix).
    fn body(offset_delta: i32, key: Option<&[u8]>, headers: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
        let mut b = vec![0u8];
        put_varlong(&mut b, -5);
        put_varint(&mut b, offset_delta);
        match key {
            None => put_varint(&mut b, -1),
            Some(k) => {
                put_varint(&mut b, k.len() as i32);
                b.extend_from_slice(k);
            }
        }
        put_varint(&mut b, 2);
        b.extend_from_slice(b"vv");
        put_varint(&mut b, headers.len() as i32);
        for (k, v) in headers {
            put_varint(&mut b, k.len() as i32);
            b.extend_from_slice(k);
            match v {
                None => put_varint(&mut b, -1),
                Some(v) => {
                    put_varint(&mut b, v.len() as i32);
                    b.extend_from_slice(v);
                }
            }
        }
        b
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        put_varint(&mut b, body.len() as i32);
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn reads_fields_and_headers() {
        let rec = framed(&body(
            3,
            Some(b"key"),
            &[(b"h1", Some(b"x")), (b"h2", None)],
        ));
        let mut seen = Vec::new();
        let raw = read_record(&rec, 0, 0, |k, v| seen.push((k, v))).unwrap();
        assert_eq!(raw.attributes, 0);
        assert_eq!(raw.timestamp_delta, -5);
        assert_eq!(raw.offset_delta, 3);
        assert_eq!(&rec[raw.key.clone().unwrap()], b"key");
        assert_eq!(&rec[raw.value.clone().unwrap()], b"vv");
        assert_eq!(raw.end, rec.len());
        assert_eq!(seen.len(), 2);
        assert_eq!(&rec[seen[0].0.clone()], b"h1");
        assert_eq!(&rec[seen[0].1.clone().unwrap()], b"x");
        assert_eq!(&rec[seen[1].0.clone()], b"h2");
        assert_eq!(seen[1].1, None);
    }

    fn reason(buf: &[u8]) -> &'static str {
        match read_record(buf, 0, 7, |_, _| {}) {
            Err(RecordError::MalformedRecord { index: 7, reason }) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_malformed_records() {
        let good = body(0, None, &[]);
        // Length prefix larger than what is there.
        let mut b = Vec::new();
        put_varint(&mut b, good.len() as i32 + 1);
        b.extend_from_slice(&good);
        assert_eq!(reason(&b), "record length exceeds the records section");
        // Length prefix smaller than the fields.
        let mut b = Vec::new();
        put_varint(&mut b, good.len() as i32 - 1);
        b.extend_from_slice(&good[..good.len() - 1]);
        assert!(reason(&b).contains("header count"), "{}", reason(&b));
        // Length prefix with slack after the fields.
        let mut padded = good.clone();
        padded.push(0);
        assert_eq!(
            reason(&framed(&padded)),
            "record length does not match its fields"
        );
        assert_eq!(reason(&[0x01]), "negative record length");
        assert_eq!(reason(&[0x80]), "invalid record length varint");
        assert_eq!(reason(&[0x00]), "record too short for its attributes");
        // Key length -2.
        let mut b = vec![0u8, 0, 0];
        put_varint(&mut b, -2);
        assert_eq!(reason(&framed(&b)), "invalid key length");
        // Key longer than the record.
        let mut b = vec![0u8, 0, 0];
        put_varint(&mut b, 10);
        assert_eq!(reason(&framed(&b)), "key extends past record end");
        // Negative header count.
        let mut b = vec![0u8, 0, 0, 1, 1];
        put_varint(&mut b, -1);
        assert_eq!(reason(&framed(&b)), "negative header count");
        // Null header key.
        let mut b = vec![0u8, 0, 0, 1, 1, 2];
        put_varint(&mut b, -1);
        assert_eq!(reason(&framed(&b)), "negative header key length");
    }

    #[test]
    fn delta_rules() {
        let mut d = DeltaCheck::new(5);
        assert!(d.check(0, 0).is_ok());
        assert!(d.check(2, 1).is_ok());
        assert!(matches!(
            d.check(2, 2),
            Err(RecordError::MalformedRecord { index: 2, .. })
        ));
        assert!(d.check(6, 2).is_err());
        assert!(d.check(5, 2).is_ok());
        assert!(DeltaCheck::new(5).check(-1, 0).is_err());
    }

    #[test]
    fn walk_counts_records() {
        let mut section = framed(&body(0, None, &[]));
        section.extend(framed(&body(1, Some(b""), &[(b"", Some(b""))])));
        assert_eq!(walk_records(&section, 0, 0, &mut DeltaCheck::new(1)), Ok(2));
        assert_eq!(walk_records(&[], 0, 0, &mut DeltaCheck::new(1)), Ok(0));
        assert!(walk_records(&section, 0, 0, &mut DeltaCheck::new(0)).is_err());
    }
}
