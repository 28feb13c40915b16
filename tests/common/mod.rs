//! Shared by the broker end-to-end tests: a handle on a real `strata broker` process, free
//! ports, record batches, and a raw TCP connection for speaking the protocol badly on purpose.
//!
//! A broker runs in its own temporary directory (`data/` and one `broker-<run>.stderr` per
//! start). When a test panics, dropping the handle prints the broker's stderr and kills it.

#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use rand::Rng;
use strata::client::Connection;
use strata::protocol::{FetchRequest, FrameDecoder, Response, TopicSpec};
use strata::record::{set_base_offset, validate_batch, BatchBuilder};

/// Ports a broker may use: below Linux's ephemeral range (32768..), so outgoing connections
/// never take a port a stopped broker will bind again on restart.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;
/// How long a broker may take to print its banner.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a broker may take to exit after SIGTERM, or a failing start to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// The line a broker prints once it serves.
pub const READY_LINE: &str = "strata broker ready";

/// Port ranges handed out in this process: tests running in parallel never share one.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A base port `P` such that `P..P+n` are all free right now (bound and released) and were not
/// handed out before in this process.
pub fn free_base_port(n: u16) -> u16 {
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let base = rng.gen_range(PORT_RANGE.start..PORT_RANGE.end - n);
        let mut taken = HANDED_OUT.lock().unwrap();
        let taken = taken.get_or_insert_with(HashSet::new);
        if (base..base + n).any(|p| taken.contains(&p)) {
            continue;
        }
        let all_bind = (base..base + n)
            .map(|p| TcpListener::bind(("127.0.0.1", p)))
            .collect::<Result<Vec<_>, _>>()
            .is_ok();
        if all_bind {
            taken.extend(base..base + n);
            return base;
        }
    }
    panic!("no {n} consecutive free ports in {PORT_RANGE:?}");
}

/// A seeded RNG's seed: from `var` when set, else from the clock; printed for replay.
pub fn seed(var: &str) -> u64 {
    let seed = match std::env::var(var) {
        Ok(s) => s.parse().unwrap_or_else(|_| panic!("{var} must be a u64")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    println!("seed {seed} (replay with {var}={seed})");
    seed
}

pub use strata::clock::now_ms;

/// How a broker start ended when it did not become ready.
#[derive(Debug)]
pub struct StartFailure {
    pub status: ExitStatus,
    pub stderr: String,
}

/// What to start: `strata broker --data-dir DIR --listen 127.0.0.1:PORT --shards N [extra]`.
#[derive(Debug, Clone)]
pub struct BrokerSpec {
    pub data_dir: PathBuf,
    pub port: u16,
    pub shards: u16,
    pub extra: Vec<String>,
}

impl BrokerSpec {
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "broker".to_string(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.port),
            "--shards".into(),
            self.shards.to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// Runs `strata <args>` with stderr to `stderr_path`; returns the child once it printed the
/// ready line, or how it exited.
fn spawn_until_ready(args: &[String], stderr_path: &Path) -> Result<Child, StartFailure> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr_path).unwrap())
        .spawn()
        .expect("spawn strata");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    // Drains stdout for the life of the process, so the pipe never fills.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(READY_LINE) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(()) => Ok(child),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // stdout closed without the banner: the process is exiting.
            let status = wait_deadline(&mut child, EXIT_TIMEOUT).unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "strata closed stdout but did not exit: {}",
                    read(stderr_path)
                )
            });
            Err(StartFailure {
                status,
                stderr: read(stderr_path),
            })
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "strata {args:?} not ready within {READY_TIMEOUT:?}; stderr:\n{}",
                read(stderr_path)
            )
        }
    }
}

/// The child's exit status once it exits, or `None` if it still runs after `timeout`.
pub fn wait_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Runs `strata <args>` expecting it to fail at start-up; returns its status and stderr.
/// Panics if it becomes ready instead.
pub fn expect_start_failure(args: &[String], stderr_path: &Path) -> StartFailure {
    match spawn_until_ready(args, stderr_path) {
        Ok(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("strata {args:?} started although it should have failed")
        }
        Err(f) => f,
    }
}

