//! The error codes a response carries (the schema's `ErrorCode`) and why a header cannot be read.

/// Defines `ErrorCode` from the schema's values. Invariant: exactly the schema's names and values
/// (a unit test compares them with the generated code).
macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// The outcome of a request, as carried by every response: `None` on success.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i16)]
        pub enum ErrorCode {
            $($(#[$doc])* $name = $value,)*
        }

        impl ErrorCode {
            /// Every code, in schema order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The value on the wire.
            pub fn as_i16(self) -> i16 {
                self as i16
            }

            /// The code with this wire value, if this build knows it.
            pub fn from_i16(value: i16) -> Option<ErrorCode> {
                match value {
                    $($value => Some(ErrorCode::$name),)*
                    _ => None,
                }
            }

            /// The schema's name of the code.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => stringify!($name),)*
                }
            }
        }
    };
}

error_codes! {
    /// Success.
    None = 0,
    /// An unexpected server-side failure; the message says more.
    Unknown = 1,
    /// The topic does not exist.
    UnknownTopic = 2,
    /// The topic exists but has no such partition.
    UnknownPartition = 3,
    /// The requested offset is before the log start (or, for fetches, past the log end).
    OffsetOutOfRange = 4,
    /// A record batch failed validation (CRC, length, record count, magic).
    CorruptBatch = 5,
    /// A record batch is larger than the broker accepts.
    RecordTooLarge = 6,
    /// The frame is larger than the broker's limit; the connection is closed.
    FrameTooLarge = 7,
    /// This api version of the operation is not supported; see ApiVersions.
    UnsupportedVersion = 8,
    /// The frame or its flatbuffer header is malformed; the connection is closed.
    MalformedRequest = 9,
    /// CreateTopics: a topic of that name already exists.
    TopicAlreadyExists = 10,
    /// The topic name breaks the naming rules.
    InvalidTopic = 11,
    /// The partition count is out of range.
    InvalidPartitions = 12,
    /// The log could not be written or read (an I/O error on the broker's disk).
    StorageError = 13,
    /// The broker's disk is full; nothing of the request was written.
    NoSpace = 14,
    /// The broker is shutting down.
    ShuttingDown = 15,
    /// A request field is out of range or inconsistent with the payload.
    InvalidRequest = 16,
    /// A topic configuration value is out of range.
    InvalidConfig = 17,
    /// The request was not completed within its timeout; a produce may still be applied.
    Timeout = 18,
    /// The group does not exist.
    UnknownGroup = 19,
    /// The member id is not a member of the group (e.g. its session expired): rejoin with epoch
    /// `MEMBER_EPOCH_JOIN`.
    UnknownMember = 20,
    /// The member's epoch is not one the coordinator gave it: release everything and rejoin.
    FencedMemberEpoch = 21,
    /// An offset commit carried an older epoch of a live member: retry with the current one.
    StaleMemberEpoch = 22,
    /// DeleteGroup and administrative offset commits (resets) need a group without members.
    GroupNotEmpty = 23,
    /// The group id breaks the naming rules.
    InvalidGroup = 24,
    /// The session timeout is outside the broker's bounds.
    InvalidSessionTimeout = 25,
    /// An offset commit names a partition the member does not own.
    NotAssigned = 26,
}

impl ErrorCode {
    /// True for `None`, the success code.
    pub fn is_ok(self) -> bool {
        self == ErrorCode::None
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<i16> for ErrorCode {
    type Error = ProtocolError;

    fn try_from(value: i16) -> Result<Self, Self::Error> {
        ErrorCode::from_i16(value).ok_or(ProtocolError::UnknownEnum {
            field: "error_code",
            value: i64::from(value),
        })
    }
}

/// Why a header is not an acceptable `Request` or `Response`. Invariant: decoding reports one of
/// these for any input, never panics.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// Not a verifiable flatbuffer with the file identifier "STRA"; the text says where it broke.
    #[error("malformed header: {0}")]
    Malformed(String),

    /// The header is larger than any header may be.
    #[error("header of {len} bytes exceeds the limit of {max} bytes")]
    HeaderTooLarge { len: usize, max: usize },

    /// A field every message of this kind must set is absent.
    #[error("missing field {0}")]
    MissingField(&'static str),

    /// A request names no operation, or the body of the operation it names is absent.
    #[error("missing body")]
    MissingBody,

    /// The body's union discriminant is not an operation this build knows.
    #[error("unknown body type {0}")]
    UnknownBody(u8),

    /// An enum field holds a value this build does not know.
    #[error("unknown value {value} of {field}")]
    UnknownEnum { field: &'static str, value: i64 },

    /// A numeric field holds a value outside its range (e.g. a negative size other than -1).
    #[error("value {value} of {field} is out of range")]
    OutOfRange { field: &'static str, value: i64 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fb;

    #[test]
    fn error_codes_match_the_schema() {
        assert_eq!(ErrorCode::ALL.len(), fb::ErrorCode::ENUM_VALUES.len());
        for generated in fb::ErrorCode::ENUM_VALUES {
            let code = ErrorCode::from_i16(generated.0).expect("every schema code is known");
            assert_eq!(code.as_i16(), generated.0);
            assert_eq!(Some(code.name()), generated.variant_name());
        }
    }

    #[test]
    fn unknown_codes_are_rejected() {
        assert_eq!(ErrorCode::from_i16(-1), None);
        assert_eq!(ErrorCode::from_i16(i16::MAX), None);
        assert_eq!(
            ErrorCode::try_from(300),
            Err(ProtocolError::UnknownEnum {
                field: "error_code",
                value: 300
            })
        );
        assert_eq!(ErrorCode::try_from(2), Ok(ErrorCode::UnknownTopic));
    }

    #[test]
    fn display_is_the_schema_name() {
        assert_eq!(ErrorCode::UnknownTopic.to_string(), "UnknownTopic");
        assert_eq!(ErrorCode::None.to_string(), "None");
        assert!(ErrorCode::None.is_ok());
        assert!(!ErrorCode::Timeout.is_ok());
    }
}
