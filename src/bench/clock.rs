//! The benchmark's clock: `CLOCK_MONOTONIC` nanoseconds, one timeline for every thread and
//! every process on the machine (so a consumer in another process could read a producer's
//! stamps), and sleeping to an absolute time with the finest timer slack Linux allows.

use std::time::Duration;

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;

/// Now on `CLOCK_MONOTONIC`, in nanoseconds.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * NS_PER_SEC + ts.tv_nsec as u64
}

/// Seconds as nanoseconds (negative or NaN counts as zero).
pub fn secs_to_ns(secs: f64) -> u64 {
    (secs.max(0.0) * NS_PER_SEC as f64) as u64
}

/// Blocks the thread until `now_ns() >= deadline_ns` (returns at once when it is past).
pub fn sleep_until_ns(deadline_ns: u64) {
    loop {
        let now = now_ns();
        if now >= deadline_ns {
            return;
        }
        std::thread::sleep(Duration::from_nanos(deadline_ns - now));
    }
}

/// Makes this thread's sleeps end as close to their deadline as the kernel can: the default
/// timer slack (50 µs) would shift every open-loop send late by up to that much.
pub fn fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long and touches only this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward_and_sleeps_reach_their_deadline() {
        fine_timer_slack();
        let a = now_ns();
        let deadline = a + 2_000_000;
        sleep_until_ns(deadline);
        let b = now_ns();
        assert!(b >= deadline, "woke at {b}, before {deadline}");
        sleep_until_ns(a); // in the past: returns at once
        assert_eq!(secs_to_ns(1.5), 1_500_000_000);
        assert_eq!(secs_to_ns(-1.0), 0);
    }
}
