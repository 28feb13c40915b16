//! Start-up checks that must pass before any glommio executor is built.
//!
//! glommio registers each executor's `io_memory` buffer with three io_uring
//! rings (main, poll and latency). The kernel charges every registration
//! separately against `RLIMIT_MEMLOCK` (unless the process has
//! `CAP_IPC_LOCK`), plus a little for each ring itself, so a process needs a
//! bit over `3 × io_memory` of locked memory per executor. When the limit is
//! short glommio only logs a warning and falls back to unregistered buffers,
//! which silently costs throughput (if even its probe ring does not fit, it
//! panics); below 512 KiB it refuses to create the executor at all. The
//! kernel counts these pages per *user*, across all of that user's processes,
//! and releases a dead process's charge only when its rings are torn down,
//! a moment after it exits. io_uring itself may also be unavailable: compiled
//! out or too old (`ENOSYS`), switched off with the `kernel.io_uring_disabled`
//! sysctl, or blocked by a container's seccomp profile (`EPERM`).
//!
//! [`ensure`] checks both at start-up. It creates a real one-entry ring, asks
//! the kernel whether this process's buffer registrations are charged at all
//! (they are not with `CAP_IPC_LOCK`; then only glommio's 512 KiB floor
//! matters), raises `RLIMIT_MEMLOCK` as far as the process may, and otherwise
//! fails with an error whose message names the fix: `ulimit -l unlimited`,
//! `LimitMEMLOCK=infinity` in the systemd unit, or `memlock` lines in
//! `/etc/security/limits.conf`. The decisions are pure functions
//! ([`memlock_need`], [`plan_memlock`], [`diagnose_io_uring_failure`],
//! [`parse_io_uring_disabled`]) so they are tested without touching the
//! process; the syscalls live in small private wrappers.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tracing::{info, warn};

/// `RLIM_INFINITY` as the `u64` that `getrlimit` reports on Linux.
pub const RLIM_INFINITY: u64 = libc::RLIM_INFINITY;

/// io_uring rings per glommio executor (main, poll, latency); each registers
/// the executor's whole `io_memory` and is charged for it separately.
pub const RINGS_PER_EXECUTOR: u64 = 3;

/// Each ring's own SQ/CQ memory, which some kernels also charge to
/// `RLIMIT_MEMLOCK` (those before 5.12, and the 6.18 kernel this was measured
/// on): under 20 KiB per ring at glommio's default depth of 128, so 32 KiB
/// leaves headroom.
pub const RING_OVERHEAD_BYTES: u64 = 32 * KIB;

/// Process-wide headroom on top of the per-ring charges, for anything else in
/// the process that locks memory.
pub const MEMLOCK_SLACK_BYTES: u64 = MIB;

/// glommio 0.9 refuses to create an executor when the soft `RLIMIT_MEMLOCK` is
/// below this (`Reactor::new`'s `MIN_MEMLOCK_LIMIT`).
pub const GLOMMIO_MIN_MEMLOCK_BYTES: u64 = 512 * KIB;

/// glommio rounds `io_memory` up to this alignment before registering it.
const GLOMMIO_IO_MEMORY_ALIGN: u64 = 4096;

/// glommio never registers less than this per executor, whatever `io_memory` says.
const GLOMMIO_MIN_IO_MEMORY: u64 = 64 * KIB;

/// Ring size used by the io_uring probe: the smallest the kernel accepts.
const PROBE_RING_ENTRIES: u32 = 1;

/// Size of the kernel's `struct io_uring_params` (stable ABI since Linux 5.1).
const IO_URING_PARAMS_BYTES: usize = 120;

/// `IORING_REGISTER_BUFFERS`, the `io_uring_register(2)` opcode glommio uses.
const IORING_REGISTER_BUFFERS: libc::c_uint = 0;

/// Size of the buffer the charge probe registers: one page; any charge at all
/// exceeds the zero limit the probe sets.
const CHARGE_PROBE_BYTES: usize = 4096;

/// Where Linux 6.6+ exposes the io_uring kill switch.
const IO_URING_DISABLED_SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// What the process is about to run; `io_memory_bytes` is the value passed to
/// glommio's `LocalExecutorBuilder::io_memory` for each of `executors` executors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirements {
    pub executors: usize,
    pub io_memory_bytes: usize,
}

