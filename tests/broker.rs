//! End-to-end tests of `strata broker`: the real binary on free ports, driven by the library's
//! client (and raw TCP where a client must misbehave). Covers placement over shards, routing
//! through the shared and the per-shard ports, byte-for-byte reads across a restart, long-poll
//! fetches, pipelining and per-partition order, every error a request can get, ListOffsets,
//! DeleteTopics, segment rolls, produce timeouts, start-up failures, and the broker's behaviour
//! with clients that stop reading, send acks=none, or are connected while it restarts.

mod common;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    at_offset, batch, batch_at, connect, expect_start_failure, fetch_all, fetch_req,
    free_base_port, now_ms, record_count, spec, Broker, BrokerSpec, Raw,
};
use strata::client::{ClientError, Connection};
use strata::protocol::{
    Acks, ApiKey, ErrorCode, OffsetSpec, ProduceRequest, Request, RequestBody, ResponseBody,
    API_VERSION,
};
use strata::shard::shard_for;

/// Asserts a broker error with `code` whose message mentions `needle`.
#[track_caller]
fn expect_err<T: Debug>(res: Result<T, ClientError>, code: ErrorCode, needle: &str) {
    match res {
        Err(ClientError::Broker { code: got, message }) => {
            assert_eq!(got, code, "wrong error code (message: {message:?})");
            assert!(
                message.contains(needle),
                "message {message:?} should mention {needle:?}"
            );
        }
        other => panic!("expected {code} mentioning {needle:?}, got {other:?}"),
    }
}

/// Asserts that a partition holds exactly `expected` (batches as produced, with their offsets),
/// byte for byte once the broker's base offsets are written in.
#[track_caller]
fn assert_log(conn: &mut Connection, topic: &str, partition: u32, expected: &[(i64, Bytes)]) {
    let got = fetch_all(conn, topic, partition);
    assert_eq!(
        got.len(),
        expected.len(),
        "{topic}/{partition} via {}: batch count",
        conn.addr()
    );
    for ((got_off, got), (want_off, want)) in got.iter().zip(expected) {
        assert_eq!(got_off, want_off, "{topic}/{partition}: batch offsets");
        assert!(
            got[..] == at_offset(want, *want_off)[..],
            "{topic}/{partition} via {}: batch at {want_off} differs from what was produced",
            conn.addr()
        );
    }
}

fn produce_req(topic: &str, partition: u32) -> RequestBody {
    RequestBody::Produce(ProduceRequest {
        topic: topic.into(),
        partition,
        acks: Acks::Leader,
        timeout_ms: 10_000,
    })
}

#[test]
fn partitions_spread_over_two_shards_survive_a_restart_byte_for_byte() {
    const TOPIC: &str = "orders";
    const PARTITIONS: u32 = 6;
    let mut broker = Broker::start(2, &[]);
    let mut admin = broker.connect();
    admin.create_topic(spec(TOPIC, PARTITIONS)).unwrap();

    // Placement: Metadata names the owner `shard_for` computes, both shards own partitions, and
    // each shard's endpoint is the shared port + 1 + shard.
    let meta = admin.metadata(&[TOPIC.to_string()]).unwrap();
    assert_eq!(
        (meta.host.as_str(), meta.port),
        ("127.0.0.1", broker.port())
    );
    assert_eq!(meta.shard_count, 2);
    let endpoints: Vec<(u32, String, u16)> = meta
        .shards
        .iter()
        .map(|e| (e.shard, e.host.clone(), e.port))
        .collect();
    assert_eq!(
        endpoints,
        vec![
            (0, "127.0.0.1".to_string(), broker.shard_port(0)),
            (1, "127.0.0.1".to_string(), broker.shard_port(1)),
        ]
    );
    assert_eq!(meta.topics.len(), 1);
    let t = &meta.topics[0];
    assert_eq!((t.name.as_str(), t.error), (TOPIC, ErrorCode::None));
    assert_eq!(t.partitions.len(), PARTITIONS as usize);
    let mut owner = Vec::new();
    for (p, pm) in t.partitions.iter().enumerate() {
        assert_eq!(pm.partition, p as u32);
        assert_eq!(
            pm.shard,
            shard_for(TOPIC, p as u32, 2),
            "owner of partition {p}"
        );
        assert_eq!((pm.earliest_offset, pm.high_watermark), (0, 0));
        owner.push(pm.shard);
    }
    assert_eq!(
        owner.iter().copied().collect::<BTreeSet<u32>>(),
        BTreeSet::from([0, 1]),
        "both shards own partitions"
    );

    // Produce to every partition through the shared port, the owner's port and the other
    // shard's port (which forwards), one or two batches per request.
    let mut shared = broker.connect();
    let mut by_shard: Vec<Connection> = meta
        .shards
        .iter()
        .map(|e| connect(&format!("{}:{}", e.host, e.port)))
        .collect();
    let mut expected: Vec<Vec<(i64, Bytes)>> = vec![Vec::new(); PARTITIONS as usize];
    let mut next = vec![0i64; PARTITIONS as usize];
    let mut index = 0u64;
    let mut produce_round = |shared: &mut Connection,
                             by_shard: &mut [Connection],
                             expected: &mut Vec<Vec<(i64, Bytes)>>,
                             next: &mut Vec<i64>| {
        for p in 0..PARTITIONS {
            let own = owner[p as usize] as usize;
            for route in 0..3 {
                let conn = match route {
                    0 => &mut *shared,
                    1 => &mut by_shard[own],
                    _ => &mut by_shard[1 - own],
                };
                let batches: Vec<Bytes> = (0..1 + index % 2)
                    .map(|i| {
                        batch(
                            index * 10 + i,
                            1 + (index as usize % 7),
                            10 + 37 * i as usize,
                        )
                    })
                    .collect();
                index += 1;
                let resp = conn
                    .produce(TOPIC, p, &batches, 10_000)
                    .unwrap_or_else(|e| panic!("produce to {p} via {}: {e}", conn.addr()));
                let records: i64 = batches.iter().map(|b| record_count(b)).sum();
                assert_eq!(
                    resp.base_offset, next[p as usize],
                    "partition {p} base offset"
                );
                assert_eq!(resp.last_offset, next[p as usize] + records - 1);
                assert!((resp.log_append_time_ms - now_ms()).abs() < 60_000);
                for b in batches {
                    let n = record_count(&b);
                    expected[p as usize].push((next[p as usize], b));
                    next[p as usize] += n;
                }
            }
        }
    };
    for _ in 0..2 {
        produce_round(&mut shared, &mut by_shard, &mut expected, &mut next);
    }

    let check_all = |broker: &Broker, expected: &[Vec<(i64, Bytes)>], next: &[i64]| {
        let mut routes = [
            broker.connect(),
            broker.connect_shard(0),
            broker.connect_shard(1),
        ];
        for p in 0..PARTITIONS {
            for conn in routes.iter_mut() {
                assert_log(conn, TOPIC, p, &expected[p as usize]);
            }
        }
        let meta = routes[0].metadata(&[TOPIC.to_string()]).unwrap();
        for pm in &meta.topics[0].partitions {
            assert_eq!(pm.high_watermark, next[pm.partition as usize]);
            assert_eq!(pm.earliest_offset, 0);
        }
        for (p, want) in next.iter().enumerate() {
            let got = routes[1].list_offsets(TOPIC, p as u32, OffsetSpec::Latest);
            assert_eq!(got.unwrap(), Some(*want));
        }
    };
    check_all(&broker, &expected, &next);

    // Fetch semantics: at least one whole batch even when max_bytes is smaller, and an offset
    // inside a batch returns the batch holding it.
    let (first_off, first) = &expected[0][0];
    let mut small = fetch_req(TOPIC, 0, *first_off, 0);
    small.max_bytes = 1;
    let (_, got) = shared.fetch(small).unwrap();
    assert_eq!(got, vec![at_offset(first, *first_off)]);
    let (multi_off, multi) = expected[1]
        .iter()
        .find(|(_, b)| record_count(b) > 1)
        .expect("a batch with several records");
    let (_, got) = shared.fetch(fetch_req(TOPIC, 1, multi_off + 1, 0)).unwrap();
    assert_eq!(got[0], at_offset(multi, *multi_off));

    // A clean stop, a restart on the same data dir: everything is still there.
    drop((shared, by_shard, admin));
    broker.stop_clean();
    broker.restart();
    check_all(&broker, &expected, &next);

    // The log goes on where it stopped.
    let mut shared = broker.connect();
    let mut by_shard = vec![broker.connect_shard(0), broker.connect_shard(1)];
    produce_round(&mut shared, &mut by_shard, &mut expected, &mut next);
    check_all(&broker, &expected, &next);
    drop((shared, by_shard));
    broker.stop_clean();
}

