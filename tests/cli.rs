//! End-to-end tests of the user commands (`strata topic`, `strata produce`, `strata consume`):
//! the real binary against a real broker on free ports in a temporary directory. Covers 100,000
//! keyed lines through produce and back through consume (each once, keys on Kafka's partition,
//! printed offsets true), errors as one line with an exit code, the topic commands' output,
//! `--max-messages`, `--format`, start positions, a closed stdout, and a broker killed with
//! SIGKILL under `strata produce --print-offsets` losing no printed record.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{at, drain, free_base_port, now_ms, run, strata, Broker, Output, COMMAND_TIMEOUT};
use strata::client::partition_for_key;

#[track_caller]
fn create(broker: &str, topic: &str, partitions: u32) {
    let out = run(
        strata(&[
            "topic",
            "create",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--broker",
            broker,
        ]),
        None,
    )
    .ok();
    assert_eq!(
        out.stdout,
        format!("created topic {topic:?} with {partitions} partitions\n")
    );
}

/// `strata produce TOPIC ARGS` fed `input`; must succeed.
#[track_caller]
fn produce(broker: &str, topic: &str, args: &[&str], input: &str) -> Output {
    let mut all = vec!["produce", topic, "--broker", broker];
    all.extend_from_slice(args);
    run(strata(&all), Some(input.as_bytes().to_vec())).ok()
}

/// `strata consume TOPIC ARGS`; must succeed.
#[track_caller]
fn consume(broker: &str, topic: &str, args: &[&str]) -> String {
    let mut all = vec!["consume", topic, "--broker", broker];
    all.extend_from_slice(args);
    run(strata(&all), None).ok().stdout
}

/// Parses `partition offset` lines.
fn offsets(stdout: &str) -> Vec<(u32, i64)> {
    stdout
        .lines()
        .map(|l| {
            let (p, o) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            (p.parse().unwrap(), o.parse().unwrap())
        })
        .collect()
}

/// One consumed record of `--format '%p %o %k %v\n'`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Consumed {
    partition: u32,
    offset: i64,
    key: String,
    value: String,
}

fn parse_consumed(stdout: &str) -> Vec<Consumed> {
    stdout
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            assert_eq!(f.len(), 4, "bad line {l:?}");
            Consumed {
                partition: f[0].parse().unwrap(),
                offset: f[1].parse().unwrap(),
                key: f[2].to_string(),
                value: f[3].to_string(),
            }
        })
        .collect()
}

