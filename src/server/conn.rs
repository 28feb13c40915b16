//! One client connection: frames in, requests dispatched as they arrive (pipelined), responses
//! out in request order. A malformed or oversized frame gets an error response and closes this
//! connection only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::io::{AsRawFd, RawFd};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::TcpStream;
use glommio::Task;
use tracing::debug;

use crate::coordinator::ClientInfo;
use crate::protocol::{
    Acks, ApiKey, ApiVersionRange, ErrorCode, Frame, FrameDecoder, FrameError, MetadataResponse,
    PartitionMetadata, Request, RequestBody, Response, ResponseBody, ShardEndpoint, TopicMetadata,
    API_VERSION,
};
use crate::record::{next_batch_len, ValidBatch};
use crate::runtime;

use super::msg::{Answer, OpError, OpResult, PartitionOp, ShardMsg};
use super::shard::DataShard;

/// Requests of one connection being worked on at once; more wait in the socket buffer.
pub const MAX_IN_FLIGHT: usize = 128;
/// Bytes read from the socket per read call at least.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// Correlation id of the error sent for a frame whose header could not be read.
const UNKNOWN_CORRELATION_ID: u32 = 0;

/// A finished request, ready to be written. Invariant: `close` replies are the last one queued.
struct Reply {
    correlation_id: u32,
    result: OpResult,
    /// Close the connection after writing this reply.
    close: bool,
    /// Write nothing at all (a produce with acks = none).
    silent: bool,
}

impl Reply {
    fn now(correlation_id: u32, result: OpResult) -> Task<Reply> {
        glommio::spawn_local(async move {
            Reply {
                correlation_id,
                result,
                close: false,
                silent: false,
            }
        })
    }

    fn fatal(correlation_id: u32, code: ErrorCode, message: String) -> Task<Reply> {
        let result = Err(OpError::new(code, message));
        glommio::spawn_local(async move {
            Reply {
                correlation_id,
                result,
                close: true,
                silent: false,
            }
        })
    }
}

pub async fn serve(shard: Rc<DataShard>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let fd = stream.as_raw_fd();
    let (mut reader, writer) = stream.split();
    let (tx, rx) = local_channel::new_bounded::<Task<Reply>>(MAX_IN_FLIGHT);
    let writer = glommio::spawn_local(write_loop(fd, writer, rx));
    let decoder = FrameDecoder::new(shard.config.max_frame_bytes);
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    'conn: loop {
        loop {
            let next = match decoder.decode(&mut buf) {
                Ok(Some(Frame { header, payload })) => {
                    // A large produce request's checksums would hold back the writes this
                    // pass issued (see `runtime::submit_queued_writes`).
                    if payload.len() >= runtime::SUBMIT_BEFORE_BYTES {
                        runtime::submit_queued_writes().await;
                    }
                    dispatch(&shard, peer, header, payload)
                }
                Ok(None) => break,
                Err(e) => {
                    let code = match e {
                        FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
                        _ => ErrorCode::MalformedRequest,
                    };
                    debug!(?peer, error = %e, "bad frame; closing the connection");
                    let _ = tx
                        .send(Reply::fatal(UNKNOWN_CORRELATION_ID, code, e.to_string()))
                        .await;
                    break 'conn;
                }
            };
            let fatal = next.1;
            if tx.send(next.0).await.is_err() || fatal {
                break 'conn;
            }
        }
        if shard.shutdown.is_fired() {
            break;
        }
        // Read more: at least a chunk, or all the next frame still needs.
        let want = decoder
            .needed(&buf)
            .map_or(0, |n| n.saturating_sub(buf.len()))
            .max(READ_CHUNK_BYTES);
        let read = select(
            Box::pin(read_more(&mut reader, fd, &mut buf, want)),
            Box::pin(shard.shutdown.wait()),
        )
        .await;
        match read {
            Either::Left((Ok(n), _)) if n > 0 => {}
            // End of stream, a reset, or shutdown: stop reading; queued replies still go out.
            _ => break,
        }
    }
    drop(tx);
    writer.await;
}

