//! The topic catalog, owned by the coordinator core.
//!
//! [`Catalog`] is a pure state machine (no I/O): `create` and `delete` validate against Kafka's
//! rules and the named limits, give every topic incarnation a fresh id, and bump the catalog's
//! `version` on every successful change; a refused change leaves it untouched. It is plain data,
//! `Send + Sync`, so the coordinator hands snapshots to the data shards inside an `Arc`.
//!
//! [`CatalogStore`] persists it as `DATA/catalog.json`, replaced atomically (write a temporary
//! file, fsync, rename, fsync the directory); a file it cannot read or trust is an error, never
//! an empty catalog. The path helpers give the on-disk layout `DATA/topics/<topic>/<partition>/`
//! and find the directories a crash left behind for deleted topics.

mod catalog;
mod store;

pub use catalog::{
    validate_config, validate_name, Catalog, CatalogError, Topic, TopicConfig, MAX_PARTITIONS,
    MAX_RETENTION_MS, MAX_TOPIC_NAME_LEN, MIN_PARTITIONS,
};
pub use store::{
    orphan_topic_dirs, partition_dir, topic_dir, topics_dir, CatalogStore, CATALOG_FILE_NAME,
    CATALOG_FORMAT_VERSION, CATALOG_TMP_FILE_NAME, TOPICS_DIR_NAME,
};
