//! What the benches that run a real broker share: starting one on free ports.

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub type BenchResult<T> = Result<T, Box<dyn Error>>;

/// How long the broker may take to start.
const BROKER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A broker child process; killed when dropped.
pub struct Broker {
    child: Child,
    pub addr: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Starts `strata broker` with one data shard on free ports, on `dir`, with `extra` flags.
pub fn start_broker(dir: &Path, extra: &[&str]) -> BenchResult<Broker> {
    for _ in 0..20 {
        let port = free_port_pair()?;
        let addr = format!("127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["broker", "--shards", "1", "--listen", &addr])
            .args(extra)
            .arg("--data-dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("strata broker ready") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(BROKER_START_TIMEOUT).is_ok() {
            return Ok(Broker { child, addr });
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    Err("the broker did not start".into())
}

/// A port P with P+1 free too (the broker's shared port and shard 0's port).
fn free_port_pair() -> BenchResult<u16> {
    for _ in 0..100 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port pair".into())
}