/// Every partition of `topic` read from the beginning, one consume per partition in parallel.
fn consume_all(broker: &str, topic: &str, partitions: u32) -> Vec<Consumed> {
    let threads: Vec<_> = (0..partitions)
        .map(|p| {
            let broker = broker.to_string();
            let topic = topic.to_string();
            std::thread::spawn(move || {
                let out = consume(
                    &broker,
                    &topic,
                    &[
                        "--from-beginning",
                        "--partition",
                        &p.to_string(),
                        "--idle-timeout-ms",
                        "1500",
                        "--format",
                        "%p %o %k %v\\n",
                    ],
                );
                let records = parse_consumed(&out);
                for (i, r) in records.iter().enumerate() {
                    assert_eq!(r.partition, p, "consume --partition {p} printed {r:?}");
                    assert_eq!(
                        r.offset, i as i64,
                        "{topic}/{p}: offsets from 0, contiguous"
                    );
                }
                records
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

#[test]
fn a_hundred_thousand_keyed_lines_come_back_once_each_on_their_keys_partition() {
    const LINES: usize = 100_000;
    const KEYS: usize = 1000;
    let broker = Broker::start(2, &[]);
    let addr = broker.addr();
    create(&addr, "keyed", 4);

    // Keys repeat (1000 distinct), values are unique.
    let input: String = (0..LINES)
        .map(|n| format!("key-{}:value-{n}\n", n % KEYS))
        .collect();
    let started = Instant::now();
    let out = produce(
        &addr,
        "keyed",
        &["--key-separator", ":", "--print-offsets"],
        &input,
    );
    println!("produced {LINES} lines in {:?}", started.elapsed());
    let printed = offsets(&out.stdout);
    assert_eq!(printed.len(), LINES, "one offset line per record");

    let consumed = consume_all(&addr, "keyed", 4);
    assert_eq!(consumed.len(), LINES, "every line comes back");
    let mut seen = vec![false; LINES];
    let mut key_partition: HashMap<String, u32> = HashMap::new();
    for r in &consumed {
        let n: usize = r
            .value
            .strip_prefix("value-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected value in {r:?}"));
        assert!(!seen[n], "value-{n} consumed twice");
        seen[n] = true;
        assert_eq!(r.key, format!("key-{}", n % KEYS), "key of {r:?}");
        assert_eq!(
            r.partition,
            partition_for_key(r.key.as_bytes(), 4),
            "{r:?} is not on its key's murmur2 partition"
        );
        let first = *key_partition.entry(r.key.clone()).or_insert(r.partition);
        assert_eq!(first, r.partition, "key {} on two partitions", r.key);
        // Everything was acknowledged, so the printed lines follow the input's order.
        assert_eq!(
            printed[n],
            (r.partition, r.offset),
            "printed offset of line {n} vs where it was consumed"
        );
    }
    assert_eq!(key_partition.len(), KEYS);

    // describe agrees on the counts.
    let described = run(
        strata(&["topic", "describe", "keyed", "--broker", &addr]),
        None,
    )
    .ok();
    let rows = describe_rows(&described.stdout);
    assert_eq!(rows.len(), 4);
    for row in &rows {
        let count = consumed
            .iter()
            .filter(|r| r.partition == row.partition)
            .count() as i64;
        assert_eq!((row.earliest, row.latest), (0, count), "{row:?}");
    }
}

/// One row of `strata topic describe`.
#[derive(Debug)]
struct Row {
    partition: u32,
    shard: u32,
    endpoint: String,
    earliest: i64,
    latest: i64,
    records: i64,
    bytes: u64,
}

fn describe_rows(stdout: &str) -> Vec<Row> {
    let mut lines = stdout.lines();
    lines.next().expect("settings line");
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "PARTITION",
            "SHARD",
            "ENDPOINT",
            "EARLIEST",
            "LATEST",
            "RECORDS",
            "BYTES"
        ]
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 7, "row {l:?}");
            Row {
                partition: f[0].parse().unwrap(),
                shard: f[1].parse().unwrap(),
                endpoint: f[2].to_string(),
                earliest: f[3].parse().unwrap(),
                latest: f[4].parse().unwrap(),
                records: f[5].parse().unwrap(),
                bytes: f[6].parse().unwrap(),
            }
        })
        .collect()
}

#[test]
fn errors_are_one_line_with_a_non_zero_exit() {
    let broker = Broker::start(1, &[]);
    let addr = broker.addr();

    // Unknown topic: produce, consume, describe, delete.
    let create_hint = "(create it with: strata topic create nope --partitions N)";
    for args in [
        &["produce", "nope"][..],
        &["consume", "nope", "--from-beginning"],
        &["topic", "describe", "nope"],
        &["topic", "delete", "nope"],
    ] {
        let out = run(at(&addr, args), Some(b"x\n".to_vec()));
        out.fails_with(1, &["unknown topic \"nope\"", create_hint]);
    }

    // Nobody listens: the address tried is named, for every command, also from STRATA_BROKER.
    let dead = format!("127.0.0.1:{}", free_base_port(1));
    let refused = format!("cannot connect to broker at {dead}: Connection refused");
    for args in [
        &["topic", "list"][..],
        &["topic", "create", "t", "--partitions", "1"],
        &["produce", "t"],
        &["consume", "t"],
    ] {
        let mut cmd = strata(args);
        cmd.env("STRATA_BROKER", &dead);
        run(cmd, Some(b"x\n".to_vec())).fails_with(1, &[&refused]);
        let out = run(strata(&[args, &["--broker", &dead][..]].concat()), None);
        out.fails_with(1, &[&refused]);
    }

    // Refused by the broker.
    create(&addr, "t", 2);
    run(
        at(&addr, &["topic", "create", "t", "--partitions", "2"]),
        None,
    )
    .fails_with(1, &["topic \"t\" already exists"]);
    run(
        at(&addr, &["topic", "create", "u", "--partitions", "0"]),
        None,
    )
    .fails_with(1, &["0 partitions is out of range"]);
    run(
        at(&addr, &["topic", "create", "bad/name", "--partitions", "1"]),
        None,
    )
    .fails_with(1, &["invalid topic name"]);
    let no_partition = "topic \"t\" has 2 partition(s), 0 to 1: there is no partition 2";
    run(
        at(&addr, &["produce", "t", "--partition", "2"]),
        Some(b"x\n".to_vec()),
    )
    .fails_with(1, &[no_partition]);
    run(at(&addr, &["consume", "t", "--partition", "2"]), None).fails_with(1, &[no_partition]);

    // Invalid arguments: clap's usage error, exit 2.
    for args in [
        &["topic", "create", "t"][..],
        &["topic", "create", "t", "--partitions", "many"],
        &["consume", "t", "--from-beginning", "--offset", "3"],
        &["consume", "t", "--offset", "3", "--from-timestamp", "0"],
        &["consume", "t", "--offset", "-1"],
        &["consume", "t", "--format", "%x"],
        &["consume", "t", "--format", "50%"],
        &["produce", "t", "--key-separator", ""],
        &["produce"],
    ] {
        run(at(&addr, args), None).fails_with(2, &[]);
    }

    // Nothing was produced by any of this.
    let rows = describe_rows(
        &run(at(&addr, &["topic", "describe", "t"]), None)
            .ok()
            .stdout,
    );
    assert!(rows.iter().all(|r| r.latest == 0), "{rows:?}");
}

