//! Seeded simulation of the group state machine (tests only), in the manner of TigerBeetle's
//! simulator: simulated members that follow the client's protocol (`client/group.rs`) join,
//! heartbeat, lose responses, release and take partitions, commit, crash, leave and time out, in
//! random order; the invariants are checked after every step, and every schedule must settle
//! once the chaos stops.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::protocol::{
    CommitOffset, ErrorCode, GroupHeartbeatRequest, GroupState, OffsetCommitRequest,
    TopicPartitions, MEMBER_EPOCH_JOIN, MEMBER_EPOCH_LEAVE,
};

use super::group::from_wire;
use super::groups::{ClientInfo, GroupConfig, Groups};
use super::TopicPartition;

const GROUP: &str = "g";
const SESSION_MS: u32 = 3_000;
const INTERVAL_MS: u64 = 1_000;

/// A simulated member process. Invariant (while `member`): `owned` is what it reads.
#[derive(Debug, Clone)]
struct Client {
    id: String,
    epoch: i32,
    topics: Vec<String>,
    desired: BTreeSet<TopicPartition>,
    owned: BTreeSet<TopicPartition>,
    /// The coordinator counts it as a member (it joined and was not dropped, as far as it knows).
    member: bool,
    last_heartbeat_ms: u64,
}

impl Client {
    fn report(&self) -> Vec<TopicPartitions> {
        let all: BTreeSet<&TopicPartition> = self.owned.iter().chain(&self.desired).collect();
        super::group::by_topic(all)
    }
}

