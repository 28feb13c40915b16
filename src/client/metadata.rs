//! The client's view of the broker: which shard endpoint owns each partition of a topic, read
//! from Metadata and cached until a failure says it may be stale.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};

use crate::protocol::{ErrorCode, MetadataResponse};

use super::{ClientError, Connection};

/// Where a topic's partitions live. Invariant: `owners.len() == partitions`.
#[derive(Debug, Clone)]
pub struct TopicRoute {
    pub partitions: u32,
    owners: Vec<SocketAddr>,
}

impl TopicRoute {
    /// The shard endpoint that owns `partition`.
    pub fn endpoint(&self, partition: u32) -> Result<SocketAddr, ClientError> {
        self.owners.get(partition as usize).copied().ok_or_else(|| {
            ClientError::Invalid(format!(
                "partition {partition} is out of range 0..{}",
                self.partitions
            ))
        })
    }
}

/// Cached routes plus a connection for Metadata requests. Invariant: every cached route came
/// from one Metadata answer of the broker at `bootstrap`; `stale` routes are asked again before
/// use, and used as they are while the broker cannot answer.
pub struct ClusterView {
    bootstrap: String,
    conn: Option<Connection>,
    routes: HashMap<String, TopicRoute>,
    stale: bool,
}

impl ClusterView {
    /// Connects to `bootstrap` and checks that it answers Metadata.
    pub fn connect(bootstrap: &str) -> Result<ClusterView, ClientError> {
        let mut view = ClusterView {
            bootstrap: bootstrap.to_string(),
            conn: None,
            routes: HashMap::new(),
            stale: false,
        };
        view.fetch(&[])?;
        Ok(view)
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The route of `topic`, from the cache or a Metadata request; `UnknownTopic` if the
    /// broker has no such topic.
    pub fn route(&mut self, topic: &str) -> Result<&TopicRoute, ClientError> {
        if self.stale {
            match self.fetch(&[]) {
                Ok(_) => self.stale = false,
                // The broker may be restarting: keep routing by what it said last.
                Err(e) if self.routes.contains_key(topic) && e.is_retriable() => {
                    tracing::debug!(error = %e, "metadata refresh failed; using cached routes");
                }
                Err(e) => return Err(e),
            }
        }
        if !self.routes.contains_key(topic) {
            self.fetch(&[topic.to_string()])?;
        }
        self.routes
            .get(topic)
            .ok_or_else(|| ClientError::UnknownTopic {
                topic: topic.to_string(),
                partition: None,
            })
    }

    /// The cached partition count of `topic`, if any.
    pub fn known_partitions(&self, topic: &str) -> Option<u32> {
        self.routes.get(topic).map(|r| r.partitions)
    }

    /// Marks every route stale (and drops the connection): the next `route` asks the broker
    /// again, and falls back on the old route only while the broker cannot answer.
    pub fn invalidate(&mut self) {
        self.stale = true;
        self.conn = None;
    }

    /// Metadata of `topics` (every topic when empty), caching the routes it gives.
    pub fn fetch(&mut self, topics: &[String]) -> Result<MetadataResponse, ClientError> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self
                .conn
                .insert(Connection::connect(&self.bootstrap)?.with_client_id("strata-client")),
        };
        let meta = match conn.metadata(topics) {
            Ok(m) => m,
            Err(e) => {
                self.conn = None;
                return Err(e);
            }
        };
        let shard_addrs = self.shard_addrs(&meta)?;
        if topics.is_empty() {
            // Every topic was listed: forget the ones that are gone.
            self.routes
                .retain(|name, _| meta.topics.iter().any(|t| &t.name == name));
        }
        for t in &meta.topics {
            if t.error != ErrorCode::None {
                self.routes.remove(&t.name);
                continue;
            }
            let owners = t
                .partitions
                .iter()
                .map(|p| {
                    shard_addrs.get(&p.shard).copied().ok_or_else(|| {
                        ClientError::Invalid(format!(
                            "metadata names shard {} for {}/{} but no endpoint for it",
                            p.shard, t.name, p.partition
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let route = TopicRoute {
                partitions: owners.len() as u32,
                owners,
            };
            self.routes.insert(t.name.clone(), route);
        }
        Ok(meta)
    }

    /// Each shard's endpoint; an unspecified host (0.0.0.0, ::) means "the bootstrap host".
    fn shard_addrs(
        &self,
        meta: &MetadataResponse,
    ) -> Result<HashMap<u32, SocketAddr>, ClientError> {
        let bootstrap_ip = self
            .bootstrap
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.ip());
        meta.shards
            .iter()
            .map(|s| {
                let resolved = (s.host.as_str(), s.port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| {
                        ClientError::Invalid(format!(
                            "shard {} endpoint {}:{} does not resolve",
                            s.shard, s.host, s.port
                        ))
                    })?;
                let addr = match (resolved.ip().is_unspecified(), bootstrap_ip) {
                    (true, Some(ip)) => SocketAddr::new(ip, s.port),
                    _ => resolved,
                };
                Ok((s.shard, addr))
            })
            .collect()
    }
}
