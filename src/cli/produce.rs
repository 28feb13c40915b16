//! `strata produce TOPIC`: one record per line of stdin, sent through the batching producer;
//! exits 0 only once every record is acknowledged.
//!
//! Threads: this one reads stdin and hands each record to the producer; a checker thread waits
//! for the acknowledgements in send order (printing `partition offset` with `--print-offsets`).
//! Between them at most `MAX_PENDING_RECORDS` records (and about `MAX_PENDING_BYTES` of lines)
//! are unacknowledged: the reader waits for the checker beyond that, so memory stays bounded
//! whatever the input's size.

use std::future::Future;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use clap::Args;

use crate::client::{ClientError, DeliveryFuture, Producer, ProducerConfig, RecordMetadata};

use super::{error_line, is_broken_pipe, BrokerOpt};

/// stdin is read in blocks of this size.
const STDIN_BUFFER_BYTES: usize = 1 << 20;
/// Records handed to the checker at once (fewer when stdin has nothing more to read now).
const CHUNK_RECORDS: usize = 4096;
/// Records sent and not yet checked, at most.
const MAX_PENDING_RECORDS: usize = 512 * 1024;
/// Line bytes sent and not yet checked, at most (once more than one chunk is pending).
const MAX_PENDING_BYTES: usize = 64 << 20;
/// How long a record the producer refuses for a retriable reason (the broker is unreachable)
/// is offered again before the command gives up.
const SEND_RETRY_FOR: Duration = Duration::from_secs(5);
const SEND_RETRY_BACKOFF: Duration = Duration::from_millis(100);
const SEND_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Arguments of `strata produce`.
#[derive(Debug, Args)]
#[command(
    after_help = "Reads stdin, one record per line (the line without its \\n or \\r\\n).\n\n\
Examples:\n  seq 1 1000 | strata produce orders\n  printf 'user-1:hello\\nuser-2:world\\n' | strata produce orders --key-separator : --print-offsets\n  strata produce orders --partition 0 --broker 10.0.0.5:9700 < records.txt"
)]
pub struct ProduceArgs {
    /// Topic to append to.
    pub topic: String,
    /// Send every record to this partition [default: by key (Kafka's murmur2), else sticky
    /// round-robin].
    #[arg(long, value_name = "P")]
    pub partition: Option<u32>,
    /// Split each line at the first C: the key before it, the value after (a line without C
    /// has no key). `\t` means tab.
    #[arg(long, value_name = "C", value_parser = parse_separator)]
    pub key_separator: Option<Separator>,
    /// Print `partition offset` for every acknowledged record.
    #[arg(long)]
    pub print_offsets: bool,
    #[command(flatten)]
    pub broker: BrokerOpt,
}

/// The bytes that separate a key from its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Separator(Vec<u8>);

fn parse_separator(s: &str) -> Result<Separator, String> {
    let bytes = match s {
        "\\t" => b"\t".to_vec(),
        "" => return Err("the key separator must not be empty".into()),
        _ => s.as_bytes().to_vec(),
    };
    Ok(Separator(bytes))
}

impl Separator {
    /// `(key, value)` of a line: split at the first separator, or no key.
    fn split<'a>(&self, line: &'a [u8]) -> (Option<&'a [u8]>, &'a [u8]) {
        let sep = &self.0[..];
        let at = match sep {
            [b] => line.iter().position(|c| c == b),
            _ => line.windows(sep.len()).position(|w| w == sep),
        };
        match at {
            Some(i) => (Some(&line[..i]), &line[i + sep.len()..]),
            None => (None, line),
        }
    }
}

/// The line without its trailing `\n` or `\r\n`.
fn trim_newline(line: &[u8]) -> &[u8] {
    match line.strip_suffix(b"\n") {
        Some(l) => l.strip_suffix(b"\r").unwrap_or(l),
        None => line,
    }
}

/// Records handed to the checker and not yet checked. Invariant: the counts are the sums over
/// the chunks in the channel plus the one being checked.
#[derive(Default)]
struct Window {
    pending: Mutex<(usize, usize)>,
    room: Condvar,
}

impl Window {
    /// Waits until `records`/`bytes` more fit (always when nothing is pending), then counts them.
    fn acquire(&self, records: usize, bytes: usize) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while p.0 > 0 && (p.0 + records > MAX_PENDING_RECORDS || p.1 + bytes > MAX_PENDING_BYTES) {
            p = self.room.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        p.0 += records;
        p.1 += bytes;
    }

