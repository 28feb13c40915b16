//! End-to-end tests of consumer groups: real `strata broker` processes on free ports with their
//! data in temporary directories, real `strata consume --group` and `strata group` processes.
//! Covers three members splitting a topic and printing every record once; churn (members
//! joining, leaving and killed with SIGKILL while a producer runs) watched by an independent
//! DescribeGroup observer (no partition held by two members, committed offsets never go back,
//! every record consumed); committed offsets and groups across a clean restart and a SIGKILL;
//! the coordinator's refusals (stale epoch, unknown member and group, non-empty group, invalid
//! id) through the client and the CLI; offset resets; compaction of the offsets log; a topic
//! created after a member subscribed; the rebalance timeout; and sizes (a 1000-partition topic,
//! concurrent commits with large metadata).
//!
//! The churn test is seeded: the seed is printed; set `STRATA_GROUPS_SEED=<seed>` to replay its
//! choices (the timing of the processes still varies).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{at, drain, run, wait_deadline, Broker};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::client::{partition_for_key, ClientError, Connection, Producer, ProducerConfig};
use strata::protocol::{
    CommitOffset, ErrorCode, GroupDescription, GroupHeartbeatRequest, GroupHeartbeatResponse,
    GroupState, OffsetCommitRequest, OffsetSpec, TopicPartitions, MEMBER_EPOCH_ADMIN,
    MEMBER_EPOCH_JOIN, MEMBER_EPOCH_LEAVE,
};

/// Longest a group may take to reach a state the test waits for (Stable, Empty, a member).
const STATE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a member may take to exit after SIGTERM or SIGKILL.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two polls of a group's state while waiting for it.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The broker's heartbeat interval in these tests: rebalances settle in a few of them.
const HEARTBEAT_INTERVAL_MS: &str = "200";
/// The broker's shortest session timeout in these tests (below the churn members').
const MIN_SESSION_TIMEOUT_MS: &str = "300";
/// Broker flags every test uses.
const GROUP_FLAGS: &[&str] = &[
    "--group-heartbeat-interval-ms",
    HEARTBEAT_INTERVAL_MS,
    "--group-min-session-timeout-ms",
    MIN_SESSION_TIMEOUT_MS,
];
/// What every group member prints per record: partition, offset, value.
const FORMAT: &str = "%p %o %v\\n";
/// Idle timeout of members that read what is there and exit: a member alone in its group gets
/// every partition with its first heartbeat.
const IDLE_TIMEOUT_MS: &str = "1500";
/// Session timeout of members the tests drive through `Connection`: long enough that they never
/// expire while a test looks at them.
const DRIVEN_SESSION_TIMEOUT_MS: u32 = 60_000;

// ---------------------------------------------------------------------------------------------
// Commands

#[track_caller]
fn create_topic(broker: &str, topic: &str, partitions: u32) {
    run(
        at(
            broker,
            &[
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ],
        ),
        None,
    )
    .ok();
}

/// `strata produce TOPIC --key-separator :` of `key-{n % keys}:{n}` for every `n` in `values`.
#[track_caller]
fn produce_keyed(broker: &str, topic: &str, values: std::ops::Range<u64>, keys: u64) {
    let input: String = values.map(|n| format!("key-{}:{n}\n", n % keys)).collect();
    run(
        at(broker, &["produce", topic, "--key-separator", ":"]),
        Some(input.into_bytes()),
    )
    .ok();
}

/// `strata consume TOPIC --group GROUP --format FORMAT ARGS`, run to its end; must succeed.
#[track_caller]
fn consume_group(broker: &str, topic: &str, group: &str, args: &[&str]) -> Vec<Printed> {
    let mut all = vec!["consume", topic, "--group", group, "--format", FORMAT];
    all.extend_from_slice(args);
    let out = run(at(broker, &all), None).ok();
    parse_printed(&out.stdout)
}

/// One record as a member printed it with `FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Printed {
    partition: u32,
    offset: i64,
    value: u64,
}

/// The whole lines of `FORMAT` output (a process killed mid-write may leave a partial last line,
/// which is not a record).
fn parse_printed(stdout: &str) -> Vec<Printed> {
    let whole = match stdout.rfind('\n') {
        Some(i) => &stdout[..=i],
        None => "",
    };
    whole
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 3, "bad line {l:?}");
            Printed {
                partition: f[0].parse().unwrap_or_else(|_| panic!("bad line {l:?}")),
                offset: f[1].parse().unwrap_or_else(|_| panic!("bad line {l:?}")),
                value: f[2].parse().unwrap_or_else(|_| panic!("bad line {l:?}")),
            }
        })
        .collect()
}

/// The values of `printed`, sorted.
fn values(printed: &[Printed]) -> Vec<u64> {
    let mut v: Vec<u64> = printed.iter().map(|p| p.value).collect();
    v.sort_unstable();
    v
}

// ---------------------------------------------------------------------------------------------
// Group members as processes

/// A running `strata consume --group` process. Dropping it kills it (so a failing test leaves
/// no process behind).
struct Member {
    id: usize,
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
}

