//! Bounded cache of the most recent batches of one log, so tailing readers never touch the disk.

use std::collections::VecDeque;

use bytes::Bytes;

/// One cached batch: offsets `base..next` are in `bytes`.
#[derive(Debug, Clone)]
struct Cached {
    base: i64,
    next: i64,
    bytes: Bytes,
}

/// Recent batches in offset order. Invariant: entries are contiguous (each `base` equals the
/// previous `next`), end at the log end, and hold at most `capacity` bytes in all.
#[derive(Debug)]
pub struct BatchCache {
    entries: VecDeque<Cached>,
    bytes: usize,
    capacity: usize,
}

/// What the cache can say about a read.
#[derive(Debug, PartialEq)]
pub enum CacheRead {
    /// The offset is older than anything cached: read the disk.
    Miss,
    /// Whole batches starting with the one that holds the offset (empty at the log end).
    Hit(Vec<Bytes>),
}

impl BatchCache {
    pub fn new(capacity: usize) -> Self {
        BatchCache {
            entries: VecDeque::new(),
            bytes: 0,
            capacity,
        }
    }

    /// Adds the batch just appended at the log end, evicting the oldest batches to make room.
    /// A batch larger than the whole cache empties it (contiguity is kept by caching nothing).
    pub fn push(&mut self, base: i64, next: i64, bytes: Bytes) {
        debug_assert!(next > base);
        if let Some(last) = self.entries.back() {
            debug_assert_eq!(last.next, base, "cache must stay contiguous");
        }
        if bytes.len() > self.capacity {
            self.clear();
            return;
        }
        while self.bytes + bytes.len() > self.capacity {
            let old = self
                .entries
                .pop_front()
                .expect("bytes > 0 implies an entry");
            self.bytes -= old.bytes.len();
        }
        self.bytes += bytes.len();
        self.entries.push_back(Cached { base, next, bytes });
    }

    /// Forgets every batch at or after `offset` (a rolled-back tail).
    pub fn truncate_from(&mut self, offset: i64) {
        while self.entries.back().is_some_and(|c| c.next > offset) {
            let c = self.entries.pop_back().expect("checked");
            self.bytes -= c.bytes.len();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whole batches from the one holding `offset`, below `visible_end`, up to `max_bytes`
    /// (always at least one batch when there is one).
    pub fn read(&self, offset: i64, max_bytes: usize, visible_end: i64) -> CacheRead {
        let Some(first) = self.entries.front() else {
            return CacheRead::Miss;
        };
        if offset < first.base {
            return CacheRead::Miss;
        }
        let start = self.entries.partition_point(|c| c.next <= offset);
        let mut out = Vec::new();
        let mut total = 0usize;
        for c in self.entries.range(start..) {
            if c.base >= visible_end || (!out.is_empty() && total + c.bytes.len() > max_bytes) {
                break;
            }
            total += c.bytes.len();
            out.push(c.bytes.clone());
        }
        CacheRead::Hit(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn evicts_oldest_and_serves_recent() {
        let mut c = BatchCache::new(300);
        c.push(0, 10, b(100));
        c.push(10, 20, b(100));
        c.push(20, 30, b(100));
        c.push(30, 40, b(100)); // evicts 0..10
        assert_eq!(c.bytes(), 300);
        assert_eq!(c.read(5, 1000, 40), CacheRead::Miss);
        let CacheRead::Hit(v) = c.read(15, 1000, 40) else {
            panic!()
        };
        assert_eq!(v.len(), 3);
        let CacheRead::Hit(v) = c.read(15, 150, 40) else {
            panic!()
        };
        assert_eq!(v.len(), 1, "max_bytes limits, but one batch always comes");
        let CacheRead::Hit(v) = c.read(15, 1000, 30) else {
            panic!()
        };
        assert_eq!(v.len(), 2, "nothing at or past the visible end");
        let CacheRead::Hit(v) = c.read(40, 1000, 40) else {
            panic!()
        };
        assert!(v.is_empty());
    }

    #[test]
    fn truncate_and_oversize() {
        let mut c = BatchCache::new(300);
        c.push(0, 10, b(100));
        c.push(10, 20, b(100));
        c.truncate_from(10);
        assert_eq!(c.bytes(), 100);
        c.push(10, 11, b(1000));
        assert_eq!(c.bytes(), 0);
        assert_eq!(c.read(10, 100, 11), CacheRead::Miss);
    }
}
