//! Hostile input against one running broker per test: random bytes, truncated and lying
//! frames, huge length prefixes, garbage and mutated flatbuffer headers, pipelines that end in
//! garbage, and produce payloads of garbage or subtly broken record batches.
//!
//! Every case is checked against a model of what the broker must answer, computed with the
//! protocol's sans-I/O codec: the responses (correlation id, error code, operation) and then
//! the connection closing. After each group of cases a well-behaved client round-trips a
//! record batch on another connection; at the end the broker is still running, wrote no panic,
//! and stops cleanly on SIGTERM.
//!
//! Seeded: the seed is printed; set `STRATA_HOSTILE_SEED=<seed>` to replay.

mod common;

use std::os::unix::io::AsRawFd;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{at_offset, batch, fetch_all, fetch_req, spec, Broker, Next, Raw};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::protocol::{
    Acks, ApiKey, ErrorCode, FetchRequest, FrameDecoder, FrameError, ListOffsetsRequest,
    OffsetSpec, ProduceRequest, Request, RequestBody, API_VERSION,
};
use strata::record::{next_batch_len, validate_batch};

/// The frame limit the hostile brokers run with.
const MAX_FRAME: usize = 1 << 20;
const MAX_FRAME_ARG: &str = "1048576";
/// Topic the hostile requests name (and may write to).
const HOSTILE: &str = "hostile";
/// Topic only the well-behaved client uses.
const CONTROL: &str = "control";
/// Cases between two well-behaved round trips.
const GROUP: usize = 250;
/// A case's reads never wait this long unless the broker misbehaves.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// The model

/// One reply the broker must send.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    /// The frame could not be read: this code with correlation id 0, then the broker closes.
    Fatal(ErrorCode),
    /// A decoded request: an answer with its correlation id; `code` when it is known, and on
    /// success a body of the request's operation.
    Answer {
        cid: u32,
        code: Option<ErrorCode>,
        api: ApiKey,
    },
}

/// What the broker answers to `bytes` sent on a fresh connection whose write side is then
/// shut: the replies in order; after them the connection closes.
fn model(bytes: &[u8]) -> Vec<Expected> {
    let decoder = FrameDecoder::new(MAX_FRAME);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => match Request::decode(&frame.header) {
                Err(_) => {
                    out.push(Expected::Fatal(ErrorCode::MalformedRequest));
                    return out;
                }
                Ok(req) => {
                    let api = req.body.api_key();
                    if req.api_version != API_VERSION {
                        out.push(Expected::Answer {
                            cid: req.correlation_id,
                            code: Some(ErrorCode::UnsupportedVersion),
                            api,
                        });
                        continue;
                    }
                    let code = match &req.body {
                        RequestBody::Produce(p) => {
                            let payload = payload_outcome(&frame.payload);
                            if p.acks == Acks::None && payload.is_ok() {
                                continue; // fire and forget: no answer at all
                            }
                            payload.err()
                        }
                        _ => None,
                    };
                    out.push(Expected::Answer {
                        cid: req.correlation_id,
                        code,
                        api,
                    });
                }
            },
            // The rest of the frame never comes: the broker waits, sees the end, closes.
            Ok(None) => return out,
            Err(FrameError::TooLarge { .. }) => {
                out.push(Expected::Fatal(ErrorCode::FrameTooLarge));
                return out;
            }
            Err(_) => {
                out.push(Expected::Fatal(ErrorCode::MalformedRequest));
                return out;
            }
        }
    }
}

/// How a produce payload is judged before anything is appended: the (length, offsets) of each
/// batch, or the error code.
fn payload_outcome(payload: &[u8]) -> Result<Vec<(usize, i64)>, ErrorCode> {
    if payload.is_empty() {
        return Err(ErrorCode::InvalidRequest);
    }
    let mut rest = payload;
    let mut out = Vec::new();
    while !rest.is_empty() {
        match next_batch_len(rest) {
            Ok(Some(len)) if len <= rest.len() => {
                let h = validate_batch(&rest[..len]).map_err(|_| ErrorCode::CorruptBatch)?;
                out.push((len, i64::from(h.last_offset_delta) + 1));
                rest = &rest[len..];
            }
            _ => return Err(ErrorCode::CorruptBatch),
        }
    }
    Ok(out)
}

