//! Every consumer group of the broker and their committed offsets: the coordinator's state
//! machine. Requests and the clock go in; responses and the log entries that make the change
//! durable come out (`take_entries`). No I/O: the coordinator core appends the entries to the
//! offsets log and answers only once they are durable.

use std::collections::{BTreeMap, BTreeSet};

use crate::protocol::{
    CommitOffset, CommittedOffset, ErrorCode, GroupDescription, GroupHeartbeatRequest,
    GroupHeartbeatResponse, GroupListing, MemberDescription, OffsetCommitRequest,
    OffsetFetchRequest, PartitionLag, PartitionResult, MEMBER_EPOCH_ADMIN, MEMBER_EPOCH_JOIN,
    MEMBER_EPOCH_LEAVE,
};

use super::assignor::{Assignor, TopicPartition};
use super::error::{validate_group_id, GroupError, MAX_MEMBER_ID_LEN, MAX_OFFSET_METADATA_BYTES};
use super::group::{by_topic, from_wire, Group, Member};
use super::records::{Entry, OffsetValue};

/// Shortest session timeout a member may ask for, by default.
pub const DEFAULT_MIN_SESSION_TIMEOUT_MS: u32 = 500;
/// Longest session timeout a member may ask for, by default.
pub const DEFAULT_MAX_SESSION_TIMEOUT_MS: u32 = 300_000;
/// How often members heartbeat, by default (never more than a third of their session timeout).
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u32 = 1_000;
/// How long a member may take to release revoked partitions before it is removed, by default.
pub const DEFAULT_REBALANCE_TIMEOUT_MS: u32 = 60_000;
/// Slack on top of two heartbeat intervals in the rejoin window after a restart: a member's
/// reconnect backoff and one failed attempt.
const REJOIN_SLACK_MS: u64 = 1_000;

/// The broker's settings for consumer groups. Invariant: `min_session_timeout_ms <=
/// max_session_timeout_ms`, all positive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    pub min_session_timeout_ms: u32,
    pub max_session_timeout_ms: u32,
    pub heartbeat_interval_ms: u32,
    pub rebalance_timeout_ms: u32,
}

impl GroupConfig {
    /// How long after a restart members may rejoin with what they hold before partitions are
    /// given out: every live member heartbeats within one interval.
    pub fn rejoin_window_ms(&self) -> u64 {
        2 * u64::from(self.heartbeat_interval_ms) + REJOIN_SLACK_MS
    }

    /// Checks the invariant; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_session_timeout_ms == 0 {
            return Err("group_min_session_timeout_ms must be at least 1".into());
        }
        if self.min_session_timeout_ms > self.max_session_timeout_ms {
            return Err(format!(
                "group_min_session_timeout_ms {} is above group_max_session_timeout_ms {}",
                self.min_session_timeout_ms, self.max_session_timeout_ms
            ));
        }
        if self.heartbeat_interval_ms == 0 || self.rebalance_timeout_ms == 0 {
            return Err(
                "group_heartbeat_interval_ms and group_rebalance_timeout_ms must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: DEFAULT_MIN_SESSION_TIMEOUT_MS,
            max_session_timeout_ms: DEFAULT_MAX_SESSION_TIMEOUT_MS,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            rebalance_timeout_ms: DEFAULT_REBALANCE_TIMEOUT_MS,
        }
    }
}

/// Who sent a request, as the connection saw it.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub client_id: String,
    pub host: String,
}

/// Partition counts of topics: `None` when the topic does not exist.
pub type TopicView<'a> = &'a dyn Fn(&str) -> Option<u32>;

/// A group's durable part and its live members. Invariant: every key of `offsets` was accepted
/// by `commit` (offset >= 0, metadata within limits).
#[derive(Debug, Clone)]
struct GroupEntry {
    group: Group,
    offsets: BTreeMap<TopicPartition, OffsetValue>,
}

