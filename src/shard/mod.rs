//! The executor pool: one pinned glommio executor per data shard plus one for the coordinator,
//! connected by a full channel mesh. This module and the server's I/O edges are the only code
//! that knows about glommio's executors and channels.

mod placement;
mod pool;
mod shutdown;

pub use placement::shard_for;
pub use pool::{Pool, PoolSpec, Role, ShardContext, MESH_CHANNEL_CAPACITY};
pub use shutdown::Shutdown;
