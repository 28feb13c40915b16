//! Pacing of one sender. Open loop (`--rate`): request `i` is due at `start + i × interval` on a
//! fixed timetable, whatever happened to earlier requests, and its latency is measured from that
//! due time — so a stalled broker, or a sender held back by it, shows up as high latency for
//! every request that should have gone out during the stall (coordinated omission corrected).
//! Closed loop (no rate): the next request goes out as soon as the window has room, and latency
//! is measured from the moment it was actually sent.

use super::clock::NS_PER_SEC;
use super::error::{BenchError, Result};

/// A fixed timetable: request `i` is due at `start_ns + i × interval_ns`. Invariant:
/// `interval_ns` is finite and > 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timetable {
    start_ns: u64,
    interval_ns: f64,
}

impl Timetable {
    /// `requests_per_sec` requests a second from `start_ns` on.
    pub fn new(start_ns: u64, requests_per_sec: f64) -> Result<Timetable> {
        if !(requests_per_sec.is_finite() && requests_per_sec > 0.0) {
            return Err(BenchError::Invalid(format!(
                "a request rate must be positive, not {requests_per_sec}"
            )));
        }
        Ok(Timetable {
            start_ns,
            interval_ns: NS_PER_SEC as f64 / requests_per_sec,
        })
    }

    /// When request `i` is due. Computed from `i`, never accumulated, so rounding never drifts.
    pub fn due(&self, i: u64) -> u64 {
        self.start_ns + (i as f64 * self.interval_ns).round() as u64
    }

    pub fn interval_ns(&self) -> f64 {
        self.interval_ns
    }
}

/// How a sender paces its requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    Open(Timetable),
    Closed,
}

/// What a sender does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send a request now; it was due at `intended_ns` (open loop) or is due now (closed).
    Send { intended_ns: u64 },
    /// Nothing is due before this time.
    WaitUntil(u64),
    /// The run is over: no request is due before the end.
    Stop,
}

/// The pacing of one sender until `end_ns`. Invariant: `sent` requests have been handed out,
/// and in open loop they are exactly the first `sent` of the timetable.
#[derive(Debug, Clone)]
pub struct Pacer {
    pacing: Pacing,
    end_ns: u64,
    sent: u64,
}

impl Pacer {
    pub fn new(pacing: Pacing, end_ns: u64) -> Pacer {
        Pacer {
            pacing,
            end_ns,
            sent: 0,
        }
    }

