//! `strata consume TOPIC`: prints the records of a topic's partitions, one value per line or
//! formatted like kcat's `-f`, until enough records, an idle timeout, or Ctrl-C.

use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::client::{
    ClientError, Consumer, ConsumerConfig, ConsumerRecord, GroupConsumer, GroupConsumerConfig,
    OffsetReset, SeekTo, DEFAULT_SESSION_TIMEOUT_MS,
};

use super::{error_line, is_broken_pipe, BrokerOpt};

/// Longest a single poll blocks, so Ctrl-C and the idle timeout are noticed promptly.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// Arguments of `strata consume`.
#[derive(Debug, Args)]
#[command(
    after_help = "FMT (like kcat -f): %t topic, %p partition, %o offset, %k key, %v value,\n\
%T timestamp (ms), %% a percent sign, \\n newline, \\t tab, \\\\ backslash. With --format\n\
nothing is added after each record: end FMT with \\n for one record per line.\n\n\
With --group G the command is a member of consumer group G: the broker assigns it some of the\n\
topic's partitions, it starts each at the group's committed offset (or, with none, at the end,\n\
or the beginning with --from-beginning), and it commits what it printed before it gives up a\n\
partition and when it exits (idle timeout, --max-messages, Ctrl-C).\n\n\
Examples:\n  strata consume orders --from-beginning --idle-timeout-ms 1000\n  strata consume orders --group billing --from-beginning\n  strata consume orders --partition 2 --offset 100 --max-messages 10\n  strata consume orders --from-beginning --format '%p %o %k=%v\\n'"
)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Read only this partition [default: every partition of the topic].
    #[arg(long, value_name = "P", conflicts_with = "group")]
    pub partition: Option<u32>,
    /// Start at the first record still in the log [default: the end, only new records]. With
    /// --group: where partitions without a committed offset start.
    #[arg(long, conflicts_with_all = ["offset", "from_timestamp"])]
    pub from_beginning: bool,
    /// Start at this offset (of each partition read).
    #[arg(long, value_name = "O", value_parser = clap::value_parser!(i64).range(0..), conflicts_with_all = ["from_timestamp", "group"])]
    pub offset: Option<i64>,
    /// Start at the first record stamped at or after this time (ms since the epoch).
    #[arg(long, value_name = "MS", conflicts_with = "group")]
    pub from_timestamp: Option<i64>,
    /// Consume as a member of this consumer group (see below).
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    /// With --group: the broker drops this member when it hears nothing for this long.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_SESSION_TIMEOUT_MS, requires = "group")]
    pub session_timeout_ms: u32,
    /// With --group: the group's assignor, when this member starts an empty group
    /// (range, roundrobin, sticky) [default: the group's, else sticky].
    #[arg(long, value_name = "NAME", requires = "group")]
    pub assignor: Option<String>,
    /// Exit after printing N records.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Exit when no record arrived for this long.
    #[arg(long, value_name = "MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Print each record in this format (see below) [default: the value and a newline].
    #[arg(long, value_name = "FMT", value_parser = parse_format)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub broker: BrokerOpt,
}

/// One piece of a `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
}

/// A parsed `--format`. Invariant: no two literals are adjacent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format(Vec<Token>);

fn parse_format(s: &str) -> Result<Format, String> {
    let mut tokens = Vec::new();
    let mut literal = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        let field = match c {
            '%' => match chars.next() {
                Some('t') => Token::Topic,
                Some('p') => Token::Partition,
                Some('o') => Token::Offset,
                Some('k') => Token::Key,
                Some('v') => Token::Value,
                Some('T') => Token::Timestamp,
                Some('%') => {
                    literal.push(b'%');
                    continue;
                }
                Some(other) => {
                    return Err(format!(
                        "unknown field %{other} (use %t %p %o %k %v %T or %%)"
                    ))
                }
                None => {
                    return Err(
                        "the format ends with a lone % (write %% for a percent sign)".into(),
                    )
                }
            },
            '\\' => {
                let byte = match chars.next() {
                    Some('n') => b'\n',
                    Some('t') => b'\t',
                    Some('r') => b'\r',
                    Some('0') => b'\0',
                    Some('\\') => b'\\',
                    Some(other) => {
                        return Err(format!(
                            "unknown escape \\{other} (use \\n \\t \\r \\0 or \\\\)"
                        ))
                    }
                    None => {
                        return Err(
                            "the format ends with a lone \\ (write \\\\ for a backslash)".into(),
                        )
                    }
                };
                literal.push(byte);
                continue;
            }
            c => {
                let mut buf = [0u8; 4];
                literal.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
        };
        if !literal.is_empty() {
            tokens.push(Token::Literal(std::mem::take(&mut literal)));
        }
        tokens.push(field);
    }
    if !literal.is_empty() {
        tokens.push(Token::Literal(literal));
    }
    Ok(Format(tokens))
}