/// How a case is delivered.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    /// Write in pieces of at most this many bytes (one write when `None`).
    chunk: Option<usize>,
    /// Reset the connection right after sending (nothing to check but that the broker
    /// survives) instead of shutting the write side and reading the answers.
    abort: bool,
}

/// Sends one case on a fresh connection, shuts the write side, and checks the replies against
/// the model, then that the broker closes.
fn run_case(addr: &str, bytes: &[u8], how: Delivery) -> Result<Vec<Expected>, String> {
    let mut raw = Raw::connect(addr, READ_TIMEOUT);
    // The broker may close before taking every byte; its answer is what counts.
    match how.chunk {
        None => {
            let _ = raw.send(bytes);
        }
        Some(n) => {
            for piece in bytes.chunks(n) {
                if raw.send(piece).is_err() {
                    break;
                }
            }
        }
    }
    let abort = how.abort;
    if abort {
        reset(&raw);
        return Ok(Vec::new());
    }
    raw.finish();
    let expected = model(bytes);
    for want in &expected {
        check_reply(&mut raw, want)?;
    }
    match raw.next()? {
        Next::Closed => Ok(expected),
        Next::Response(r, _) => Err(format!("unexpected extra response {r:?}")),
    }
}

/// How many cases ended each way, so a test can check its generators reach every path.
#[derive(Debug, Default)]
struct Tally {
    aborted: usize,
    silent: usize,
    answered: usize,
    frame_too_large: usize,
    malformed: usize,
    answered_then_fatal: usize,
}

impl Tally {
    fn add(&mut self, aborted: bool, replies: &[Expected]) {
        let answers = replies
            .iter()
            .filter(|r| matches!(r, Expected::Answer { .. }))
            .count();
        match (aborted, replies.last()) {
            (true, _) => self.aborted += 1,
            (false, None) => self.silent += 1,
            (false, Some(Expected::Answer { .. })) => self.answered += 1,
            (false, Some(Expected::Fatal(code))) => {
                if *code == ErrorCode::FrameTooLarge {
                    self.frame_too_large += 1;
                } else {
                    self.malformed += 1;
                }
                if answers > 0 {
                    self.answered_then_fatal += 1;
                }
            }
        }
    }
}

fn check_reply(raw: &mut Raw, want: &Expected) -> Result<(), String> {
    let (resp, payload) = match raw.next()? {
        Next::Response(r, p) => (r, p),
        Next::Closed => return Err(format!("closed before the reply {want:?}")),
    };
    let ok = match want {
        Expected::Fatal(code) => {
            resp.correlation_id == 0
                && resp.error == *code
                && resp.body.is_none()
                && resp.message.as_deref().is_some_and(|m| !m.is_empty())
        }
        Expected::Answer { cid, code, api } => {
            resp.correlation_id == *cid
                && code.is_none_or(|c| c == resp.error)
                && if resp.error.is_ok() {
                    resp.body.as_ref().map(|b| b.api_key()) == Some(*api)
                } else {
                    resp.body.is_none() && resp.message.is_some()
                }
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected {want:?}, got {resp:?} with {} payload bytes",
            payload.len()
        ))
    }
}

/// Closes with a reset (SO_LINGER 0) rather than a clean end of stream.
fn reset(raw: &Raw) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            raw.stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_LINGER");
}

// ---------------------------------------------------------------------------------------------
// Generators

fn frame(header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + header.len() + payload.len());
    out.put_u32_le((4 + header.len() + payload.len()) as u32);
    out.put_u32_le(header.len() as u32);
    out.extend_from_slice(header);
    out.extend_from_slice(payload);
    out
}