    fn release(&self, records: usize, bytes: usize) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.0 -= records;
        p.1 -= bytes;
        self.room.notify_all();
    }
}

/// A run of sent records for the checker, in send order.
#[derive(Default)]
struct Chunk {
    futures: Vec<DeliveryFuture>,
    bytes: usize,
}

/// What the checker found.
#[derive(Default)]
struct Outcome {
    acknowledged: u64,
    first_error: Option<Arc<ClientError>>,
    /// Writing the offsets failed (other than a closed pipe, which only stops the printing).
    output_error: Option<std::io::Error>,
}

pub fn run(args: ProduceArgs) -> Result<(), String> {
    let topic = args.topic.as_str();
    let producer = Producer::connect(&args.broker.broker, ProducerConfig::default())
        .map_err(|e| error_line(&e, Some(topic)))?;
    let partitions = producer
        .partitions(topic)
        .map_err(|e| error_line(&e, Some(topic)))?;
    super::check_partition(topic, partitions, args.partition)?;

    let window = Arc::new(Window::default());
    let failed = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Chunk>();
    let checker = {
        let (window, failed, print) = (window.clone(), failed.clone(), args.print_offsets);
        std::thread::Builder::new()
            .name("strata-produce-acks".into())
            .spawn(move || check(rx, &window, &failed, print))
            .map_err(|e| format!("cannot start a thread: {e}"))?
    };

    let read = send_stdin(&producer, &args, &window, &failed, &tx);
    drop(tx);
    producer.flush();
    let outcome = checker
        .join()
        .map_err(|_| "the acknowledgement checker panicked".to_string())?;
    producer.close();
    let read = read?;

    let first_error = outcome.first_error.as_deref().or(read.send_error.as_ref());
    if let Some(e) = first_error {
        // The line whose send failed counts as read and not acknowledged.
        let lines = read.sent + u64::from(read.send_error.is_some());
        let unread = if read.stopped_early {
            "; the rest of stdin was not sent"
        } else {
            ""
        };
        return Err(format!(
            "{} of {lines} records not acknowledged ({} acknowledged{unread}): {}",
            lines - outcome.acknowledged,
            outcome.acknowledged,
            error_line(e, Some(topic))
        ));
    }
    if let Some(e) = outcome.output_error {
        return Err(format!("writing offsets to stdout: {e}"));
    }
    Ok(())
}

/// How reading stdin ended.
struct Sent {
    /// Records handed to the producer.
    sent: u64,
    /// Reading stopped before the end of stdin (a record failed).
    stopped_early: bool,
    /// The producer refused a record (after retries, for a broker that went away).
    send_error: Option<ClientError>,
}

/// Reads stdin to the end (or until a record failed) and sends every line.
fn send_stdin(
    producer: &Producer,
    args: &ProduceArgs,
    window: &Window,
    failed: &AtomicBool,
    tx: &mpsc::Sender<Chunk>,
) -> Result<Sent, String> {
    let topic = args.topic.as_str();
    let stdin = std::io::stdin();
    let mut reader = BufReader::with_capacity(STDIN_BUFFER_BYTES, stdin.lock());
    let mut line = Vec::with_capacity(4096);
    let mut chunk = Chunk::default();
    let mut sent = Sent {
        sent: 0,
        stopped_early: false,
        send_error: None,
    };
    let hand_off = |chunk: &mut Chunk| {
        if chunk.futures.is_empty() {
            return;
        }
        let full = std::mem::take(chunk);
        window.acquire(full.futures.len(), full.bytes);
        // The checker only stops once this sender is dropped.
        let _ = tx.send(full);
    };
    loop {
        // Before a read that may block, let the checker see what was sent (so offsets are
        // printed while stdin is quiet).
        if reader.buffer().is_empty() {
            hand_off(&mut chunk);
        }
        if failed.load(Ordering::Relaxed) {
            sent.stopped_early = true;
            break;
        }
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading stdin: {e}"))?;
        if n == 0 {
            break;
        }
        let record = trim_newline(&line);
        let (key, value) = match &args.key_separator {
            Some(sep) => sep.split(record),
            None => (None, record),
        };
        let mut backoff = SEND_RETRY_BACKOFF;
        let retry_until = Instant::now() + SEND_RETRY_FOR;
        let future = loop {
            match producer.send(topic, args.partition, key, Some(value)) {
                Ok(f) => break Ok(f),
                // The broker went away (the producer re-reads metadata on send after a
                // failure): wait for it a little, as the producer does for batches.
                Err(e)
                    if e.is_retriable()
                        && Instant::now() + backoff < retry_until
                        && !failed.load(Ordering::Relaxed) =>
                {
                    hand_off(&mut chunk);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(SEND_RETRY_MAX_BACKOFF);
                }
                Err(e) => break Err(e),
            }
        };
        match future {
            Ok(f) => {
                sent.sent += 1;
                chunk.futures.push(f);
                chunk.bytes += line.len();
                if chunk.futures.len() >= CHUNK_RECORDS {
                    hand_off(&mut chunk);
                }
            }
            Err(e) => {
                sent.send_error = Some(e);
                sent.stopped_early = true;
                break;
            }
        }
    }
    hand_off(&mut chunk);
    Ok(sent)
}

