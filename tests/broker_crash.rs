//! Crash consistency of the broker: `kill -9` while a producer pipelines acks=leader produces,
//! at a random moment, several times on the same data dir. After each restart every
//! acknowledged batch is served byte for byte at its acknowledged offset, offsets are
//! contiguous from 0, everything served is something a producer sent (once), and the log
//! takes new produces right after its end.
//!
//! Seeded: the seed is printed; set `STRATA_CRASH_SEED=<seed>` to replay the choices (the
//! moment of the kill still depends on timing).

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{at_offset, batch, fetch_all, record_count, spec, Broker};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::client::Connection;
use strata::protocol::{Acks, ErrorCode, OffsetSpec, ProduceRequest, RequestBody, ResponseBody};
use strata::record::validate_batch;

const TOPIC: &str = "crash";
const PARTITIONS: u32 = 4;
/// Produce requests a producer keeps in flight.
const WINDOW: usize = 16;

/// An acknowledged batch: where the broker said it put it.
#[derive(Debug, Clone)]
struct Ack {
    partition: u32,
    base_offset: i64,
    batch: Bytes,
}

/// What one producer run sent and what the broker acknowledged, in order.
struct Run {
    sent: Vec<(u32, Bytes)>,
    acked: Vec<Ack>,
}

/// Pipelines produces of fresh batches (numbered from `first_index`) to random partitions
/// until the connection breaks; reports the number of acks on `progress` as they come.
fn produce_until_killed(
    mut conn: Connection,
    seed: u64,
    first_index: u64,
    progress: mpsc::Sender<usize>,
) -> Run {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut run = Run {
        sent: Vec::new(),
        acked: Vec::new(),
    };
    let mut in_flight: VecDeque<(u32, Bytes)> = VecDeque::new();
    let mut index = first_index;
    loop {
        while in_flight.len() < WINDOW {
            let p = rng.gen_range(0..PARTITIONS);
            let b = batch(index, rng.gen_range(1..8), rng.gen_range(10..600));
            index += 1;
            let body = RequestBody::Produce(ProduceRequest {
                topic: TOPIC.into(),
                partition: p,
                acks: Acks::Leader,
                timeout_ms: 30_000,
            });
            // Recorded as sent before the write: a partly written request may still count.
            run.sent.push((p, b.clone()));
            if conn.send(body, std::slice::from_ref(&b)).is_err() {
                return run;
            }
            in_flight.push_back((p, b));
        }
        let (resp, _) = match conn.receive() {
            Ok(r) => r,
            Err(_) => return run, // the broker is gone
        };
        let (p, b) = in_flight.pop_front().unwrap();
        match (resp.error, resp.body) {
            (ErrorCode::None, Some(ResponseBody::Produce(ack))) => {
                assert_eq!(ack.last_offset, ack.base_offset + record_count(&b) - 1);
                run.acked.push(Ack {
                    partition: p,
                    base_offset: ack.base_offset,
                    batch: b,
                });
                let _ = progress.send(run.acked.len());
            }
            // A broker that is being killed may say so; anything else is a failure.
            (ErrorCode::ShuttingDown, _) => return run,
            (code, _) => panic!("produce to {p} failed: {code} {:?}", resp.message),
        }
    }
}

/// Checks the whole topic against everything sent and acknowledged so far; returns each
/// partition's end offset.
fn check(broker: &Broker, sent: &HashMap<Bytes, u32>, acked: &[Ack], context: &str) -> Vec<i64> {
    let mut conn = broker.connect();
    let mut ends = Vec::new();
    for p in 0..PARTITIONS {
        // Contiguous from 0 and valid (fetch_all asserts both).
        let log = fetch_all(&mut conn, TOPIC, p);
        let by_offset: HashMap<i64, &Bytes> = log.iter().map(|(o, b)| (*o, b)).collect();
        let mut seen = HashSet::new();
        for (off, b) in &log {
            let plain = at_offset(b, 0);
            assert_eq!(
                sent.get(&plain),
                Some(&p),
                "{context}: {TOPIC}/{p} serves a batch at {off} that was never sent to it"
            );
            assert!(
                seen.insert(plain),
                "{context}: {TOPIC}/{p}: batch at {off} is a duplicate"
            );
        }
        for a in acked.iter().filter(|a| a.partition == p) {
            let got = by_offset.get(&a.base_offset).unwrap_or_else(|| {
                panic!(
                    "{context}: acknowledged batch at {TOPIC}/{p}@{} is missing (log ends at {})",
                    a.base_offset,
                    log.last().map_or(0, |(o, b)| o + record_count(b))
                )
            });
            assert!(
                got[..] == at_offset(&a.batch, a.base_offset)[..],
                "{context}: acknowledged batch at {TOPIC}/{p}@{} differs",
                a.base_offset
            );
        }
        let end = log.last().map_or(0, |(o, b)| o + record_count(b));
        assert_eq!(
            conn.list_offsets(TOPIC, p, OffsetSpec::Latest).unwrap(),
            Some(end),
            "{context}: high watermark of {TOPIC}/{p}"
        );
        // Timestamp lookups agree with what is served (every record of a batch has the
        // batch's timestamp; timestamps grow along each log).
        let stamps: Vec<(i64, i64)> = log
            .iter()
            .map(|(o, b)| (*o, validate_batch(b).unwrap().max_timestamp))
            .collect();
        for i in (0..stamps.len()).step_by(stamps.len() / 8 + 1) {
            let ts = stamps[i].1;
            let want = stamps.iter().find(|(_, t)| *t >= ts).map(|(o, _)| *o);
            assert_eq!(
                conn.list_offsets(TOPIC, p, OffsetSpec::Timestamp(ts))
                    .unwrap(),
                want,
                "{context}: {TOPIC}/{p}: first offset at or after timestamp {ts}"
            );
        }
        if let Some((_, last)) = stamps.last() {
            assert_eq!(
                conn.list_offsets(TOPIC, p, OffsetSpec::Timestamp(last + 1))
                    .unwrap(),
                None,
                "{context}: {TOPIC}/{p}: no record after the last timestamp"
            );
        }
        ends.push(end);
    }
    ends
}

