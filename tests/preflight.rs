//! Integration tests for `strata::preflight`: the real syscalls, in this
//! process and in child processes that start from a deliberately low
//! `RLIMIT_MEMLOCK`.
//!
//! A child is this test binary re-invoked with `--exact child_process_entry`
//! and `STRATA_PREFLIGHT_CHILD=<scenario>` in its environment. It sets its
//! limit, drops to the unprivileged user `nobody` where the scenario says so
//! and it runs as root (losing every capability), calls `preflight::ensure`,
//! and prints `KEY=value` lines that the parent checks.
//!
//! Two capabilities change the outcome: `CAP_SYS_RESOURCE` lets a process
//! raise its hard limit, and `CAP_IPC_LOCK` exempts its io_uring buffers from
//! the limit altogether. Some containers give root the second but not the
//! first. Tests that need one of them print `SKIPPED ...` with the reason and
//! pass when it is missing; the rest need no privilege beyond root's
//! ability to become `nobody`, and without that they run as the current user.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Mutex;

use strata::preflight::{self, Limit, PreflightError, Requirements, GLOMMIO_MIN_MEMLOCK_BYTES};

/// Environment variable naming the scenario a child process should run.
const CHILD_ENV: &str = "STRATA_PREFLIGHT_CHILD";

/// Name of the `#[test]` that serves as the child's entry point.
const CHILD_TEST_NAME: &str = "child_process_entry";

/// The low limit children start from: below glommio's 512 KiB floor, so even
/// a process whose buffers are not charged must raise it.
const LOW_LIMIT_BYTES: u64 = 256 * 1024;

/// A limit above glommio's floor but far below what `LARGE` needs when charged.
const ONE_MIB: u64 = 1024 * 1024;

/// uid and gid of `nobody`, the unprivileged identity children drop to.
const NOBODY: u32 = 65534;

/// Capability bits (linux/capability.h) the tests look for.
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_RESOURCE: u32 = 24;

/// A requirement far above the usual 8 MiB default hard limit:
/// 2 executors × 3 rings × 16 MiB.
const LARGE: Requirements = Requirements {
    executors: 2,
    io_memory_bytes: 16 * 1024 * 1024,
};

/// A requirement that fits under the usual 8 MiB default hard limit:
/// 1 executor × 3 rings × 1 MiB.
const SMALL: Requirements = Requirements {
    executors: 1,
    io_memory_bytes: 1024 * 1024,
};

/// Start at (low, low) as we are and ask for `LARGE`: only CAP_SYS_RESOURCE passes.
const SCENARIO_RAISE_HARD: &str = "raise-hard";
/// Start at (low, inherited hard), become `nobody`, ask for `SMALL`.
const SCENARIO_RAISE_SOFT_UNPRIVILEGED: &str = "raise-soft-unprivileged";
/// Start at (low, low), become `nobody`, ask for `LARGE`: must fail.
const SCENARIO_FAIL_UNPRIVILEGED: &str = "fail-unprivileged";
/// Start at (1 MiB, 1 MiB) as we are and ask for `LARGE`: passes untouched
/// when CAP_IPC_LOCK exempts io_uring buffers.
const SCENARIO_IPC_LOCK_EXEMPT: &str = "ipc-lock-exempt";
/// Install a seccomp filter that fails io_uring_setup with EPERM, as
/// container runtimes' default profiles do, then ask for `SMALL`.
const SCENARIO_IO_URING_EPERM: &str = "io-uring-eperm";
/// Install a seccomp filter that fails io_uring_setup with ENOSYS, as a kernel
/// without io_uring would, then ask for `SMALL`.
const SCENARIO_IO_URING_ENOSYS: &str = "io-uring-enosys";

/// Serialises the tests that call into preflight in this process: `ensure`
/// briefly sets the soft limit to zero, which must not race with another
/// in-process ring creation.
static IN_PROCESS: Mutex<()> = Mutex::new(());

/// The effective capability set of this process, from /proc/self/status.
fn effective_caps() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("CapEff line in /proc/self/status")
}

fn has_cap(bit: u32) -> bool {
    effective_caps() & (1 << bit) != 0
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether this process can become `nobody` (and thereby shed its capabilities).
fn can_drop_to_nobody() -> bool {
    euid() == 0 && has_cap(CAP_SETUID) && has_cap(CAP_SETGID)
}

fn set_memlock(soft: u64, hard: u64) {
    let rl = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `rl` is a valid `struct rlimit` for the duration of the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rl) };
    assert_eq!(
        rc,
        0,
        "setrlimit(RLIMIT_MEMLOCK, {soft}, {hard}): {}",
        std::io::Error::last_os_error()
    );
}

