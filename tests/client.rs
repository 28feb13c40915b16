//! The client library against a real broker: the producer's batching, partitioning and
//! acknowledgements, the consumer's seeks and long-poll fetches, and their errors.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::Broker;
use strata::client::{
    partition_for_key, ClientError, Consumer, ConsumerConfig, ConsumerRecord, FetchInfo,
    FetchObserver, Producer, ProducerConfig, SeekTo,
};
use strata::protocol::{ErrorCode, TopicSpec};

fn create(broker: &Broker, name: &str, partitions: u32) {
    broker
        .connect()
        .create_topic(TopicSpec {
            name: name.into(),
            partitions,
            retention_bytes: None,
            retention_ms: None,
            segment_bytes: None,
        })
        .unwrap();
}

/// Polls until `n` records arrived (or panics after `limit`).
fn consume_n(consumer: &mut Consumer, n: usize, limit: Duration) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records arrived",
            out.len()
        );
        out.extend(consumer.poll(Duration::from_millis(200)).unwrap());
    }
    out
}

#[test]
fn keyed_records_land_on_kafka_partitions_and_come_back_in_order() {
    let broker = Broker::start(2, &[]);
    create(&broker, "keyed", 5);
    let producer = Producer::connect(&broker.addr(), ProducerConfig::default()).unwrap();
    let mut futures = Vec::new();
    for i in 0..5_000u32 {
        let key = format!("user-{}", i % 97);
        let value = format!("event-{i}");
        let f = producer
            .send("keyed", None, Some(key.as_bytes()), Some(value.as_bytes()))
            .unwrap();
        futures.push((key, value, f));
    }
    producer.flush();
    let mut acked: BTreeMap<(u32, i64), (String, String)> = BTreeMap::new();
    for (key, value, f) in futures {
        let md = f.wait().expect("acknowledged");
        assert_eq!(
            md.partition,
            partition_for_key(key.as_bytes(), 5),
            "key {key}"
        );
        assert!(
            acked
                .insert((md.partition, md.offset), (key, value))
                .is_none(),
            "offsets are unique"
        );
    }
    // Offsets of each partition are contiguous from 0.
    for p in 0..5 {
        let offsets: Vec<i64> = acked
            .keys()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "partition {p}"
        );
    }

    let mut consumer = Consumer::connect(&broker.addr(), ConsumerConfig::default()).unwrap();
    consumer.assign("keyed", None, SeekTo::Earliest).unwrap();
    let records = consume_n(&mut consumer, 5_000, Duration::from_secs(30));
    assert_eq!(records.len(), 5_000);
    let mut last: BTreeMap<u32, i64> = BTreeMap::new();
    for r in &records {
        let (key, value) = &acked[&(r.partition, r.offset)];
        assert_eq!(r.key.as_deref(), Some(key.as_bytes()));
        assert_eq!(r.value.as_deref(), Some(value.as_bytes()));
        let prev = last.insert(r.partition, r.offset);
        assert!(
            prev.is_none_or(|p| p + 1 == r.offset),
            "in order within a partition"
        );
    }
}

#[test]
fn keyless_records_stick_to_a_partition_per_batch() {
    let broker = Broker::start(1, &[]);
    create(&broker, "sticky", 3);
    let config = ProducerConfig {
        batch_bytes: 4096,
        linger: Duration::from_millis(50),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(&broker.addr(), config).unwrap();
    let futures: Vec<_> = (0..600)
        .map(|i| {
            producer
                .send("sticky", None, None, Some(format!("v{i:05}").as_bytes()))
                .unwrap()
        })
        .collect();
    producer.flush();
    let parts: Vec<u32> = futures
        .into_iter()
        .map(|f| f.wait().unwrap().partition)
        .collect();
    let used: HashSet<u32> = parts.iter().copied().collect();
    assert_eq!(
        used.len(),
        3,
        "batches rotate over every partition: {used:?}"
    );
    // Sticky: consecutive records share a partition in long runs, not one by one.
    let switches = parts.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        switches < 60,
        "{switches} partition switches for 600 records"
    );
}