fn encode(req: &Request, payload: &[u8]) -> Vec<u8> {
    let mut out = req.encode_frame(payload.len()).to_vec();
    out.extend_from_slice(payload);
    out
}

/// A well-formed request of a random kind naming the hostile topic, with its payload.
fn valid_request(rng: &mut StdRng, cid: u32) -> (Request, Vec<u8>) {
    let partition = rng.gen_range(0..2);
    let (body, payload) = match rng.gen_range(0..8) {
        0 => (RequestBody::ApiVersions, Vec::new()),
        1 => (RequestBody::Metadata { topics: vec![] }, Vec::new()),
        2 => (
            RequestBody::Metadata {
                topics: vec![HOSTILE.into(), "no-such-topic".into()],
            },
            Vec::new(),
        ),
        3 | 4 => (
            RequestBody::Produce(ProduceRequest {
                topic: HOSTILE.into(),
                partition,
                acks: if rng.gen_bool(0.2) {
                    Acks::None
                } else {
                    Acks::Leader
                },
                timeout_ms: 10_000,
            }),
            batch(rng.gen(), rng.gen_range(1..4), rng.gen_range(0..64)).to_vec(),
        ),
        5 => (
            // Offset 0 of a partition that holds data, no waiting: answered at once.
            RequestBody::Fetch(FetchRequest {
                max_bytes: rng.gen_range(1..4096),
                ..fetch_req(HOSTILE, partition, 0, 0)
            }),
            Vec::new(),
        ),
        _ => (
            RequestBody::ListOffsets(ListOffsetsRequest {
                topic: HOSTILE.into(),
                partition,
                spec: match rng.gen_range(0..3) {
                    0 => OffsetSpec::Earliest,
                    1 => OffsetSpec::Latest,
                    _ => OffsetSpec::Timestamp(rng.gen_range(0..i64::MAX)),
                },
            }),
            Vec::new(),
        ),
    };
    let req = Request {
        api_version: API_VERSION,
        correlation_id: cid,
        client_id: rng.gen_bool(0.5).then(|| "hostile-test".to_string()),
        body,
    };
    (req, payload)
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.gen()).collect()
}

/// Cases about framing: random bytes, truncated frames, lying lengths, huge prefixes.
fn framing_case(rng: &mut StdRng, kind: usize) -> (&'static str, Vec<u8>) {
    match kind {
        0 => {
            let len = rng.gen_range(0..400);
            ("random bytes", random_bytes(rng, len))
        }
        1 => {
            // A plausible prefix (consistent lengths) before random bytes.
            let header_len = rng.gen_range(0..200);
            let payload_len = rng.gen_range(0..100);
            let header = random_bytes(rng, header_len);
            let payload = random_bytes(rng, payload_len);
            ("consistent prefix, random body", frame(&header, &payload))
        }
        2 => {
            let cid = rng.gen();
            let (req, payload) = valid_request(rng, cid);
            let full = encode(&req, &payload);
            let cut = rng.gen_range(0..full.len());
            ("truncated valid frame", full[..cut].to_vec())
        }
        3 => {
            // The length field promises more than is ever sent.
            let cid = rng.gen();
            let (req, payload) = valid_request(rng, cid);
            let mut full = encode(&req, &payload);
            let len = u32::from_le_bytes(full[..4].try_into().unwrap()) as usize;
            let lie = rng.gen_range(len + 1..=MAX_FRAME);
            full[..4].copy_from_slice(&(lie as u32).to_le_bytes());
            ("length longer than sent", full)
        }
        4 => {
            // The header length does not fit in the frame.
            let cid = rng.gen();
            let (req, payload) = valid_request(rng, cid);
            let mut full = encode(&req, &payload);
            let len = u32::from_le_bytes(full[..4].try_into().unwrap());
            let lie = rng.gen_range(len - 3..=u32::MAX);
            full[4..8].copy_from_slice(&lie.to_le_bytes());
            ("header length beyond the frame", full)
        }
        5 => {
            let len = match rng.gen_range(0..4) {
                0 => u32::MAX,
                1 => MAX_FRAME as u32 + 1,
                2 => rng.gen_range(MAX_FRAME as u32 + 1..=u32::MAX),
                _ => rng.gen_range(0..4), // shorter than the header length field
            };
            let mut out = len.to_le_bytes().to_vec();
            let extra = rng.gen_range(0..64);
            out.extend(random_bytes(rng, extra));
            ("huge or tiny length prefix", out)
        }
        _ => unreachable!(),
    }
}

