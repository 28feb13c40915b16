//! Checks the record codec against RecordBatch v2 vectors written by a real Kafka client
//! (kafka-python's `DefaultRecordBatchBuilder`): `tests/data/kafka-record-batch-v2/`.

use std::path::PathBuf;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use strata::record::{
    set_base_offset, validate_batch, Batch, BatchBuilder, Compression, Record, RecordHeader,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    generator: String,
    #[allow(dead_code)]
    note: String,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    file: String,
    bytes: usize,
    base_offset: i64,
    crc: u32,
    attributes_compression: u8,
    is_transactional: bool,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: usize,
    first_timestamp: i64,
    max_timestamp: i64,
    last_offset_delta: i32,
    /// Kept as JSON: a value is either `value` (base64 or null) or `value_len` + `value_sha256`.
    records: Vec<Value>,
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/kafka-record-batch-v2")
}

fn load() -> Cases {
    let text = std::fs::read_to_string(data_dir().join("cases.json")).expect("read cases.json");
    serde_json::from_str(&text).expect("parse cases.json")
}

fn read_bin(case: &Case) -> Bytes {
    Bytes::from(std::fs::read(data_dir().join(&case.file)).expect("read .bin"))
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("valid base64")
}

/// A nullable base64 field: JSON null -> None.
fn nullable_b64(v: &Value, what: &str) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(b64(s)),
        other => panic!("{what}: expected base64 string or null, got {other}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_record(file: &str, i: usize, got: &Record, want: &Value) {
    let ctx = format!("{file} record {i}");
    let obj = want.as_object().expect("record object");
    for key in obj.keys() {
        assert!(
            [
                "offset",
                "timestamp",
                "key",
                "value",
                "value_len",
                "value_sha256",
                "headers"
            ]
            .contains(&key.as_str()),
            "{ctx}: unexpected field {key}"
        );
    }
    assert_eq!(
        got.offset,
        want["offset"].as_i64().unwrap(),
        "{ctx}: offset"
    );
    assert_eq!(
        got.timestamp,
        want["timestamp"].as_i64().unwrap(),
        "{ctx}: timestamp"
    );
    assert_eq!(got.attributes, 0, "{ctx}: attributes");
    assert_eq!(
        got.key.as_deref(),
        nullable_b64(&want["key"], "key").as_deref(),
        "{ctx}: key"
    );
    match obj.get("value") {
        Some(v) => {
            assert!(!obj.contains_key("value_len"), "{ctx}: both value forms");
            assert_eq!(
                got.value.as_deref(),
                nullable_b64(v, "value").as_deref(),
                "{ctx}: value"
            );
        }
        None => {
            let len = obj["value_len"].as_u64().expect("value_len") as usize;
            let sha = obj["value_sha256"].as_str().expect("value_sha256");
            let value = got.value.as_ref().expect("large value present");
            assert_eq!(value.len(), len, "{ctx}: value length");
            assert_eq!(hex(&Sha256::digest(value)), sha, "{ctx}: value sha256");
        }
    }
    let want_headers = obj["headers"].as_array().expect("headers array");
    assert_eq!(got.headers.len(), want_headers.len(), "{ctx}: header count");
    for (j, (gh, wh)) in got.headers.iter().zip(want_headers).enumerate() {
        let pair = wh.as_array().expect("header pair");
        assert_eq!(pair.len(), 2, "{ctx}: header {j} shape");
        let name = pair[0].as_str().expect("header name");
        assert_eq!(
            std::str::from_utf8(&gh.0).expect("utf-8 header key"),
            name,
            "{ctx}: header {j} name"
        );
        assert_eq!(
            gh.1.as_deref(),
            nullable_b64(&pair[1], "header value").as_deref(),
            "{ctx}: header {j} ({name}) value"
        );
    }
}