#[test]
fn explicit_partition_and_unknown_topic_errors() {
    let broker = Broker::start(1, &[]);
    create(&broker, "two", 2);
    let producer = Producer::connect(&broker.addr(), ProducerConfig::default()).unwrap();
    let md = producer
        .send("two", Some(1), None, Some(b"x"))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!((md.partition, md.offset), (1, 0));
    match producer.send("two", Some(2), None, Some(b"x")) {
        Err(ClientError::UnknownTopic {
            partition: Some(2), ..
        }) => {}
        other => panic!("partition 2 of 2: {:?}", other.err()),
    }
    match producer.send("missing", None, None, Some(b"x")) {
        Err(e @ ClientError::UnknownTopic { .. }) => {
            assert_eq!(e.code(), Some(ErrorCode::UnknownTopic));
            assert!(e.to_string().contains("missing"), "{e}");
        }
        other => panic!("unknown topic: {:?}", other.err()),
    }
    match Consumer::connect(&broker.addr(), ConsumerConfig::default())
        .unwrap()
        .assign("missing", None, SeekTo::Earliest)
    {
        Err(ClientError::UnknownTopic { .. }) => {}
        other => panic!("consumer of an unknown topic: {other:?}"),
    }
}

#[test]
fn the_fetch_observer_sees_every_fetched_record_with_its_latency() {
    let broker = Broker::start(1, &[]);
    create(&broker, "observed", 2);
    let producer = Producer::connect(&broker.addr(), ProducerConfig::default()).unwrap();
    let acks: Vec<_> = (0..300u32)
        .map(|i| {
            let value = vec![b'v'; 100];
            producer
                .send("observed", Some(i % 2), None, Some(&value))
                .unwrap()
        })
        .collect();
    producer.flush();
    acks.into_iter().for_each(|a| {
        a.wait().unwrap();
    });
    let seen: std::sync::Arc<std::sync::Mutex<Vec<FetchInfo>>> = Default::default();
    let sink = seen.clone();
    let config = ConsumerConfig {
        on_fetch: Some(FetchObserver(std::sync::Arc::new(move |f: &FetchInfo| {
            sink.lock().unwrap().push(*f)
        }))),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(&broker.addr(), config).unwrap();
    consumer.assign("observed", None, SeekTo::Earliest).unwrap();
    let got = consume_n(&mut consumer, 300, Duration::from_secs(20));
    assert_eq!(got.len(), 300);
    let seen = seen.lock().unwrap().clone();
    let records: usize = seen.iter().map(|f| f.records).sum();
    assert_eq!(records, 300, "{seen:?}");
    for p in [0, 1] {
        let of_p: Vec<&FetchInfo> = seen.iter().filter(|f| f.partition == p).collect();
        assert_eq!(of_p.iter().map(|f| f.records).sum::<usize>(), 150);
        // Record bytes plus batch overhead.
        assert!(of_p.iter().map(|f| f.bytes).sum::<usize>() > 150 * 100);
        assert_eq!(
            of_p.iter().map(|f| f.record_bytes).sum::<usize>(),
            150 * 100
        );
    }
    assert!(seen
        .iter()
        .all(|f| f.latency > Duration::ZERO && f.latency < Duration::from_secs(20)));
}

#[test]
fn connection_refused_names_the_address() {
    let port = common::free_base_port(1);
    let addr = format!("127.0.0.1:{port}");
    let err = Producer::connect(&addr, ProducerConfig::default())
        .err()
        .expect("nobody listens");
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr), "{err}");
    assert!(err.is_retriable());
}