#[test]
fn a_restarted_broker_gets_its_ports_back_at_once() {
    let mut broker = Broker::start(2, &[]);
    broker.connect().create_topic(spec("ports", 2)).unwrap();
    // Clients on every port while the broker dies: its side of each connection is closed
    // first (and lingers in TIME_WAIT), then the clients go away.
    let connect_all = |broker: &Broker| {
        let mut conns = vec![
            broker.connect(),
            broker.connect_shard(0),
            broker.connect_shard(1),
        ];
        for c in conns.iter_mut() {
            c.metadata(&[]).unwrap();
        }
        conns
    };
    let conns = connect_all(&broker);
    broker.kill9();
    drop(conns);
    if let Err(f) = broker.try_restart() {
        panic!(
            "after kill -9 with clients connected, the broker cannot listen on its ports again \
             ({}):\n{}",
            f.status, f.stderr
        );
    }
    // The same after a clean stop with clients connected.
    let conns = connect_all(&broker);
    broker.stop_clean();
    drop(conns);
    if let Err(f) = broker.try_restart() {
        panic!(
            "after SIGTERM with clients connected, the broker cannot listen on its ports again \
             ({}):\n{}",
            f.status, f.stderr
        );
    }
    assert_eq!(broker.connect().metadata(&[]).unwrap().topics.len(), 1);
    broker.stop_clean();
}