#[test]
fn every_case_decodes_exactly() {
    let cases = load();
    assert!(cases.generator.starts_with("kafka-python"));
    assert_eq!(cases.cases.len(), 11, "expected 11 vectors");
    let mut saw_gzip = false;
    for case in &cases.cases {
        let file = case.file.as_str();
        let bytes = read_bin(case);
        assert_eq!(bytes.len(), case.bytes, "{file}: byte length");

        let validated = validate_batch(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        let batch = Batch::parse(bytes.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let h = *batch.header();
        assert_eq!(h, validated, "{file}");
        assert_eq!(batch.as_bytes(), &bytes, "{file}");

        assert_eq!(h.total_len(), case.bytes, "{file}: total_len");
        assert_eq!(h.magic, 2, "{file}: magic");
        assert_eq!(h.base_offset, case.base_offset, "{file}: base_offset");
        assert_eq!(h.crc, case.crc, "{file}: crc");
        assert_eq!(
            h.compression().unwrap().id(),
            case.attributes_compression,
            "{file}: compression"
        );
        assert_eq!(
            h.is_transactional(),
            case.is_transactional,
            "{file}: transactional"
        );
        assert!(!h.is_control(), "{file}: control");
        assert_eq!(h.producer_id, case.producer_id, "{file}: producer_id");
        assert_eq!(h.producer_epoch, case.producer_epoch, "{file}: epoch");
        assert_eq!(h.base_sequence, case.base_sequence, "{file}: sequence");
        assert_eq!(
            h.record_count as usize, case.record_count,
            "{file}: record_count"
        );
        assert_eq!(
            h.base_timestamp, case.first_timestamp,
            "{file}: first timestamp"
        );
        assert_eq!(h.max_timestamp, case.max_timestamp, "{file}: max timestamp");
        assert_eq!(
            h.last_offset_delta, case.last_offset_delta,
            "{file}: last_offset_delta"
        );
        assert_eq!(
            h.next_offset(),
            case.base_offset + i64::from(case.last_offset_delta) + 1,
            "{file}: next_offset"
        );
        if h.compression().unwrap() == Compression::Gzip {
            saw_gzip = true;
        }

        let records: Vec<Record> = batch
            .records()
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(records.len(), case.record_count, "{file}: records read");
        assert_eq!(case.records.len(), case.record_count, "{file}: cases.json");
        for (i, (got, want)) in records.iter().zip(&case.records).enumerate() {
            check_record(file, i, got, want);
        }
    }
    assert!(saw_gzip, "the gzip vector must be present and decode");
}

/// Re-encoding the decoded records with `BatchBuilder` reproduces kafka-python's bytes exactly,
/// except the partition leader epoch (kafka-python writes 0, strata's builder -1; not CRC-covered).
#[test]
fn builder_reproduces_uncompressed_vectors_byte_for_byte() {
    let mut compared = 0;
    for case in &load().cases {
        let file = case.file.as_str();
        let original = read_bin(case);
        let batch = Batch::parse(original.clone()).unwrap();
        let h = *batch.header();
        if h.compression().unwrap() != Compression::None {
            continue;
        }
        let records: Vec<Record> = batch.records().unwrap().map(Result::unwrap).collect();
        let mut b = BatchBuilder::with_capacity(original.len())
            .producer(h.producer_id, h.producer_epoch, h.base_sequence)
            .transactional(h.is_transactional());
        for r in &records {
            let names: Vec<&str> = r
                .headers
                .iter()
                .map(|(k, _)| std::str::from_utf8(k).unwrap())
                .collect();
            let headers: Vec<RecordHeader<'_>> = names
                .iter()
                .zip(&r.headers)
                .map(|(k, (_, v))| RecordHeader {
                    key: k,
                    value: v.as_deref(),
                })
                .collect();
            b.append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers);
        }
        assert_eq!(b.len_bytes(), original.len(), "{file}: encoded size");
        let mut rebuilt = b.finish();
        assert_eq!(
            &rebuilt[12..16],
            &(-1i32).to_be_bytes(),
            "{file}: builder epoch"
        );
        set_base_offset(&mut rebuilt, h.base_offset);
        rebuilt[12..16].copy_from_slice(&h.partition_leader_epoch.to_be_bytes());
        assert!(
            rebuilt[..] == original[..],
            "{file}: rebuilt batch differs from kafka-python's"
        );
        compared += 1;
    }
    assert_eq!(compared, 10);
}

/// Every vector is rejected once any byte of its CRC-covered range changes, and every prefix
/// of it is rejected without panicking.
#[test]
fn corrupted_and_truncated_vectors_are_rejected() {
    for case in &load().cases {
        let file = case.file.as_str();
        let original = read_bin(case);
        // Sample positions to keep the 1 MiB vector cheap.
        let step = (original.len() / 512).max(1);
        let mut buf = original.to_vec();
        for at in (21..buf.len()).step_by(step) {
            buf[at] ^= 0x01;
            assert!(
                validate_batch(&buf).is_err(),
                "{file}: flip at {at} accepted"
            );
            buf[at] ^= 0x01;
        }
        for len in (0..original.len()).step_by(step) {
            assert!(
                Batch::parse(original.slice(..len)).is_err(),
                "{file}: prefix {len} accepted"
            );
        }
    }
}