/// Cases about headers: garbage flatbuffers, mutated valid headers, pipelines ending in garbage.
fn header_case(rng: &mut StdRng, kind: usize) -> (&'static str, Vec<u8>) {
    match kind {
        0 => {
            let len = rng.gen_range(0..256);
            let mut header = random_bytes(rng, len);
            if len >= 8 && rng.gen_bool(0.5) {
                header[4..8].copy_from_slice(b"STRA"); // past the identifier check
                if rng.gen_bool(0.5) {
                    let root = rng.gen_range(0..len as u32);
                    header[..4].copy_from_slice(&root.to_le_bytes());
                }
            }
            let payload_len = rng.gen_range(0..64);
            let payload = random_bytes(rng, payload_len);
            ("garbage flatbuffer", frame(&header, &payload))
        }
        1 => {
            // A valid header with one byte changed, cut, or with bytes added.
            let cid = rng.gen_range(1..u32::MAX);
            let (req, payload) = valid_request(rng, cid);
            let full = req.encode_frame(0);
            let mut header = full[8..].to_vec();
            match rng.gen_range(0..4) {
                0 | 1 => {
                    let at = rng.gen_range(0..header.len());
                    header[at] = rng.gen();
                }
                2 => {
                    let keep = rng.gen_range(0..header.len());
                    header.truncate(keep);
                }
                _ => {
                    let extra = rng.gen_range(1..32);
                    header.extend(random_bytes(rng, extra));
                }
            }
            ("mutated valid header", frame(&header, &payload))
        }
        2 => {
            // Good requests, then a bad frame, then more good requests that must go unanswered.
            let mut out = Vec::new();
            for cid in 1..=rng.gen_range(1..6u32) {
                let (req, payload) = valid_request(rng, cid);
                out.extend(encode(&req, &payload));
            }
            let (_, bad) = match rng.gen_range(0..3) {
                0 => header_case(rng, 0),
                1 => framing_case(rng, 4),
                _ => framing_case(rng, 5),
            };
            out.extend(bad);
            let (req, payload) = valid_request(rng, 99);
            out.extend(encode(&req, &payload));
            ("pipeline ending in garbage", out)
        }
        _ => unreachable!(),
    }
}

// ---------------------------------------------------------------------------------------------
// The well-behaved client

/// Round-trips one batch on a new connection (rotating over the shared and the shard ports and
/// over partitions); offsets of the control topic must continue without a gap.
struct Control {
    next: [i64; 2],
    round: u64,
}

impl Control {
    fn new() -> Control {
        Control {
            next: [0; 2],
            round: 0,
        }
    }

    fn round_trip(&mut self, broker: &mut Broker, context: &str) {
        assert!(broker.is_running(), "broker died ({context})");
        let mut conn = match self.round % 3 {
            0 => broker.connect(),
            s => broker.connect_shard(s as u32 - 1),
        };
        let p = (self.round % 2) as u32;
        let b = batch(self.round, 2, 100);
        self.round += 1;
        let ack = conn
            .produce(CONTROL, p, std::slice::from_ref(&b), 10_000)
            .unwrap_or_else(|e| panic!("well-behaved produce failed ({context}): {e}"));
        assert_eq!(
            ack.base_offset, self.next[p as usize],
            "control offsets ({context})"
        );
        let (_, got) = conn
            .fetch(fetch_req(CONTROL, p, ack.base_offset, 0))
            .unwrap_or_else(|e| panic!("well-behaved fetch failed ({context}): {e}"));
        assert_eq!(
            got.first(),
            Some(&at_offset(&b, ack.base_offset)),
            "({context})"
        );
        self.next[p as usize] += 2;
    }
}