/// `iterations` rounds of: produce, `kill -9` after a random number of acks (and a random
/// extra moment), restart, check, produce one batch per partition.
fn crash_loop(fsync: &str, iterations: usize) {
    let seed = common::seed("STRATA_CRASH_SEED");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut broker = Broker::start(2, &["--fsync", fsync]);
    broker
        .connect()
        .create_topic(spec(TOPIC, PARTITIONS))
        .unwrap();
    let mut sent: HashMap<Bytes, u32> = HashMap::new();
    let mut acked: Vec<Ack> = Vec::new();
    let mut next_index = 0u64;
    let mut total_killed_acks = 0;
    let mut port_failures: Vec<String> = Vec::new();
    for iteration in 0..iterations {
        let route = rng.gen_range(0..3u32);
        let conn = match route {
            0 => broker.connect(),
            s => broker.connect_shard(s - 1),
        };
        let (tx, rx) = mpsc::channel();
        let producer_seed = rng.gen();
        let first = next_index;
        let producer =
            std::thread::spawn(move || produce_until_killed(conn, producer_seed, first, tx));
        let target = rng.gen_range(20..400);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(n) if n >= target => break,
                Ok(_) => {}
                Err(e) => {
                    panic!("iteration {iteration}: producer stalled before {target} acks: {e}")
                }
            }
        }
        // Not a synchronization: moves the kill off the ack boundary.
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..2000)));
        broker.kill9();
        let run = producer.join().expect("producer thread");
        assert!(run.acked.len() >= target);
        next_index += run.sent.len() as u64;
        total_killed_acks += run.acked.len();
        println!(
            "iteration {iteration}: killed after {} acks of {} sent (route {route})",
            run.acked.len(),
            run.sent.len()
        );
        for (p, b) in run.sent {
            assert!(sent.insert(b, p).is_none(), "batches are unique");
        }
        acked.extend(run.acked);

        // Restart on the same ports; when they cannot be bound again (see the report of
        // `a_restarted_broker_gets_its_ports_back_at_once` in tests/broker.rs), on new ones, so
        // that durability is still checked; the port failures fail the test at the end.
        if let Err(f) = broker.try_restart() {
            port_failures.push(f.stderr);
            broker.restart_on_new_ports();
        }
        let context = format!("after kill {iteration} (seed {seed})");
        let ends = check(&broker, &sent, &acked, &context);
        // The log takes new produces right after its end.
        let mut conn = broker.connect();
        for p in 0..PARTITIONS {
            let b = batch(next_index, 1, 10);
            next_index += 1;
            let ack = conn
                .produce(TOPIC, p, std::slice::from_ref(&b), 30_000)
                .unwrap();
            assert_eq!(
                ack.base_offset, ends[p as usize],
                "{context}: {TOPIC}/{p} end"
            );
            sent.insert(b.clone(), p);
            acked.push(Ack {
                partition: p,
                base_offset: ack.base_offset,
                batch: b,
            });
        }
    }
    assert!(total_killed_acks >= 20 * iterations);
    // A clean stop and start at the end: still all there.
    broker.stop_clean();
    broker.restart();
    check(&broker, &sent, &acked, "after the final clean restart");
    broker.stop_clean();
    // Acknowledged data survived every crash. Two more things must hold, reported together:
    // a clean stop leaves indexes the next start can trust, and a restarted broker gets its
    // own ports back.
    let mut problems = Vec::new();
    let stderr = broker.stderr();
    if stderr.contains("rebuild") {
        problems.push(format!(
            "indexes were rebuilt at the start after a clean shutdown:\n{stderr}"
        ));
    }
    if let Some(first) = port_failures.first() {
        problems.push(format!(
            "{} of {iterations} restarts after kill -9 could not listen on the broker's own \
             ports again (the checks above ran on fresh ports):\n{first}",
            port_failures.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "every acknowledged batch survived, but:\n{}",
        problems.join("\n")
    );
}

#[test]
fn kill_9_during_produces_loses_no_acknowledged_batch() {
    crash_loop("always", 6);
}

#[test]
fn kill_9_under_fsync_never_keeps_what_was_written() {
    crash_loop("never", 3);
}
