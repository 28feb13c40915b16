//! Why the coordinator refused a group request. Each maps to one wire `ErrorCode`.

use crate::protocol::ErrorCode;

/// Longest group id, in characters (the topic-name limit: ids are file-system and CLI friendly).
pub const MAX_GROUP_ID_LEN: usize = 249;
/// Longest member id a client may choose, in bytes.
pub const MAX_MEMBER_ID_LEN: usize = 128;
/// Longest offset metadata kept with a commit, in bytes.
pub const MAX_OFFSET_METADATA_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("invalid group id {group:?}: {reason}")]
    InvalidGroup { group: String, reason: String },
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    #[error("member {member:?} is not a member of group {group:?} (its session may have expired); rejoin with epoch 0")]
    UnknownMember { group: String, member: String },
    #[error("member {member:?} of group {group:?} sent epoch {sent}, but its epoch is {current}; release every partition and rejoin with epoch 0")]
    FencedMemberEpoch {
        group: String,
        member: String,
        sent: i32,
        current: i32,
    },
    #[error("member {member:?} of group {group:?} committed with epoch {sent}, but its epoch is now {current}; retry with the current epoch")]
    StaleMemberEpoch {
        group: String,
        member: String,
        sent: i32,
        current: i32,
    },
    #[error("group {group:?} has {members} active member(s); {action} needs an empty group: stop its consumers first")]
    GroupNotEmpty {
        group: String,
        members: usize,
        action: &'static str,
    },
    #[error("session timeout {requested} ms is outside the broker's bounds {min}..={max} ms")]
    InvalidSessionTimeout { requested: u32, min: u32, max: u32 },
    #[error("unknown assignor {0:?}; the assignors are range, roundrobin and sticky")]
    UnknownAssignor(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl GroupError {
    /// The code a response carries for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            GroupError::InvalidGroup { .. } => ErrorCode::InvalidGroup,
            GroupError::UnknownGroup(_) => ErrorCode::UnknownGroup,
            GroupError::UnknownMember { .. } => ErrorCode::UnknownMember,
            GroupError::FencedMemberEpoch { .. } => ErrorCode::FencedMemberEpoch,
            GroupError::StaleMemberEpoch { .. } => ErrorCode::StaleMemberEpoch,
            GroupError::GroupNotEmpty { .. } => ErrorCode::GroupNotEmpty,
            GroupError::InvalidSessionTimeout { .. } => ErrorCode::InvalidSessionTimeout,
            GroupError::UnknownAssignor(_) => ErrorCode::InvalidConfig,
            GroupError::InvalidRequest(_) => ErrorCode::InvalidRequest,
        }
    }
}

/// Checks a group id: 1..=`MAX_GROUP_ID_LEN` characters of `[a-zA-Z0-9._-]`.
pub fn validate_group_id(group: &str) -> Result<(), GroupError> {
    let invalid = |reason: &str| GroupError::InvalidGroup {
        group: group.chars().take(MAX_GROUP_ID_LEN + 1).collect(),
        reason: reason.to_string(),
    };
    if group.is_empty() {
        return Err(invalid("it is empty"));
    }
    if group.chars().count() > MAX_GROUP_ID_LEN {
        return Err(invalid(&format!(
            "longer than {MAX_GROUP_ID_LEN} characters"
        )));
    }
    if let Some(c) = group
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(&format!(
            "{c:?} is not allowed; use letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}
