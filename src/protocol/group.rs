//! Plain types of the consumer-group operations: the member heartbeat (KIP-848 style, the
//! coordinator assigns), offset commit and fetch, and group administration. `message.rs` maps
//! them to and from the schema's tables.

use super::error::ErrorCode;

/// `GroupHeartbeatRequest::member_epoch` of a member joining (it owns nothing yet).
pub const MEMBER_EPOCH_JOIN: i32 = 0;
/// `GroupHeartbeatRequest::member_epoch` of a member leaving cleanly (it released everything).
pub const MEMBER_EPOCH_LEAVE: i32 = -1;
/// `OffsetCommitRequest::member_epoch` of an administrative commit (offset reset): accepted only
/// while the group has no members.
pub const MEMBER_EPOCH_ADMIN: i32 = -1;

/// Some partitions of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<u32>,
}

impl TopicPartitions {
    /// One entry per topic from `(topic, partition)` pairs sorted by topic (a topic's pairs
    /// adjacent), partitions in the order given.
    pub fn group<'a>(pairs: impl IntoIterator<Item = (&'a str, u32)>) -> Vec<TopicPartitions> {
        let mut out: Vec<TopicPartitions> = Vec::new();
        for (topic, partition) in pairs {
            match out.last_mut() {
                Some(last) if last.topic == topic => last.partitions.push(partition),
                _ => out.push(TopicPartitions {
                    topic: topic.to_string(),
                    partitions: vec![partition],
                }),
            }
        }
        out
    }

    /// Every `(topic, partition)` pair of `list`.
    pub fn pairs(list: &[TopicPartitions]) -> impl Iterator<Item = (&str, u32)> {
        list.iter()
            .flat_map(|t| t.partitions.iter().map(move |&p| (t.topic.as_str(), p)))
    }
}

/// A member's heartbeat: who it is, what it subscribes to and what it owns right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHeartbeatRequest {
    pub group: String,
    /// Empty when joining: the coordinator gives the member its id.
    pub member_id: String,
    /// `MEMBER_EPOCH_JOIN`, `MEMBER_EPOCH_LEAVE`, or the epoch the coordinator last gave it.
    pub member_epoch: i32,
    /// The member is removed when no heartbeat arrives for this long (within broker bounds).
    pub session_timeout_ms: u32,
    /// Topics the member consumes.
    pub topics: Vec<String>,
    /// Partitions the member owns now: it may read them and has not released them.
    pub owned: Vec<TopicPartitions>,
    /// `range`, `roundrobin` or `sticky`; `None` keeps the group's. Only a member joining an
    /// empty group changes it.
    pub assignor: Option<String>,
}

/// The coordinator's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    /// Send the next heartbeat within this long.
    pub heartbeat_interval_ms: u32,
    /// What the member may own from now on. Anything else it owns, it must release (commit
    /// first) and report released with its next heartbeat, which it should send at once.
    pub assignment: Vec<TopicPartitions>,
}

/// One offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOffset {
    pub topic: String,
    pub partition: u32,
    /// The next offset the group should read.
    pub offset: i64,
    /// Free text kept with the offset.
    pub metadata: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    pub group: String,
    /// Empty for an administrative commit.
    pub member_id: String,
    /// The member's current epoch, or `MEMBER_EPOCH_ADMIN`.
    pub member_epoch: i32,
    pub offsets: Vec<CommitOffset>,
}

/// The outcome for one partition of a request that names several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResult {
    pub topic: String,
    pub partition: u32,
    pub error: ErrorCode,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchRequest {
    pub group: String,
    /// Empty asks for every topic with a committed offset.
    pub topics: Vec<String>,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub metadata: String,
    /// Broker wall-clock time of the commit, ms since the epoch.
    pub commit_time_ms: i64,
}

/// Where a group stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members; offsets may be reset.
    Empty,
    /// Some member has not yet reached its target assignment.
    Reconciling,
    /// Every member owns exactly its target assignment.
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::Reconciling => "Reconciling",
            GroupState::Stable => "Stable",
        }
    }
}

/// A line of ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group: String,
    pub state: GroupState,
    pub group_epoch: i32,
    pub members: u32,
}

/// One member, as DescribeGroup shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub client_id: String,
    /// The member's address as the broker saw it.
    pub host: String,
    pub member_epoch: i32,
    pub session_timeout_ms: u32,
    pub topics: Vec<String>,
    /// Partitions the member may own.
    pub assignment: Vec<TopicPartitions>,
    /// Partitions taken from the member that it has not yet reported released; it still owns
    /// them, and nobody else gets them until it does.
    pub revoking: Vec<TopicPartitions>,
}

/// A committed offset and how far behind the log end it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: u32,
    pub committed: i64,
    pub metadata: String,
    /// `None` when the partition's log is gone or did not answer.
    pub high_watermark: Option<i64>,
    /// `high_watermark - committed`, when the watermark is known.
    pub lag: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    pub state: GroupState,
    pub group_epoch: i32,
    /// The group epoch the current target assignment was computed at.
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<MemberDescription>,
    pub offsets: Vec<PartitionLag>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_group_by_topic_and_back() {
        let pairs = [("a", 0), ("a", 2), ("b", 1)];
        let grouped = TopicPartitions::group(pairs);
        assert_eq!(grouped.len(), 2);
        assert_eq!(grouped[0].partitions, vec![0, 2]);
        assert!(TopicPartitions::pairs(&grouped).eq(pairs));
        assert!(TopicPartitions::group([]).is_empty());
    }
}
