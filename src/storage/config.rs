//! Per-log settings and the durability policy.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Largest segment the 32-bit positions of the offset index can address.
pub const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;
/// Smallest segment worth having: one write chunk.
pub const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
/// Default segment size before a roll.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// Default distance in log bytes between two sparse index entries.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u32 = 4096;
/// Default step in which segment files are preallocated.
pub const DEFAULT_PREALLOCATE_BYTES: u64 = 64 << 20;
/// Default bound on the bytes of recent batches kept in memory per log.
pub const DEFAULT_CACHE_BYTES: usize = 16 << 20;
/// Default largest batch a log accepts (the broker's default frame limit).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 16 << 20;
/// Default age after which a segment is rolled: 7 days, as in Kafka.
pub const DEFAULT_SEGMENT_MS: u64 = 7 * 24 * 3600 * 1000;
/// Default retention by age: 7 days, as in Kafka.
pub const DEFAULT_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

/// When an append counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After the batch is written and `fdatasync` has returned (group commit).
    Always,
    /// After the batch is written; `fdatasync` runs at most this long after a write.
    Interval(Duration),
    /// After the batch is written (it survives a process crash, not a power cut).
    Never,
}

impl FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => {
                let ms = s.strip_prefix("interval=").ok_or_else(|| {
                    format!("invalid fsync policy {s:?}: expected always, never or interval=MS")
                })?;
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("invalid fsync interval {ms:?}: expected milliseconds"))?;
                if ms == 0 {
                    return Err("fsync interval must be at least 1 ms (use `always`)".into());
                }
                Ok(FsyncPolicy::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => write!(f, "always"),
            FsyncPolicy::Never => write!(f, "never"),
            FsyncPolicy::Interval(d) => write!(f, "interval={}", d.as_millis()),
        }
    }
}

/// Settings of one partition log. Invariant (checked by `validate`): sizes within the named bounds.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll the active segment when the next batch would take it past this size.
    pub segment_bytes: u64,
    /// Roll the active segment when it has been taking appends for this long.
    pub segment_ms: Option<u64>,
    /// Add a sparse index entry every this many bytes of log.
    pub index_interval_bytes: u32,
    /// When appends are acknowledged.
    pub fsync: FsyncPolicy,
    /// Delete the oldest closed segments while the log is larger than this.
    pub retention_bytes: Option<u64>,
    /// Delete closed segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    /// Grow segment files in steps of this size.
    pub preallocate_bytes: u64,
    /// Bytes of recent batches served from memory.
    pub cache_bytes: usize,
    /// Largest batch accepted by `append`.
    pub max_batch_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: Some(DEFAULT_SEGMENT_MS),
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            fsync: FsyncPolicy::Always,
            retention_bytes: None,
            retention_ms: Some(DEFAULT_RETENTION_MS),
            preallocate_bytes: DEFAULT_PREALLOCATE_BYTES,
            cache_bytes: DEFAULT_CACHE_BYTES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
        }
    }
}

impl LogConfig {
    /// Checks the bounds; the message names the setting and its allowed range.
    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(format!(
                "segment_bytes {} out of range {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                self.segment_bytes
            ));
        }
        if self.index_interval_bytes == 0 {
            return Err("index_interval_bytes must be at least 1".into());
        }
        if self.max_batch_bytes as u64 > self.segment_bytes {
            return Err(format!(
                "max_batch_bytes {} exceeds segment_bytes {}",
                self.max_batch_bytes, self.segment_bytes
            ));
        }
        if self.preallocate_bytes == 0 {
            return Err("preallocate_bytes must be at least 1".into());
        }
        if self.segment_ms == Some(0) {
            return Err("segment_ms must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses_and_prints() {
        assert_eq!(
            "always".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Always
        );
        assert_eq!("never".parse::<FsyncPolicy>().unwrap(), FsyncPolicy::Never);
        let p = "interval=250".parse::<FsyncPolicy>().unwrap();
        assert_eq!(p, FsyncPolicy::Interval(Duration::from_millis(250)));
        assert_eq!(p.to_string(), "interval=250");
        assert!("interval=0".parse::<FsyncPolicy>().is_err());
        assert!("interval=x"
            .parse::<FsyncPolicy>()
            .unwrap_err()
            .contains("milliseconds"));
        assert!("sometimes"
            .parse::<FsyncPolicy>()
            .unwrap_err()
            .contains("always, never"));
    }

    #[test]
    fn config_bounds() {
        assert!(LogConfig::default().validate().is_ok());
        let c = LogConfig {
            segment_bytes: 10,
            ..LogConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("segment_bytes"));
        let c = LogConfig {
            segment_bytes: MIN_SEGMENT_BYTES,
            ..LogConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("max_batch_bytes"));
    }
}
