//! One consumer group: members, the target assignment and its incremental reconciliation, in the
//! model of Kafka's KIP-848. Pure: heartbeats and the clock go in, assignments come out.
//!
//! Reconciliation, per member heartbeat:
//! 1. Partitions the member was told to release (`revoking`) and no longer reports owning are
//!    free.
//! 2. Partitions it may own (`assigned`) but that left its target are taken away: into `revoking`
//!    if it reports owning them, freed at once if it does not (it never received them).
//! 3. Once nothing is being revoked, the member moves to the target's epoch and gets every
//!    partition of its target that no other member holds.
//!
//! So a partition is held (assigned or revoking) by at most one member at any time, and a member
//! keeps what stays in its target without a pause.

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::{GroupState, TopicPartitions};

use super::assignor::{Assignment, Assignor, TopicPartition};

/// One member of a group. Invariant: `assigned` and `revoking` are disjoint; both are held in
/// the group's `holder` index under this member's id.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub client_id: String,
    pub host: String,
    /// The epoch the coordinator last gave the member.
    pub epoch: i32,
    /// The epoch before `epoch`: a heartbeat whose response was lost still carries it.
    pub previous_epoch: i32,
    pub session_timeout_ms: u32,
    /// The member is removed when no heartbeat arrives by then.
    pub session_deadline_ms: u64,
    /// The member is removed if it still has not released `revoking` by then.
    pub revoke_deadline_ms: Option<u64>,
    pub topics: BTreeSet<String>,
    /// Partitions the member may own.
    pub assigned: BTreeSet<TopicPartition>,
    /// Partitions taken from the member that it still reports owning.
    pub revoking: BTreeSet<TopicPartition>,
}

impl Member {
    /// A member at `epoch` that holds nothing yet, heard from at `now_ms`.
    pub fn new(
        id: String,
        client: &super::groups::ClientInfo,
        epoch: i32,
        session_timeout_ms: u32,
        now_ms: u64,
        topics: BTreeSet<String>,
    ) -> Member {
        Member {
            id,
            client_id: client.client_id.clone(),
            host: client.host.clone(),
            epoch,
            previous_epoch: epoch,
            session_timeout_ms,
            session_deadline_ms: now_ms + u64::from(session_timeout_ms),
            revoke_deadline_ms: None,
            topics,
            assigned: BTreeSet::new(),
            revoking: BTreeSet::new(),
        }
    }
}

/// A group's members and assignment. Invariants: `holder[p] == m` exactly when `p` is in
/// `members[m].assigned ∪ members[m].revoking` (so no partition has two holders);
/// `assignment_epoch <= epoch`; `target` has an entry for exactly the members;
/// `subscriptions[t]` counts the members subscribed to `t` (no zero counts).
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub assignor: Assignor,
    /// Bumped whenever membership, subscriptions or subscribed partition counts change.
    pub epoch: i32,
    /// The group epoch `target` was computed at.
    pub assignment_epoch: i32,
    pub target: Assignment,
    pub members: BTreeMap<String, Member>,
    /// Partition counts of the subscribed topics when `target` was computed.
    partition_counts: BTreeMap<String, u32>,
    holder: BTreeMap<TopicPartition, String>,
    subscriptions: BTreeMap<String, usize>,
}

impl Group {
    pub fn new(name: &str, assignor: Assignor, epoch: i32) -> Group {
        Group {
            name: name.to_string(),
            assignor,
            epoch,
            assignment_epoch: epoch,
            target: Assignment::new(),
            members: BTreeMap::new(),
            partition_counts: BTreeMap::new(),
            holder: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            return GroupState::Empty;
        }
        let settled = self.assignment_epoch == self.epoch
            && self.members.values().all(|m| {
                m.revoking.is_empty()
                    && m.epoch == self.assignment_epoch
                    && self.target.get(&m.id) == Some(&m.assigned)
            });
        if settled {
            GroupState::Stable
        } else {
            GroupState::Reconciling
        }
    }

