//! Plain Rust types for the `Request` and `Response` headers, and their mapping to and from the
//! generated flatbuffers code. Decoding verifies the buffer first and reports any problem as a
//! `ProtocolError`, never a panic; encoding writes the frame prefix and the header in one buffer
//! (the payload is sent after it, untouched).

use bytes::BytesMut;
use flatbuffers::{FlatBufferBuilder, Follow, ForwardsUOffset, Vector, VerifierOptions, WIPOffset};

use super::error::{ErrorCode, ProtocolError};
use super::fb;
use super::frame::{write_prefix, MAX_HEADER_BYTES};
use super::group::{
    CommitOffset, CommittedOffset, GroupDescription, GroupHeartbeatRequest, GroupHeartbeatResponse,
    GroupListing, GroupState, MemberDescription, OffsetCommitRequest, OffsetFetchRequest,
    PartitionLag, PartitionResult, TopicPartitions,
};

/// The one version of every operation this build speaks.
pub const API_VERSION: u16 = 0;

/// The flatbuffers file identifier of every header.
pub const FILE_IDENTIFIER: &str = "STRA";

/// Most tables a header may hold (a Metadata response lists every partition).
const MAX_HEADER_TABLES: usize = 1 << 20;
/// The flatbuffers verifier's bound on the bytes it visits: more than the header's size,
/// because tables sharing one vtable count it once each.
const MAX_HEADER_APPARENT_BYTES: usize = 4 * MAX_HEADER_BYTES;
/// Deepest nesting a header may have (Response → body → topic → partition is 4, as is
/// Response → DescribeGroup → member → its assignment's topic).
const MAX_HEADER_DEPTH: usize = 16;

/// The operations, as `ApiVersions` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKey {
    ApiVersions,
    Metadata,
    CreateTopics,
    DeleteTopics,
    Produce,
    Fetch,
    ListOffsets,
    GroupHeartbeat,
    OffsetCommit,
    OffsetFetch,
    ListGroups,
    DescribeGroup,
    DeleteGroup,
}

impl ApiKey {
    /// Every operation, in schema order.
    pub const ALL: [ApiKey; 13] = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::GroupHeartbeat,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::ListGroups,
        ApiKey::DescribeGroup,
        ApiKey::DeleteGroup,
    ];

    fn to_fb(self) -> fb::ApiKey {
        match self {
            ApiKey::ApiVersions => fb::ApiKey::ApiVersions,
            ApiKey::Metadata => fb::ApiKey::Metadata,
            ApiKey::CreateTopics => fb::ApiKey::CreateTopics,
            ApiKey::DeleteTopics => fb::ApiKey::DeleteTopics,
            ApiKey::Produce => fb::ApiKey::Produce,
            ApiKey::Fetch => fb::ApiKey::Fetch,
            ApiKey::ListOffsets => fb::ApiKey::ListOffsets,
            ApiKey::GroupHeartbeat => fb::ApiKey::GroupHeartbeat,
            ApiKey::OffsetCommit => fb::ApiKey::OffsetCommit,
            ApiKey::OffsetFetch => fb::ApiKey::OffsetFetch,
            ApiKey::ListGroups => fb::ApiKey::ListGroups,
            ApiKey::DescribeGroup => fb::ApiKey::DescribeGroup,
            ApiKey::DeleteGroup => fb::ApiKey::DeleteGroup,
        }
    }

    fn from_fb(key: fb::ApiKey) -> Result<ApiKey, ProtocolError> {
        ApiKey::ALL
            .into_iter()
            .find(|k| k.to_fb() == key)
            .ok_or(ProtocolError::UnknownEnum {
                field: "api",
                value: i64::from(key.0),
            })
    }
}

/// When a produce is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No response at all.
    None,
    /// After the log is as durable as the broker's fsync policy says.
    Leader,
}

