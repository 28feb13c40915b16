//! Starting, pinning and joining the executors.

use std::future::Future;

use futures::channel::oneshot;
use glommio::channels::channel_mesh::{MeshBuilder, Receivers, Senders};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use super::Shutdown;

/// Messages in flight per mesh channel before a sender waits.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// What an executor runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Data shard `n`: owns the partitions `shard_for` gives it.
    Data(u32),
    /// The coordinator: topic catalog (and, later, consumer groups).
    Coordinator,
}

/// Where the executors run. Invariant: `shard_cpus.len() >= 1` (one entry per data shard).
#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub shard_cpus: Vec<usize>,
    pub coordinator_cpu: usize,
    pub io_memory: usize,
}

/// Everything an executor's main future gets. Mesh peer `i < shard_count` is data shard `i`;
/// peer `shard_count` is the coordinator.
pub struct ShardContext<M: Send + 'static> {
    pub role: Role,
    pub peer: usize,
    pub shard_count: u32,
    pub senders: Senders<M>,
    pub receivers: Receivers<M>,
    pub shutdown: Shutdown,
}

impl<M: Send + 'static> ShardContext<M> {
    /// The mesh peer of the coordinator.
    pub fn coordinator_peer(&self) -> usize {
        self.shard_count as usize
    }
}

/// The running executors. Dropping it without `join` leaves them running.
pub struct Pool {
    handles: Vec<(String, ExecutorJoinHandle<Result<(), String>>)>,
    stops: Vec<oneshot::Sender<()>>,
}

impl Pool {
    /// Starts the data shards then the coordinator, in that order (mesh peer ids follow
    /// executor creation order), each pinned to its CPU, each running `main(ctx)`.
    pub fn start<M, F, Fut>(spec: &PoolSpec, main: F) -> Result<Pool, String>
    where
        M: Send + 'static,
        F: Fn(ShardContext<M>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = Result<(), String>> + 'static,
    {
        assert!(!spec.shard_cpus.is_empty(), "at least one data shard");
        let shard_count = spec.shard_cpus.len();
        let mesh = MeshBuilder::<M, _>::full(shard_count + 1, MESH_CHANNEL_CAPACITY);
        let mut pool = Pool {
            handles: Vec::new(),
            stops: Vec::new(),
        };
        let roles = (0..shard_count as u32)
            .map(|s| (Role::Data(s), spec.shard_cpus[s as usize]))
            .chain(std::iter::once((Role::Coordinator, spec.coordinator_cpu)));
        for (peer, (role, cpu)) in roles.enumerate() {
            let name = match role {
                Role::Data(s) => format!("shard-{s}"),
                Role::Coordinator => "coordinator".to_string(),
            };
            let (stop, shutdown) = Shutdown::new();
            let mesh = mesh.clone();
            let main = main.clone();
            let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
                .name(&name)
                .io_memory(spec.io_memory)
                .spawn(move || async move {
                    let (senders, receivers) = mesh
                        .join()
                        .await
                        .map_err(|e| format!("joining the shard mesh failed: {e}"))?;
                    // Creation order decides mesh ids; a mismatch would misroute every request.
                    assert_eq!(
                        senders.peer_id(),
                        peer,
                        "mesh peer id must follow creation order"
                    );
                    main(ShardContext {
                        role,
                        peer,
                        shard_count: shard_count as u32,
                        senders,
                        receivers,
                        shutdown,
                    })
                    .await
                })
                .map_err(|e| format!("cannot start executor {name} on cpu {cpu}: {e}"))?;
            pool.handles.push((name, handle));
            pool.stops.push(stop);
        }
        Ok(pool)
    }

    /// Asks every executor to stop (they finish in-flight work first).
    pub fn shutdown(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }

    /// Waits for every executor; the first error (or panic) wins.
    pub fn join(self) -> Result<(), String> {
        let mut first = Ok(());
        for (name, handle) in self.handles {
            let res = match handle.join() {
                Ok(r) => r.map_err(|e| format!("{name}: {e}")),
                Err(e) => Err(format!("{name} failed: {e}")),
            };
            if first.is_ok() {
                first = res;
            }
        }
        first
    }
}