/// All groups. Invariants: every group satisfies `Group::check`; `entries` holds, in order, the
/// log entries of changes not yet taken by the driver; `earliest_deadline` is at or before every
/// member's session and revoke deadline.
#[derive(Debug)]
pub struct Groups {
    config: GroupConfig,
    groups: BTreeMap<String, GroupEntry>,
    /// Makes member ids of this run distinct from those of earlier runs.
    boot_nonce: u64,
    next_member: u64,
    entries: Vec<Entry>,
    earliest_deadline: u64,
    /// Until then, in the groups loaded at start-up, a member unknown to this run may rejoin
    /// holding what it reports owned, and nobody is given a partition (`open_rejoin_window`).
    rejoin_until_ms: Option<u64>,
    rejoin_groups: BTreeSet<String>,
}

impl Groups {
    pub fn new(config: GroupConfig, boot_nonce: u64) -> Groups {
        assert_eq!(config.validate(), Ok(()), "invalid group config");
        Groups {
            config,
            groups: BTreeMap::new(),
            boot_nonce,
            next_member: 0,
            entries: Vec::new(),
            earliest_deadline: u64::MAX,
            rejoin_until_ms: None,
            rejoin_groups: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// After a restart the members are unknown, but they still read what they held. For
    /// `rejoin_window_ms` from `now_ms`, a member that heartbeats with an id and epoch this run
    /// does not know is taken back holding the partitions it reports owned (those nobody else
    /// holds), and no partition is given to anyone, so that a member that rejoins first is not
    /// given what another one still reads.
    /// Groups created later are not concerned: they had no members before.
    pub fn open_rejoin_window(&mut self, now_ms: u64) {
        self.rejoin_until_ms = Some(now_ms + self.config.rejoin_window_ms());
        self.rejoin_groups = self.groups.keys().cloned().collect();
    }

    fn in_rejoin_window(&self, group: &str, now_ms: u64) -> bool {
        self.rejoin_until_ms.is_some_and(|until| now_ms < until)
            && self.rejoin_groups.contains(group)
    }

    /// Replaces the durable state (groups, epochs, offsets) with `entries` read back from the
    /// log after a failed append, keeping the live members and what they hold. Groups with live
    /// members are written again (their last entries may be what failed).
    pub fn reload_durable(&mut self, entries: Vec<Entry>) {
        let mut fresh = Groups::new(self.config.clone(), self.boot_nonce);
        for entry in entries {
            fresh.replay(entry);
        }
        let mut live = std::mem::take(&mut self.groups);
        for (name, mut durable) in fresh.groups {
            if let Some(old) = live.remove(&name) {
                durable.group = old.group;
            }
            self.groups.insert(name, durable);
        }
        for (name, old) in live {
            if !old.group.is_empty() {
                self.groups.insert(
                    name,
                    GroupEntry {
                        group: old.group,
                        offsets: BTreeMap::new(),
                    },
                );
            }
        }
        self.entries.clear();
        for e in self.groups.values().filter(|e| !e.group.is_empty()) {
            self.entries.push(group_entry(&e.group));
        }
    }

    /// The log entries of every change since the last call, in order.
    pub fn take_entries(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.entries)
    }

    /// Applies an entry read back from the offsets log at start-up.
    pub fn replay(&mut self, entry: Entry) {
        match entry {
            Entry::Group {
                group,
                assignor,
                epoch,
            } => {
                let assignor = Assignor::parse(&assignor).unwrap_or_default();
                let e = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| GroupEntry {
                        group: Group::new(&group, assignor, epoch),
                        offsets: BTreeMap::new(),
                    });
                e.group.assignor = assignor;
                e.group.epoch = epoch;
                e.group.assignment_epoch = epoch;
            }
            Entry::GroupDeleted { group } => {
                self.groups.remove(&group);
            }
            Entry::Offset {
                group,
                partition,
                value,
            } => {
                if let Some(e) = self.groups.get_mut(&group) {
                    e.offsets.insert(partition, value);
                }
            }
            Entry::OffsetDeleted { group, partition } => {
                if let Some(e) = self.groups.get_mut(&group) {
                    e.offsets.remove(&partition);
                }
            }
        }
    }

