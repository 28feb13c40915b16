//! One blocking, pipelined connection to a broker: requests go out as they are sent, responses
//! come back in request order and are matched by correlation id. Runtime-agnostic (std sockets),
//! so tests, the command line and any application can use it.

use std::collections::VecDeque;
use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::protocol::{
    Acks, ApiKey, CommittedOffset, ErrorCode, FetchRequest, FetchResponse, Frame, FrameDecoder,
    GroupDescription, GroupHeartbeatRequest, GroupHeartbeatResponse, GroupListing,
    ListOffsetsRequest, MetadataResponse, OffsetCommitRequest, OffsetFetchRequest, OffsetSpec,
    PartitionResult, ProduceRequest, ProduceResponse, Request, RequestBody, Response, ResponseBody,
    TopicResult, TopicSpec, API_VERSION, MAX_LENGTH_FIELD,
};
use crate::record::next_batch_len;

use super::ClientError;

/// Largest response frame the client accepts (a fetch answer is bounded by its `max_bytes`).
pub const MAX_RESPONSE_FRAME_BYTES: usize = 256 << 20;
/// Bytes asked of the socket per read at least.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// How long `connect` waits for the TCP handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The sending half of a connection: frames requests and writes them with their payload.
pub struct RequestWriter {
    addr: SocketAddr,
    stream: TcpStream,
    client_id: Option<String>,
    next_correlation_id: u32,
}

impl RequestWriter {
    /// Writes a request with `payload` (whole record batches for Produce); returns its
    /// correlation id. Payload slices are written as they are (vectored), never joined.
    pub fn send(&mut self, body: RequestBody, payload: &[Bytes]) -> Result<u32, ClientError> {
        let payload_len: usize = payload.iter().map(Bytes::len).sum();
        if payload_len > MAX_LENGTH_FIELD / 2 {
            return Err(ClientError::Invalid(format!(
                "payload of {payload_len} bytes is too large for one frame"
            )));
        }
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let head = Request {
            api_version: API_VERSION,
            correlation_id,
            client_id: self.client_id.clone(),
            body,
        }
        .encode_frame(payload_len);
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(1 + payload.len());
        slices.push(IoSlice::new(&head));
        slices.extend(payload.iter().map(|b| IoSlice::new(b)));
        write_all_vectored(&mut self.stream, &mut slices).map_err(|source| ClientError::Io {
            addr: self.addr,
            source,
        })?;
        Ok(correlation_id)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes both directions: a reader blocked on this connection sees the end.
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// The receiving half of a connection: reads whole response frames.
pub struct ResponseReader {
    addr: SocketAddr,
    stream: TcpStream,
    recv: BytesMut,
    decoder: FrameDecoder,
}

impl ResponseReader {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reads the next response and its payload (responses come in request order).
    pub fn read(&mut self) -> Result<(Response, BytesMut), ClientError> {
        let Frame { header, payload } = self.read_frame()?;
        let response =
            Response::decode(&header).map_err(|e| ClientError::malformed_header(self.addr, e))?;
        Ok((response, payload))
    }

    /// Bounds how long `read` blocks; `None` waits forever.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.stream
            .set_read_timeout(timeout)
            .map_err(|source| ClientError::Io {
                addr: self.addr,
                source,
            })
    }

    fn read_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.recv)
                .map_err(|e| ClientError::malformed_frame(self.addr, e))?
            {
                return Ok(frame);
            }
            let want = self
                .decoder
                .needed(&self.recv)
                .map_or(0, |n| n.saturating_sub(self.recv.len()))
                .max(READ_CHUNK_BYTES);
            let filled = self.recv.len();
            self.recv.resize(filled + want, 0);
            let read = self.stream.read(&mut self.recv[filled..]);
            match read {
                Ok(0) => {
                    self.recv.truncate(filled);
                    return Err(ClientError::Closed { addr: self.addr });
                }
                Ok(n) => self.recv.truncate(filled + n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => self.recv.truncate(filled),
                Err(source) => {
                    self.recv.truncate(filled);
                    return Err(ClientError::Io {
                        addr: self.addr,
                        source,
                    });
                }
            }
        }
    }
}

/// A connection. Invariant: `in_flight` lists, oldest first, the requests sent whose response
/// has not been read (produces with `Acks::None` get none and are not listed).
pub struct Connection {
    writer: RequestWriter,
    reader: ResponseReader,
    in_flight: VecDeque<(u32, ApiKey)>,
}

