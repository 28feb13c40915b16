//! Broker settings: command-line flags over an optional TOML file over defaults.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::coordinator::{GroupConfig, DEFAULT_COMPACT_BYTES};
use crate::protocol::DEFAULT_MAX_FRAME_BYTES;
use crate::storage::{FsyncPolicy, LogConfig, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};

/// Default listen address of the shared port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9700";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "strata-data";
/// Smallest frame limit worth running with (a header plus a small batch).
pub const MIN_FRAME_BYTES: usize = 64 * 1024;
/// How often each shard enforces retention on its logs.
pub const RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// `strata broker` flags. Every flag may also come from `--config FILE`; flags win.
#[derive(Debug, Args, Default)]
#[command(
    after_help = "Examples:\n  strata broker\n  strata broker --data-dir /var/lib/strata --listen 0.0.0.0:9700 --fsync interval=5\n  strata broker --config /etc/strata/broker.toml --shards 2\n\n\
Shard s also listens on port + 1 + s (shard-aware clients connect there directly).\n\
The config file takes the same settings with underscores: data_dir, listen, shards,\n\
coordinator_core, fsync, max_frame_bytes, segment_bytes, retention_bytes, retention_ms,\n\
group_min_session_timeout_ms, group_max_session_timeout_ms, group_heartbeat_interval_ms,\n\
group_rebalance_timeout_ms, group_offsets_compact_bytes."
)]
pub struct BrokerArgs {
    /// TOML file with the same settings as the flags.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding the topic catalog and every partition's log [default: strata-data].
    #[arg(long, value_name = "DIR", env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Shared listen address; every shard accepts on it [default: 127.0.0.1:9700].
    #[arg(long, value_name = "HOST:PORT", env = "STRATA_LISTEN")]
    pub listen: Option<String>,
    /// Number of data shards [default: every core but the coordinator's, at least 1].
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Core that runs the coordinator (topic catalog) [default: the last core].
    #[arg(long, value_name = "CORE")]
    pub coordinator_core: Option<usize>,
    /// When a produce is acknowledged: always (after fdatasync), never, or interval=MS [default: always].
    #[arg(long, value_name = "POLICY")]
    pub fsync: Option<FsyncPolicy>,
    /// Largest frame accepted; larger ones get FrameTooLarge and the connection is closed [default: 16 MiB].
    #[arg(long, value_name = "BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Default segment size of new topics [default: 1 GiB].
    #[arg(long, value_name = "BYTES")]
    pub segment_bytes: Option<u64>,
    /// Default size limit of a partition for new topics [default: none].
    #[arg(long, value_name = "BYTES")]
    pub retention_bytes: Option<u64>,
    /// Default age limit of records for new topics [default: 7 days].
    #[arg(long, value_name = "MS")]
    pub retention_ms: Option<u64>,
    /// Shortest session timeout a consumer-group member may ask for [default: 500].
    #[arg(long, value_name = "MS")]
    pub group_min_session_timeout_ms: Option<u32>,
    /// Longest session timeout a consumer-group member may ask for [default: 300000].
    #[arg(long, value_name = "MS")]
    pub group_max_session_timeout_ms: Option<u32>,
    /// How often group members heartbeat (at most a third of their session timeout) [default: 1000].
    #[arg(long, value_name = "MS")]
    pub group_heartbeat_interval_ms: Option<u32>,
    /// How long a member may take to release revoked partitions before it is removed [default: 60000].
    #[arg(long, value_name = "MS")]
    pub group_rebalance_timeout_ms: Option<u32>,
    /// Compact the committed-offsets log after this many bytes of commits [default: 64 MiB].
    #[arg(long, value_name = "BYTES")]
    pub group_offsets_compact_bytes: Option<u64>,
}

/// The config file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    shards: Option<usize>,
    coordinator_core: Option<usize>,
    fsync: Option<String>,
    max_frame_bytes: Option<usize>,
    segment_bytes: Option<u64>,
    retention_bytes: Option<u64>,
    retention_ms: Option<u64>,
    group_min_session_timeout_ms: Option<u32>,
    group_max_session_timeout_ms: Option<u32>,
    group_heartbeat_interval_ms: Option<u32>,
    group_rebalance_timeout_ms: Option<u32>,
    group_offsets_compact_bytes: Option<u64>,
}

