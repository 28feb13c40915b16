//! The client side of the native protocol. `Connection` is one blocking, pipelined connection;
//! `Producer` batches records per partition and sends them to the owning shards; `Consumer`
//! reads partitions with long-poll fetches, one fetch ahead of the application.

mod connection;
mod consumer;
mod error;
mod group;
mod metadata;
mod partitioner;
mod producer;

pub use connection::{
    into_body, split_batches, Connection, RequestWriter, ResponseReader, CONNECT_TIMEOUT,
    MAX_RESPONSE_FRAME_BYTES,
};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, FetchInfo, FetchObserver, SeekTo};
pub use error::ClientError;
pub use group::{
    GroupConsumer, GroupConsumerConfig, OffsetReset, DEFAULT_AUTO_COMMIT_INTERVAL,
    DEFAULT_SESSION_TIMEOUT_MS,
};
pub use metadata::{ClusterView, TopicRoute};
pub use partitioner::{murmur2, partition_for_key, StickyPartitioner};
pub use producer::{DeliveryFuture, Producer, ProducerConfig, RecordMetadata};