#[test]
fn a_long_poll_fetch_is_answered_as_soon_as_a_produce_arrives() {
    const TOPIC: &str = "poll";
    let broker = Broker::start(2, &[]);
    broker.connect().create_topic(spec(TOPIC, 1)).unwrap();
    let owner = shard_for(TOPIC, 0, 2);
    let mut producer = broker.connect_shard(owner);
    let mut hw = 0;
    // Waiting on the owner itself, then on the other shard (which forwards the fetch).
    for (i, waiter_shard) in [owner, 1 - owner].into_iter().enumerate() {
        let mut waiter = broker.connect_shard(waiter_shard);
        let sent = Instant::now();
        waiter
            .send(RequestBody::Fetch(fetch_req(TOPIC, 0, hw, 10_000)), &[])
            .unwrap();
        // The fetch is parked at the log end: no answer for a while.
        waiter
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        match waiter.receive() {
            Err(ClientError::Io { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            other => panic!("a fetch at the log end must wait, got {other:?}"),
        }
        waiter
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();

        let b = batch(i as u64, 3, 100);
        let produced = Instant::now();
        let ack = producer
            .produce(TOPIC, 0, std::slice::from_ref(&b), 10_000)
            .unwrap();
        assert_eq!(ack.base_offset, hw);
        let (resp, payload) = waiter.receive().unwrap();
        let after_produce = produced.elapsed();
        assert_eq!(resp.error, ErrorCode::None, "{:?}", resp.message);
        assert!(
            after_produce < Duration::from_secs(3) && sent.elapsed() < Duration::from_secs(9),
            "the parked fetch took {after_produce:?} after the produce ({:?} in all)",
            sent.elapsed()
        );
        hw += 3;
        match resp.body {
            Some(ResponseBody::Fetch(f)) => assert_eq!(f.high_watermark, hw),
            other => panic!("expected a fetch response, got {other:?}"),
        }
        assert!(
            payload[..] == at_offset(&b, hw - 3)[..],
            "the parked fetch carries the batch"
        );

        // With a short wait and nothing arriving: an empty answer after about max_wait_ms.
        let start = Instant::now();
        let (f, batches) = waiter.fetch(fetch_req(TOPIC, 0, hw, 200)).unwrap();
        let took = start.elapsed();
        assert!(batches.is_empty());
        assert_eq!(f.high_watermark, hw);
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_secs(2),
            "an empty 200 ms long poll took {took:?}"
        );
    }
}

#[test]
fn a_hundred_pipelined_requests_are_answered_in_order() {
    const TOPIC: &str = "pipe";
    let broker = Broker::start(2, &[]);
    let mut conn = broker.connect();
    conn.create_topic(spec(TOPIC, 2)).unwrap();
    assert_ne!(shard_for(TOPIC, 0, 2), shard_for(TOPIC, 1, 2));

    // Alternate partitions owned by different shards (one answer may be ready before an
    // older one), with a Metadata request every tenth.
    let mut sent = Vec::new();
    for i in 0..100u64 {
        let p = (i % 2) as u32;
        let (body, b) = if i % 10 == 9 {
            (RequestBody::Metadata { topics: vec![] }, None)
        } else {
            let b = batch(i, 1 + (i as usize % 5), 20 + (i as usize * 13) % 500);
            (produce_req(TOPIC, p), Some(b))
        };
        let payload: Vec<Bytes> = b.iter().cloned().collect();
        let cid = conn.send(body, &payload).unwrap();
        sent.push((cid, p, b));
    }
    assert_eq!(conn.in_flight(), 100);
    let ids: Vec<u32> = sent.iter().map(|s| s.0).collect();
    assert_eq!(ids.iter().copied().collect::<BTreeSet<_>>().len(), 100);

    let mut next = [0i64; 2];
    let mut expected: [Vec<(i64, Bytes)>; 2] = Default::default();
    for (cid, p, b) in sent {
        let (resp, payload) = conn.receive().unwrap();
        assert_eq!(
            resp.correlation_id, cid,
            "responses come back in request order"
        );
        assert_eq!(resp.error, ErrorCode::None, "{:?}", resp.message);
        assert!(payload.is_empty());
        match (resp.body, b) {
            (Some(ResponseBody::Produce(r)), Some(b)) => {
                let n = record_count(&b);
                assert_eq!(r.base_offset, next[p as usize], "offsets are contiguous");
                assert_eq!(r.last_offset, next[p as usize] + n - 1);
                expected[p as usize].push((next[p as usize], b));
                next[p as usize] += n;
            }
            (Some(ResponseBody::Metadata(m)), None) => assert_eq!(m.topics.len(), 1),
            (body, b) => panic!("response {body:?} does not answer {b:?}"),
        }
    }
    assert_eq!(conn.in_flight(), 0);
    for p in 0..2 {
        assert_log(&mut conn, TOPIC, p, &expected[p as usize]);
    }
}

#[test]
fn pipelined_produces_to_one_partition_are_appended_in_request_order() {
    let broker = Broker::start(2, &[]);
    let mut admin = broker.connect();
    // Fresh topics: the first append to a log preallocates its segment, holding the log's
    // append lock while more requests of the same connection arrive. Reached through the
    // shared port, the owner's port and the other shard's port. Whether a later request can
    // overtake an earlier one depends on timing, hence many rounds.
    for round in 0..40u32 {
        let topic = format!("order-{round}");
        admin.create_topic(spec(&topic, 1)).unwrap();
        let owner = shard_for(&topic, 0, 2);
        let mut conn = match round % 3 {
            0 => broker.connect(),
            1 => broker.connect_shard(owner),
            _ => broker.connect_shard(1 - owner),
        };
        let mut sent = Vec::new();
        for i in 0..250u64 {
            let batches: Vec<Bytes> = (0..1 + i % 3)
                .map(|j| batch(i * 4 + j, 1 + (i as usize + j as usize) % 4, 50))
                .collect();
            conn.send(produce_req(&topic, 0), &batches).unwrap();
            sent.push(batches);
        }
        let mut next = 0;
        let mut expected = Vec::new();
        for (i, batches) in sent.into_iter().enumerate() {
            let (body, _) = conn.receive_ok().unwrap();
            let ResponseBody::Produce(ack) = body else {
                panic!("not a produce answer: {body:?}")
            };
            let records: i64 = batches.iter().map(|b| record_count(b)).sum();
            assert_eq!(
                (ack.base_offset, ack.last_offset),
                (next, next + records - 1),
                "{topic} via {}: request {i} of one connection was not appended right after \
                 request {}",
                conn.addr(),
                i as i64 - 1
            );
            for b in batches {
                let n = record_count(&b);
                expected.push((next, b));
                next += n;
            }
        }
        assert_log(&mut conn, &topic, 0, &expected);
    }
}

#[test]
fn requests_fail_with_their_error_code_and_a_message() {
    let broker = Broker::start(2, &[]);
    let mut c = broker.connect();
    c.create_topic(spec("known", 3)).unwrap();
    let good = batch(1, 2, 50);

    // Unknown topic, for every partition operation and in Metadata.
    expect_err(
        c.produce("nope", 0, std::slice::from_ref(&good), 5_000),
        ErrorCode::UnknownTopic,
        "nope",
    );
    expect_err(
        c.fetch(fetch_req("nope", 0, 0, 0)),
        ErrorCode::UnknownTopic,
        "nope",
    );
    expect_err(
        c.list_offsets("nope", 0, OffsetSpec::Latest),
        ErrorCode::UnknownTopic,
        "nope",
    );
    let meta = c
        .metadata(&["nope".to_string(), "known".to_string()])
        .unwrap();
    assert_eq!(meta.topics.len(), 2);
    assert_eq!(meta.topics[0].error, ErrorCode::UnknownTopic);
    assert!(meta.topics[0]
        .message
        .as_deref()
        .unwrap_or("")
        .contains("nope"));
    assert_eq!(meta.topics[1].error, ErrorCode::None);

    // Unknown partition.
    expect_err(
        c.produce("known", 3, std::slice::from_ref(&good), 5_000),
        ErrorCode::UnknownPartition,
        "3",
    );
    expect_err(
        c.fetch(fetch_req("known", 7, 0, 0)),
        ErrorCode::UnknownPartition,
        "7",
    );
    expect_err(
        c.list_offsets("known", u32::MAX, OffsetSpec::Earliest),
        ErrorCode::UnknownPartition,
        &u32::MAX.to_string(),
    );

    // Offsets out of range: past the end, and before the start.
    assert_eq!(
        c.produce("known", 0, std::slice::from_ref(&good), 5_000)
            .unwrap()
            .base_offset,
        0
    );
    expect_err(
        c.fetch(fetch_req("known", 0, 3, 0)),
        ErrorCode::OffsetOutOfRange,
        "3",
    );
    expect_err(
        c.fetch(fetch_req("known", 0, -1, 0)),
        ErrorCode::OffsetOutOfRange,
        "-1",
    );
    let (f, at_end) = c.fetch(fetch_req("known", 0, 2, 0)).unwrap();
    assert!(
        at_end.is_empty(),
        "a fetch at the high watermark is empty, not an error"
    );
    assert_eq!(f.high_watermark, 2);

    // Corrupt batches: a flipped byte anywhere the CRC covers, a bad magic byte, a batch cut
    // short, a good batch followed by a bad one. Nothing is appended.
    let corrupt_at = |at: usize| {
        let mut b = good.to_vec();
        b[at] ^= 0x20;
        Bytes::from(b)
    };
    for at in [21, 23, 30, 57, 61, good.len() / 2, good.len() - 1] {
        expect_err(
            c.produce("known", 0, &[corrupt_at(at)], 5_000),
            ErrorCode::CorruptBatch,
            "batch 0",
        );
    }
    expect_err(
        c.produce("known", 0, &[corrupt_at(16)], 5_000),
        ErrorCode::CorruptBatch,
        "batch 0",
    );
    expect_err(
        c.produce("known", 0, &[good.slice(..good.len() - 1)], 5_000),
        ErrorCode::CorruptBatch,
        "cut short",
    );
    expect_err(
        c.produce("known", 1, &[batch(2, 3, 10), corrupt_at(40)], 5_000),
        ErrorCode::CorruptBatch,
        "batch 1",
    );
    expect_err(
        c.produce("known", 0, &[], 5_000),
        ErrorCode::InvalidRequest,
        "no record batch",
    );
    assert_eq!(
        c.list_offsets("known", 0, OffsetSpec::Latest).unwrap(),
        Some(2)
    );
    assert_eq!(
        c.list_offsets("known", 1, OffsetSpec::Latest).unwrap(),
        Some(0)
    );
    assert_log(&mut c, "known", 0, &[(0, good.clone())]);
    // The connection is still usable and the log goes on from where it was.
    assert_eq!(
        c.produce("known", 0, std::slice::from_ref(&good), 5_000)
            .unwrap()
            .base_offset,
        2
    );

    // CreateTopics: invalid names, partition counts out of range, a name taken.
    let long = "x".repeat(250);
    for name in [
        "",
        ".",
        "..",
        "has space",
        "slash/name",
        "ünïcode",
        "tab\t",
        long.as_str(),
    ] {
        expect_err(
            c.create_topic(spec(name, 1)),
            ErrorCode::InvalidTopic,
            "invalid topic name",
        );
    }
    expect_err(
        c.create_topic(spec("zero", 0)),
        ErrorCode::InvalidPartitions,
        "0 partitions",
    );
    expect_err(
        c.create_topic(spec("too-many", 10_001)),
        ErrorCode::InvalidPartitions,
        "10001 partitions",
    );
    expect_err(
        c.create_topic(spec("known", 3)),
        ErrorCode::TopicAlreadyExists,
        "known",
    );
    let longest = "y".repeat(249);
    c.create_topic(spec(&longest, 1)).unwrap();
    assert_eq!(
        c.produce(&longest, 0, std::slice::from_ref(&good), 5_000)
            .unwrap()
            .base_offset,
        0
    );

    // One request, several topics: each gets its own outcome, in order.
    let results = c
        .create_topics(vec![
            spec("multi-a", 2),
            spec("known", 1),
            spec("bad name", 1),
            spec("multi-b", 0),
            spec("multi-a", 1),
        ])
        .unwrap();
    let codes: Vec<(String, ErrorCode)> =
        results.iter().map(|r| (r.name.clone(), r.error)).collect();
    assert_eq!(
        codes,
        vec![
            ("multi-a".to_string(), ErrorCode::None),
            ("known".to_string(), ErrorCode::TopicAlreadyExists),
            ("bad name".to_string(), ErrorCode::InvalidTopic),
            ("multi-b".to_string(), ErrorCode::InvalidPartitions),
            ("multi-a".to_string(), ErrorCode::TopicAlreadyExists),
        ]
    );
    assert!(results[0].message.is_none());
    assert!(results[1..]
        .iter()
        .all(|r| r.message.as_deref().is_some_and(|m| !m.is_empty())));
    let names: BTreeSet<String> = c
        .metadata(&[])
        .unwrap()
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["known".to_string(), "multi-a".to_string(), longest.clone()])
    );
}

