//! `strata broker` on the main thread: start-up checks, the executor pool, signals, shutdown.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use tracing::info;

use crate::runtime::IO_MEMORY_BYTES;
use crate::shard::{Pool, PoolSpec, Role};

use super::config::{BrokerArgs, BrokerConfig};
use super::{coordinator, shard, Ready};

/// File in the data directory locked (flock) for as long as a broker uses the directory.
pub const LOCK_FILE: &str = ".lock";
/// How long start-up may take before the broker gives up (opening many large logs).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(600);

/// Raises the soft limit on open files to the hard one: every partition keeps a segment and two
/// index files open (a few thousand partitions pass the usual soft limit of 1024). Logs what it
/// got; a failure only leaves the limit as it was.
fn raise_open_files_limit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 0;
    }
    if rl.rlim_cur < rl.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::info!(
                from = rl.rlim_cur,
                to = rl.rlim_max,
                "raised the open-files limit"
            );
            return rl.rlim_max;
        }
        tracing::warn!(limit = rl.rlim_cur, "could not raise the open-files limit");
    }
    rl.rlim_cur
}

/// Runs a broker until SIGINT or SIGTERM; Ok after a clean shutdown.
pub fn run(args: BrokerArgs) -> Result<(), String> {
    let cpus = available_cpus();
    let config = Arc::new(BrokerConfig::resolve(&args, &cpus)?);
    prepare_data_dir(&config.data_dir)?;
    let _lock = lock_data_dir(&config.data_dir)?;
    check_ports(&config)?;
    crate::cli::preflight(config.shard_cpus.len() + 1)?;
    raise_open_files_limit();

    let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
    let (signal_tx, signal_rx) = mpsc::channel::<i32>();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let signal_handle = signals.handle();
    let signal_thread = std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let _ = signal_tx.send(sig);
        }
    });

    let spec = PoolSpec {
        shard_cpus: config.shard_cpus.clone(),
        coordinator_cpu: config.coordinator_cpu,
        io_memory: IO_MEMORY_BYTES,
    };
    let pool_config = config.clone();
    let mut pool = Pool::start(&spec, move |ctx| {
        let config = pool_config.clone();
        let ready = ready_tx.clone();
        async move {
            let failed = ready.clone();
            let res = match ctx.role {
                Role::Data(_) => shard::run(ctx, config, ready).await,
                Role::Coordinator => coordinator::run(ctx, config, ready).await,
            };
            if let Err(e) = &res {
                let _ = failed.send(Ready::Failed(e.clone()));
            }
            res
        }
    })?;

    // Start-up: every shard listening and the coordinator's catalog applied, or the first error.
    let expected = config.shard_cpus.len() + 1;
    let mut seen = 0;
    let mut failure = None;
    let mut topics = 0;
    while seen < expected && failure.is_none() {
        match ready_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ready::Failed(e)) => failure = Some(e),
            Ok(Ready::Coordinator { topics: n }) => {
                topics = n;
                seen += 1;
            }
            Ok(Ready::Shard { .. }) => seen += 1,
            Err(_) => failure = Some("start-up timed out".into()),
        }
        if let Ok(sig) = signal_rx.try_recv() {
            failure = Some(format!("interrupted by signal {sig} during start-up"));
        }
    }
    if let Some(e) = failure {
        pool.shutdown();
        let _ = pool.join();
        signal_handle.close();
        let _ = signal_thread.join();
        return Err(e);
    }
    print_banner(&config, topics);

    // Serve until a signal or an executor failure.
    let stop_reason = loop {
        if let Ok(sig) = signal_rx.recv_timeout(Duration::from_millis(100)) {
            break format!("signal {sig}");
        }
        if let Ok(Ready::Failed(e)) = ready_rx.try_recv() {
            break format!("failure: {e}");
        }
    };
    info!(reason = %stop_reason, "shutting down: finishing in-flight requests, flushing logs");
    pool.shutdown();
    let res = pool.join();
    signal_handle.close();
    let _ = signal_thread.join();
    if stop_reason.starts_with("failure") {
        return Err(stop_reason);
    }
    res?;
    eprintln!("strata broker stopped cleanly");
    Ok(())
}

fn print_banner(config: &BrokerConfig, topics: usize) {
    let mut out = format!(
        "strata broker ready\n  listen       {} (shared, every shard)\n",
        config.listen
    );
    for (s, cpu) in config.shard_cpus.iter().enumerate() {
        out.push_str(&format!(
            "  shard {s:<6} core {cpu}, port {}\n",
            config.shard_port(s as u32)
        ));
    }
    out.push_str(&format!("  coordinator  core {}\n", config.coordinator_cpu));
    out.push_str(&format!(
        "  data dir     {} ({topics} topics)\n",
        config.data_dir.display()
    ));
    out.push_str(&format!("  fsync        {}\n", config.fsync));
    out.push_str(&format!("  max frame    {} bytes", config.max_frame_bytes));
    println!("{out}");
}

/// CPU ids this process may run on.
fn available_cpus() -> Vec<usize> {
    match core_affinity::get_core_ids() {
        Some(ids) if !ids.is_empty() => ids.into_iter().map(|c| c.id).collect(),
        _ => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

fn prepare_data_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("data dir {} is not writable: {e}", dir.display()))
}

/// Locks the data directory for this process; the lock goes with the returned file.
fn lock_data_dir(dir: &Path) -> Result<File, String> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(format!(
            "data dir {} is locked by another strata broker{} ({}); stop it or use another --data-dir",
            dir.display(),
            if holder.trim().is_empty() { String::new() } else { format!(" (pid {})", holder.trim()) },
            std::io::Error::last_os_error()
        ));
    }
    file.set_len(0)
        .map_err(|e| format!("writing lock file {}: {e}", path.display()))?;
    std::fs::write(&path, format!("{}\n", std::process::id()))
        .map_err(|e| format!("writing lock file {}: {e}", path.display()))?;
    Ok(file)
}

/// glommio binds with SO_REUSEPORT, so a second broker on the same port would silently share
/// it: probe every port with a plain bind first.
fn check_ports(config: &BrokerConfig) -> Result<(), String> {
    let addrs = std::iter::once(config.listen).chain(
        (0..config.shard_count())
            .map(|s| std::net::SocketAddr::new(config.listen.ip(), config.shard_port(s))),
    );
    for addr in addrs {
        std::net::TcpListener::bind(addr).map_err(|e| {
            format!("cannot listen on {addr}: {e} (is another broker running? pick another --listen port; shard s uses port + 1 + s)")
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let got = raise_open_files_limit();
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit with a valid pointer.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
        assert_eq!(rl.rlim_cur, rl.rlim_max);
        assert_eq!(got, rl.rlim_cur);
    }
}
