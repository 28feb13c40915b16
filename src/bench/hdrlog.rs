//! `--hdr-log FILE`: the HdrHistogram interval log of a run, one compressed histogram per
//! second of the measured window, readable by the standard tools (HistogramLogProcessor,
//! HdrHistogramVisualizer, `hdrhistogram`'s interval log reader). Values are nanoseconds;
//! timestamps are seconds since the run started (`BaseTime`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use super::error::{BenchError, Result};

/// An interval log being written. Invariant: the header (start and base time) is written once,
/// before any interval.
pub struct HdrLog {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
    path: String,
}

impl HdrLog {
    /// Creates `path` and writes the header; `started` is the run's start (BaseTime).
    pub fn create(path: &Path, started: SystemTime, comment: &str) -> Result<HdrLog> {
        let name = path.display().to_string();
        let file = File::create(path).map_err(|e| BenchError::io(format!("creating {name}"), e))?;
        let mut log = HdrLog {
            out: BufWriter::new(file),
            serializer: V2DeflateSerializer::new(),
            path: name,
        };
        IntervalLogWriterBuilder::new()
            .add_comment(comment)
            .add_comment("latency values are in nanoseconds")
            .with_start_time(started)
            .with_base_time(started)
            .begin_log_with(&mut log.out, &mut log.serializer)
            .map_err(|e| BenchError::io(format!("writing {}", log.path), e))?;
        writeln!(
            log.out,
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        )
        .map_err(|e| log.err(e))?;
        Ok(log)
    }

    /// Appends one interval that began `start` after the base time and lasted `length`.
    pub fn interval(
        &mut self,
        h: &Histogram<u64>,
        start: Duration,
        length: Duration,
        tag: &str,
    ) -> Result<()> {
        let mut writer = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.out, &mut self.serializer)
            .map_err(|e| BenchError::io(format!("writing {}", self.path), e))?;
        writer
            .write_histogram(h, start, length, Tag::new(tag))
            .map_err(|e| {
                BenchError::io(
                    format!("writing {}", self.path),
                    std::io::Error::other(e.to_string()),
                )
            })
    }

    /// Writes out what is buffered.
    pub fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(|e| self.err(e))
    }

    fn err(&self, e: std::io::Error) -> BenchError {
        BenchError::io(format!("writing {}", self.path), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::meter::histogram;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    #[test]
    fn the_log_reads_back_with_the_standard_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.hlog");
        let mut log = HdrLog::create(&path, SystemTime::now(), "strata bench test").unwrap();
        for s in 0..3u64 {
            let mut h = histogram();
            h.record_n(1_000 * (s + 1), 10).unwrap();
            log.interval(&h, Duration::from_secs(s), Duration::from_secs(1), "e2e")
                .unwrap();
        }
        log.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut intervals = Vec::new();
        for entry in IntervalLogIterator::new(&bytes) {
            if let LogEntry::Interval(i) = entry.unwrap() {
                let decoded = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    i.encoded_histogram(),
                )
                .unwrap();
                let h: Histogram<u64> = Deserializer::new()
                    .deserialize(&mut decoded.as_slice())
                    .unwrap();
                intervals.push((
                    i.start_timestamp(),
                    i.tag().map(|t| t.as_str().to_string()),
                    h,
                ));
            }
        }
        assert_eq!(intervals.len(), 3);
        assert_eq!(intervals[2].0, Duration::from_secs(2));
        assert_eq!(intervals[2].1.as_deref(), Some("e2e"));
        assert_eq!(intervals[2].2.len(), 10);
        assert!(intervals[2].2.equivalent(intervals[2].2.max(), 3_000));
    }
}