/// Where ListOffsets looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// First offset whose timestamp is at or after this (ms since the epoch).
    Timestamp(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersionRange {
    pub api: ApiKey,
    pub min_version: u16,
    pub max_version: u16,
}

/// A topic to create; `None` settings take the broker's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub segment_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest {
    pub topic: String,
    pub partition: u32,
    pub acks: Acks,
    pub timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub max_bytes: u32,
    pub max_wait_ms: u32,
    pub min_bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsRequest {
    pub topic: String,
    pub partition: u32,
    pub spec: OffsetSpec,
}

/// The operation of a request and its fields (the payload travels beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    ApiVersions,
    /// Empty `topics` asks for every topic.
    Metadata {
        topics: Vec<String>,
    },
    CreateTopics {
        topics: Vec<TopicSpec>,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    GroupHeartbeat(GroupHeartbeatRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    /// Every group the broker knows.
    ListGroups,
    DescribeGroup {
        group: String,
    },
    /// Deletes a group without members and its committed offsets.
    DeleteGroup {
        group: String,
    },
}

impl RequestBody {
    pub fn api_key(&self) -> ApiKey {
        match self {
            RequestBody::ApiVersions => ApiKey::ApiVersions,
            RequestBody::Metadata { .. } => ApiKey::Metadata,
            RequestBody::CreateTopics { .. } => ApiKey::CreateTopics,
            RequestBody::DeleteTopics { .. } => ApiKey::DeleteTopics,
            RequestBody::Produce(_) => ApiKey::Produce,
            RequestBody::Fetch(_) => ApiKey::Fetch,
            RequestBody::ListOffsets(_) => ApiKey::ListOffsets,
            RequestBody::GroupHeartbeat(_) => ApiKey::GroupHeartbeat,
            RequestBody::OffsetCommit(_) => ApiKey::OffsetCommit,
            RequestBody::OffsetFetch(_) => ApiKey::OffsetFetch,
            RequestBody::ListGroups => ApiKey::ListGroups,
            RequestBody::DescribeGroup { .. } => ApiKey::DescribeGroup,
            RequestBody::DeleteGroup { .. } => ApiKey::DeleteGroup,
        }
    }
}

/// A request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub api_version: u16,
    pub correlation_id: u32,
    pub client_id: Option<String>,
    pub body: RequestBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardEndpoint {
    pub shard: u32,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: u32,
    pub shard: u32,
    pub earliest_offset: i64,
    pub high_watermark: i64,
    /// Bytes of the log on disk; `None` when the broker did not say.
    pub log_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub error: ErrorCode,
    pub message: Option<String>,
    pub partitions: Vec<PartitionMetadata>,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub segment_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataResponse {
    /// The shared listener.
    pub host: String,
    pub port: u16,
    pub shard_count: u32,
    pub shards: Vec<ShardEndpoint>,
    pub topics: Vec<TopicMetadata>,
}

/// Outcome of creating or deleting one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResult {
    pub name: String,
    pub error: ErrorCode,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceResponse {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_append_time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsResponse {
    /// `None` when a timestamp lookup finds no record at or after it.
    pub offset: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBody {
    ApiVersions(Vec<ApiVersionRange>),
    Metadata(MetadataResponse),
    CreateTopics(Vec<TopicResult>),
    DeleteTopics(Vec<TopicResult>),
    Produce(ProduceResponse),
    Fetch(FetchResponse),
    ListOffsets(ListOffsetsResponse),
    GroupHeartbeat(GroupHeartbeatResponse),
    /// Per-partition outcome of the commit.
    OffsetCommit(Vec<PartitionResult>),
    OffsetFetch(Vec<CommittedOffset>),
    ListGroups(Vec<GroupListing>),
    DescribeGroup(GroupDescription),
    DeleteGroup,
}

impl ResponseBody {
    pub fn api_key(&self) -> ApiKey {
        match self {
            ResponseBody::ApiVersions(_) => ApiKey::ApiVersions,
            ResponseBody::Metadata(_) => ApiKey::Metadata,
            ResponseBody::CreateTopics(_) => ApiKey::CreateTopics,
            ResponseBody::DeleteTopics(_) => ApiKey::DeleteTopics,
            ResponseBody::Produce(_) => ApiKey::Produce,
            ResponseBody::Fetch(_) => ApiKey::Fetch,
            ResponseBody::ListOffsets(_) => ApiKey::ListOffsets,
            ResponseBody::GroupHeartbeat(_) => ApiKey::GroupHeartbeat,
            ResponseBody::OffsetCommit(_) => ApiKey::OffsetCommit,
            ResponseBody::OffsetFetch(_) => ApiKey::OffsetFetch,
            ResponseBody::ListGroups(_) => ApiKey::ListGroups,
            ResponseBody::DescribeGroup(_) => ApiKey::DescribeGroup,
            ResponseBody::DeleteGroup => ApiKey::DeleteGroup,
        }
    }
}

/// A response header. Invariant: `body` is `None` whenever `error` is not `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub correlation_id: u32,
    pub error: ErrorCode,
    pub message: Option<String>,
    pub body: Option<ResponseBody>,
}

// ---------------------------------------------------------------------------------------------
// Decoding

fn verifier_options() -> VerifierOptions {
    VerifierOptions {
        max_depth: MAX_HEADER_DEPTH,
        max_tables: MAX_HEADER_TABLES,
        max_apparent_size: MAX_HEADER_APPARENT_BYTES,
        ..VerifierOptions::default()
    }
}

/// Checks size and file identifier, then verifies `buf` as a `T` root.
fn verified_root<'a, T>(buf: &'a [u8]) -> Result<T::Inner, ProtocolError>
where
    T: flatbuffers::Follow<'a> + flatbuffers::Verifiable + 'a,
{
    if buf.len() > MAX_HEADER_BYTES {
        return Err(ProtocolError::HeaderTooLarge {
            len: buf.len(),
            max: MAX_HEADER_BYTES,
        });
    }
    if buf.len() < 8 || !flatbuffers::buffer_has_identifier(buf, FILE_IDENTIFIER, false) {
        return Err(ProtocolError::Malformed(format!(
            "not a strata header (no file identifier {FILE_IDENTIFIER:?} in {} bytes)",
            buf.len()
        )));
    }
    flatbuffers::root_with_opts::<T>(&verifier_options(), buf)
        .map_err(|e| ProtocolError::Malformed(e.to_string()))
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, ProtocolError> {
    value.ok_or(ProtocolError::MissingField(field))
}

fn string(value: Option<&str>, field: &'static str) -> Result<String, ProtocolError> {
    required(value, field).map(str::to_string)
}

/// Free text: absent reads as empty.
fn text(value: Option<&str>) -> String {
    value.unwrap_or_default().to_string()
}

fn strings(value: Option<Vector<'_, ForwardsUOffset<&str>>>) -> Vec<String> {
    value
        .map(|v| v.iter().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Decodes each table of a vector; an absent vector is empty.
fn tables<'a, T, U>(
    value: Option<Vector<'a, ForwardsUOffset<T>>>,
    decode: impl FnMut(T::Inner) -> Result<U, ProtocolError>,
) -> Result<Vec<U>, ProtocolError>
where
    T: Follow<'a> + 'a,
{
    value.map_or(Ok(Vec::new()), |v| v.iter().map(decode).collect())
}

fn decode_topic_partitions(
    value: Option<Vector<'_, ForwardsUOffset<fb::TopicPartitions<'_>>>>,
) -> Result<Vec<TopicPartitions>, ProtocolError> {
    tables(value, |t| {
        Ok(TopicPartitions {
            topic: string(t.topic(), "TopicPartitions.topic")?,
            partitions: t
                .partitions()
                .map(|p| p.iter().collect())
                .unwrap_or_default(),
        })
    })
}

/// `-1` is "unset"; any other negative value is out of range.
fn optional_size(value: i64, field: &'static str) -> Result<Option<u64>, ProtocolError> {
    match value {
        -1 => Ok(None),
        v if v >= 0 => Ok(Some(v as u64)),
        v => Err(ProtocolError::OutOfRange { field, value: v }),
    }
}

fn size_field(value: Option<u64>) -> i64 {
    value.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// `-1` is "unset"; any other value passes through.
fn optional_i64(value: i64) -> Option<i64> {
    (value != -1).then_some(value)
}

fn group_state(state: fb::GroupState) -> Result<GroupState, ProtocolError> {
    match state {
        fb::GroupState::Empty => Ok(GroupState::Empty),
        fb::GroupState::Reconciling => Ok(GroupState::Reconciling),
        fb::GroupState::Stable => Ok(GroupState::Stable),
        other => Err(ProtocolError::UnknownEnum {
            field: "state",
            value: i64::from(other.0),
        }),
    }
}

fn group_state_field(state: GroupState) -> fb::GroupState {
    match state {
        GroupState::Empty => fb::GroupState::Empty,
        GroupState::Reconciling => fb::GroupState::Reconciling,
        GroupState::Stable => fb::GroupState::Stable,
    }
}

fn error_code(code: fb::ErrorCode) -> Result<ErrorCode, ProtocolError> {
    ErrorCode::try_from(code.0)
}

impl Request {
    /// Reads a request header; any malformed input gives an error, never a panic.
    pub fn decode(buf: &[u8]) -> Result<Request, ProtocolError> {
        let req = verified_root::<fb::Request>(buf)?;
        let body = match req.body_type() {
            fb::RequestBody::NONE => return Err(ProtocolError::MissingBody),
            fb::RequestBody::ApiVersionsRequest => {
                required(req.body_as_api_versions_request(), "body")?;
                RequestBody::ApiVersions
            }
            fb::RequestBody::MetadataRequest => {
                let m = required(req.body_as_metadata_request(), "body")?;
                RequestBody::Metadata {
                    topics: strings(m.topics()),
                }
            }
            fb::RequestBody::CreateTopicsRequest => {
                let c = required(req.body_as_create_topics_request(), "body")?;
                let topics = tables(c.topics(), |t| {
                    Ok(TopicSpec {
                        name: string(t.name(), "TopicSpec.name")?,
                        partitions: t.partitions(),
                        retention_bytes: optional_size(t.retention_bytes(), "retention_bytes")?,
                        retention_ms: optional_size(t.retention_ms(), "retention_ms")?,
                        segment_bytes: optional_size(t.segment_bytes(), "segment_bytes")?,
                    })
                })?;
                RequestBody::CreateTopics { topics }
            }
            fb::RequestBody::DeleteTopicsRequest => {
                let d = required(req.body_as_delete_topics_request(), "body")?;
                RequestBody::DeleteTopics {
                    names: strings(d.names()),
                }
            }
            fb::RequestBody::ProduceRequest => {
                let p = required(req.body_as_produce_request(), "body")?;
                let acks = match p.acks() {
                    fb::Acks::None => Acks::None,
                    fb::Acks::Leader => Acks::Leader,
                    other => {
                        return Err(ProtocolError::UnknownEnum {
                            field: "acks",
                            value: i64::from(other.0),
                        })
                    }
                };
                RequestBody::Produce(ProduceRequest {
                    topic: string(p.topic(), "ProduceRequest.topic")?,
                    partition: p.partition(),
                    acks,
                    timeout_ms: p.timeout_ms(),
                })
            }
            fb::RequestBody::FetchRequest => {
                let f = required(req.body_as_fetch_request(), "body")?;
                RequestBody::Fetch(FetchRequest {
                    topic: string(f.topic(), "FetchRequest.topic")?,
                    partition: f.partition(),
                    offset: f.offset(),
                    max_bytes: f.max_bytes(),
                    max_wait_ms: f.max_wait_ms(),
                    min_bytes: f.min_bytes(),
                })
            }
            fb::RequestBody::ListOffsetsRequest => {
                let l = required(req.body_as_list_offsets_request(), "body")?;
                let spec = match l.spec() {
                    fb::OffsetSpec::Earliest => OffsetSpec::Earliest,
                    fb::OffsetSpec::Latest => OffsetSpec::Latest,
                    fb::OffsetSpec::Timestamp => OffsetSpec::Timestamp(l.timestamp()),
                    other => {
                        return Err(ProtocolError::UnknownEnum {
                            field: "spec",
                            value: i64::from(other.0),
                        })
                    }
                };
                RequestBody::ListOffsets(ListOffsetsRequest {
                    topic: string(l.topic(), "ListOffsetsRequest.topic")?,
                    partition: l.partition(),
                    spec,
                })
            }
            fb::RequestBody::GroupHeartbeatRequest => {
                let h = required(req.body_as_group_heartbeat_request(), "body")?;
                RequestBody::GroupHeartbeat(GroupHeartbeatRequest {
                    group: string(h.group(), "GroupHeartbeatRequest.group")?,
                    member_id: string(h.member_id(), "GroupHeartbeatRequest.member_id")?,
                    member_epoch: h.member_epoch(),
                    session_timeout_ms: h.session_timeout_ms(),
                    topics: strings(h.topics()),
                    owned: decode_topic_partitions(h.owned())?,
                    assignor: h.assignor().map(str::to_string),
                })
            }
            fb::RequestBody::OffsetCommitRequest => {
                let c = required(req.body_as_offset_commit_request(), "body")?;
                let offsets = tables(c.offsets(), |o| {
                    Ok(CommitOffset {
                        topic: string(o.topic(), "CommitOffset.topic")?,
                        partition: o.partition(),
                        offset: o.offset(),
                        metadata: text(o.metadata()),
                    })
                })?;
                RequestBody::OffsetCommit(OffsetCommitRequest {
                    group: string(c.group(), "OffsetCommitRequest.group")?,
                    member_id: string(c.member_id(), "OffsetCommitRequest.member_id")?,
                    member_epoch: c.member_epoch(),
                    offsets,
                })
            }
            fb::RequestBody::OffsetFetchRequest => {
                let f = required(req.body_as_offset_fetch_request(), "body")?;
                RequestBody::OffsetFetch(OffsetFetchRequest {
                    group: string(f.group(), "OffsetFetchRequest.group")?,
                    topics: strings(f.topics()),
                })
            }
            fb::RequestBody::ListGroupsRequest => {
                required(req.body_as_list_groups_request(), "body")?;
                RequestBody::ListGroups
            }
            fb::RequestBody::DescribeGroupRequest => {
                let d = required(req.body_as_describe_group_request(), "body")?;
                RequestBody::DescribeGroup {
                    group: string(d.group(), "DescribeGroupRequest.group")?,
                }
            }
            fb::RequestBody::DeleteGroupRequest => {
                let d = required(req.body_as_delete_group_request(), "body")?;
                RequestBody::DeleteGroup {
                    group: string(d.group(), "DeleteGroupRequest.group")?,
                }
            }
            other => return Err(ProtocolError::UnknownBody(other.0)),
        };
        Ok(Request {
            api_version: req.api_version(),
            correlation_id: req.correlation_id(),
            client_id: req.client_id().map(str::to_string),
            body,
        })
    }

    /// The frame prefix and this header, ready to be followed by `payload_len` payload bytes.
    pub fn encode_frame(&self, payload_len: usize) -> BytesMut {
        let mut fbb = FlatBufferBuilder::with_capacity(256);
        let client_id = self.client_id.as_deref().map(|s| fbb.create_string(s));
        let (body_type, body) = encode_request_body(&mut fbb, &self.body);
        let root = fb::Request::create(
            &mut fbb,
            &fb::RequestArgs {
                api_version: self.api_version,
                correlation_id: self.correlation_id,
                client_id,
                body_type,
                body: Some(body),
            },
        );
        fbb.finish(root, Some(FILE_IDENTIFIER));
        framed(fbb.finished_data(), payload_len)
    }
}

impl Response {
    /// Reads a response header; any malformed input gives an error, never a panic.
    pub fn decode(buf: &[u8]) -> Result<Response, ProtocolError> {
        let resp = verified_root::<fb::Response>(buf)?;
        let error = error_code(resp.error_code())?;
        let body = match resp.body_type() {
            fb::ResponseBody::NONE => None,
            fb::ResponseBody::ApiVersionsResponse => {
                let a = required(resp.body_as_api_versions_response(), "body")?;
                let apis = tables(a.apis(), |r| {
                    Ok(ApiVersionRange {
                        api: ApiKey::from_fb(r.api())?,
                        min_version: r.min_version(),
                        max_version: r.max_version(),
                    })
                })?;
                Some(ResponseBody::ApiVersions(apis))
            }
            fb::ResponseBody::MetadataResponse => {
                let m = required(resp.body_as_metadata_response(), "body")?;
                let shards = tables(m.shards(), |s| {
                    Ok(ShardEndpoint {
                        shard: s.shard(),
                        host: string(s.host(), "ShardEndpoint.host")?,
                        port: s.port(),
                    })
                })?;
                let topics = tables(m.topics(), decode_topic_metadata)?;
                Some(ResponseBody::Metadata(MetadataResponse {
                    host: string(m.host(), "MetadataResponse.host")?,
                    port: m.port(),
                    shard_count: m.shard_count(),
                    shards,
                    topics,
                }))
            }
            fb::ResponseBody::CreateTopicsResponse => {
                let c = required(resp.body_as_create_topics_response(), "body")?;
                Some(ResponseBody::CreateTopics(decode_topic_results(
                    c.results(),
                )?))
            }
            fb::ResponseBody::DeleteTopicsResponse => {
                let d = required(resp.body_as_delete_topics_response(), "body")?;
                Some(ResponseBody::DeleteTopics(decode_topic_results(
                    d.results(),
                )?))
            }
            fb::ResponseBody::ProduceResponse => {
                let p = required(resp.body_as_produce_response(), "body")?;
                Some(ResponseBody::Produce(ProduceResponse {
                    base_offset: p.base_offset(),
                    last_offset: p.last_offset(),
                    log_append_time_ms: p.log_append_time_ms(),
                }))
            }
            fb::ResponseBody::FetchResponse => {
                let f = required(resp.body_as_fetch_response(), "body")?;
                Some(ResponseBody::Fetch(FetchResponse {
                    high_watermark: f.high_watermark(),
                    log_start_offset: f.log_start_offset(),
                }))
            }
            fb::ResponseBody::ListOffsetsResponse => {
                let l = required(resp.body_as_list_offsets_response(), "body")?;
                Some(ResponseBody::ListOffsets(ListOffsetsResponse {
                    offset: (l.offset() >= 0).then_some(l.offset()),
                }))
            }
            fb::ResponseBody::GroupHeartbeatResponse => {
                let h = required(resp.body_as_group_heartbeat_response(), "body")?;
                Some(ResponseBody::GroupHeartbeat(GroupHeartbeatResponse {
                    member_id: string(h.member_id(), "GroupHeartbeatResponse.member_id")?,
                    member_epoch: h.member_epoch(),
                    heartbeat_interval_ms: h.heartbeat_interval_ms(),
                    assignment: decode_topic_partitions(h.assignment())?,
                }))
            }
            fb::ResponseBody::OffsetCommitResponse => {
                let c = required(resp.body_as_offset_commit_response(), "body")?;
                let results = tables(c.results(), |r| {
                    Ok(PartitionResult {
                        topic: string(r.topic(), "PartitionResult.topic")?,
                        partition: r.partition(),
                        error: error_code(r.error_code())?,
                        message: r.error_message().map(str::to_string),
                    })
                })?;
                Some(ResponseBody::OffsetCommit(results))
            }
            fb::ResponseBody::OffsetFetchResponse => {
                let f = required(resp.body_as_offset_fetch_response(), "body")?;
                let offsets = tables(f.offsets(), |o| {
                    Ok(CommittedOffset {
                        topic: string(o.topic(), "CommittedOffset.topic")?,
                        partition: o.partition(),
                        offset: o.offset(),
                        metadata: text(o.metadata()),
                        commit_time_ms: o.commit_time_ms(),
                    })
                })?;
                Some(ResponseBody::OffsetFetch(offsets))
            }
            fb::ResponseBody::ListGroupsResponse => {
                let l = required(resp.body_as_list_groups_response(), "body")?;
                let groups = tables(l.groups(), |g| {
                    Ok(GroupListing {
                        group: string(g.group(), "GroupListing.group")?,
                        state: group_state(g.state())?,
                        group_epoch: g.group_epoch(),
                        members: g.members(),
                    })
                })?;
                Some(ResponseBody::ListGroups(groups))
            }
            fb::ResponseBody::DescribeGroupResponse => {
                let d = required(resp.body_as_describe_group_response(), "body")?;
                Some(ResponseBody::DescribeGroup(decode_group_description(d)?))
            }
            fb::ResponseBody::DeleteGroupResponse => {
                required(resp.body_as_delete_group_response(), "body")?;
                Some(ResponseBody::DeleteGroup)
            }
            other => return Err(ProtocolError::UnknownBody(other.0)),
        };
        Ok(Response {
            correlation_id: resp.correlation_id(),
            error,
            message: resp.error_message().map(str::to_string),
            body,
        })
    }

    /// The frame prefix and this header, ready to be followed by `payload_len` payload bytes.
    pub fn encode_frame(&self, payload_len: usize) -> BytesMut {
        debug_assert!(
            self.error.is_ok() || self.body.is_none(),
            "an error response carries no body"
        );
        let mut fbb = FlatBufferBuilder::with_capacity(256);
        let error_message = self.message.as_deref().map(|s| fbb.create_string(s));
        let (body_type, body) = match &self.body {
            Some(body) => {
                let (t, b) = encode_response_body(&mut fbb, body);
                (t, Some(b))
            }
            None => (fb::ResponseBody::NONE, None),
        };
        let root = fb::Response::create(
            &mut fbb,
            &fb::ResponseArgs {
                correlation_id: self.correlation_id,
                error_code: fb::ErrorCode(self.error.as_i16()),
                error_message,
                body_type,
                body,
            },
        );
        fbb.finish(root, Some(FILE_IDENTIFIER));
        framed(fbb.finished_data(), payload_len)
    }
}

fn decode_topic_metadata(t: fb::TopicMetadata<'_>) -> Result<TopicMetadata, ProtocolError> {
    let partitions = tables(t.partitions(), |p| {
        Ok(PartitionMetadata {
            partition: p.partition(),
            shard: p.shard(),
            earliest_offset: p.earliest_offset(),
            high_watermark: p.high_watermark(),
            log_bytes: optional_size(p.log_bytes(), "log_bytes")?,
        })
    })?;
    Ok(TopicMetadata {
        name: string(t.name(), "TopicMetadata.name")?,
        error: error_code(t.error_code())?,
        message: t.error_message().map(str::to_string),
        partitions,
        retention_bytes: optional_size(t.retention_bytes(), "retention_bytes")?,
        retention_ms: optional_size(t.retention_ms(), "retention_ms")?,
        segment_bytes: optional_size(t.segment_bytes(), "segment_bytes")?,
    })
}

fn decode_group_description(
    d: fb::DescribeGroupResponse<'_>,
) -> Result<GroupDescription, ProtocolError> {
    let members = tables(d.members(), |m| {
        Ok(MemberDescription {
            member_id: string(m.member_id(), "MemberDescription.member_id")?,
            client_id: text(m.client_id()),
            host: text(m.host()),
            member_epoch: m.member_epoch(),
            session_timeout_ms: m.session_timeout_ms(),
            topics: strings(m.topics()),
            assignment: decode_topic_partitions(m.assignment())?,
            revoking: decode_topic_partitions(m.revoking())?,
        })
    })?;
    let offsets = tables(d.offsets(), |o| {
        let high_watermark = optional_i64(o.high_watermark());
        Ok(PartitionLag {
            topic: string(o.topic(), "PartitionLag.topic")?,
            partition: o.partition(),
            committed: o.committed(),
            metadata: text(o.metadata()),
            high_watermark,
            // Known exactly when the watermark is, so a lag of -1 (a commit one past the log
            // end) is not mistaken for "unknown".
            lag: high_watermark.map(|_| o.lag()),
        })
    })?;
    Ok(GroupDescription {
        group: string(d.group(), "DescribeGroupResponse.group")?,
        state: group_state(d.state())?,
        group_epoch: d.group_epoch(),
        assignment_epoch: d.assignment_epoch(),
        assignor: text(d.assignor()),
        members,
        offsets,
    })
}

fn decode_topic_results(
    results: Option<Vector<'_, ForwardsUOffset<fb::TopicResult<'_>>>>,
) -> Result<Vec<TopicResult>, ProtocolError> {
    tables(results, |r| {
        Ok(TopicResult {
            name: string(r.name(), "TopicResult.name")?,
            error: error_code(r.error_code())?,
            message: r.error_message().map(str::to_string),
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Prefix + header in one buffer with room for nothing else: the payload goes out separately.
fn framed(header: &[u8], payload_len: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(super::FRAME_PREFIX_BYTES + header.len());
    write_prefix(&mut out, header.len(), payload_len);
    out.extend_from_slice(header);
    out
}

type Union = WIPOffset<flatbuffers::UnionWIPOffset>;

fn string_vector<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    items: &[String],
) -> WIPOffset<Vector<'a, ForwardsUOffset<&'a str>>> {
    let offsets: Vec<_> = items.iter().map(|s| fbb.create_string(s)).collect();
    fbb.create_vector(&offsets)
}

/// A vector of tables, one `encode` makes of each item.
fn table_vector<'a, T, U>(
    fbb: &mut FlatBufferBuilder<'a>,
    items: &[T],
    mut encode: impl FnMut(&mut FlatBufferBuilder<'a>, &T) -> WIPOffset<U>,
) -> WIPOffset<Vector<'a, ForwardsUOffset<U>>> {
    let offsets: Vec<_> = items.iter().map(|item| encode(fbb, item)).collect();
    fbb.create_vector(&offsets)
}

fn topic_partitions_vector<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    items: &[TopicPartitions],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::TopicPartitions<'a>>>> {
    table_vector(fbb, items, |fbb, t| {
        let topic = Some(fbb.create_string(&t.topic));
        let partitions = Some(fbb.create_vector(&t.partitions));
        fb::TopicPartitions::create(fbb, &fb::TopicPartitionsArgs { topic, partitions })
    })
}

fn encode_request_body(
    fbb: &mut FlatBufferBuilder<'_>,
    body: &RequestBody,
) -> (fb::RequestBody, Union) {
    match body {
        RequestBody::ApiVersions => {
            let b = fb::ApiVersionsRequest::create(fbb, &fb::ApiVersionsRequestArgs {});
            (fb::RequestBody::ApiVersionsRequest, b.as_union_value())
        }
        RequestBody::Metadata { topics } => {
            let topics = (!topics.is_empty()).then(|| string_vector(fbb, topics));
            let b = fb::MetadataRequest::create(fbb, &fb::MetadataRequestArgs { topics });
            (fb::RequestBody::MetadataRequest, b.as_union_value())
        }
        RequestBody::CreateTopics { topics } => {
            let topics = Some(table_vector(fbb, topics, |fbb, t| {
                let name = Some(fbb.create_string(&t.name));
                fb::TopicSpec::create(
                    fbb,
                    &fb::TopicSpecArgs {
                        name,
                        partitions: t.partitions,
                        retention_bytes: size_field(t.retention_bytes),
                        retention_ms: size_field(t.retention_ms),
                        segment_bytes: size_field(t.segment_bytes),
                    },
                )
            }));
            let b = fb::CreateTopicsRequest::create(fbb, &fb::CreateTopicsRequestArgs { topics });
            (fb::RequestBody::CreateTopicsRequest, b.as_union_value())
        }
        RequestBody::DeleteTopics { names } => {
            let names = Some(string_vector(fbb, names));
            let b = fb::DeleteTopicsRequest::create(fbb, &fb::DeleteTopicsRequestArgs { names });
            (fb::RequestBody::DeleteTopicsRequest, b.as_union_value())
        }
        RequestBody::Produce(p) => {
            let topic = Some(fbb.create_string(&p.topic));
            let acks = match p.acks {
                Acks::None => fb::Acks::None,
                Acks::Leader => fb::Acks::Leader,
            };
            let b = fb::ProduceRequest::create(
                fbb,
                &fb::ProduceRequestArgs {
                    topic,
                    partition: p.partition,
                    acks,
                    timeout_ms: p.timeout_ms,
                },
            );
            (fb::RequestBody::ProduceRequest, b.as_union_value())
        }
        RequestBody::Fetch(f) => {
            let topic = Some(fbb.create_string(&f.topic));
            let b = fb::FetchRequest::create(
                fbb,
                &fb::FetchRequestArgs {
                    topic,
                    partition: f.partition,
                    offset: f.offset,
                    max_bytes: f.max_bytes,
                    max_wait_ms: f.max_wait_ms,
                    min_bytes: f.min_bytes,
                },
            );
            (fb::RequestBody::FetchRequest, b.as_union_value())
        }
        RequestBody::ListOffsets(l) => {
            let topic = Some(fbb.create_string(&l.topic));
            let (spec, timestamp) = match l.spec {
                OffsetSpec::Earliest => (fb::OffsetSpec::Earliest, 0),
                OffsetSpec::Latest => (fb::OffsetSpec::Latest, 0),
                OffsetSpec::Timestamp(ts) => (fb::OffsetSpec::Timestamp, ts),
            };
            let b = fb::ListOffsetsRequest::create(
                fbb,
                &fb::ListOffsetsRequestArgs {
                    topic,
                    partition: l.partition,
                    spec,
                    timestamp,
                },
            );
            (fb::RequestBody::ListOffsetsRequest, b.as_union_value())
        }
        RequestBody::GroupHeartbeat(h) => {
            let group = Some(fbb.create_string(&h.group));
            let member_id = Some(fbb.create_string(&h.member_id));
            let topics = Some(string_vector(fbb, &h.topics));
            let owned = Some(topic_partitions_vector(fbb, &h.owned));
            let assignor = h.assignor.as_deref().map(|a| fbb.create_string(a));
            let b = fb::GroupHeartbeatRequest::create(
                fbb,
                &fb::GroupHeartbeatRequestArgs {
                    group,
                    member_id,
                    member_epoch: h.member_epoch,
                    session_timeout_ms: h.session_timeout_ms,
                    topics,
                    owned,
                    assignor,
                },
            );
            (fb::RequestBody::GroupHeartbeatRequest, b.as_union_value())
        }
        RequestBody::OffsetCommit(c) => {
            let group = Some(fbb.create_string(&c.group));
            let member_id = Some(fbb.create_string(&c.member_id));
            let offsets = Some(table_vector(fbb, &c.offsets, |fbb, o| {
                let topic = Some(fbb.create_string(&o.topic));
                let metadata = Some(fbb.create_string(&o.metadata));
                fb::CommitOffset::create(
                    fbb,
                    &fb::CommitOffsetArgs {
                        topic,
                        partition: o.partition,
                        offset: o.offset,
                        metadata,
                    },
                )
            }));
            let b = fb::OffsetCommitRequest::create(
                fbb,
                &fb::OffsetCommitRequestArgs {
                    group,
                    member_id,
                    member_epoch: c.member_epoch,
                    offsets,
                },
            );
            (fb::RequestBody::OffsetCommitRequest, b.as_union_value())
        }
        RequestBody::OffsetFetch(f) => {
            let group = Some(fbb.create_string(&f.group));
            let topics = Some(string_vector(fbb, &f.topics));
            let b =
                fb::OffsetFetchRequest::create(fbb, &fb::OffsetFetchRequestArgs { group, topics });
            (fb::RequestBody::OffsetFetchRequest, b.as_union_value())
        }
        RequestBody::ListGroups => {
            let b = fb::ListGroupsRequest::create(fbb, &fb::ListGroupsRequestArgs {});
            (fb::RequestBody::ListGroupsRequest, b.as_union_value())
        }
        RequestBody::DescribeGroup { group } => {
            let group = Some(fbb.create_string(group));
            let b = fb::DescribeGroupRequest::create(fbb, &fb::DescribeGroupRequestArgs { group });
            (fb::RequestBody::DescribeGroupRequest, b.as_union_value())
        }
        RequestBody::DeleteGroup { group } => {
            let group = Some(fbb.create_string(group));
            let b = fb::DeleteGroupRequest::create(fbb, &fb::DeleteGroupRequestArgs { group });
            (fb::RequestBody::DeleteGroupRequest, b.as_union_value())
        }
    }
}

fn topic_results<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    results: &[TopicResult],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::TopicResult<'a>>>> {
    table_vector(fbb, results, |fbb, r| {
        let name = Some(fbb.create_string(&r.name));
        let error_message = r.message.as_deref().map(|m| fbb.create_string(m));
        fb::TopicResult::create(
            fbb,
            &fb::TopicResultArgs {
                name,
                error_code: fb::ErrorCode(r.error.as_i16()),
                error_message,
            },
        )
    })
}

fn member_descriptions<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    members: &[MemberDescription],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::MemberDescription<'a>>>> {
    table_vector(fbb, members, |fbb, m| {
        let member_id = Some(fbb.create_string(&m.member_id));
        let client_id = Some(fbb.create_string(&m.client_id));
        let host = Some(fbb.create_string(&m.host));
        let topics = Some(string_vector(fbb, &m.topics));
        let assignment = Some(topic_partitions_vector(fbb, &m.assignment));
        let revoking = Some(topic_partitions_vector(fbb, &m.revoking));
        fb::MemberDescription::create(
            fbb,
            &fb::MemberDescriptionArgs {
                member_id,
                client_id,
                host,
                member_epoch: m.member_epoch,
                session_timeout_ms: m.session_timeout_ms,
                topics,
                assignment,
                revoking,
            },
        )
    })
}

fn partition_lags<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    offsets: &[PartitionLag],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::PartitionLag<'a>>>> {
    table_vector(fbb, offsets, |fbb, o| {
        let topic = Some(fbb.create_string(&o.topic));
        let metadata = Some(fbb.create_string(&o.metadata));
        fb::PartitionLag::create(
            fbb,
            &fb::PartitionLagArgs {
                topic,
                partition: o.partition,
                committed: o.committed,
                metadata,
                high_watermark: o.high_watermark.unwrap_or(-1),
                lag: o.lag.unwrap_or(-1),
            },
        )
    })
}

fn encode_response_body(
    fbb: &mut FlatBufferBuilder<'_>,
    body: &ResponseBody,
) -> (fb::ResponseBody, Union) {
    match body {
        ResponseBody::ApiVersions(apis) => {
            let apis = Some(table_vector(fbb, apis, |fbb, a| {
                fb::ApiVersionRange::create(
                    fbb,
                    &fb::ApiVersionRangeArgs {
                        api: a.api.to_fb(),
                        min_version: a.min_version,
                        max_version: a.max_version,
                    },
                )
            }));
            let b = fb::ApiVersionsResponse::create(fbb, &fb::ApiVersionsResponseArgs { apis });
            (fb::ResponseBody::ApiVersionsResponse, b.as_union_value())
        }
        ResponseBody::Metadata(m) => {
            let shards = Some(table_vector(fbb, &m.shards, |fbb, s| {
                let host = Some(fbb.create_string(&s.host));
                fb::ShardEndpoint::create(
                    fbb,
                    &fb::ShardEndpointArgs {
                        shard: s.shard,
                        host,
                        port: s.port,
                    },
                )
            }));
            let topics = Some(table_vector(fbb, &m.topics, |fbb, t| {
                let partitions = Some(table_vector(fbb, &t.partitions, |fbb, p| {
                    fb::PartitionMetadata::create(
                        fbb,
                        &fb::PartitionMetadataArgs {
                            partition: p.partition,
                            shard: p.shard,
                            earliest_offset: p.earliest_offset,
                            high_watermark: p.high_watermark,
                            log_bytes: size_field(p.log_bytes),
                        },
                    )
                }));
                let name = Some(fbb.create_string(&t.name));
                let error_message = t.message.as_deref().map(|s| fbb.create_string(s));
                fb::TopicMetadata::create(
                    fbb,
                    &fb::TopicMetadataArgs {
                        name,
                        error_code: fb::ErrorCode(t.error.as_i16()),
                        error_message,
                        partitions,
                        retention_bytes: size_field(t.retention_bytes),
                        retention_ms: size_field(t.retention_ms),
                        segment_bytes: size_field(t.segment_bytes),
                    },
                )
            }));
            let host = Some(fbb.create_string(&m.host));
            let b = fb::MetadataResponse::create(
                fbb,
                &fb::MetadataResponseArgs {
                    host,
                    port: m.port,
                    shard_count: m.shard_count,
                    shards,
                    topics,
                },
            );
            (fb::ResponseBody::MetadataResponse, b.as_union_value())
        }
        ResponseBody::CreateTopics(results) => {
            let results = Some(topic_results(fbb, results));
            let b =
                fb::CreateTopicsResponse::create(fbb, &fb::CreateTopicsResponseArgs { results });
            (fb::ResponseBody::CreateTopicsResponse, b.as_union_value())
        }
        ResponseBody::DeleteTopics(results) => {
            let results = Some(topic_results(fbb, results));
            let b =
                fb::DeleteTopicsResponse::create(fbb, &fb::DeleteTopicsResponseArgs { results });
            (fb::ResponseBody::DeleteTopicsResponse, b.as_union_value())
        }
        ResponseBody::Produce(p) => {
            let b = fb::ProduceResponse::create(
                fbb,
                &fb::ProduceResponseArgs {
                    base_offset: p.base_offset,
                    last_offset: p.last_offset,
                    log_append_time_ms: p.log_append_time_ms,
                },
            );
            (fb::ResponseBody::ProduceResponse, b.as_union_value())
        }
        ResponseBody::Fetch(f) => {
            let b = fb::FetchResponse::create(
                fbb,
                &fb::FetchResponseArgs {
                    high_watermark: f.high_watermark,
                    log_start_offset: f.log_start_offset,
                },
            );
            (fb::ResponseBody::FetchResponse, b.as_union_value())
        }
        ResponseBody::ListOffsets(l) => {
            let b = fb::ListOffsetsResponse::create(
                fbb,
                &fb::ListOffsetsResponseArgs {
                    offset: l.offset.unwrap_or(-1),
                },
            );
            (fb::ResponseBody::ListOffsetsResponse, b.as_union_value())
        }
        ResponseBody::GroupHeartbeat(h) => {
            let member_id = Some(fbb.create_string(&h.member_id));
            let assignment = Some(topic_partitions_vector(fbb, &h.assignment));
            let b = fb::GroupHeartbeatResponse::create(
                fbb,
                &fb::GroupHeartbeatResponseArgs {
                    member_id,
                    member_epoch: h.member_epoch,
                    heartbeat_interval_ms: h.heartbeat_interval_ms,
                    assignment,
                },
            );
            (fb::ResponseBody::GroupHeartbeatResponse, b.as_union_value())
        }
        ResponseBody::OffsetCommit(results) => {
            let results = Some(table_vector(fbb, results, |fbb, r| {
                let topic = Some(fbb.create_string(&r.topic));
                let error_message = r.message.as_deref().map(|m| fbb.create_string(m));
                fb::PartitionResult::create(
                    fbb,
                    &fb::PartitionResultArgs {
                        topic,
                        partition: r.partition,
                        error_code: fb::ErrorCode(r.error.as_i16()),
                        error_message,
                    },
                )
            }));
            let b =
                fb::OffsetCommitResponse::create(fbb, &fb::OffsetCommitResponseArgs { results });
            (fb::ResponseBody::OffsetCommitResponse, b.as_union_value())
        }
        ResponseBody::OffsetFetch(offsets) => {
            let offsets = Some(table_vector(fbb, offsets, |fbb, o| {
                let topic = Some(fbb.create_string(&o.topic));
                let metadata = Some(fbb.create_string(&o.metadata));
                fb::CommittedOffset::create(
                    fbb,
                    &fb::CommittedOffsetArgs {
                        topic,
                        partition: o.partition,
                        offset: o.offset,
                        metadata,
                        commit_time_ms: o.commit_time_ms,
                    },
                )
            }));
            let b = fb::OffsetFetchResponse::create(fbb, &fb::OffsetFetchResponseArgs { offsets });
            (fb::ResponseBody::OffsetFetchResponse, b.as_union_value())
        }
        ResponseBody::ListGroups(groups) => {
            let groups = Some(table_vector(fbb, groups, |fbb, g| {
                let group = Some(fbb.create_string(&g.group));
                fb::GroupListing::create(
                    fbb,
                    &fb::GroupListingArgs {
                        group,
                        state: group_state_field(g.state),
                        group_epoch: g.group_epoch,
                        members: g.members,
                    },
                )
            }));
            let b = fb::ListGroupsResponse::create(fbb, &fb::ListGroupsResponseArgs { groups });
            (fb::ResponseBody::ListGroupsResponse, b.as_union_value())
        }
        ResponseBody::DescribeGroup(d) => {
            let group = Some(fbb.create_string(&d.group));
            let assignor = Some(fbb.create_string(&d.assignor));
            let members = Some(member_descriptions(fbb, &d.members));
            let offsets = Some(partition_lags(fbb, &d.offsets));
            let b = fb::DescribeGroupResponse::create(
                fbb,
                &fb::DescribeGroupResponseArgs {
                    group,
                    state: group_state_field(d.state),
                    group_epoch: d.group_epoch,
                    assignment_epoch: d.assignment_epoch,
                    assignor,
                    members,
                    offsets,
                },
            );
            (fb::ResponseBody::DescribeGroupResponse, b.as_union_value())
        }
        ResponseBody::DeleteGroup => {
            let b = fb::DeleteGroupResponse::create(fbb, &fb::DeleteGroupResponseArgs {});
            (fb::ResponseBody::DeleteGroupResponse, b.as_union_value())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{
        FrameDecoder, MEMBER_EPOCH_ADMIN, MEMBER_EPOCH_JOIN, MEMBER_EPOCH_LEAVE,
    };
    use proptest::prelude::*;

    fn tp(topic: &str, partitions: &[u32]) -> TopicPartitions {
        TopicPartitions {
            topic: topic.into(),
            partitions: partitions.to_vec(),
        }
    }

    fn roundtrip_request(req: &Request) {
        let mut frame = req.encode_frame(3);
        frame.extend_from_slice(b"abc");
        let got = FrameDecoder::default().decode(&mut frame).unwrap().unwrap();
        assert_eq!(&got.payload[..], b"abc");
        assert_eq!(&Request::decode(&got.header).unwrap(), req);
    }

    fn roundtrip_response(resp: &Response) {
        let mut frame = resp.encode_frame(0);
        let got = FrameDecoder::default().decode(&mut frame).unwrap().unwrap();
        assert!(got.payload.is_empty());
        assert_eq!(&Response::decode(&got.header).unwrap(), resp);
    }

    fn request(body: RequestBody) -> Request {
        Request {
            api_version: API_VERSION,
            correlation_id: 77,
            client_id: Some("test".into()),
            body,
        }
    }

    fn ok(body: ResponseBody) -> Response {
        Response {
            correlation_id: 9,
            error: ErrorCode::None,
            message: None,
            body: Some(body),
        }
    }

    #[test]
    fn every_request_round_trips() {
        let bodies = [
            RequestBody::ApiVersions,
            RequestBody::Metadata { topics: vec![] },
            RequestBody::Metadata {
                topics: vec!["a".into(), "b.c".into()],
            },
            RequestBody::CreateTopics {
                topics: vec![TopicSpec {
                    name: "t".into(),
                    partitions: 4,
                    retention_bytes: Some(1 << 30),
                    retention_ms: None,
                    segment_bytes: Some(1 << 20),
                }],
            },
            RequestBody::DeleteTopics {
                names: vec!["t".into()],
            },
            RequestBody::Produce(ProduceRequest {
                topic: "t".into(),
                partition: 3,
                acks: Acks::None,
                timeout_ms: 5,
            }),
            RequestBody::Fetch(FetchRequest {
                topic: "t".into(),
                partition: 1,
                offset: 1234,
                max_bytes: 99,
                max_wait_ms: 0,
                min_bytes: 7,
            }),
            RequestBody::ListOffsets(ListOffsetsRequest {
                topic: "t".into(),
                partition: 0,
                spec: OffsetSpec::Timestamp(1_700_000_000_000),
            }),
            RequestBody::ListOffsets(ListOffsetsRequest {
                topic: "t".into(),
                partition: 0,
                spec: OffsetSpec::Latest,
            }),
            RequestBody::GroupHeartbeat(GroupHeartbeatRequest {
                group: "g".into(),
                member_id: String::new(),
                member_epoch: MEMBER_EPOCH_JOIN,
                session_timeout_ms: 45_000,
                topics: vec!["a".into(), "b".into()],
                owned: vec![],
                assignor: Some("sticky".into()),
            }),
            RequestBody::GroupHeartbeat(GroupHeartbeatRequest {
                group: "g".into(),
                member_id: "m-1".into(),
                member_epoch: 7,
                session_timeout_ms: 10_000,
                topics: vec!["a".into()],
                owned: vec![tp("a", &[0, 2, 5]), tp("b", &[])],
                assignor: None,
            }),
            RequestBody::GroupHeartbeat(GroupHeartbeatRequest {
                group: "g".into(),
                member_id: "m-1".into(),
                member_epoch: MEMBER_EPOCH_LEAVE,
                session_timeout_ms: 0,
                topics: vec![],
                owned: vec![],
                assignor: Some(String::new()),
            }),
            RequestBody::OffsetCommit(OffsetCommitRequest {
                group: "g".into(),
                member_id: "m-1".into(),
                member_epoch: 7,
                offsets: vec![
                    CommitOffset {
                        topic: "a".into(),
                        partition: 2,
                        offset: 1234,
                        metadata: "host-1".into(),
                    },
                    CommitOffset {
                        topic: "b".into(),
                        partition: 0,
                        offset: 0,
                        metadata: String::new(),
                    },
                ],
            }),
            RequestBody::OffsetCommit(OffsetCommitRequest {
                group: "g".into(),
                member_id: String::new(),
                member_epoch: MEMBER_EPOCH_ADMIN,
                offsets: vec![CommitOffset {
                    topic: "a".into(),
                    partition: 1,
                    offset: -3,
                    metadata: "reset".into(),
                }],
            }),
            RequestBody::OffsetFetch(OffsetFetchRequest {
                group: "g".into(),
                topics: vec![],
            }),
            RequestBody::OffsetFetch(OffsetFetchRequest {
                group: "g".into(),
                topics: vec!["a".into(), "b".into()],
            }),
            RequestBody::ListGroups,
            RequestBody::DescribeGroup { group: "g".into() },
            RequestBody::DeleteGroup {
                group: "old".into(),
            },
        ];
        for body in bodies {
            roundtrip_request(&request(body));
        }
        let mut anonymous = request(RequestBody::ApiVersions);
        anonymous.client_id = None;
        roundtrip_request(&anonymous);
    }

    #[test]
    fn every_response_round_trips() {
        let results = vec![
            TopicResult {
                name: "a".into(),
                error: ErrorCode::None,
                message: None,
            },
            TopicResult {
                name: "b".into(),
                error: ErrorCode::TopicAlreadyExists,
                message: Some("topic \"b\" already exists".into()),
            },
        ];
        let bodies = [
            ResponseBody::ApiVersions(
                ApiKey::ALL
                    .into_iter()
                    .map(|api| ApiVersionRange {
                        api,
                        min_version: 0,
                        max_version: 0,
                    })
                    .collect(),
            ),
            ResponseBody::Metadata(MetadataResponse {
                host: "127.0.0.1".into(),
                port: 9700,
                shard_count: 2,
                shards: vec![ShardEndpoint {
                    shard: 1,
                    host: "127.0.0.1".into(),
                    port: 9702,
                }],
                topics: vec![TopicMetadata {
                    name: "t".into(),
                    error: ErrorCode::None,
                    message: None,
                    partitions: vec![PartitionMetadata {
                        partition: 0,
                        shard: 1,
                        earliest_offset: 5,
                        high_watermark: 10,
                        log_bytes: Some(4096),
                    }],
                    retention_bytes: None,
                    retention_ms: Some(1000),
                    segment_bytes: Some(1 << 20),
                }],
            }),
            ResponseBody::CreateTopics(results.clone()),
            ResponseBody::DeleteTopics(results),
            ResponseBody::Produce(ProduceResponse {
                base_offset: 10,
                last_offset: 19,
                log_append_time_ms: 1,
            }),
            ResponseBody::Fetch(FetchResponse {
                high_watermark: 100,
                log_start_offset: 0,
            }),
            ResponseBody::ListOffsets(ListOffsetsResponse { offset: None }),
            ResponseBody::ListOffsets(ListOffsetsResponse { offset: Some(0) }),
            ResponseBody::GroupHeartbeat(GroupHeartbeatResponse {
                member_id: "m-1".into(),
                member_epoch: 8,
                heartbeat_interval_ms: 3000,
                assignment: vec![tp("a", &[1, 3]), tp("b", &[0])],
            }),
            ResponseBody::GroupHeartbeat(GroupHeartbeatResponse {
                member_id: "m-2".into(),
                member_epoch: 1,
                heartbeat_interval_ms: 0,
                assignment: vec![],
            }),
            ResponseBody::OffsetCommit(vec![
                PartitionResult {
                    topic: "a".into(),
                    partition: 1,
                    error: ErrorCode::None,
                    message: None,
                },
                PartitionResult {
                    topic: "a".into(),
                    partition: 4,
                    error: ErrorCode::NotAssigned,
                    message: Some("a/4 is not assigned to m-1".into()),
                },
            ]),
            ResponseBody::OffsetFetch(vec![]),
            ResponseBody::OffsetFetch(vec![CommittedOffset {
                topic: "a".into(),
                partition: 3,
                offset: 99,
                metadata: "m".into(),
                commit_time_ms: 1_700_000_000_123,
            }]),
            ResponseBody::ListGroups(vec![
                GroupListing {
                    group: "g".into(),
                    state: GroupState::Stable,
                    group_epoch: 12,
                    members: 3,
                },
                GroupListing {
                    group: "h".into(),
                    state: GroupState::Empty,
                    group_epoch: 0,
                    members: 0,
                },
                GroupListing {
                    group: "i".into(),
                    state: GroupState::Reconciling,
                    group_epoch: 2,
                    members: 1,
                },
            ]),
            ResponseBody::DescribeGroup(GroupDescription {
                group: "g".into(),
                state: GroupState::Reconciling,
                group_epoch: 5,
                assignment_epoch: 4,
                assignor: "range".into(),
                members: vec![
                    MemberDescription {
                        member_id: "m-1".into(),
                        client_id: "consumer-1".into(),
                        host: "10.0.0.1:51234".into(),
                        member_epoch: 5,
                        session_timeout_ms: 45_000,
                        topics: vec!["a".into(), "b".into()],
                        assignment: vec![tp("a", &[0, 1])],
                        revoking: vec![tp("b", &[2])],
                    },
                    MemberDescription {
                        member_id: "m-2".into(),
                        client_id: String::new(),
                        host: String::new(),
                        member_epoch: 4,
                        session_timeout_ms: 10_000,
                        topics: vec![],
                        assignment: vec![],
                        revoking: vec![],
                    },
                ],
                offsets: vec![
                    PartitionLag {
                        topic: "a".into(),
                        partition: 0,
                        committed: 10,
                        metadata: "x".into(),
                        high_watermark: Some(15),
                        lag: Some(5),
                    },
                    PartitionLag {
                        topic: "a".into(),
                        partition: 1,
                        committed: 7,
                        metadata: String::new(),
                        high_watermark: None,
                        lag: None,
                    },
                    // A commit one past the log end: a lag of -1 is still a lag.
                    PartitionLag {
                        topic: "b".into(),
                        partition: 2,
                        committed: 21,
                        metadata: String::new(),
                        high_watermark: Some(20),
                        lag: Some(-1),
                    },
                ],
            }),
            ResponseBody::DescribeGroup(GroupDescription {
                group: "empty".into(),
                state: GroupState::Empty,
                group_epoch: 0,
                assignment_epoch: 0,
                assignor: String::new(),
                members: vec![],
                offsets: vec![],
            }),
            ResponseBody::DeleteGroup,
        ];
        for body in bodies {
            roundtrip_response(&ok(body));
        }
        roundtrip_response(&Response {
            correlation_id: 1,
            error: ErrorCode::UnknownTopic,
            message: Some("unknown topic \"x\"".into()),
            body: None,
        });
        roundtrip_response(&Response {
            correlation_id: 2,
            error: ErrorCode::FencedMemberEpoch,
            message: Some("epoch 3 of m-1 is fenced".into()),
            body: None,
        });
    }

    #[test]
    fn every_api_key_maps_to_the_schema() {
        assert_eq!(ApiKey::ALL.len(), fb::ApiKey::ENUM_VALUES.len());
        for (key, generated) in ApiKey::ALL
            .into_iter()
            .zip(fb::ApiKey::ENUM_VALUES.iter().copied())
        {
            assert_eq!(key.to_fb(), generated);
            assert_eq!(ApiKey::from_fb(generated), Ok(key));
            assert_eq!(Some(format!("{key:?}").as_str()), generated.variant_name());
        }
    }

    #[test]
    fn a_request_without_a_body_is_rejected() {
        let mut fbb = FlatBufferBuilder::new();
        let root = fb::Request::create(&mut fbb, &fb::RequestArgs::default());
        fbb.finish(root, Some(FILE_IDENTIFIER));
        assert_eq!(
            Request::decode(fbb.finished_data()),
            Err(ProtocolError::MissingBody)
        );
    }

    #[test]
    fn a_produce_without_a_topic_is_rejected() {
        let mut fbb = FlatBufferBuilder::new();
        let body = fb::ProduceRequest::create(&mut fbb, &fb::ProduceRequestArgs::default());
        let root = fb::Request::create(
            &mut fbb,
            &fb::RequestArgs {
                body_type: fb::RequestBody::ProduceRequest,
                body: Some(body.as_union_value()),
                ..Default::default()
            },
        );
        fbb.finish(root, Some(FILE_IDENTIFIER));
        assert_eq!(
            Request::decode(fbb.finished_data()),
            Err(ProtocolError::MissingField("ProduceRequest.topic"))
        );
    }

    #[test]
    fn a_group_heartbeat_without_a_group_is_rejected() {
        let mut fbb = FlatBufferBuilder::new();
        let member_id = Some(fbb.create_string(""));
        let body = fb::GroupHeartbeatRequest::create(
            &mut fbb,
            &fb::GroupHeartbeatRequestArgs {
                member_id,
                ..Default::default()
            },
        );
        let root = fb::Request::create(
            &mut fbb,
            &fb::RequestArgs {
                body_type: fb::RequestBody::GroupHeartbeatRequest,
                body: Some(body.as_union_value()),
                ..Default::default()
            },
        );
        fbb.finish(root, Some(FILE_IDENTIFIER));
        assert_eq!(
            Request::decode(fbb.finished_data()),
            Err(ProtocolError::MissingField("GroupHeartbeatRequest.group"))
        );
    }

    #[test]
    fn an_unknown_group_state_is_rejected() {
        let mut fbb = FlatBufferBuilder::new();
        let group = Some(fbb.create_string("g"));
        let listing = fb::GroupListing::create(
            &mut fbb,
            &fb::GroupListingArgs {
                group,
                state: fb::GroupState(9),
                ..Default::default()
            },
        );
        let groups = Some(fbb.create_vector(&[listing]));
        let body = fb::ListGroupsResponse::create(&mut fbb, &fb::ListGroupsResponseArgs { groups });
        let root = fb::Response::create(
            &mut fbb,
            &fb::ResponseArgs {
                body_type: fb::ResponseBody::ListGroupsResponse,
                body: Some(body.as_union_value()),
                ..Default::default()
            },
        );
        fbb.finish(root, Some(FILE_IDENTIFIER));
        assert_eq!(
            Response::decode(fbb.finished_data()),
            Err(ProtocolError::UnknownEnum {
                field: "state",
                value: 9
            })
        );
    }

    #[test]
    fn a_response_is_not_a_request() {
        let frame = ok(ResponseBody::Fetch(FetchResponse {
            high_watermark: 1,
            log_start_offset: 0,
        }))
        .encode_frame(0);
        // Same identifier, different root table: the verifier or the body type catches it.
        assert!(Request::decode(&frame[8..]).is_err());
    }

    #[test]
    fn wrong_identifier_and_short_buffers_are_malformed() {
        let frame = request(RequestBody::ApiVersions).encode_frame(0);
        let mut header = frame[8..].to_vec();
        header[4] = b'X';
        assert!(matches!(
            Request::decode(&header),
            Err(ProtocolError::Malformed(_))
        ));
        for len in 0..8 {
            assert!(Request::decode(&vec![0u8; len]).is_err());
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
        }

        #[test]
        fn corrupted_headers_never_panic(at in 0usize..200, value in any::<u8>()) {
            let frame = request(RequestBody::Fetch(FetchRequest {
                topic: "orders".into(),
                partition: 1,
                offset: 5,
                max_bytes: 10,
                max_wait_ms: 10,
                min_bytes: 1,
            }))
            .encode_frame(0);
            let mut header = frame[8..].to_vec();
            let at = at % header.len();
            header[at] = value;
            let _ = Request::decode(&header);
        }

        #[test]
        fn corrupted_group_headers_never_panic(at in 0usize..1000, value in any::<u8>()) {
            let frame = ok(ResponseBody::DescribeGroup(GroupDescription {
                group: "g".into(),
                state: GroupState::Stable,
                group_epoch: 3,
                assignment_epoch: 3,
                assignor: "range".into(),
                members: vec![MemberDescription {
                    member_id: "m".into(),
                    client_id: "c".into(),
                    host: "h".into(),
                    member_epoch: 3,
                    session_timeout_ms: 100,
                    topics: vec!["a".into()],
                    assignment: vec![tp("a", &[0, 1])],
                    revoking: vec![tp("a", &[2])],
                }],
                offsets: vec![PartitionLag {
                    topic: "a".into(),
                    partition: 0,
                    committed: 1,
                    metadata: String::new(),
                    high_watermark: Some(2),
                    lag: Some(1),
                }],
            }))
            .encode_frame(0);
            let mut header = frame[8..].to_vec();
            let at = at % header.len();
            header[at] = value;
            let _ = Response::decode(&header);
            let _ = Request::decode(&header);
        }
    }
}
