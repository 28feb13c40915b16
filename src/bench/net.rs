//! `strata bench net`: the loopback network's limit for one TCP stream, measured the simple
//! way — a sender thread writing large buffers, a receiver thread reading and discarding them,
//! each pinned to its own core when there are two — so the produce figures have a yardstick
//! beside the disk's.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::clock::{now_ns, NS_PER_SEC};
use super::error::{BenchError, Result};
use super::host::{machine_cores, pin_current};
use super::output::emit;
use super::report::MB;

/// Default bytes per write (and per read).
pub const DEFAULT_BUFFER_BYTES: usize = 1 << 20;

/// Settings of `strata bench net`. Invariant: `streams`, `buffer_bytes` and `duration` are not
/// zero.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub duration: Duration,
    pub buffer_bytes: usize,
    pub streams: usize,
    pub json: Option<PathBuf>,
}

/// Bytes per second through `streams` loopback TCP connections.
pub fn measure(cfg: &NetConfig) -> Result<f64> {
    if cfg.streams == 0 || cfg.buffer_bytes == 0 || cfg.duration.is_zero() {
        return Err(BenchError::Invalid(
            "--streams, --buffer-bytes and --duration must be more than 0".into(),
        ));
    }
    let cores = machine_cores();
    // Receivers on the first core, senders on the last: the two ends of a broker connection.
    let (rx_core, tx_core) = match (cores.first(), cores.last()) {
        (Some(&a), Some(&b)) if a != b => (Some(a), Some(b)),
        _ => (None, None),
    };
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BenchError::io("binding a loopback listener", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::io("binding a loopback listener", e))?;
    let size = cfg.buffer_bytes;
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    let deadline = now_ns() + cfg.duration.as_nanos() as u64;
    for _ in 0..cfg.streams {
        let out = TcpStream::connect(addr).map_err(|e| BenchError::io("connecting", e))?;
        let (inp, _) = listener
            .accept()
            .map_err(|e| BenchError::io("accepting", e))?;
        receivers.push(std::thread::spawn(move || {
            pin_current(rx_core);
            let mut inp = inp;
            let mut buf = vec![0u8; size];
            let mut total = 0u64;
            loop {
                match inp.read(&mut buf) {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n as u64,
                }
            }
        }));
        senders.push(std::thread::spawn(move || {
            pin_current(tx_core);
            let mut out = out;
            let buf = vec![0x5au8; size];
            let start = now_ns();
            while now_ns() < deadline {
                if out.write_all(&buf).is_err() {
                    break;
                }
            }
            let _ = out.shutdown(std::net::Shutdown::Write);
            (start, now_ns())
        }));
    }
    let mut window = (u64::MAX, 0u64);
    for s in senders {
        let (a, b) = s
            .join()
            .map_err(|_| BenchError::Thread("a sender panicked".into()))?;
        window = (window.0.min(a), window.1.max(b));
    }
    let mut bytes = 0;
    for r in receivers {
        bytes += r
            .join()
            .map_err(|_| BenchError::Thread("a receiver panicked".into()))?;
    }
    let end = now_ns().max(window.1);
    Ok(bytes as f64 / ((end - window.0).max(1) as f64 / NS_PER_SEC as f64))
}

pub fn run(cfg: &NetConfig) -> Result<()> {
    let rate = measure(cfg)?;
    let human = format!(
        "strata bench net: loopback TCP, {} stream(s), {} KiB writes, {:.1} s: {:.0} MB/s ({:.2} GiB/s)\n",
        cfg.streams,
        cfg.buffer_bytes >> 10,
        cfg.duration.as_secs_f64(),
        rate / MB,
        rate / (1u64 << 30) as f64
    );
    let v = json!({
        "command": "net",
        "mode": "bandwidth",
        "streams": cfg.streams,
        "buffer_bytes": cfg.buffer_bytes,
        "duration_s": cfg.duration.as_secs_f64(),
        "bytes_per_sec": rate,
    });
    emit(&human, &v, cfg.json.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_moves_bytes() {
        let cfg = NetConfig {
            duration: Duration::from_millis(200),
            buffer_bytes: 64 << 10,
            streams: 1,
            json: None,
        };
        assert!(measure(&cfg).unwrap() > 0.0);
    }
}
