//! `strata topic create | list | describe | delete`: the topic catalog, through one admin
//! connection to the broker.

use std::net::IpAddr;

use clap::{Args, Subcommand};

use crate::client::ClientError;
use crate::protocol::{ErrorCode, MetadataResponse, TopicSpec};

use super::{admin_connection as connect, error_line, table, BrokerOpt};

/// Arguments of `strata topic`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  strata topic create orders --partitions 4\n  strata topic list\n  strata topic describe orders\n  strata topic delete orders"
)]
pub struct TopicArgs {
    #[command(flatten)]
    pub broker: BrokerOpt,
    #[command(subcommand)]
    pub command: TopicCommand,
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    #[command(
        after_help = "Examples:\n  strata topic create orders --partitions 4\n  strata topic create logs --partitions 8 --retention-ms 86400000 --segment-bytes 134217728"
    )]
    Create(CreateArgs),
    /// List the topics, one name per line.
    #[command(after_help = "Example:\n  strata topic list --broker 127.0.0.1:9700")]
    List,
    /// Show a topic's settings and, per partition, its owning shard and offsets.
    #[command(after_help = "Example:\n  strata topic describe orders")]
    Describe(NameArg),
    /// Delete a topic and all its records.
    #[command(after_help = "Example:\n  strata topic delete orders")]
    Delete(NameArg),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    #[arg(long, value_name = "N")]
    pub partitions: u32,
    /// Delete a partition's oldest segments while it is larger than this [default: the broker's].
    #[arg(long, value_name = "BYTES")]
    pub retention_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this [default: the broker's].
    #[arg(long, value_name = "MS")]
    pub retention_ms: Option<u64>,
    /// Roll a partition's segment at this size [default: the broker's].
    #[arg(long, value_name = "BYTES")]
    pub segment_bytes: Option<u64>,
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// Topic name.
    pub name: String,
}

pub fn run(args: TopicArgs) -> Result<(), String> {
    let broker = args.broker.broker;
    let mut conn = connect(&broker)?;
    match args.command {
        TopicCommand::Create(c) => {
            let spec = TopicSpec {
                name: c.name.clone(),
                partitions: c.partitions,
                retention_bytes: c.retention_bytes,
                retention_ms: c.retention_ms,
                segment_bytes: c.segment_bytes,
            };
            conn.create_topic(spec)
                .map_err(|e| error_line(&e, Some(&c.name)))?;
            println!(
                "created topic {:?} with {} partitions",
                c.name, c.partitions
            );
            Ok(())
        }
        TopicCommand::List => {
            let meta = conn.metadata(&[]).map_err(|e| error_line(&e, None))?;
            let mut names: Vec<&str> = meta
                .topics
                .iter()
                .filter(|t| t.error == ErrorCode::None)
                .map(|t| t.name.as_str())
                .collect();
            names.sort_unstable();
            let mut out = String::new();
            for n in names {
                out.push_str(n);
                out.push('\n');
            }
            print!("{out}");
            Ok(())
        }
        TopicCommand::Describe(n) => {
            let meta = conn
                .metadata(std::slice::from_ref(&n.name))
                .map_err(|e| error_line(&e, Some(&n.name)))?;
            print!("{}", describe(&meta, &n.name, &broker)?);
            Ok(())
        }
        TopicCommand::Delete(n) => {
            conn.delete_topic(&n.name)
                .map_err(|e| error_line(&e, Some(&n.name)))?;
            println!("deleted topic {:?}", n.name);
            Ok(())
        }
    }
}

/// The text of `strata topic describe`: the settings, then one row per partition.
fn describe(meta: &MetadataResponse, name: &str, broker: &str) -> Result<String, String> {
    let t = meta
        .topics
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| format!("the broker's metadata does not mention topic {name:?}"))?;
    if t.error != ErrorCode::None {
        let e = ClientError::Broker {
            code: t.error,
            message: t.message.clone().unwrap_or_default(),
        };
        return Err(error_line(&e, Some(name)));
    }
    let setting =
        |v: Option<u64>| v.map_or_else(|| "broker default".to_string(), |v| v.to_string());
    let mut out = format!(
        "topic {name:?}: {} partitions, retention-bytes {}, retention-ms {}, segment-bytes {}\n",
        t.partitions.len(),
        setting(t.retention_bytes),
        setting(t.retention_ms),
        setting(t.segment_bytes)
    );
    // A shard listening on an unspecified address is reached at the host the user gave.
    let broker_host = broker.rsplit_once(':').map_or(broker, |(h, _)| h);
    let endpoint = |shard: u32| {
        meta.shards.iter().find(|s| s.shard == shard).map_or_else(
            || "?".to_string(),
            |s| match s.host.parse::<IpAddr>() {
                Ok(ip) if ip.is_unspecified() => format!("{broker_host}:{}", s.port),
                Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", s.port),
                _ => format!("{}:{}", s.host, s.port),
            },
        )
    };
    let mut rows = vec![[
        "PARTITION".to_string(),
        "SHARD".to_string(),
        "ENDPOINT".to_string(),
        "EARLIEST".to_string(),
        "LATEST".to_string(),
        "RECORDS".to_string(),
        "BYTES".to_string(),
    ]];
    for p in &t.partitions {
        rows.push([
            p.partition.to_string(),
            p.shard.to_string(),
            endpoint(p.shard),
            p.earliest_offset.to_string(),
            p.high_watermark.to_string(),
            (p.high_watermark - p.earliest_offset).max(0).to_string(),
            p.log_bytes
                .map_or_else(|| "?".to_string(), |b| b.to_string()),
        ]);
    }
    out.push_str(&table(&rows));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{PartitionMetadata, ShardEndpoint, TopicMetadata};

    #[test]
    fn describe_shows_settings_and_one_row_per_partition() {
        let meta = MetadataResponse {
            host: "0.0.0.0".into(),
            port: 9700,
            shard_count: 2,
            shards: (0..2)
                .map(|s| ShardEndpoint {
                    shard: s,
                    host: "0.0.0.0".into(),
                    port: 9701 + s as u16,
                })
                .collect(),
            topics: vec![TopicMetadata {
                name: "orders".into(),
                error: ErrorCode::None,
                message: None,
                partitions: (0..2)
                    .map(|p| PartitionMetadata {
                        partition: p,
                        shard: p,
                        earliest_offset: 0,
                        high_watermark: 10 * i64::from(p),
                        log_bytes: Some(100 * u64::from(p)),
                    })
                    .collect(),
                retention_bytes: None,
                retention_ms: Some(1000),
                segment_bytes: None,
            }],
        };
        let text = describe(&meta, "orders", "localhost:9700").unwrap();
        assert_eq!(
            text,
            "topic \"orders\": 2 partitions, retention-bytes broker default, retention-ms 1000, segment-bytes broker default\n\
             PARTITION  SHARD  ENDPOINT        EARLIEST  LATEST  RECORDS  BYTES\n\
             0          0      localhost:9701  0         0       0        0\n\
             1          1      localhost:9702  0         10      10       100\n"
        );
    }
}