/// Appends to `buf` what the socket holds, up to `want` bytes (so a read for a large frame ends
/// at its last byte), waiting until it holds something. Returns the bytes added; 0 is the end of
/// the stream.
///
/// The bytes land in `buf`'s spare capacity, which is not zeroed first (zeroing `want` bytes per
/// read was 15-20% of a shard's CPU under produce load in perf profiles). glommio's stream only
/// reads into a `&mut [u8]`, which must not cover uninitialized memory, so the data is taken
/// with our own non-blocking `recv` into the spare capacity ([`recv_spare`]) and glommio is used
/// only to wait: when the socket is empty, its read of one byte into a stack byte parks the task
/// on the reactor until data arrives; that byte is appended and the rest taken with
/// `recv_spare`.
async fn read_more(
    reader: &mut ReadHalf<TcpStream>,
    fd: RawFd,
    buf: &mut BytesMut,
    want: usize,
) -> std::io::Result<usize> {
    debug_assert!(want > 1);
    buf.reserve(want);
    loop {
        match recv_spare(fd, buf, want) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            done => return done,
        }
    }
    let mut first = [0u8; 1];
    if reader.read(&mut first).await? == 0 {
        return Ok(0);
    }
    buf.extend_from_slice(&first);
    // More is usually queued behind that byte; take it now, without waiting. Whatever this
    // `recv` meets instead (nothing yet, the end of the stream, an error) is left to the next
    // call, once the byte already read is handled: the socket still says so then (a reset
    // socket reads as its end).
    Ok(1 + recv_spare(fd, buf, want - 1).unwrap_or(0))
}

