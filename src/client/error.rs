//! What can go wrong talking to a broker, each with a message a user can act on.

use std::net::SocketAddr;

use crate::protocol::{ApiKey, ErrorCode, FrameError, ProtocolError};

/// A client-side failure. Invariant: every variant names the broker address or the topic it is
/// about, so one line on stderr is enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the address (or it is unreachable).
    #[error("cannot connect to broker at {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },

    /// The connection broke while a request was in flight.
    #[error("connection to broker {addr} failed: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },

    /// The broker closed the connection.
    #[error("broker {addr} closed the connection")]
    Closed { addr: SocketAddr },

    /// The broker sent bytes that are not a valid frame or header.
    #[error("broker {addr} sent a malformed response: {reason}")]
    Malformed { addr: SocketAddr, reason: String },

    /// The broker answered with an error code.
    #[error("{code}: {message}")]
    Broker { code: ErrorCode, message: String },

    /// The response does not answer the request it came back for.
    #[error(
        "broker {addr} answered {got:?} to a {want:?} request (correlation id {correlation_id})"
    )]
    Mismatch {
        addr: SocketAddr,
        want: ApiKey,
        got: Option<ApiKey>,
        correlation_id: u32,
    },

    /// The request cannot be sent as asked (too large, invalid field).
    #[error("invalid request: {0}")]
    Invalid(String),

    /// The topic or partition is not on the broker.
    #[error("unknown topic {topic:?}{}", partition.map(|p| format!(" partition {p}")).unwrap_or_default())]
    UnknownTopic {
        topic: String,
        partition: Option<u32>,
    },
}

/// A copy for each of several waiters (one failure fails every record of a batch); I/O errors
/// keep their kind and text.
impl Clone for ClientError {
    fn clone(&self) -> Self {
        let io = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
        match self {
            ClientError::Connect { addr, source } => ClientError::Connect {
                addr: addr.clone(),
                source: io(source),
            },
            ClientError::Io { addr, source } => ClientError::Io {
                addr: *addr,
                source: io(source),
            },
            ClientError::Closed { addr } => ClientError::Closed { addr: *addr },
            ClientError::Malformed { addr, reason } => ClientError::Malformed {
                addr: *addr,
                reason: reason.clone(),
            },
            ClientError::Broker { code, message } => ClientError::Broker {
                code: *code,
                message: message.clone(),
            },
            ClientError::Mismatch {
                addr,
                want,
                got,
                correlation_id,
            } => ClientError::Mismatch {
                addr: *addr,
                want: *want,
                got: *got,
                correlation_id: *correlation_id,
            },
            ClientError::Invalid(s) => ClientError::Invalid(s.clone()),
            ClientError::UnknownTopic { topic, partition } => ClientError::UnknownTopic {
                topic: topic.clone(),
                partition: *partition,
            },
        }
    }
}

impl ClientError {
    pub(crate) fn malformed_frame(addr: SocketAddr, e: FrameError) -> ClientError {
        ClientError::Malformed {
            addr,
            reason: e.to_string(),
        }
    }

    pub(crate) fn malformed_header(addr: SocketAddr, e: ProtocolError) -> ClientError {
        ClientError::Malformed {
            addr,
            reason: e.to_string(),
        }
    }

    /// The broker's error code, when the broker answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            ClientError::UnknownTopic { .. } => Some(ErrorCode::UnknownTopic),
            _ => None,
        }
    }

    /// True when the same request may succeed if sent again later (possibly to a restarted
    /// broker): lost connections, a broker shutting down, a full disk, a timeout.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Io { .. } | ClientError::Closed { .. } => {
                true
            }
            ClientError::Broker { code, .. } => matches!(
                code,
                ErrorCode::ShuttingDown
                    | ErrorCode::NoSpace
                    | ErrorCode::Timeout
                    | ErrorCode::StorageError
            ),
            _ => false,
        }
    }
}