#[test]
fn consumer_seeks_by_offset_timestamp_and_latest_and_long_polls() {
    let broker = Broker::start(1, &[]);
    create(&broker, "seek", 1);
    let producer = Producer::connect(&broker.addr(), ProducerConfig::default()).unwrap();
    let first: Vec<_> = (0..100)
        .map(|i| {
            producer
                .send("seek", None, None, Some(format!("a{i}").as_bytes()))
                .unwrap()
        })
        .collect();
    producer.flush();
    first.into_iter().for_each(|f| {
        f.wait().unwrap();
    });
    std::thread::sleep(Duration::from_millis(20));
    let cut = common::now_ms();
    std::thread::sleep(Duration::from_millis(20));
    let second: Vec<_> = (0..50)
        .map(|i| {
            producer
                .send("seek", None, None, Some(format!("b{i}").as_bytes()))
                .unwrap()
        })
        .collect();
    producer.flush();
    second.into_iter().for_each(|f| {
        f.wait().unwrap();
    });

    let mut c = Consumer::connect(&broker.addr(), ConsumerConfig::default()).unwrap();
    c.assign("seek", Some(&[0]), SeekTo::Offset(42)).unwrap();
    let got = consume_n(&mut c, 108, Duration::from_secs(10));
    assert_eq!(
        got[0].offset, 42,
        "a fetch starting mid-batch skips the earlier records"
    );
    assert_eq!(got[0].value.as_deref(), Some(&b"a42"[..]));

    c.seek("seek", 0, SeekTo::Timestamp(cut)).unwrap();
    let got = consume_n(&mut c, 50, Duration::from_secs(10));
    assert_eq!(got[0].offset, 100);
    assert_eq!(got[0].value.as_deref(), Some(&b"b0"[..]));
    assert_eq!(c.position("seek", 0), Some(150));

    c.seek("seek", 0, SeekTo::Latest).unwrap();
    assert!(
        c.poll(Duration::from_millis(300)).unwrap().is_empty(),
        "nothing after the end"
    );
    // A record produced now reaches the long-polling consumer promptly.
    let start = Instant::now();
    producer
        .send("seek", None, None, Some(b"late"))
        .unwrap()
        .wait()
        .unwrap();
    let got = consume_n(&mut c, 1, Duration::from_secs(5));
    assert_eq!(got[0].value.as_deref(), Some(&b"late"[..]));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn producer_retries_across_a_broker_restart() {
    let mut broker = Broker::start(1, &[]);
    create(&broker, "restart", 1);
    let config = ProducerConfig {
        retries: 20,
        retry_backoff: Duration::from_millis(50),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(&broker.addr(), config).unwrap();
    producer
        .send("restart", None, None, Some(b"before"))
        .unwrap()
        .wait()
        .unwrap();
    broker.stop_clean();
    let pending = producer
        .send("restart", None, None, Some(b"during"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    broker.restart();
    let md = pending.wait().expect("retried until the broker came back");
    assert_eq!((md.partition, md.offset), (0, 1));
}

#[test]
fn a_small_buffer_makes_send_wait_instead_of_growing() {
    let broker = Broker::start(1, &[]);
    create(&broker, "bounded", 2);
    let config = ProducerConfig {
        batch_bytes: 2048,
        buffer_bytes: 4096,
        linger: Duration::from_millis(1),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(&broker.addr(), config).unwrap();
    let value = vec![b'v'; 500];
    let futures: Vec<_> = (0..400)
        .map(|_| producer.send("bounded", None, None, Some(&value)).unwrap())
        .collect();
    producer.flush();
    let mut per_partition = BTreeMap::new();
    for f in futures {
        let md = f.wait().expect("every record is acknowledged");
        *per_partition.entry(md.partition).or_insert(0) += 1;
    }
    assert_eq!(per_partition.values().sum::<i32>(), 400);
    let bad = ProducerConfig {
        buffer_bytes: 0,
        ..ProducerConfig::default()
    };
    assert!(matches!(
        Producer::connect(&broker.addr(), bad),
        Err(ClientError::Invalid(_))
    ));
}