/// One non-blocking `recv` of at most `max` bytes from `fd` into the spare capacity of `buf`,
/// which grows by what was received. `Ok(0)` is the end of the stream (or no room: callers
/// reserve first).
fn recv_spare(fd: RawFd, buf: &mut BytesMut, max: usize) -> std::io::Result<usize> {
    let len = buf.len();
    let spare = buf.spare_capacity_mut();
    let room = max.min(spare.len());
    let spare = &mut spare[..room];
    debug_assert!(!spare.is_empty(), "no room to read into");
    // SAFETY: `spare` (from the safe `spare_capacity_mut`) is exclusively borrowed memory of
    // `buf` past its length, writable for `spare.len()` bytes. It may be uninitialized, so it
    // stays `MaybeUninit` and reaches the kernel as a raw pointer and length, never as a
    // `&mut [u8]`; `recv` writes at most `spare.len()` bytes from its start.
    let n = unsafe {
        libc::recv(
            fd,
            spare.as_mut_ptr().cast::<libc::c_void>(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n as usize;
    debug_assert!(n <= spare.len());
    // SAFETY: `len + n <= capacity`, and `recv` initialized the `n` bytes after `len`: only bytes
    // the kernel wrote become part of `buf`.
    unsafe { buf.set_len(len + n) };
    Ok(n)
}

/// Starts the work of one request; the bool says the connection must close after it.
fn dispatch(
    shard: &Rc<DataShard>,
    peer: Option<SocketAddr>,
    header: Bytes,
    payload: BytesMut,
) -> (Task<Reply>, bool) {
    let req = match Request::decode(&header) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("malformed request header: {e}");
            return (
                Reply::fatal(UNKNOWN_CORRELATION_ID, ErrorCode::MalformedRequest, msg),
                true,
            );
        }
    };
    let cid = req.correlation_id;
    if req.api_version != API_VERSION {
        let msg = format!(
            "{:?} version {} is not supported (supported: {API_VERSION}..={API_VERSION})",
            req.body.api_key(),
            req.api_version
        );
        return (
            Reply::now(cid, Err(OpError::new(ErrorCode::UnsupportedVersion, msg))),
            false,
        );
    }
    let shard = shard.clone();
    let task = match req.body {
        RequestBody::ApiVersions => Reply::now(
            cid,
            Ok(Answer::new(ResponseBody::ApiVersions(api_versions()))),
        ),
        RequestBody::Metadata { topics } => {
            work(cid, false, async move { metadata(&shard, topics).await })
        }
        body @ (RequestBody::CreateTopics { .. } | RequestBody::DeleteTopics { .. }) => {
            work(cid, false, async move {
                ask_coordinator(&shard, |reply| ShardMsg::Admin { body, reply }).await
            })
        }
        body @ (RequestBody::GroupHeartbeat(_)
        | RequestBody::OffsetCommit(_)
        | RequestBody::OffsetFetch(_)
        | RequestBody::ListGroups
        | RequestBody::DescribeGroup { .. }
        | RequestBody::DeleteGroup { .. }) => {
            let client = ClientInfo {
                client_id: req.client_id.unwrap_or_default(),
                host: peer.map(|p| p.ip().to_string()).unwrap_or_default(),
            };
            work(
                cid,
                false,
                async move { group_op(&shard, body, client).await },
            )
        }
        RequestBody::Produce(p) => {
            let silent = p.acks == Acks::None;
            match split_batches(payload) {
                Ok(batches) => work(cid, silent, async move {
                    let op = PartitionOp::Produce {
                        batches,
                        timeout_ms: p.timeout_ms,
                    };
                    shard.partition_op(p.topic, p.partition, op).await
                }),
                Err(e) => work(cid, silent, async move { Err(e) }),
            }
        }
        RequestBody::Fetch(f) => work(cid, false, async move {
            let (topic, partition) = (f.topic.clone(), f.partition);
            shard
                .partition_op(topic, partition, PartitionOp::Fetch(f))
                .await
        }),
        RequestBody::ListOffsets(l) => work(cid, false, async move {
            shard
                .partition_op(l.topic, l.partition, PartitionOp::ListOffsets(l.spec))
                .await
        }),
    };
    (task, false)
}

/// Sends a consumer-group request to the coordinator. DescribeGroup first gathers every
/// partition's log end here (for the lag), so the coordinator never waits on a data shard.
async fn group_op(shard: &Rc<DataShard>, body: RequestBody, client: ClientInfo) -> OpResult {
    let high_watermarks = if matches!(body, RequestBody::DescribeGroup { .. }) {
        shard
            .all_stats()
            .await
            .into_iter()
            .map(|(key, stat)| (key, stat.high_watermark))
            .collect()
    } else {
        HashMap::new()
    };
    ask_coordinator(shard, |reply| ShardMsg::Group {
        body,
        client,
        high_watermarks,
        reply,
    })
    .await
}

/// Sends `msg` to the coordinator and waits for its answer.
async fn ask_coordinator(
    shard: &Rc<DataShard>,
    msg: impl FnOnce(oneshot::Sender<OpResult>) -> ShardMsg,
) -> OpResult {
    let (tx, rx) = oneshot::channel();
    shard.to_coordinator(msg(tx)).await?;
    rx.await.unwrap_or_else(|_| {
        Err(OpError::new(
            ErrorCode::ShuttingDown,
            "the coordinator is stopping",
        ))
    })
}

fn work(
    correlation_id: u32,
    silent: bool,
    fut: impl std::future::Future<Output = OpResult> + 'static,
) -> Task<Reply> {
    glommio::spawn_local(async move {
        Reply {
            correlation_id,
            result: fut.await,
            close: false,
            silent,
        }
    })
}

/// Splits a produce payload into whole batches and validates each (CRC, lengths, records) on
/// the receiving shard, before anything is appended: a request is all valid or not applied.
/// The batches go to the log as `ValidBatch`es, so the log does not check them again.
fn split_batches(mut payload: BytesMut) -> Result<Vec<ValidBatch>, OpError> {
    let corrupt = |i: usize, e: &dyn std::fmt::Display| {
        OpError::new(
            ErrorCode::CorruptBatch,
            format!("batch {i} of the payload: {e}"),
        )
    };
    let mut batches = Vec::new();
    while !payload.is_empty() {
        let i = batches.len();
        let len = match next_batch_len(&payload) {
            Ok(Some(len)) if len <= payload.len() => len,
            Ok(_) => {
                return Err(OpError::new(
                    ErrorCode::CorruptBatch,
                    format!(
                        "batch {i} of the payload is cut short: {} bytes left",
                        payload.len()
                    ),
                ))
            }
            Err(e) => return Err(corrupt(i, &e)),
        };
        let batch = ValidBatch::validate(payload.split_to(len)).map_err(|e| corrupt(i, &e))?;
        batches.push(batch);
    }
    if batches.is_empty() {
        return Err(OpError::new(
            ErrorCode::InvalidRequest,
            "produce payload holds no record batch",
        ));
    }
    Ok(batches)
}

fn api_versions() -> Vec<ApiVersionRange> {
    ApiKey::ALL
        .into_iter()
        .map(|api| ApiVersionRange {
            api,
            min_version: API_VERSION,
            max_version: API_VERSION,
        })
        .collect()
}

async fn metadata(shard: &DataShard, topics: Vec<String>) -> OpResult {
    let catalog = shard.catalog();
    let stats = shard.all_stats().await;
    let names: Vec<String> = if topics.is_empty() {
        catalog.topics().map(|t| t.name.clone()).collect()
    } else {
        topics
    };
    let topics = names
        .into_iter()
        .map(|name| match catalog.get(&name) {
            None => TopicMetadata {
                message: Some(format!("unknown topic {name:?}")),
                name,
                error: ErrorCode::UnknownTopic,
                partitions: Vec::new(),
                retention_bytes: None,
                retention_ms: None,
                segment_bytes: None,
            },
            Some(t) => TopicMetadata {
                partitions: (0..t.config.partitions)
                    .map(|p| {
                        let s = stats.get(&(name.clone(), p));
                        PartitionMetadata {
                            partition: p,
                            shard: shard.owner(&name, p),
                            earliest_offset: s.map_or(0, |s| s.earliest_offset),
                            high_watermark: s.map_or(0, |s| s.high_watermark),
                            log_bytes: s.map(|s| s.log_bytes),
                        }
                    })
                    .collect(),
                name,
                error: ErrorCode::None,
                message: None,
                retention_bytes: t.config.retention_bytes,
                retention_ms: t.config.retention_ms,
                segment_bytes: t.config.segment_bytes,
            },
        })
        .collect();
    let host = shard.config.listen.ip().to_string();
    let shards = (0..shard.shard_count)
        .map(|s| ShardEndpoint {
            shard: s,
            host: host.clone(),
            port: shard.config.shard_port(s),
        })
        .collect();
    Ok(Answer::new(ResponseBody::Metadata(MetadataResponse {
        host,
        port: shard.config.listen.port(),
        shard_count: shard.shard_count,
        shards,
        topics,
    })))
}

/// Writes replies in request order: the response header, then the payload slices as they are
/// (record batches from the log or the cache, never copied into the header buffer).
async fn write_loop(fd: RawFd, mut writer: WriteHalf<TcpStream>, rx: LocalReceiver<Task<Reply>>) {
    while let Some(task) = rx.recv().await {
        let reply = task.await;
        if reply.silent {
            continue;
        }
        let (response, payload) = match reply.result {
            Ok(Answer { body, payload }) => (
                Response {
                    correlation_id: reply.correlation_id,
                    error: ErrorCode::None,
                    message: None,
                    body: Some(body),
                },
                payload,
            ),
            Err(OpError { code, message }) => (
                Response {
                    correlation_id: reply.correlation_id,
                    error: code,
                    message: Some(message),
                    body: None,
                },
                Vec::new(),
            ),
        };
        let payload_len: usize = payload.iter().map(|b| b.len()).sum();
        let head = response.encode_frame(payload_len);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + payload.len());
        parts.push(&head);
        parts.extend(payload.iter().map(|b| &b[..]));
        let ok = send_all(fd, &mut writer, &parts).await.is_ok();
        if !ok || reply.close {
            break;
        }
    }
    let _ = writer.close().await;
}