/// Writes one record: as `format`, or its value and a newline.
fn write_record(
    out: &mut impl Write,
    format: Option<&Format>,
    r: &ConsumerRecord,
) -> std::io::Result<()> {
    let Some(format) = format else {
        out.write_all(r.value.as_deref().unwrap_or_default())?;
        return out.write_all(b"\n");
    };
    for token in &format.0 {
        match token {
            Token::Literal(bytes) => out.write_all(bytes)?,
            Token::Topic => out.write_all(r.topic.as_bytes())?,
            Token::Partition => write!(out, "{}", r.partition)?,
            Token::Offset => write!(out, "{}", r.offset)?,
            Token::Key => out.write_all(r.key.as_deref().unwrap_or_default())?,
            Token::Value => out.write_all(r.value.as_deref().unwrap_or_default())?,
            Token::Timestamp => write!(out, "{}", r.timestamp)?,
        }
    }
    Ok(())
}

pub fn run(args: ConsumeArgs) -> Result<(), String> {
    let topic = args.topic.as_str();
    // Ctrl-C (or SIGTERM) ends the loop and the command exits 0 after flushing stdout; a second
    // Ctrl-C while it is stuck exits at once.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
            .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    }

    let mut source = match &args.group {
        Some(group) => Source::Group(join_group(&args, group)?),
        None => Source::Plain(assign(&args)?),
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(256 * 1024, stdout.lock());
    let written = print_records(&mut source, &args, &stop, &mut out)
        .and_then(|()| out.flush().map_err(Stop::Output));
    match written {
        // Everything returned was printed: a group member commits it as it leaves.
        Ok(()) => source.close().map_err(|e| error_line(&e, Some(topic))),
        // Some records may not have been printed: leave without committing them.
        Err(Stop::Output(e)) if is_broken_pipe(&e) => Ok(()),
        Err(Stop::Output(e)) => Err(format!("writing to stdout: {e}")),
        Err(Stop::Failed(e)) => {
            // Show what was read before the failure.
            let _ = out.flush();
            Err(e)
        }
    }
}

/// Where records come from: chosen partitions, or a consumer group's assignment.
#[allow(clippy::large_enum_variant)] // one per process
enum Source {
    Plain(Consumer),
    Group(GroupConsumer),
}

impl Source {
    fn poll_max(
        &mut self,
        timeout: Duration,
        max: usize,
    ) -> Result<Vec<ConsumerRecord>, ClientError> {
        match self {
            Source::Plain(c) => c.poll_max(timeout, max),
            Source::Group(g) => g.poll_max(timeout, max),
        }
    }

    /// A group member commits what was returned and leaves the group.
    fn close(self) -> Result<(), ClientError> {
        match self {
            Source::Plain(_) => Ok(()),
            Source::Group(g) => g.close(),
        }
    }
}

