//! Consumer-group benchmark, on the coordinator's state machine (`strata::coordinator::Groups`),
//! the code the coordinator core runs for every group request.
//!
//! Run: `cargo bench --bench groups -- [--members N] [--partitions P] [--interval-ms H] [--seconds S]`.
//!
//! 1. Rebalance time, in simulated time: `--members` members subscribed to 10 topics holding
//!    `--partitions` partitions in all. Each member heartbeats every `--interval-ms` (random
//!    phase), releases revoked partitions `APP_RELEASE_MS` after hearing of it (a commit's round
//!    trip) and then heartbeats at once, as `GroupConsumer` does. Printed: from one member joining
//!    a stable group, from one member being killed (its session timing out), and from every
//!    member joining at once, to the group being Stable with every member reading exactly its
//!    target; plus the heartbeats that took and the coordinator CPU they cost.
//! 2. Heartbeat cost: steady heartbeats of the same group, round-robin, as fast as one core
//!    applies them: heartbeats/s and the time per heartbeat.
//! 3. Heartbeats through a real broker (`strata broker --shards 1`, so the coordinator has a core
//!    to itself on a 2-core machine): the members of the same group on one connection,
//!    `PIPELINE` heartbeats in flight, for `--seconds`. The client runs on the same machine.
//!
//! Nothing is asserted; it prints figures.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

mod common;

use common::{start_broker, BenchResult};
use strata::client::Connection;

use strata::coordinator::{ClientInfo, GroupConfig, Groups, TopicPartition};
use strata::protocol::{
    GroupHeartbeatRequest, GroupState, RequestBody, ResponseBody, TopicPartitions,
    MEMBER_EPOCH_JOIN,
};

const GROUP: &str = "bench";
const TOPICS: u32 = 10;
const SESSION_MS: u32 = 10_000;
/// Delay between a member hearing of a revocation and reporting it released.
const APP_RELEASE_MS: u64 = 10;
/// Longest simulated time a scenario may take before it counts as not settling.
const MAX_SIMULATED_MS: u64 = 600_000;
/// Heartbeats in flight on the connection of shape 3.
const PIPELINE: usize = 64;
/// Where shape 3's broker keeps its data (deleted afterwards).
const SCRATCH_DIR: &str = "target/bench-data";

struct Args {
    members: usize,
    partitions: u32,
    interval_ms: u32,
    seconds: f64,
}

impl Args {
    fn parse() -> BenchResult<Args> {
        let mut args = Args {
            members: 100,
            partitions: 1_000,
            interval_ms: 1_000,
            seconds: 2.0,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--bench" => {}
                "--members" => args.members = value()?.parse()?,
                "--partitions" => args.partitions = value()?.parse()?,
                "--interval-ms" => args.interval_ms = value()?.parse()?,
                "--seconds" => args.seconds = value()?.parse()?,
                "-h" | "--help" => {
                    println!("cargo bench --bench groups -- [--members N] [--partitions P] [--interval-ms H] [--seconds S]");
                    std::process::exit(0);
                }
                _ => return Err(format!("unknown argument {arg:?}").into()),
            }
        }
        if args.members == 0 || args.partitions < TOPICS {
            return Err(format!("need at least 1 member and {TOPICS} partitions").into());
        }
        Ok(args)
    }
}

/// A simulated member. Invariant: `owned` is what it reads; `desired` what it was last given.
struct Member {
    id: String,
    epoch: i32,
    desired: BTreeSet<TopicPartition>,
    owned: BTreeSet<TopicPartition>,
    alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Heartbeat(usize),
    Release(usize),
}

/// The coordinator's state machine, the simulated members and the clock.
struct Sim {
    groups: Groups,
    topics: BTreeMap<String, u32>,
    topic_names: Vec<String>,
    members: Vec<Member>,
    queue: BinaryHeap<Reverse<(u64, Event)>>,
    now: u64,
    interval_ms: u64,
    heartbeats: u64,
    coordinator_time: Duration,
    /// Deterministic phase jitter.
    seed: u64,
}

