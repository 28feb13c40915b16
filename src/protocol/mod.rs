//! The native wire protocol (sans-I/O): frames of `u32 length | u32 header length | header |
//! payload`, where the header is a `Request` or `Response` flatbuffer (`schema/strata.fbs`) and
//! the payload carries raw record batches. Nothing outside this module sees a flatbuffers type:
//! `message` maps the generated code to plain Rust types.
//!
//! `strata_generated.rs` is flatc's output, checked in unmodified; regenerate it with
//! `scripts/gen-protocol.sh` (the `protocol` test fails when it drifts from the schema).

pub mod error;
pub mod frame;
pub mod group;
pub mod message;

#[allow(
    clippy::all,
    unused_imports,
    dead_code,
    deprecated,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unsafe_op_in_unsafe_fn,
    mismatched_lifetime_syntaxes,
    missing_docs
)]
#[rustfmt::skip]
mod strata_generated;

/// The generated flatbuffers code of the `strata.protocol` namespace.
pub(crate) use strata_generated::strata::protocol as fb;

pub use error::{ErrorCode, ProtocolError};
pub use frame::{
    frame_length, write_prefix, Frame, FrameDecoder, FrameError, DEFAULT_MAX_FRAME_BYTES,
    FRAME_PREFIX_BYTES, MAX_HEADER_BYTES, MAX_LENGTH_FIELD,
};
pub use group::{
    CommitOffset, CommittedOffset, GroupDescription, GroupHeartbeatRequest, GroupHeartbeatResponse,
    GroupListing, GroupState, MemberDescription, OffsetCommitRequest, OffsetFetchRequest,
    PartitionLag, PartitionResult, TopicPartitions, MEMBER_EPOCH_ADMIN, MEMBER_EPOCH_JOIN,
    MEMBER_EPOCH_LEAVE,
};
pub use message::{
    Acks, ApiKey, ApiVersionRange, FetchRequest, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataResponse, OffsetSpec, PartitionMetadata, ProduceRequest,
    ProduceResponse, Request, RequestBody, Response, ResponseBody, ShardEndpoint, TopicMetadata,
    TopicResult, TopicSpec, API_VERSION, FILE_IDENTIFIER,
};