impl Requirements {
    /// Locked memory the process needs:
    /// `executors × 3 rings × (io_memory + RING_OVERHEAD_BYTES) + MEMLOCK_SLACK_BYTES`,
    /// with `io_memory` rounded as glommio rounds it, never less than
    /// glommio's own floor. Saturates instead of overflowing.
    pub fn memlock_bytes(&self) -> u64 {
        let io_memory = u64::try_from(self.io_memory_bytes).unwrap_or(u64::MAX);
        let per_ring = align_up(io_memory, GLOMMIO_IO_MEMORY_ALIGN)
            .max(GLOMMIO_MIN_IO_MEMORY)
            .saturating_add(RING_OVERHEAD_BYTES);
        let executors = u64::try_from(self.executors).unwrap_or(u64::MAX);
        executors
            .saturating_mul(RINGS_PER_EXECUTOR)
            .saturating_mul(per_ring)
            .saturating_add(MEMLOCK_SLACK_BYTES)
            .max(GLOMMIO_MIN_MEMLOCK_BYTES)
    }
}

/// Locked memory `ensure` insists on: [`Requirements::memlock_bytes`] when the
/// kernel charges this process's io_uring registrations to `RLIMIT_MEMLOCK`,
/// and only glommio's own floor when it does not (the process has
/// `CAP_IPC_LOCK`).
pub fn memlock_need(req: &Requirements, charged: bool) -> u64 {
    if charged {
        req.memlock_bytes()
    } else {
        GLOMMIO_MIN_MEMLOCK_BYTES
    }
}

/// Rounds `value` up to a multiple of the power of two `align`, saturating at
/// the largest such multiple.
fn align_up(value: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    value
        .checked_add(align - 1)
        .map_or(!(align - 1), |v| v & !(align - 1))
}

/// One resource limit in bytes; [`RLIM_INFINITY`] means unlimited. The kernel
/// keeps `soft <= hard`, but values built by hand are not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: u64,
    pub hard: u64,
}

impl Limit {
    /// Both limits unlimited.
    pub const UNLIMITED: Limit = Limit {
        soft: RLIM_INFINITY,
        hard: RLIM_INFINITY,
    };

    /// Whether the soft limit (the one the kernel enforces) covers `need` bytes.
    pub fn covers(&self, need: u64) -> bool {
        self.soft >= need
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "soft {}, hard {}", Bytes(self.soft), Bytes(self.hard))
    }
}

/// A byte count for messages: exact, in the largest binary unit that divides
/// it, with [`RLIM_INFINITY`] shown as `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n == RLIM_INFINITY {
            f.write_str("unlimited")
        } else if n != 0 && n % GIB == 0 {
            write!(f, "{} GiB", n / GIB)
        } else if n != 0 && n % MIB == 0 {
            write!(f, "{} MiB", n / MIB)
        } else if n != 0 && n % KIB == 0 {
            write!(f, "{} KiB", n / KIB)
        } else {
            write!(f, "{n} bytes")
        }
    }
}

/// What to do about `RLIMIT_MEMLOCK`; every target it carries has
/// `need <= to.soft <= to.hard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemlockPlan {
    /// The soft limit already covers the need; change nothing.
    Sufficient,
    /// The hard limit covers the need; any process may raise its soft limit up
    /// to it. `to.hard` is the current hard limit and `to.soft` equals it.
    RaiseSoft { to: Limit },
    /// The hard limit is below the need; raising it takes root or
    /// `CAP_SYS_RESOURCE`. `to` is `need` for both limits.
    RaiseHard { to: Limit },
}

/// Decides how to get the soft `RLIMIT_MEMLOCK` to at least `need` bytes.
///
/// Rule: never lower anything; when the hard limit allows it, raise the soft
/// limit all the way to the hard limit rather than just to `need`, because the
/// kernel counts locked pages per *user*, so other processes of the same user
/// (a second broker, or the previous instance whose rings are still being torn
/// down after a restart) eat into the same budget; only when the hard
/// limit itself is too low, raise both to exactly `need`, overriding the
/// administrator's ceiling no further than this process needs.
pub fn plan_memlock(current: Limit, need: u64) -> MemlockPlan {
    if current.covers(need) {
        MemlockPlan::Sufficient
    } else if current.hard >= need {
        MemlockPlan::RaiseSoft {
            to: Limit {
                soft: current.hard,
                hard: current.hard,
            },
        }
    } else {
        MemlockPlan::RaiseHard {
            to: Limit {
                soft: need,
                hard: need,
            },
        }
    }
}

/// The `kernel.io_uring_disabled` sysctl as read at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoUringSysctl {
    /// The file does not exist: a kernel before 6.6, which has no kill switch.
    Absent,
    /// `0`: every process may create rings.
    Enabled,
    /// `1`: only `CAP_SYS_ADMIN` processes and members of the group named by
    /// `kernel.io_uring_group` may create rings.
    GroupOnly,
    /// `2`: nobody may create rings.
    Disabled,
    /// A value this code does not know, kept verbatim (trimmed).
    Unrecognised(String),
    /// The file exists but could not be read; holds the error text.
    Unreadable(String),
}

