//! strata: a thread-per-core message broker. See ARCHITECTURE.md for the map.

pub mod cli;
pub mod demo;
pub mod preflight;
pub mod record;
pub mod runtime;
pub mod storage;
