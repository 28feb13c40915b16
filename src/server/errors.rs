//! How storage failures look to clients.

use crate::protocol::ErrorCode;
use crate::storage::StorageError;

use super::msg::OpError;

/// The protocol error code and message for a storage failure.
pub fn storage_error(topic: &str, partition: u32, err: &StorageError) -> OpError {
    let code = match err {
        StorageError::InvalidBatch(_) => ErrorCode::CorruptBatch,
        StorageError::BatchTooLarge { .. } => ErrorCode::RecordTooLarge,
        StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        StorageError::NoSpace { .. } => ErrorCode::NoSpace,
        StorageError::Closed { .. } => ErrorCode::ShuttingDown,
        StorageError::Config(_) => ErrorCode::InvalidConfig,
        StorageError::Io { .. } | StorageError::Corrupt { .. } | StorageError::Discarded { .. } => {
            ErrorCode::StorageError
        }
    };
    OpError::new(code, format!("{topic}/{partition}: {err}"))
}