struct Sim {
    rng: StdRng,
    groups: Groups,
    topics: BTreeMap<String, u32>,
    clients: Vec<Client>,
    now: u64,
    /// Highest offset committed per partition, to check commits never go backwards.
    committed: BTreeMap<TopicPartition, i64>,
    restarts: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let config = GroupConfig {
            min_session_timeout_ms: 100,
            max_session_timeout_ms: 60_000,
            heartbeat_interval_ms: INTERVAL_MS as u32,
            rebalance_timeout_ms: 20_000,
        };
        let mut topics = BTreeMap::new();
        topics.insert("a".to_string(), 6);
        topics.insert("b".to_string(), 3);
        Sim {
            rng: StdRng::seed_from_u64(seed),
            groups: Groups::new(config, seed),
            topics,
            clients: Vec::new(),
            now: 0,
            committed: BTreeMap::new(),
            restarts: 0,
        }
    }

    fn heartbeat(&mut self, i: usize, lose_response: bool) {
        let c = &self.clients[i];
        let req = GroupHeartbeatRequest {
            group: GROUP.into(),
            member_id: c.id.clone(),
            member_epoch: if c.member { c.epoch } else { MEMBER_EPOCH_JOIN },
            session_timeout_ms: SESSION_MS,
            topics: c.topics.clone(),
            owned: c.report(),
            assignor: None,
        };
        let topics = self.topics.clone();
        let view = move |t: &str| topics.get(t).copied();
        let client = ClientInfo::default();
        let res = self.groups.heartbeat(req, &client, self.now, &view);
        self.groups.take_entries();
        let c = &mut self.clients[i];
        c.last_heartbeat_ms = self.now;
        if lose_response {
            return;
        }
        match res {
            Ok(r) => {
                c.id = r.member_id;
                c.epoch = r.member_epoch;
                c.member = true;
                c.desired = from_wire(&r.assignment);
            }
            Err(e) => {
                assert!(
                    matches!(
                        e.code(),
                        ErrorCode::UnknownMember | ErrorCode::FencedMemberEpoch
                    ),
                    "unexpected heartbeat error {e}"
                );
                // Dropped: release everything at once, then rejoin.
                c.member = false;
                c.owned.clear();
                c.desired.clear();
                c.epoch = MEMBER_EPOCH_JOIN;
            }
        }
    }

    /// The coordinator restarts: only the durable state comes back (replayed from what the log
    /// would hold); members rejoin holding what they read.
    fn restart(&mut self) {
        let durable = self.groups.snapshot();
        self.restarts += 1;
        let mut groups = Groups::new(self.groups.config().clone(), 1000 + self.restarts);
        for entry in durable {
            groups.replay(entry);
        }
        groups.open_rejoin_window(self.now);
        self.groups = groups;
    }

    /// The application thread's step of `GroupConsumer::follow_assignment`.
    fn app_step(&mut self, i: usize) {
        let revoke: Vec<TopicPartition> = {
            let c = &self.clients[i];
            c.owned.difference(&c.desired).cloned().collect()
        };
        if !revoke.is_empty() {
            self.commit(i, &revoke);
            let c = &mut self.clients[i];
            for p in &revoke {
                c.owned.remove(p);
            }
        }
        let c = &mut self.clients[i];
        let add: Vec<TopicPartition> = c.desired.difference(&c.owned).cloned().collect();
        c.owned.extend(add);
    }

    fn commit(&mut self, i: usize, partitions: &[TopicPartition]) {
        let c = &self.clients[i];
        if !c.member || partitions.is_empty() {
            return;
        }
        // Positions only grow: use the clock as the consumed offset.
        let offset = self.now as i64;
        let req = OffsetCommitRequest {
            group: GROUP.into(),
            member_id: c.id.clone(),
            member_epoch: c.epoch,
            offsets: partitions
                .iter()
                .map(|p| CommitOffset {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    offset,
                    metadata: String::new(),
                })
                .collect(),
        };
        let topics = self.topics.clone();
        let view = move |t: &str| topics.get(t).copied();
        if let Ok(results) = self.groups.commit(req, 0, &view) {
            self.groups.take_entries();
            for r in results.into_iter().filter(|r| r.error == ErrorCode::None) {
                let tp = TopicPartition {
                    topic: r.topic,
                    partition: r.partition,
                };
                // A commit is accepted only from the partition's holder.
                assert!(c.owned.contains(&tp) || c.desired.contains(&tp));
                let before = self.committed.insert(tp, offset);
                assert!(
                    before.is_none_or(|b| b <= offset),
                    "a commit went backwards"
                );
            }
        }
    }

    fn leave(&mut self, i: usize) {
        let all: Vec<TopicPartition> = self.clients[i].owned.iter().cloned().collect();
        self.commit(i, &all);
        let c = self.clients.remove(i);
        if c.member {
            let req = GroupHeartbeatRequest {
                group: GROUP.into(),
                member_id: c.id,
                member_epoch: MEMBER_EPOCH_LEAVE,
                session_timeout_ms: SESSION_MS,
                topics: vec![],
                owned: vec![],
                assignor: None,
            };
            let view = |_: &str| None;
            self.groups
                .heartbeat(req, &ClientInfo::default(), self.now, &view)
                .unwrap();
            self.groups.take_entries();
        }
    }

    fn join(&mut self) {
        let topics = match self.rng.gen_range(0..4) {
            0 => vec!["a".to_string()],
            1 => vec!["b".to_string()],
            2 => vec!["a".to_string(), "b".to_string()],
            _ => vec!["a".to_string(), "c".to_string()],
        };
        self.clients.push(Client {
            id: String::new(),
            epoch: MEMBER_EPOCH_JOIN,
            topics,
            desired: BTreeSet::new(),
            owned: BTreeSet::new(),
            member: false,
            last_heartbeat_ms: self.now,
        });
        let i = self.clients.len() - 1;
        self.heartbeat(i, false);
    }

    /// Advances the clock; members that would miss their session heartbeat first. A crashed
    /// member is one removed from `clients` without leaving: the coordinator times it out.
    fn advance(&mut self, ms: u64) {
        self.now += ms;
        for i in 0..self.clients.len() {
            if self.now - self.clients[i].last_heartbeat_ms >= INTERVAL_MS {
                self.heartbeat(i, false);
            }
        }
        self.groups.expire(self.now);
        self.groups.take_entries();
    }

    fn step(&mut self) {
        let n = self.clients.len();
        match self.rng.gen_range(0..100) {
            0..=7 => self.join(),
            8..=10 if n > 0 => {
                let i = self.rng.gen_range(0..n);
                self.leave(i);
            }
            11..=13 if n > 0 => {
                // Crash: it stops reading at once; the coordinator finds out by the timeout.
                let i = self.rng.gen_range(0..n);
                self.clients.remove(i);
            }
            14..=45 if n > 0 => {
                let i = self.rng.gen_range(0..n);
                let lose = self.rng.gen_bool(0.05);
                self.heartbeat(i, lose);
            }
            46..=80 if n > 0 => {
                let i = self.rng.gen_range(0..n);
                self.app_step(i);
            }
            81..=85 if n > 0 => {
                let i = self.rng.gen_range(0..n);
                let owned: Vec<TopicPartition> = self.clients[i].owned.iter().cloned().collect();
                self.commit(i, &owned);
            }
            87 => self.restart(),
            86 => {
                // Topic "c" appears (or grows): subscribers pick it up.
                let n = self.topics.get("c").copied().unwrap_or(0) + 2;
                self.topics.insert("c".into(), n);
            }
            _ => {
                let ms = self.rng.gen_range(1..400);
                self.advance(ms);
            }
        }
        self.check();
    }

    fn check(&self) {
        self.groups.check().unwrap();
        // What members really read never overlaps.
        let mut readers: BTreeMap<&TopicPartition, &str> = BTreeMap::new();
        for c in self.clients.iter().filter(|c| c.member) {
            for p in &c.owned {
                if let Some(other) = readers.insert(p, &c.id) {
                    panic!("{p:?} read by {other} and {} at {} ms", c.id, self.now);
                }
            }
        }
        // And the coordinator counts each as held by its reader.
        if let Some(g) = self.groups.group(GROUP) {
            for (p, reader) in readers {
                if g.members.contains_key(reader) {
                    assert_eq!(g.holder(p), Some(reader), "{p:?} read but not held");
                }
            }
        }
    }

    /// No more chaos: everyone heartbeats and follows until the group is stable.
    fn settle(&mut self) {
        for _ in 0..50 {
            for i in 0..self.clients.len() {
                self.heartbeat(i, false);
                self.app_step(i);
                self.check();
            }
            self.advance(INTERVAL_MS);
            self.check();
            // Settled: stable, and crashed members (or joins whose answer was lost) timed out.
            let stable = self.groups.group(GROUP).is_none_or(|g| {
                g.members.len() == self.clients.iter().filter(|c| c.member).count()
                    && (g.members.is_empty() || g.state() == GroupState::Stable)
            });
            if stable && self.clients.iter().all(|c| c.owned == c.desired) {
                return self.check_settled();
            }
        }
        panic!(
            "the group did not settle: {:?}",
            self.groups.group(GROUP).map(|g| g.state())
        );
    }

    fn check_settled(&self) {
        let Some(g) = self.groups.group(GROUP) else {
            return;
        };
        // Every partition of a subscribed, existing topic is read by exactly one member.
        let subscribed: BTreeSet<&String> = self.clients.iter().flat_map(|c| &c.topics).collect();
        let mut read: BTreeMap<TopicPartition, usize> = BTreeMap::new();
        for c in &self.clients {
            for p in &c.owned {
                *read.entry(p.clone()).or_default() += 1;
            }
        }
        for (topic, &n) in &self.topics {
            if !subscribed.contains(topic) {
                continue;
            }
            for partition in 0..n {
                let tp = TopicPartition {
                    topic: topic.clone(),
                    partition,
                };
                assert_eq!(read.get(&tp), Some(&1), "{tp:?} once settled");
            }
        }
        assert_eq!(g.members.len(), self.clients.len());
    }
}

#[test]
fn thousands_of_seeded_schedules_keep_the_invariants_and_settle() {
    for seed in 0..1_000 {
        let mut sim = Sim::new(seed);
        for _ in 0..300 {
            sim.step();
        }
        sim.settle();
    }
}

#[test]
fn members_rejoin_after_a_restart_without_a_partition_read_twice() {
    for seed in 0..200 {
        let mut sim = Sim::new(seed);
        for _ in 0..4 {
            sim.join();
        }
        sim.settle();
        sim.restart();
        // One member at a time comes back; the others still read what they held.
        for i in 0..sim.clients.len() {
            sim.heartbeat(i, false);
            sim.app_step(i);
            sim.check();
        }
        sim.settle();
    }
}

#[test]
fn a_crashed_member_is_timed_out_and_its_partitions_move() {
    let mut sim = Sim::new(7);
    for _ in 0..3 {
        sim.join();
    }
    sim.settle();
    let gone = sim.clients.remove(0).id;
    sim.advance(u64::from(SESSION_MS) + 1);
    assert!(!sim.groups.group(GROUP).unwrap().members.contains_key(&gone));
    sim.settle();
}
