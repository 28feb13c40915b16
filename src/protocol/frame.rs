//! The frame codec (sans-I/O): `u32 length | u32 header length | header | payload`, little endian.
//!
//! `length` counts every byte after itself (4 + header length + payload length). The decoder
//! checks the 8-byte prefix before buffering anything else, so a peer cannot make a reader hold
//! more than `max_frame_bytes` by lying about a length.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes before the header: the `length` and `header length` fields.
pub const FRAME_PREFIX_BYTES: usize = 8;

/// Bytes of the `length` field itself (not counted by `length`).
const LENGTH_FIELD_BYTES: usize = 4;

/// Bytes of the `header length` field (counted by `length`).
const HEADER_LENGTH_FIELD_BYTES: usize = 4;

/// The broker's default limit on a frame's `length` field (configurable).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 << 20;

/// Largest header accepted, whatever the frame limit. Headers list partitions (Metadata, group
/// assignments, offset commits and fetches, DescribeGroup): 4 MiB holds tens of thousands of
/// them, about 50 bytes each.
pub const MAX_HEADER_BYTES: usize = 4 << 20;

/// Why a frame prefix cannot be trusted. Any of these ends the connection: the byte stream can
/// no longer be split into frames.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The `length` field is larger than the reader's limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },

    /// The `header length` field is larger than `MAX_HEADER_BYTES`.
    #[error("frame header of {header_len} bytes exceeds the limit of {max} bytes")]
    HeaderTooLarge { header_len: usize, max: usize },

    /// The header would not fit in the frame: `header length` > `length` - 4.
    #[error("frame header length {header_len} does not fit in a frame of {frame_len} bytes")]
    BadHeaderLength { header_len: usize, frame_len: usize },

    /// The `length` field is smaller than the 4 bytes of the `header length` field.
    #[error("frame length {len} is shorter than the header length field")]
    TooShort { len: usize },
}

/// One whole frame. Invariant: both parts are slices of the buffer the frame was read into (the
/// payload stays mutable so the broker can write base offsets into its batches in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Bytes,
    pub payload: BytesMut,
}

/// A frame's prefix, checked against the limits. Invariant: `header_len <= total - 8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Prefix {
    /// Bytes of the whole frame, prefix included.
    total: usize,
    header_len: usize,
}

/// Splits frames off the front of a receive buffer. Invariant: never accepts a `length` above
/// `max_frame_bytes` or a header above `MAX_HEADER_BYTES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl FrameDecoder {
    /// A decoder that accepts frames whose `length` field is at most `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes }
    }

    /// The limit on a frame's `length` field.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Splits one complete frame off the front of `buf` without copying. `Ok(None)` when more
    /// bytes are needed (nothing is consumed). Errors as soon as the prefix is readable and
    /// lies, before any of the frame's body is buffered.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(prefix) = self.prefix(buf)? else {
            return Ok(None);
        };
        if buf.len() < prefix.total {
            return Ok(None);
        }
        let mut header = buf.split_to(prefix.total);
        header.advance(FRAME_PREFIX_BYTES);
        let payload = header.split_off(prefix.header_len);
        Ok(Some(Frame {
            header: header.freeze(),
            payload,
        }))
    }

    /// Bytes the next frame needs in total (prefix included), once its whole prefix is in `buf`
    /// and passes the checks; `None` otherwise (`decode` reports a bad prefix). Lets a reader
    /// reserve capacity for the frame in one go.
    pub fn needed(&self, buf: &[u8]) -> Option<usize> {
        match self.prefix(buf) {
            Ok(Some(prefix)) => Some(prefix.total),
            _ => None,
        }
    }

    /// Reads and checks the prefix at the front of `buf`: `Ok(None)` until all 8 bytes are in,
    /// but the `length` field is checked as soon as its own 4 bytes are.
    fn prefix(&self, buf: &[u8]) -> Result<Option<Prefix>, FrameError> {
        let Some(len) = read_u32_le(buf, 0) else {
            return Ok(None);
        };
        if len < HEADER_LENGTH_FIELD_BYTES {
            return Err(FrameError::TooShort { len });
        }
        if len > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        let Some(header_len) = read_u32_le(buf, LENGTH_FIELD_BYTES) else {
            return Ok(None);
        };
        if header_len > len - HEADER_LENGTH_FIELD_BYTES {
            return Err(FrameError::BadHeaderLength {
                header_len,
                frame_len: len,
            });
        }
        if header_len > MAX_HEADER_BYTES {
            return Err(FrameError::HeaderTooLarge {
                header_len,
                max: MAX_HEADER_BYTES,
            });
        }
        Ok(Some(Prefix {
            total: LENGTH_FIELD_BYTES + len,
            header_len,
        }))
    }
}

