//! Property tests across the builder, the validator and the reader.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

/// One record as generated: timestamp, key, value, headers.
type GenRecord = (
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

fn bytes_field() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Vec::new())),
        4 => proptest::option::of(vec(any::<u8>(), 0..200)),
    ]
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 1_600_000_000_000i64..1_900_000_000_000,
        1 => any::<i64>(),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => Just(-1i64),
    ]
}

fn record() -> impl Strategy<Value = GenRecord> {
    (
        timestamp(),
        bytes_field(),
        bytes_field(),
        vec((".{0,12}", bytes_field()), 0..4),
    )
}

fn producer() -> impl Strategy<Value = (i64, i16, i32, bool)> {
    prop_oneof![
        Just((-1i64, -1i16, -1i32, false)),
        (any::<i64>(), any::<i16>(), any::<i32>(), any::<bool>()),
    ]
}

fn build(records: &[GenRecord], prod: (i64, i16, i32, bool)) -> Bytes {
    let mut b = BatchBuilder::new()
        .producer(prod.0, prod.1, prod.2)
        .transactional(prod.3);
    for (ts, k, v, hs) in records {
        let headers: Vec<RecordHeader<'_>> = hs
            .iter()
            .map(|(k, v)| RecordHeader {
                key: k,
                value: v.as_deref(),
            })
            .collect();
        b.append(*ts, k.as_deref(), v.as_deref(), &headers);
    }
    assert_eq!(b.record_count(), records.len());
    let expected_len = b.len_bytes();
    let out = b.finish().freeze();
    assert_eq!(out.len(), expected_len);
    out
}