impl fmt::Display for IoUringSysctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoUringSysctl::Absent => f.write_str("kernel.io_uring_disabled absent"),
            IoUringSysctl::Enabled => f.write_str("kernel.io_uring_disabled=0"),
            IoUringSysctl::GroupOnly => f.write_str("kernel.io_uring_disabled=1"),
            IoUringSysctl::Disabled => f.write_str("kernel.io_uring_disabled=2"),
            IoUringSysctl::Unrecognised(v) => write!(f, "kernel.io_uring_disabled={v:?}"),
            IoUringSysctl::Unreadable(e) => write!(f, "kernel.io_uring_disabled unreadable ({e})"),
        }
    }
}

/// Parses the contents of `/proc/sys/kernel/io_uring_disabled`.
pub fn parse_io_uring_disabled(text: &str) -> IoUringSysctl {
    match text.trim() {
        "0" => IoUringSysctl::Enabled,
        "1" => IoUringSysctl::GroupOnly,
        "2" => IoUringSysctl::Disabled,
        other => IoUringSysctl::Unrecognised(other.to_owned()),
    }
}

/// io_uring as found by the probe: a real one-entry ring was created and
/// closed, and `sysctl` is what the kill switch said at the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoUringStatus {
    pub sysctl: IoUringSysctl,
}

impl fmt::Display for IoUringStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "available ({})", self.sysctl)
    }
}

/// What preflight found and did, for the start-up log line; when `raised` is
/// false, `memlock_after == memlock_before`; `memlock_after.soft >= need`.
#[derive(Debug, Clone)]
pub struct PreflightReport {
    pub memlock_before: Limit,
    pub memlock_after: Limit,
    pub raised: bool,
    pub io_uring: IoUringStatus,
    /// Bytes of `RLIMIT_MEMLOCK` required, from [`memlock_need`].
    pub need: u64,
    /// Whether the kernel charges this process's io_uring registrations to
    /// `RLIMIT_MEMLOCK` (false with `CAP_IPC_LOCK`).
    pub memlock_charged: bool,
}

impl fmt::Display for PreflightReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RLIMIT_MEMLOCK {}", self.memlock_after)?;
        if self.raised {
            write!(f, " (raised from {})", self.memlock_before)?;
        } else {
            f.write_str(" (unchanged)")?;
        }
        if self.memlock_charged {
            write!(f, ", need {}", Bytes(self.need))?;
        } else {
            write!(
                f,
                ", need {} (io_uring buffers not charged: CAP_IPC_LOCK)",
                Bytes(self.need)
            )?;
        }
        write!(f, "; io_uring {}", self.io_uring)
    }
}

/// Why the process must not start. Each message is one self-contained
/// paragraph naming the fix; causes are spelled out in it rather than chained
/// through `Error::source`.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// No io_uring ring could be created; `reason` says why, `fix` what to do.
    #[error(
        "io_uring is unavailable: {reason}. strata does all its I/O through io_uring (glommio) and cannot run without it. Fix: {fix}."
    )]
    IoUringUnavailable { reason: String, fix: String },

    /// The soft `RLIMIT_MEMLOCK` is below `need` and could not be raised;
    /// `source_err` is the failed `setrlimit`, or `None` if it claimed success
    /// but the limit read back was still short.
    #[error("{}", memlock_too_low_message(*.need, *.soft, *.hard, .source_err.as_ref()))]
    MemlockTooLow {
        need: u64,
        soft: u64,
        hard: u64,
        source_err: Option<io::Error>,
    },

    /// A `getrlimit`/`setrlimit` call that cannot fail in practice did:
    /// reading the limit, or restoring it after the charge probe.
    #[error("{call}(RLIMIT_MEMLOCK) failed unexpectedly: {source_err}")]
    Rlimit {
        call: &'static str,
        source_err: io::Error,
    },
}

