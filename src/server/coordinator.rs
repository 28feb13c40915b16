//! The coordinator executor: owns the topic catalog, applies CreateTopics and DeleteTopics one at
//! a time, persists the catalog atomically, and makes every data shard apply it before
//! answering — so once a client hears "created", every shard serves the new topic.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;

use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::StreamExt;
use glommio::channels::channel_mesh::Senders;
use glommio::channels::local_channel;
use tracing::{info, warn};

use crate::metadata::{
    orphan_topic_dirs, topic_dir, Catalog, CatalogError, CatalogStore, TopicConfig,
};
use crate::protocol::{ErrorCode, RequestBody, ResponseBody, TopicResult, TopicSpec};
use crate::shard::ShardContext;

use super::config::BrokerConfig;
use super::groups::{self, GroupRequest};
use super::msg::{Answer, OpError, OpResult, ShardMsg};
use super::Ready;

pub async fn run(
    ctx: ShardContext<ShardMsg>,
    config: Arc<BrokerConfig>,
    ready: mpsc::Sender<Ready>,
) -> Result<(), String> {
    let ShardContext {
        shard_count,
        senders,
        mut receivers,
        shutdown,
        ..
    } = ctx;
    let store = CatalogStore::new(&config.data_dir);
    let mut catalog = store.load().map_err(|e| format!("coordinator: {e}"))?;
    remove_orphans(&config.data_dir, &catalog)?;
    broadcast(&senders, shard_count, &catalog)
        .await
        .map_err(|e| format!("coordinator: {e}"))?;
    let loaded_groups = groups::open(
        &config.data_dir,
        config.groups.clone(),
        config.offsets_compact_bytes,
    )
    .await?;
    let _ = ready.send(Ready::Coordinator {
        topics: catalog.len(),
    });

    // Topic admin requests from every shard funnel into one queue and apply strictly one at a
    // time; group requests go to the group service, which never waits on a data shard.
    let shared_catalog = Rc::new(RefCell::new(catalog.clone()));
    let (queue_tx, queue_rx) = local_channel::new_unbounded::<ShardMsg>();
    let queue_tx = Rc::new(queue_tx);
    let (group_tx, group_rx) = groups::channel();
    let group_tx = Rc::new(group_tx);
    let group_service = glommio::spawn_local(groups::serve(
        loaded_groups,
        shared_catalog.clone(),
        group_rx,
        shutdown.clone(),
    ));
    for (_, stream) in receivers.streams() {
        let queue_tx = queue_tx.clone();
        let group_tx = group_tx.clone();
        glommio::spawn_local(async move {
            let mut stream = stream;
            while let Some(msg) = stream.next().await {
                let sent = match msg {
                    ShardMsg::Group {
                        body,
                        client,
                        high_watermarks,
                        reply,
                    } => group_tx
                        .try_send(GroupRequest {
                            body,
                            client,
                            high_watermarks,
                            reply,
                        })
                        .is_ok(),
                    other => queue_tx.try_send(other).is_ok(),
                };
                if !sent {
                    break;
                }
            }
        })
        .detach();
    }
    drop(group_tx);
    loop {
        let msg = match select(Box::pin(queue_rx.recv()), Box::pin(shutdown.wait())).await {
            Either::Left((Some(msg), _)) => msg,
            Either::Left((None, _)) | Either::Right(_) => break,
        };
        match msg {
            ShardMsg::Admin { body, reply } => {
                let res = admin(&store, &senders, shard_count, &config, &mut catalog, body).await;
                *shared_catalog.borrow_mut() = catalog.clone();
                let _ = reply.send(res);
            }
            ShardMsg::Partition { reply, .. } => {
                let _ = reply.send(Err(OpError::new(
                    ErrorCode::Unknown,
                    "partition request sent to the coordinator",
                )));
            }
            ShardMsg::Stats { reply } => {
                let _ = reply.send(Vec::new());
            }
            ShardMsg::Catalog { reply, .. } => {
                let _ = reply.send(Err("catalog sent to the coordinator".into()));
            }
            ShardMsg::Group { .. } => unreachable!("group requests go to the group service"),
        }
    }
    group_service.await?;
    info!("coordinator stopped");
    Ok(())
}