impl Sim {
    fn new(args: &Args) -> Sim {
        let config = GroupConfig {
            heartbeat_interval_ms: args.interval_ms,
            ..GroupConfig::default()
        };
        let per_topic = args.partitions / TOPICS;
        let topics: BTreeMap<String, u32> = (0..TOPICS)
            .map(|t| (format!("topic-{t}"), per_topic))
            .collect();
        Sim {
            groups: Groups::new(config, 1),
            topic_names: topics.keys().cloned().collect(),
            topics,
            members: Vec::new(),
            queue: BinaryHeap::new(),
            now: 0,
            interval_ms: u64::from(args.interval_ms),
            heartbeats: 0,
            coordinator_time: Duration::ZERO,
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn jitter(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed % self.interval_ms.max(1)
    }

    fn add_member(&mut self) {
        self.members.push(Member {
            id: String::new(),
            epoch: MEMBER_EPOCH_JOIN,
            desired: BTreeSet::new(),
            owned: BTreeSet::new(),
            alive: true,
        });
        let i = self.members.len() - 1;
        let at = self.now + self.jitter() % 50;
        self.queue.push(Reverse((at, Event::Heartbeat(i))));
    }

    fn heartbeat(&mut self, i: usize) {
        let m = &self.members[i];
        let report: BTreeSet<&TopicPartition> = m.owned.iter().chain(&m.desired).collect();
        let req = GroupHeartbeatRequest {
            group: GROUP.into(),
            member_id: m.id.clone(),
            member_epoch: m.epoch,
            session_timeout_ms: SESSION_MS,
            topics: self.topic_names.clone(),
            owned: TopicPartitions::group(
                report.into_iter().map(|p| (p.topic.as_str(), p.partition)),
            ),
            assignor: None,
        };
        let topics = &self.topics;
        let view = |t: &str| topics.get(t).copied();
        let start = Instant::now();
        self.groups.expire(self.now);
        let res = self
            .groups
            .heartbeat(req, &ClientInfo::default(), self.now, &view);
        self.groups.take_entries();
        self.coordinator_time += start.elapsed();
        self.heartbeats += 1;
        let m = &mut self.members[i];
        let r = res.expect("a simulated member is never refused");
        m.id = r.member_id;
        m.epoch = r.member_epoch;
        m.desired = TopicPartitions::pairs(&r.assignment)
            .map(|(t, p)| TopicPartition::new(t, p))
            .collect();
        // New partitions start at once; revoked ones after the commit's round trip.
        let added: Vec<TopicPartition> = m.desired.difference(&m.owned).cloned().collect();
        m.owned.extend(added);
        let revoke = m.owned.difference(&m.desired).next().is_some();
        let next = if revoke {
            (self.now + APP_RELEASE_MS, Event::Release(i))
        } else {
            (self.now + self.interval_ms, Event::Heartbeat(i))
        };
        self.queue.push(Reverse(next));
    }

    fn release(&mut self, i: usize) {
        let m = &mut self.members[i];
        let desired = m.desired.clone();
        m.owned.retain(|p| desired.contains(p));
        self.heartbeat(i);
    }

    fn settled(&self) -> bool {
        let Some(g) = self.groups.group(GROUP) else {
            return false;
        };
        let alive = self.members.iter().filter(|m| m.alive).count();
        g.members.len() == alive
            && g.state() == GroupState::Stable
            && self
                .members
                .iter()
                .filter(|m| m.alive)
                .all(|m| g.target.get(&m.id) == Some(&m.owned))
    }

    /// Runs events until the group settles; returns the simulated time it took.
    fn run_until_settled(&mut self) -> Option<u64> {
        let start = self.now;
        while let Some(Reverse((at, event))) = self.queue.pop() {
            if at - start > MAX_SIMULATED_MS {
                return None;
            }
            self.now = at;
            match event {
                Event::Heartbeat(i) if self.members[i].alive => self.heartbeat(i),
                Event::Release(i) if self.members[i].alive => self.release(i),
                _ => {
                    // A dead member's events; the coordinator's clock still runs.
                    self.groups.expire(self.now);
                    self.groups.take_entries();
                }
            }
            if self.settled() {
                return Some(self.now - start);
            }
        }
        None
    }
}

fn report(name: &str, sim: &Sim, took: Option<u64>, heartbeats_before: u64, cpu_before: Duration) {
    let heartbeats = sim.heartbeats - heartbeats_before;
    let cpu = sim.coordinator_time - cpu_before;
    match took {
        Some(ms) => println!(
            "  {name:<34} {:>8.2} s simulated  {heartbeats:>6} heartbeats  {:>8.2} ms coordinator CPU",
            ms as f64 / 1000.0,
            cpu.as_secs_f64() * 1000.0
        ),
        None => println!("  {name:<34} did not settle within {MAX_SIMULATED_MS} ms"),
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("groups bench failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    let args = Args::parse()?;
    println!(
        "groups bench: {} members, {} partitions over {TOPICS} topics, heartbeat every {} ms, session {SESSION_MS} ms, sticky assignor",
        args.members, args.partitions, args.interval_ms
    );
    println!("rebalance (join or kill -> Stable, every member reading exactly its target):");
    let mut sim = Sim::new(&args);
    for _ in 0..args.members {
        sim.add_member();
    }
    let took = sim.run_until_settled();
    report("all members join at once", &sim, took, 0, Duration::ZERO);

    let (hb, cpu) = (sim.heartbeats, sim.coordinator_time);
    sim.add_member();
    let took = sim.run_until_settled();
    report("one member joins a stable group", &sim, took, hb, cpu);

    let (hb, cpu) = (sim.heartbeats, sim.coordinator_time);
    sim.members[0].alive = false;
    let took = sim.run_until_settled();
    report("one member killed (session expiry)", &sim, took, hb, cpu);
    if let Some(ms) = took {
        println!(
            "  {:<34} {:>8.2} s simulated",
            "  of which after the expiry",
            (ms as f64 - f64::from(SESSION_MS)).max(0.0) / 1000.0
        );
    }

    println!("heartbeat cost (steady group, one core):");
    let live: Vec<usize> = (0..sim.members.len())
        .filter(|&i| sim.members[i].alive)
        .collect();
    let run_for = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < run_for {
        for &i in &live {
            // Same clock: steady heartbeats of a settled group.
            sim.heartbeat(i);
            n += 1;
        }
    }
    sim.queue.clear();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "  {n} heartbeats in {secs:.2} s: {:.0} heartbeats/s, {:.1} µs per heartbeat (state machine only, no network)",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );
    through_broker(&args)
}

/// Shape 3: steady heartbeats of `--members` members through a real broker.
fn through_broker(args: &Args) -> BenchResult<()> {
    let dir =
        std::path::Path::new(SCRATCH_DIR).join(format!("groups-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> BenchResult<()> {
        let broker = start_broker(&dir, &[])?;
        let mut conn = Connection::connect(&broker.addr)?;
        let per_topic = args.partitions / TOPICS;
        for t in 0..TOPICS {
            conn.create_topic(strata::protocol::TopicSpec {
                name: format!("topic-{t}"),
                partitions: per_topic,
                retention_bytes: None,
                retention_ms: None,
                segment_bytes: None,
            })?;
        }
        let topics: Vec<String> = (0..TOPICS).map(|t| format!("topic-{t}")).collect();
        let request = |id: &str, epoch: i32| GroupHeartbeatRequest {
            group: GROUP.into(),
            member_id: id.to_string(),
            member_epoch: epoch,
            session_timeout_ms: SESSION_MS,
            topics: topics.clone(),
            owned: Vec::new(),
            assignor: None,
        };
        // Join, then heartbeat until every member holds its share (owning nothing, so nothing
        // is ever revoked from them).
        let mut members: Vec<(String, i32)> = Vec::new();
        for _ in 0..args.members {
            let r = conn.group_heartbeat(request("", MEMBER_EPOCH_JOIN))?;
            members.push((r.member_id, r.member_epoch));
        }
        let start = Instant::now();
        let mut n: u64 = 0;
        let mut next = 0;
        let mut in_flight = std::collections::VecDeque::new();
        loop {
            while in_flight.len() < PIPELINE
                && start.elapsed() < Duration::from_secs_f64(args.seconds)
            {
                let (id, epoch) = &members[next];
                conn.send(RequestBody::GroupHeartbeat(request(id, *epoch)), &[])?;
                in_flight.push_back(next);
                next = (next + 1) % members.len();
            }
            let Some(i) = in_flight.pop_front() else {
                break;
            };
            if let (ResponseBody::GroupHeartbeat(r), _) = conn.receive_ok()? {
                members[i].1 = r.member_epoch;
            }
            n += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "through a broker (1 data shard + the coordinator core; client on the same machine):"
        );
        println!(
            "  {n} heartbeats in {secs:.2} s: {:.0} heartbeats/s, {PIPELINE} in flight on one connection",
            n as f64 / secs
        );
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