/// The checker thread: waits for every record's acknowledgement in send order.
fn check(rx: mpsc::Receiver<Chunk>, window: &Window, failed: &AtomicBool, print: bool) -> Outcome {
    let mut outcome = Outcome::default();
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut print = print;
    loop {
        let chunk = match rx.try_recv() {
            Ok(c) => c,
            Err(mpsc::TryRecvError::Empty) => {
                // About to wait: show what was printed so far.
                if print {
                    if let Err(e) = out.flush() {
                        stop_printing(&mut print, &mut outcome, e);
                    }
                }
                match rx.recv() {
                    Ok(c) => c,
                    Err(_) => break,
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        let (records, bytes) = (chunk.futures.len(), chunk.bytes);
        for mut future in chunk.futures {
            let result = match poll_now(&mut future) {
                Some(r) => r,
                None => {
                    if print {
                        if let Err(e) = out.flush() {
                            stop_printing(&mut print, &mut outcome, e);
                        }
                    }
                    future.wait()
                }
            };
            match result {
                Ok(RecordMetadata { partition, offset }) => {
                    outcome.acknowledged += 1;
                    if print {
                        if let Err(e) = writeln!(out, "{partition} {offset}") {
                            stop_printing(&mut print, &mut outcome, e);
                        }
                    }
                }
                Err(e) => {
                    if outcome.first_error.is_none() {
                        outcome.first_error = Some(e);
                        failed.store(true, Ordering::Release);
                    }
                }
            }
        }
        window.release(records, bytes);
    }
    if print {
        if let Err(e) = out.flush() {
            stop_printing(&mut print, &mut outcome, e);
        }
    }
    outcome
}

/// A closed stdout (`| head`) only stops the printing; any other write error is reported.
fn stop_printing(print: &mut bool, outcome: &mut Outcome, e: std::io::Error) {
    *print = false;
    if !is_broken_pipe(&e) && outcome.output_error.is_none() {
        outcome.output_error = Some(e);
    }
}

/// The record's outcome if it is already known.
fn poll_now(future: &mut DeliveryFuture) -> Option<<DeliveryFuture as Future>::Output> {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    match Pin::new(future).poll(&mut cx) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        let colon = parse_separator(":").unwrap();
        assert_eq!(colon.split(b"k:v:w"), (Some(&b"k"[..]), &b"v:w"[..]));
        assert_eq!(colon.split(b"novalue"), (None, &b"novalue"[..]));
        assert_eq!(colon.split(b":v"), (Some(&b""[..]), &b"v"[..]));
        let tab = parse_separator("\\t").unwrap();
        assert_eq!(tab.split(b"k\tv"), (Some(&b"k"[..]), &b"v"[..]));
        let multi = parse_separator("=>").unwrap();
        assert_eq!(multi.split(b"a=b=>c"), (Some(&b"a=b"[..]), &b"c"[..]));
        assert!(parse_separator("").is_err());
    }

    #[test]
    fn newlines_are_stripped() {
        assert_eq!(trim_newline(b"a\n"), b"a");
        assert_eq!(trim_newline(b"a\r\n"), b"a");
        assert_eq!(trim_newline(b"a"), b"a");
        assert_eq!(trim_newline(b"\n"), b"");
        assert_eq!(trim_newline(b"a\r"), b"a\r");
    }
}