/// Most slices handed to one `sendmsg` (Linux's IOV_MAX).
const MAX_IOVECS: usize = 1024;

/// Writes every byte of `parts` in order: one `sendmsg` of all the slices at a time, straight
/// from the log's buffers (glommio's stream writes one slice per call, and joining the slices
/// would copy every fetched byte). When the socket is full, the rest of the current slice goes
/// through the stream, which waits for writability.
async fn send_all(
    fd: RawFd,
    writer: &mut WriteHalf<TcpStream>,
    parts: &[&[u8]],
) -> std::io::Result<()> {
    let (mut idx, mut off) = (0usize, 0usize);
    while idx < parts.len() {
        if off == parts[idx].len() {
            idx += 1;
            off = 0;
            continue;
        }
        let iov: Vec<libc::iovec> = std::iter::once(&parts[idx][off..])
            .chain(parts[idx + 1..].iter().copied())
            .take(MAX_IOVECS)
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        // SAFETY: a zeroed msghdr is valid; `iov` outlives the call and points into `parts`,
        // which are borrowed for its whole duration. The kernel only reads them.
        let sent = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = iov.len();
            libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        let mut n = if sent >= 0 {
            sent as usize
        } else {
            let err = std::io::Error::last_os_error();
            match err.kind() {
                std::io::ErrorKind::Interrupted => 0,
                std::io::ErrorKind::WouldBlock => writer.write(&parts[idx][off..]).await?,
                _ => return Err(err),
            }
        };
        while n > 0 {
            let left = parts[idx].len() - off;
            if n < left {
                off += n;
                n = 0;
            } else {
                n -= left;
                idx += 1;
                off = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::demo_batch;

    #[test]
    fn produce_payloads_split_into_validated_batches() {
        let mut payload = BytesMut::new();
        payload.extend_from_slice(&demo_batch(0, 2, 10));
        payload.extend_from_slice(&demo_batch(1, 3, 10));
        let batches = split_batches(payload.clone()).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].as_bytes(), &demo_batch(0, 2, 10)[..]);
        assert_eq!(batches[1].as_bytes(), &demo_batch(1, 3, 10)[..]);
        assert_eq!(batches[1].header().record_count, 3);
        let mut cut = payload.clone();
        cut.truncate(payload.len() - 1);
        assert!(split_batches(cut)
            .unwrap_err()
            .message
            .contains("cut short"));
        let mut bad = payload.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        let err = split_batches(bad).unwrap_err();
        assert_eq!(err.code, ErrorCode::CorruptBatch);
        assert!(
            err.message.starts_with("batch 1 of the payload"),
            "{}",
            err.message
        );
        assert_eq!(
            split_batches(BytesMut::new()).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn recv_spare_appends_only_what_arrived() {
        use std::io::Write;
        use std::os::unix::net::UnixStream;
        let (mut tx, rx) = UnixStream::pair().unwrap();
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"ab");
        tx.write_all(b"cde").unwrap();
        assert_eq!(recv_spare(rx.as_raw_fd(), &mut buf, 2).unwrap(), 2);
        assert_eq!(&buf[..], b"abcd");
        assert_eq!(recv_spare(rx.as_raw_fd(), &mut buf, 64).unwrap(), 1);
        assert_eq!(&buf[..], b"abcde");
        let err = recv_spare(rx.as_raw_fd(), &mut buf, 64).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        assert_eq!(&buf[..], b"abcde");
        drop(tx);
        assert_eq!(recv_spare(rx.as_raw_fd(), &mut buf, 64).unwrap(), 0);
        assert_eq!(&buf[..], b"abcde");
    }
}