/// Resolved broker settings. Invariant (checked by `resolve`): every shard port fits in u16,
/// cores exist, limits within bounds.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// CPU of each data shard, indexed by shard.
    pub shard_cpus: Vec<usize>,
    pub coordinator_cpu: usize,
    pub fsync: FsyncPolicy,
    pub max_frame_bytes: usize,
    pub segment_bytes: u64,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    /// Consumer-group settings of the coordinator.
    pub groups: GroupConfig,
    /// Compact the offsets log after this many bytes appended.
    pub offsets_compact_bytes: u64,
}

impl BrokerConfig {
    /// Merges flags over the config file over defaults, and checks the result against `cpus`
    /// (the CPU ids this process may run on).
    pub fn resolve(args: &BrokerArgs, cpus: &[usize]) -> Result<BrokerConfig, String> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir: PathBuf = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        // Absolute from here on: the banner says where the data is, and glommio cannot open a
        // relative directory (EBADF).
        let data_dir = std::path::absolute(&data_dir)
            .map_err(|e| format!("invalid data dir {}: {e}", data_dir.display()))?;
        let listen_s = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_s
            .to_socket_addrs()
            .map_err(|e| format!("invalid listen address {listen_s:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("listen address {listen_s:?} resolves to nothing"))?;
        let fsync = match (args.fsync, file.fsync) {
            (Some(p), _) => p,
            (None, Some(s)) => s.parse().map_err(|e| format!("config file: {e}"))?,
            (None, None) => FsyncPolicy::Always,
        };
        if cpus.is_empty() {
            return Err("no CPU is available to this process".into());
        }
        let coordinator_cpu = match args.coordinator_core.or(file.coordinator_core) {
            Some(c) if cpus.contains(&c) => c,
            Some(c) => {
                return Err(format!(
                    "--coordinator-core {c} is not an available core (available: {cpus:?})"
                ))
            }
            None => *cpus.last().expect("non-empty"),
        };
        let data_cpus: Vec<usize> = cpus
            .iter()
            .copied()
            .filter(|&c| c != coordinator_cpu)
            .collect();
        let shards = args
            .shards
            .or(file.shards)
            .unwrap_or(data_cpus.len().max(1));
        if shards == 0 {
            return Err("--shards must be at least 1".into());
        }
        // Shards take the non-coordinator cores first, then share cores round-robin.
        let pool: Vec<usize> = if data_cpus.is_empty() {
            cpus.to_vec()
        } else {
            data_cpus
        };
        let order: Vec<usize> = pool
            .iter()
            .chain(std::iter::once(&coordinator_cpu))
            .copied()
            .collect();
        let shard_cpus = (0..shards)
            .map(|s| order[s % order.len()])
            .collect::<Vec<_>>();
        if u32::from(listen.port()) + 1 + shards as u32 > u32::from(u16::MAX) {
            return Err(format!(
                "listen port {} leaves no room for {shards} shard ports (port + 1 + shard)",
                listen.port()
            ));
        }
        if listen.port() == 0 {
            return Err(
                "listen port must not be 0: shard ports are derived from it (port + 1 + shard)"
                    .into(),
            );
        }
        let max_frame_bytes = args
            .max_frame_bytes
            .or(file.max_frame_bytes)
            .unwrap_or(DEFAULT_MAX_FRAME_BYTES);
        if max_frame_bytes < MIN_FRAME_BYTES || max_frame_bytes > u32::MAX as usize {
            return Err(format!(
                "--max-frame-bytes {max_frame_bytes} out of range {MIN_FRAME_BYTES}..={}",
                u32::MAX
            ));
        }
        let defaults = LogConfig::default();
        let segment_bytes = args
            .segment_bytes
            .or(file.segment_bytes)
            .unwrap_or(defaults.segment_bytes);
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&segment_bytes) {
            return Err(format!(
                "--segment-bytes {segment_bytes} out of range {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}"
            ));
        }
        let group_defaults = GroupConfig::default();
        let groups = GroupConfig {
            min_session_timeout_ms: args
                .group_min_session_timeout_ms
                .or(file.group_min_session_timeout_ms)
                .unwrap_or(group_defaults.min_session_timeout_ms),
            max_session_timeout_ms: args
                .group_max_session_timeout_ms
                .or(file.group_max_session_timeout_ms)
                .unwrap_or(group_defaults.max_session_timeout_ms),
            heartbeat_interval_ms: args
                .group_heartbeat_interval_ms
                .or(file.group_heartbeat_interval_ms)
                .unwrap_or(group_defaults.heartbeat_interval_ms),
            rebalance_timeout_ms: args
                .group_rebalance_timeout_ms
                .or(file.group_rebalance_timeout_ms)
                .unwrap_or(group_defaults.rebalance_timeout_ms),
        };
        groups.validate()?;
        let offsets_compact_bytes = args
            .group_offsets_compact_bytes
            .or(file.group_offsets_compact_bytes)
            .unwrap_or(DEFAULT_COMPACT_BYTES);
        if offsets_compact_bytes == 0 {
            return Err("--group-offsets-compact-bytes must be at least 1".into());
        }
        Ok(BrokerConfig {
            data_dir,
            listen,
            shard_cpus,
            coordinator_cpu,
            fsync,
            max_frame_bytes,
            segment_bytes,
            retention_bytes: args.retention_bytes.or(file.retention_bytes),
            retention_ms: args
                .retention_ms
                .or(file.retention_ms)
                .or(defaults.retention_ms),
            groups,
            offsets_compact_bytes,
        })
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_cpus.len() as u32
    }

