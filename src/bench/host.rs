//! The load generator's own footprint: which core each client thread is pinned to, and how much
//! CPU the whole process used (`getrusage`), printed so a reader can tell the generator was not
//! the bottleneck.

use serde::Serialize;

use super::error::{BenchError, Result};

/// Where the client threads run (`--cpus`). Invariant: `Cores` is non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuSpec {
    /// One core per client from the highest-numbered core down, never core 0 (where a broker's
    /// first data shard runs by default) unless it is the only core; clients share cores when
    /// there are more clients than cores.
    Auto,
    /// No pinning.
    None,
    /// These cores, one per client in turn.
    Cores(Vec<usize>),
}

/// Parses `--cpus`: `auto`, `none` or a comma-separated list of core ids.
pub fn parse_cpus(s: &str) -> std::result::Result<CpuSpec, String> {
    match s {
        "auto" => Ok(CpuSpec::Auto),
        "none" => Ok(CpuSpec::None),
        list => {
            let cores = list
                .split(',')
                .map(|c| c.trim().parse::<usize>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| format!("--cpus takes auto, none or core ids like 1,3 (got {s:?})"))?;
            if cores.is_empty() {
                return Err("--cpus needs at least one core".into());
            }
            Ok(CpuSpec::Cores(cores))
        }
    }
}

/// The core of each of `clients` clients (`None`: not pinned), given the machine's core ids.
pub fn plan(spec: &CpuSpec, clients: usize, machine: &[usize]) -> Result<Vec<Option<usize>>> {
    let pool: Vec<usize> = match spec {
        CpuSpec::None => return Ok(vec![None; clients]),
        CpuSpec::Auto if machine.len() <= 1 => return Ok(vec![None; clients]),
        CpuSpec::Auto => {
            let mut ids: Vec<usize> = machine.iter().copied().filter(|&c| c != 0).collect();
            ids.sort_unstable_by(|a, b| b.cmp(a));
            ids
        }
        CpuSpec::Cores(cores) => {
            if let Some(c) = cores.iter().find(|c| !machine.contains(c)) {
                return Err(BenchError::Invalid(format!(
                    "--cpus names core {c}, but this machine has cores {machine:?}"
                )));
            }
            cores.clone()
        }
    };
    Ok((0..clients).map(|i| Some(pool[i % pool.len()])).collect())
}

/// The core ids this process may run on.
pub fn machine_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// Pins the calling thread (and the threads it starts later, which inherit its mask) to `core`.
pub fn pin_current(core: Option<usize>) {
    if let Some(id) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            tracing::warn!(core = id, "could not pin a client thread");
        }
    }
}

/// How `plan` placed the clients, for the report: `produce-0 → core 1, …`.
pub fn describe_plan(names: &[String], cores: &[Option<usize>]) -> String {
    let machine = machine_cores().len();
    let placed: Vec<String> = names
        .iter()
        .zip(cores)
        .map(|(n, c)| match c {
            Some(c) => format!("{n} → core {c}"),
            None => format!("{n} unpinned"),
        })
        .collect();
    format!("{} ({machine} cores)", placed.join(", "))
}

/// CPU seconds this process has used so far, and the whole machine's busy seconds (all cores,
/// every process: the broker's and anyone else's too).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTimes {
    pub user_s: f64,
    pub sys_s: f64,
    pub machine_busy_s: f64,
}

/// Clock ticks per second of `/proc/stat`.
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Busy seconds of all cores since boot (`/proc/stat`: everything but idle and iowait); 0 when
/// unreadable. The kernel samples these at its timer ticks, so short bursts of work between
/// ticks can go uncounted: in light, bursty runs the figure read below the generator's own CPU
/// (which comes from `getrusage`, exact).
fn machine_busy_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let fields: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: f64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0.0) + fields.get(4).copied().unwrap_or(0.0);
    (total - idle) / ticks_per_sec()
}

/// `getrusage(RUSAGE_SELF)`: every thread of this process, finished ones included.
pub fn process_cpu() -> CpuTimes {
    let (user_s, sys_s) = rusage(libc::RUSAGE_SELF);
    CpuTimes {
        user_s,
        sys_s,
        machine_busy_s: machine_busy_s(),
    }
}