/// The `MemlockTooLow` paragraph.
fn memlock_too_low_message(need: u64, soft: u64, hard: u64, err: Option<&io::Error>) -> String {
    let why = match err {
        Some(e) if e.raw_os_error() == Some(libc::EPERM) => format!(
            "raising the hard limit needs root or CAP_SYS_RESOURCE, which this process lacks (setrlimit: {e})"
        ),
        Some(e) => format!("setrlimit failed: {e}"),
        None => "setrlimit reported success but the limit read back is still too low".to_owned(),
    };
    let need_kib = need.div_ceil(KIB);
    format!(
        "the locked-memory limit (RLIMIT_MEMLOCK) is too low: strata needs {need} ({need_bytes} bytes) \
         because glommio registers each executor's io_memory with {RINGS_PER_EXECUTOR} io_uring rings, \
         but the soft limit is {soft} and the hard limit is {hard}, and {why}. Short of it glommio silently \
         falls back to unregistered buffers, or panics if not even its probe ring fits, and refuses to \
         start below 512 KiB. Fix, any one of: run `ulimit -l unlimited` (or at least \
         `ulimit -l {need_kib}`, in KiB) in the shell that starts strata (raising the hard limit this \
         way needs root); set `LimitMEMLOCK=infinity` in the [Service] section of its systemd unit \
         (see tuning/strata.service); or add `strata soft memlock unlimited` and `strata hard memlock unlimited` \
         lines (for the user strata runs as) to /etc/security/limits.conf or a file in /etc/security/limits.d/ \
         (see tuning/limits.d-strata.conf) and log in again. Alternatively give strata CAP_IPC_LOCK \
         (`AmbientCapabilities=CAP_IPC_LOCK` in the unit), which exempts io_uring buffers from the limit.",
        need = Bytes(need),
        need_bytes = need,
        soft = Bytes(soft),
        hard = Bytes(hard),
    )
}

/// Maps a failed `io_uring_setup` (`errno`) and the kill-switch state to a
/// precise `(reason, fix)` pair.
pub fn diagnose_io_uring_failure(errno: i32, sysctl: &IoUringSysctl) -> (String, String) {
    const SECCOMP_FIX: &str =
        "run it with a seccomp profile that allows io_uring_setup, io_uring_enter \
         and io_uring_register (e.g. `docker run --security-opt seccomp=<profile.json>` or \
         `securityContext.seccompProfile` in Kubernetes)";
    match (errno, sysctl) {
        (libc::EPERM, IoUringSysctl::Disabled) => (
            "io_uring_setup returned EPERM because kernel.io_uring_disabled=2 disables io_uring for every process"
                .to_owned(),
            "run `sysctl -w kernel.io_uring_disabled=0` as root and persist it with a \
             `kernel.io_uring_disabled = 0` line in /etc/sysctl.d/"
                .to_owned(),
        ),
        (libc::EPERM, IoUringSysctl::GroupOnly) => (
            "io_uring_setup returned EPERM because kernel.io_uring_disabled=1 restricts io_uring to \
             CAP_SYS_ADMIN processes and members of the group in kernel.io_uring_group, and this process is neither"
                .to_owned(),
            "add the user strata runs as to the group whose id `sysctl kernel.io_uring_group` prints \
             (set one if it is -1), or run `sysctl -w kernel.io_uring_disabled=0` as root and persist it in /etc/sysctl.d/"
                .to_owned(),
        ),
        (libc::EPERM, _) => (
            format!(
                "io_uring_setup returned EPERM although the kill switch allows it ({sysctl}): a seccomp filter \
                 or security module is blocking io_uring, as the default seccomp profiles of Docker 25+ \
                 and containerd 2.0+ do"
            ),
            format!(
                "if strata runs in a container, {SECCOMP_FIX}; otherwise look for the denial in the \
                 SELinux/AppArmor audit log (`journalctl -k`, /var/log/audit/audit.log)"
            ),
        ),
        (libc::ENOSYS, _) => (
            "io_uring_setup returned ENOSYS: the kernel predates io_uring (Linux 5.1) or was built without \
             CONFIG_IO_URING, or a seccomp filter answers ENOSYS for it"
                .to_owned(),
            format!(
                "run on Linux 5.8 or newer (glommio's minimum) built with CONFIG_IO_URING=y; inside a container, {SECCOMP_FIX}"
            ),
        ),
        (libc::ENOMEM, _) => (
            "io_uring_setup returned ENOMEM: not even a one-entry ring could be allocated and charged, \
             which usually means RLIMIT_MEMLOCK is exhausted (ring memory counts against it on kernels \
             before 5.12 and on some recent ones) or the machine is out of memory"
                .to_owned(),
            "raise the locked-memory limit: `ulimit -l unlimited` in the shell, `LimitMEMLOCK=infinity` in \
             the systemd unit, or `memlock` lines in /etc/security/limits.conf"
                .to_owned(),
        ),
        (other, _) => (
            format!(
                "io_uring_setup failed: {} ({sysctl})",
                io::Error::from_raw_os_error(other)
            ),
            "check `dmesg` for io_uring messages and make sure the kernel is Linux 5.8 or newer with io_uring enabled"
                .to_owned(),
        ),
    }
}