fn start_hostile_broker() -> Broker {
    let broker = Broker::start(2, &["--max-frame-bytes", MAX_FRAME_ARG]);
    let mut c = broker.connect();
    c.create_topic(spec(HOSTILE, 2)).unwrap();
    c.create_topic(spec(CONTROL, 2)).unwrap();
    for p in 0..2 {
        c.produce(HOSTILE, p, &[batch(u64::from(p), 3, 50)], 10_000)
            .unwrap();
    }
    broker
}

/// The broker outlived everything: it runs, logged no panic, stops cleanly.
fn finish(mut broker: Broker) {
    assert!(broker.is_running(), "broker died");
    let stderr = broker.stderr();
    assert!(!stderr.contains("panicked"), "broker panicked:\n{stderr}");
    broker.stop_clean();
}

/// A test's RNG: the printed seed, mixed with a per-test salt so tests draw different cases.
fn rng_for(seed: u64, salt: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Runs `cases` cases made by `make` (case number → description and bytes), each on its own
/// connection, a well-behaved round trip after every group.
fn run_cases(
    broker: &mut Broker,
    seed: u64,
    salt: u64,
    cases: usize,
    mut make: impl FnMut(&mut StdRng, usize) -> (&'static str, Vec<u8>),
) -> Tally {
    let mut tally = Tally::default();
    let mut rng = rng_for(seed, salt);
    let mut control = Control::new();
    let addrs = [broker.addr(), broker.shard_addr(0), broker.shard_addr(1)];
    for i in 0..cases {
        let (what, bytes) = make(&mut rng, i);
        let how = Delivery {
            chunk: rng.gen_ratio(1, 8).then(|| rng.gen_range(1..16)),
            abort: rng.gen_ratio(1, 16),
        };
        let addr = &addrs[rng.gen_range(0..addrs.len())];
        match run_case(addr, &bytes, how) {
            Ok(replies) => tally.add(how.abort, &replies),
            Err(e) => panic!(
                "case {i} ({what}, {} bytes, {how:?}, seed {seed}) on {addr}: {e}\nbytes: {:02x?}",
                bytes.len(),
                &bytes[..bytes.len().min(512)]
            ),
        }
        if (i + 1) % GROUP == 0 {
            control.round_trip(broker, &format!("after case {i}"));
        }
    }
    control.round_trip(broker, "at the end");
    println!("{cases} cases: {tally:?}");
    tally
}

#[test]
fn hostile_framing_never_hurts_the_broker() {
    let seed = common::seed("STRATA_HOSTILE_SEED");
    let mut broker = start_hostile_broker();
    let t = run_cases(&mut broker, seed, 1, 9_000, |rng, i| {
        framing_case(rng, i % 6)
    });
    assert!(
        t.silent > 1000 && t.frame_too_large > 500 && t.malformed > 2000,
        "{t:?}"
    );
    finish(broker);
}

#[test]
fn hostile_headers_never_hurt_the_broker() {
    let seed = common::seed("STRATA_HOSTILE_SEED");
    let mut broker = start_hostile_broker();
    let t = run_cases(&mut broker, seed, 2, 6_000, |rng, i| {
        header_case(rng, i % 3)
    });
    assert!(
        t.malformed > 3000 && t.answered > 200 && t.answered_then_fatal > 1500,
        "{t:?}"
    );
    finish(broker);
}

// ---------------------------------------------------------------------------------------------
// Produce payloads

/// A produce payload that is garbage, or record batches broken in one of many ways (some of
/// which stay valid: bytes outside the CRC, or changes with the CRC recomputed).
fn payload_case(rng: &mut StdRng) -> (&'static str, Vec<u8>) {
    let good =
        |rng: &mut StdRng| batch(rng.gen(), rng.gen_range(1..6), rng.gen_range(0..80)).to_vec();
    let fix_crc = |b: &mut Vec<u8>| {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    };
    match rng.gen_range(0..9) {
        0 => {
            let len = rng.gen_range(0..200);
            ("random bytes", random_bytes(rng, len))
        }
        1 => {
            let mut b = good(rng);
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..b.len());
                b[at] ^= rng.gen_range(1..=255u8);
            }
            ("flipped bytes", b)
        }
        2 => {
            let b = good(rng);
            let cut = rng.gen_range(0..b.len());
            ("cut short", b[..cut].to_vec())
        }
        3 => {
            let mut b = good(rng);
            let extra = rng.gen_range(1..80);
            b.extend(random_bytes(rng, extra));
            ("trailing garbage", b)
        }
        4 => {
            let mut b = good(rng);
            let len: i32 = match rng.gen_range(0..4) {
                0 => -1,
                1 => i32::MAX,
                2 => rng.gen_range(0..49),
                _ => (b.len() as i32 - 12) + rng.gen_range(-8..8),
            };
            b[8..12].copy_from_slice(&len.to_be_bytes());
            ("lying batch length", b)
        }
        5 => {
            // A field changed and the CRC recomputed: structure checks must catch what the CRC
            // cannot.
            let mut b = good(rng);
            let at = match rng.gen_range(0..4) {
                0 => rng.gen_range(21..23),      // attributes
                1 => rng.gen_range(23..27),      // lastOffsetDelta
                2 => rng.gen_range(57..61),      // recordsCount
                _ => rng.gen_range(61..b.len()), // inside the records
            };
            b[at] ^= rng.gen_range(1..=255u8);
            fix_crc(&mut b);
            ("CRC-valid, structurally changed", b)
        }
        6 => {
            let mut out = Vec::new();
            for _ in 0..rng.gen_range(1..4) {
                out.extend(good(rng));
            }
            let (_, bad) = payload_case(rng);
            out.extend(bad);
            ("good batches, then a bad one", out)
        }
        7 => ("empty payload", Vec::new()),
        _ => {
            // Only the base offset or the leader epoch, which the CRC does not cover: still
            // valid.
            let mut b = good(rng);
            let at = if rng.gen_bool(0.6) {
                rng.gen_range(0..8)
            } else {
                rng.gen_range(12..16)
            };
            b[at] = rng.gen();
            ("changed outside the CRC", b)
        }
    }
}

