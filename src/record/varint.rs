//! Zigzag variable-length integers, as used inside Kafka records (protobuf-style).
//!
//! A value is zigzag-mapped to an unsigned integer (`0, -1, 1, -2, … -> 0, 1, 2, 3, …`) and written
//! seven bits at a time, least significant group first, with the high bit of each byte set when
//! more bytes follow. A `varint` carries an `i32` in at most [`MAX_VARINT_LEN`] bytes, a `varlong`
//! an `i64` in at most [`MAX_VARLONG_LEN`] bytes.
//!
//! Decoding rejects encodings longer than the maximum and encodings whose last byte carries bits
//! beyond the integer's width. Like Kafka's own decoder it accepts non-minimal encodings (e.g.
//! `0x80 0x00` for zero) within the maximum length; the encoder here always writes the minimal form.

use bytes::BufMut;

/// Longest encoding of a zigzag `i32`.
pub const MAX_VARINT_LEN: usize = 5;
/// Longest encoding of a zigzag `i64`.
pub const MAX_VARLONG_LEN: usize = 10;

/// Why a byte slice does not start with a valid varint or varlong.
/// Invariant: `Truncated` means more input could make it valid; `Overlong` means none could.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended before the last byte of the encoding (one without the continuation bit).
    #[error("truncated varint")]
    Truncated,
    /// The encoding is longer than the maximum, or sets bits beyond the integer's width.
    #[error("overlong varint")]
    Overlong,
}

impl VarintError {
    /// A static description, for embedding in [`crate::record::RecordError::MalformedRecord`].
    pub fn reason(self) -> &'static str {
        match self {
            VarintError::Truncated => "truncated varint",
            VarintError::Overlong => "overlong varint",
        }
    }
}

#[inline]
fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline]
fn unzigzag32(u: u32) -> i32 {
    ((u >> 1) as i32) ^ -((u & 1) as i32)
}

#[inline]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag64(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

#[inline]
fn unsigned_len(mut u: u64) -> usize {
    let mut n = 1;
    while u >= 0x80 {
        u >>= 7;
        n += 1;
    }
    n
}

#[inline]
fn put_unsigned<B: BufMut>(buf: &mut B, mut u: u64) {
    while u >= 0x80 {
        buf.put_u8((u as u8 & 0x7f) | 0x80);
        u >>= 7;
    }
    buf.put_u8(u as u8);
}