/// What an ended member left behind.
#[derive(Debug)]
struct Ended {
    id: usize,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Member {
    /// `strata consume TOPIC --group GROUP --from-beginning --format FORMAT ARGS`.
    fn spawn(id: usize, broker: &str, topic: &str, group: &str, args: &[&str]) -> Member {
        let mut all = vec![
            "consume",
            topic,
            "--group",
            group,
            "--from-beginning",
            "--format",
            FORMAT,
        ];
        all.extend_from_slice(args);
        let mut child = at(broker, &all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata consume");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stdout_reader = {
            let stdout = stdout.clone();
            let mut pipe = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 64 * 1024];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => stdout.lock().unwrap().extend_from_slice(&chunk[..n]),
                    }
                }
            })
        };
        let stderr = drain(child.stderr.take().unwrap());
        Member {
            id,
            child,
            stdout,
            stdout_reader: Some(stdout_reader),
            stderr: Some(stderr),
        }
    }

    /// Lines printed so far.
    fn lines_printed(&self) -> usize {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signals our own child, which has not been reaped (no pid reuse).
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the exit (panics after `EXIT_TIMEOUT`) and collects the output.
    fn wait(mut self) -> Ended {
        let Some(status) = wait_deadline(&mut self.child, EXIT_TIMEOUT) else {
            panic!("member {} still running after {EXIT_TIMEOUT:?}", self.id)
        };
        self.stdout_reader.take().unwrap().join().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        let stdout = String::from_utf8(std::mem::take(&mut *self.stdout.lock().unwrap()))
            .expect("utf-8 output");
        Ended {
            id: self.id,
            status,
            stdout,
            stderr,
        }
    }

    /// SIGTERM: the member commits what it printed, leaves the group and exits 0.
    fn stop(self) -> Ended {
        self.stop_with(libc::SIGTERM)
    }

    /// SIGTERM or SIGINT (Ctrl-C): a clean leave, exit 0.
    fn stop_with(self, signal: i32) -> Ended {
        self.signal(signal);
        let ended = self.wait();
        assert!(
            ended.status.success(),
            "member {} exited with {} after signal {signal}; stderr:\n{}",
            ended.id,
            ended.status,
            ended.stderr
        );
        ended
    }

    fn kill9(self) -> Ended {
        self.signal(libc::SIGKILL);
        self.wait()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Groups through the client

/// `describe_group`, which must succeed.
#[track_caller]
fn describe(conn: &mut Connection, group: &str) -> GroupDescription {
    conn.describe_group(group)
        .unwrap_or_else(|e| panic!("describe {group}: {e}"))
}

/// Polls DescribeGroup until `done` holds; panics with the last description after
/// `STATE_TIMEOUT`.
#[track_caller]
fn wait_for_group(
    conn: &mut Connection,
    group: &str,
    what: &str,
    done: impl Fn(&GroupDescription) -> bool,
) -> GroupDescription {
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        // The group exists once its first member's heartbeat arrived.
        let d = match conn.describe_group(group) {
            Err(e) if e.code() == Some(ErrorCode::UnknownGroup) => None,
            other => Some(other.unwrap_or_else(|e| panic!("describe {group}: {e}"))),
        };
        if let Some(d) = &d {
            if done(d) {
                return d.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "group {group} not {what} within {STATE_TIMEOUT:?}: {d:#?}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Partitions named by wire `TopicPartitions`, as (topic, partition).
fn flat(list: &[TopicPartitions]) -> BTreeSet<(String, u32)> {
    list.iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.clone(), p)))
        .collect()
}

/// The committed offset of each partition of `topic` in a description.
fn committed(d: &GroupDescription, topic: &str) -> BTreeMap<u32, i64> {
    d.offsets
        .iter()
        .filter(|o| o.topic == topic)
        .map(|o| (o.partition, o.committed))
        .collect()
}

/// The log end of every partition of `topic`.
fn log_ends(conn: &mut Connection, topic: &str, partitions: u32) -> BTreeMap<u32, i64> {
    (0..partitions)
        .map(|p| {
            let end = conn
                .list_offsets(topic, p, OffsetSpec::Latest)
                .unwrap_or_else(|e| panic!("list offsets {topic}/{p}: {e}"))
                .expect("a log end");
            (p, end)
        })
        .collect()
}

/// A heartbeat of a member the test drives by hand.
fn heartbeat(
    conn: &mut Connection,
    group: &str,
    member_id: &str,
    epoch: i32,
    topic: &str,
    owned: &[TopicPartitions],
) -> Result<GroupHeartbeatResponse, ClientError> {
    conn.group_heartbeat(GroupHeartbeatRequest {
        group: group.to_string(),
        member_id: member_id.to_string(),
        member_epoch: epoch,
        session_timeout_ms: DRIVEN_SESSION_TIMEOUT_MS,
        topics: vec![topic.to_string()],
        owned: owned.to_vec(),
        assignor: None,
    })
}

/// A commit of `offsets` (partition, offset) of `topic`, as `member_id` at `epoch`.
fn commit(
    conn: &mut Connection,
    group: &str,
    member_id: &str,
    epoch: i32,
    topic: &str,
    offsets: &[(u32, i64)],
) -> Result<Vec<strata::protocol::PartitionResult>, ClientError> {
    conn.offset_commit(OffsetCommitRequest {
        group: group.to_string(),
        member_id: member_id.to_string(),
        member_epoch: epoch,
        offsets: offsets
            .iter()
            .map(|&(partition, offset)| CommitOffset {
                topic: topic.to_string(),
                partition,
                offset,
                metadata: String::new(),
            })
            .collect(),
    })
}

/// Asserts a broker error with `code` whose message contains every needle.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, ClientError>,
    code: ErrorCode,
    needles: &[&str],
) {
    match result {
        Err(ClientError::Broker { code: got, message }) => {
            assert_eq!(got, code, "error code; message {message:?}");
            for needle in needles {
                assert!(
                    message.contains(needle),
                    "message {message:?} should mention {needle:?}"
                );
            }
        }
        other => panic!("expected {code}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Three members, nobody fails

#[test]
fn three_members_split_six_partitions_and_print_every_record_once() {
    const RECORDS: u64 = 60_000;
    /// Records produced before the members start; the rest once the group is Stable.
    const BEFORE: u64 = 30_000;
    const PARTITIONS: u32 = 6;
    const KEYS: u64 = 600;
    const MEMBERS: usize = 3;
    /// Long enough that no member exits before the three-member rebalance settled and was seen.
    const STABLE_IDLE_TIMEOUT_MS: &str = "5000";
    let broker = Broker::start(2, GROUP_FLAGS);
    let addr = broker.addr();
    create_topic(&addr, "t", PARTITIONS);
    produce_keyed(&addr, "t", 0..BEFORE, KEYS);

    // The three start together: whoever joins first starts reading everything, then hands
    // partitions over (committing what it printed) as the others join.
    let members: Vec<Member> = (0..MEMBERS)
        .map(|i| {
            Member::spawn(
                i,
                &addr,
                "t",
                "g",
                &["--idle-timeout-ms", STABLE_IDLE_TIMEOUT_MS],
            )
        })
        .collect();

    // While all three run, the group settles with two partitions each.
    let mut conn = broker.connect();
    let stable = wait_for_group(&mut conn, "g", "Stable with 3 members", |d| {
        d.state == GroupState::Stable && d.members.len() == MEMBERS
    });
    let mut all = BTreeSet::new();
    let mut assignments: Vec<BTreeSet<u32>> = Vec::new();
    for m in &stable.members {
        let owned = flat(&m.assignment);
        assert_eq!(owned.len(), 2, "member {} of {stable:#?}", m.member_id);
        assert!(m.revoking.is_empty(), "{stable:#?}");
        assert_eq!(m.client_id, "strata-consume");
        assert_eq!(m.member_epoch, stable.assignment_epoch, "{stable:#?}");
        assignments.push(owned.iter().map(|(_, p)| *p).collect());
        all.extend(owned);
    }
    assert_eq!(
        all,
        (0..PARTITIONS).map(|p| ("t".to_string(), p)).collect(),
        "every partition owned once"
    );
    assert_eq!(stable.assignor, "sticky", "the default assignor");
    // The rest arrives while the assignment holds.
    produce_keyed(&addr, "t", BEFORE..RECORDS, KEYS);

    // They exit after the idle timeout, committing what they printed.
    let ended: Vec<Ended> = members.into_iter().map(Member::wait).collect();
    let mut printed = Vec::new();
    let mut late_partitions: Vec<BTreeSet<u32>> = Vec::new();
    for e in &ended {
        assert!(
            e.status.success(),
            "member {} exited with {}; stderr:\n{}",
            e.id,
            e.status,
            e.stderr
        );
        let own = parse_printed(&e.stdout);
        late_partitions.push(
            own.iter()
                .filter(|r| r.value >= BEFORE)
                .map(|r| r.partition)
                .collect(),
        );
        printed.extend(own);
    }
    println!(
        "printed per member: {:?}",
        ended
            .iter()
            .map(|e| e.stdout.lines().count())
            .collect::<Vec<_>>()
    );
    // Each process printed the later records of exactly the two partitions of one member.
    late_partitions.sort();
    assignments.sort();
    assert_eq!(
        late_partitions, assignments,
        "partitions of the records produced after the group was Stable, per process"
    );

    // Every record exactly once, on its key's partition, at offsets contiguous from 0.
    assert_eq!(
        values(&printed),
        (0..RECORDS).collect::<Vec<_>>(),
        "each record printed exactly once"
    );
    let mut by_partition: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for r in &printed {
        let key = format!("key-{}", r.value % KEYS);
        assert_eq!(
            r.partition,
            partition_for_key(key.as_bytes(), PARTITIONS),
            "{r:?} is not on its key's partition"
        );
        by_partition.entry(r.partition).or_default().push(r.offset);
    }
    assert_eq!(
        by_partition.len(),
        PARTITIONS as usize,
        "every partition got records"
    );
    let ends = log_ends(&mut conn, "t", PARTITIONS);
    for (p, offsets) in &mut by_partition {
        offsets.sort_unstable();
        assert_eq!(
            *offsets,
            (0..ends[p]).collect::<Vec<_>>(),
            "t/{p}: every offset printed once"
        );
    }

    // The group is empty and its committed offsets are the log ends.
    let d = describe(&mut conn, "g");
    assert_eq!(d.state, GroupState::Empty, "{d:#?}");
    assert_eq!(committed(&d, "t"), ends, "committed offsets = log ends");
    for o in &d.offsets {
        assert_eq!(
            (o.high_watermark, o.lag),
            (Some(ends[&o.partition]), Some(0))
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Churn under an observer

/// What the DescribeGroup observer saw.
#[derive(Debug, Default)]
struct Observed {
    samples: u64,
    epochs: BTreeSet<i32>,
    most_members: usize,
    /// Highest committed offset seen per partition.
    committed: BTreeMap<(String, u32), i64>,
    /// The first broken rule, with the description that broke it.
    violation: Option<String>,
}

/// Polls DescribeGroup as fast as it can until `stop`, checking that no partition is held
/// (assigned or revoking) by two members and that no committed offset goes back.
fn observe(addr: String, group: &str, stop: Arc<AtomicBool>, seen: Arc<Mutex<Observed>>) {
    let mut conn = common::connect(&addr);
    while !stop.load(Ordering::Acquire) {
        let d = match conn.describe_group(group) {
            Ok(d) => d,
            Err(e) if e.code() == Some(ErrorCode::UnknownGroup) => continue,
            Err(e) => {
                seen.lock().unwrap().violation = Some(format!("describe failed: {e}"));
                return;
            }
        };
        let mut o = seen.lock().unwrap();
        o.samples += 1;
        o.epochs.insert(d.group_epoch);
        o.most_members = o.most_members.max(d.members.len());
        let mut holder: BTreeMap<(String, u32), &str> = BTreeMap::new();
        for m in &d.members {
            for tp in flat(&m.assignment).into_iter().chain(flat(&m.revoking)) {
                if let Some(other) = holder.insert(tp.clone(), &m.member_id) {
                    o.violation = Some(format!(
                        "{}/{} held by {other} and {} at once: {d:#?}",
                        tp.0, tp.1, m.member_id
                    ));
                    return;
                }
            }
        }
        for lag in &d.offsets {
            let key = (lag.topic.clone(), lag.partition);
            let before = o.committed.get(&key).copied().unwrap_or(i64::MIN);
            if lag.committed < before {
                o.violation = Some(format!(
                    "committed offset of {}/{} went back from {before} to {}: {d:#?}",
                    lag.topic, lag.partition, lag.committed
                ));
                return;
            }
            o.committed.insert(key, lag.committed);
        }
    }
}

/// Stops a background thread's loop when dropped (also when the test panics).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Produces `{n}` keyed `k{n}` until `stop`; returns where each value landed, `(partition,
/// offset)` indexed by `n`.
fn produce_until(addr: String, topic: &str, stop: Arc<AtomicBool>) -> Vec<(u32, i64)> {
    /// Records sent per burst, and the pause between bursts.
    const BURST: u64 = 25;
    const PAUSE: Duration = Duration::from_millis(10);
    let producer = Producer::connect(&addr, ProducerConfig::default()).expect("producer");
    let mut futures = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        for _ in 0..BURST {
            let key = format!("k{n}");
            let value = n.to_string();
            futures.push(
                producer
                    .send(topic, None, Some(key.as_bytes()), Some(value.as_bytes()))
                    .expect("send"),
            );
            n += 1;
        }
        std::thread::sleep(PAUSE);
    }
    producer.flush();
    let landed = futures
        .into_iter()
        .enumerate()
        .map(|(n, f)| {
            let md = f
                .wait()
                .unwrap_or_else(|e| panic!("record {n} not acknowledged: {e}"));
            (md.partition, md.offset)
        })
        .collect();
    producer.close();
    landed
}

#[test]
fn churn_never_gives_a_partition_to_two_members_and_loses_no_record() {
    const PARTITIONS: u32 = 6;
    const MIN_EVENTS: usize = 36;
    /// Of each kind (join, leave, kill) at least this many.
    const MIN_EACH: usize = 8;
    const MAX_EVENTS: usize = 150;
    const MAX_LIVE: usize = 5;
    const SESSION_TIMEOUT_MS: &str = "1500";
    /// Pause between two events, in ms.
    const PAUSE_MS: std::ops::Range<u64> = 50..300;
    /// Members started after the churn, which run until idle.
    const FINAL_MEMBERS: usize = 2;
    const FINAL_IDLE_TIMEOUT_MS: &str = "3000";

    let mut rng = StdRng::seed_from_u64(common::seed("STRATA_GROUPS_SEED"));
    let broker = Broker::start(2, GROUP_FLAGS);
    let addr = broker.addr();
    create_topic(&addr, "churn", PARTITIONS);

    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let seen = Arc::new(Mutex::new(Observed::default()));
    let observer = {
        let (addr, stop, seen) = (addr.clone(), stop.clone(), seen.clone());
        std::thread::spawn(move || observe(addr, "cg", stop, seen))
    };
    let stop_producing = Arc::new(AtomicBool::new(false));
    let _stop_producing_guard = StopOnDrop(stop_producing.clone());
    let producer = {
        let (addr, stop) = (addr.clone(), stop_producing.clone());
        std::thread::spawn(move || produce_until(addr, "churn", stop))
    };
    let check_observer = || {
        if let Some(v) = &seen.lock().unwrap().violation {
            panic!("observer: {v}");
        }
    };

    let member_args = ["--session-timeout-ms", SESSION_TIMEOUT_MS];
    let mut next_id = 0;
    let mut spawn = |args: &[&str]| {
        next_id += 1;
        Member::spawn(next_id, &addr, "churn", "cg", args)
    };
    let mut live: Vec<Member> = Vec::new();
    let mut ended: Vec<Ended> = Vec::new();
    let (mut joins, mut leaves, mut kills) = (0, 0, 0);
    let mut events = 0;
    while events < MIN_EVENTS || joins < MIN_EACH || leaves < MIN_EACH || kills < MIN_EACH {
        assert!(
            events < MAX_EVENTS,
            "{joins} joins, {leaves} leaves, {kills} kills"
        );
        events += 1;
        let join = live.len() <= 1 || (live.len() < MAX_LIVE && rng.gen_bool(0.5));
        if join {
            live.push(spawn(&member_args));
            joins += 1;
        } else {
            // Only a member that printed is surely past installing its signal handlers.
            let can_leave: Vec<usize> = (0..live.len())
                .filter(|&i| live[i].lines_printed() > 0)
                .collect();
            if !can_leave.is_empty() && rng.gen_bool(0.5) {
                let i = can_leave[rng.gen_range(0..can_leave.len())];
                let signal = if rng.gen_bool(0.5) {
                    libc::SIGTERM
                } else {
                    libc::SIGINT
                };
                ended.push(live.swap_remove(i).stop_with(signal));
                leaves += 1;
            } else {
                let i = rng.gen_range(0..live.len());
                ended.push(live.swap_remove(i).kill9());
                kills += 1;
            }
        }
        check_observer();
        std::thread::sleep(Duration::from_millis(rng.gen_range(PAUSE_MS)));
    }
    println!("churn: {events} events: {joins} joins, {leaves} leaves, {kills} kills");

    stop_producing.store(true, Ordering::Release);
    let landed = producer.join().expect("producer thread");
    println!("produced {} records during the churn", landed.len());
    // The rest go: cleanly when surely able to, else killed.
    for m in std::mem::take(&mut live) {
        if m.lines_printed() > 0 {
            ended.push(m.stop());
        } else {
            ended.push(m.kill9());
        }
    }
    // Killed members' sessions expire.
    let mut conn = broker.connect();
    wait_for_group(&mut conn, "cg", "Empty", |d| d.state == GroupState::Empty);

    // Members that run until idle consume whatever is left.
    let finals: Vec<Member> = (0..FINAL_MEMBERS)
        .map(|_| spawn(&["--idle-timeout-ms", FINAL_IDLE_TIMEOUT_MS]))
        .collect();
    for m in finals {
        let e = m.wait();
        assert!(
            e.status.success(),
            "final member {} exited with {}; stderr:\n{}",
            e.id,
            e.status,
            e.stderr
        );
        ended.push(e);
    }
    // One more look after the last commits, then the observer stops.
    let samples = seen.lock().unwrap().samples;
    let deadline = Instant::now() + STATE_TIMEOUT;
    while seen.lock().unwrap().samples < samples + 2 {
        check_observer();
        assert!(Instant::now() < deadline, "the observer stopped observing");
        std::thread::sleep(POLL_INTERVAL);
    }
    stop.store(true, Ordering::Release);
    observer.join().expect("observer thread");
    check_observer();

    // Every record printed was produced there, and every record produced was printed.
    let produced_at: HashMap<(u32, i64), u64> = landed
        .iter()
        .enumerate()
        .map(|(n, &(p, o))| ((p, o), n as u64))
        .collect();
    let mut printed_values = vec![false; landed.len()];
    let mut lines = 0;
    for e in &ended {
        for r in parse_printed(&e.stdout) {
            lines += 1;
            assert_eq!(
                produced_at.get(&(r.partition, r.offset)),
                Some(&r.value),
                "member {} printed {r:?}, which is not what was produced there",
                e.id
            );
            printed_values[r.value as usize] = true;
        }
    }
    let missing: Vec<usize> = (0..landed.len()).filter(|&n| !printed_values[n]).collect();
    assert!(
        missing.is_empty(),
        "{} of {} records never printed, e.g. {:?}",
        missing.len(),
        landed.len(),
        &missing[..missing.len().min(10)]
    );
    println!(
        "{lines} lines printed by {} processes for {} records",
        ended.len(),
        landed.len()
    );

    // The final members committed everything.
    let ends = log_ends(&mut conn, "churn", PARTITIONS);
    let d = describe(&mut conn, "cg");
    assert_eq!(committed(&d, "churn"), ends, "{d:#?}");

    let seen = seen.lock().unwrap();
    println!(
        "observer: {} descriptions, {} group epochs, at most {} members",
        seen.samples,
        seen.epochs.len(),
        seen.most_members
    );
    assert!(
        seen.most_members >= 2,
        "the observer saw the churn: {seen:?}"
    );
    let last_seen: BTreeMap<u32, i64> = seen.committed.iter().map(|((_, p), &o)| (*p, o)).collect();
    assert_eq!(last_seen, ends, "the observer saw the final commits");
}

// ---------------------------------------------------------------------------------------------
// 3. Restarts

/// What a restart must keep of a group.
#[derive(Debug, PartialEq)]
struct Kept {
    group: String,
    state: GroupState,
    epoch: i32,
    members: u32,
    /// Committed offsets of topic `r`.
    offsets: BTreeMap<u32, i64>,
}

/// Every group's listing and committed offsets (DescribeGroup and OffsetFetch must agree).
fn group_state(conn: &mut Connection) -> Vec<Kept> {
    let listing = conn.list_groups().expect("list groups");
    listing
        .into_iter()
        .map(|g| {
            let d = describe(conn, &g.group);
            let offsets = committed(&d, "r");
            let fetched: BTreeMap<u32, i64> = conn
                .offset_fetch(&g.group, &[])
                .expect("offset fetch")
                .into_iter()
                .map(|c| (c.partition, c.offset))
                .collect();
            assert_eq!(offsets, fetched, "describe and offset fetch agree");
            Kept {
                group: g.group,
                state: g.state,
                epoch: g.group_epoch,
                members: g.members,
                offsets,
            }
        })
        .collect()
}

#[test]
fn committed_offsets_and_groups_survive_a_clean_restart_and_a_kill() {
    const PARTITIONS: u32 = 3;
    const KEYS: u64 = 30;
    const IDLE: &[&str] = &["--from-beginning", "--idle-timeout-ms", IDLE_TIMEOUT_MS];
    let mut broker = Broker::start(1, GROUP_FLAGS);
    let addr = broker.addr();
    create_topic(&addr, "r", PARTITIONS);
    produce_keyed(&addr, "r", 0..300, KEYS);

    // g1 reads everything (range assignor); g2 reads 100 records and stops.
    let mut g1_args = IDLE.to_vec();
    g1_args.extend(["--assignor", "range"]);
    let first = consume_group(&addr, "r", "g1", &g1_args);
    assert_eq!(values(&first), (0..300).collect::<Vec<_>>());
    let g2_first = consume_group(
        &addr,
        "r",
        "g2",
        &["--from-beginning", "--max-messages", "100"],
    );
    assert_eq!(g2_first.len(), 100);
    // Records produced after the commits.
    produce_keyed(&addr, "r", 300..330, KEYS);

    let mut conn = broker.connect();
    let before = group_state(&mut conn);
    assert_eq!(
        before.iter().map(|g| g.group.as_str()).collect::<Vec<_>>(),
        ["g1", "g2"]
    );
    assert_eq!(
        before[1].offsets.values().sum::<i64>(),
        100,
        "g2 committed what it printed"
    );
    drop(conn);

    broker.stop_clean();
    broker.restart();
    let mut conn = broker.connect();
    assert_eq!(group_state(&mut conn), before, "after a clean restart");
    let d = describe(&mut conn, "g1");
    assert_eq!((d.state, d.assignor.as_str()), (GroupState::Empty, "range"));
    assert!(d.members.is_empty());
    let listed = run(at(&broker.addr(), &["group", "list"]), None)
        .ok()
        .stdout;
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some("g1"))
            && listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some("g2")),
        "{listed}"
    );

    // g1 resumes after its commit: only the records produced after it.
    let addr = broker.addr();
    let resumed = consume_group(&addr, "r", "g1", IDLE);
    assert_eq!(values(&resumed), (300..330).collect::<Vec<_>>());
    // g2 resumes after exactly what it printed.
    let g2_rest = consume_group(&addr, "r", "g2", IDLE);
    let mut g2_all = values(&g2_first);
    g2_all.extend(values(&g2_rest));
    g2_all.sort_unstable();
    assert_eq!(g2_all, (0..330).collect::<Vec<_>>(), "g2: each record once");

    // Again, with SIGKILL instead of a clean stop.
    produce_keyed(&addr, "r", 330..350, KEYS);
    let resumed = consume_group(&addr, "r", "g1", IDLE);
    assert_eq!(values(&resumed), (330..350).collect::<Vec<_>>());
    let before = group_state(&mut conn);
    drop(conn);
    broker.kill9();
    // Fresh ports: the killed broker's may be held in TIME_WAIT.
    broker.restart_on_new_ports();
    let addr = broker.addr();
    let mut conn = broker.connect();
    assert_eq!(
        group_state(&mut conn),
        before,
        "after SIGKILL and a restart"
    );
    produce_keyed(&addr, "r", 350..360, KEYS);
    let resumed = consume_group(&addr, "r", "g1", IDLE);
    assert_eq!(values(&resumed), (350..360).collect::<Vec<_>>());
    let resumed = consume_group(&addr, "r", "g2", IDLE);
    assert_eq!(values(&resumed), (330..360).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------------
// 4. Refusals

#[test]
fn the_coordinator_refuses_stale_unknown_and_invalid_requests_clearly() {
    let broker = Broker::start(1, GROUP_FLAGS);
    let addr = broker.addr();
    create_topic(&addr, "e", 4);
    let mut conn = broker.connect();

    // Member A joins and gets every partition.
    let a = heartbeat(&mut conn, "g", "", MEMBER_EPOCH_JOIN, "e", &[]).expect("join a");
    assert!(!a.member_id.is_empty() && a.member_epoch > 0, "{a:?}");
    assert!(
        a.heartbeat_interval_ms > 0 && a.heartbeat_interval_ms <= 200,
        "{a:?}"
    );
    let mut a_owned = a.assignment.clone();
    let mut a_epoch = a.member_epoch;
    let deadline = Instant::now() + STATE_TIMEOUT;
    while flat(&a_owned).len() < 4 {
        assert!(Instant::now() < deadline, "A never got the partitions");
        let r = heartbeat(&mut conn, "g", &a.member_id, a_epoch, "e", &a_owned).unwrap();
        (a_owned, a_epoch) = (r.assignment, r.member_epoch);
    }
    let ok = commit(&mut conn, "g", &a.member_id, a_epoch, "e", &[(0, 5)]).expect("commit");
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].error, ErrorCode::None, "{ok:?}");
    let old_epoch = a_epoch;

    // Member B joins: A must release two partitions before anyone gets them.
    let b = heartbeat(&mut conn, "g", "", MEMBER_EPOCH_JOIN, "e", &[]).expect("join b");
    assert!(
        flat(&b.assignment).is_empty(),
        "A still owns everything: {b:?}"
    );
    let r = heartbeat(&mut conn, "g", &a.member_id, a_epoch, "e", &a_owned).unwrap();
    assert_eq!(flat(&r.assignment).len(), 2, "{r:?}");
    assert_eq!(r.member_epoch, old_epoch, "not advanced while revoking");
    let d = describe(&mut conn, "g");
    assert_eq!(d.state, GroupState::Reconciling, "{d:#?}");
    let da = d
        .members
        .iter()
        .find(|m| m.member_id == a.member_id)
        .unwrap();
    assert_eq!(
        (flat(&da.assignment).len(), flat(&da.revoking).len()),
        (2, 2),
        "{d:#?}"
    );
    // A commits the partition being revoked (it still holds it) before releasing it.
    let revoking = flat(&da.revoking);
    let (_, p_revoked) = revoking.iter().next().unwrap().clone();
    let ok = commit(
        &mut conn,
        "g",
        &a.member_id,
        a_epoch,
        "e",
        &[(p_revoked, 7)],
    )
    .expect("commit of a revoking partition");
    assert_eq!(ok[0].error, ErrorCode::None, "{ok:?}");
    // A releases them: its epoch moves on.
    a_owned = r.assignment;
    let r = heartbeat(&mut conn, "g", &a.member_id, a_epoch, "e", &a_owned).unwrap();
    assert!(r.member_epoch > old_epoch, "{r:?}");
    a_epoch = r.member_epoch;
    let rb = heartbeat(&mut conn, "g", &b.member_id, b.member_epoch, "e", &[]).unwrap();
    assert_eq!(flat(&rb.assignment), revoking, "B gets what A released");
    let d = describe(&mut conn, "g");
    assert_eq!(d.state, GroupState::Stable, "{d:#?}");

    // A commit with A's old epoch: StaleMemberEpoch, saying what to do.
    assert_refused(
        commit(&mut conn, "g", &a.member_id, old_epoch, "e", &[(0, 9)]),
        ErrorCode::StaleMemberEpoch,
        &[
            &format!("{:?}", a.member_id),
            "group \"g\"",
            &format!("epoch {old_epoch}"),
            &format!("now {a_epoch}"),
        ],
    );
    // An epoch from the future: fenced.
    assert_refused(
        commit(&mut conn, "g", &a.member_id, a_epoch + 10, "e", &[(0, 9)]),
        ErrorCode::FencedMemberEpoch,
        &["group \"g\""],
    );
    // A partition A does not own: refused for that partition only.
    let (_, b_part) = revoking.iter().next().unwrap().clone();
    let a_part = flat(&a_owned).into_iter().next().unwrap().1;
    let results = commit(
        &mut conn,
        "g",
        &a.member_id,
        a_epoch,
        "e",
        &[(a_part, 11), (b_part, 11), (9, 11)],
    )
    .expect("commit");
    let codes: Vec<ErrorCode> = results.iter().map(|r| r.error).collect();
    assert_eq!(
        codes,
        [
            ErrorCode::None,
            ErrorCode::NotAssigned,
            ErrorCode::UnknownPartition
        ],
        "{results:?}"
    );
    // None of the refused commits changed anything.
    let fetched: BTreeMap<u32, i64> = conn
        .offset_fetch("g", &["e".to_string()])
        .unwrap()
        .into_iter()
        .map(|c| (c.partition, c.offset))
        .collect();
    let mut want = BTreeMap::from([(0, 5), (p_revoked, 7)]);
    want.insert(a_part, 11);
    assert_eq!(fetched, want);
    // An unknown member.
    assert_refused(
        commit(&mut conn, "g", "nobody", a_epoch, "e", &[(0, 1)]),
        ErrorCode::UnknownMember,
        &["\"nobody\"", "group \"g\""],
    );
    assert_refused(
        heartbeat(&mut conn, "g", "nobody", 3, "e", &[]),
        ErrorCode::UnknownMember,
        &["\"nobody\""],
    );
    // While it has members, the group can be neither deleted nor reset.
    assert_refused(
        conn.delete_group("g"),
        ErrorCode::GroupNotEmpty,
        &["group \"g\" has 2 active member(s)"],
    );
    assert_refused(
        commit(&mut conn, "g", "", MEMBER_EPOCH_ADMIN, "e", &[(0, 0)]),
        ErrorCode::GroupNotEmpty,
        &["group \"g\" has 2 active member(s)"],
    );
    // Bounds of the session timeout, and the assignor's name.
    let mut req = GroupHeartbeatRequest {
        group: "g".into(),
        member_id: String::new(),
        member_epoch: MEMBER_EPOCH_JOIN,
        session_timeout_ms: 100,
        topics: vec!["e".into()],
        owned: vec![],
        assignor: None,
    };
    assert_refused(
        conn.group_heartbeat(req.clone()),
        ErrorCode::InvalidSessionTimeout,
        &["100 ms", "300..=300000"],
    );
    req.session_timeout_ms = DRIVEN_SESSION_TIMEOUT_MS;
    req.assignor = Some("fastest".into());
    assert_refused(
        conn.group_heartbeat(req),
        ErrorCode::InvalidConfig,
        &["\"fastest\""],
    );
    // Both leave; then the group can be deleted.
    for id in [&a.member_id, &b.member_id] {
        let r = heartbeat(&mut conn, "g", id, MEMBER_EPOCH_LEAVE, "e", &[]).unwrap();
        assert_eq!(r.member_epoch, MEMBER_EPOCH_LEAVE);
    }
    assert_eq!(describe(&mut conn, "g").state, GroupState::Empty);
    conn.delete_group("g").expect("delete an empty group");

    // Unknown and invalid groups, through the client.
    for group in ["g", "nope"] {
        let unknown = format!("unknown group {group:?}");
        assert_refused(
            conn.describe_group(group),
            ErrorCode::UnknownGroup,
            &[&unknown],
        );
        assert_refused(
            conn.delete_group(group),
            ErrorCode::UnknownGroup,
            &[&unknown],
        );
        assert_refused(
            conn.offset_fetch(group, &[]),
            ErrorCode::UnknownGroup,
            &[&unknown],
        );
        assert_refused(
            commit(&mut conn, group, "", MEMBER_EPOCH_ADMIN, "e", &[(0, 0)]),
            ErrorCode::UnknownGroup,
            &[&unknown],
        );
    }
    let invalid = "invalid group id \"a b\"";
    assert_refused(
        conn.describe_group("a b"),
        ErrorCode::InvalidGroup,
        &[invalid],
    );
    assert_refused(
        conn.delete_group("a b"),
        ErrorCode::InvalidGroup,
        &[invalid],
    );
    assert_refused(
        conn.offset_fetch("a b", &[]),
        ErrorCode::InvalidGroup,
        &[invalid],
    );
    assert_refused(
        heartbeat(&mut conn, "a b", "", MEMBER_EPOCH_JOIN, "e", &[]),
        ErrorCode::InvalidGroup,
        &[invalid],
    );
    assert_refused(
        commit(&mut conn, "a b", "", MEMBER_EPOCH_ADMIN, "e", &[(0, 0)]),
        ErrorCode::InvalidGroup,
        &[invalid],
    );
    assert_refused(
        conn.describe_group(""),
        ErrorCode::InvalidGroup,
        &["it is empty"],
    );
    assert!(
        conn.list_groups().unwrap().is_empty(),
        "nothing created by refused requests"
    );

    // The same through the CLI: exit 1, one line naming the group.
    for args in [
        &["group", "describe", "nope"][..],
        &["group", "delete", "nope"],
        &[
            "group",
            "reset-offsets",
            "nope",
            "--topic",
            "e",
            "--to-earliest",
        ],
    ] {
        run(at(&addr, args), None).fails_with(1, &["unknown group \"nope\""]);
    }
    for args in [
        &["group", "describe", "a b"][..],
        &["group", "delete", "a b"],
        &[
            "group",
            "reset-offsets",
            "a b",
            "--topic",
            "e",
            "--to-latest",
        ],
    ] {
        run(at(&addr, args), None).fails_with(1, &[invalid]);
    }
    // Were the refusal ignored, the member would exit 0 after this long instead.
    const REFUSED_MEMBER_IDLE_MS: &str = "5000";
    let out = run(
        at(
            &addr,
            &[
                "consume",
                "e",
                "--group",
                "a b",
                "--idle-timeout-ms",
                REFUSED_MEMBER_IDLE_MS,
            ],
        ),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("strata: ") && last.contains(invalid),
        "{:?}",
        out.stderr
    );
}

/// The rows of `strata group reset-offsets`: (partition, new offset).
fn reset_rows(stdout: &str) -> Vec<(u32, i64)> {
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["TOPIC", "PARTITION", "NEW-OFFSET"]);
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "row {l:?}");
            (f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect()
}

#[test]
fn group_commands_list_delete_and_reset_only_while_empty() {
    const PARTITIONS: u32 = 3;
    const KEYS: u64 = 30;
    const IDLE: &[&str] = &["--from-beginning", "--idle-timeout-ms", IDLE_TIMEOUT_MS];
    let broker = Broker::start(1, GROUP_FLAGS);
    let addr = broker.addr();
    create_topic(&addr, "s", PARTITIONS);
    produce_keyed(&addr, "s", 0..90, KEYS);
    let mut conn = broker.connect();
    let ends = log_ends(&mut conn, "s", PARTITIONS);
    assert!(ends.values().all(|&e| e > 5), "{ends:?}");

    let out = run(at(&addr, &["group", "list"]), None).ok();
    assert_eq!(
        out.stdout.trim(),
        "GROUP  STATE  EPOCH  MEMBERS",
        "no groups yet"
    );

    // A member that stays.
    let member = Member::spawn(1, &addr, "s", "cg", &[]);
    let d = wait_for_group(&mut conn, "cg", "Stable with 1 member", |d| {
        d.state == GroupState::Stable && d.members.len() == 1
    });
    let out = run(at(&addr, &["group", "list"]), None).ok();
    let rows: Vec<Vec<String>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["GROUP", "STATE", "EPOCH", "MEMBERS"],
            vec!["cg", "Stable", &d.group_epoch.to_string(), "1"]
        ],
        "{}",
        out.stdout
    );
    let described = run(at(&addr, &["group", "describe", "cg"]), None)
        .ok()
        .stdout;
    assert!(
        described.starts_with("group \"cg\": Stable, epoch ")
            && described.contains(&d.members[0].member_id)
            && described.contains("s:0,1,2"),
        "{described}"
    );
    let not_empty = "group \"cg\" has 1 active member(s)";
    run(at(&addr, &["group", "delete", "cg"]), None).fails_with(1, &[not_empty, "deleting it"]);
    run(
        at(
            &addr,
            &[
                "group",
                "reset-offsets",
                "cg",
                "--topic",
                "s",
                "--to-earliest",
            ],
        ),
        None,
    )
    .fails_with(1, &[not_empty, "offset reset"]);
    // It consumed everything; on SIGTERM it commits and leaves.
    let deadline = Instant::now() + STATE_TIMEOUT;
    while member.lines_printed() < 90 {
        assert!(Instant::now() < deadline, "the member printed too little");
        std::thread::sleep(POLL_INTERVAL);
    }
    let ended = member.stop();
    assert_eq!(
        values(&parse_printed(&ended.stdout)),
        (0..90).collect::<Vec<_>>()
    );
    let d = describe(&mut conn, "cg");
    assert_eq!(d.state, GroupState::Empty, "{d:#?}");
    assert_eq!(committed(&d, "s"), ends);

    // Resets on the empty group, each followed by a member that starts there.
    let reset = |args: &[&str]| {
        let mut all = vec!["group", "reset-offsets", "cg", "--topic", "s"];
        all.extend_from_slice(args);
        reset_rows(&run(at(&addr, &all), None).ok().stdout)
    };
    let all_at = |f: &dyn Fn(u32) -> i64| (0..PARTITIONS).map(|p| (p, f(p))).collect::<Vec<_>>();

    assert_eq!(reset(&["--to-earliest"]), all_at(&|_| 0));
    let again = consume_group(&addr, "s", "cg", IDLE);
    assert_eq!(
        values(&again),
        (0..90).collect::<Vec<_>>(),
        "from the earliest"
    );

    assert_eq!(reset(&["--to-offset", "5"]), all_at(&|_| 5));
    let again = consume_group(&addr, "s", "cg", IDLE);
    let mut want: Vec<(u32, i64)> = (0..PARTITIONS)
        .flat_map(|p| (5..ends[&p]).map(move |o| (p, o)))
        .collect();
    want.sort_unstable();
    let mut got: Vec<(u32, i64)> = again.iter().map(|r| (r.partition, r.offset)).collect();
    got.sort_unstable();
    assert_eq!(got, want, "from offset 5 of each partition");

    // One partition only; past the end is moved to the end.
    assert_eq!(reset(&["--to-offset", "2", "--partition", "1"]), [(1, 2)]);
    assert_eq!(
        reset(&["--to-offset", "1000000", "--partition", "0"]),
        [(0, ends[&0])]
    );
    let again = consume_group(&addr, "s", "cg", IDLE);
    let got: Vec<(u32, i64)> = again.iter().map(|r| (r.partition, r.offset)).collect();
    let want: Vec<(u32, i64)> = (2..ends[&1]).map(|o| (1, o)).collect();
    assert_eq!(got, want, "only partition 1, from offset 2");

    assert_eq!(reset(&["--to-earliest"]), all_at(&|_| 0));
    assert_eq!(reset(&["--to-latest"]), all_at(&|p| ends[&p]));
    produce_keyed(&addr, "s", 90..120, KEYS);
    let again = consume_group(&addr, "s", "cg", IDLE);
    assert_eq!(
        values(&again),
        (90..120).collect::<Vec<_>>(),
        "from the latest: only what came after the reset"
    );

    run(
        at(
            &addr,
            &[
                "group",
                "reset-offsets",
                "cg",
                "--topic",
                "nope",
                "--to-earliest",
            ],
        ),
        None,
    )
    .fails_with(1, &["unknown topic \"nope\""]);
    let out = run(at(&addr, &["group", "delete", "cg"]), None).ok();
    assert_eq!(out.stdout, "deleted group \"cg\"\n");
    let out = run(at(&addr, &["group", "list"]), None).ok();
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert_refused(
        conn.offset_fetch("cg", &[]),
        ErrorCode::UnknownGroup,
        &["unknown group \"cg\""],
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Compaction of the offsets log

/// Total size of the files in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn the_offsets_log_is_compacted_and_replays_the_latest_offsets() {
    /// Partitions per commit: with their metadata, a commit stays under the 64 KiB header limit.
    const PARTITIONS: u32 = 12;
    /// Metadata kept with each offset: large, so the log grows fast.
    const METADATA_BYTES: usize = 4000;
    const COMMITS: i64 = 500;
    let metadata = |round: i64, p: u32| {
        let unit = format!("{round}-{p}-");
        unit.repeat(METADATA_BYTES / unit.len() + 1)[..METADATA_BYTES].to_string()
    };
    let mut broker = Broker::start(
        1,
        &[GROUP_FLAGS, &["--group-offsets-compact-bytes", "65536"]].concat(),
    );
    let addr = broker.addr();
    create_topic(&addr, "c", PARTITIONS);
    let mut conn = broker.connect();
    // The group exists once a member joined; it is empty once it left.
    let j = heartbeat(&mut conn, "big", "", MEMBER_EPOCH_JOIN, "c", &[]).unwrap();
    heartbeat(&mut conn, "big", &j.member_id, MEMBER_EPOCH_LEAVE, "c", &[]).unwrap();

    let mut appended = 0u64;
    for round in 0..COMMITS {
        let offsets: Vec<CommitOffset> = (0..PARTITIONS)
            .map(|p| CommitOffset {
                topic: "c".into(),
                partition: p,
                offset: round * 1000 + i64::from(p),
                metadata: metadata(round, p),
            })
            .collect();
        appended += offsets.iter().map(|o| o.metadata.len() as u64).sum::<u64>();
        let results = conn
            .offset_commit(OffsetCommitRequest {
                group: "big".into(),
                member_id: String::new(),
                member_epoch: MEMBER_EPOCH_ADMIN,
                offsets,
            })
            .unwrap_or_else(|e| panic!("commit {round}: {e}"));
        assert!(
            results.iter().all(|r| r.error == ErrorCode::None),
            "{results:?}"
        );
    }
    let latest = |conn: &mut Connection| -> Vec<(u32, i64, String)> {
        let mut v: Vec<(u32, i64, String)> = conn
            .offset_fetch("big", &[])
            .unwrap()
            .into_iter()
            .map(|c| (c.partition, c.offset, c.metadata))
            .collect();
        v.sort();
        v
    };
    let want: Vec<(u32, i64, String)> = (0..PARTITIONS)
        .map(|p| {
            let round = COMMITS - 1;
            (p, round * 1000 + i64::from(p), metadata(round, p))
        })
        .collect();
    assert_eq!(latest(&mut conn), want);
    drop(conn);

    broker.stop_clean();
    let dir = broker.data_dir().join("internal/__strata_offsets/0");
    let on_disk = dir_bytes(&dir);
    println!("{appended} bytes of metadata committed; the offsets log holds {on_disk} bytes");
    assert!(
        on_disk < appended,
        "the offsets log holds {on_disk} bytes after {appended} bytes of commits: not compacted"
    );
    broker.restart();
    let mut conn = broker.connect();
    assert_eq!(
        latest(&mut conn),
        want,
        "the latest offsets after a restart"
    );
    let listing = conn.list_groups().unwrap();
    assert_eq!(listing.len(), 1);
    assert_eq!(
        (
            listing[0].group.as_str(),
            listing[0].state,
            listing[0].members
        ),
        ("big", GroupState::Empty, 0)
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Subscriptions and the rebalance timeout

#[test]
fn a_topic_created_after_joining_is_assigned() {
    let broker = Broker::start(1, GROUP_FLAGS);
    let mut conn = broker.connect();
    let j = heartbeat(&mut conn, "late", "", MEMBER_EPOCH_JOIN, "later", &[]).unwrap();
    assert!(flat(&j.assignment).is_empty(), "no such topic yet: {j:?}");
    create_topic(&broker.addr(), "later", 3);
    let r = heartbeat(
        &mut conn,
        "late",
        &j.member_id,
        j.member_epoch,
        "later",
        &[],
    )
    .unwrap();
    assert_eq!(
        flat(&r.assignment),
        (0..3).map(|p| ("later".to_string(), p)).collect(),
        "{r:?}"
    );
    assert!(r.member_epoch > j.member_epoch, "{r:?}");
    let d = heartbeat(
        &mut conn,
        "late",
        &j.member_id,
        r.member_epoch,
        "later",
        &r.assignment,
    )
    .unwrap();
    assert_eq!(d.assignment, r.assignment);
    assert_eq!(describe(&mut conn, "late").state, GroupState::Stable);
}

#[test]
fn a_member_that_never_releases_is_removed_after_the_rebalance_timeout() {
    const REBALANCE_TIMEOUT_MS: &str = "1000";
    let broker = Broker::start(
        1,
        &[
            GROUP_FLAGS,
            &["--group-rebalance-timeout-ms", REBALANCE_TIMEOUT_MS],
        ]
        .concat(),
    );
    create_topic(&broker.addr(), "e", 4);
    let mut conn = broker.connect();
    let a = heartbeat(&mut conn, "g", "", MEMBER_EPOCH_JOIN, "e", &[]).unwrap();
    let everything = a.assignment.clone();
    assert_eq!(flat(&everything).len(), 4, "{a:?}");
    let b = heartbeat(&mut conn, "g", "", MEMBER_EPOCH_JOIN, "e", &[]).unwrap();
    // A keeps heartbeating, and keeps claiming everything.
    let r = heartbeat(
        &mut conn,
        "g",
        &a.member_id,
        a.member_epoch,
        "e",
        &everything,
    )
    .unwrap();
    assert_eq!(flat(&r.assignment).len(), 2, "two are being revoked: {r:?}");
    let deadline = Instant::now() + STATE_TIMEOUT;
    let removed = loop {
        assert!(Instant::now() < deadline, "A was never removed");
        let d = describe(&mut conn, "g");
        let held: usize = d
            .members
            .iter()
            .map(|m| flat(&m.assignment).len() + flat(&m.revoking).len())
            .sum();
        assert!(held <= 4, "a partition held twice: {d:#?}");
        let rb = heartbeat(&mut conn, "g", &b.member_id, b.member_epoch, "e", &[]).unwrap();
        match heartbeat(
            &mut conn,
            "g",
            &a.member_id,
            a.member_epoch,
            "e",
            &everything,
        ) {
            Ok(r) => {
                assert!(flat(&rb.assignment).is_empty(), "B got a partition A holds");
                assert_eq!(flat(&r.assignment).len(), 2, "{r:?}");
            }
            Err(e) => break e,
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_refused::<()>(
        Err(removed),
        ErrorCode::UnknownMember,
        &[&format!("{:?}", a.member_id)],
    );
    // B gets everything.
    let mut b_epoch = b.member_epoch;
    let mut owned = Vec::new();
    while flat(&owned).len() < 4 {
        assert!(Instant::now() < deadline, "B never got everything");
        let rb = heartbeat(&mut conn, "g", &b.member_id, b_epoch, "e", &owned).unwrap();
        (owned, b_epoch) = (rb.assignment, rb.member_epoch);
    }
    let d = describe(&mut conn, "g");
    assert_eq!(
        (d.state, d.members.len()),
        (GroupState::Stable, 1),
        "{d:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Sizes: wide topics and large offset metadata

#[test]
fn a_group_on_a_thousand_partition_topic_commits_fetches_and_describes() {
    const PARTITIONS: u32 = 1000;
    const RECORDS: u64 = 2000;
    const TOPIC: &str = "orders.wide";
    let broker = Broker::start(1, GROUP_FLAGS);
    let addr = broker.addr();
    create_topic(&addr, TOPIC, PARTITIONS);
    produce_keyed(&addr, TOPIC, 0..RECORDS, RECORDS);
    let mut conn = broker.connect();
    let ends = log_ends(&mut conn, TOPIC, PARTITIONS);
    let mut failures: Vec<String> = Vec::new();

    // Group "seeded": offsets at the log ends, committed 200 partitions at a time.
    let j = heartbeat(&mut conn, "seeded", "", MEMBER_EPOCH_JOIN, TOPIC, &[]).unwrap();
    heartbeat(
        &mut conn,
        "seeded",
        &j.member_id,
        MEMBER_EPOCH_LEAVE,
        TOPIC,
        &[],
    )
    .unwrap();
    let all: Vec<(u32, i64)> = ends.iter().map(|(&p, &o)| (p, o)).collect();
    for chunk in all.chunks(200) {
        let results = commit(&mut conn, "seeded", "", MEMBER_EPOCH_ADMIN, TOPIC, chunk)
            .expect("admin commit of 200 offsets");
        assert!(results.iter().all(|r| r.error == ErrorCode::None));
    }
    match conn.offset_fetch("seeded", &[]) {
        Ok(list) => {
            let got: BTreeMap<u32, i64> = list.iter().map(|c| (c.partition, c.offset)).collect();
            if got != ends {
                failures.push("OffsetFetch of 1000 offsets: wrong offsets".into());
            }
        }
        Err(e) => {
            failures.push(format!("OffsetFetch of 1000 committed offsets fails: {e}"));
            conn = broker.connect();
        }
    }
    match conn.describe_group("seeded") {
        Ok(d) if committed(&d, TOPIC) == ends => {}
        Ok(_) => failures.push("DescribeGroup of 1000 offsets: wrong offsets".into()),
        Err(e) => {
            failures.push(format!(
                "DescribeGroup with 1000 committed offsets fails: {e}"
            ));
        }
    }
    let out = run(at(&addr, &["group", "describe", "seeded"]), None);
    if !out.status.success() {
        failures.push(format!(
            "strata group describe seeded: {}",
            out.stderr.trim()
        ));
    }
    // A member of "seeded" resumes at the ends: nothing to print.
    let out = run(
        at(
            &addr,
            &[
                "consume",
                TOPIC,
                "--group",
                "seeded",
                "--idle-timeout-ms",
                IDLE_TIMEOUT_MS,
            ],
        ),
        None,
    );
    if !out.status.success() || !out.stdout.is_empty() {
        failures.push(format!(
            "strata consume --group seeded (committed at the ends): {}, {} bytes printed, stderr {:?}",
            out.status,
            out.stdout.len(),
            out.stderr.trim()
        ));
    }

    // Group "fresh": one member owns all 1000 partitions and commits them when it exits.
    let out = run(
        at(
            &addr,
            &[
                "consume",
                TOPIC,
                "--group",
                "fresh",
                "--from-beginning",
                "--idle-timeout-ms",
                IDLE_TIMEOUT_MS,
                "--format",
                FORMAT,
            ],
        ),
        None,
    );
    let printed = parse_printed(&out.stdout);
    if values(&printed) != (0..RECORDS).collect::<Vec<_>>() {
        failures.push(format!(
            "strata consume --group fresh printed {} of {RECORDS} records",
            printed.len()
        ));
    }
    if !out.status.success() {
        failures.push(format!(
            "strata consume --group fresh owning 1000 partitions fails at exit ({}): {}",
            out.status,
            out.stderr.trim()
        ));
    }
    // Its commits, seen by a connection of its own, 200 partitions a time through a member.
    let mut conn = broker.connect();
    match conn.offset_fetch("fresh", &[TOPIC.to_string()]) {
        Ok(list) if list.len() == PARTITIONS as usize => {}
        Ok(list) => failures.push(format!(
            "group fresh: {} of 1000 partitions committed after its member exited",
            list.len()
        )),
        Err(e) => failures.push(format!("OffsetFetch of group fresh: {e}")),
    }
    let out = run(
        at(
            &addr,
            &[
                "group",
                "reset-offsets",
                "seeded",
                "--topic",
                TOPIC,
                "--to-earliest",
            ],
        ),
        None,
    );
    if !out.status.success() {
        failures.push(format!(
            "strata group reset-offsets of 1000 partitions: {}",
            out.stderr.trim()
        ));
    }
    assert!(
        failures.is_empty(),
        "a group on a 1000-partition topic:\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn concurrent_commits_with_large_metadata_are_all_durable() {
    const PARTITIONS: u32 = 14;
    /// Within the coordinator's limit of 4096 bytes.
    const METADATA_BYTES: usize = 4000;
    const CONNECTIONS: usize = 8;
    /// Commits each connection pipelines per round.
    const PIPELINED: usize = 25;
    const ROUNDS: usize = 2;
    let broker = Broker::start(1, GROUP_FLAGS);
    create_topic(&broker.addr(), "m", PARTITIONS);
    let mut conn = broker.connect();
    // A member of another group, which has nothing to do with the commits.
    let bystander = heartbeat(&mut conn, "other", "", MEMBER_EPOCH_JOIN, "m", &[]).unwrap();
    let j = heartbeat(&mut conn, "meta", "", MEMBER_EPOCH_JOIN, "m", &[]).unwrap();
    heartbeat(
        &mut conn,
        "meta",
        &j.member_id,
        MEMBER_EPOCH_LEAVE,
        "m",
        &[],
    )
    .unwrap();

    let mut conns: Vec<Connection> = (0..CONNECTIONS).map(|_| broker.connect()).collect();
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    let mut last = 0;
    for round in 0..ROUNDS {
        for (c, conn) in conns.iter_mut().enumerate() {
            for i in 0..PIPELINED {
                last = ((round * CONNECTIONS + c) * PIPELINED + i) as i64;
                let offsets = (0..PARTITIONS)
                    .map(|p| CommitOffset {
                        topic: "m".into(),
                        partition: p,
                        offset: last,
                        metadata: "m".repeat(METADATA_BYTES),
                    })
                    .collect();
                let req = OffsetCommitRequest {
                    group: "meta".into(),
                    member_id: String::new(),
                    member_epoch: MEMBER_EPOCH_ADMIN,
                    offsets,
                };
                conn.send(strata::protocol::RequestBody::OffsetCommit(req), &[])
                    .expect("send a commit");
            }
        }
        for conn in &mut conns {
            while conn.in_flight() > 0 {
                let (resp, _) = conn.receive().expect("a commit's answer");
                if resp.error != ErrorCode::None {
                    let msg = resp.message.unwrap_or_default();
                    *refused
                        .entry(format!("{}: {}", resp.error, &msg[..msg.len().min(200)]))
                        .or_default() += 1;
                }
            }
        }
    }
    // A member of another group has nothing to do with these commits: it is still a member.
    let still_member = heartbeat(
        &mut conn,
        "other",
        &bystander.member_id,
        bystander.member_epoch,
        "m",
        &bystander.assignment,
    );
    let total = ROUNDS * CONNECTIONS * PIPELINED;
    assert!(
        refused.is_empty(),
        "of {total} commits of {PARTITIONS} offsets with {METADATA_BYTES} bytes of metadata each, \
         refused: {refused:#?}\n(and the member of another group: {still_member:?})"
    );
    still_member.expect("a member of another group is untouched by these commits");
    // The offsets are those of commits that were made.
    let fetched = conn.offset_fetch("meta", &[]).unwrap();
    assert_eq!(fetched.len(), PARTITIONS as usize);
    assert!(fetched.iter().all(|c| c.offset <= last), "{last}");
}

// ---------------------------------------------------------------------------------------------
// 7. Broker restarts under live members, and deleted topics

#[test]
fn members_keep_reading_across_a_broker_restart_without_reading_twice() {
    const RECORDS: u64 = 2_000;
    let mut broker = Broker::start(1, GROUP_FLAGS);
    let addr = broker.addr();
    create_topic(&addr, "r", 4);
    produce_keyed(&addr, "r", 0..RECORDS, 16);
    // Long idle timeouts: the members must outlive the restart.
    let members: Vec<Member> = (0..2)
        .map(|id| Member::spawn(id, &addr, "r", "rg", &["--idle-timeout-ms", "6000"]))
        .collect();
    let mut conn = broker.connect();
    wait_for_group(&mut conn, "rg", "Stable with 2 members", |d| {
        d.state == GroupState::Stable && d.members.len() == 2
    });
    let deadline = Instant::now() + STATE_TIMEOUT;
    while members.iter().map(Member::lines_printed).sum::<usize>() < RECORDS as usize {
        assert!(
            Instant::now() < deadline,
            "the members did not read everything"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
    drop(conn);
    broker.stop_clean();
    broker.restart();
    produce_keyed(&addr, "r", RECORDS..2 * RECORDS, 16);
    let mut printed = Vec::new();
    for m in members {
        let e = m.wait();
        assert!(
            e.status.success(),
            "member {} exited with {} after the restart; stderr:\n{}",
            e.id,
            e.status,
            e.stderr
        );
        printed.extend(parse_printed(&e.stdout));
    }
    // Each member kept its partitions across the restart and carried on from its position:
    // every record exactly once.
    assert_eq!(values(&printed), (0..2 * RECORDS).collect::<Vec<_>>());
}

#[test]
fn offsets_of_a_deleted_topic_are_forgotten_and_a_new_topic_starts_fresh() {
    let broker = Broker::start(1, GROUP_FLAGS);
    let addr = broker.addr();
    create_topic(&addr, "d", 1);
    produce_keyed(&addr, "d", 0..50, 1);
    let first = consume_group(
        &addr,
        "d",
        "dg",
        &["--from-beginning", "--max-messages", "40"],
    );
    assert_eq!(first.len(), 40);
    let mut conn = broker.connect();
    assert_eq!(
        committed(&describe(&mut conn, "dg"), "d"),
        BTreeMap::from([(0, 40)])
    );

    run(at(&addr, &["topic", "delete", "d"]), None).ok();
    let d = describe(&mut conn, "dg");
    assert!(
        committed(&d, "d").is_empty(),
        "offsets outlived the topic: {d:?}"
    );

    // The same name again: its records are new, and the group reads them from the start.
    create_topic(&addr, "d", 1);
    produce_keyed(&addr, "d", 1_000..1_010, 1);
    let again = consume_group(
        &addr,
        "d",
        "dg",
        &["--from-beginning", "--idle-timeout-ms", IDLE_TIMEOUT_MS],
    );
    assert_eq!(values(&again), (1_000..1_010).collect::<Vec<_>>());
    assert_eq!(again[0].offset, 0);
}