    /// The member holding `partition` (assigned or revoking), if any.
    pub fn holder(&self, partition: &TopicPartition) -> Option<&str> {
        self.holder.get(partition).map(String::as_str)
    }

    /// Adds a member that owns nothing, and bumps the group epoch.
    pub fn add_member(&mut self, member: Member) {
        debug_assert!(member.assigned.is_empty() && member.revoking.is_empty());
        self.subscribe(&member.topics, 1);
        let previous = self.members.insert(member.id.clone(), member);
        debug_assert!(previous.is_none(), "member added twice");
        self.epoch += 1;
    }

    /// Removes a member and frees everything it held; bumps the group epoch.
    pub fn remove_member(&mut self, id: &str) -> Option<Member> {
        let member = self.members.remove(id)?;
        self.subscribe(&member.topics, -1);
        for p in member.assigned.iter().chain(&member.revoking) {
            let was = self.holder.remove(p);
            debug_assert_eq!(was.as_deref(), Some(id));
        }
        self.target.remove(id);
        self.epoch += 1;
        Some(member)
    }

    /// Changes a member's subscription; bumps the group epoch if it changed.
    pub fn set_topics(&mut self, id: &str, topics: BTreeSet<String>) {
        let member = self.members.get_mut(id).expect("set_topics of a member");
        if member.topics == topics {
            return;
        }
        let old = std::mem::replace(&mut member.topics, topics.clone());
        self.subscribe(&old, -1);
        self.subscribe(&topics, 1);
        self.epoch += 1;
    }

    /// Adds `delta` subscribers to each of `topics`, dropping counts that reach zero.
    fn subscribe(&mut self, topics: &BTreeSet<String>, delta: isize) {
        for t in topics {
            let count = self.subscriptions.entry(t.clone()).or_default();
            *count = count.checked_add_signed(delta).expect("subscriber count");
            if *count == 0 {
                self.subscriptions.remove(t);
            }
        }
    }

    /// Recomputes the target assignment if the group epoch moved or a subscribed topic's
    /// partition count changed (`partitions` says how many a topic has, `None` if it does not
    /// exist).
    pub fn refresh_target(&mut self, partitions: &dyn Fn(&str) -> Option<u32>) {
        let unchanged = self
            .subscriptions
            .keys()
            .filter_map(|t| partitions(t).map(|n| (t, n)))
            .eq(self.partition_counts.iter().map(|(t, &n)| (t, n)));
        if !unchanged {
            let counts: BTreeMap<String, u32> = self
                .subscriptions
                .keys()
                .filter_map(|t| partitions(t).map(|n| (t.clone(), n)))
                .collect();
            self.partition_counts = counts;
            self.epoch += 1;
        }
        if self.assignment_epoch == self.epoch {
            return;
        }
        let subscriptions: BTreeMap<String, BTreeSet<String>> = self
            .members
            .values()
            .map(|m| (m.id.clone(), m.topics.clone()))
            .collect();
        self.target = self
            .assignor
            .assign(&subscriptions, &self.partition_counts, &self.target);
        self.assignment_epoch = self.epoch;
        debug_assert!(self.target.keys().eq(self.members.keys()));
    }

    /// Makes a member (re)admitted after a restart the holder of the partitions of `owned` that
    /// nobody holds; returns how many.
    pub fn adopt(&mut self, id: &str, owned: &BTreeSet<TopicPartition>) -> usize {
        let member = self.members.get_mut(id).expect("adopt by a member");
        let mut held = 0;
        for p in owned {
            if !self.holder.contains_key(p) {
                self.holder.insert(p.clone(), member.id.clone());
                member.assigned.insert(p.clone());
                held += 1;
            }
        }
        self.debug_check();
        held
    }