    /// Port of shard `s`'s own listener.
    pub fn shard_port(&self, shard: u32) -> u16 {
        self.listen.port() + 1 + shard as u16
    }

    /// The log settings of a partition of a topic with these overrides.
    pub fn log_config(
        &self,
        segment_bytes: Option<u64>,
        retention_bytes: Option<u64>,
        retention_ms: Option<u64>,
    ) -> LogConfig {
        let segment_bytes = segment_bytes.unwrap_or(self.segment_bytes);
        LogConfig {
            segment_bytes,
            fsync: self.fsync,
            retention_bytes: retention_bytes.or(self.retention_bytes),
            retention_ms: retention_ms.or(self.retention_ms),
            max_batch_bytes: self.max_frame_bytes.min(segment_bytes as usize),
            ..LogConfig::default()
        }
    }
}

fn load_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_on_two_cores_give_one_shard_and_the_coordinator_on_the_last_core() {
        let c = BrokerConfig::resolve(&BrokerArgs::default(), &[0, 1]).unwrap();
        assert_eq!(c.shard_cpus, vec![0]);
        assert_eq!(c.coordinator_cpu, 1);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.shard_port(0), 9701);
        assert_eq!(c.fsync, FsyncPolicy::Always);
    }

    #[test]
    fn more_shards_than_cores_share_cores() {
        let args = BrokerArgs {
            shards: Some(3),
            ..Default::default()
        };
        let c = BrokerConfig::resolve(&args, &[0, 1]).unwrap();
        assert_eq!(c.shard_cpus, vec![0, 1, 0]);
        let c = BrokerConfig::resolve(&args, &[0]).unwrap();
        assert_eq!(c.shard_cpus, vec![0, 0, 0]);
        assert_eq!(c.coordinator_cpu, 0);
    }

    #[test]
    fn flags_override_the_file_and_bad_values_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\nfsync = \"never\"\nshards = 2\n",
        )
        .unwrap();
        let args = BrokerArgs {
            config: Some(path.clone()),
            shards: Some(1),
            ..Default::default()
        };
        let c = BrokerConfig::resolve(&args, &[0, 1]).unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.fsync, FsyncPolicy::Never);
        assert_eq!(c.shard_cpus.len(), 1, "the flag wins over the file");

        std::fs::write(&path, "listn = \"x\"\n").unwrap();
        let err = BrokerConfig::resolve(&args, &[0, 1]).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
        let bad = BrokerArgs {
            listen: Some("nonsense".into()),
            ..Default::default()
        };
        assert!(BrokerConfig::resolve(&bad, &[0, 1])
            .unwrap_err()
            .contains("invalid listen address"));
        let bad = BrokerArgs {
            coordinator_core: Some(7),
            ..Default::default()
        };
        assert!(BrokerConfig::resolve(&bad, &[0, 1])
            .unwrap_err()
            .contains("not an available core"));
        let bad = BrokerArgs {
            listen: Some("127.0.0.1:65535".into()),
            ..Default::default()
        };
        assert!(BrokerConfig::resolve(&bad, &[0, 1])
            .unwrap_err()
            .contains("no room"));
    }
}
