//! The `strata` command line: one module per command; `main.rs` only parses and dispatches.

pub mod log_demo;

use std::io::IsTerminal;

use crate::preflight::{self, Requirements};
use crate::runtime::IO_MEMORY_BYTES;

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