    /// Requests handed out so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn is_open_loop(&self) -> bool {
        matches!(self.pacing, Pacing::Open(_))
    }

    /// The next step at time `now_ns`. In open loop a sender that fell behind gets every
    /// overdue request at once, each with its own due time.
    pub fn next(&mut self, now_ns: u64) -> Next {
        match self.pacing {
            Pacing::Open(t) => {
                let due = t.due(self.sent);
                if due >= self.end_ns {
                    Next::Stop
                } else if now_ns < due {
                    Next::WaitUntil(due)
                } else {
                    self.sent += 1;
                    Next::Send { intended_ns: due }
                }
            }
            Pacing::Closed if now_ns >= self.end_ns => Next::Stop,
            Pacing::Closed => {
                self.sent += 1;
                Next::Send {
                    intended_ns: now_ns,
                }
            }
        }
    }

    /// The time a request's latency counts from, once it could really be sent at `sent_ns`
    /// (after waiting for room in the window): its due time in open loop, `sent_ns` in closed.
    pub fn latency_origin(&self, intended_ns: u64, sent_ns: u64) -> u64 {
        match self.pacing {
            Pacing::Open(_) => intended_ns,
            Pacing::Closed => sent_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::meter::Meter;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_timetable_spaces_requests_evenly_without_drift() {
        let t = Timetable::new(5_000, 3.0).unwrap();
        assert_eq!(t.due(0), 5_000);
        assert_eq!(t.due(1), 5_000 + 333_333_333);
        assert_eq!(t.due(3), 5_000 + NS_PER_SEC);
        assert_eq!(t.due(3_000_000), 5_000 + 1_000_000 * NS_PER_SEC);
        assert!(Timetable::new(0, 0.0).is_err());
        assert!(Timetable::new(0, f64::NAN).is_err());
        assert!(Timetable::new(0, -1.0).is_err());
    }

    #[test]
    fn open_loop_waits_for_each_due_time_and_stops_at_the_end() {
        let t = Timetable::new(0, 1000.0).unwrap(); // every 1 ms
        let mut p = Pacer::new(Pacing::Open(t), 3 * MS);
        assert_eq!(p.next(0), Next::Send { intended_ns: 0 });
        assert_eq!(p.next(10), Next::WaitUntil(MS));
        assert_eq!(p.next(MS), Next::Send { intended_ns: MS });
        assert_eq!(
            p.next(2 * MS),
            Next::Send {
                intended_ns: 2 * MS
            }
        );
        assert_eq!(p.next(2 * MS + 1), Next::Stop); // request 3 is due at the end
        assert_eq!(p.sent(), 3);
    }

    #[test]
    fn a_late_open_loop_sender_gets_every_overdue_request_with_its_own_due_time() {
        let t = Timetable::new(0, 1000.0).unwrap();
        let mut p = Pacer::new(Pacing::Open(t), 100 * MS);
        let late = 5 * MS + 1;
        let due: Vec<Next> = (0..7).map(|_| p.next(late)).collect();
        let want: Vec<Next> = (0..6)
            .map(|i| Next::Send {
                intended_ns: i * MS,
            })
            .chain([Next::WaitUntil(6 * MS)])
            .collect();
        assert_eq!(due, want);
        assert_eq!(p.latency_origin(2 * MS, late), 2 * MS);
    }

    #[test]
    fn closed_loop_sends_at_once_and_measures_from_the_real_send() {
        let mut p = Pacer::new(Pacing::Closed, 10);
        assert_eq!(p.next(3), Next::Send { intended_ns: 3 });
        assert_eq!(p.latency_origin(3, 8), 8);
        assert_eq!(p.next(10), Next::Stop);
        assert!(!p.is_open_loop());
    }

    /// A sender with one request in flight against a server that answers in `SERVICE` but
    /// stalls from `STALL_FROM` to `STALL_TO`: the sender is held back during the stall (it
    /// cannot send while its request is unanswered), which is exactly how a closed measurement
    /// hides a stall. Returns the meter holding what the pacer's latency origin recorded.
    fn simulate_stall(pacing: Pacing, end: u64) -> Meter {
        const SERVICE: u64 = 100_000; // 100 µs
        const STALL_FROM: u64 = 1_000 * MS;
        const STALL_TO: u64 = 1_500 * MS;
        let answer = |arrived: u64| {
            if (STALL_FROM..STALL_TO).contains(&arrived) {
                STALL_TO + SERVICE
            } else {
                arrived + SERVICE
            }
        };
        let meter = Meter::new(0);
        let rec = meter.recorder();
        let mut pacer = Pacer::new(pacing, end);
        let (mut now, mut in_flight_until) = (0u64, 0u64);
        loop {
            match pacer.next(now) {
                Next::Stop => break,
                Next::WaitUntil(t) => now = t,
                Next::Send { intended_ns } => {
                    now = now.max(in_flight_until); // the window (of one) has room again
                    let done = answer(now);
                    rec.record(pacer.latency_origin(intended_ns, now), done, 1, 1);
                    in_flight_until = done;
                }
            }
        }
        meter
    }

    #[test]
    fn a_stall_shows_as_high_latency_for_every_request_due_during_it() {
        let t = Timetable::new(0, 1000.0).unwrap(); // one request per ms, for 2 s
        let total = simulate_stall(Pacing::Open(t), 2_000 * MS).total();
        assert_eq!(
            total.records, 2_000,
            "every request of the timetable was sent"
        );
        let h = &total.latency;
        // The 500 requests due during the 500 ms stall waited for its end: request k ms into
        // the stall waited at least 500 - k ms. So about 25% of all requests exceed 0 ms of
        // stall, ~12.5% exceed 250 ms, and the worst waited the whole stall.
        let over = |ms: u64| h.count_between(ms * MS, u64::MAX);
        assert!(over(1) >= 500, "only {} requests saw the stall", over(1));
        for k in [100u64, 250, 400] {
            let due_in_stall_waiting_longer = 500 - k;
            assert!(
                over(k) >= due_in_stall_waiting_longer,
                "{} requests over {k} ms, want >= {due_in_stall_waiting_longer}",
                over(k)
            );
        }
        assert!(h.max() >= 500 * MS);
        assert!(
            h.value_at_quantile(0.5) < MS,
            "outside the stall the server is fast"
        );
    }

    #[test]
    fn closed_loop_measurement_would_hide_the_same_stall() {
        // The contrast that motivates the correction: measured from the real send, only the
        // one request caught by the stall looks slow.
        let total = simulate_stall(Pacing::Closed, 2_000 * MS).total();
        let h = &total.latency;
        assert_eq!(h.count_between(MS, u64::MAX), 1);
        assert!(h.max() >= 499 * MS);
    }
}