#[test]
fn an_unsupported_api_version_is_refused_and_the_connection_stays_open() {
    let broker = Broker::start(1, &[]);
    broker.connect().create_topic(spec("v", 1)).unwrap();
    let mut raw = Raw::connect(&broker.addr(), Duration::from_secs(10));

    let old = Request {
        api_version: 99,
        correlation_id: 42,
        client_id: Some("from-the-future".into()),
        body: RequestBody::Metadata { topics: vec![] },
    };
    raw.send(&old.encode_frame(0)).unwrap();
    let (resp, payload) = raw.response();
    assert_eq!(resp.correlation_id, 42);
    assert_eq!(resp.error, ErrorCode::UnsupportedVersion);
    assert!(
        resp.message.as_deref().unwrap_or("").contains("99"),
        "{:?}",
        resp.message
    );
    assert!(resp.body.is_none() && payload.is_empty());

    // A produce of an unknown version is not applied; its payload is skipped with the frame.
    let b = batch(1, 1, 10);
    let mut frame = Request {
        api_version: 99,
        correlation_id: 43,
        client_id: None,
        body: produce_req("v", 0),
    }
    .encode_frame(b.len());
    frame.extend_from_slice(&b);
    raw.send(&frame).unwrap();
    let (resp, _) = raw.response();
    assert_eq!(
        (resp.correlation_id, resp.error),
        (43, ErrorCode::UnsupportedVersion)
    );

    // The same connection still serves requests of the supported version.
    let ok = Request {
        api_version: API_VERSION,
        correlation_id: 44,
        client_id: None,
        body: RequestBody::ApiVersions,
    };
    raw.send(&ok.encode_frame(0)).unwrap();
    let (resp, _) = raw.response();
    assert_eq!((resp.correlation_id, resp.error), (44, ErrorCode::None));
    match resp.body {
        Some(ResponseBody::ApiVersions(apis)) => {
            let keys: Vec<ApiKey> = apis.iter().map(|a| a.api).collect();
            assert_eq!(keys, ApiKey::ALL.to_vec());
            assert!(apis
                .iter()
                .all(|a| (a.min_version, a.max_version) == (0, 0)));
        }
        other => panic!("expected ApiVersions, got {other:?}"),
    }
    raw.finish();
    raw.expect_closed();
    assert_eq!(
        broker
            .connect()
            .list_offsets("v", 0, OffsetSpec::Latest)
            .unwrap(),
        Some(0)
    );
}