#[test]
fn topics_are_listed_described_and_deleted() {
    let broker = Broker::start(2, &[]);
    let addr = broker.addr();

    let list = || run(at(&addr, &["topic", "list"]), None).ok().stdout;
    assert_eq!(list(), "", "no topics yet");
    let out = run(
        at(
            &addr,
            &[
                "topic",
                "create",
                "beta",
                "--partitions",
                "3",
                "--retention-ms",
                "3600000",
                "--segment-bytes",
                "1048576",
                "--retention-bytes",
                "100000000",
            ],
        ),
        None,
    )
    .ok();
    assert_eq!(out.stdout, "created topic \"beta\" with 3 partitions\n");
    create(&addr, "alpha", 1);
    assert_eq!(list(), "alpha\nbeta\n", "sorted, one name per line");

    let lines: String = (0..10).map(|i| format!("line {i}\n")).collect();
    produce(&addr, "beta", &["--partition", "1"], &lines);

    let described = run(at(&addr, &["topic", "describe", "beta"]), None)
        .ok()
        .stdout;
    assert_eq!(
        described.lines().next().unwrap(),
        "topic \"beta\": 3 partitions, retention-bytes 100000000, retention-ms 3600000, segment-bytes 1048576"
    );
    let rows = describe_rows(&described);
    assert_eq!(
        rows.iter().map(|r| r.partition).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    for r in &rows {
        assert!(r.shard < 2, "{r:?}");
        assert_eq!(r.endpoint, broker.shard_addr(r.shard), "{r:?}");
        let want = if r.partition == 1 { 10 } else { 0 };
        assert_eq!((r.earliest, r.latest, r.records), (0, want, want), "{r:?}");
        // Ten records of a few bytes each: some bytes on disk, none for empty partitions.
        if want > 0 {
            assert!((100..1 << 20).contains(&r.bytes), "{r:?}");
        } else {
            assert_eq!(r.bytes, 0, "{r:?}");
        }
    }
    let alpha = run(at(&addr, &["topic", "describe", "alpha"]), None)
        .ok()
        .stdout;
    assert!(alpha.starts_with(
        "topic \"alpha\": 1 partitions, retention-bytes broker default, retention-ms broker default, segment-bytes broker default\n"
    ), "{alpha}");

    let out = run(at(&addr, &["topic", "delete", "beta"]), None).ok();
    assert_eq!(out.stdout, "deleted topic \"beta\"\n");
    assert_eq!(list(), "alpha\n");
    run(at(&addr, &["topic", "describe", "beta"]), None).fails_with(1, &["unknown topic \"beta\""]);
    // The name starts over empty.
    create(&addr, "beta", 1);
    let rows = describe_rows(
        &run(at(&addr, &["topic", "describe", "beta"]), None)
            .ok()
            .stdout,
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].latest, 0);
}

