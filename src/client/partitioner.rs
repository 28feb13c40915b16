//! Which partition a record goes to: Kafka's murmur2 of the key (so a key lands on the same
//! partition as with a Kafka client), sticky round-robin for records without a key, or the
//! partition the caller names.

/// Kafka's murmur2 seed.
const MURMUR2_SEED: u32 = 0x9747_b28c;
const MURMUR2_M: u32 = 0x5bd1_e995;
const MURMUR2_R: u32 = 24;

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 of `data` with Kafka's seed, as a signed value.
pub fn murmur2(data: &[u8]) -> i32 {
    let mut h: u32 = MURMUR2_SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(MURMUR2_M);
        k ^= k >> MURMUR2_R;
        k = k.wrapping_mul(MURMUR2_M);
        h = h.wrapping_mul(MURMUR2_M);
        h ^= k;
    }
    // Tail bytes are mixed as unsigned bytes (Java masks them with 0xff).
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(MURMUR2_M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(MURMUR2_M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for `key`: `toPositive(murmur2) % n`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

/// Picks partitions for records without a key: all go to one partition until its batch is sent,
/// then to the next one round-robin (Kafka's sticky partitioner, without the randomness).
/// Invariant: `current < partitions` once `partitions` is known (> 0).
#[derive(Debug, Default)]
pub struct StickyPartitioner {
    current: u32,
}

impl StickyPartitioner {
    /// The partition for the next keyless record.
    pub fn partition(&self, partitions: u32) -> u32 {
        assert!(partitions > 0, "a topic has at least one partition");
        self.current % partitions
    }

    /// The batch of the current partition was sent: move on to the next partition.
    pub fn batch_sent(&mut self, partitions: u32) {
        assert!(partitions > 0, "a topic has at least one partition");
        self.current = (self.current % partitions + 1) % partitions;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_client_reference_values() {
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"abc"), 479_470_107);
        assert_eq!(murmur2(b""), 275_646_681);
    }

    #[test]
    fn sticky_moves_on_after_each_batch() {
        let mut s = StickyPartitioner::default();
        assert_eq!(s.partition(3), 0);
        s.batch_sent(3);
        assert_eq!(s.partition(3), 1);
        s.batch_sent(3);
        s.batch_sent(3);
        assert_eq!(s.partition(3), 0);
        // The partition count may shrink between calls (metadata refresh): stay in range.
        s.batch_sent(3);
        assert!(s.partition(1) < 1);
    }
}