/// The little-endian `u32` at `at`, widened; `None` if `buf` ends before it does.
fn read_u32_le(buf: &[u8], at: usize) -> Option<usize> {
    let bytes = buf.get(at..at + 4)?;
    let value = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    usize::try_from(value).ok()
}

/// The largest `length` field a frame can carry.
pub const MAX_LENGTH_FIELD: usize = u32::MAX as usize;

/// The `length` field of a frame with these parts, or `None` if it does not fit in a `u32`.
pub fn frame_length(header_len: usize, payload_len: usize) -> Option<u32> {
    let len = HEADER_LENGTH_FIELD_BYTES
        .checked_add(header_len)?
        .checked_add(payload_len)?;
    u32::try_from(len).ok()
}

/// Appends the 8 prefix bytes of a frame with these parts to `out`.
///
/// # Panics
/// If the frame's `length` does not fit in a `u32` (check with [`frame_length`] first when the
/// sizes come from outside).
pub fn write_prefix(out: &mut BytesMut, header_len: usize, payload_len: usize) {
    let len = frame_length(header_len, payload_len).expect("frame length exceeds u32::MAX");
    let header_len = u32::try_from(header_len).expect("header length exceeds u32::MAX");
    out.reserve(FRAME_PREFIX_BYTES);
    out.put_u32_le(len);
    out.put_u32_le(header_len);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_bytes(header: &[u8], payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        write_prefix(&mut out, header.len(), payload.len());
        out.extend_from_slice(header);
        out.extend_from_slice(payload);
        out
    }

    fn prefix(len: u32, header_len: u32) -> BytesMut {
        let mut out = BytesMut::new();
        out.put_u32_le(len);
        out.put_u32_le(header_len);
        out
    }

    #[test]
    fn splits_one_frame_and_keeps_the_rest() {
        let mut buf = frame_bytes(b"head", b"payload");
        buf.extend_from_slice(b"\x05\x00");
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(&frame.header[..], b"head");
        assert_eq!(&frame.payload[..], b"payload");
        assert_eq!(&buf[..], b"\x05\x00");
    }

    #[test]
    fn waits_for_the_prefix_and_the_body() {
        let full = frame_bytes(b"h", b"p");
        let decoder = FrameDecoder::default();
        for cut in 0..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(decoder.decode(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed");
        }
    }

    #[test]
    fn needed_reports_the_whole_frame_once_the_prefix_is_in() {
        let full = frame_bytes(b"abc", b"defgh");
        let decoder = FrameDecoder::default();
        for cut in 0..FRAME_PREFIX_BYTES {
            assert_eq!(decoder.needed(&full[..cut]), None);
        }
        assert_eq!(
            decoder.needed(&full[..FRAME_PREFIX_BYTES]),
            Some(full.len())
        );
        assert_eq!(decoder.needed(&prefix(u32::MAX, 0)), None);
    }

    #[test]
    fn length_is_checked_before_the_header_length_arrives() {
        let decoder = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&101u32.to_le_bytes()[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        );
        let mut buf = BytesMut::from(&3u32.to_le_bytes()[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::TooShort { len: 3 })
        );
    }

    #[test]
    fn header_longer_than_the_frame_is_rejected() {
        let mut buf = prefix(10, 7);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::BadHeaderLength {
                header_len: 7,
                frame_len: 10
            })
        );
    }

    #[test]
    fn header_above_the_limit_is_rejected() {
        let header_len = MAX_HEADER_BYTES + 1;
        let mut buf = prefix(4 + header_len as u32, header_len as u32);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::HeaderTooLarge {
                header_len,
                max: MAX_HEADER_BYTES
            })
        );
    }

    #[test]
    fn frame_length_rejects_overflow() {
        assert_eq!(frame_length(1, 2), Some(7));
        assert_eq!(frame_length(0, MAX_LENGTH_FIELD - 4), Some(u32::MAX));
        assert_eq!(frame_length(0, MAX_LENGTH_FIELD - 3), None);
        assert_eq!(frame_length(usize::MAX, 1), None);
    }
}