/// Deletes the directories of topics the catalog no longer holds: a crash between saving a
/// deletion and removing its files leaves them, and a topic re-created under the same name must
/// not find the old records.
fn remove_orphans(data_dir: &std::path::Path, catalog: &Catalog) -> Result<(), String> {
    let orphans = orphan_topic_dirs(data_dir, catalog)
        .map_err(|e| format!("coordinator: cannot list topic directories: {e}"))?;
    for dir in orphans {
        warn!(dir = %dir.display(), "removing the files of a deleted topic");
        std::fs::remove_dir_all(&dir)
            .map_err(|e| format!("coordinator: cannot remove {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Makes every data shard apply `catalog`; the first shard error wins.
async fn broadcast(
    senders: &Senders<ShardMsg>,
    shard_count: u32,
    catalog: &Catalog,
) -> Result<(), String> {
    let snapshot = Arc::new(catalog.clone());
    let mut replies = Vec::new();
    for shard in 0..shard_count as usize {
        let (tx, rx) = oneshot::channel();
        let msg = ShardMsg::Catalog {
            catalog: snapshot.clone(),
            reply: tx,
        };
        senders
            .send_to(shard, msg)
            .await
            .map_err(|_| format!("shard {shard} is stopping"))?;
        replies.push(rx);
    }
    for (shard, rx) in replies.into_iter().enumerate() {
        rx.await.map_err(|_| format!("shard {shard} stopped"))??;
    }
    Ok(())
}

fn catalog_code(e: &CatalogError) -> ErrorCode {
    match e {
        CatalogError::InvalidName { .. } => ErrorCode::InvalidTopic,
        CatalogError::AlreadyExists(_) => ErrorCode::TopicAlreadyExists,
        CatalogError::UnknownTopic(_) => ErrorCode::UnknownTopic,
        CatalogError::InvalidPartitions { .. } => ErrorCode::InvalidPartitions,
        CatalogError::InvalidConfig { .. } => ErrorCode::InvalidConfig,
        CatalogError::Corrupt(_) => ErrorCode::Unknown,
    }
}

/// What happened to one topic of an admin request: the error code and message on failure.
type Outcome = Result<(), (ErrorCode, String)>;

fn result(name: &str, outcome: Outcome) -> TopicResult {
    match outcome {
        Ok(()) => TopicResult {
            name: name.to_string(),
            error: ErrorCode::None,
            message: None,
        },
        Err((error, message)) => TopicResult {
            name: name.to_string(),
            error,
            message: Some(message),
        },
    }
}

/// Applies one admin request to a copy of the catalog, persists it, has the shards apply it,
/// and only then makes it the coordinator's catalog.
async fn admin(
    store: &CatalogStore,
    senders: &Senders<ShardMsg>,
    shard_count: u32,
    config: &BrokerConfig,
    catalog: &mut Catalog,
    body: RequestBody,
) -> OpResult {
    let mut next = catalog.clone();
    let (mut outcomes, deleted, is_create) = match body {
        RequestBody::CreateTopics { topics } => {
            let outcomes: Vec<(String, Outcome)> = topics
                .into_iter()
                .map(
                    |TopicSpec {
                         name,
                         partitions,
                         retention_bytes,
                         retention_ms,
                         segment_bytes,
                     }| {
                        let cfg = TopicConfig {
                            partitions,
                            retention_bytes,
                            retention_ms,
                            segment_bytes,
                        };
                        let r = next
                            .create(&name, cfg)
                            .map(|_| ())
                            .map_err(|e| (catalog_code(&e), e.to_string()));
                        (name, r)
                    },
                )
                .collect();
            (outcomes, Vec::new(), true)
        }
        RequestBody::DeleteTopics { names } => {
            let mut deleted = Vec::new();
            let outcomes = names
                .into_iter()
                .map(|name| {
                    let r = next
                        .delete(&name)
                        .map(|t| deleted.push(t))
                        .map_err(|e| (catalog_code(&e), e.to_string()));
                    (name, r)
                })
                .collect();
            (outcomes, deleted, false)
        }
        other => {
            return Err(OpError::new(
                ErrorCode::Unknown,
                format!("not an admin request: {:?}", other.api_key()),
            ));
        }
    };
    if next.version() != catalog.version() {
        // The saved catalog is the truth from here on (a restart applies it), even if a shard
        // fails to apply it now.
        let applied = match store.save(&next) {
            Ok(()) => {
                *catalog = next;
                broadcast(senders, shard_count, catalog).await
            }
            Err(e) => Err(format!("the catalog could not be saved: {e}")),
        };
        match applied {
            Ok(()) => {
                for t in &deleted {
                    let dir = topic_dir(&config.data_dir, t);
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            warn!(dir = %dir.display(), error = %e, "removing deleted topic directory");
                        }
                    }
                }
                for (name, r) in &outcomes {
                    if r.is_ok() {
                        info!(topic = %name, "topic {}", if is_create { "created" } else { "deleted" });
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "catalog change failed");
                for (_, r) in outcomes.iter_mut().filter(|(_, r)| r.is_ok()) {
                    *r = Err((ErrorCode::StorageError, e.clone()));
                }
            }
        }
    }
    let results = outcomes
        .into_iter()
        .map(|(name, r)| result(&name, r))
        .collect();
    let body = if is_create {
        ResponseBody::CreateTopics(results)
    } else {
        ResponseBody::DeleteTopics(results)
    };
    Ok(Answer::new(body))
}
