//! The consumer-group service on the coordinator core. Group requests apply to the `Groups`
//! state machine one at a time, in arrival order; the log entries each change produced go to
//! the offsets log, and every answer waits until everything applied before it is durable. One
//! writer task appends whatever entries queued up while its previous append was syncing: group
//! commit across all groups and members.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::future::{select, Either};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use tracing::{error, info, warn};

use crate::coordinator::{ClientInfo, Entry, GroupConfig, GroupError, Groups, OffsetStore};
use crate::metadata::Catalog;
use crate::protocol::{ErrorCode, RequestBody, ResponseBody};
use crate::shard::Shutdown;

use super::msg::{Answer, OpError, OpResult};
// Wall-clock ms (commit times, boot nonce); deadlines use the service's monotonic clock.
use crate::clock::now_ms as wall_ms;

/// Longest the service sleeps without checking session deadlines.
const MAX_TICK: Duration = Duration::from_secs(1);

/// One group request, as the coordinator's mesh listener hands it over.
pub struct GroupRequest {
    pub body: RequestBody,
    pub client: ClientInfo,
    pub high_watermarks: HashMap<(String, u32), i64>,
    pub reply: oneshot::Sender<OpResult>,
}

/// Entries to write and the answers that wait for them, in order.
#[derive(Default)]
struct Pending {
    entries: Vec<Entry>,
    replies: Vec<(oneshot::Sender<OpResult>, OpResult)>,
}

/// What the service and its writer task share (both on the coordinator core).
struct Service {
    groups: RefCell<Groups>,
    store: OffsetStore,
    pending: RefCell<Pending>,
    /// Set from a failed append until the reload: the state machine is ahead of the log, and
    /// requests are refused.
    broken: std::cell::Cell<bool>,
}

/// The group state loaded from the offsets log, ready to serve.
pub struct Loaded(Rc<Service>);

/// Opens the offsets log and replays it into the state machine.
pub async fn open(
    data_dir: &std::path::Path,
    config: GroupConfig,
    compact_bytes: u64,
) -> Result<Loaded, String> {
    let (store, entries) = OffsetStore::open(data_dir, compact_bytes)
        .await
        .map_err(|e| format!("coordinator: {e}"))?;
    let mut groups = Groups::new(config, wall_ms() as u64);
    let replayed = entries.len();
    for entry in entries {
        groups.replay(entry);
    }
    info!(
        groups = groups.group_names().count(),
        entries = replayed,
        log_bytes = store.bytes(),
        "consumer groups loaded"
    );
    Ok(Loaded(Rc::new(Service {
        groups: RefCell::new(groups),
        store,
        pending: RefCell::new(Pending::default()),
        broken: std::cell::Cell::new(false),
    })))
}

/// Serves `requests` until shutdown, then closes the offsets log.
pub async fn serve(
    loaded: Loaded,
    catalog: Rc<RefCell<Catalog>>,
    requests: LocalReceiver<GroupRequest>,
    shutdown: Shutdown,
) -> Result<(), String> {
    let service = loaded.0;
    let (bell_tx, bell_rx) = local_channel::new_unbounded::<()>();
    let writer = glommio::spawn_local(write_loop(service.clone(), bell_rx));
    let start = Instant::now();
    let now_ms = || start.elapsed().as_millis() as u64;
    let mut topics = TopicIds::default();
    {
        // Members of before a restart may rejoin holding what they read: nobody is given
        // anything until they had the time to.
        let mut groups = service.groups.borrow_mut();
        groups.open_rejoin_window(now_ms());
        topics.forget_changed(&mut groups, &catalog.borrow());
        let entries = groups.take_entries();
        service.pending.borrow_mut().entries.extend(entries);
        let _ = bell_tx.try_send(());
    }
    loop {
        let sleep = {
            let groups = service.groups.borrow();
            groups
                .next_deadline()
                .map_or(MAX_TICK, |d| {
                    Duration::from_millis(d.saturating_sub(now_ms()) + 1)
                })
                .min(MAX_TICK)
        };
        let next = select(
            Box::pin(requests.recv()),
            Box::pin(select(
                Box::pin(glommio::timer::sleep(sleep)),
                Box::pin(shutdown.wait()),
            )),
        )
        .await;
        let req = match next {
            Either::Left((Some(req), _)) => Some(req),
            Either::Left((None, _)) => break,
            Either::Right((Either::Right(_), _)) => break,
            Either::Right((Either::Left(_), _)) => None,
        };
        if service.broken.get() {
            // The state machine is ahead of the log until the writer reloaded it.
            if let Some(req) = req {
                let _ = req.reply.send(Err(OpError::new(
                    ErrorCode::StorageError,
                    "the consumer-group log failed a write and is being reloaded; retry",
                )));
            }
            continue;
        }
        let now = now_ms();
        let mut groups = service.groups.borrow_mut();
        groups.expire(now);
        topics.forget_changed(&mut groups, &catalog.borrow());
        let reply = req.map(|req| {
            let catalog = catalog.borrow();
            let result = apply(
                &mut groups,
                req.body,
                &req.client,
                &req.high_watermarks,
                now,
                &catalog,
            );
            (req.reply, result)
        });
        let entries = groups.take_entries();
        drop(groups);
        if entries.is_empty() && reply.is_none() {
            continue;
        }
        let mut pending = service.pending.borrow_mut();
        pending.entries.extend(entries);
        pending.replies.extend(reply);
        drop(pending);
        let _ = bell_tx.try_send(());
    }
    drop(bell_tx);
    writer.await;
    service
        .store
        .close()
        .await
        .map_err(|e| format!("coordinator: {e}"))?;
    info!("consumer-group service stopped");
    Ok(())
}