impl Connection {
    /// Connects to `addr` (`HOST:PORT`), trying each address it resolves to.
    pub fn connect(addr: &str) -> Result<Connection, ClientError> {
        let connect_err = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let mut last = None;
        for candidate in addr.to_socket_addrs().map_err(connect_err)? {
            match TcpStream::connect_timeout(&candidate, CONNECT_TIMEOUT) {
                Ok(stream) => return Connection::from_stream(stream),
                Err(e) => last = Some(e),
            }
        }
        Err(connect_err(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the address resolves to nothing",
            )
        })))
    }

    fn from_stream(stream: TcpStream) -> Result<Connection, ClientError> {
        let addr = stream.peer_addr().map_err(|source| ClientError::Connect {
            addr: "?".into(),
            source,
        })?;
        let io = |source| ClientError::Io { addr, source };
        // Small requests must not wait for delayed ACKs (Nagle).
        stream.set_nodelay(true).map_err(io)?;
        let read_half = stream.try_clone().map_err(io)?;
        Ok(Connection {
            writer: RequestWriter {
                addr,
                stream,
                client_id: None,
                next_correlation_id: 1,
            },
            reader: ResponseReader {
                addr,
                stream: read_half,
                recv: BytesMut::with_capacity(READ_CHUNK_BYTES),
                decoder: FrameDecoder::new(MAX_RESPONSE_FRAME_BYTES),
            },
            in_flight: VecDeque::new(),
        })
    }

    /// Names this client in every request (the broker logs it).
    pub fn with_client_id(mut self, id: impl Into<String>) -> Connection {
        self.writer.client_id = Some(id.into());
        self
    }

    /// The two halves, for a sender and a receiver on different threads (the caller then
    /// matches responses to requests: they come back in request order).
    pub fn into_split(self) -> (RequestWriter, ResponseReader) {
        debug_assert!(self.in_flight.is_empty(), "split with responses pending");
        (self.writer, self.reader)
    }

    pub fn addr(&self) -> SocketAddr {
        self.writer.addr
    }

    /// Requests sent whose response has not been read yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Bounds how long `receive` blocks; `None` waits forever.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.reader.set_read_timeout(timeout)
    }

    /// Sends a request with `payload` without waiting for the answer; returns its correlation id.
    pub fn send(&mut self, body: RequestBody, payload: &[Bytes]) -> Result<u32, ClientError> {
        let api = body.api_key();
        let silent = matches!(&body, RequestBody::Produce(p) if p.acks == Acks::None);
        let correlation_id = self.writer.send(body, payload)?;
        if !silent {
            self.in_flight.push_back((correlation_id, api));
        }
        Ok(correlation_id)
    }

    /// Reads the response to the oldest request in flight, with its payload.
    pub fn receive(&mut self) -> Result<(Response, BytesMut), ClientError> {
        let Some(&(want_id, want_api)) = self.in_flight.front() else {
            return Err(ClientError::Invalid("no request in flight".into()));
        };
        let (response, payload) = self.reader.read()?;
        let got_api = response.body.as_ref().map(ResponseBody::api_key);
        if response.correlation_id != want_id && !response.error.is_ok() && got_api.is_none() {
            // The broker could not read a request of ours (its correlation id unknown to it)
            // and closes the connection after this answer: its message says why.
            return Err(ClientError::Broker {
                code: response.error,
                message: response.message.unwrap_or_default(),
            });
        }
        if response.correlation_id != want_id || got_api.is_some_and(|a| a != want_api) {
            return Err(ClientError::Mismatch {
                addr: self.addr(),
                want: want_api,
                got: got_api,
                correlation_id: response.correlation_id,
            });
        }
        self.in_flight.pop_front();
        Ok((response, payload))
    }

    /// `receive`, with a broker error turned into `Err`.
    pub fn receive_ok(&mut self) -> Result<(ResponseBody, BytesMut), ClientError> {
        let want = self.in_flight.front().map(|&(_, api)| api);
        let (response, payload) = self.receive()?;
        into_body(self.addr(), want.unwrap_or(ApiKey::ApiVersions), response).map(|b| (b, payload))
    }

    /// Sends one request and waits for its answer (after any already in flight).
    pub fn call(
        &mut self,
        body: RequestBody,
        payload: &[Bytes],
    ) -> Result<(ResponseBody, BytesMut), ClientError> {
        self.send(body, payload)?;
        while self.in_flight.len() > 1 {
            self.receive()?;
        }
        self.receive_ok()
    }

    // -- One call per operation ------------------------------------------------------------

    /// Metadata of `topics` (every topic when empty).
    pub fn metadata(&mut self, topics: &[String]) -> Result<MetadataResponse, ClientError> {
        let body = RequestBody::Metadata {
            topics: topics.to_vec(),
        };
        match self.call(body, &[])?.0 {
            ResponseBody::Metadata(m) => Ok(m),
            other => Err(self.mismatch(ApiKey::Metadata, &other)),
        }
    }

    /// Creates topics; one result per topic (a failed topic does not fail the call).
    pub fn create_topics(
        &mut self,
        topics: Vec<TopicSpec>,
    ) -> Result<Vec<TopicResult>, ClientError> {
        match self.call(RequestBody::CreateTopics { topics }, &[])?.0 {
            ResponseBody::CreateTopics(r) => Ok(r),
            other => Err(self.mismatch(ApiKey::CreateTopics, &other)),
        }
    }

    /// Creates one topic; its own error (e.g. TopicAlreadyExists) becomes `Err`.
    pub fn create_topic(&mut self, spec: TopicSpec) -> Result<(), ClientError> {
        let results = self.create_topics(vec![spec])?;
        topic_result(results)
    }

    /// Deletes topics; one result per topic.
    pub fn delete_topics(&mut self, names: Vec<String>) -> Result<Vec<TopicResult>, ClientError> {
        match self.call(RequestBody::DeleteTopics { names }, &[])?.0 {
            ResponseBody::DeleteTopics(r) => Ok(r),
            other => Err(self.mismatch(ApiKey::DeleteTopics, &other)),
        }
    }

    /// Deletes one topic; its own error (e.g. UnknownTopic) becomes `Err`.
    pub fn delete_topic(&mut self, name: &str) -> Result<(), ClientError> {
        let results = self.delete_topics(vec![name.to_string()])?;
        topic_result(results)
    }

    /// One consumer-group heartbeat (join, stay, or leave).
    pub fn group_heartbeat(
        &mut self,
        req: GroupHeartbeatRequest,
    ) -> Result<GroupHeartbeatResponse, ClientError> {
        match self.call(RequestBody::GroupHeartbeat(req), &[])?.0 {
            ResponseBody::GroupHeartbeat(r) => Ok(r),
            other => Err(self.mismatch(ApiKey::GroupHeartbeat, &other)),
        }
    }

    /// Commits offsets; one result per partition (a refused partition does not fail the call).
    pub fn offset_commit(
        &mut self,
        req: OffsetCommitRequest,
    ) -> Result<Vec<PartitionResult>, ClientError> {
        match self.call(RequestBody::OffsetCommit(req), &[])?.0 {
            ResponseBody::OffsetCommit(r) => Ok(r),
            other => Err(self.mismatch(ApiKey::OffsetCommit, &other)),
        }
    }

    /// A group's committed offsets of `topics` (every topic when empty).
    pub fn offset_fetch(
        &mut self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<CommittedOffset>, ClientError> {
        let body = RequestBody::OffsetFetch(OffsetFetchRequest {
            group: group.to_string(),
            topics: topics.to_vec(),
        });
        match self.call(body, &[])?.0 {
            ResponseBody::OffsetFetch(r) => Ok(r),
            other => Err(self.mismatch(ApiKey::OffsetFetch, &other)),
        }
    }

    /// Every consumer group of the broker.
    pub fn list_groups(&mut self) -> Result<Vec<GroupListing>, ClientError> {
        match self.call(RequestBody::ListGroups, &[])?.0 {
            ResponseBody::ListGroups(r) => Ok(r),
            other => Err(self.mismatch(ApiKey::ListGroups, &other)),
        }
    }

    /// A group's state, members, assignment and committed offsets with their lag.
    pub fn describe_group(&mut self, group: &str) -> Result<GroupDescription, ClientError> {
        let body = RequestBody::DescribeGroup {
            group: group.to_string(),
        };
        match self.call(body, &[])?.0 {
            ResponseBody::DescribeGroup(r) => Ok(r),
            other => Err(self.mismatch(ApiKey::DescribeGroup, &other)),
        }
    }

    /// Deletes a group without members, with its committed offsets.
    pub fn delete_group(&mut self, group: &str) -> Result<(), ClientError> {
        let body = RequestBody::DeleteGroup {
            group: group.to_string(),
        };
        match self.call(body, &[])?.0 {
            ResponseBody::DeleteGroup => Ok(()),
            other => Err(self.mismatch(ApiKey::DeleteGroup, &other)),
        }
    }

    /// Appends whole record batches to a partition and waits for the acknowledgement.
    pub fn produce(
        &mut self,
        topic: &str,
        partition: u32,
        batches: &[Bytes],
        timeout_ms: u32,
    ) -> Result<ProduceResponse, ClientError> {
        let body = RequestBody::Produce(ProduceRequest {
            topic: topic.to_string(),
            partition,
            acks: Acks::Leader,
            timeout_ms,
        });
        match self.call(body, batches)?.0 {
            ResponseBody::Produce(p) => Ok(p),
            other => Err(self.mismatch(ApiKey::Produce, &other)),
        }
    }

    /// Reads whole batches from `req.offset`; returns the response and the batches.
    pub fn fetch(&mut self, req: FetchRequest) -> Result<(FetchResponse, Vec<Bytes>), ClientError> {
        let (body, payload) = self.call(RequestBody::Fetch(req), &[])?;
        match body {
            ResponseBody::Fetch(f) => Ok((
                f,
                split_batches(payload.freeze()).map_err(|reason| ClientError::Malformed {
                    addr: self.addr(),
                    reason,
                })?,
            )),
            other => Err(self.mismatch(ApiKey::Fetch, &other)),
        }
    }

    /// The offset `spec` names in a partition (`None`: no record at or after the timestamp).
    pub fn list_offsets(
        &mut self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<Option<i64>, ClientError> {
        let body = RequestBody::ListOffsets(ListOffsetsRequest {
            topic: topic.to_string(),
            partition,
            spec,
        });
        match self.call(body, &[])?.0 {
            ResponseBody::ListOffsets(l) => Ok(l.offset),
            other => Err(self.mismatch(ApiKey::ListOffsets, &other)),
        }
    }

    fn mismatch(&self, want: ApiKey, got: &ResponseBody) -> ClientError {
        ClientError::Mismatch {
            addr: self.addr(),
            want,
            got: Some(got.api_key()),
            correlation_id: 0,
        }
    }
}

/// A response's body, or its error code as `Err`.
pub fn into_body(
    addr: SocketAddr,
    want: ApiKey,
    response: Response,
) -> Result<ResponseBody, ClientError> {
    if !response.error.is_ok() {
        return Err(ClientError::Broker {
            code: response.error,
            message: response.message.unwrap_or_default(),
        });
    }
    response.body.ok_or(ClientError::Mismatch {
        addr,
        want,
        got: None,
        correlation_id: response.correlation_id,
    })
}

/// The single result of a one-topic admin call, as `Result`.
fn topic_result(results: Vec<TopicResult>) -> Result<(), ClientError> {
    match results.into_iter().next() {
        Some(r) if r.error == ErrorCode::None => Ok(()),
        Some(r) => Err(ClientError::Broker {
            code: r.error,
            message: r.message.unwrap_or_else(|| r.name.clone()),
        }),
        None => Err(ClientError::Invalid("the broker returned no result".into())),
    }
}

/// Splits a fetch payload into its whole batches (zero-copy slices).
pub fn split_batches(mut payload: Bytes) -> Result<Vec<Bytes>, String> {
    let mut out = Vec::new();
    while !payload.is_empty() {
        match next_batch_len(&payload) {
            Ok(Some(len)) if len <= payload.len() => out.push(payload.split_to(len)),
            Ok(_) => {
                return Err(format!(
                    "fetch payload ends inside a batch ({} bytes left)",
                    payload.len()
                ))
            }
            Err(e) => return Err(format!("fetch payload holds a bad batch: {e}")),
        }
    }
    Ok(out)
}

/// `write_all` over several slices without joining them.
fn write_all_vectored(
    stream: &mut TcpStream,
    mut slices: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    while !slices.is_empty() {
        match stream.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
