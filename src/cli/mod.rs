//! The `strata` command line: one module per command; `main.rs` only parses and dispatches.
//! This module holds what the commands share: logging set-up, the preflight call, the
//! `--broker` flag and the one-line wording of client errors.

pub mod bench;
pub mod consume;
pub mod group;
pub mod log_demo;
pub mod produce;
pub mod topic;

use std::io::IsTerminal;

use clap::Args;

use std::time::Duration;

use crate::client::{ClientError, Connection};
use crate::preflight::{self, Requirements};
use crate::protocol::ErrorCode;
use crate::runtime::IO_MEMORY_BYTES;

/// Where commands that talk to a broker find it when `--broker` and `STRATA_BROKER` are unset.
pub const DEFAULT_BROKER: &str = "127.0.0.1:9700";
/// How long an admin request may take before the command gives up.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The `--broker` flag every client command takes.
#[derive(Debug, Clone, Args)]
pub struct BrokerOpt {
    /// Broker address (any shard's port or the shared listener).
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "STRATA_BROKER",
        default_value = DEFAULT_BROKER,
        global = true
    )]
    pub broker: String,
}

/// Checks io_uring and raises RLIMIT_MEMLOCK for `executors` glommio executors, or explains
/// how to fix the machine.
pub fn preflight(executors: usize) -> Result<(), String> {
    let req = Requirements {
        executors,
        io_memory_bytes: IO_MEMORY_BYTES,
    };
    preflight::ensure(&req)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Logs go to stderr; `RUST_LOG` overrides the default level (`info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// One line a user can act on for a client error; `topic` is the topic the command is about
/// (an unknown topic then comes with the command that creates it).
pub fn error_line(e: &ClientError, topic: Option<&str>) -> String {
    let unknown = |name: &str, partition: Option<u32>| match partition {
        Some(p) => format!("topic {name:?} has no partition {p}"),
        None => format!(
            "unknown topic {name:?} (create it with: strata topic create {name} --partitions N)"
        ),
    };
    match e {
        ClientError::Connect { addr, source } => {
            format!("cannot connect to broker at {addr}: {}", io_text(source))
        }
        ClientError::Io { addr, source } => {
            format!("connection to broker {addr} failed: {}", io_text(source))
        }
        ClientError::UnknownTopic { topic, partition } => unknown(topic, *partition),
        ClientError::Broker { code, message } => match (code, topic) {
            (ErrorCode::UnknownTopic, Some(t)) => unknown(t, None),
            _ if message.is_empty() => format!("the broker answered {code}"),
            _ => message.clone(),
        },
        other => other.to_string(),
    }
}

/// An I/O error's text without the " (os error N)" suffix.
fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
}

/// An admin connection whose requests time out instead of hanging on a stuck broker.
pub fn admin_connection(broker: &str) -> Result<Connection, String> {
    let conn = Connection::connect(broker)
        .map_err(|e| error_line(&e, None))?
        .with_client_id("strata-cli");
    conn.set_read_timeout(Some(ADMIN_TIMEOUT))
        .map_err(|e| error_line(&e, None))?;
    Ok(conn)
}

/// Left-aligned columns separated by two spaces, no trailing blanks.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < N {
                line.extend(std::iter::repeat_n(
                    ' ',
                    widths[i] - cell.chars().count() + 2,
                ));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// True for a write to a closed pipe (`strata consume ... | head`).
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// The error line for `--partition P` when the topic has no partition `P`.
pub fn check_partition(topic: &str, partitions: u32, partition: Option<u32>) -> Result<(), String> {
    match partition {
        Some(p) if p >= partitions => Err(format!(
            "topic {topic:?} has {partitions} partition(s), 0 to {}: there is no partition {p}",
            partitions.saturating_sub(1)
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_name_the_address_without_os_error_numbers() {
        let e = ClientError::Connect {
            addr: "127.0.0.1:1".into(),
            source: std::io::Error::from_raw_os_error(libc::ECONNREFUSED),
        };
        assert_eq!(
            error_line(&e, None),
            "cannot connect to broker at 127.0.0.1:1: Connection refused"
        );
    }

    #[test]
    fn unknown_topics_say_how_to_create_them() {
        let e = ClientError::UnknownTopic {
            topic: "x".into(),
            partition: None,
        };
        assert_eq!(
            error_line(&e, Some("x")),
            "unknown topic \"x\" (create it with: strata topic create x --partitions N)"
        );
        let e = ClientError::Broker {
            code: ErrorCode::UnknownTopic,
            message: "unknown topic \"x\"".into(),
        };
        assert!(error_line(&e, Some("x")).contains("strata topic create x"));
        let e = ClientError::UnknownTopic {
            topic: "x".into(),
            partition: Some(7),
        };
        assert_eq!(error_line(&e, Some("x")), "topic \"x\" has no partition 7");
    }
}
