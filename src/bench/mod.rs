//! `strata bench`: the load generator and its reports. Throughput and latency of a real broker
//! through the client library (`produce`, `consume`, `e2e`), beside the limits of the same
//! machine (`disk`, `net`), with latency as full HdrHistogram spectra.
//!
//! - [`schedule`]: open- and closed-loop pacing; the coordinated-omission correction.
//! - [`clock`]: `CLOCK_MONOTONIC` nanoseconds and precise sleeps.
//! - [`meter`]: per-thread latency recorders, read per interval and in total.
//! - [`records`]: the batch every request sends, stamped in place for end-to-end latency.
//! - [`produce`], [`consume`], [`e2e`]: the workloads; [`workload`] what they share.
//! - [`report`], [`plot`], [`hdrlog`], [`output`]: table, JSON, ASCII plot, interval log.
//! - [`host`]: pinning client threads, the generator's own CPU use.
//! - [`disk`], [`fio`], [`net`]: the physical limits; [`net_latency`] the latency floor of the
//!   produce shape (`bench net --rate`).

pub mod clock;
pub mod consume;
pub mod disk;
pub mod e2e;
pub mod error;
pub mod fio;
pub mod hdrlog;
pub mod host;
pub mod meter;
pub mod net;
pub mod net_latency;
pub mod output;
pub mod plot;
pub mod produce;
pub mod records;
pub mod report;
pub mod schedule;
pub mod workload;

pub use error::{BenchError, Result};