fn small_batch() -> impl Strategy<Value = Bytes> {
    (vec(record(), 1..6), producer()).prop_map(|(r, p)| build(&r, p))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// build -> finish -> parse -> records() is the identity.
    #[test]
    fn roundtrip(records in vec(record(), 1..50), prod in producer()) {
        let bytes = build(&records, prod);
        let batch = Batch::parse(bytes.clone()).unwrap();
        let h = *batch.header();
        prop_assert_eq!(h.total_len(), bytes.len());
        prop_assert_eq!(h.base_offset, 0);
        prop_assert_eq!(h.partition_leader_epoch, -1);
        prop_assert_eq!(h.record_count as usize, records.len());
        prop_assert_eq!(h.last_offset_delta as usize, records.len() - 1);
        prop_assert_eq!(h.base_timestamp, records[0].0);
        prop_assert_eq!(h.max_timestamp, records.iter().map(|r| r.0).max().unwrap());
        prop_assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (prod.0, prod.1, prod.2));
        prop_assert_eq!(h.is_transactional(), prod.3);
        prop_assert!(!h.is_control());
        prop_assert_eq!(h.compression(), Ok(Compression::None));

        let decoded: Vec<Record> = batch.records().unwrap().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(decoded.len(), records.len());
        for (i, (got, (ts, k, v, hs))) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(got.offset, i as i64);
            prop_assert_eq!(got.timestamp, *ts);
            prop_assert_eq!(got.attributes, 0);
            prop_assert_eq!(got.key.as_deref(), k.as_deref());
            prop_assert_eq!(got.value.as_deref(), v.as_deref());
            prop_assert_eq!(got.headers.len(), hs.len());
            for ((gk, gv), (hk, hv)) in got.headers.iter().zip(hs) {
                prop_assert_eq!(&gk[..], hk.as_bytes());
                prop_assert_eq!(gv.as_deref(), hv.as_deref());
            }
        }
    }

    /// Any single bit flip in the CRC-covered range is detected.
    #[test]
    fn bit_flip_in_crc_range_is_detected(bytes in small_batch(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut buf = bytes.to_vec();
        let at = 21 + pos.index(buf.len() - 21);
        buf[at] ^= 1 << bit;
        let r = validate_batch(&buf);
        prop_assert!(r.is_err(), "flip at byte {} bit {} accepted", at, bit);
        prop_assert!(matches!(r, Err(RecordError::CrcMismatch { .. })), "{:?}", r);
    }

    /// Any single bit flip in the stored CRC itself is detected too.
    #[test]
    fn bit_flip_in_crc_field_is_detected(bytes in small_batch(), byte in 17usize..21, bit in 0u8..8) {
        let mut buf = bytes.to_vec();
        buf[byte] ^= 1 << bit;
        let r = validate_batch(&buf);
        prop_assert!(matches!(r, Err(RecordError::CrcMismatch { .. })), "{:?}", r);
    }

    /// Rewriting the base offset keeps the batch valid and moves every record's offset.
    #[test]
    fn set_base_offset_keeps_validity(bytes in small_batch(), base in any::<i64>()) {
        let mut buf = bytes.to_vec();
        let before = validate_batch(&buf).unwrap();
        set_base_offset(&mut buf, base);
        let after = validate_batch(&buf).unwrap();
        prop_assert_eq!(after.base_offset, base);
        prop_assert_eq!(after.crc, before.crc);
        prop_assert_eq!(BatchHeader { base_offset: 0, ..after }, before);
        let batch = Batch::parse(Bytes::from(buf)).unwrap();
        for (i, r) in batch.records().unwrap().enumerate() {
            prop_assert_eq!(r.unwrap().offset, base.wrapping_add(i as i64));
        }
    }

    /// A truncated batch is an error, never a panic.
    #[test]
    fn truncation_is_an_error(bytes in small_batch(), cut in any::<prop::sample::Index>()) {
        let len = cut.index(bytes.len());
        let short = bytes.slice(..len);
        prop_assert!(validate_batch(&short).is_err());
        prop_assert!(Batch::parse(short.clone()).is_err());
        match next_batch_len(&short) {
            Ok(None) => prop_assert!(len < HEADER_LEN),
            Ok(Some(total)) => prop_assert_eq!(total, bytes.len()),
            Err(e) => prop_assert!(false, "header of a truncated batch rejected: {}", e),
        }
    }

    /// Arbitrary bytes never make the validator or the reader panic.
    #[test]
    fn garbage_never_panics(mut buf in vec(any::<u8>(), 0..300), fix_header in any::<bool>()) {
        if fix_header && buf.len() >= HEADER_LEN {
            // Make the header plausible so the record walker gets exercised.
            let len = (buf.len() - LOG_OVERHEAD) as i32;
            buf[8..12].copy_from_slice(&len.to_be_bytes());
            buf[16] = 2;
            buf[21] = 0;
            buf[22] &= 0x01; // none or gzip
            let crc = crc32c::crc32c(&buf[21..]);
            buf[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        let _ = validate_batch(&buf);
        let _ = next_batch_len(&buf);
        if let Ok(batch) = Batch::parse(Bytes::from(buf)) {
            if let Ok(it) = batch.records() {
                for r in it {
                    let _ = r;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Corrupt the records section (keeping the CRC right): the validator and the reader agree.
    /// Whatever `validate_batch` accepts, `records()` yields exactly `record_count` records.
    #[test]
    fn validator_and_reader_agree(
        bytes in small_batch(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut buf = bytes.to_vec();
        for (at, val) in edits {
            let at = HEADER_LEN + at.index(buf.len() - HEADER_LEN);
            buf[at] = val;
        }
        let crc = crc32c::crc32c(&buf[21..]);
        buf[17..21].copy_from_slice(&crc.to_be_bytes());
        match Batch::parse(Bytes::from(buf)) {
            Ok(batch) => {
                let n = batch.header().record_count as usize;
                let recs: Result<Vec<Record>, _> = batch.records().unwrap().collect();
                let recs = recs.unwrap();
                prop_assert_eq!(recs.len(), n);
            }
            Err(e) => prop_assert!(
                matches!(e, RecordError::MalformedRecord { .. } | RecordError::RecordCountMismatch { .. }),
                "{:?}", e
            ),
        }
    }
}