#[test]
fn consume_stops_after_max_messages_and_prints_formats_like_kcat() {
    let broker = Broker::start(1, &[]);
    let addr = broker.addr();
    create(&addr, "fmt", 1);
    let before = now_ms();
    let mut lines: String = (0..10).map(|i| format!("k{i}:v{i}\n")).collect();
    lines.push_str("no key here\r\n\nlast line without newline");
    let out = produce(
        &addr,
        "fmt",
        &["--key-separator", ":", "--print-offsets"],
        &lines,
    );
    let after = now_ms();
    let printed = offsets(&out.stdout);
    assert_eq!(printed, (0..13).map(|o| (0, o)).collect::<Vec<_>>());

    // --max-messages alone ends the command.
    assert_eq!(
        consume(&addr, "fmt", &["--from-beginning", "--max-messages", "3"]),
        "v0\nv1\nv2\n"
    );
    // Default output: the value and a newline (no key; \r\n stripped; an empty line is a record).
    assert_eq!(
        consume(
            &addr,
            "fmt",
            &["--from-beginning", "--idle-timeout-ms", "500"]
        ),
        "v0\nv1\nv2\nv3\nv4\nv5\nv6\nv7\nv8\nv9\nno key here\n\nlast line without newline\n"
    );
    // --format: nothing appended, fields, escapes, %%.
    let out = consume(
        &addr,
        "fmt",
        &[
            "--from-beginning",
            "--max-messages",
            "2",
            "--format",
            "%t|%p|%o|%k|%v|%T|100%%\\t;",
        ],
    );
    let records: Vec<&str> = out.split(';').collect();
    assert_eq!(records.len(), 3, "{out:?}");
    assert_eq!(records[2], "", "nothing after the last record: {out:?}");
    for (i, r) in records[..2].iter().enumerate() {
        let f: Vec<&str> = r.split('|').collect();
        assert_eq!(f.len(), 7, "{r:?}");
        assert_eq!(
            (f[0], f[1], f[2], f[3], f[4], f[6]),
            (
                "fmt",
                "0",
                i.to_string().as_str(),
                format!("k{i}").as_str(),
                format!("v{i}").as_str(),
                "100%\t"
            )
        );
        let ts: i64 = f[5].parse().unwrap();
        assert!(
            (before..=after).contains(&ts),
            "timestamp {ts} not in {before}..={after}"
        );
    }
    // A record without key prints an empty key.
    assert_eq!(
        consume(
            &addr,
            "fmt",
            &[
                "--offset",
                "10",
                "--max-messages",
                "1",
                "--format",
                "[%k][%v]\\n"
            ]
        ),
        "[][no key here]\n"
    );
    // Start positions: an offset, timestamps, and (by default) the end.
    assert_eq!(
        consume(&addr, "fmt", &["--offset", "5", "--max-messages", "2"]),
        "v5\nv6\n"
    );
    assert_eq!(
        consume(
            &addr,
            "fmt",
            &["--from-timestamp", "0", "--max-messages", "1"]
        ),
        "v0\n"
    );
    let future = (now_ms() + 3_600_000).to_string();
    assert_eq!(
        consume(
            &addr,
            "fmt",
            &["--from-timestamp", &future, "--idle-timeout-ms", "300"]
        ),
        ""
    );
    assert_eq!(
        consume(&addr, "fmt", &["--idle-timeout-ms", "300"]),
        "",
        "the default start is the end of the log"
    );

    // Without --from-beginning only new records arrive: produce until the waiting consumer got one.
    let mut waiting = strata(&["consume", "fmt", "--max-messages", "1", "--broker", &addr])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = drain(waiting.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    let status = loop {
        if let Some(status) = waiting.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "consume never saw a new record");
        produce(&addr, "fmt", &[], &format!("new-{i}\n"));
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let got = stdout.join().unwrap();
    assert!(
        got.starts_with("new-") && got.ends_with('\n') && got.lines().count() == 1,
        "{got:?}"
    );
}

#[test]
fn consume_into_a_closed_pipe_exits_quietly() {
    let broker = Broker::start(1, &[]);
    let addr = broker.addr();
    create(&addr, "big", 1);
    // More than a pipe holds, so consume is writing when the reader goes away.
    let lines: String = (0..200_000).map(|i| format!("record-{i:08}\n")).collect();
    produce(&addr, "big", &[], &lines);
    let mut child = strata(&["consume", "big", "--from-beginning", "--broker", &addr])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = drain(child.stderr.take().unwrap());
    {
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert_eq!(first, "record-00000000\n");
    } // like `| head -1`
    let status = common::wait_deadline(&mut child, Duration::from_secs(20)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("consume kept running after its stdout closed")
    });
    assert!(status.success(), "{status}");
    assert_eq!(stderr.join().unwrap(), "");
}

