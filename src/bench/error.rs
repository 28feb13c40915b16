//! What can stop a benchmark, each with a message a user can act on.

use crate::client::ClientError;

/// A benchmark failure. Invariant: the message names what was being done (the broker, the
/// file, the option), so one line on stderr is enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An option is out of range or options contradict each other.
    #[error("invalid option: {0}")]
    Invalid(String),

    /// Talking to the broker failed.
    #[error("{context}: {source}")]
    Client {
        context: String,
        source: ClientError,
    },

    /// The topic the benchmark needs is not there.
    #[error("topic {0:?} does not exist (add --create-topic to create it)")]
    NoTopic(String),

    /// A file or socket of the benchmark itself failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },

    /// A thread of the load generator could not start or died.
    #[error("load generator thread failed: {0}")]
    Thread(String),

    /// fio ran but failed, or printed something that is not its JSON report.
    #[error("fio: {0}")]
    Fio(String),

    /// The records consumed are not what the benchmark produced.
    #[error("bad record: {0}")]
    BadRecord(String),
}

impl BenchError {
    /// A client error with what the benchmark was doing.
    pub fn client(context: impl Into<String>, source: ClientError) -> BenchError {
        BenchError::Client {
            context: context.into(),
            source,
        }
    }

    /// An I/O error with what the benchmark was doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> BenchError {
        BenchError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, BenchError>;