/// Checks io_uring, then raises `RLIMIT_MEMLOCK` to cover `req`, logging what
/// it found and did. Call it once, before building any executor.
///
/// While it runs, the soft `RLIMIT_MEMLOCK` is briefly set to zero (see
/// [`MemlockCharge`]), so call it before starting other threads that lock
/// memory or create io_uring rings.
pub fn ensure(req: &Requirements) -> Result<PreflightReport, PreflightError> {
    let (ring, io_uring) = open_io_uring()?;
    let before = memlock_limit()?;
    let memlock_charged = match memlock_charged(ring, before)? {
        MemlockCharge::Charged => true,
        MemlockCharge::Exempt => false,
        MemlockCharge::Unknown(e) => {
            warn!(error = %e, "preflight: could not tell whether io_uring buffers are charged to RLIMIT_MEMLOCK; assuming they are");
            true
        }
    };
    let need = memlock_need(req, memlock_charged);
    let plan = plan_memlock(before, need);
    let target = match plan {
        MemlockPlan::Sufficient => {
            info!(
                need = %Bytes(need),
                memlock = %before,
                memlock_charged,
                io_uring = %io_uring,
                executors = req.executors,
                io_memory = %Bytes(u64::try_from(req.io_memory_bytes).unwrap_or(u64::MAX)),
                "preflight: RLIMIT_MEMLOCK already sufficient"
            );
            return Ok(PreflightReport {
                memlock_before: before,
                memlock_after: before,
                raised: false,
                io_uring,
                need,
                memlock_charged,
            });
        }
        MemlockPlan::RaiseSoft { to } => to,
        MemlockPlan::RaiseHard { to } => {
            warn!(
                need = %Bytes(need),
                memlock = %before,
                "preflight: hard RLIMIT_MEMLOCK is below what strata needs; trying to raise it \
                 (needs root or CAP_SYS_RESOURCE); set LimitMEMLOCK=infinity or memlock limits \
                 so that this is not necessary"
            );
            to
        }
    };
    let too_low = |source_err| PreflightError::MemlockTooLow {
        need,
        soft: before.soft,
        hard: before.hard,
        source_err,
    };
    set_memlock(target).map_err(|e| too_low(Some(e)))?;
    let after = memlock_limit()?;
    if !after.covers(need) {
        return Err(too_low(None));
    }
    info!(
        need = %Bytes(need),
        before = %before,
        after = %after,
        memlock_charged,
        io_uring = %io_uring,
        executors = req.executors,
        io_memory = %Bytes(u64::try_from(req.io_memory_bytes).unwrap_or(u64::MAX)),
        "preflight: raised RLIMIT_MEMLOCK"
    );
    Ok(PreflightReport {
        memlock_before: before,
        memlock_after: after,
        raised: true,
        io_uring,
        need,
        memlock_charged,
    })
}

/// Creates and closes a one-entry io_uring ring; on failure, explains why
/// using the errno and the `kernel.io_uring_disabled` sysctl.
pub fn check_io_uring() -> Result<IoUringStatus, PreflightError> {
    open_io_uring().map(|(_ring, status)| status)
}

/// [`check_io_uring`], keeping the ring open for the charge probe.
fn open_io_uring() -> Result<(OwnedFd, IoUringStatus), PreflightError> {
    let ring = create_probe_ring();
    let sysctl = read_io_uring_sysctl();
    match ring {
        Ok(ring) => Ok((ring, IoUringStatus { sysctl })),
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(0);
            let (reason, fix) = diagnose_io_uring_failure(errno, &sysctl);
            Err(PreflightError::IoUringUnavailable { reason, fix })
        }
    }
}

/// Whether the kernel charges this process's io_uring buffer registrations
/// to `RLIMIT_MEMLOCK`.
#[derive(Debug)]
pub enum MemlockCharge {
    /// Registration failed with `ENOMEM` under a zero limit: it is charged.
    Charged,
    /// Registration succeeded under a zero limit: not charged (`CAP_IPC_LOCK`).
    Exempt,
    /// Registration failed otherwise; holds that error.
    Unknown(io::Error),
}

/// Asks the kernel directly: with the soft limit briefly at zero, registers a
/// one-page buffer on `ring` (created by this process, so with its
/// credentials), then restores `current` and closes `ring`. Any charge at all
/// exceeds zero, so success means registrations are exempt.
fn memlock_charged(ring: OwnedFd, current: Limit) -> Result<MemlockCharge, PreflightError> {
    let mut page = vec![0u8; CHARGE_PROBE_BYTES];
    set_memlock(Limit {
        soft: 0,
        hard: current.hard,
    })
    .map_err(|source_err| PreflightError::Rlimit {
        call: "setrlimit",
        source_err,
    })?;
    let registered = register_buffer(&ring, &mut page);
    // Close the ring, dropping the registration, while `page` is still alive.
    drop(ring);
    set_memlock(current).map_err(|source_err| PreflightError::Rlimit {
        call: "setrlimit",
        source_err,
    })?;
    Ok(match registered {
        Ok(()) => MemlockCharge::Exempt,
        Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => MemlockCharge::Charged,
        Err(e) => MemlockCharge::Unknown(e),
    })
}

