//! `strata bench net --rate`: the machine's latency floor for the produce shape, with no broker
//! in the way. One loopback TCP connection (TCP_NODELAY): a responder thread on the first core
//! (where a broker's first data shard runs) reads fixed-size requests and answers each with a
//! small ack as soon as the whole request is in. A sender thread on the last core (where
//! `strata bench` clients run) writes the requests on the same open-loop timetable `strata bench
//! produce --rate` uses, and an ack-reader thread beside it records each request's latency from
//! its due time (coordinated omission corrected). Whatever this measures — scheduling, wake-ups,
//! the loopback, stalls of the machine — a broker on the same cores pays too, so it is what
//! strata's produce and e2e latency are compared against.
//!
//! With `--disk-dir` the responder first writes each request to a file there, the way the
//! storage engine appends, so the floor includes the disk:
//! - alone: one O_DIRECT `pwrite` into a file preallocated with `fallocate` (unwritten extents,
//!   as a segment under `--fsync never`) — the floor of a produce under `--fsync never`;
//! - with `--fsync`: the `pwrite`, then `fdatasync` — the floor of a produce under `--fsync
//!   always`. Under that policy the engine zeroes the active segment ahead of its tail, so its
//!   durable appends overwrite written blocks; on ext4 that costs about half of a write and sync
//!   into unwritten extents (no extent conversion, no journal commit). So the file is laid out
//!   first — zeros in large O_DIRECT writes, then one `fdatasync` — and kept small
//!   ([`MAX_LAID_OUT_FILE_BYTES`]) so that takes well under a second; the run wraps around it,
//!   which costs the same as writing further on, since every block is already written.
//!
//! The disk variants write one request at a time with plain synchronous calls: they are a floor
//! only while one write's (and sync's) latency stays well under the interval between requests.
//! Near that (2,000 writes/s of 100 KiB on the project's VM), or when the disk stalls, the
//! responder falls behind and queues, where the broker's engine, with several writes in flight
//! through io_uring, would not. `--disk-writers N` (without `--fsync`) keeps up to N writes in
//! flight on N writer threads and acks in request order, as the engine does: the floor of the
//! `--fsync never` shape at loads where one write at a time cannot keep up.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::clock::{fine_timer_slack, now_ns, secs_to_ns, sleep_until_ns, NS_PER_SEC};
use super::error::{BenchError, Result};
use super::host::{machine_cores, pin_current, process_cpu, thread_cpu, CpuTimes, CpuUse};
use super::meter::{Meter, Recorder};
use super::output::{emit, open_hdr_log, watch};
use super::plot::percentile_plot;
use super::produce::lag_line;
use super::report::{table_of, LatencyUs, Summary};
use super::schedule::{Next, Pacer, Pacing, Timetable};
use super::workload::{measured_seconds, start_time};

/// Default bytes of each request: 100 records of 1 KiB, the e2e shape.
pub const DEFAULT_REQUEST_BYTES: usize = 100 * 1024;
/// Bytes of each ack: the request's sequence number (u64, little endian) and 8 zero bytes.
pub const ACK_BYTES: usize = 16;
/// O_DIRECT alignment of the responder's writes (size and offset).
const ALIGN: usize = crate::storage::BLOCK as usize;
/// Largest file `--disk-dir` preallocates; a longer run wraps around and overwrites it.
pub const MAX_DISK_FILE_BYTES: u64 = 8 << 30;
/// Largest file `--disk-dir --fsync` uses: it is written out before the run, which must take
/// well under a second (a fraction of a second at the disk's sequential bandwidth).
pub const MAX_LAID_OUT_FILE_BYTES: u64 = 64 << 20;
/// Size of each zero-filled O_DIRECT write that lays out the `--fsync` file.
const LAYOUT_WRITE_BYTES: usize = 1 << 20;
/// How long the ack reader waits for one ack before the run counts as hung.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of the latency mode. Invariant (checked by [`measure`]): `rate` is finite and
/// positive, `request_bytes` and `duration` are not zero, `disk_fsync` only with `disk_dir`,
/// `disk_writers` at least 1 and above 1 only with `disk_dir` and without `disk_fsync`.
#[derive(Debug, Clone)]
pub struct LatencyConfig {
    /// Requests per second on the fixed timetable.
    pub rate: f64,
    pub request_bytes: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Write each request with O_DIRECT to a preallocated file in this directory before acking.
    pub disk_dir: Option<PathBuf>,
    /// With `disk_dir`: `fdatasync` after each write, into a file written out first.
    pub disk_fsync: bool,
    /// With `disk_dir` (not `disk_fsync`): writes in flight at once, each on its own thread,
    /// acked in request order. 1 writes and acks each request on the responder thread.
    pub disk_writers: usize,
    pub json: Option<PathBuf>,
    pub hdr_log: Option<PathBuf>,
    /// No progress line per second.
    pub quiet: bool,
}