/// CPU seconds (user, sys) the calling thread has used since it started
/// (`getrusage(RUSAGE_THREAD)`).
pub fn thread_cpu() -> (f64, f64) {
    rusage(libc::RUSAGE_THREAD)
}

/// CPU seconds (user, sys) of `who` (`RUSAGE_SELF` or `RUSAGE_THREAD`).
fn rusage(who: libc::c_int) -> (f64, f64) {
    // SAFETY: `usage` is a valid, writable rusage; both `who` values exist on Linux.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

/// The load generator's CPU use over a run. Invariant: `cores` = (`user_s` + `sys_s`) / `wall_s`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuUse {
    pub user_s: f64,
    pub sys_s: f64,
    pub wall_s: f64,
    /// Cores' worth of CPU used on average (1.0 = one core fully busy).
    pub cores: f64,
    /// Cores' worth of CPU the whole machine used meanwhile (generator, broker, and others).
    pub machine_cores_busy: f64,
    /// Cores of the machine.
    pub machine_cores: usize,
}

impl CpuUse {
    /// From `start` (taken at `start_ns` on the `now_ns` clock) to now.
    pub fn since(start: CpuTimes, start_ns: u64) -> CpuUse {
        let wall_s = (super::clock::now_ns() - start_ns) as f64 / super::clock::NS_PER_SEC as f64;
        CpuUse::between(start, process_cpu(), wall_s)
    }

    pub fn between(start: CpuTimes, end: CpuTimes, wall_s: f64) -> CpuUse {
        let (user_s, sys_s) = (end.user_s - start.user_s, end.sys_s - start.sys_s);
        let per_wall = |s: f64| if wall_s > 0.0 { s / wall_s } else { 0.0 };
        CpuUse {
            user_s,
            sys_s,
            wall_s,
            cores: per_wall(user_s + sys_s),
            machine_cores_busy: per_wall(end.machine_busy_s - start.machine_busy_s),
            machine_cores: machine_cores().len(),
        }
    }

    /// One line for the report.
    pub fn line(&self) -> String {
        format!(
            "load generator CPU: {:.2} cores (user {:.2} s + sys {:.2} s in {:.1} s); whole machine \
             meanwhile: {:.2} of {} cores busy (broker, generator and anything else running)",
            self.cores,
            self.user_s,
            self.sys_s,
            self.wall_s,
            self.machine_cores_busy,
            self.machine_cores
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_pins_from_the_top_core_down_and_avoids_core_zero() {
        let m = [0, 1, 2, 3];
        assert_eq!(
            plan(&CpuSpec::Auto, 4, &m).unwrap(),
            vec![Some(3), Some(2), Some(1), Some(3)]
        );
        // Two cores: every client shares core 1.
        assert_eq!(
            plan(&CpuSpec::Auto, 2, &[0, 1]).unwrap(),
            vec![Some(1), Some(1)]
        );
        assert_eq!(plan(&CpuSpec::Auto, 2, &[0]).unwrap(), vec![None, None]);
        assert_eq!(plan(&CpuSpec::None, 1, &m).unwrap(), vec![None]);
        assert_eq!(
            plan(&CpuSpec::Cores(vec![2, 0]), 3, &m).unwrap(),
            vec![Some(2), Some(0), Some(2)]
        );
        assert!(plan(&CpuSpec::Cores(vec![9]), 1, &m).is_err());
    }

    #[test]
    fn cpus_option_parses() {
        assert_eq!(parse_cpus("auto"), Ok(CpuSpec::Auto));
        assert_eq!(parse_cpus("none"), Ok(CpuSpec::None));
        assert_eq!(parse_cpus("1, 3"), Ok(CpuSpec::Cores(vec![1, 3])));
        assert!(parse_cpus("one").is_err());
    }

    #[test]
    fn cpu_use_counts_this_process() {
        let a = process_cpu();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 50 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let u = CpuUse::between(a, process_cpu(), t.elapsed().as_secs_f64());
        assert!(u.user_s + u.sys_s > 0.01, "{u:?} ({x})");
        assert!(u.cores > 0.1 && u.line().contains("cores"), "{u:?}");
        assert!(
            u.machine_cores_busy > 0.1,
            "the machine saw this process: {u:?}"
        );
    }
}
