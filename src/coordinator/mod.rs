//! Consumer groups: the pure group state machine, the assignors and the offset store; runs on
//! the coordinator core.
//!
//! - `assignor.rs`: range, roundrobin and sticky target assignments (pure).
//! - `group.rs`: one group's members and the incremental reconciliation (pure).
//! - `groups.rs`: every group and its committed offsets; requests and the clock in, responses
//!   and log entries out (pure).
//! - `records.rs`: the entries of the offsets log as record batches (pure).
//! - `store.rs`: the offsets log itself (`__strata_offsets`), replay and compaction (glommio).
//! - `error.rs`: `GroupError` and the limits it enforces.

pub mod assignor;
pub mod error;
pub mod group;
pub mod groups;
pub mod records;
pub mod store;

pub use assignor::{Assignment, Assignor, TopicPartition};
pub use error::{validate_group_id, GroupError};
pub use group::{Group, Member};
pub use groups::{ClientInfo, GroupConfig, Groups};
pub use records::{Entry, OffsetValue};
pub use store::{offsets_dir, OffsetStore, StoreError, DEFAULT_COMPACT_BYTES, OFFSETS_TOPIC};

#[cfg(test)]
mod sim;