/// The process's current `RLIMIT_MEMLOCK`.
pub fn memlock_limit() -> Result<Limit, PreflightError> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable `struct rlimit` for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) };
    if rc != 0 {
        return Err(PreflightError::Rlimit {
            call: "getrlimit",
            source_err: io::Error::last_os_error(),
        });
    }
    Ok(Limit {
        soft: rl.rlim_cur,
        hard: rl.rlim_max,
    })
}

/// Sets `RLIMIT_MEMLOCK` to `to`.
fn set_memlock(to: Limit) -> io::Result<()> {
    let rl = libc::rlimit {
        rlim_cur: to.soft,
        rlim_max: to.hard,
    };
    // SAFETY: `rl` is a valid `struct rlimit` for the duration of the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rl) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's `struct io_uring_params`, zeroed: the probe asks for no flags,
/// and the kernel fills in the rest, which the probe ignores.
#[repr(C, align(8))]
struct IoUringParams([u8; IO_URING_PARAMS_BYTES]);

/// Creates a one-entry ring with `io_uring_setup(2)`; dropping the result
/// closes it.
fn create_probe_ring() -> io::Result<OwnedFd> {
    let mut params = IoUringParams([0; IO_URING_PARAMS_BYTES]);
    // SAFETY: io_uring_setup(entries, params) reads and writes exactly
    // `sizeof(struct io_uring_params)` (120) bytes at `params`, which is a
    // valid, writable, zeroed buffer of that size for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            PROBE_RING_ENTRIES,
            std::ptr::addr_of_mut!(params),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(ret)
        .map_err(|_| io::Error::other(format!("io_uring_setup returned a bad fd {ret}")))?;
    // SAFETY: `fd` is the ring descriptor just returned to us and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Registers `buf` as the fixed buffer table of `ring` (`IORING_REGISTER_BUFFERS`).
/// The registration lasts until the ring is closed; close it before `buf` is freed.
fn register_buffer(ring: &OwnedFd, buf: &mut [u8]) -> io::Result<()> {
    const ONE_BUFFER: libc::c_uint = 1;
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the kernel reads one `struct iovec` at `&iov` and pins the pages
    // of `buf`, valid writable memory of `buf.len()` bytes; it writes to them
    // only for fixed-buffer requests, which are never submitted on this ring.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring.as_raw_fd(),
            IORING_REGISTER_BUFFERS,
            std::ptr::addr_of!(iov),
            ONE_BUFFER,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads `kernel.io_uring_disabled`; a missing file means a kernel without the switch.
fn read_io_uring_sysctl() -> IoUringSysctl {
    match std::fs::read_to_string(IO_URING_DISABLED_SYSCTL) {
        Ok(text) => parse_io_uring_disabled(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => IoUringSysctl::Absent,
        Err(e) => IoUringSysctl::Unreadable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEED: u64 = 100 * MIB;

    fn limit(soft: u64, hard: u64) -> Limit {
        Limit { soft, hard }
    }

    #[test]
    fn already_enough_changes_nothing() {
        assert_eq!(
            plan_memlock(limit(NEED, NEED), NEED),
            MemlockPlan::Sufficient
        );
        assert_eq!(
            plan_memlock(limit(2 * NEED, 4 * NEED), NEED),
            MemlockPlan::Sufficient
        );
    }

    #[test]
    fn soft_below_need_with_enough_hard_raises_soft_to_hard() {
        assert_eq!(
            plan_memlock(limit(8 * MIB, 256 * MIB), NEED),
            MemlockPlan::RaiseSoft {
                to: limit(256 * MIB, 256 * MIB)
            }
        );
        // Hard exactly equal to the need is enough.
        assert_eq!(
            plan_memlock(limit(8 * MIB, NEED), NEED),
            MemlockPlan::RaiseSoft {
                to: limit(NEED, NEED)
            }
        );
    }

    #[test]
    fn hard_below_need_needs_privilege_and_targets_need() {
        assert_eq!(
            plan_memlock(limit(8 * MIB, 8 * MIB), NEED),
            MemlockPlan::RaiseHard {
                to: limit(NEED, NEED)
            }
        );
        assert_eq!(
            plan_memlock(limit(8 * MIB, NEED - 1), NEED),
            MemlockPlan::RaiseHard {
                to: limit(NEED, NEED)
            }
        );
    }

    #[test]
    fn infinity_handling() {
        assert_eq!(
            plan_memlock(Limit::UNLIMITED, u64::MAX - 1),
            MemlockPlan::Sufficient
        );
        assert_eq!(
            plan_memlock(limit(8 * MIB, RLIM_INFINITY), NEED),
            MemlockPlan::RaiseSoft {
                to: Limit::UNLIMITED
            }
        );
        // A saturated requirement is only met by an unlimited soft limit.
        assert_eq!(
            plan_memlock(limit(GIB, RLIM_INFINITY), RLIM_INFINITY),
            MemlockPlan::RaiseSoft {
                to: Limit::UNLIMITED
            }
        );
    }

    #[test]
    fn every_plan_target_covers_need_and_keeps_soft_below_hard() {
        let values = [
            0,
            KIB,
            8 * MIB,
            NEED - 1,
            NEED,
            NEED + 1,
            GIB,
            RLIM_INFINITY,
        ];
        for &soft in &values {
            for &hard in values.iter().filter(|&&h| h >= soft) {
                let current = limit(soft, hard);
                match plan_memlock(current, NEED) {
                    MemlockPlan::Sufficient => assert!(soft >= NEED),
                    MemlockPlan::RaiseSoft { to } | MemlockPlan::RaiseHard { to } => {
                        assert!(to.soft >= NEED, "{current:?} -> {to:?}");
                        assert!(to.soft <= to.hard, "{current:?} -> {to:?}");
                        assert!(to.soft >= soft, "never lowers soft: {current:?} -> {to:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn memlock_bytes_is_three_rings_per_executor_plus_slack() {
        let req = Requirements {
            executors: 4,
            io_memory_bytes: 10 * MIB as usize,
        };
        assert_eq!(
            req.memlock_bytes(),
            4 * 3 * (10 * MIB + RING_OVERHEAD_BYTES) + MEMLOCK_SLACK_BYTES
        );
    }

    #[test]
    fn memlock_bytes_follows_glommio_rounding() {
        // glommio rounds io_memory up to 4 KiB and to at least 64 KiB.
        let odd = Requirements {
            executors: 1,
            io_memory_bytes: 4097,
        };
        assert_eq!(
            odd.memlock_bytes(),
            3 * (64 * KIB + RING_OVERHEAD_BYTES) + MEMLOCK_SLACK_BYTES
        );
        let unaligned = Requirements {
            executors: 2,
            io_memory_bytes: (MIB + 1) as usize,
        };
        assert_eq!(
            unaligned.memlock_bytes(),
            2 * 3 * (MIB + 4 * KIB + RING_OVERHEAD_BYTES) + MEMLOCK_SLACK_BYTES
        );
        let none = Requirements {
            executors: 0,
            io_memory_bytes: 0,
        };
        assert_eq!(none.memlock_bytes(), MEMLOCK_SLACK_BYTES);
        const { assert!(MEMLOCK_SLACK_BYTES >= GLOMMIO_MIN_MEMLOCK_BYTES) };
    }

    #[test]
    fn memlock_bytes_saturates() {
        let huge = Requirements {
            executors: usize::MAX,
            io_memory_bytes: usize::MAX,
        };
        assert_eq!(huge.memlock_bytes(), u64::MAX);
    }

    #[test]
    fn limit_display_shows_unlimited() {
        assert_eq!(
            Limit::UNLIMITED.to_string(),
            "soft unlimited, hard unlimited"
        );
        assert_eq!(
            limit(8 * MIB, RLIM_INFINITY).to_string(),
            "soft 8 MiB, hard unlimited"
        );
        assert_eq!(Bytes(3 * GIB).to_string(), "3 GiB");
        assert_eq!(Bytes(1536 * KIB).to_string(), "1536 KiB");
        assert_eq!(Bytes(4097).to_string(), "4097 bytes");
        assert_eq!(Bytes(0).to_string(), "0 bytes");
    }

    #[test]
    fn memlock_error_names_the_fixes() {
        let err = PreflightError::MemlockTooLow {
            need: NEED,
            soft: 8 * MIB,
            hard: 8 * MIB,
            source_err: Some(io::Error::from_raw_os_error(libc::EPERM)),
        };
        let msg = err.to_string();
        for needle in [
            "ulimit -l unlimited",
            "ulimit -l 102400",
            "LimitMEMLOCK=infinity",
            "/etc/security/limits.conf",
            "memlock unlimited",
            "CAP_IPC_LOCK",
            "100 MiB",
            "soft limit is 8 MiB",
            "CAP_SYS_RESOURCE",
        ] {
            assert!(msg.contains(needle), "missing {needle:?} in: {msg}");
        }
        assert!(!msg.contains('\n'), "one paragraph: {msg}");

        let silent = PreflightError::MemlockTooLow {
            need: NEED,
            soft: 8 * MIB,
            hard: 8 * MIB,
            source_err: None,
        };
        let msg = silent.to_string();
        assert!(msg.contains("read back"), "{msg}");
        assert!(msg.contains("LimitMEMLOCK=infinity"), "{msg}");
    }

    #[test]
    fn sysctl_parsing() {
        assert_eq!(parse_io_uring_disabled("0\n"), IoUringSysctl::Enabled);
        assert_eq!(parse_io_uring_disabled("1\n"), IoUringSysctl::GroupOnly);
        assert_eq!(parse_io_uring_disabled("2"), IoUringSysctl::Disabled);
        assert_eq!(
            parse_io_uring_disabled(" 7 \n"),
            IoUringSysctl::Unrecognised("7".to_owned())
        );
    }

    #[test]
    fn io_uring_failures_map_to_precise_reasons() {
        let (reason, fix) = diagnose_io_uring_failure(libc::EPERM, &IoUringSysctl::Disabled);
        assert!(reason.contains("io_uring_disabled=2"), "{reason}");
        assert!(
            fix.contains("sysctl -w kernel.io_uring_disabled=0"),
            "{fix}"
        );

        let (reason, fix) = diagnose_io_uring_failure(libc::EPERM, &IoUringSysctl::GroupOnly);
        assert!(reason.contains("io_uring_disabled=1"), "{reason}");
        assert!(fix.contains("io_uring_group"), "{fix}");

        for sysctl in [IoUringSysctl::Enabled, IoUringSysctl::Absent] {
            let (reason, fix) = diagnose_io_uring_failure(libc::EPERM, &sysctl);
            assert!(reason.contains("seccomp"), "{reason}");
            assert!(fix.contains("io_uring_setup"), "{fix}");
        }

        let (reason, fix) = diagnose_io_uring_failure(libc::ENOSYS, &IoUringSysctl::Absent);
        assert!(reason.contains("ENOSYS"), "{reason}");
        assert!(fix.contains("Linux 5.8"), "{fix}");

        let (reason, fix) = diagnose_io_uring_failure(libc::ENOMEM, &IoUringSysctl::Enabled);
        assert!(reason.contains("ENOMEM"), "{reason}");
        assert!(fix.contains("ulimit -l unlimited"), "{fix}");

        let (reason, _) = diagnose_io_uring_failure(libc::EINVAL, &IoUringSysctl::Enabled);
        assert!(reason.contains("io_uring_setup failed"), "{reason}");
    }

    #[test]
    fn io_uring_error_display_is_one_paragraph_with_fix() {
        let (reason, fix) = diagnose_io_uring_failure(libc::EPERM, &IoUringSysctl::Disabled);
        let msg = PreflightError::IoUringUnavailable { reason, fix }.to_string();
        assert!(msg.starts_with("io_uring is unavailable: "), "{msg}");
        assert!(msg.contains("Fix: run `sysctl -w"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn report_display() {
        let mut report = PreflightReport {
            memlock_before: limit(8 * MIB, 8 * MIB),
            memlock_after: limit(NEED, NEED),
            raised: true,
            io_uring: IoUringStatus {
                sysctl: IoUringSysctl::Enabled,
            },
            need: NEED,
            memlock_charged: true,
        };
        assert_eq!(
            report.to_string(),
            "RLIMIT_MEMLOCK soft 100 MiB, hard 100 MiB (raised from soft 8 MiB, hard 8 MiB), \
             need 100 MiB; io_uring available (kernel.io_uring_disabled=0)"
        );
        report.raised = false;
        report.memlock_before = report.memlock_after;
        report.memlock_charged = false;
        report.need = GLOMMIO_MIN_MEMLOCK_BYTES;
        assert_eq!(
            report.to_string(),
            "RLIMIT_MEMLOCK soft 100 MiB, hard 100 MiB (unchanged), need 512 KiB \
             (io_uring buffers not charged: CAP_IPC_LOCK); io_uring available (kernel.io_uring_disabled=0)"
        );
    }

    #[test]
    fn uncharged_processes_need_only_glommios_floor() {
        let req = Requirements {
            executors: 8,
            io_memory_bytes: 64 * MIB as usize,
        };
        assert_eq!(memlock_need(&req, true), req.memlock_bytes());
        assert_eq!(memlock_need(&req, false), GLOMMIO_MIN_MEMLOCK_BYTES);
        // A default 8 MiB limit is plenty when uncharged, far too little otherwise.
        let default = limit(8 * MIB, 8 * MIB);
        assert_eq!(
            plan_memlock(default, memlock_need(&req, false)),
            MemlockPlan::Sufficient
        );
        assert!(matches!(
            plan_memlock(default, memlock_need(&req, true)),
            MemlockPlan::RaiseHard { .. }
        ));
    }
}
