//! The client side of the native protocol. `Connection` is one blocking, pipelined connection;
//! the producer and consumer build on it.

mod connection;
mod error;

pub use connection::{split_batches, Connection, CONNECT_TIMEOUT, MAX_RESPONSE_FRAME_BYTES};
pub use error::ClientError;
