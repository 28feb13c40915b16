//! Plain Rust types for the `Request` and `Response` headers, and their mapping to and from the
//! generated flatbuffers code. Decoding verifies the buffer first and reports any problem as a
//! `ProtocolError`, never a panic; encoding writes the frame prefix and the header in one buffer
//! (the payload is sent after it, untouched).

use bytes::BytesMut;
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, VerifierOptions, WIPOffset};

use super::error::{ErrorCode, ProtocolError};
use super::fb;
use super::frame::{write_prefix, MAX_HEADER_BYTES};

/// The one version of every operation this build speaks.
pub const API_VERSION: u16 = 0;

/// The flatbuffers file identifier of every header.
pub const FILE_IDENTIFIER: &str = "STRA";

/// Most tables a header may hold (a Metadata response lists every partition).
const MAX_HEADER_TABLES: usize = 1 << 20;
/// Deepest nesting a header may have (Response → body → topic → partition is 4).
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
}

impl ApiKey {
    /// Every operation, in schema order.
    pub const ALL: [ApiKey; 7] = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
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
        max_apparent_size: MAX_HEADER_BYTES,
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

fn strings(value: Option<Vector<'_, ForwardsUOffset<&str>>>) -> Vec<String> {
    value
        .map(|v| v.iter().map(str::to_string).collect())
        .unwrap_or_default()
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
                let topics = c
                    .topics()
                    .map(|v| {
                        v.iter()
                            .map(|t| {
                                Ok(TopicSpec {
                                    name: string(t.name(), "TopicSpec.name")?,
                                    partitions: t.partitions(),
                                    retention_bytes: optional_size(
                                        t.retention_bytes(),
                                        "retention_bytes",
                                    )?,
                                    retention_ms: optional_size(t.retention_ms(), "retention_ms")?,
                                    segment_bytes: optional_size(
                                        t.segment_bytes(),
                                        "segment_bytes",
                                    )?,
                                })
                            })
                            .collect::<Result<Vec<_>, ProtocolError>>()
                    })
                    .transpose()?
                    .unwrap_or_default();
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
                let apis = a
                    .apis()
                    .map(|v| {
                        v.iter()
                            .map(|r| {
                                Ok(ApiVersionRange {
                                    api: ApiKey::from_fb(r.api())?,
                                    min_version: r.min_version(),
                                    max_version: r.max_version(),
                                })
                            })
                            .collect::<Result<Vec<_>, ProtocolError>>()
                    })
                    .transpose()?
                    .unwrap_or_default();
                Some(ResponseBody::ApiVersions(apis))
            }
            fb::ResponseBody::MetadataResponse => {
                let m = required(resp.body_as_metadata_response(), "body")?;
                let shards = m
                    .shards()
                    .map(|v| {
                        v.iter()
                            .map(|s| {
                                Ok(ShardEndpoint {
                                    shard: s.shard(),
                                    host: string(s.host(), "ShardEndpoint.host")?,
                                    port: s.port(),
                                })
                            })
                            .collect::<Result<Vec<_>, ProtocolError>>()
                    })
                    .transpose()?
                    .unwrap_or_default();
                let topics = m
                    .topics()
                    .map(|v| v.iter().map(decode_topic_metadata).collect())
                    .transpose()?
                    .unwrap_or_default();
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
    let partitions = t
        .partitions()
        .map(|v| {
            v.iter()
                .map(|p| {
                    Ok(PartitionMetadata {
                        partition: p.partition(),
                        shard: p.shard(),
                        earliest_offset: p.earliest_offset(),
                        high_watermark: p.high_watermark(),
                        log_bytes: optional_size(p.log_bytes(), "log_bytes")?,
                    })
                })
                .collect::<Result<Vec<_>, ProtocolError>>()
        })
        .transpose()?
        .unwrap_or_default();
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

fn decode_topic_results(
    results: Option<Vector<'_, ForwardsUOffset<fb::TopicResult<'_>>>>,
) -> Result<Vec<TopicResult>, ProtocolError> {
    results
        .map(|v| {
            v.iter()
                .map(|r| {
                    Ok(TopicResult {
                        name: string(r.name(), "TopicResult.name")?,
                        error: error_code(r.error_code())?,
                        message: r.error_message().map(str::to_string),
                    })
                })
                .collect()
        })
        .transpose()
        .map(Option::unwrap_or_default)
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
            let specs: Vec<_> = topics
                .iter()
                .map(|t| {
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
                })
                .collect();
            let topics = Some(fbb.create_vector(&specs));
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
    }
}

fn topic_results<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    results: &[TopicResult],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::TopicResult<'a>>>> {
    let items: Vec<_> = results
        .iter()
        .map(|r| {
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
        .collect();
    fbb.create_vector(&items)
}

fn encode_response_body(
    fbb: &mut FlatBufferBuilder<'_>,
    body: &ResponseBody,
) -> (fb::ResponseBody, Union) {
    match body {
        ResponseBody::ApiVersions(apis) => {
            let items: Vec<_> = apis
                .iter()
                .map(|a| {
                    fb::ApiVersionRange::create(
                        fbb,
                        &fb::ApiVersionRangeArgs {
                            api: a.api.to_fb(),
                            min_version: a.min_version,
                            max_version: a.max_version,
                        },
                    )
                })
                .collect();
            let apis = Some(fbb.create_vector(&items));
            let b = fb::ApiVersionsResponse::create(fbb, &fb::ApiVersionsResponseArgs { apis });
            (fb::ResponseBody::ApiVersionsResponse, b.as_union_value())
        }
        ResponseBody::Metadata(m) => {
            let shards: Vec<_> = m
                .shards
                .iter()
                .map(|s| {
                    let host = Some(fbb.create_string(&s.host));
                    fb::ShardEndpoint::create(
                        fbb,
                        &fb::ShardEndpointArgs {
                            shard: s.shard,
                            host,
                            port: s.port,
                        },
                    )
                })
                .collect();
            let shards = Some(fbb.create_vector(&shards));
            let topics: Vec<_> = m
                .topics
                .iter()
                .map(|t| {
                    let partitions: Vec<_> = t
                        .partitions
                        .iter()
                        .map(|p| {
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
                        })
                        .collect();
                    let partitions = Some(fbb.create_vector(&partitions));
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
                })
                .collect();
            let topics = Some(fbb.create_vector(&topics));
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FrameDecoder;
    use proptest::prelude::*;

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
    }
}
