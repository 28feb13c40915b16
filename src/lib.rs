//! strata: a thread-per-core message broker. See ARCHITECTURE.md for the map.

pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod coordinator;
pub mod demo;
pub mod metadata;
pub mod preflight;
pub mod protocol;
pub mod record;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod storage;
