//! `strata group list | describe | delete | reset-offsets`: consumer groups, through one admin
//! connection to the broker (which forwards to the coordinator).

use clap::{Args, Subcommand};

use crate::client::Connection;
use crate::protocol::{
    CommitOffset, ErrorCode, GroupDescription, OffsetCommitRequest, TopicPartitions,
    MEMBER_EPOCH_ADMIN,
};

use super::{admin_connection, error_line, table, BrokerOpt};

/// Arguments of `strata group`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  strata group list\n  strata group describe billing\n  strata group reset-offsets billing --topic orders --to-earliest\n  strata group delete billing"
)]
pub struct GroupArgs {
    #[command(flatten)]
    pub broker: BrokerOpt,
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List the consumer groups: state, epoch and member count.
    List,
    /// Show a group's state, members with their partitions, and committed offsets with lag.
    #[command(after_help = "Example:\n  strata group describe billing")]
    Describe(GroupName),
    /// Delete a group and its committed offsets (only while it has no members).
    #[command(after_help = "Example:\n  strata group delete billing")]
    Delete(GroupName),
    /// Set a group's committed offsets of a topic (only while the group has no members).
    #[command(
        after_help = "Offsets past either end of a partition are moved to that end.\n\n\
Examples:\n  strata group reset-offsets billing --topic orders --to-earliest\n  strata group reset-offsets billing --topic orders --to-offset 1000 --partition 2"
    )]
    ResetOffsets(ResetArgs),
}