#[test]
fn a_frame_over_the_limit_gets_frame_too_large_and_only_that_connection_closes() {
    let mut broker = Broker::start(1, &["--max-frame-bytes", "65536"]);
    let mut bystander = broker.connect();
    bystander.create_topic(spec("big", 1)).unwrap();

    let big = batch(1, 100, 1024);
    assert!(big.len() > 100 * 1024);
    let mut frame = Request {
        api_version: API_VERSION,
        correlation_id: 5,
        client_id: None,
        body: produce_req("big", 0),
    }
    .encode_frame(big.len());
    frame.extend_from_slice(&big);
    let mut raw = Raw::connect(&broker.addr(), Duration::from_secs(10));
    // The broker may close before taking all of it; what matters is what it answers.
    let _ = raw.send(&frame);
    let (resp, _) = raw.response();
    assert_eq!(resp.correlation_id, 0, "the frame's header was never read");
    assert_eq!(resp.error, ErrorCode::FrameTooLarge);
    assert!(
        resp.message.as_deref().unwrap_or("").contains("65536"),
        "{:?}",
        resp.message
    );
    raw.expect_closed();

    // Other connections, old and new, still work; nothing of the big batch was appended.
    let small = batch(2, 10, 100);
    assert_eq!(
        bystander
            .produce("big", 0, std::slice::from_ref(&small), 5_000)
            .unwrap()
            .base_offset,
        0
    );
    let mut fresh = broker.connect();
    assert_log(&mut fresh, "big", 0, &[(0, small)]);
    // A batch just under the limit is accepted.
    let near = batch(3, 60, 1000);
    assert!(near.len() < 65536 - 200);
    assert_eq!(
        fresh.produce("big", 0, &[near], 5_000).unwrap().base_offset,
        10
    );
    drop((bystander, fresh));
    broker.stop_clean();
}

#[test]
fn list_offsets_finds_earliest_latest_and_timestamps() {
    const TOPIC: &str = "times";
    let mut broker = Broker::start(2, &[]);
    let mut c = broker.connect();
    c.create_topic(spec(TOPIC, 2)).unwrap();
    for p in 0..2 {
        assert_eq!(
            c.list_offsets(TOPIC, p, OffsetSpec::Earliest).unwrap(),
            Some(0)
        );
        assert_eq!(
            c.list_offsets(TOPIC, p, OffsetSpec::Latest).unwrap(),
            Some(0)
        );
        assert_eq!(
            c.list_offsets(TOPIC, p, OffsetSpec::Timestamp(0)).unwrap(),
            None
        );
    }
    // Batch k holds 4 records stamped t0 + 1000k + 10n (n = 0..4), at offsets 4k..4k+4.
    let t0 = now_ms() - 60_000;
    for k in 0..5 {
        let b = batch_at(k as u64, 4, 30, t0 + 1000 * k, 10);
        assert_eq!(c.produce(TOPIC, 1, &[b], 5_000).unwrap().base_offset, 4 * k);
    }
    let check = |c: &mut Connection| {
        let at = |c: &mut Connection, ts: i64| {
            c.list_offsets(TOPIC, 1, OffsetSpec::Timestamp(ts)).unwrap()
        };
        assert_eq!(
            c.list_offsets(TOPIC, 1, OffsetSpec::Earliest).unwrap(),
            Some(0)
        );
        assert_eq!(
            c.list_offsets(TOPIC, 1, OffsetSpec::Latest).unwrap(),
            Some(20)
        );
        assert_eq!(at(c, 0), Some(0));
        assert_eq!(at(c, t0 - 1), Some(0));
        for k in 0..5 {
            for n in 0..4 {
                let ts = t0 + 1000 * k + 10 * n;
                assert_eq!(
                    at(c, ts),
                    Some(4 * k + n),
                    "timestamp of record {n} of batch {k}"
                );
                assert_eq!(
                    at(c, ts - 5),
                    Some(4 * k + n),
                    "just before record {n} of batch {k}"
                );
            }
            assert_eq!(
                at(c, t0 + 1000 * k + 31),
                (k < 4).then_some(4 * k + 4),
                "after batch {k}"
            );
        }
        assert_eq!(at(c, t0 + 4031), None);
        assert_eq!(at(c, i64::MAX), None);
        // The other partition is still empty.
        assert_eq!(
            c.list_offsets(TOPIC, 0, OffsetSpec::Timestamp(0)).unwrap(),
            None
        );
    };
    check(&mut c);
    drop(c);
    broker.stop_clean();
    broker.restart();
    check(&mut broker.connect());
}