/// What one run measured.
pub struct Floor {
    /// Requests of the measured window and their latency from the due time to the ack.
    pub summary: Summary,
    pub latency: Histogram<u64>,
    /// How late the sends went out behind the timetable (whole run).
    pub lag: LatencyUs,
    /// Requests sent (and answered), warm-up included.
    pub requests: u64,
    /// The sender and the ack reader.
    pub generator_cpu: CpuUse,
    pub responder_cpu: CpuUse,
    /// Where the threads ran.
    pub placement: String,
}

/// `n` rounded up to the O_DIRECT alignment.
pub fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Bytes of the responder's file for `rate` requests/s of `request_bytes` over `secs`: one
/// aligned block per request the timetable can hold (plus one), at most `max` bytes of whole
/// blocks — but at least one block.
pub fn disk_file_bytes(request_bytes: usize, rate: f64, secs: f64, max: u64) -> u64 {
    let block = align_up(request_bytes.max(1)) as u64;
    let requests = ((rate * secs).ceil().max(0.0) as u64).saturating_add(1);
    let cap = (max / block).max(1) * block;
    block.saturating_mul(requests).min(cap)
}

impl LatencyConfig {
    /// Bytes of the responder's file for this run (when there is a `disk_dir`).
    fn disk_file_bytes(&self) -> u64 {
        let max = if self.disk_fsync {
            MAX_LAID_OUT_FILE_BYTES
        } else {
            MAX_DISK_FILE_BYTES
        };
        let secs = (self.warmup + self.duration).as_secs_f64();
        disk_file_bytes(self.request_bytes, self.rate, secs, max)
    }
}

/// The ack of request `seq`.
pub fn encode_ack(seq: u64) -> [u8; ACK_BYTES] {
    let mut ack = [0u8; ACK_BYTES];
    ack[..8].copy_from_slice(&seq.to_le_bytes());
    ack
}

/// The sequence number an ack answers.
pub fn decode_ack(ack: &[u8; ACK_BYTES]) -> u64 {
    u64::from_le_bytes(ack[..8].try_into().expect("8 bytes"))
}

