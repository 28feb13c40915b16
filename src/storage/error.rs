//! Errors of the storage engine.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::record::RecordError;

/// Everything that can go wrong in a partition log. Cloneable: one failed flush fails every
/// append that waited on it with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("no space left on the device holding {path} ({op}); the append was not written, free space and retry")]
    NoSpace { op: &'static str, path: PathBuf },
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] RecordError),
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge { size: usize, limit: usize },
    #[error("offset {offset} is out of range: the log holds offsets {earliest}..{latest}")]
    OffsetOutOfRange {
        offset: i64,
        earliest: i64,
        latest: i64,
    },
    #[error("append discarded: an earlier write of this log failed ({cause})")]
    Discarded { cause: String },
    #[error("log {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("invalid log configuration: {0}")]
    Config(String),
    #[error("log {path} is closed")]
    Closed { path: PathBuf },
}

impl StorageError {
    /// Wraps an I/O error, telling a full disk apart from every other failure.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, err: impl IoCause) -> Self {
        let err = err.into_io();
        let path = path.into();
        if err.raw_os_error() == Some(libc::ENOSPC) || err.raw_os_error() == Some(libc::EDQUOT) {
            StorageError::NoSpace { op, path }
        } else {
            StorageError::Io {
                op,
                path,
                source: Arc::new(err),
            }
        }
    }

    /// True when the failure is a full disk (the caller may retry after space returns).
    pub fn is_no_space(&self) -> bool {
        matches!(self, StorageError::NoSpace { .. })
    }
}

/// An error that carries an OS error. glommio's own conversion to `io::Error` drops the errno
/// (ENOSPC would become an opaque message), so its source is taken out here.
pub trait IoCause {
    fn into_io(self) -> io::Error;
}

impl IoCause for io::Error {
    fn into_io(self) -> io::Error {
        self
    }
}

impl IoCause for glommio::GlommioError<()> {
    fn into_io(self) -> io::Error {
        match self {
            glommio::GlommioError::IoError(e)
            | glommio::GlommioError::EnhancedIoError { source: e, .. } => e,
            other => other.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;
