//! The broker: listeners and connections on every data shard, requests routed to the shard that
//! owns their partition, the topic catalog on the coordinator.

mod broker;
pub mod config;
mod conn;
mod coordinator;
mod errors;
mod groups;
mod msg;
mod shard;

pub use broker::{run, LOCK_FILE};
pub use config::{BrokerArgs, BrokerConfig};

/// What executors tell the main thread during start-up (and when they fail later).
#[derive(Debug)]
pub enum Ready {
    Shard { id: u32, port: u16 },
    Coordinator { topics: usize },
    Failed(String),
}