/// Fills `buf` from `s`: `Ok(false)` when the peer closed before the first byte (a clean end),
/// an error when it closed in the middle.
fn read_message(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match s.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Runs the load for the warm-up and the duration and returns what it measured.
pub fn measure(cfg: &LatencyConfig) -> Result<Floor> {
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        return Err(BenchError::Invalid(
            "--rate must be a positive number of requests per second".into(),
        ));
    }
    if cfg.request_bytes == 0 || cfg.duration.is_zero() {
        return Err(BenchError::Invalid(
            "--request-bytes and --duration must be more than 0".into(),
        ));
    }
    if cfg.disk_fsync && cfg.disk_dir.is_none() {
        return Err(BenchError::Invalid("--fsync needs --disk-dir".into()));
    }
    if cfg.disk_writers == 0 || (cfg.disk_writers > 1 && (cfg.disk_dir.is_none() || cfg.disk_fsync))
    {
        return Err(BenchError::Invalid(
            "--disk-writers must be at least 1, and above 1 only with --disk-dir and without --fsync"
                .into(),
        ));
    }
    let cores = machine_cores();
    let (rx_core, tx_core) = match (cores.first(), cores.last()) {
        (Some(&a), Some(&b)) if a != b => (Some(a), Some(b)),
        _ => (None, None),
    };
    let placement = match (rx_core, tx_core) {
        (Some(a), Some(b)) => format!(
            "responder → core {a}, sender and ack reader → core {b} ({} cores)",
            cores.len()
        ),
        _ => format!("unpinned ({} cores)", cores.len()),
    };
    let io = |what: &'static str| move |e| BenchError::io(what, e);
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("binding a loopback listener"))?;
    let addr = listener
        .local_addr()
        .map_err(io("binding a loopback listener"))?;
    let out = TcpStream::connect(addr).map_err(io("connecting"))?;
    let (inp, _) = listener.accept().map_err(io("accepting"))?;
    out.set_nodelay(true).map_err(io("setting TCP_NODELAY"))?;
    inp.set_nodelay(true).map_err(io("setting TCP_NODELAY"))?;
    let acks_in = out.try_clone().map_err(io("cloning the socket"))?;
    acks_in
        .set_read_timeout(Some(ACK_TIMEOUT))
        .map_err(io("setting a read timeout"))?;
    let disk = match &cfg.disk_dir {
        Some(d) => Some(DirectFile::create(
            d,
            cfg.disk_file_bytes(),
            cfg.disk_fsync,
        )?),
        None => None,
    };
    let mut hdr = open_hdr_log(cfg.hdr_log.as_deref(), "net")?;
    let (busy_start, wall_start) = (process_cpu().machine_busy_s, now_ns());
    let start_ns = start_time();
    let window_start = start_ns + secs_to_ns(cfg.warmup.as_secs_f64());
    let end_ns = window_start + secs_to_ns(cfg.duration.as_secs_f64());
    let (acks, lag) = (Meter::new(window_start), Meter::new(window_start));
    let pacer = Pacer::new(Pacing::Open(Timetable::new(start_ns, cfg.rate)?), end_ns);
    let (due_tx, due_rx) = mpsc::channel::<u64>();
    let size = cfg.request_bytes;
    let writers = cfg.disk_writers;
    type Thread = JoinHandle<(Result<u64>, (f64, f64))>;
    let spawn =
        |name: &str, core, work: Box<dyn FnOnce() -> Result<u64> + Send>| -> Result<Thread> {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    pin_current(core);
                    fine_timer_slack();
                    let r = work();
                    (r, thread_cpu())
                })
                .map_err(|e| BenchError::Thread(e.to_string()))
        };
    let responder = spawn(
        "bench-net-responder",
        rx_core,
        Box::new(move || match disk {
            Some(d) if writers > 1 => respond_pipelined(inp, size, d, writers, rx_core),
            disk => respond(inp, size, disk),
        }),
    )?;
    let rec = acks.recorder();
    let reader = spawn(
        "bench-net-acks",
        tx_core,
        Box::new(move || read_acks(acks_in, due_rx, rec, size as u64)),
    )?;
    let lag_rec = lag.recorder();
    let sender = spawn(
        "bench-net-sender",
        tx_core,
        Box::new(move || send(out, pacer, start_ns, due_tx, lag_rec, size)),
    )?;
    let watched = watch(
        &[("net", &acks)],
        start_ns,
        window_start,
        hdr.as_mut(),
        cfg.quiet,
        || {
            Ok([&responder, &reader, &sender]
                .iter()
                .all(|h| h.is_finished()))
        },
    );
    let join = |h: Thread| {
        h.join()
            .map_err(|_| BenchError::Thread("a net thread panicked".into()))
    };
    let (responded, (ru, rs)) = join(responder)?;
    let (answered, (au, asys)) = join(reader)?;
    let (sent, (su, ss)) = join(sender)?;
    let wall_s = (now_ns() - wall_start) as f64 / NS_PER_SEC as f64;
    let busy_end = process_cpu().machine_busy_s;
    // The responder's failure (a disk error) is the cause of the others'.
    let (responded, sent, answered) = (responded?, sent?, answered?);
    watched?;
    if let Some(h) = hdr {
        h.finish()?;
    }
    if answered != sent || responded != sent {
        return Err(BenchError::Thread(format!(
            "{sent} requests sent, {responded} read by the responder, {answered} acks read"
        )));
    }
    let cpu = |user_s, sys_s| {
        let at = |user_s, sys_s, machine_busy_s| CpuTimes {
            user_s,
            sys_s,
            machine_busy_s,
        };
        CpuUse::between(
            at(0.0, 0.0, busy_start),
            at(user_s, sys_s, busy_end),
            wall_s,
        )
    };
    let total = acks.total();
    Ok(Floor {
        summary: Summary::new(
            &total,
            measured_seconds(window_start, total.last_done_ns, end_ns),
        ),
        latency: total.latency,
        lag: LatencyUs::of(&lag.total().latency),
        requests: sent,
        generator_cpu: cpu(su + au, ss + asys),
        responder_cpu: cpu(ru, rs),
        placement,
    })
}