    /// Reconciles one member that reports owning `owned`, per the module doc; returns what it
    /// may own now. Gives nothing new unless `grant`. Call `refresh_target` first.
    pub fn reconcile(
        &mut self,
        id: &str,
        owned: &BTreeSet<TopicPartition>,
        now_ms: u64,
        rebalance_timeout_ms: u64,
        grant: bool,
    ) -> BTreeSet<TopicPartition> {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let member = self.members.get_mut(id).expect("reconcile of a member");
        // 1. Released partitions are free.
        let released: Vec<TopicPartition> = member
            .revoking
            .iter()
            .filter(|p| !owned.contains(*p))
            .cloned()
            .collect();
        for p in released {
            member.revoking.remove(&p);
            self.holder.remove(&p);
        }
        // 2. Take away what left the target.
        let taken: Vec<TopicPartition> = member
            .assigned
            .iter()
            .filter(|p| !target.contains(*p))
            .cloned()
            .collect();
        for p in taken {
            member.assigned.remove(&p);
            if owned.contains(&p) {
                member.revoking.insert(p);
            } else {
                self.holder.remove(&p);
            }
        }
        // 3. Advance once nothing is being revoked.
        if member.revoking.is_empty() {
            member.revoke_deadline_ms = None;
            if member.epoch != self.assignment_epoch {
                member.previous_epoch = member.epoch;
                member.epoch = self.assignment_epoch;
            }
            for p in target.into_iter().filter(|_| grant) {
                if !self.holder.contains_key(&p) {
                    self.holder.insert(p.clone(), member.id.clone());
                    member.assigned.insert(p);
                }
            }
        } else if member.revoke_deadline_ms.is_none() {
            member.revoke_deadline_ms = Some(now_ms + rebalance_timeout_ms);
        }
        self.debug_check();
        self.members[id].assigned.clone()
    }

    /// Asserts the holder index matches the members (debug builds only).
    pub fn debug_check(&self) {
        if cfg!(debug_assertions) {
            self.check()
                .unwrap_or_else(|e| panic!("group {}: {e}", self.name));
        }
    }

    /// Checks the invariants of the type; the simulation tests call it after every step.
    pub fn check(&self) -> Result<(), String> {
        let mut held = 0;
        for m in self.members.values() {
            if let Some(p) = m.assigned.intersection(&m.revoking).next() {
                return Err(format!("{} both assigned and revoking {p:?}", m.id));
            }
            for p in m.assigned.iter().chain(&m.revoking) {
                held += 1;
                if self.holder.get(p) != Some(&m.id) {
                    return Err(format!(
                        "{p:?} held by {} but indexed to {:?}",
                        m.id,
                        self.holder.get(p)
                    ));
                }
            }
        }
        if held != self.holder.len() {
            return Err(format!(
                "{} partitions indexed, {held} held by members",
                self.holder.len()
            ));
        }
        let mut subscriptions: BTreeMap<String, usize> = BTreeMap::new();
        for t in self.members.values().flat_map(|m| &m.topics) {
            *subscriptions.entry(t.clone()).or_default() += 1;
        }
        if subscriptions != self.subscriptions {
            return Err("subscription counts disagree with the members".into());
        }
        if self.assignment_epoch > self.epoch {
            return Err("assignment epoch ahead of the group epoch".into());
        }
        Ok(())
    }
}

/// Partitions by topic for the wire, topics and partitions in order.
pub fn by_topic<'a>(
    partitions: impl IntoIterator<Item = &'a TopicPartition>,
) -> Vec<TopicPartitions> {
    TopicPartitions::group(
        partitions
            .into_iter()
            .map(|p| (p.topic.as_str(), p.partition)),
    )
}

/// The set of partitions named by wire `TopicPartitions`.
pub fn from_wire(list: &[TopicPartitions]) -> BTreeSet<TopicPartition> {
    TopicPartitions::pairs(list)
        .map(|(topic, partition)| TopicPartition::new(topic, partition))
        .collect()
}
