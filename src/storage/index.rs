//! Sparse indexes of one segment, kept in memory and mirrored to files: the offset index maps a
//! relative offset to a file position, the time index maps a timestamp to a relative offset.
//! Both are rebuildable from the segment itself, so their files are never fsynced on the hot path.

/// Bytes of one offset-index entry on disk: relative offset u32 LE, position u32 LE.
pub const OFFSET_ENTRY_BYTES: usize = 8;
/// Bytes of one time-index entry on disk: timestamp i64 LE, relative offset u32 LE.
pub const TIME_ENTRY_BYTES: usize = 12;

/// Why an index file could not be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("entry {index} does not increase (offset {rel_offset}, position {position})")]
    NotIncreasing {
        index: usize,
        rel_offset: u32,
        position: u32,
    },
    #[error("entry {index} points at position {position}, past the segment end {end}")]
    PastEnd {
        index: usize,
        position: u32,
        end: u64,
    },
    #[error("time entry {index} goes back in time or offset")]
    TimeNotIncreasing { index: usize },
}

/// One offset-index entry: the batch holding `base + rel_offset` starts at `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub rel_offset: u32,
    pub position: u32,
}

/// Sparse offset → position map. Invariant: entries strictly increase in both fields.
#[derive(Debug, Default, Clone)]
pub struct OffsetIndex {
    entries: Vec<OffsetEntry>,
    /// How many leading entries are already in the file.
    persisted: usize,
}