/// The sender: one request per due time of the timetable; the due time goes to the ack reader
/// before the request goes on the wire. Returns the requests sent.
fn send(
    mut out: TcpStream,
    mut pacer: Pacer,
    start_ns: u64,
    due: mpsc::Sender<u64>,
    lag: Recorder,
    size: usize,
) -> Result<u64> {
    let request = vec![0x5au8; size];
    sleep_until_ns(start_ns);
    loop {
        match pacer.next(now_ns()) {
            Next::Stop => break,
            Next::WaitUntil(t) => sleep_until_ns(t.min(now_ns() + NS_PER_SEC / 10)),
            Next::Send { intended_ns } => {
                lag.record(intended_ns, now_ns(), 1, 0);
                let _ = due.send(intended_ns);
                if let Err(e) = out.write_all(&request) {
                    let _ = out.shutdown(Shutdown::Both);
                    return Err(BenchError::io("sending a request", e));
                }
            }
        }
    }
    // The responder sees the end; the ack reader then reads the last acks and the close.
    let _ = out.shutdown(Shutdown::Write);
    Ok(pacer.sent())
}

/// The ack reader: each ack completes the oldest request, timed from its due time.
fn read_acks(
    mut inp: TcpStream,
    due: mpsc::Receiver<u64>,
    rec: Recorder,
    bytes: u64,
) -> Result<u64> {
    let mut ack = [0u8; ACK_BYTES];
    let mut answered = 0u64;
    let outcome = loop {
        match read_message(&mut inp, &mut ack) {
            Ok(true) => {}
            Ok(false) => break Ok(answered),
            Err(e) => break Err(BenchError::io("reading an ack", e)),
        }
        let done = now_ns();
        let (seq, intended) = (decode_ack(&ack), due.recv());
        match intended {
            Ok(intended) if seq == answered => rec.record(intended, done, 1, bytes),
            _ => {
                break Err(BenchError::Thread(format!(
                    "ack {answered} carried sequence number {seq} or answered no request"
                )))
            }
        }
        answered += 1;
    };
    if outcome.is_err() {
        // Unblocks a sender stuck on a full socket.
        let _ = inp.shutdown(Shutdown::Both);
    }
    outcome
}

/// The responder: reads each whole request (into an aligned buffer), writes it to `disk` when
/// there is one, then acks. Returns the requests answered.
fn respond(mut inp: TcpStream, size: usize, mut disk: Option<DirectFile>) -> Result<u64> {
    let mut buf = AlignedBuf::zeroed(align_up(size));
    let mut n = 0u64;
    while read_message(&mut inp, &mut buf.as_mut_slice()[..size])
        .map_err(|e| BenchError::io("reading a request", e))?
    {
        if let Some(d) = disk.as_mut() {
            d.write(buf.as_slice())?;
        }
        inp.write_all(&encode_ack(n))
            .map_err(|e| BenchError::io("writing an ack", e))?;
        n += 1;
    }
    Ok(n)
}