/// The id of every topic as last seen, to notice deletions and re-creations.
#[derive(Default)]
struct TopicIds {
    version: Option<u64>,
    ids: HashMap<String, u64>,
}

impl TopicIds {
    /// Makes the groups forget offsets of topics deleted (or deleted and created anew) since
    /// the last call; on the first call, of topics the catalog does not hold.
    fn forget_changed(&mut self, groups: &mut Groups, catalog: &Catalog) {
        if self.version == Some(catalog.version()) {
            return;
        }
        let ids: HashMap<String, u64> = catalog.topics().map(|t| (t.name.clone(), t.id)).collect();
        let old = std::mem::replace(&mut self.ids, ids);
        let now = &self.ids;
        let gone = |name: &str| match (old.get(name), now.get(name)) {
            (_, None) => true,
            (Some(before), Some(after)) => before != after,
            (None, Some(_)) => false,
        };
        // On the first call `old` is empty: every topic not in the catalog is gone.
        let forgotten = groups.forget_topics(&gone);
        if forgotten > 0 {
            info!(
                offsets = forgotten,
                "forgot committed offsets of deleted topics"
            );
        }
        self.version = Some(catalog.version());
    }
}

/// Appends what queued up, then sends the answers that waited for it; compacts when due. After
/// a failed append it fails every answer waiting, then reloads the durable state from the log
/// (live members stay) before it writes anything else.
async fn write_loop(service: Rc<Service>, bell: LocalReceiver<()>) {
    while bell.recv().await.is_some() {
        let Pending { entries, replies } = std::mem::take(&mut *service.pending.borrow_mut());
        if entries.is_empty() && replies.is_empty() {
            continue;
        }
        let written = if entries.is_empty() {
            Ok(())
        } else {
            service.store.append(&entries, wall_ms()).await.map(|_| ())
        };
        if let Err(e) = written {
            error!(error = %e, "offsets log append failed; reloading the group state from the log");
            service.broken.set(true);
            let message = format!("the change could not be made durable: {e}");
            // Everything queued since was applied on the state being thrown away.
            let later = std::mem::take(&mut *service.pending.borrow_mut());
            for (tx, _) in replies.into_iter().chain(later.replies) {
                let _ = tx.send(Err(OpError::new(ErrorCode::StorageError, message.clone())));
            }
            reload(&service).await;
            continue;
        }
        for (tx, result) in replies {
            let _ = tx.send(result);
        }
        if service.store.wants_compaction() {
            let snapshot = service.groups.borrow().snapshot();
            if let Err(e) = service.store.compact(&snapshot, wall_ms()).await {
                warn!(error = %e, "offsets log compaction failed; will retry after more commits");
            }
        }
    }
}

/// Rebuilds the durable state (groups, offsets) from the log after a failed append, keeping the
/// live members and what they hold; retries until the log reads back.
async fn reload(service: &Rc<Service>) {
    loop {
        match service.store.replay().await {
            Ok(entries) => {
                let mut groups = service.groups.borrow_mut();
                groups.reload_durable(entries);
                // Re-persist what the failed append carried about live groups.
                let entries = groups.take_entries();
                service.pending.borrow_mut().entries.extend(entries);
                service.broken.set(false);
                warn!("consumer groups reloaded from the offsets log after a failed write");
                return;
            }
            Err(e) => {
                error!(error = %e, "cannot read the offsets log back; retrying");
                glommio::timer::sleep(MAX_TICK).await;
            }
        }
    }
}

fn group_error(e: GroupError) -> OpError {
    OpError::new(e.code(), e.to_string())
}

/// Applies one request to the state machine.
fn apply(
    groups: &mut Groups,
    body: RequestBody,
    client: &ClientInfo,
    high_watermarks: &HashMap<(String, u32), i64>,
    now_ms: u64,
    catalog: &Catalog,
) -> OpResult {
    let topics = |name: &str| catalog.get(name).map(|t| t.config.partitions);
    let body = match body {
        RequestBody::GroupHeartbeat(req) => ResponseBody::GroupHeartbeat(
            groups
                .heartbeat(req, client, now_ms, &topics)
                .map_err(group_error)?,
        ),
        RequestBody::OffsetCommit(req) => ResponseBody::OffsetCommit(
            groups
                .commit(req, wall_ms(), &topics)
                .map_err(group_error)?,
        ),
        RequestBody::OffsetFetch(req) => {
            ResponseBody::OffsetFetch(groups.fetch_offsets(&req).map_err(group_error)?)
        }
        RequestBody::ListGroups => ResponseBody::ListGroups(groups.list()),
        RequestBody::DescribeGroup { group } => {
            let hw = |tp: &crate::coordinator::TopicPartition| {
                high_watermarks
                    .get(&(tp.topic.clone(), tp.partition))
                    .copied()
            };
            ResponseBody::DescribeGroup(groups.describe(&group, &hw).map_err(group_error)?)
        }
        RequestBody::DeleteGroup { group } => {
            groups.delete(&group).map_err(group_error)?;
            ResponseBody::DeleteGroup
        }
        other => {
            return Err(OpError::new(
                ErrorCode::Unknown,
                format!("not a group request: {:?}", other.api_key()),
            ))
        }
    };
    Ok(Answer::new(body))
}

/// Hands group requests from the mesh to the service (kept separate from topic admin, which
/// waits on every data shard).
pub fn channel() -> (LocalSender<GroupRequest>, LocalReceiver<GroupRequest>) {
    local_channel::new_unbounded()
}