#[test]
fn hostile_produce_payloads_are_refused_and_the_connection_stays_usable() {
    const CASES: usize = 3_000;
    const PER_CONNECTION: usize = 25;
    let seed = common::seed("STRATA_HOSTILE_SEED");
    let mut rng = rng_for(seed, 3);
    let mut broker = start_hostile_broker();
    let mut control = Control::new();
    // What each hostile partition must hold: the setup batch, then every accepted payload.
    let mut c = broker.connect();
    let mut logs: Vec<Vec<(i64, Bytes)>> = (0..2).map(|p| fetch_all(&mut c, HOSTILE, p)).collect();
    let mut next = [3i64; 2]; // the setup batch of 3 records
    let addrs = [broker.addr(), broker.shard_addr(0), broker.shard_addr(1)];
    let mut cid = 0u32;
    let (mut accepted, mut corrupt, mut invalid) = (0usize, 0usize, 0usize);
    for group in 0..CASES / PER_CONNECTION {
        let addr = &addrs[group % addrs.len()];
        let mut raw = Raw::connect(addr, READ_TIMEOUT);
        for i in 0..PER_CONNECTION {
            let case = group * PER_CONNECTION + i;
            let (what, payload) = payload_case(&mut rng);
            let p = rng.gen_range(0..2u32);
            cid += 1;
            let req = Request {
                api_version: API_VERSION,
                correlation_id: cid,
                client_id: None,
                body: RequestBody::Produce(ProduceRequest {
                    topic: HOSTILE.into(),
                    partition: p,
                    acks: Acks::Leader,
                    timeout_ms: 10_000,
                }),
            };
            raw.send(&encode(&req, &payload))
                .unwrap_or_else(|e| panic!("case {case} ({what}, seed {seed}): send: {e}"));
            let (resp, _) = match raw.next() {
                Ok(Next::Response(r, body)) => (r, body),
                other => {
                    panic!("case {case} ({what}, seed {seed}): expected a response, got {other:?}")
                }
            };
            let describe = || format!("case {case} ({what}, seed {seed}, payload {payload:02x?})");
            assert_eq!(resp.correlation_id, cid, "{}", describe());
            match payload_outcome(&payload) {
                Err(code) => {
                    if code == ErrorCode::CorruptBatch {
                        corrupt += 1;
                    } else {
                        invalid += 1;
                    }
                    assert_eq!(resp.error, code, "{}: {:?}", describe(), resp.message);
                    assert!(resp.message.as_deref().is_some_and(|m| !m.is_empty()));
                }
                Ok(batches) => {
                    accepted += 1;
                    assert_eq!(
                        resp.error,
                        ErrorCode::None,
                        "{}: {:?}",
                        describe(),
                        resp.message
                    );
                    let Some(strata::protocol::ResponseBody::Produce(ack)) = resp.body else {
                        panic!("{}: not a produce response: {resp:?}", describe());
                    };
                    assert_eq!(ack.base_offset, next[p as usize], "{}", describe());
                    let mut at = 0;
                    for (len, offsets) in batches {
                        let b = Bytes::copy_from_slice(&payload[at..at + len]);
                        logs[p as usize].push((next[p as usize], b));
                        next[p as usize] += offsets;
                        at += len;
                    }
                    assert_eq!(ack.last_offset, next[p as usize] - 1, "{}", describe());
                }
            }
        }
        // The connection is still usable after all that.
        cid += 1;
        let good = batch(u64::from(cid), 1, 10);
        let req = Request {
            api_version: API_VERSION,
            correlation_id: cid,
            client_id: None,
            body: RequestBody::Produce(ProduceRequest {
                topic: HOSTILE.into(),
                partition: 0,
                acks: Acks::Leader,
                timeout_ms: 10_000,
            }),
        };
        raw.send(&encode(&req, &good)).unwrap();
        let (resp, _) = raw.response();
        assert_eq!(
            (resp.correlation_id, resp.error),
            (cid, ErrorCode::None),
            "{:?}",
            resp.message
        );
        logs[0].push((next[0], good));
        next[0] += 1;
        raw.finish();
        raw.expect_closed();
        if (group + 1) % (GROUP / PER_CONNECTION) == 0 {
            control.round_trip(&mut broker, &format!("after payload group {group}"));
        }
    }
    println!(
        "{CASES} payloads: {accepted} accepted, {corrupt} CorruptBatch, {invalid} InvalidRequest"
    );
    assert!(accepted > 300 && corrupt > 1800 && invalid > 150);
    // Every accepted batch is stored byte for byte at its offset, and nothing else.
    for p in 0..2u32 {
        let got = fetch_all(&mut c, HOSTILE, p);
        let want = &logs[p as usize];
        assert_eq!(got.len(), want.len(), "hostile/{p}: batch count");
        for ((got_off, got), (want_off, want)) in got.iter().zip(want) {
            assert_eq!(got_off, want_off);
            assert!(
                got[..] == at_offset(want, *want_off)[..],
                "hostile/{p}: batch at {want_off} differs"
            );
        }
    }
    drop(c);
    finish(broker);
}