    /// The entries that recreate the durable state from nothing: what compaction writes.
    pub fn snapshot(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for e in self.groups.values() {
            out.push(group_entry(&e.group));
            for (partition, value) in &e.offsets {
                out.push(Entry::Offset {
                    group: e.group.name.clone(),
                    partition: partition.clone(),
                    value: value.clone(),
                });
            }
        }
        out
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name).map(|e| &e.group)
    }

    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// Removes members whose session or rebalance deadline passed. Returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        if now_ms < self.earliest_deadline {
            return 0;
        }
        let mut removed = 0;
        for e in self.groups.values_mut() {
            let dead: Vec<String> = e
                .group
                .members
                .values()
                .filter(|m| {
                    m.session_deadline_ms <= now_ms
                        || m.revoke_deadline_ms.is_some_and(|d| d <= now_ms)
                })
                .map(|m| m.id.clone())
                .collect();
            if dead.is_empty() {
                continue;
            }
            for id in &dead {
                tracing::info!(group = %e.group.name, member = %id, "member removed: session or rebalance timeout");
                e.group.remove_member(id);
            }
            removed += dead.len();
            self.entries.push(group_entry(&e.group));
        }
        self.earliest_deadline = self.scan_deadlines().unwrap_or(u64::MAX);
        removed
    }

    /// When `expire` may next have work (never later than the earliest member deadline).
    pub fn next_deadline(&self) -> Option<u64> {
        (self.earliest_deadline != u64::MAX).then_some(self.earliest_deadline)
    }

    fn scan_deadlines(&self) -> Option<u64> {
        self.groups
            .values()
            .flat_map(|e| e.group.members.values())
            .flat_map(|m| std::iter::once(m.session_deadline_ms).chain(m.revoke_deadline_ms))
            .min()
    }

    /// A member's heartbeat: joins, leaves, or reconciles it (see `group.rs`).
    pub fn heartbeat(
        &mut self,
        req: GroupHeartbeatRequest,
        client: &ClientInfo,
        now_ms: u64,
        topics: TopicView<'_>,
    ) -> Result<GroupHeartbeatResponse, GroupError> {
        validate_group_id(&req.group)?;
        if req.member_id.len() > MAX_MEMBER_ID_LEN {
            return Err(GroupError::InvalidRequest(format!(
                "member id of {} bytes; the limit is {MAX_MEMBER_ID_LEN}",
                req.member_id.len()
            )));
        }
        if req.member_epoch == MEMBER_EPOCH_LEAVE {
            return Ok(self.leave(&req.group, &req.member_id));
        }
        let cfg = &self.config;
        if !(cfg.min_session_timeout_ms..=cfg.max_session_timeout_ms)
            .contains(&req.session_timeout_ms)
        {
            return Err(GroupError::InvalidSessionTimeout {
                requested: req.session_timeout_ms,
                min: cfg.min_session_timeout_ms,
                max: cfg.max_session_timeout_ms,
            });
        }
        let assignor = match &req.assignor {
            Some(name) => Some(
                Assignor::parse(name).ok_or_else(|| GroupError::UnknownAssignor(name.clone()))?,
            ),
            None => None,
        };
        if req.member_epoch < MEMBER_EPOCH_LEAVE {
            return Err(GroupError::InvalidRequest(format!(
                "member epoch {} is negative",
                req.member_epoch
            )));
        }
        let interval = cfg
            .heartbeat_interval_ms
            .min(req.session_timeout_ms / 3)
            .max(1);
        let rebalance_timeout = u64::from(cfg.rebalance_timeout_ms);

        let is_join = req.member_epoch == MEMBER_EPOCH_JOIN;
        let in_window = self.in_rejoin_window(&req.group, now_ms);
        let rejoin = !is_join
            && in_window
            && !req.member_id.is_empty()
            && self
                .groups
                .get(&req.group)
                .is_none_or(|e| !e.group.members.contains_key(&req.member_id));
        if !is_join && !rejoin && !self.groups.contains_key(&req.group) {
            return Err(GroupError::UnknownMember {
                group: req.group.clone(),
                member: req.member_id.clone(),
            });
        }
        let created = !self.groups.contains_key(&req.group);
        let entry = self
            .groups
            .entry(req.group.clone())
            .or_insert_with(|| GroupEntry {
                group: Group::new(&req.group, assignor.unwrap_or_default(), 0),
                offsets: BTreeMap::new(),
            });
        let group = &mut entry.group;
        let epoch_before = group.epoch;
        let topics_wanted: BTreeSet<String> = req.topics.iter().cloned().collect();
        let member_id = if rejoin {
            // A member of before the restart: back with what it holds, at its epoch.
            group.add_member(Member::new(
                req.member_id.clone(),
                client,
                req.member_epoch,
                req.session_timeout_ms,
                now_ms,
                topics_wanted,
            ));
            let held = group.adopt(&req.member_id, &from_wire(&req.owned));
            tracing::info!(group = %req.group, member = %req.member_id, partitions = held, "member rejoined after a restart");
            req.member_id.clone()
        } else if is_join {
            if group.is_empty() {
                if let Some(a) = assignor {
                    group.assignor = a;
                }
            }
            let id = if req.member_id.is_empty() {
                loop {
                    self.next_member += 1;
                    let id = format!("{:x}-{}", self.boot_nonce, self.next_member);
                    if !group.members.contains_key(&id) {
                        break id;
                    }
                }
            } else {
                // A member rejoining under its own id owns nothing any more.
                group.remove_member(&req.member_id);
                req.member_id.clone()
            };
            group.add_member(Member::new(
                id.clone(),
                client,
                MEMBER_EPOCH_JOIN,
                req.session_timeout_ms,
                now_ms,
                topics_wanted,
            ));
            id
        } else {
            let Some(member) = group.members.get_mut(&req.member_id) else {
                return Err(GroupError::UnknownMember {
                    group: req.group.clone(),
                    member: req.member_id.clone(),
                });
            };
            if req.member_epoch != member.epoch && req.member_epoch != member.previous_epoch {
                let current = member.epoch;
                group.remove_member(&req.member_id);
                self.entries.push(group_entry(group));
                return Err(GroupError::FencedMemberEpoch {
                    group: req.group.clone(),
                    member: req.member_id.clone(),
                    sent: req.member_epoch,
                    current,
                });
            }
            member.session_timeout_ms = req.session_timeout_ms;
            member.session_deadline_ms = now_ms + u64::from(req.session_timeout_ms);
            member.client_id.clone_from(&client.client_id);
            member.host.clone_from(&client.host);
            group.set_topics(&req.member_id, topics_wanted);
            req.member_id.clone()
        };
        group.refresh_target(topics);
        // A joining member owns nothing, whatever it says.
        let owned = if is_join {
            BTreeSet::new()
        } else {
            from_wire(&req.owned)
        };
        let grant = !in_window;
        let assignment = group.reconcile(&member_id, &owned, now_ms, rebalance_timeout, grant);
        let member = &group.members[&member_id];
        let member_epoch = member.epoch;
        self.earliest_deadline = self
            .earliest_deadline
            .min(member.session_deadline_ms)
            .min(member.revoke_deadline_ms.unwrap_or(u64::MAX));
        if created || group.epoch != epoch_before {
            self.entries.push(group_entry(group));
        }
        Ok(GroupHeartbeatResponse {
            member_id,
            member_epoch,
            heartbeat_interval_ms: interval,
            assignment: by_topic(&assignment),
        })
    }

    /// A clean leave: the member released everything.
    fn leave(&mut self, group: &str, member_id: &str) -> GroupHeartbeatResponse {
        if let Some(e) = self.groups.get_mut(group) {
            if e.group.remove_member(member_id).is_some() {
                tracing::info!(group, member = member_id, "member left");
                self.entries.push(group_entry(&e.group));
            }
        }
        GroupHeartbeatResponse {
            member_id: member_id.to_string(),
            member_epoch: MEMBER_EPOCH_LEAVE,
            heartbeat_interval_ms: 0,
            assignment: Vec::new(),
        }
    }

    /// Commits offsets for a member (which must hold each partition), or administratively for
    /// an empty group. Errors that concern one partition come back in its result.
    pub fn commit(
        &mut self,
        req: OffsetCommitRequest,
        now_ms: i64,
        topics: TopicView<'_>,
    ) -> Result<Vec<PartitionResult>, GroupError> {
        validate_group_id(&req.group)?;
        let Some(entry) = self.groups.get_mut(&req.group) else {
            return Err(GroupError::UnknownGroup(req.group));
        };
        let group = &entry.group;
        let member = if req.member_id.is_empty() && req.member_epoch == MEMBER_EPOCH_ADMIN {
            if !group.is_empty() {
                return Err(GroupError::GroupNotEmpty {
                    group: req.group,
                    members: group.members.len(),
                    action: "an offset reset",
                });
            }
            None
        } else {
            let Some(member) = group.members.get(&req.member_id) else {
                return Err(GroupError::UnknownMember {
                    group: req.group,
                    member: req.member_id,
                });
            };
            if req.member_epoch < member.epoch {
                return Err(GroupError::StaleMemberEpoch {
                    group: req.group,
                    member: req.member_id,
                    sent: req.member_epoch,
                    current: member.epoch,
                });
            }
            if req.member_epoch > member.epoch {
                return Err(GroupError::FencedMemberEpoch {
                    group: req.group,
                    member: req.member_id,
                    sent: req.member_epoch,
                    current: member.epoch,
                });
            }
            Some(member)
        };
        let mut results = Vec::with_capacity(req.offsets.len());
        for CommitOffset {
            topic,
            partition,
            offset,
            metadata,
        } in req.offsets
        {
            let tp = TopicPartition { topic, partition };
            let refused = match topics(&tp.topic) {
                None => Some((
                    ErrorCode::UnknownTopic,
                    format!("unknown topic {:?}", tp.topic),
                )),
                Some(n) if tp.partition >= n => Some((
                    ErrorCode::UnknownPartition,
                    format!(
                        "topic {:?} has {n} partitions, not {}",
                        tp.topic, tp.partition
                    ),
                )),
                Some(_) if offset < 0 => Some((
                    ErrorCode::InvalidRequest,
                    format!("offset {offset} is negative"),
                )),
                Some(_) if metadata.len() > MAX_OFFSET_METADATA_BYTES => Some((
                    ErrorCode::InvalidRequest,
                    format!(
                        "metadata of {} bytes; the limit is {MAX_OFFSET_METADATA_BYTES}",
                        metadata.len()
                    ),
                )),
                Some(_) => match member {
                    Some(m) if group.holder(&tp) != Some(m.id.as_str()) => Some((
                        ErrorCode::NotAssigned,
                        format!(
                            "member {:?} does not own {}/{}",
                            m.id, tp.topic, tp.partition
                        ),
                    )),
                    _ => None,
                },
            };
            let (error, message) = match refused {
                Some((code, msg)) => (code, Some(msg)),
                None => {
                    let value = OffsetValue {
                        offset,
                        metadata,
                        commit_time_ms: now_ms,
                    };
                    self.entries.push(Entry::Offset {
                        group: req.group.clone(),
                        partition: tp.clone(),
                        value: value.clone(),
                    });
                    entry.offsets.insert(tp.clone(), value);
                    (ErrorCode::None, None)
                }
            };
            results.push(PartitionResult {
                topic: tp.topic,
                partition: tp.partition,
                error,
                message,
            });
        }
        Ok(results)
    }

    /// Committed offsets of a group, of `topics` (every topic when empty).
    pub fn fetch_offsets(
        &self,
        req: &OffsetFetchRequest,
    ) -> Result<Vec<CommittedOffset>, GroupError> {
        validate_group_id(&req.group)?;
        let entry = self
            .groups
            .get(&req.group)
            .ok_or_else(|| GroupError::UnknownGroup(req.group.clone()))?;
        Ok(entry
            .offsets
            .iter()
            .filter(|(tp, _)| req.topics.is_empty() || req.topics.contains(&tp.topic))
            .map(|(tp, v)| CommittedOffset {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: v.offset,
                metadata: v.metadata.clone(),
                commit_time_ms: v.commit_time_ms,
            })
            .collect())
    }

    pub fn list(&self) -> Vec<GroupListing> {
        self.groups
            .values()
            .map(|e| GroupListing {
                group: e.group.name.clone(),
                state: e.group.state(),
                group_epoch: e.group.epoch,
                members: e.group.members.len() as u32,
            })
            .collect()
    }

    /// A group's state, members and offsets; `high_watermark` gives a partition's log end when
    /// known (for the lag).
    pub fn describe(
        &self,
        name: &str,
        high_watermark: &dyn Fn(&TopicPartition) -> Option<i64>,
    ) -> Result<GroupDescription, GroupError> {
        validate_group_id(name)?;
        let e = self
            .groups
            .get(name)
            .ok_or_else(|| GroupError::UnknownGroup(name.to_string()))?;
        let g = &e.group;
        Ok(GroupDescription {
            group: g.name.clone(),
            state: g.state(),
            group_epoch: g.epoch,
            assignment_epoch: g.assignment_epoch,
            assignor: g.assignor.name().to_string(),
            members: g
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    client_id: m.client_id.clone(),
                    host: m.host.clone(),
                    member_epoch: m.epoch,
                    session_timeout_ms: m.session_timeout_ms,
                    topics: m.topics.iter().cloned().collect(),
                    assignment: by_topic(&m.assigned),
                    revoking: by_topic(&m.revoking),
                })
                .collect(),
            offsets: e
                .offsets
                .iter()
                .map(|(tp, v)| {
                    let hw = high_watermark(tp);
                    PartitionLag {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        committed: v.offset,
                        metadata: v.metadata.clone(),
                        high_watermark: hw,
                        lag: hw.map(|hw| (hw - v.offset).max(0)),
                    }
                })
                .collect(),
        })
    }

    /// Deletes an empty group and its offsets.
    pub fn delete(&mut self, name: &str) -> Result<(), GroupError> {
        validate_group_id(name)?;
        let e = self
            .groups
            .get(name)
            .ok_or_else(|| GroupError::UnknownGroup(name.to_string()))?;
        if !e.group.is_empty() {
            return Err(GroupError::GroupNotEmpty {
                group: name.to_string(),
                members: e.group.members.len(),
                action: "deleting it",
            });
        }
        let e = self.groups.remove(name).expect("checked above");
        for partition in e.offsets.into_keys() {
            self.entries.push(Entry::OffsetDeleted {
                group: name.to_string(),
                partition,
            });
        }
        self.entries.push(Entry::GroupDeleted {
            group: name.to_string(),
        });
        tracing::info!(group = name, "group deleted");
        Ok(())
    }

    /// Forgets every group's committed offsets of topics for which `gone` is true (deleted, or
    /// deleted and created anew): a new topic of the same name starts with no offsets.
    pub fn forget_topics(&mut self, gone: &dyn Fn(&str) -> bool) -> usize {
        let mut forgotten = 0;
        for e in self.groups.values_mut() {
            let doomed: Vec<TopicPartition> = e
                .offsets
                .keys()
                .filter(|tp| gone(&tp.topic))
                .cloned()
                .collect();
            for partition in doomed {
                e.offsets.remove(&partition);
                self.entries.push(Entry::OffsetDeleted {
                    group: e.group.name.clone(),
                    partition,
                });
                forgotten += 1;
            }
        }
        forgotten
    }

    /// Checks every group's invariants (tests call it after each step).
    pub fn check(&self) -> Result<(), String> {
        for e in self.groups.values() {
            e.group.check()?;
        }
        Ok(())
    }
}

fn group_entry(group: &Group) -> Entry {
    Entry::Group {
        group: group.name.clone(),
        assignor: group.assignor.name().to_string(),
        epoch: group.epoch,
    }
}