/// A running (or stopped) broker process with its own directory.
pub struct Broker {
    child: Option<Child>,
    dir: tempfile::TempDir,
    spec: BrokerSpec,
    /// Every start so far: its command line and its stderr file.
    runs: Vec<(String, PathBuf)>,
}

impl Broker {
    /// A broker with `shards` data shards on fresh ports and a fresh data dir.
    pub fn start(shards: u16, extra: &[&str]) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        Broker::start_in(dir, data_dir, shards, extra)
    }

    /// A broker whose data dir is `data_dir` (may be shared with another broker's), logging
    /// into `dir`.
    pub fn start_in(
        dir: tempfile::TempDir,
        data_dir: PathBuf,
        shards: u16,
        extra: &[&str],
    ) -> Broker {
        let mut broker = Broker {
            child: None,
            dir,
            spec: BrokerSpec {
                data_dir,
                port: 0,
                shards,
                extra: extra.iter().map(|s| s.to_string()).collect(),
            },
            runs: Vec::new(),
        };
        for attempt in 0.. {
            broker.spec.port = free_base_port(shards + 2);
            match broker.try_start() {
                Ok(()) => return broker,
                // Lost a race for a port with another process: take other ports.
                Err(f) if f.stderr.contains("cannot listen") && attempt < 10 => continue,
                Err(f) => panic!(
                    "strata broker failed to start ({}):\n{}",
                    f.status, f.stderr
                ),
            }
        }
        unreachable!()
    }

    fn try_start(&mut self) -> Result<(), StartFailure> {
        assert!(self.child.is_none(), "broker already running");
        let path = self
            .dir
            .path()
            .join(format!("broker-{}.stderr", self.runs.len() + 1));
        self.runs.push((self.spec.args().join(" "), path.clone()));
        let child = spawn_until_ready(&self.spec.args(), &path)?;
        self.child = Some(child);
        Ok(())
    }

    /// Starts the broker again on the same data dir and ports; panics if it cannot.
    pub fn restart(&mut self) {
        if let Err(f) = self.try_restart() {
            panic!(
                "strata broker failed to restart ({}):\n{}",
                f.status, f.stderr
            )
        }
    }

    /// Starts the broker again on the same data dir and ports. A port another process took
    /// in the meantime is retried for a moment.
    pub fn try_restart(&mut self) -> Result<(), StartFailure> {
        let mut attempt = 0;
        loop {
            match self.try_start() {
                Err(f) if f.stderr.contains("cannot listen") && attempt < 10 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                res => return res,
            }
        }
    }

    /// Starts the broker again on the same data dir, on fresh ports.
    pub fn restart_on_new_ports(&mut self) {
        for attempt in 0.. {
            self.spec.port = free_base_port(self.spec.shards + 2);
            match self.try_start() {
                Ok(()) => return,
                Err(f) if f.stderr.contains("cannot listen") && attempt < 10 => continue,
                Err(f) => panic!(
                    "strata broker failed to restart ({}):\n{}",
                    f.status, f.stderr
                ),
            }
        }
    }

    pub fn spec(&self) -> &BrokerSpec {
        &self.spec
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> &Path {
        &self.spec.data_dir
    }

    pub fn port(&self) -> u16 {
        self.spec.port
    }

    /// The shared listener, `127.0.0.1:P`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.spec.port)
    }

    /// Shard `s`'s own port, `P + 1 + s`.
    pub fn shard_port(&self, s: u32) -> u16 {
        self.spec.port + 1 + s as u16
    }

    pub fn shard_addr(&self, s: u32) -> String {
        format!("127.0.0.1:{}", self.shard_port(s))
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("broker not running").id() as i32
    }

    /// A client connection to the shared port (reads time out after 30 s, so a hung broker
    /// fails the test instead of hanging it).
    pub fn connect(&self) -> Connection {
        connect(&self.addr())
    }

    pub fn connect_shard(&self, s: u32) -> Connection {
        connect(&self.shard_addr(s))
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// SIGTERM, then waits for the exit (panics if it takes longer than 30 s).
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_within(EXIT_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "broker did not exit within {EXIT_TIMEOUT:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// SIGTERM, then waits up to `timeout` for the exit; `None` if the broker was still running
    /// (it is then killed with SIGKILL).
    pub fn stop_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("broker not running");
        // SAFETY: signals our own child, which has not been reaped (no pid reuse).
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = wait_deadline(&mut child, timeout);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    /// SIGTERM and asserts a clean exit (status 0, "stopped cleanly" on stderr).
    pub fn stop_clean(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "broker exited with {status} after SIGTERM; stderr:\n{}",
            self.stderr()
        );
        assert!(self.stderr().contains("strata broker stopped cleanly"));
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("broker not running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// stderr of the current (or last) run.
    pub fn stderr(&self) -> String {
        self.runs
            .last()
            .map_or_else(String::new, |(_, path)| read(path))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for (run, (args, path)) in self.runs.iter().enumerate() {
                eprintln!(
                    "---- broker run {} (strata {args}), stderr:\n{}",
                    run + 1,
                    read(path)
                );
            }
        }
    }
}

pub fn connect(addr: &str) -> Connection {
    let conn = Connection::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn
}

// ---------------------------------------------------------------------------------------------
// Batches

/// A record batch (base offset 0) of `records` records of `record_bytes` value bytes, different
/// for each `index`, stamped with the current time.
pub fn batch(index: u64, records: usize, record_bytes: usize) -> Bytes {
    batch_at(index, records, record_bytes, now_ms(), 0)
}

/// Like [`batch`], record `n` stamped `timestamp + n * step_ms`.
pub fn batch_at(
    index: u64,
    records: usize,
    record_bytes: usize,
    timestamp: i64,
    step_ms: i64,
) -> Bytes {
    assert!(records > 0);
    let mut b = BatchBuilder::with_capacity(records * (record_bytes + 32) + 64);
    let mut value = vec![0u8; record_bytes];
    for n in 0..records {
        let mut x = ((index << 20) | n as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .max(1);
        for byte in value.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        let key = format!("k-{index}-{n}");
        b.append(
            timestamp + n as i64 * step_ms,
            Some(key.as_bytes()),
            Some(&value),
            &[],
        );
    }
    b.finish().freeze()
}

/// The bytes the broker serves for `batch` stored at `offset` (it rewrites the base offset).
pub fn at_offset(batch: &[u8], offset: i64) -> Bytes {
    let mut b = BytesMut::from(batch);
    set_base_offset(&mut b, offset);
    b.freeze()
}

/// Records in a batch.
pub fn record_count(batch: &[u8]) -> i64 {
    i64::from(validate_batch(batch).expect("valid batch").record_count)
}

pub fn spec(name: &str, partitions: u32) -> TopicSpec {
    TopicSpec {
        name: name.to_string(),
        partitions,
        retention_bytes: None,
        retention_ms: None,
        segment_bytes: None,
    }
}

pub fn fetch_req(topic: &str, partition: u32, offset: i64, max_wait_ms: u32) -> FetchRequest {
    FetchRequest {
        topic: topic.to_string(),
        partition,
        offset,
        max_bytes: 1 << 20,
        max_wait_ms,
        min_bytes: 1,
    }
}

/// Every batch of a partition from offset 0 to the high watermark, as (base offset, bytes);
/// asserts that offsets are contiguous from 0 and that every batch is valid.
pub fn fetch_all(conn: &mut Connection, topic: &str, partition: u32) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let (resp, batches) = conn
            .fetch(fetch_req(topic, partition, offset, 0))
            .unwrap_or_else(|e| panic!("fetch {topic}/{partition} at {offset}: {e}"));
        if batches.is_empty() {
            assert_eq!(
                offset, resp.high_watermark,
                "{topic}/{partition}: empty fetch at {offset} below the high watermark"
            );
            return out;
        }
        for b in batches {
            let h = validate_batch(&b).unwrap_or_else(|e| {
                panic!("{topic}/{partition}: invalid batch served at {offset}: {e}")
            });
            assert_eq!(
                h.base_offset, offset,
                "{topic}/{partition}: offsets not contiguous"
            );
            offset = h.next_offset();
            out.push((h.base_offset, b));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw connections

/// What a raw connection read next.
#[derive(Debug)]
pub enum Next {
    Response(Response, BytesMut),
    /// End of stream (or a reset) at a frame boundary.
    Closed,
}

/// A TCP connection that writes whatever it is given and decodes response frames.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl Raw {
    pub fn connect(addr: &str, read_timeout: Duration) -> Raw {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(read_timeout)).unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(64 << 20),
        }
    }

    /// Writes all of `bytes`; a broker that already closed the connection makes this fail.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Tells the broker nothing more is coming (shutdown of the write side).
    pub fn finish(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// The next response frame, or `Closed`; `Err` on a read timeout, a frame cut short by the
    /// end of the stream, or bytes that are not a response.
    pub fn next(&mut self) -> Result<Next, String> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    let resp = Response::decode(&frame.header)
                        .map_err(|e| format!("undecodable response header: {e}"))?;
                    return Ok(Next::Response(resp, frame.payload));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("bad response frame: {e}")),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return self.closed(),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return self.closed(),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    fn closed(&self) -> Result<Next, String> {
        if self.buf.is_empty() {
            Ok(Next::Closed)
        } else {
            Err(format!(
                "connection closed inside a response frame ({} bytes)",
                self.buf.len()
            ))
        }
    }

    /// The next response, which must be there.
    pub fn response(&mut self) -> (Response, BytesMut) {
        match self.next() {
            Ok(Next::Response(r, p)) => (r, p),
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// Asserts the broker closes the connection with nothing more to say.
    pub fn expect_closed(&mut self) {
        match self.next() {
            Ok(Next::Closed) => {}
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running `strata` commands

/// Longest a `strata` command run by `run` may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished command left behind.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    #[track_caller]
    pub fn ok(self) -> Output {
        assert!(
            self.status.success(),
            "command failed ({}); stderr:\n{}",
            self.status,
            self.stderr
        );
        self
    }

    /// Asserts exit code `code` and exactly one stderr line, `strata: ...` containing every needle.
    #[track_caller]
    pub fn fails_with(&self, code: i32, needles: &[&str]) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "exit status; stdout {:?}, stderr {:?}",
            self.stdout,
            self.stderr
        );
        if code == 2 {
            return; // clap's own usage message
        }
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr, got {:?}", self.stderr);
        assert!(lines[0].starts_with("strata: "), "{:?}", lines[0]);
        for needle in needles {
            assert!(
                lines[0].contains(needle),
                "stderr {:?} should mention {needle:?}",
                lines[0]
            );
        }
    }
}

/// `strata ARGS` with `--broker` set by the caller; `STRATA_BROKER` cleared.
pub fn strata(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args(args).env_remove("STRATA_BROKER");
    cmd
}

/// `strata ARGS --broker BROKER`.
pub fn at(broker: &str, args: &[&str]) -> Command {
    let mut cmd = strata(args);
    cmd.args(["--broker", broker]);
    cmd
}

/// Runs `cmd` with `input` on stdin (closed when `None`) and waits for it, at most
/// `COMMAND_TIMEOUT`.
pub fn run(mut cmd: Command, input: Option<Vec<u8>>) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn strata");
    let writer = input.map(|bytes| {
        let mut stdin = child.stdin.take().unwrap();
        // A command that fails early closes its stdin: that is not this test's failure.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        })
    });
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let Some(status) = wait_deadline(&mut child, COMMAND_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{cmd:?} still running after {COMMAND_TIMEOUT:?}; stderr:\n{}",
            stderr.join().unwrap()
        )
    };
    if let Some(w) = writer {
        w.join().unwrap();
    }
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

pub fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8(bytes).expect("utf-8 output")
    })
}