/// The responder with `writers` writes in flight: this thread reads each request into a free
/// buffer and hands it, with its file position, to the writer threads; an acker thread acks
/// the written requests in request order and hands their buffers back. The writers and the
/// acker run on the responder's `core`. Returns the requests answered. The writers' and the
/// acker's CPU is not in the responder's figure.
fn respond_pipelined(
    mut inp: TcpStream,
    size: usize,
    mut disk: DirectFile,
    writers: usize,
    core: Option<usize>,
) -> Result<u64> {
    type Written = (u64, AlignedBuf, Result<()>);
    let block = align_up(size);
    let mut acks_out = inp
        .try_clone()
        .map_err(|e| BenchError::io("cloning the socket", e))?;
    let (free_tx, free_rx) = mpsc::channel::<AlignedBuf>();
    for _ in 0..writers * 2 {
        free_tx
            .send(AlignedBuf::zeroed(block))
            .expect("the receiver is alive");
    }
    let (job_tx, job_rx) = mpsc::channel::<(u64, AlignedBuf, u64)>();
    let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::channel::<Written>();
    let file = std::sync::Arc::new(
        disk.file
            .try_clone()
            .map_err(|e| BenchError::io(format!("reopening {}", disk.path.display()), e))?,
    );
    let path = disk.path.clone();
    let mut threads = Vec::new();
    for i in 0..writers {
        let (jobs, done, file, path) =
            (job_rx.clone(), done_tx.clone(), file.clone(), path.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("bench-net-writer-{i}"))
            .spawn(move || {
                pin_current(core);
                loop {
                    let job = jobs.lock().expect("no writer panics").recv();
                    let Ok((n, buf, pos)) = job else { break };
                    let res = write_all_at(&file, &path, buf.as_slice(), pos, "writing");
                    if done.send((n, buf, res)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| BenchError::Thread(e.to_string()))?;
        threads.push(spawned);
    }
    drop(done_tx);
    let acker = std::thread::Builder::new()
        .name("bench-net-acker".into())
        .spawn(move || -> Result<()> {
            pin_current(core);
            let mut next = 0u64;
            let mut waiting = std::collections::BTreeMap::new();
            for (n, buf, res) in done_rx {
                res?;
                waiting.insert(n, buf);
                while let Some(buf) = waiting.remove(&next) {
                    acks_out
                        .write_all(&encode_ack(next))
                        .map_err(|e| BenchError::io("writing an ack", e))?;
                    let _ = free_tx.send(buf);
                    next += 1;
                }
            }
            Ok(())
        })
        .map_err(|e| BenchError::Thread(e.to_string()))?;
    let mut n = 0u64;
    let read = loop {
        // Every buffer is out while `writers * 2` requests are unacknowledged: wait for one.
        let Ok(mut buf) = free_rx.recv() else {
            break Ok(()); // the acker stopped; its error is reported below
        };
        match read_message(&mut inp, &mut buf.as_mut_slice()[..size]) {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(e) => break Err(BenchError::io("reading a request", e)),
        }
        let pos = disk.claim(block as u64);
        if job_tx.send((n, buf, pos)).is_err() {
            break Ok(());
        }
        n += 1;
    };
    drop(job_tx);
    for t in threads {
        let _ = t.join();
    }
    acker
        .join()
        .map_err(|_| BenchError::Thread("the acker panicked".into()))??;
    read?;
    Ok(n)
}

/// One O_DIRECT `pwrite` of all of `buf` (aligned) at `pos` of `file` (at `path`, for the
/// error, which says `what` was under way); a short write is an error.
fn write_all_at(file: &std::fs::File, path: &Path, buf: &[u8], pos: u64, what: &str) -> Result<()> {
    let context = || format!("{what} {}", path.display());
    let n = file
        .write_at(buf, pos)
        .map_err(|e| BenchError::io(context(), e))?;
    if n != buf.len() {
        let e = std::io::Error::new(ErrorKind::WriteZero, format!("short write of {n} B"));
        return Err(BenchError::io(context(), e));
    }
    Ok(())
}

/// A zeroed buffer for O_DIRECT I/O. Invariant: `raw[at..at + len]` starts on an [`ALIGN`]
/// boundary (moving the `Vec` does not move its heap block).
struct AlignedBuf {
    raw: Vec<u8>,
    at: usize,
    len: usize,
}

impl AlignedBuf {
    fn zeroed(len: usize) -> AlignedBuf {
        let raw = vec![0u8; len + ALIGN];
        let at = raw.as_ptr().align_offset(ALIGN);
        AlignedBuf { raw, at, len }
    }

    fn as_slice(&self) -> &[u8] {
        &self.raw[self.at..self.at + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.at..self.at + self.len]
    }
}

/// The responder's disk: a file preallocated the way the broker preallocates segments
/// (`fallocate`, so plain writes land in unwritten extents), written sequentially with O_DIRECT
/// and wrapping at its end; with `fsync`, written out before the run and synced after every
/// write, as under `--fsync always`. Deleted when dropped. Invariant: `size` is a multiple of
/// [`ALIGN`] and `pos <= size`.
struct DirectFile {
    file: std::fs::File,
    path: PathBuf,
    size: u64,
    pos: u64,
    /// `fdatasync` after each write (and the file was laid out by [`DirectFile::create`]).
    fsync: bool,
}

impl DirectFile {
    /// A new file of `size` bytes (a multiple of [`ALIGN`]) in `dir`, preallocated, and with
    /// `fsync` also laid out.
    fn create(dir: &Path, size: u64, fsync: bool) -> Result<DirectFile> {
        let path = dir.join(format!(".strata-bench-net-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .map_err(|e| BenchError::io(format!("creating {} (O_DIRECT)", path.display()), e))?;
        // From here on, dropping `f` deletes the file.
        let f = DirectFile {
            file,
            path,
            size,
            pos: 0,
            fsync,
        };
        // SAFETY: fallocate on an open descriptor of ours; mode 0 reserves and extends.
        if unsafe { libc::fallocate(f.file.as_raw_fd(), 0, 0, size as libc::off_t) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(BenchError::io(
                format!("preallocating {size} B for {}", f.path.display()),
                e,
            ));
        }
        if fsync {
            f.lay_out()?;
        }
        Ok(f)
    }

    /// Writes the whole file with zeros in large O_DIRECT writes, then one `fdatasync`: every
    /// block is then written, no longer an unwritten extent, and the metadata saying so is on
    /// disk — as the engine's zeroing leaves the active segment under `--fsync always`.
    fn lay_out(&self) -> Result<()> {
        let zeros = AlignedBuf::zeroed(LAYOUT_WRITE_BYTES);
        let mut pos = 0u64;
        while pos < self.size {
            let n = (self.size - pos).min(LAYOUT_WRITE_BYTES as u64) as usize;
            self.write_at(&zeros.as_slice()[..n], pos, "laying out")?;
            pos += n as u64;
        }
        self.sync()
    }

    /// One O_DIRECT write of `block` (aligned) at the next position, wrapping at the end; with
    /// `fsync`, then `fdatasync`.
    fn write(&mut self, block: &[u8]) -> Result<()> {
        let pos = self.claim(block.len() as u64);
        self.write_at(block, pos, "writing")?;
        if self.fsync {
            self.sync()?;
        }
        Ok(())
    }

    /// The position of the next `len` bytes (aligned), wrapping to 0 at the end of the file.
    fn claim(&mut self, len: u64) -> u64 {
        if self.pos + len > self.size {
            self.pos = 0;
        }
        let pos = self.pos;
        self.pos += len;
        debug_assert!(self.pos <= self.size);
        pos
    }

    /// One O_DIRECT `pwrite` of all of `buf` (aligned) at `pos`; a short write is an error.
    fn write_at(&self, buf: &[u8], pos: u64, what: &str) -> Result<()> {
        write_all_at(&self.file, &self.path, buf, pos, what)
    }

    /// `fdatasync`: the written data, and the metadata needed to read it back, are on disk.
    fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| BenchError::io(format!("syncing {}", self.path.display()), e))
    }
}

impl Drop for DirectFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What the responder does before acking, for the report's header (with a `disk_dir` `d`).
fn disk_line(cfg: &LatencyConfig, d: &Path) -> String {
    let (write, dir) = (align_up(cfg.request_bytes), d.display());
    if cfg.disk_fsync {
        format!(
            " after one O_DIRECT pwrite of it and an fdatasync ({write} B, sequential, \
             overwriting a {:.1} MiB file in {dir} written out and synced first, as --fsync \
             always appends overwrite a zeroed segment)",
            cfg.disk_file_bytes() as f64 / (1u64 << 20) as f64
        )
    } else {
        let in_flight = if cfg.disk_writers > 1 {
            format!(
                "; up to {} writes in flight, acked in request order",
                cfg.disk_writers
            )
        } else {
            String::new()
        };
        format!(
            " after one O_DIRECT pwrite of it ({write} B, sequential, into a file in {dir} \
             preallocated with fallocate, unwritten extents as under --fsync never{in_flight})"
        )
    }
}

/// `strata bench net --rate`: measures and reports.
pub fn run(cfg: &LatencyConfig) -> Result<()> {
    let f = measure(cfg)?;
    let disk = match &cfg.disk_dir {
        Some(d) => disk_line(cfg, d),
        None => String::new(),
    };
    let from = "from each request's due time on the fixed timetable to its ack (coordinated \
                omission corrected)";
    let mut human = format!(
        "strata bench net: the latency floor of the produce shape — one loopback TCP connection \
         (TCP_NODELAY), {} B requests at {} requests/s (open loop), each answered with a {ACK_BYTES} B \
         ack as soon as it is read{disk}; {:.1} s measured after {:.1} s warm-up\nthreads: {}\n\
         latency: {from}\n\n",
        cfg.request_bytes,
        cfg.rate,
        cfg.duration.as_secs_f64(),
        cfg.warmup.as_secs_f64(),
        f.placement
    );
    human.push_str(&table_of("requests/s", &[("request", &f.summary)]));
    if let Some(plot) = percentile_plot(&f.latency) {
        human.push('\n');
        human.push_str(&plot);
    }
    human.push('\n');
    human.push_str(&lag_line(true, &f.lag));
    human.push_str(&f.generator_cpu.line());
    let r = &f.responder_cpu;
    human.push_str(&format!(
        "\nresponder CPU: {:.2} cores (user {:.2} s + sys {:.2} s)\n",
        r.cores, r.user_s, r.sys_s
    ));
    let mut v = serde_json::to_value(&f.summary).expect("a summary serializes");
    let extra = json!({
        "command": "net",
        "mode": "latency",
        "rate": cfg.rate,
        "open_loop": true,
        "request_bytes": cfg.request_bytes,
        "ack_bytes": ACK_BYTES,
        "disk_dir": cfg.disk_dir,
        "disk_write_bytes": cfg.disk_dir.as_ref().map(|_| align_up(cfg.request_bytes)),
        "disk_fsync": cfg.disk_fsync,
        "disk_writers": cfg.disk_writers,
        "disk_file_bytes": cfg.disk_dir.as_ref().map(|_| cfg.disk_file_bytes()),
        "requests_per_sec": f.summary.records_per_sec,
        "requests_sent": f.requests,
        "warmup_s": cfg.warmup.as_secs_f64(),
        "requested_duration_s": cfg.duration.as_secs_f64(),
        "send_lag_us": f.lag,
        "latency_from": from,
        "load_generator_cpu": f.generator_cpu,
        "responder_cpu": f.responder_cpu,
        "threads": f.placement,
    });
    if let (Value::Object(top), Value::Object(more)) = (&mut v, extra) {
        top.extend(more);
    }
    emit(&human, &v, cfg.json.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_carry_the_sequence_number() {
        for seq in [0, 1, 255, u64::MAX] {
            assert_eq!(decode_ack(&encode_ack(seq)), seq);
        }
        assert_eq!(&encode_ack(7)[8..], &[0u8; 8]);
    }

    #[test]
    fn the_disk_file_holds_every_request_of_the_run_up_to_a_cap() {
        assert_eq!(align_up(1), 4096);
        assert_eq!(align_up(4096), 4096);
        assert_eq!(align_up(102_400), 102_400); // 25 blocks
        assert_eq!(align_up(10_240), 12_288);
        // 2000/s for 6 s: 12,000 requests and one spare.
        let max = MAX_DISK_FILE_BYTES;
        assert_eq!(disk_file_bytes(102_400, 2000.0, 6.0, max), 12_001 * 102_400);
        assert_eq!(disk_file_bytes(10_240, 0.5, 1.0, max), 2 * 12_288);
        let capped = disk_file_bytes(1 << 20, 1e6, 3600.0, max);
        assert!(capped <= MAX_DISK_FILE_BYTES && capped % (1 << 20) == 0);
        assert_eq!(disk_file_bytes(1 << 20, f64::INFINITY, 1.0, max), capped);
        // The laid-out file of --fsync: whole requests up to its cap, at least one.
        let laid = disk_file_bytes(102_400, 2000.0, 6.0, MAX_LAID_OUT_FILE_BYTES);
        assert_eq!(laid, (MAX_LAID_OUT_FILE_BYTES / 102_400) * 102_400);
        assert_eq!(
            disk_file_bytes(128 << 20, 1.0, 1.0, MAX_LAID_OUT_FILE_BYTES),
            128 << 20
        );
        let fsync = LatencyConfig {
            disk_fsync: true,
            ..config(None)
        };
        assert_eq!(fsync.disk_file_bytes(), 176 * 12_288); // 500/s × 0.35 s, plus one
    }

    fn config(disk_dir: Option<PathBuf>) -> LatencyConfig {
        LatencyConfig {
            rate: 500.0,
            request_bytes: 10_000,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(300),
            disk_dir,
            disk_fsync: false,
            disk_writers: 1,
            json: None,
            hdr_log: None,
            quiet: true,
        }
    }

    #[test]
    fn every_request_is_answered_and_timed() {
        let f = measure(&config(None)).unwrap();
        // About 500/s × 0.35 s; the window holds those due after the warm-up.
        assert!(f.requests >= 150, "{} requests", f.requests);
        assert!(f.summary.records > 0 && f.summary.records < f.requests);
        assert_eq!(f.summary.latency_us.samples, f.summary.records);
        assert_eq!(f.summary.bytes, f.summary.records * 10_000);
        assert!(f.lag.samples >= f.summary.records);
        assert!(measure(&LatencyConfig {
            rate: 0.0,
            ..config(None)
        })
        .is_err());
    }

    #[test]
    fn with_a_disk_dir_each_request_is_written_first_and_the_file_removed() {
        let dir = tempfile::tempdir().unwrap();
        let f = measure(&config(Some(dir.path().to_path_buf()))).unwrap();
        assert!(f.summary.records > 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let missing = dir.path().join("absent");
        assert!(measure(&config(Some(missing))).is_err());
    }

    #[test]
    fn with_disk_writers_writes_overlap_and_acks_keep_request_order() {
        let dir = tempfile::tempdir().unwrap();
        let pipelined = LatencyConfig {
            disk_writers: 4,
            rate: 2000.0,
            ..config(Some(dir.path().to_path_buf()))
        };
        // The ack reader fails the run on an ack out of request order.
        let f = measure(&pipelined).unwrap();
        assert!(f.requests >= 600, "{} requests", f.requests);
        assert_eq!(f.summary.latency_us.samples, f.summary.records);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // More than one writer only writes without syncing, and needs a directory.
        for bad in [
            LatencyConfig {
                disk_writers: 0,
                ..config(Some(dir.path().to_path_buf()))
            },
            LatencyConfig {
                disk_fsync: true,
                ..pipelined.clone()
            },
            LatencyConfig {
                disk_dir: None,
                ..pipelined.clone()
            },
        ] {
            assert!(matches!(measure(&bad), Err(BenchError::Invalid(_))));
        }
    }

    #[test]
    fn with_fsync_each_request_is_written_and_synced_and_the_file_removed() {
        let dir = tempfile::tempdir().unwrap();
        let f = measure(&LatencyConfig {
            disk_fsync: true,
            ..config(Some(dir.path().to_path_buf()))
        })
        .unwrap();
        assert!(f.summary.records > 0 && f.summary.records < f.requests);
        assert_eq!(f.summary.latency_us.samples, f.summary.records);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let no_dir = LatencyConfig {
            disk_fsync: true,
            ..config(None)
        };
        assert!(matches!(measure(&no_dir), Err(BenchError::Invalid(_))));
    }

    /// Where the first hole at or after offset 0 of `f` is (the file's size when it has none).
    fn first_hole(f: &DirectFile) -> i64 {
        // SAFETY: lseek on an open descriptor of ours; SEEK_HOLE only reads the extent map.
        unsafe { libc::lseek(f.file.as_raw_fd(), 0, libc::SEEK_HOLE) }
    }

    #[test]
    fn the_fsync_file_is_written_out_before_the_run_and_writes_wrap_around_it() {
        let dir = tempfile::tempdir().unwrap();
        let size = 3 * LAYOUT_WRITE_BYTES as u64 + 2 * ALIGN as u64; // a shorter last write
        let mut f = DirectFile::create(dir.path(), size, true).unwrap();
        assert_eq!(std::fs::metadata(&f.path).unwrap().len(), size);
        // Every block is data: no unwritten extent is left (which SEEK_HOLE reports as a hole
        // on ext4 and xfs).
        assert_eq!(first_hole(&f), size as i64);
        let block = AlignedBuf::zeroed(2 * ALIGN);
        for _ in 0..(size / block.len as u64 + 1) {
            f.write(block.as_slice()).unwrap();
        }
        assert_eq!(f.pos, block.len as u64); // wrapped once
        let path = f.path.clone();
        drop(f);
        assert!(!path.exists());
    }
}