#[test]
fn a_broker_killed_under_produce_loses_no_printed_record() {
    const PARTITIONS: u32 = 2;
    const MAX_LINES: usize = 2_000_000;
    // The data dir outlives the first broker; the second runs on it after the kill.
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let mut broker = Broker::start_in(tempfile::tempdir().unwrap(), data_dir.clone(), 1, &[]);
    let addr = broker.addr();
    create(&addr, "crash", PARTITIONS);

    let mut child = strata(&[
        "produce",
        "crash",
        "--key-separator",
        ":",
        "--print-offsets",
        "--broker",
        &addr,
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // A steady stream: 200 lines every 2 ms, until produce stops reading.
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let mut n = 0;
        while n < MAX_LINES {
            let chunk: String = (n..n + 200)
                .map(|i| format!("k{}:v{i}\n", i % 50))
                .collect();
            if stdin.write_all(chunk.as_bytes()).is_err() {
                break;
            }
            n += 200;
            std::thread::sleep(Duration::from_millis(2));
        }
        n
    });
    let printed: Arc<Mutex<Vec<(u32, i64)>>> = Arc::default();
    let reader = {
        let printed = printed.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                printed.lock().unwrap().extend(offsets(&line));
            }
        })
    };
    let stderr = drain(child.stderr.take().unwrap());

    let deadline = Instant::now() + Duration::from_secs(20);
    while printed.lock().unwrap().len() < 20_000 {
        assert!(Instant::now() < deadline, "produce printed too few offsets");
        std::thread::sleep(Duration::from_millis(5));
    }
    broker.kill9();
    let at_kill = printed.lock().unwrap().len();

    let status = common::wait_deadline(&mut child, COMMAND_TIMEOUT).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("produce did not give up after the broker died")
    });
    reader.join().unwrap();
    let fed = feeder.join().unwrap();
    let stderr = stderr.join().unwrap();
    let printed = printed.lock().unwrap().clone();
    println!(
        "fed {fed} lines, {at_kill} offsets printed at the kill, {} in all; {status}; {stderr}",
        printed.len()
    );
    assert!(
        !status.success(),
        "the kill landed mid-stream: produce must fail"
    );
    assert!(fed < MAX_LINES, "produce stopped reading");
    assert!(printed.len() < fed);
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("records not acknowledged"), "{stderr:?}");

    // Fresh ports: the killed broker's ports are held in TIME_WAIT by the connections the
    // kernel closed for it, and the broker cannot bind them again for a minute.
    let restarted = Broker::start_in(tempfile::tempdir().unwrap(), data_dir, 1, &[]);
    let stored: BTreeMap<(u32, i64), Consumed> =
        consume_all(&restarted.addr(), "crash", PARTITIONS)
            .into_iter()
            .map(|r| ((r.partition, r.offset), r))
            .collect();
    // Each printed offset holds a record that was sent, on its key's partition, and the printed
    // lines follow the input's order (failed records are skipped, never reordered).
    let mut last_n: Option<usize> = None;
    for (p, o) in &printed {
        let r = stored
            .get(&(*p, *o))
            .unwrap_or_else(|| panic!("acknowledged record {p}/{o} lost after the restart"));
        let n: usize = r.value.strip_prefix('v').unwrap().parse().unwrap();
        assert_eq!(r.key, format!("k{}", n % 50), "{r:?}");
        assert_eq!(partition_for_key(r.key.as_bytes(), PARTITIONS), *p, "{r:?}");
        assert!(
            last_n.is_none_or(|last| n > last),
            "printed offsets out of input order at {r:?}"
        );
        last_n = Some(n);
    }
}

#[test]
fn every_command_has_help_with_an_example() {
    for args in [
        &["topic"][..],
        &["topic", "create"],
        &["topic", "list"],
        &["topic", "describe"],
        &["topic", "delete"],
        &["produce"],
        &["consume"],
    ] {
        let out = run(strata(&[args, &["--help"][..]].concat()), None).ok();
        assert!(
            out.stdout.contains("Example") && out.stdout.contains("strata "),
            "strata {args:?} --help has no example:\n{}",
            out.stdout
        );
        assert!(
            out.stdout.contains("--broker <HOST:PORT>"),
            "{}",
            out.stdout
        );
    }
}