/// Decodes an unsigned LEB128 of at most `max_len` bytes whose value fits in `bits` bits.
#[inline]
fn get_unsigned(buf: &[u8], max_len: usize, bits: u32) -> Result<(u64, usize), VarintError> {
    debug_assert!(max_len * 7 >= bits as usize && (max_len - 1) * 7 < bits as usize);
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().take(max_len).enumerate() {
        let shift = 7 * i as u32;
        let group = u64::from(b & 0x7f);
        if i + 1 == max_len {
            // The last permitted byte: no continuation, and no bits past the integer's width.
            let spare = bits - shift;
            if b & 0x80 != 0 || group >> spare != 0 {
                return Err(VarintError::Overlong);
            }
        }
        value |= group << shift;
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(VarintError::Truncated)
}

/// Number of bytes [`put_varint`] writes for `v`.
#[inline]
pub fn varint_len(v: i32) -> usize {
    unsigned_len(u64::from(zigzag32(v)))
}

/// Number of bytes [`put_varlong`] writes for `v`.
#[inline]
pub fn varlong_len(v: i64) -> usize {
    unsigned_len(zigzag64(v))
}

/// Appends the minimal zigzag encoding of `v` (1..=5 bytes) to `buf` (a `BytesMut`, `Vec<u8>`, …).
#[inline]
pub fn put_varint<B: BufMut>(buf: &mut B, v: i32) {
    put_unsigned(buf, u64::from(zigzag32(v)));
}

/// Appends the minimal zigzag encoding of `v` (1..=10 bytes) to `buf`.
#[inline]
pub fn put_varlong<B: BufMut>(buf: &mut B, v: i64) {
    put_unsigned(buf, zigzag64(v));
}

/// Decodes a zigzag varint from the start of `buf`, returning `(value, bytes_used)`.
#[inline]
pub fn get_varint(buf: &[u8]) -> Result<(i32, usize), VarintError> {
    let (u, n) = get_unsigned(buf, MAX_VARINT_LEN, 32)?;
    debug_assert!(u <= u64::from(u32::MAX));
    Ok((unzigzag32(u as u32), n))
}

/// Decodes a zigzag varlong from the start of `buf`, returning `(value, bytes_used)`.
#[inline]
pub fn get_varlong(buf: &[u8]) -> Result<(i64, usize), VarintError> {
    let (u, n) = get_unsigned(buf, MAX_VARLONG_LEN, 64)?;
    Ok((unzigzag64(u), n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use proptest::prelude::*;

    fn enc32(v: i32) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    }

    fn enc64(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varlong(&mut out, v);
        out
    }

    #[test]
    fn known_encodings() {
        assert_eq!(enc32(0), [0x00]);
        assert_eq!(enc32(-1), [0x01]);
        assert_eq!(enc32(1), [0x02]);
        assert_eq!(enc32(-2), [0x03]);
        assert_eq!(enc32(63), [0x7e]);
        assert_eq!(enc32(-64), [0x7f]);
        assert_eq!(enc32(64), [0x80, 0x01]);
        assert_eq!(enc32(300), [0xd8, 0x04]);
        assert_eq!(enc32(i32::MAX), [0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(enc32(i32::MIN), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(enc64(0), [0x00]);
        assert_eq!(enc64(-1), [0x01]);
        assert_eq!(
            enc64(i64::MAX),
            [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(
            enc64(i64::MIN),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn edge_values_roundtrip() {
        for v in [0, -1, 1, 63, -64, 64, -65, i32::MIN, i32::MAX, i32::MIN + 1] {
            let e = enc32(v);
            assert_eq!(e.len(), varint_len(v));
            assert_eq!(get_varint(&e), Ok((v, e.len())), "{v}");
            // Widened to a varlong, the encoding is identical.
            assert_eq!(enc64(i64::from(v)), e);
        }
        for v in [0, -1, 1, i64::MIN, i64::MAX, i64::from(i32::MAX) + 1] {
            let e = enc64(v);
            assert_eq!(e.len(), varlong_len(v));
            assert_eq!(get_varlong(&e), Ok((v, e.len())), "{v}");
        }
        assert_eq!(varint_len(i32::MIN), MAX_VARINT_LEN);
        assert_eq!(varlong_len(i64::MIN), MAX_VARLONG_LEN);
    }

    #[test]
    fn writes_into_bytes_mut() {
        let mut b = BytesMut::new();
        put_varint(&mut b, 300);
        put_varlong(&mut b, -1);
        assert_eq!(&b[..], &[0xd8, 0x04, 0x01]);
        assert_eq!(get_varint(&b), Ok((300, 2)));
        assert_eq!(get_varlong(&b[2..]), Ok((-1, 1)));
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        assert_eq!(get_varint(&[0x02, 0xff, 0xff]), Ok((1, 1)));
    }

    #[test]
    fn truncated_is_rejected() {
        assert_eq!(get_varint(&[]), Err(VarintError::Truncated));
        assert_eq!(get_varint(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(
            get_varint(&[0xff, 0xff, 0xff, 0xff]),
            Err(VarintError::Truncated)
        );
        assert_eq!(get_varlong(&[0x80; 9]), Err(VarintError::Truncated));
    }

    #[test]
    fn overlong_is_rejected() {
        // Six bytes for an i32.
        assert_eq!(
            get_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Err(VarintError::Overlong)
        );
        // Five bytes, but the last one has bits past 32.
        assert_eq!(
            get_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f]),
            Err(VarintError::Overlong)
        );
        // Eleven bytes for an i64.
        let mut eleven = [0x80u8; 11];
        eleven[10] = 0;
        assert_eq!(get_varlong(&eleven), Err(VarintError::Overlong));
        // Ten bytes, but the last one has bits past 64.
        let mut ten = [0xffu8; 10];
        ten[9] = 0x02;
        assert_eq!(get_varlong(&ten), Err(VarintError::Overlong));
    }

    #[test]
    fn non_minimal_within_max_len_is_accepted() {
        assert_eq!(get_varint(&[0x80, 0x00]), Ok((0, 2)));
        assert_eq!(get_varint(&[0x81, 0x80, 0x80, 0x80, 0x00]), Ok((-1, 5)));
    }

    proptest! {
        #[test]
        fn varint_roundtrip(v: i32) {
            let e = enc32(v);
            prop_assert_eq!(e.len(), varint_len(v));
            prop_assert_eq!(get_varint(&e), Ok((v, e.len())));
        }

        #[test]
        fn varlong_roundtrip(v: i64) {
            let e = enc64(v);
            prop_assert_eq!(e.len(), varlong_len(v));
            prop_assert_eq!(get_varlong(&e), Ok((v, e.len())));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok((v, n)) = get_varint(&bytes) {
                prop_assert!(n <= MAX_VARINT_LEN && n <= bytes.len());
                prop_assert_eq!(unzigzag32(zigzag32(v)), v);
            }
            if let Ok((_, n)) = get_varlong(&bytes) {
                prop_assert!(n <= MAX_VARLONG_LEN && n <= bytes.len());
            }
        }
    }
}