/// A consumer reading the partitions and start offsets the flags name.
fn assign(args: &ConsumeArgs) -> Result<Consumer, String> {
    let topic = args.topic.as_str();
    let mut consumer = Consumer::connect(&args.broker.broker, ConsumerConfig::default())
        .map_err(|e| error_line(&e, Some(topic)))?;
    let partitions = consumer
        .partitions(topic)
        .map_err(|e| error_line(&e, Some(topic)))?;
    super::check_partition(topic, partitions, args.partition)?;
    let from = match (args.from_beginning, args.offset, args.from_timestamp) {
        (true, _, _) => SeekTo::Earliest,
        (_, Some(o), _) => SeekTo::Offset(o),
        (_, _, Some(ts)) => SeekTo::Timestamp(ts),
        _ => SeekTo::Latest,
    };
    let only = args.partition.map(|p| [p]);
    consumer
        .assign(topic, only.as_ref().map(|p| &p[..]), from)
        .map_err(|e| error_line(&e, Some(topic)))?;
    Ok(consumer)
}

/// A member of `group` subscribed to the topic (which must exist).
fn join_group(args: &ConsumeArgs, group: &str) -> Result<GroupConsumer, String> {
    let topic = args.topic.as_str();
    crate::client::ClusterView::connect(&args.broker.broker)
        .and_then(|mut view| view.route(topic).map(|_| ()))
        .map_err(|e| error_line(&e, Some(topic)))?;
    let mut config = GroupConsumerConfig::new(group, &[topic]);
    config.session_timeout_ms = args.session_timeout_ms;
    config.assignor.clone_from(&args.assignor);
    config.client_id = "strata-consume".to_string();
    config.auto_offset_reset = if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    GroupConsumer::connect(&args.broker.broker, config).map_err(|e| error_line(&e, Some(topic)))
}

/// Why printing stopped early.
enum Stop {
    Output(std::io::Error),
    Failed(String),
}

/// Polls and prints until `--max-messages`, the idle timeout, or `stop`.
fn print_records(
    source: &mut Source,
    args: &ConsumeArgs,
    stop: &AtomicBool,
    out: &mut impl Write,
) -> Result<(), Stop> {
    let idle = args.idle_timeout_ms.map(Duration::from_millis);
    let mut left = args.max_messages.unwrap_or(u64::MAX);
    let mut last_record = Instant::now();
    while left > 0 && !stop.load(Ordering::Acquire) {
        let wait = match idle {
            Some(idle) => {
                let remaining = idle.saturating_sub(last_record.elapsed());
                if remaining.is_zero() {
                    break;
                }
                remaining.min(POLL_SLICE)
            }
            None => POLL_SLICE,
        };
        let max = usize::try_from(left).unwrap_or(usize::MAX);
        let records = source
            .poll_max(wait, max)
            .map_err(|e| Stop::Failed(error_line(&e, Some(&args.topic))))?;
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        for r in &records {
            write_record(out, args.format.as_ref(), r).map_err(Stop::Output)?;
        }
        left -= records.len() as u64;
        // Records show up as they arrive, not when a buffer fills.
        out.flush().map_err(Stop::Output)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(key: Option<&'static str>, value: Option<&'static str>) -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::from("orders"),
            partition: 3,
            offset: 42,
            timestamp: 1_700_000_000_000,
            key: key.map(|k| Bytes::from_static(k.as_bytes())),
            value: value.map(|v| Bytes::from_static(v.as_bytes())),
            headers: Vec::new(),
        }
    }

    fn render(format: Option<&str>, r: &ConsumerRecord) -> String {
        let format = format.map(|f| parse_format(f).unwrap());
        let mut out = Vec::new();
        write_record(&mut out, format.as_ref(), r).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_like_kcat() {
        let r = record(Some("k"), Some("v"));
        assert_eq!(render(None, &r), "v\n");
        assert_eq!(
            render(Some("%t/%p@%o %k=%v %T 100%%\\t|\\n"), &r),
            "orders/3@42 k=v 1700000000000 100%\t|\n"
        );
        assert_eq!(render(Some("%v"), &r), "v", "nothing is appended");
        assert_eq!(render(Some("[%k][%v]\\n"), &record(None, None)), "[][]\n");
        assert_eq!(render(Some("é%v\\\\"), &r), "év\\");
    }

    #[test]
    fn bad_formats_are_refused() {
        assert!(parse_format("%x").is_err());
        assert!(parse_format("abc%").is_err());
        assert!(parse_format("\\q").is_err());
        assert!(parse_format("\\").is_err());
    }
}