#[test]
fn a_deleted_topic_is_gone_and_its_name_starts_over() {
    let mut broker = Broker::start(2, &[]);
    let mut c = broker.connect();
    c.create_topic(spec("doomed", 4)).unwrap();
    c.create_topic(spec("survivor", 1)).unwrap();
    for p in 0..4 {
        for i in 0..2 {
            c.produce("doomed", p, &[batch(u64::from(p) * 2 + i, 3, 40)], 5_000)
                .unwrap();
        }
    }
    let keep = batch(99, 2, 20);
    c.produce("survivor", 0, std::slice::from_ref(&keep), 5_000)
        .unwrap();
    let topic_dir = broker.data_dir().join("topics").join("doomed");
    assert!(
        topic_dir.join("3").is_dir(),
        "{} should hold partition 3",
        topic_dir.display()
    );

    let results = c
        .delete_topics(vec!["doomed".into(), "never-was".into()])
        .unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(
        (results[0].name.as_str(), results[0].error),
        ("doomed", ErrorCode::None)
    );
    assert_eq!(
        (results[1].name.as_str(), results[1].error),
        ("never-was", ErrorCode::UnknownTopic)
    );
    assert!(results[1]
        .message
        .as_deref()
        .unwrap_or("")
        .contains("never-was"));

    // The topic is unknown everywhere, on every shard, and its files are gone.
    let meta = c.metadata(&["doomed".to_string()]).unwrap();
    assert_eq!(meta.topics[0].error, ErrorCode::UnknownTopic);
    let all: Vec<String> = c
        .metadata(&[])
        .unwrap()
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(all, vec!["survivor".to_string()]);
    for s in 0..2 {
        let mut via = broker.connect_shard(s);
        for p in 0..4 {
            expect_err(
                via.produce("doomed", p, &[batch(7, 1, 1)], 5_000),
                ErrorCode::UnknownTopic,
                "doomed",
            );
            expect_err(
                via.fetch(fetch_req("doomed", p, 0, 0)),
                ErrorCode::UnknownTopic,
                "doomed",
            );
            expect_err(
                via.list_offsets("doomed", p, OffsetSpec::Latest),
                ErrorCode::UnknownTopic,
                "doomed",
            );
        }
    }
    assert!(
        !topic_dir.exists(),
        "{} should be gone",
        topic_dir.display()
    );
    let again = c.delete_topics(vec!["doomed".into()]).unwrap();
    assert_eq!(again[0].error, ErrorCode::UnknownTopic);

    // The same name again: a new, empty topic that starts at offset 0.
    c.create_topic(spec("doomed", 2)).unwrap();
    let meta = c.metadata(&["doomed".to_string()]).unwrap();
    assert_eq!(meta.topics[0].partitions.len(), 2);
    assert!(meta.topics[0]
        .partitions
        .iter()
        .all(|p| p.high_watermark == 0));
    let fresh = batch(1000, 2, 10);
    assert_eq!(
        c.produce("doomed", 1, std::slice::from_ref(&fresh), 5_000)
            .unwrap()
            .base_offset,
        0
    );
    assert_log(&mut c, "doomed", 0, &[]);
    assert_log(&mut c, "doomed", 1, &[(0, fresh.clone())]);
    assert_log(&mut c, "survivor", 0, &[(0, keep.clone())]);
    assert!(!topic_dir.join("3").exists());

    // And after a restart.
    drop(c);
    broker.stop_clean();
    broker.restart();
    let mut c = broker.connect();
    assert_log(&mut c, "doomed", 1, &[(0, fresh)]);
    assert_log(&mut c, "survivor", 0, &[(0, keep)]);
    expect_err(
        c.fetch(fetch_req("doomed", 3, 0, 0)),
        ErrorCode::UnknownPartition,
        "3",
    );
}

// ---------------------------------------------------------------------------------------------
// Start-up failures

fn failing_spec(dir: &tempfile::TempDir, extra: &[&str]) -> BrokerSpec {
    BrokerSpec {
        data_dir: dir.path().join("data"),
        port: free_base_port(4),
        shards: 2,
        extra: extra.iter().map(|s| s.to_string()).collect(),
    }
}

#[track_caller]
fn assert_fails(args: &[String], dir: &tempfile::TempDir, code: i32, needles: &[&str]) -> String {
    let f = expect_start_failure(args, &dir.path().join("failed.stderr"));
    assert_eq!(
        f.status.code(),
        Some(code),
        "exit status of {args:?}; stderr:\n{}",
        f.stderr
    );
    for needle in needles {
        assert!(
            f.stderr.contains(needle),
            "stderr of {args:?} should say {needle:?}:\n{}",
            f.stderr
        );
    }
    f.stderr
}

#[test]
fn start_up_fails_when_a_port_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    // The shared port, then a shard's port.
    for held in [0u16, 2] {
        let spec = failing_spec(&dir, &[]);
        let port = spec.port + held;
        let _holder = TcpListener::bind(("127.0.0.1", port)).unwrap();
        assert_fails(
            &spec.args(),
            &dir,
            1,
            &[
                &format!("cannot listen on 127.0.0.1:{port}"),
                "another broker",
            ],
        );
    }
}