impl OffsetIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes a file's bytes (a torn last entry is ignored) and checks that every entry increases
    /// and lies before `segment_end`.
    pub fn decode(bytes: &[u8], segment_end: u64) -> Result<Self, IndexError> {
        let mut index = OffsetIndex::new();
        for (i, e) in bytes.chunks_exact(OFFSET_ENTRY_BYTES).enumerate() {
            let rel_offset = u32::from_le_bytes(e[0..4].try_into().expect("4 bytes"));
            let position = u32::from_le_bytes(e[4..8].try_into().expect("4 bytes"));
            if u64::from(position) >= segment_end.max(1) {
                return Err(IndexError::PastEnd {
                    index: i,
                    position,
                    end: segment_end,
                });
            }
            if let Some(last) = index.entries.last() {
                if rel_offset <= last.rel_offset || position <= last.position {
                    return Err(IndexError::NotIncreasing {
                        index: i,
                        rel_offset,
                        position,
                    });
                }
            }
            index.entries.push(OffsetEntry {
                rel_offset,
                position,
            });
        }
        index.persisted = index.entries.len();
        Ok(index)
    }

    /// Appends an entry; panics if it would break the ordering invariant.
    pub fn push(&mut self, rel_offset: u32, position: u32) {
        if let Some(last) = self.entries.last() {
            assert!(
                rel_offset > last.rel_offset && position > last.position,
                "offset index must increase"
            );
        }
        self.entries.push(OffsetEntry {
            rel_offset,
            position,
        });
    }

    /// The last entry at or before `rel_offset`: where a scan for it may start.
    pub fn lookup(&self, rel_offset: u32) -> Option<OffsetEntry> {
        let n = self.entries.partition_point(|e| e.rel_offset <= rel_offset);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry whose batch starts at or before file position `position`.
    pub fn last_at_or_before_position(&self, position: u64) -> Option<OffsetEntry> {
        let n = self
            .entries
            .partition_point(|e| u64::from(e.position) <= position);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// The first entry after `rel_offset`: the batch holding `rel_offset` ends at or before it.
    pub fn next_after(&self, rel_offset: u32) -> Option<OffsetEntry> {
        let n = self.entries.partition_point(|e| e.rel_offset <= rel_offset);
        self.entries.get(n).copied()
    }

    pub fn last(&self) -> Option<OffsetEntry> {
        self.entries.last().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every entry at or after `rel_offset` (a rolled-back or truncated tail).
    pub fn truncate_from(&mut self, rel_offset: u32) {
        let n = self.entries.partition_point(|e| e.rel_offset < rel_offset);
        self.entries.truncate(n);
        self.persisted = self.persisted.min(n);
    }

    /// Drops every entry after the first `len`.
    pub fn truncate(&mut self, len: usize) {
        self.entries.truncate(len);
        self.persisted = self.persisted.min(len);
    }

    /// True when some entries are not yet in the file.
    pub fn has_unpersisted(&self) -> bool {
        self.persisted < self.entries.len()
    }

    /// The file bytes of entries not yet persisted, and the file position they go to.
    pub fn unpersisted(&self) -> (u64, Vec<u8>) {
        let mut out =
            Vec::with_capacity((self.entries.len() - self.persisted) * OFFSET_ENTRY_BYTES);
        for e in &self.entries[self.persisted..] {
            out.extend_from_slice(&e.rel_offset.to_le_bytes());
            out.extend_from_slice(&e.position.to_le_bytes());
        }
        ((self.persisted * OFFSET_ENTRY_BYTES) as u64, out)
    }

    /// Records that the first `len` entries are in the file.
    pub fn mark_persisted(&mut self, len: usize) {
        debug_assert!(len <= self.entries.len());
        self.persisted = len.min(self.entries.len());
    }

    /// Forgets what the file holds, so the next persist rewrites it whole.
    pub fn mark_unpersisted(&mut self) {
        self.persisted = 0;
    }

    /// Records that the leading entries equal to those of `file` (the file's decoded contents)
    /// are in the file, so a persist writes only from where the two differ. Returns true when the
    /// file holds entries past that prefix, which a persist must cut even if none are unpersisted.
    pub fn mark_persisted_prefix(&mut self, file: &OffsetIndex) -> bool {
        self.persisted = common_prefix(&self.entries, &file.entries);
        file.entries.len() > self.persisted
    }
}

/// One time-index entry: every batch up to and including `base + rel_offset` has a timestamp
/// at most `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub rel_offset: u32,
}

/// Sparse max-timestamp → offset map. Invariant: timestamps and offsets strictly increase.
#[derive(Debug, Default, Clone)]
pub struct TimeIndex {
    entries: Vec<TimeEntry>,
    persisted: usize,
}

impl TimeIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes a file's bytes (a torn last entry is ignored) and checks the ordering.
    pub fn decode(bytes: &[u8]) -> Result<Self, IndexError> {
        let mut index = TimeIndex::new();
        for (i, e) in bytes.chunks_exact(TIME_ENTRY_BYTES).enumerate() {
            let timestamp = i64::from_le_bytes(e[0..8].try_into().expect("8 bytes"));
            let rel_offset = u32::from_le_bytes(e[8..12].try_into().expect("4 bytes"));
            if let Some(last) = index.entries.last() {
                if timestamp <= last.timestamp || rel_offset <= last.rel_offset {
                    return Err(IndexError::TimeNotIncreasing { index: i });
                }
            }
            index.entries.push(TimeEntry {
                timestamp,
                rel_offset,
            });
        }
        index.persisted = index.entries.len();
        Ok(index)
    }

    /// Records that batches up to `rel_offset` have timestamps at most `timestamp`; kept only
    /// when both move forward.
    pub fn maybe_push(&mut self, timestamp: i64, rel_offset: u32) {
        match self.entries.last() {
            Some(last) if timestamp <= last.timestamp || rel_offset <= last.rel_offset => {}
            _ => self.entries.push(TimeEntry {
                timestamp,
                rel_offset,
            }),
        }
    }

    /// The last entry whose timestamp is below `timestamp`: every batch up to its offset is
    /// older than `timestamp`, so a search for the first record at or after it may skip them.
    pub fn last_before(&self, timestamp: i64) -> Option<TimeEntry> {
        let n = self.entries.partition_point(|e| e.timestamp < timestamp);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// The first entry whose offset is at or after `rel_offset`.
    pub fn first_from(&self, rel_offset: u32) -> Option<TimeEntry> {
        let n = self.entries.partition_point(|e| e.rel_offset < rel_offset);
        self.entries.get(n).copied()
    }

    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every entry at or after `rel_offset`.
    pub fn truncate_from(&mut self, rel_offset: u32) {
        let n = self.entries.partition_point(|e| e.rel_offset < rel_offset);
        self.entries.truncate(n);
        self.persisted = self.persisted.min(n);
    }

    /// True when some entries are not yet in the file.
    pub fn has_unpersisted(&self) -> bool {
        self.persisted < self.entries.len()
    }

    /// The file bytes of entries not yet persisted, and the file position they go to.
    pub fn unpersisted(&self) -> (u64, Vec<u8>) {
        let mut out = Vec::with_capacity((self.entries.len() - self.persisted) * TIME_ENTRY_BYTES);
        for e in &self.entries[self.persisted..] {
            out.extend_from_slice(&e.timestamp.to_le_bytes());
            out.extend_from_slice(&e.rel_offset.to_le_bytes());
        }
        ((self.persisted * TIME_ENTRY_BYTES) as u64, out)
    }

    pub fn mark_persisted(&mut self, len: usize) {
        debug_assert!(len <= self.entries.len());
        self.persisted = len.min(self.entries.len());
    }

    pub fn mark_unpersisted(&mut self) {
        self.persisted = 0;
    }

    /// Records that the leading entries equal to those of `file` (the file's decoded contents)
    /// are in the file, so a persist writes only from where the two differ. Returns true when the
    /// file holds entries past that prefix, which a persist must cut even if none are unpersisted.
    pub fn mark_persisted_prefix(&mut self, file: &TimeIndex) -> bool {
        self.persisted = common_prefix(&self.entries, &file.entries);
        file.entries.len() > self.persisted
    }
}

/// How many leading entries `a` and `b` share.
fn common_prefix<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lookup_finds_last_entry_at_or_before() {
        let mut ix = OffsetIndex::new();
        ix.push(0, 0);
        ix.push(10, 4096);
        ix.push(20, 8192);
        assert_eq!(ix.lookup(0).unwrap().position, 0);
        assert_eq!(ix.lookup(9).unwrap().position, 0);
        assert_eq!(ix.lookup(10).unwrap().position, 4096);
        assert_eq!(ix.lookup(1000).unwrap().position, 8192);
        assert!(ix.last_at_or_before_position(4095).unwrap().position == 0);
        assert!(ix.last_at_or_before_position(4096).unwrap().position == 4096);
        assert!(ix.last_at_or_before_position(u64::MAX).unwrap().position == 8192);
        ix.truncate_from(10);
        assert_eq!(ix.len(), 1);
        assert!(OffsetIndex::new().lookup(5).is_none());
    }

    #[test]
    #[should_panic(expected = "must increase")]
    fn push_rejects_going_back() {
        let mut ix = OffsetIndex::new();
        ix.push(5, 100);
        ix.push(5, 200);
    }

    #[test]
    fn decode_rejects_corruption() {
        let mut ix = OffsetIndex::new();
        ix.push(1, 10);
        ix.push(2, 20);
        let (_, bytes) = ix.unpersisted();
        assert!(OffsetIndex::decode(&bytes, 100).is_ok());
        assert!(matches!(
            OffsetIndex::decode(&bytes, 15),
            Err(IndexError::PastEnd { .. })
        ));
        let mut swapped = bytes.clone();
        swapped.rotate_left(OFFSET_ENTRY_BYTES);
        assert!(matches!(
            OffsetIndex::decode(&swapped, 100),
            Err(IndexError::NotIncreasing { .. })
        ));
        // A torn trailing entry is ignored, not an error.
        let torn = &bytes[..bytes.len() - 3];
        assert_eq!(OffsetIndex::decode(torn, 100).unwrap().len(), 1);
    }

    #[test]
    fn time_index_search() {
        let mut ti = TimeIndex::new();
        ti.maybe_push(100, 0);
        ti.maybe_push(100, 5); // same timestamp: skipped
        ti.maybe_push(200, 10);
        ti.maybe_push(300, 20);
        assert_eq!(ti.len(), 3);
        assert!(ti.last_before(100).is_none());
        assert_eq!(ti.last_before(101).unwrap().rel_offset, 0);
        assert_eq!(ti.last_before(300).unwrap().rel_offset, 10);
        assert_eq!(ti.first_from(1).unwrap().rel_offset, 10);
        assert_eq!(ti.first_from(10).unwrap().rel_offset, 10);
        assert!(ti.first_from(21).is_none());
        let (_, bytes) = ti.unpersisted();
        let file = TimeIndex::decode(&bytes).unwrap();
        assert_eq!(file.len(), 3);
        ti.truncate_from(20);
        ti.maybe_push(400, 30);
        assert!(
            ti.mark_persisted_prefix(&file),
            "the file's entry at 20 is gone"
        );
        assert_eq!(
            ti.unpersisted(),
            (2 * TIME_ENTRY_BYTES as u64, {
                let mut b = 400i64.to_le_bytes().to_vec();
                b.extend_from_slice(&30u32.to_le_bytes());
                b
            })
        );
    }

    proptest! {
        #[test]
        fn offset_index_roundtrip_and_lookup(deltas in proptest::collection::vec((1u32..1000, 1u32..100_000), 0..200), probe in 0u32..300_000) {
            let mut ix = OffsetIndex::new();
            let (mut off, mut pos) = (0u32, 0u32);
            for (d_off, d_pos) in &deltas {
                ix.push(off, pos);
                off += d_off;
                pos += d_pos;
            }
            let (at, bytes) = ix.unpersisted();
            prop_assert_eq!(at, 0);
            let back = OffsetIndex::decode(&bytes, u64::from(pos) + 1).unwrap();
            prop_assert_eq!(back.len(), ix.len());
            // lookup agrees with a linear scan
            let expect = (0..ix.len()).rev().map(|i| ix.entries[i]).find(|e| e.rel_offset <= probe);
            prop_assert_eq!(back.lookup(probe), expect);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), end in 0u64..10_000) {
            let _ = OffsetIndex::decode(&bytes, end);
            let _ = TimeIndex::decode(&bytes);
        }
    }
}
