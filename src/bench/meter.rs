//! Where the load generator's threads put their latency samples: one [`Recorder`] per thread
//! (its own lock, so threads never contend), read by the reporter once per interval and once at
//! the end through the [`Meter`] that made them.

use std::sync::{Arc, Mutex, MutexGuard};

use hdrhistogram::Histogram;

use super::clock::NS_PER_SEC;

/// Longest latency a histogram holds (ns); longer samples are clamped to it.
pub const MAX_LATENCY_NS: u64 = 3_600 * NS_PER_SEC;
/// Significant decimal digits of every latency histogram (0.1% resolution).
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// An empty latency histogram in nanoseconds, 1 ns to [`MAX_LATENCY_NS`].
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, SIGNIFICANT_DIGITS).expect("valid bounds")
}

/// One thread's samples. Invariant: `total` (and `records`, `bytes`, `last_done_ns`) hold only
/// samples whose intended time is at or after the window start; `interval` holds every sample
/// recorded since the last [`Meter::take_interval`], warm-up included.
struct Samples {
    interval: Histogram<u64>,
    interval_records: u64,
    interval_bytes: u64,
    total: Histogram<u64>,
    records: u64,
    bytes: u64,
    last_done_ns: u64,
}

impl Samples {
    fn new() -> Samples {
        Samples {
            interval: histogram(),
            interval_records: 0,
            interval_bytes: 0,
            total: histogram(),
            records: 0,
            bytes: 0,
            last_done_ns: 0,
        }
    }
}

/// What one interval or the whole measured window holds, summed over every recorder.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latency in nanoseconds, one count per sample.
    pub latency: Histogram<u64>,
    pub records: u64,
    pub bytes: u64,
    /// When the last counted record completed (`now_ns` time); 0 if none.
    pub last_done_ns: u64,
}

impl Tally {
    /// No samples yet.
    fn empty() -> Tally {
        Tally {
            latency: histogram(),
            records: 0,
            bytes: 0,
            last_done_ns: 0,
        }
    }
}

/// The recorders of one measured quantity (produce acknowledgements, end-to-end deliveries…).
/// Invariant: every recorder shares `window_start_ns`.
#[derive(Clone)]
pub struct Meter {
    window_start_ns: u64,
    recorders: Arc<Mutex<Vec<Arc<Mutex<Samples>>>>>,
}

impl Meter {
    /// A meter counting samples intended at or after `window_start_ns` (the end of warm-up).
    pub fn new(window_start_ns: u64) -> Meter {
        Meter {
            window_start_ns,
            recorders: Arc::default(),
        }
    }

    pub fn window_start_ns(&self) -> u64 {
        self.window_start_ns
    }

    /// A recorder for one thread.
    pub fn recorder(&self) -> Recorder {
        let samples = Arc::new(Mutex::new(Samples::new()));
        lock(&self.recorders).push(samples.clone());
        Recorder {
            samples,
            window_start_ns: self.window_start_ns,
        }
    }

    /// Every sample recorded since the previous call (warm-up included), and starts a new
    /// interval.
    pub fn take_interval(&self) -> Tally {
        let mut out = Tally::empty();
        for r in lock(&self.recorders).iter() {
            let mut s = lock(r);
            out.latency.add(&s.interval).expect("same bounds");
            out.records += s.interval_records;
            out.bytes += s.interval_bytes;
            s.interval.reset();
            s.interval_records = 0;
            s.interval_bytes = 0;
        }
        out
    }

    /// Every sample of the measured window so far.
    pub fn total(&self) -> Tally {
        let mut out = Tally::empty();
        for r in lock(&self.recorders).iter() {
            let s = lock(r);
            out.latency.add(&s.total).expect("same bounds");
            out.records += s.records;
            out.bytes += s.bytes;
            out.last_done_ns = out.last_done_ns.max(s.last_done_ns);
        }
        out
    }
}

/// One thread's handle for recording samples (a clone records into the same samples).
#[derive(Clone)]
pub struct Recorder {
    samples: Arc<Mutex<Samples>>,
    window_start_ns: u64,
}

impl Recorder {
    /// Records one latency sample — a request, a fetch or a record, as the caller measures —
    /// of `records` records (`bytes` bytes in all) meant to start at `intended_ns` and completed
    /// at `done_ns`: latency is `done_ns - intended_ns`, counted once whatever `records` is (the
    /// records of one request share its latency, and weighting by them would make a few
    /// thousand requests look like millions of samples).
    pub fn record(&self, intended_ns: u64, done_ns: u64, records: u64, bytes: u64) {
        self.lock().record(intended_ns, done_ns, records, bytes);
    }

    /// Holds the recorder's lock for several samples in a row (one lock per fetch, not per
    /// record).
    pub fn lock(&self) -> RecorderGuard<'_> {
        RecorderGuard {
            samples: lock(&self.samples),
            window_start_ns: self.window_start_ns,
        }
    }
}

/// A recorder with its lock held.
pub struct RecorderGuard<'a> {
    samples: MutexGuard<'a, Samples>,
    window_start_ns: u64,
}

impl RecorderGuard<'_> {
    /// See [`Recorder::record`].
    pub fn record(&mut self, intended_ns: u64, done_ns: u64, records: u64, bytes: u64) {
        let latency = done_ns.saturating_sub(intended_ns).max(1);
        let s = &mut *self.samples;
        s.interval.saturating_record(latency);
        s.interval_records += records;
        s.interval_bytes += bytes;
        if intended_ns >= self.window_start_ns {
            s.total.saturating_record(latency);
            s.records += records;
            s.bytes += bytes;
            s.last_done_ns = s.last_done_ns.max(done_ns);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_samples_show_in_intervals_but_not_in_the_total() {
        let meter = Meter::new(1_000);
        let (a, b) = (meter.recorder(), meter.recorder());
        a.record(500, 700, 10, 100); // warm-up
        b.record(1_000, 1_300, 5, 50);
        let i = meter.take_interval();
        assert_eq!((i.records, i.bytes, i.latency.len()), (15, 150, 2));
        let t = meter.total();
        assert_eq!((t.records, t.bytes, t.latency.len()), (5, 50, 1));
        assert_eq!(t.last_done_ns, 1_300);
        assert_eq!(t.latency.max(), 300);
        // A new interval starts empty; the total keeps growing.
        a.record(2_000, 2_001, 1, 1);
        assert_eq!(meter.take_interval().records, 1);
        assert_eq!(meter.total().records, 6);
    }
}