#[test]
fn start_up_fails_when_another_broker_holds_the_data_dir() {
    let mut first = Broker::start(1, &[]);
    first.connect().create_topic(spec("mine", 1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut second = failing_spec(&dir, &[]);
    second.data_dir = first.data_dir().to_path_buf();
    let pid = first.pid().to_string();
    assert_fails(
        &second.args(),
        &dir,
        1,
        &["is locked by another strata broker", &pid],
    );
    // The first broker is unaffected.
    let meta = first.connect().metadata(&[]).unwrap();
    assert_eq!(meta.topics.len(), 1);
    first.stop_clean();
}

#[test]
fn start_up_fails_when_the_data_dir_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let mut spec = failing_spec(&dir, &[]);
    spec.data_dir = file.join("sub");
    assert_fails(
        &spec.args(),
        &dir,
        1,
        &[
            "cannot create data dir",
            &spec.data_dir.display().to_string(),
        ],
    );
}

#[test]
fn start_up_fails_on_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    // Rejected by the argument parser (usage error, status 2).
    assert_fails(
        &failing_spec(&dir, &["--fsync", "sometimes"]).args(),
        &dir,
        2,
        &["--fsync", "sometimes"],
    );
    assert_fails(
        &failing_spec(&dir, &["--shards-typo", "1"]).args(),
        &dir,
        2,
        &["--shards-typo"],
    );
    // Rejected when the configuration is checked (status 1).
    let mut zero = failing_spec(&dir, &[]);
    zero.shards = 0;
    assert_fails(&zero.args(), &dir, 1, &["--shards must be at least 1"]);
    assert_fails(
        &failing_spec(&dir, &["--max-frame-bytes", "100"]).args(),
        &dir,
        1,
        &["--max-frame-bytes 100 out of range"],
    );
    let mut args = failing_spec(&dir, &[]).args();
    let at = args.iter().position(|a| a == "--listen").unwrap();
    args[at + 1] = "nonsense".into();
    assert_fails(&args, &dir, 1, &["invalid listen address \"nonsense\""]);
}

// ---------------------------------------------------------------------------------------------
// Robustness

