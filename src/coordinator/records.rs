//! What the coordinator writes to its offsets log (`__strata_offsets`): one record per change,
//! keyed so that the latest record of a key is its value. A record with no value is a tombstone:
//! the key is gone. Keys and values are JSON (small, rare next to data records, and readable
//! with `strata consume`-like tools when debugging).

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::record::{Batch, BatchBuilder, RecordError};

use super::assignor::TopicPartition;

/// Format of the keys and values this build writes and the only one it reads.
pub const RECORD_FORMAT_VERSION: u32 = 1;

/// One change to the durable state of the consumer groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A group exists, with this assignor, at this group epoch.
    Group {
        group: String,
        assignor: String,
        epoch: i32,
    },
    /// The group was deleted (with its offsets).
    GroupDeleted { group: String },
    /// The group's committed offset of a partition.
    Offset {
        group: String,
        partition: TopicPartition,
        value: OffsetValue,
    },
    /// The group's committed offset of a partition was removed.
    OffsetDeleted {
        group: String,
        partition: TopicPartition,
    },
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetValue {
    pub offset: i64,
    pub metadata: String,
    pub commit_time_ms: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Key {
    Group {
        v: u32,
        group: String,
    },
    Offset {
        v: u32,
        group: String,
        topic: String,
        partition: u32,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupValue {
    assignor: String,
    epoch: i32,
}

/// Why a record of the offsets log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("offsets log: unreadable batch: {0}")]
    Batch(#[from] RecordError),
    #[error("offsets log: record at offset {offset} has no key")]
    NoKey { offset: i64 },
    #[error("offsets log: record at offset {offset}: {reason}")]
    Bad { offset: i64, reason: String },
}

impl Entry {
    fn key(&self) -> Key {
        let v = RECORD_FORMAT_VERSION;
        match self {
            Entry::Group { group, .. } | Entry::GroupDeleted { group } => Key::Group {
                v,
                group: group.clone(),
            },
            Entry::Offset {
                group, partition, ..
            }
            | Entry::OffsetDeleted { group, partition } => Key::Offset {
                v,
                group: group.clone(),
                topic: partition.topic.clone(),
                partition: partition.partition,
            },
        }
    }

    fn value(&self) -> Option<Vec<u8>> {
        let json = match self {
            Entry::Group {
                assignor, epoch, ..
            } => serde_json::to_vec(&GroupValue {
                assignor: assignor.clone(),
                epoch: *epoch,
            }),
            Entry::Offset { value, .. } => serde_json::to_vec(value),
            Entry::GroupDeleted { .. } | Entry::OffsetDeleted { .. } => return None,
        };
        Some(json.expect("serializing plain structs to JSON cannot fail"))
    }

    /// Reads one record's key and value back into an entry.
    fn decode(offset: i64, key: &[u8], value: Option<&[u8]>) -> Result<Entry, RecordsError> {
        let bad = |reason: String| RecordsError::Bad { offset, reason };
        let key: Key = serde_json::from_slice(key).map_err(|e| bad(format!("key: {e}")))?;
        let version = match &key {
            Key::Group { v, .. } | Key::Offset { v, .. } => *v,
        };
        if version != RECORD_FORMAT_VERSION {
            return Err(bad(format!(
                "format version {version}; this build reads only version {RECORD_FORMAT_VERSION}"
            )));
        }
        Ok(match (key, value) {
            (Key::Group { group, .. }, None) => Entry::GroupDeleted { group },
            (Key::Group { group, .. }, Some(value)) => {
                let v: GroupValue =
                    serde_json::from_slice(value).map_err(|e| bad(format!("value: {e}")))?;
                Entry::Group {
                    group,
                    assignor: v.assignor,
                    epoch: v.epoch,
                }
            }
            (
                Key::Offset {
                    group,
                    topic,
                    partition,
                    ..
                },
                value,
            ) => {
                let partition = TopicPartition { topic, partition };
                match value {
                    None => Entry::OffsetDeleted { group, partition },
                    Some(value) => Entry::Offset {
                        group,
                        partition,
                        value: serde_json::from_slice(value)
                            .map_err(|e| bad(format!("value: {e}")))?,
                    },
                }
            }
        })
    }
}

/// A batch is closed once it holds this many bytes. One entry is at most a few KiB (names are
/// at most 249 characters, offset metadata at most `MAX_OFFSET_METADATA_BYTES`), so every batch
/// stays far below the offsets log's batch limit.
pub const TARGET_BATCH_BYTES: usize = 1 << 20;

/// Record batches holding `entries` in order, each closed at `TARGET_BATCH_BYTES`, timestamped
/// `now_ms`.
pub fn encode_batches(entries: &[Entry], now_ms: i64) -> Vec<BytesMut> {
    debug_assert!(!entries.is_empty(), "an empty batch of entries");
    let mut batches = Vec::new();
    let mut builder = BatchBuilder::new();
    for entry in entries {
        let key = serde_json::to_vec(&entry.key()).expect("serializing a key cannot fail");
        builder.append(now_ms, Some(&key), entry.value().as_deref(), &[]);
        if builder.len_bytes() >= TARGET_BATCH_BYTES {
            batches.push(std::mem::take(&mut builder).finish());
        }
    }
    if !builder.is_empty() {
        batches.push(builder.finish());
    }
    batches
}

/// The entries of one batch read back from the log, in order.
pub fn decode_batch(batch: Bytes) -> Result<Vec<Entry>, RecordsError> {
    let batch = Batch::parse(batch)?;
    let mut entries = Vec::new();
    for record in batch.records()? {
        let record = record?;
        let key = record.key.ok_or(RecordsError::NoKey {
            offset: record.offset,
        })?;
        entries.push(Entry::decode(record.offset, &key, record.value.as_deref())?);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: u32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    #[test]
    fn every_entry_round_trips() {
        let entries = vec![
            Entry::Group {
                group: "g".into(),
                assignor: "sticky".into(),
                epoch: 7,
            },
            Entry::Offset {
                group: "g".into(),
                partition: tp("t", 3),
                value: OffsetValue {
                    offset: 42,
                    metadata: "m\u{e9}ta".into(),
                    commit_time_ms: 1_700_000_000_000,
                },
            },
            Entry::OffsetDeleted {
                group: "g".into(),
                partition: tp("t", 3),
            },
            Entry::GroupDeleted { group: "g".into() },
        ];
        let batches = encode_batches(&entries, 5);
        assert_eq!(batches.len(), 1);
        assert_eq!(decode_batch(batches[0].clone().freeze()).unwrap(), entries);
    }

    #[test]
    fn large_entry_lists_are_cut_into_bounded_batches() {
        let entries: Vec<Entry> = (0..3_000)
            .map(|p| Entry::Offset {
                group: "g".into(),
                partition: tp("t", p),
                value: OffsetValue {
                    offset: 1,
                    metadata: "m".repeat(1000),
                    commit_time_ms: 0,
                },
            })
            .collect();
        let batches = encode_batches(&entries, 0);
        assert!(batches.len() >= 3, "{} batches", batches.len());
        let mut back = Vec::new();
        for b in batches {
            assert!(b.len() < TARGET_BATCH_BYTES + 8192, "{} bytes", b.len());
            back.extend(decode_batch(b.freeze()).unwrap());
        }
        assert_eq!(back, entries);
    }

    #[test]
    fn an_unknown_format_version_is_named() {
        let err = Entry::decode(9, br#"{"type":"group","v":99,"group":"g"}"#, None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("offset 9") && msg.contains("version 99"),
            "{msg}"
        );
    }

    #[test]
    fn a_garbled_key_is_an_error_not_a_panic() {
        assert!(Entry::decode(0, b"{not json", Some(b"{}")).is_err());
        assert!(Entry::decode(0, br#"{"type":"offset","v":1,"group":"g"}"#, None).is_err());
    }
}