/// Permanently becomes `nobody` (no supplementary groups), losing every capability.
fn drop_to_nobody() {
    // SAFETY: plain syscalls on process credentials; glibc applies them to all threads.
    unsafe {
        assert_eq!(
            libc::setgroups(0, std::ptr::null()),
            0,
            "setgroups: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::setgid(NOBODY),
            0,
            "setgid: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::setuid(NOBODY),
            0,
            "setuid: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(libc::geteuid(), NOBODY);
    }
}

/// Makes `io_uring_setup` fail with `errno` in the calling thread (the one
/// that then calls `ensure`). Needs no privilege thanks to `no_new_privs`.
fn block_io_uring_setup(errno: i32) {
    let errno = u32::try_from(errno).expect("errno is positive");
    let nr = u32::try_from(libc::SYS_io_uring_setup).expect("syscall number fits u32");
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: u16::try_from(code).expect("BPF code fits u16"),
        jt: 0,
        jf: 0,
        k,
    };
    let mut filter = [
        // A = seccomp_data.nr (offset 0).
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        // if A == io_uring_setup fall through, else skip one.
        libc::sock_filter {
            jf: 1,
            ..stmt(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, nr)
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | (errno & libc::SECCOMP_RET_DATA),
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).expect("filter length fits u16"),
        filter: filter.as_mut_ptr(),
    };
    const ON: libc::c_ulong = 1;
    const UNUSED: libc::c_ulong = 0;
    // SAFETY: prctl with these options reads only `prog` and the filter it
    // points to, both alive for the duration of the calls.
    unsafe {
        assert_eq!(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, ON, UNUSED, UNUSED, UNUSED),
            0,
            "PR_SET_NO_NEW_PRIVS: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::c_ulong::from(libc::SECCOMP_MODE_FILTER),
                std::ptr::addr_of!(prog)
            ),
            0,
            "PR_SET_SECCOMP: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Becomes `nobody` when this process can; reports whether it did.
fn drop_to_nobody_if_possible() -> bool {
    if can_drop_to_nobody() {
        drop_to_nobody();
        true
    } else {
        false
    }
}
/// Child entry point: does nothing unless `STRATA_PREFLIGHT_CHILD` is set.
#[test]
fn child_process_entry() {
    let Ok(scenario) = std::env::var(CHILD_ENV) else {
        return;
    };
    let inherited = preflight::memlock_limit().expect("getrlimit in child");
    let (req, dropped) = match scenario.as_str() {
        SCENARIO_RAISE_HARD => {
            set_memlock(LOW_LIMIT_BYTES, LOW_LIMIT_BYTES);
            (LARGE, false)
        }
        SCENARIO_RAISE_SOFT_UNPRIVILEGED => {
            set_memlock(LOW_LIMIT_BYTES.min(inherited.hard), inherited.hard);
            (SMALL, drop_to_nobody_if_possible())
        }
        SCENARIO_FAIL_UNPRIVILEGED => {
            set_memlock(LOW_LIMIT_BYTES, LOW_LIMIT_BYTES);
            (LARGE, drop_to_nobody_if_possible())
        }
        SCENARIO_IPC_LOCK_EXEMPT => {
            set_memlock(ONE_MIB, ONE_MIB);
            (LARGE, false)
        }
        SCENARIO_IO_URING_EPERM => {
            block_io_uring_setup(libc::EPERM);
            (SMALL, false)
        }
        SCENARIO_IO_URING_ENOSYS => {
            block_io_uring_setup(libc::ENOSYS);
            (SMALL, false)
        }
        other => panic!("unknown {CHILD_ENV} scenario {other:?}"),
    };
    // The harness has printed "test child_process_entry ... " without a newline.
    println!();
    println!("EUID={}", euid());
    println!("DROPPED={dropped}");
    println!("CAP_SYS_RESOURCE={}", has_cap(CAP_SYS_RESOURCE));
    println!("CAP_IPC_LOCK={}", has_cap(CAP_IPC_LOCK));
    println!("NEED_CHARGED={}", req.memlock_bytes());
    match preflight::ensure(&req) {
        Ok(report) => {
            let now = preflight::memlock_limit().expect("getrlimit after ensure");
            println!("RESULT=ok");
            println!("RAISED={}", report.raised);
            println!("CHARGED={}", report.memlock_charged);
            println!("REPORT_NEED={}", report.need);
            println!("BEFORE_SOFT={}", report.memlock_before.soft);
            println!("BEFORE_HARD={}", report.memlock_before.hard);
            println!("AFTER_SOFT={}", report.memlock_after.soft);
            println!("AFTER_HARD={}", report.memlock_after.hard);
            println!("NOW_SOFT={}", now.soft);
            println!("NOW_HARD={}", now.hard);
            println!("REPORT={report}");
        }
        Err(err) => {
            println!("RESULT=err");
            match &err {
                PreflightError::MemlockTooLow {
                    need,
                    soft,
                    hard,
                    source_err,
                } => {
                    println!("VARIANT=MemlockTooLow");
                    println!("ERR_NEED={need}");
                    println!("ERR_SOFT={soft}");
                    println!("ERR_HARD={hard}");
                    println!(
                        "ERR_ERRNO={}",
                        source_err
                            .as_ref()
                            .and_then(|e| e.raw_os_error())
                            .unwrap_or(0)
                    );
                }
                PreflightError::IoUringUnavailable { reason, fix } => {
                    println!("VARIANT=IoUringUnavailable");
                    println!("REASON={reason}");
                    println!("FIX={fix}");
                }
                _ => println!("VARIANT=other"),
            }
            println!("MESSAGE={err}");
        }
    }
}

/// Runs a child scenario and returns its `KEY=value` lines.
fn run_child(scenario: &str) -> HashMap<String, String> {
    let exe = std::env::current_exe().expect("current_exe");
    let output = Command::new(exe)
        .args([
            "--exact",
            CHILD_TEST_NAME,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, scenario)
        .output()
        .expect("spawn child test process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "child {scenario} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let fields: HashMap<String, String> = stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(
        fields.contains_key("RESULT"),
        "child {scenario} printed no RESULT (did --exact {CHILD_TEST_NAME} match?)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    println!("child {scenario}: {fields:?}");
    fields
}

fn field_u64(fields: &HashMap<String, String>, key: &str) -> u64 {
    fields
        .get(key)
        .unwrap_or_else(|| panic!("child printed no {key}: {fields:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key} is not a number ({e}): {fields:?}"))
}

/// The need `ensure` should have reported, given whether it found buffers charged.
fn expected_need(req: &Requirements, f: &HashMap<String, String>) -> u64 {
    if f["CHARGED"] == "true" {
        req.memlock_bytes()
    } else {
        GLOMMIO_MIN_MEMLOCK_BYTES
    }
}

/// Checks that a child which was to drop privileges really runs as `nobody`
/// and kept neither capability that would change the outcome.
fn assert_unprivileged(f: &HashMap<String, String>) {
    if can_drop_to_nobody() {
        assert_eq!(f["DROPPED"], "true", "{f:?}");
        assert_eq!(field_u64(f, "EUID"), u64::from(NOBODY), "{f:?}");
    }
    assert_eq!(f["CAP_SYS_RESOURCE"], "false", "{f:?}");
    assert_eq!(f["CAP_IPC_LOCK"], "false", "{f:?}");
}

/// Whether a child that was to be unprivileged still holds a capability
/// (because this process is not root, or cannot change user); prints why the
/// test is skipped if so.
fn child_kept_privilege(test: &str, f: &HashMap<String, String>) -> bool {
    let kept = f["CAP_SYS_RESOURCE"] == "true" || f["CAP_IPC_LOCK"] == "true";
    if kept {
        println!(
            "SKIPPED {test}: the child kept CAP_SYS_RESOURCE or CAP_IPC_LOCK (not root, or root \
             without CAP_SETUID/CAP_SETGID), so it cannot show the unprivileged outcome"
        );
    }
    kept
}

#[test]
fn ensure_in_this_process_raises_limit_to_at_least_need() {
    let _serial = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    // With CAP_SYS_RESOURCE ask for more than the hard limit; without it, for
    // something the hard limit allows.
    let req = if has_cap(CAP_SYS_RESOURCE) {
        LARGE
    } else {
        SMALL
    };
    let start = preflight::memlock_limit().expect("getrlimit");
    if !has_cap(CAP_SYS_RESOURCE) && start.hard < req.memlock_bytes() {
        println!(
            "SKIPPED ensure_in_this_process: hard RLIMIT_MEMLOCK is {} bytes, below the {} \
             this test may need, and this process lacks CAP_SYS_RESOURCE to raise it",
            start.hard,
            req.memlock_bytes()
        );
        return;
    }
    // Start below glommio's floor so ensure must act whether or not buffers
    // are charged; lowering needs no privilege.
    let low = LOW_LIMIT_BYTES.min(start.hard);
    set_memlock(low, start.hard);

    let report = preflight::ensure(&req).unwrap_or_else(|e| panic!("ensure failed: {e}"));
    println!("{report}");
    let after: Limit = preflight::memlock_limit().expect("getrlimit");
    assert!(report.raised, "{report}");
    assert_eq!(report.memlock_before.soft, low);
    assert_eq!(report.memlock_after, after);
    assert_eq!(
        report.need,
        preflight::memlock_need(&req, report.memlock_charged)
    );
    assert!(after.soft >= report.need, "{report}");
    assert!(after.soft <= after.hard);
    // Nothing may be lost: ensure never lowers a limit.
    assert!(after.hard >= start.hard);

    // A second call finds nothing left to do.
    let again = preflight::ensure(&req).unwrap_or_else(|e| panic!("second ensure failed: {e}"));
    assert!(!again.raised, "{again}");
    assert_eq!(again.memlock_after, after);
}

#[test]
fn io_uring_probe_creates_a_ring() {
    let _serial = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let status = preflight::check_io_uring().unwrap_or_else(|e| panic!("{e}"));
    println!("io_uring {status}");
}

#[test]
fn privileged_child_raises_hard_limit() {
    if !has_cap(CAP_SYS_RESOURCE) {
        println!(
            "SKIPPED privileged_child_raises_hard_limit: this process lacks CAP_SYS_RESOURCE \
             (euid {}), so no child of it may raise a hard limit",
            euid()
        );
        return;
    }
    let f = run_child(SCENARIO_RAISE_HARD);
    assert_eq!(f["RESULT"], "ok", "{f:?}");
    assert_eq!(f["RAISED"], "true", "{f:?}");
    let need = field_u64(&f, "REPORT_NEED");
    assert_eq!(need, expected_need(&LARGE, &f), "{f:?}");
    assert_eq!(field_u64(&f, "BEFORE_SOFT"), LOW_LIMIT_BYTES);
    assert_eq!(field_u64(&f, "BEFORE_HARD"), LOW_LIMIT_BYTES);
    // The hard limit was too low, so both go to exactly the need.
    assert_eq!(field_u64(&f, "NOW_SOFT"), need, "{f:?}");
    assert_eq!(field_u64(&f, "NOW_HARD"), need, "{f:?}");
    assert_eq!(field_u64(&f, "AFTER_SOFT"), need, "{f:?}");
    assert_eq!(field_u64(&f, "AFTER_HARD"), need, "{f:?}");
}

#[test]
fn unprivileged_child_raises_soft_limit_up_to_hard() {
    let hard = preflight::memlock_limit().expect("getrlimit").hard;
    let need = SMALL.memlock_bytes();
    if hard < need {
        println!(
            "SKIPPED unprivileged_child_raises_soft_limit_up_to_hard: the inherited hard \
             RLIMIT_MEMLOCK ({hard} bytes) is below the {need} bytes this test asks for"
        );
        return;
    }
    let f = run_child(SCENARIO_RAISE_SOFT_UNPRIVILEGED);
    if child_kept_privilege("unprivileged_child_raises_soft_limit_up_to_hard", &f) {
        return;
    }
    assert_unprivileged(&f);
    assert_eq!(f["RESULT"], "ok", "{f:?}");
    assert_eq!(f["RAISED"], "true", "{f:?}");
    assert_eq!(f["CHARGED"], "true", "{f:?}");
    assert_eq!(field_u64(&f, "REPORT_NEED"), need);
    assert_eq!(field_u64(&f, "BEFORE_SOFT"), LOW_LIMIT_BYTES.min(hard));
    // Soft goes all the way up to the hard limit, which stays where it was.
    let child_hard = field_u64(&f, "BEFORE_HARD");
    assert_eq!(field_u64(&f, "NOW_SOFT"), child_hard, "{f:?}");
    assert_eq!(field_u64(&f, "NOW_HARD"), child_hard, "{f:?}");
    assert!(field_u64(&f, "NOW_SOFT") >= need, "{f:?}");
}

#[test]
fn unprivileged_child_below_hard_limit_fails_naming_the_fix() {
    let f = run_child(SCENARIO_FAIL_UNPRIVILEGED);
    if child_kept_privilege(
        "unprivileged_child_below_hard_limit_fails_naming_the_fix",
        &f,
    ) {
        return;
    }
    assert_unprivileged(&f);
    assert_eq!(f["RESULT"], "err", "{f:?}");
    assert_eq!(f["VARIANT"], "MemlockTooLow", "{f:?}");
    assert_eq!(field_u64(&f, "ERR_NEED"), LARGE.memlock_bytes());
    assert_eq!(field_u64(&f, "ERR_SOFT"), LOW_LIMIT_BYTES);
    assert_eq!(field_u64(&f, "ERR_HARD"), LOW_LIMIT_BYTES);
    assert_eq!(
        field_u64(&f, "ERR_ERRNO"),
        u64::try_from(libc::EPERM).expect("EPERM is positive")
    );
    let message = &f["MESSAGE"];
    for needle in [
        "ulimit -l unlimited",
        "LimitMEMLOCK=infinity",
        "/etc/security/limits.conf",
        "memlock unlimited",
        "CAP_SYS_RESOURCE",
        "the soft limit is 256 KiB and the hard limit is 256 KiB",
    ] {
        assert!(message.contains(needle), "missing {needle:?} in: {message}");
    }
}

#[test]
fn child_with_cap_ipc_lock_needs_only_glommios_floor() {
    if !has_cap(CAP_IPC_LOCK) {
        println!(
            "SKIPPED child_with_cap_ipc_lock_needs_only_glommios_floor: this process lacks CAP_IPC_LOCK"
        );
        return;
    }
    let f = run_child(SCENARIO_IPC_LOCK_EXEMPT);
    if f.get("CHARGED").map(String::as_str) != Some("false") {
        // CAP_IPC_LOCK only counts in the initial user namespace.
        println!(
            "SKIPPED child_with_cap_ipc_lock_needs_only_glommios_floor: CAP_IPC_LOCK is present but \
             the kernel still charges io_uring buffers (user namespace?): {f:?}"
        );
        return;
    }
    // 1 MiB is far below LARGE's charged need, yet enough: nothing to raise.
    assert_eq!(f["RESULT"], "ok", "{f:?}");
    assert_eq!(f["RAISED"], "false", "{f:?}");
    assert_eq!(field_u64(&f, "REPORT_NEED"), GLOMMIO_MIN_MEMLOCK_BYTES);
    assert_eq!(field_u64(&f, "NOW_SOFT"), ONE_MIB);
    assert!(ONE_MIB < LARGE.memlock_bytes());
    assert!(f["REPORT"].contains("not charged"), "{f:?}");
}

#[test]
fn child_blocked_by_seccomp_eperm_gets_precise_io_uring_error() {
    let f = run_child(SCENARIO_IO_URING_EPERM);
    assert_eq!(f["RESULT"], "err", "{f:?}");
    assert_eq!(f["VARIANT"], "IoUringUnavailable", "{f:?}");
    let (reason, fix, message) = (&f["REASON"], &f["FIX"], &f["MESSAGE"]);
    assert!(reason.contains("EPERM"), "{reason}");
    // With the kill switch on, the sysctl is the better explanation; the
    // seccomp diagnosis applies when it allows io_uring.
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    match sysctl.as_str() {
        "1" | "2" => assert!(
            reason.contains(&format!("io_uring_disabled={sysctl}")),
            "{reason}"
        ),
        _ => {
            assert!(reason.contains("seccomp"), "{reason}");
            assert!(
                fix.contains("io_uring_setup, io_uring_enter and io_uring_register"),
                "{fix}"
            );
        }
    }
    assert!(
        message.starts_with("io_uring is unavailable: "),
        "{message}"
    );
    assert!(message.contains("Fix: "), "{message}");
}

#[test]
fn child_without_io_uring_syscall_gets_enosys_error() {
    let f = run_child(SCENARIO_IO_URING_ENOSYS);
    assert_eq!(f["RESULT"], "err", "{f:?}");
    assert_eq!(f["VARIANT"], "IoUringUnavailable", "{f:?}");
    assert!(f["REASON"].contains("ENOSYS"), "{f:?}");
    assert!(f["REASON"].contains("CONFIG_IO_URING"), "{f:?}");
    assert!(f["FIX"].contains("Linux 5.8"), "{f:?}");
}