#[test]
fn a_produce_with_acks_none_is_never_answered_even_when_refused() {
    let broker = Broker::start(1, &[]);
    let mut c = broker.connect();
    c.create_topic(spec("quiet", 1)).unwrap();
    let quiet = |c: &mut Connection, payload: Bytes| {
        let body = RequestBody::Produce(ProduceRequest {
            topic: "quiet".into(),
            partition: 0,
            acks: Acks::None,
            timeout_ms: 10_000,
        });
        c.send(body, &[payload]).unwrap();
        assert_eq!(c.in_flight(), 0, "no answer is expected");
    };
    // Accepted, unknown partition, then refused before reaching the log (corrupt, empty).
    quiet(&mut c, batch(1, 1, 10));
    let mut corrupt = batch(2, 1, 10).to_vec();
    corrupt[40] ^= 1;
    quiet(&mut c, Bytes::from(corrupt));
    quiet(&mut c, Bytes::new());
    // The next request's answer must be the next thing on the wire. Requests of a connection
    // run concurrently, so the accepted record may become visible a little later.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let meta = c.metadata(&["quiet".to_string()]);
        let meta = meta.unwrap_or_else(|e| {
            panic!("an acks=none produce must get no response at all (schema: Acks.None), but: {e}")
        });
        let hw = meta.topics[0].partitions[0].high_watermark;
        assert!(
            hw <= 1,
            "only the one valid batch is appended, high watermark {hw}"
        );
        if hw == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the accepted acks=none produce never became visible"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Bytes waiting in a socket's receive queue.
fn queued(raw: &Raw) -> usize {
    use std::os::unix::io::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, on a socket we own.
    let rc = unsafe { libc::ioctl(raw.stream.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0);
    n as usize
}

#[test]
fn a_client_that_stops_reading_does_not_block_shutdown() {
    let mut broker = Broker::start(1, &[]);
    let mut c = broker.connect();
    c.create_topic(spec("stall", 1)).unwrap();
    for i in 0..16 {
        c.produce("stall", 0, &[batch(i, 64, 1000)], 10_000)
            .unwrap();
    }
    // 300 fetches of ~1 MiB each, never read: the broker's writes to this client block.
    let mut stalled = Raw::connect(&broker.addr(), Duration::from_secs(10));
    let mut frames = Vec::new();
    for cid in 1..=300 {
        let req = Request {
            api_version: API_VERSION,
            correlation_id: cid,
            client_id: None,
            body: RequestBody::Fetch(fetch_req("stall", 0, 0, 0)),
        };
        frames.extend_from_slice(&req.encode_frame(0));
    }
    stalled.send(&frames).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = 0;
    // Wait until the answers pile up in our receive queue and stop growing.
    loop {
        let now = queued(&stalled);
        if now >= 64 << 10 && now == last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broker never filled the socket ({now} bytes)"
        );
        last = now;
        std::thread::sleep(Duration::from_millis(50));
    }
    // Other clients are still served.
    assert_eq!(
        broker
            .connect()
            .list_offsets("stall", 0, OffsetSpec::Latest)
            .unwrap(),
        Some(16 * 64)
    );
    drop(c);
    let started = Instant::now();
    let status = broker.stop_within(Duration::from_secs(10));
    assert!(
        status.is_some(),
        "broker still running 10 s after SIGTERM: a client that stops reading blocks shutdown"
    );
    let status = status.unwrap();
    assert!(
        status.success(),
        "exit status {status} after {:?}",
        started.elapsed()
    );
    drop(stalled);
}

#[test]
fn produce_timeouts_leave_a_consistent_log() {
    const TOPIC: &str = "hurry";
    let mut broker = Broker::start(1, &[]);
    let mut c = broker.connect();
    c.create_topic(spec(TOPIC, 1)).unwrap();
    // Pipelined produces of three batches each, most of which must be acknowledged within a
    // few ms: under fsync=always many time out, possibly after their batches got offsets.
    let mut sent = Vec::new();
    for i in 0..60u64 {
        let batches: Vec<Bytes> = (0..3).map(|j| batch(i * 3 + j, 2, 2000)).collect();
        let body = RequestBody::Produce(ProduceRequest {
            topic: TOPIC.into(),
            partition: 0,
            acks: Acks::Leader,
            timeout_ms: [1, 2, 5, 10_000][i as usize % 4],
        });
        c.send(body, &batches).unwrap();
        sent.push(batches);
    }
    let mut acked = Vec::new();
    let mut timeouts = 0;
    for batches in &sent {
        let (resp, _) = c.receive().unwrap();
        match (resp.error, resp.body) {
            (ErrorCode::None, Some(ResponseBody::Produce(p))) => {
                assert_eq!(p.last_offset, p.base_offset + 5);
                for (j, b) in batches.iter().enumerate() {
                    acked.push((p.base_offset + 2 * j as i64, b.clone()));
                }
            }
            (ErrorCode::Timeout, None) => {
                timeouts += 1;
                assert!(resp
                    .message
                    .as_deref()
                    .unwrap_or("")
                    .contains("not acknowledged"));
            }
            (code, body) => panic!("unexpected answer {code} {body:?} {:?}", resp.message),
        }
    }
    println!("{} acknowledged, {timeouts} timed out", acked.len() / 3);
    assert!(
        acked.len() >= 15 * 3,
        "the produces with a 10 s timeout are acknowledged"
    );
    // A produce that waits for its own acknowledgement; the log's end comes right before it.
    let last = batch(1000, 1, 1);
    let end = c
        .produce(TOPIC, 0, std::slice::from_ref(&last), 10_000)
        .unwrap()
        .base_offset;
    let all: Vec<Bytes> = sent.into_iter().flatten().chain([last.clone()]).collect();
    acked.push((end, last));
    assert_eq!(check_after_timeouts(&mut c, &acked, &all), end + 1);
    drop(c);
    broker.stop_clean();
    broker.restart();
    assert_eq!(
        check_after_timeouts(&mut broker.connect(), &acked, &all),
        end + 1
    );
}

/// The "hurry" log holds every acknowledged batch at its offset, and otherwise only batches
/// that were sent, each at most once; returns its end.
fn check_after_timeouts(c: &mut Connection, acked: &[(i64, Bytes)], all: &[Bytes]) -> i64 {
    let log = fetch_all(c, "hurry", 0);
    for (off, want) in acked {
        assert!(
            log.iter()
                .any(|(o, b)| o == off && b[..] == at_offset(want, *off)[..]),
            "acknowledged batch at {off} is missing"
        );
    }
    let mut seen = BTreeSet::new();
    for (off, b) in &log {
        let i = all
            .iter()
            .position(|s| s[..] == at_offset(b, 0)[..])
            .unwrap_or_else(|| panic!("the batch at {off} was never produced"));
        assert!(seen.insert(i), "batch {i} stored twice");
    }
    log.last().map_or(0, |(o, b)| o + record_count(b))
}

#[test]
fn small_segments_roll_and_read_back_after_a_restart() {
    const TOPIC: &str = "rolling";
    let mut broker = Broker::start(2, &[]);
    let mut c = broker.connect();
    let mut s = spec(TOPIC, 2);
    s.segment_bytes = Some(64 * 1024);
    c.create_topic(s).unwrap();
    let meta = c.metadata(&[TOPIC.to_string()]).unwrap();
    assert_eq!(meta.topics[0].segment_bytes, Some(64 * 1024));
    let mut expected: Vec<Vec<(i64, Bytes)>> = vec![Vec::new(), Vec::new()];
    for i in 0..80u64 {
        let p = (i % 2) as u32;
        let b = batch(i, 10, 1000); // ~10 KiB: a segment holds about six
        let off = c
            .produce(TOPIC, p, std::slice::from_ref(&b), 10_000)
            .unwrap()
            .base_offset;
        assert_eq!(off, 10 * (i as i64 / 2));
        expected[p as usize].push((off, b));
    }
    // A batch larger than the topic's segments is refused.
    expect_err(
        c.produce(TOPIC, 0, &[batch(999, 70, 1000)], 10_000),
        ErrorCode::RecordTooLarge,
        TOPIC,
    );
    let segments = |broker: &Broker, p: u32| {
        std::fs::read_dir(
            broker
                .data_dir()
                .join("topics")
                .join(TOPIC)
                .join(p.to_string()),
        )
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count()
    };
    assert!(
        segments(&broker, 0) >= 5,
        "{} segments",
        segments(&broker, 0)
    );
    for p in 0..2 {
        assert_log(&mut c, TOPIC, p, &expected[p as usize]);
    }
    drop(c);
    broker.stop_clean();
    broker.restart();
    let mut c = broker.connect();
    for p in 0..2 {
        assert_log(&mut c, TOPIC, p, &expected[p as usize]);
        // Reads that start inside an older segment.
        let (off, b) = &expected[p as usize][17];
        let (_, got) = c.fetch(fetch_req(TOPIC, p, off + 3, 0)).unwrap();
        assert_eq!(got[0], at_offset(b, *off));
    }
    // Invalid topic settings are refused with InvalidConfig.
    let mut bad = spec("bad-config", 1);
    bad.segment_bytes = Some(1000);
    expect_err(
        c.create_topic(bad),
        ErrorCode::InvalidConfig,
        "segment_bytes",
    );
    let mut bad = spec("bad-config", 1);
    bad.retention_bytes = Some(0);
    expect_err(
        c.create_topic(bad),
        ErrorCode::InvalidConfig,
        "retention_bytes",
    );
}

#[test]
fn deleting_a_topic_answers_fetches_parked_on_it() {
    let broker = Broker::start(1, &[]);
    let mut admin = broker.connect();
    admin.create_topic(spec("parked", 1)).unwrap();
    let mut waiter = broker.connect();
    let sent = Instant::now();
    waiter
        .send(RequestBody::Fetch(fetch_req("parked", 0, 0, 6_000)), &[])
        .unwrap();
    // The fetch is parked (no answer yet), then its topic goes away.
    waiter
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(waiter.receive().is_err(), "the fetch should be waiting");
    waiter
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let results = admin.delete_topics(vec!["parked".into()]).unwrap();
    assert_eq!(results[0].error, ErrorCode::None);
    let deleted = Instant::now();
    let (resp, payload) = waiter.receive().unwrap();
    assert!(payload.is_empty());
    assert!(
        deleted.elapsed() < Duration::from_secs(3),
        "a fetch parked on a deleted topic was answered {:?} after the delete ({:?} after it was \
         sent, max_wait 6 s): {resp:?}",
        deleted.elapsed(),
        sent.elapsed()
    );
}
