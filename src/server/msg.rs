//! What crosses a core boundary: messages on the shard mesh. Everything here is `Send`; record
//! bytes travel as `Bytes`/`BytesMut` (reference-counted, never copied; produced batches as
//! `ValidBatch`, a `BytesMut` that passed validation).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::channel::oneshot;

use crate::coordinator::ClientInfo;
use crate::metadata::Catalog;
use crate::protocol::{ErrorCode, FetchRequest, OffsetSpec, RequestBody, ResponseBody};
use crate::record::ValidBatch;

/// An operation on one partition, run by the shard that owns it.
#[derive(Debug)]
pub enum PartitionOp {
    /// Whole batches, validated where the request arrived, to append in order.
    Produce {
        batches: Vec<ValidBatch>,
        timeout_ms: u32,
    },
    Fetch(FetchRequest),
    ListOffsets(OffsetSpec),
}

/// A successful answer: the response body and the payload sent after it.
#[derive(Debug)]
pub struct Answer {
    pub body: ResponseBody,
    pub payload: Vec<Bytes>,
}

impl Answer {
    pub fn new(body: ResponseBody) -> Answer {
        Answer {
            body,
            payload: Vec::new(),
        }
    }
}

/// A failed operation: the code the client sees and a message for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    pub code: ErrorCode,
    pub message: String,
}

impl OpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> OpError {
        OpError {
            code,
            message: message.into(),
        }
    }
}

pub type OpResult = Result<Answer, OpError>;

/// Offsets of one partition, for Metadata.
#[derive(Debug, Clone)]
pub struct PartitionStat {
    pub topic: String,
    pub partition: u32,
    pub earliest_offset: i64,
    pub high_watermark: i64,
    pub log_bytes: u64,
}

/// A message on the mesh.
pub enum ShardMsg {
    /// Any shard → the owner: run `op` on a partition.
    Partition {
        topic: String,
        partition: u32,
        op: PartitionOp,
        reply: oneshot::Sender<OpResult>,
    },
    /// Any shard → every data shard: offsets of the partitions it owns.
    Stats {
        reply: oneshot::Sender<Vec<PartitionStat>>,
    },
    /// Coordinator → every data shard: make the set of open logs match this catalog.
    Catalog {
        catalog: Arc<Catalog>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A data shard → the coordinator: CreateTopics or DeleteTopics.
    Admin {
        body: RequestBody,
        reply: oneshot::Sender<OpResult>,
    },
    /// A data shard → the coordinator: a consumer-group request. `high_watermarks` holds the
    /// log end of every partition for DescribeGroup (gathered by the receiving shard, so the
    /// coordinator never waits on data shards), and is empty otherwise.
    Group {
        body: RequestBody,
        client: ClientInfo,
        high_watermarks: HashMap<(String, u32), i64>,
        reply: oneshot::Sender<OpResult>,
    },
}