#[derive(Debug, Args)]
pub struct GroupName {
    /// Group id.
    pub group: String,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset"])))]
pub struct ResetArgs {
    /// Group id.
    pub group: String,
    /// Topic whose offsets to set.
    #[arg(long, value_name = "T")]
    pub topic: String,
    /// Only this partition [default: every partition of the topic].
    #[arg(long, value_name = "P")]
    pub partition: Option<u32>,
    /// The first offset still in each partition.
    #[arg(long)]
    pub to_earliest: bool,
    /// The end of each partition: only records produced from now on.
    #[arg(long)]
    pub to_latest: bool,
    /// This offset (moved into the partition's range).
    #[arg(long, value_name = "O", value_parser = clap::value_parser!(i64).range(0..))]
    pub to_offset: Option<i64>,
}

pub fn run(args: GroupArgs) -> Result<(), String> {
    let mut conn = admin_connection(&args.broker.broker)?;
    match args.command {
        GroupCommand::List => {
            let groups = conn.list_groups().map_err(|e| error_line(&e, None))?;
            let mut rows = vec![[
                "GROUP".to_string(),
                "STATE".to_string(),
                "EPOCH".to_string(),
                "MEMBERS".to_string(),
            ]];
            rows.extend(groups.into_iter().map(|g| {
                [
                    g.group,
                    g.state.name().to_string(),
                    g.group_epoch.to_string(),
                    g.members.to_string(),
                ]
            }));
            print!("{}", table(&rows));
            Ok(())
        }
        GroupCommand::Describe(g) => {
            let d = conn
                .describe_group(&g.group)
                .map_err(|e| error_line(&e, None))?;
            print!("{}", describe(&d));
            Ok(())
        }
        GroupCommand::Delete(g) => {
            conn.delete_group(&g.group)
                .map_err(|e| error_line(&e, None))?;
            println!("deleted group {:?}", g.group);
            Ok(())
        }
        GroupCommand::ResetOffsets(r) => reset(&mut conn, &r),
    }
}

/// Commits the offsets `r` asks for, administratively (the coordinator refuses while the group
/// has members).
fn reset(conn: &mut Connection, r: &ResetArgs) -> Result<(), String> {
    let topic = r.topic.as_str();
    let meta = conn
        .metadata(std::slice::from_ref(&r.topic))
        .map_err(|e| error_line(&e, Some(topic)))?;
    let t = meta
        .topics
        .into_iter()
        .find(|t| t.name == r.topic && t.error == ErrorCode::None)
        .ok_or_else(|| {
            format!(
                "unknown topic {topic:?} (create it with: strata topic create {topic} --partitions N)"
            )
        })?;
    super::check_partition(topic, t.partitions.len() as u32, r.partition)?;
    let offsets: Vec<CommitOffset> = t
        .partitions
        .iter()
        .filter(|p| r.partition.is_none_or(|only| only == p.partition))
        .map(|p| {
            let offset = match (r.to_earliest, r.to_latest, r.to_offset) {
                (true, _, _) => p.earliest_offset,
                (_, true, _) => p.high_watermark,
                (_, _, Some(o)) => o.clamp(p.earliest_offset, p.high_watermark),
                _ => unreachable!("clap requires one of --to-earliest, --to-latest, --to-offset"),
            };
            CommitOffset {
                topic: r.topic.clone(),
                partition: p.partition,
                offset,
                metadata: String::new(),
            }
        })
        .collect();
    let req = OffsetCommitRequest {
        group: r.group.clone(),
        member_id: String::new(),
        member_epoch: MEMBER_EPOCH_ADMIN,
        offsets: offsets.clone(),
    };
    let results = conn
        .offset_commit(req)
        .map_err(|e| error_line(&e, Some(topic)))?;
    let failed: Vec<String> = results
        .iter()
        .filter(|res| res.error != ErrorCode::None)
        .map(|res| {
            format!(
                "partition {}: {}",
                res.partition,
                res.message.as_deref().unwrap_or(res.error.name())
            )
        })
        .collect();
    if !failed.is_empty() {
        return Err(format!(
            "offsets of group {:?} not reset: {}",
            r.group,
            failed.join("; ")
        ));
    }
    let mut rows = vec![[
        "TOPIC".to_string(),
        "PARTITION".to_string(),
        "NEW-OFFSET".to_string(),
    ]];
    rows.extend(offsets.iter().map(|o| {
        [
            o.topic.clone(),
            o.partition.to_string(),
            o.offset.to_string(),
        ]
    }));
    print!("{}", table(&rows));
    Ok(())
}

fn partitions_text(list: &[TopicPartitions]) -> String {
    if list.is_empty() {
        return "-".to_string();
    }
    list.iter()
        .map(|t| {
            let ps: Vec<String> = t.partitions.iter().map(u32::to_string).collect();
            format!("{}:{}", t.topic, ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text of `strata group describe`.
fn describe(d: &GroupDescription) -> String {
    let mut out = format!(
        "group {:?}: {}, epoch {}, assignment epoch {}, assignor {}, {} member(s)\n",
        d.group,
        d.state.name(),
        d.group_epoch,
        d.assignment_epoch,
        d.assignor,
        d.members.len()
    );
    if !d.members.is_empty() {
        let mut rows = vec![[
            "MEMBER".to_string(),
            "CLIENT".to_string(),
            "HOST".to_string(),
            "EPOCH".to_string(),
            "ASSIGNED".to_string(),
            "REVOKING".to_string(),
        ]];
        rows.extend(d.members.iter().map(|m| {
            [
                m.member_id.clone(),
                m.client_id.clone(),
                m.host.clone(),
                m.member_epoch.to_string(),
                partitions_text(&m.assignment),
                partitions_text(&m.revoking),
            ]
        }));
        out.push('\n');
        out.push_str(&table(&rows));
    }
    if !d.offsets.is_empty() {
        let unknown = |v: Option<i64>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
        let mut rows = vec![[
            "TOPIC".to_string(),
            "PARTITION".to_string(),
            "COMMITTED".to_string(),
            "LOG-END".to_string(),
            "LAG".to_string(),
        ]];
        rows.extend(d.offsets.iter().map(|o| {
            [
                o.topic.clone(),
                o.partition.to_string(),
                o.committed.to_string(),
                unknown(o.high_watermark),
                unknown(o.lag),
            ]
        }));
        out.push('\n');
        out.push_str(&table(&rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{GroupState, MemberDescription, PartitionLag};

    #[test]
    fn describe_shows_members_and_lag() {
        let d = GroupDescription {
            group: "billing".into(),
            state: GroupState::Stable,
            group_epoch: 4,
            assignment_epoch: 4,
            assignor: "sticky".into(),
            members: vec![MemberDescription {
                member_id: "m-1".into(),
                client_id: "strata-consume".into(),
                host: "127.0.0.1".into(),
                member_epoch: 4,
                session_timeout_ms: 10_000,
                topics: vec!["orders".into()],
                assignment: vec![TopicPartitions {
                    topic: "orders".into(),
                    partitions: vec![0, 2],
                }],
                revoking: vec![],
            }],
            offsets: vec![PartitionLag {
                topic: "orders".into(),
                partition: 0,
                committed: 10,
                metadata: String::new(),
                high_watermark: Some(15),
                lag: Some(5),
            }],
        };
        let text = describe(&d);
        assert!(
            text.starts_with("group \"billing\": Stable, epoch 4"),
            "{text}"
        );
        assert!(
            text.contains("m-1     strata-consume  127.0.0.1  4      orders:0,2  -\n"),
            "{text}"
        );
        assert!(
            text.contains("orders  0          10         15       5"),
            "{text}"
        );
    }
}
