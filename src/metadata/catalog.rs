//! The topic catalog as a pure state machine: topics by name, their configuration, and the
//! counters that make every change and every topic incarnation distinguishable. No I/O here.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::storage::{MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};

/// Longest topic name, in characters (Kafka's limit: 255 minus room for a partition suffix).
pub const MAX_TOPIC_NAME_LEN: usize = 249;
/// Fewest partitions a topic can have.
pub const MIN_PARTITIONS: u32 = 1;
/// Most partitions a topic can have.
pub const MAX_PARTITIONS: u32 = 10_000;
/// Longest retention by age, in milliseconds: Kafka carries `retention.ms` as a signed 64-bit
/// value.
pub const MAX_RETENTION_MS: u64 = i64::MAX as u64;
/// Longest name shown in full in an error message; longer ones are cut (the error keeps it all).
const MAX_SHOWN_NAME_CHARS: usize = MAX_TOPIC_NAME_LEN + 1;

/// Why a catalog change was refused, or why the catalog file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid topic name {}: {reason}", shown(name))]
    InvalidName { name: String, reason: String },
    #[error("topic {} already exists", shown(.0))]
    AlreadyExists(String),
    #[error("unknown topic {}", shown(.0))]
    UnknownTopic(String),
    #[error(
        "topic {}: {partitions} partitions is out of range; a topic has \
         {MIN_PARTITIONS} to {MAX_PARTITIONS} partitions",
        shown(name)
    )]
    InvalidPartitions { name: String, partitions: u32 },
    #[error("invalid config for topic {}: {reason}", shown(name))]
    InvalidConfig { name: String, reason: String },
    #[error("topic catalog: {0}")]
    Corrupt(String),
}

/// A name quoted for a message, cut after `MAX_SHOWN_NAME_CHARS` characters.
fn shown(name: &str) -> String {
    let len = name.chars().count();
    if len <= MAX_SHOWN_NAME_CHARS {
        format!("{name:?}")
    } else {
        let head: String = name.chars().take(MAX_SHOWN_NAME_CHARS).collect();
        format!("{head:?}… ({len} characters)")
    }
}

/// Settings of one topic; `None` means the broker's default. Invariant: passes
/// `validate_config` (segment size within the storage bounds, retentions positive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Number of partitions, `MIN_PARTITIONS..=MAX_PARTITIONS`.
    pub partitions: u32,
    /// Delete the oldest closed segments of a partition while it is larger than this.
    pub retention_bytes: Option<u64>,
    /// Delete closed segments whose newest record is older than this many milliseconds.
    pub retention_ms: Option<u64>,
    /// Roll a partition's active segment at this size.
    pub segment_bytes: Option<u64>,
}

impl TopicConfig {
    /// `partitions` partitions, every other setting the broker's default.
    pub fn with_partitions(partitions: u32) -> TopicConfig {
        TopicConfig {
            partitions,
            retention_bytes: None,
            retention_ms: None,
            segment_bytes: None,
        }
    }
}

/// One incarnation of a topic. Invariant: `name` passes `validate_name`, `config` is valid, and
/// `id` was never given to another topic of the same catalog (re-creating a name gives a new id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    pub id: u64,
    pub name: String,
    pub config: TopicConfig,
}

/// The set of topics. Invariant: every key equals its topic's name, every topic is valid, ids
/// are unique and below `next_topic_id`, and `version` counts the successful changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Bumped by every successful `create` and `delete`.
    version: u64,
    /// The id the next created topic gets; ids are never reused.
    next_topic_id: u64,
    topics: BTreeMap<String, Topic>,
}

impl Catalog {
    /// An empty catalog at version 0.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// The topic named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    /// Every topic, in name order.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    /// Number of topics.
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// Number of successful changes since the catalog was first created.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The id the next created topic will get (every id ever given is below it).
    pub fn next_topic_id(&self) -> u64 {
        self.next_topic_id
    }

    /// Adds topic `name` with a fresh id. On error the catalog is unchanged.
    pub fn create(&mut self, name: &str, config: TopicConfig) -> Result<&Topic, CatalogError> {
        validate_name(name)?;
        if self.topics.contains_key(name) {
            return Err(CatalogError::AlreadyExists(name.to_string()));
        }
        validate_config(name, &config)?;
        let (Some(next_id), Some(version)) = (
            self.next_topic_id.checked_add(1),
            self.version.checked_add(1),
        ) else {
            return Err(CatalogError::Corrupt(format!(
                "counters exhausted (next_topic_id {}, version {})",
                self.next_topic_id, self.version
            )));
        };
        let topic = Topic {
            id: self.next_topic_id,
            name: name.to_string(),
            config,
        };
        self.topics.insert(topic.name.clone(), topic);
        self.next_topic_id = next_id;
        self.version = version;
        debug_assert_eq!(self.check(), Ok(()));
        Ok(&self.topics[name])
    }

    /// Removes topic `name` and returns it. On error the catalog is unchanged.
    pub fn delete(&mut self, name: &str) -> Result<Topic, CatalogError> {
        let Some(version) = self.version.checked_add(1) else {
            return Err(CatalogError::Corrupt(format!(
                "version counter exhausted ({})",
                self.version
            )));
        };
        let topic = self
            .topics
            .remove(name)
            .ok_or_else(|| CatalogError::UnknownTopic(name.to_string()))?;
        self.version = version;
        debug_assert_eq!(self.check(), Ok(()));
        Ok(topic)
    }

    /// Rebuilds a catalog from its persisted parts, checking every invariant; the error says
    /// which one is broken.
    pub(super) fn from_parts(
        version: u64,
        next_topic_id: u64,
        topics: Vec<Topic>,
    ) -> Result<Catalog, String> {
        let mut map = BTreeMap::new();
        for topic in topics {
            let name = topic.name.clone();
            if map.insert(name.clone(), topic).is_some() {
                return Err(format!("topic {} is listed twice", shown(&name)));
            }
        }
        let catalog = Catalog {
            version,
            next_topic_id,
            topics: map,
        };
        catalog.check()?;
        Ok(catalog)
    }

    /// Checks the invariant of the type; the error names the first broken rule.
    fn check(&self) -> Result<(), String> {
        let mut ids = HashSet::with_capacity(self.topics.len());
        for (key, topic) in &self.topics {
            if *key != topic.name {
                return Err(format!(
                    "key {} holds topic {}",
                    shown(key),
                    shown(&topic.name)
                ));
            }
            validate_name(&topic.name).map_err(|e| e.to_string())?;
            validate_config(&topic.name, &topic.config).map_err(|e| e.to_string())?;
            if topic.id >= self.next_topic_id {
                return Err(format!(
                    "topic {} has id {}, not below next_topic_id {}",
                    shown(&topic.name),
                    topic.id,
                    self.next_topic_id
                ));
            }
            if !ids.insert(topic.id) {
                return Err(format!("id {} is used by two topics", topic.id));
            }
        }
        Ok(())
    }
}

/// Checks Kafka's rules for topic names: 1 to `MAX_TOPIC_NAME_LEN` characters among ASCII
/// letters, digits, '.', '_' and '-', and neither "." nor "..".
pub fn validate_name(name: &str) -> Result<(), CatalogError> {
    let invalid = |reason: String| {
        Err(CatalogError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    let len = name.chars().count();
    if len == 0 {
        return invalid(format!(
            "the name is empty; a topic name has 1 to {MAX_TOPIC_NAME_LEN} characters"
        ));
    }
    if len > MAX_TOPIC_NAME_LEN {
        return invalid(format!(
            "the name has {len} characters; a topic name has at most {MAX_TOPIC_NAME_LEN}"
        ));
    }
    if name == "." || name == ".." {
        return invalid("\".\" and \"..\" are not allowed as topic names".to_string());
    }
    if let Some((pos, c)) = name.chars().enumerate().find(|&(_, c)| !is_legal_char(c)) {
        return invalid(format!(
            "character {c:?} at position {pos} is not allowed; a topic name uses only ASCII \
             letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

fn is_legal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Checks the bounds of a topic's settings; the error names the setting, its value and the rule.
pub fn validate_config(name: &str, config: &TopicConfig) -> Result<(), CatalogError> {
    if !(MIN_PARTITIONS..=MAX_PARTITIONS).contains(&config.partitions) {
        return Err(CatalogError::InvalidPartitions {
            name: name.to_string(),
            partitions: config.partitions,
        });
    }
    let invalid = |reason: String| {
        Err(CatalogError::InvalidConfig {
            name: name.to_string(),
            reason,
        })
    };
    if let Some(s) = config.segment_bytes {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&s) {
            return invalid(format!(
                "segment_bytes {s} is out of range {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}"
            ));
        }
    }
    if config.retention_bytes == Some(0) {
        return invalid(
            "retention_bytes 0 is not allowed; it must be at least 1 (omit it for the broker's \
             default)"
                .to_string(),
        );
    }
    if let Some(ms) = config.retention_ms {
        if ms == 0 {
            return invalid(
                "retention_ms 0 is not allowed; it must be at least 1 (omit it for the broker's \
                 default)"
                    .to_string(),
            );
        }
        if ms > MAX_RETENTION_MS {
            return invalid(format!(
                "retention_ms {ms} is out of range 1..={MAX_RETENTION_MS}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(partitions: u32) -> TopicConfig {
        TopicConfig::with_partitions(partitions)
    }

    fn name_error(name: &str) -> String {
        match validate_name(name) {
            Err(CatalogError::InvalidName { name: n, reason }) => {
                assert_eq!(n, name);
                reason
            }
            other => panic!("{name:?}: expected InvalidName, got {other:?}"),
        }
    }

    #[test]
    fn catalog_is_plain_shareable_data() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Catalog>();
        assert_send_sync::<CatalogError>();
    }

    #[test]
    fn name_length_boundaries() {
        assert!(validate_name("a").is_ok());
        assert!(validate_name(&"a".repeat(MAX_TOPIC_NAME_LEN)).is_ok());
        let reason = name_error(&"a".repeat(MAX_TOPIC_NAME_LEN + 1));
        assert!(
            reason.contains("250 characters") && reason.contains("249"),
            "{reason}"
        );
        let reason = name_error("");
        assert!(reason.contains("empty"), "{reason}");
    }

    #[test]
    fn name_characters() {
        for ok in ["orders", "Orders-2024_v1.0", "a.b", "...", "-", "_", "0"] {
            assert!(validate_name(ok).is_ok(), "{ok:?}");
        }
        for (bad, ch) in [
            ("a b", "' '"),
            ("a/b", "'/'"),
            ("../x", "'/'"),
            ("a\\b", "'\\\\'"),
            ("é", "'é'"),
            ("a\0", "'\\0'"),
            ("a:b", "':'"),
            ("a+b", "'+'"),
        ] {
            let reason = name_error(bad);
            assert!(reason.contains(ch), "{bad:?}: {reason}");
            assert!(reason.contains("position"), "{bad:?}: {reason}");
        }
        // Length counts characters, not bytes: 249 two-byte characters pass the length rule and
        // fail on the character rule.
        let reason = name_error(&"é".repeat(MAX_TOPIC_NAME_LEN));
        assert!(reason.contains("'é'"), "{reason}");
    }

    #[test]
    fn dot_and_dot_dot_are_refused() {
        for bad in [".", ".."] {
            let reason = name_error(bad);
            assert!(reason.contains("not allowed"), "{reason}");
        }
    }

    #[test]
    fn long_names_are_cut_in_messages() {
        let name = "x".repeat(100_000);
        let msg = Catalog::new()
            .create(&name, cfg(1))
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 1_000, "{} bytes", msg.len());
        assert!(msg.contains("100000 characters"), "{msg}");
    }

    #[test]
    fn partition_bounds() {
        let mut c = Catalog::new();
        for bad in [0, MAX_PARTITIONS + 1, u32::MAX] {
            let err = c.create("t", cfg(bad)).unwrap_err();
            assert_eq!(
                err,
                CatalogError::InvalidPartitions {
                    name: "t".into(),
                    partitions: bad
                }
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&bad.to_string()) && msg.contains("1 to 10000"),
                "{msg}"
            );
        }
        assert_eq!(c.create("one", cfg(1)).unwrap().config.partitions, 1);
        assert_eq!(
            c.create("max", cfg(MAX_PARTITIONS))
                .unwrap()
                .config
                .partitions,
            10_000
        );
    }

    #[test]
    fn config_bounds() {
        let base = cfg(1);
        let bad = [
            (
                TopicConfig {
                    segment_bytes: Some(MIN_SEGMENT_BYTES - 1),
                    ..base.clone()
                },
                "segment_bytes",
            ),
            (
                TopicConfig {
                    segment_bytes: Some(MAX_SEGMENT_BYTES + 1),
                    ..base.clone()
                },
                "segment_bytes",
            ),
            (
                TopicConfig {
                    segment_bytes: Some(0),
                    ..base.clone()
                },
                "segment_bytes 0",
            ),
            (
                TopicConfig {
                    retention_bytes: Some(0),
                    ..base.clone()
                },
                "retention_bytes 0",
            ),
            (
                TopicConfig {
                    retention_ms: Some(0),
                    ..base.clone()
                },
                "retention_ms 0",
            ),
            (
                TopicConfig {
                    retention_ms: Some(MAX_RETENTION_MS + 1),
                    ..base.clone()
                },
                "retention_ms",
            ),
            (
                TopicConfig {
                    retention_ms: Some(u64::MAX),
                    ..base.clone()
                },
                "retention_ms",
            ),
        ];
        for (config, needle) in bad {
            match validate_config("t", &config) {
                Err(e @ CatalogError::InvalidConfig { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(needle) && msg.contains("\"t\""), "{msg}");
                }
                other => panic!("{config:?}: expected InvalidConfig, got {other:?}"),
            }
        }
        let good = [
            TopicConfig {
                segment_bytes: Some(MIN_SEGMENT_BYTES),
                ..base.clone()
            },
            TopicConfig {
                segment_bytes: Some(MAX_SEGMENT_BYTES),
                ..base.clone()
            },
            TopicConfig {
                retention_bytes: Some(1),
                ..base.clone()
            },
            TopicConfig {
                retention_bytes: Some(u64::MAX),
                ..base.clone()
            },
            TopicConfig {
                retention_ms: Some(1),
                ..base.clone()
            },
            TopicConfig {
                retention_ms: Some(MAX_RETENTION_MS),
                ..base.clone()
            },
            base.clone(),
        ];
        for config in good {
            assert_eq!(validate_config("t", &config), Ok(()), "{config:?}");
        }
    }

    #[test]
    fn create_delete_recreate_gives_a_new_id_and_bumps_version() {
        let mut c = Catalog::new();
        assert_eq!((c.version(), c.len(), c.is_empty()), (0, 0, true));
        let first = c.create("orders", cfg(3)).unwrap().clone();
        assert_eq!(
            first,
            Topic {
                id: 0,
                name: "orders".into(),
                config: cfg(3)
            }
        );
        assert_eq!((c.version(), c.len(), c.is_empty()), (1, 1, false));
        assert_eq!(c.get("orders"), Some(&first));

        let deleted = c.delete("orders").unwrap();
        assert_eq!(deleted, first);
        assert_eq!((c.version(), c.len()), (2, 0));
        assert_eq!(c.get("orders"), None);

        let again = c.create("orders", cfg(5)).unwrap().clone();
        assert_ne!(again.id, first.id);
        assert_eq!(again.id, 1);
        assert_eq!(again.config.partitions, 5);
        assert_eq!(c.version(), 3);
        assert_eq!(c.next_topic_id(), 2);
    }

    #[test]
    fn topics_are_listed_in_name_order() {
        let mut c = Catalog::new();
        for name in ["zeta", "alpha", "Mid", "beta"] {
            c.create(name, cfg(1)).unwrap();
        }
        let names: Vec<&str> = c.topics().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["Mid", "alpha", "beta", "zeta"]);
    }

    #[test]
    fn failed_operations_change_nothing() {
        let mut c = Catalog::new();
        c.create("a", cfg(2)).unwrap();
        c.create("b", cfg(2)).unwrap();
        c.delete("b").unwrap();
        let before = c.clone();
        let attempts: Vec<(&str, Result<(), CatalogError>)> = vec![
            ("dup", c.create("a", cfg(9)).map(|_| ())),
            ("name", c.create("a/b", cfg(1)).map(|_| ())),
            ("parts", c.create("c", cfg(0)).map(|_| ())),
            (
                "config",
                c.create(
                    "c",
                    TopicConfig {
                        retention_ms: Some(0),
                        ..cfg(1)
                    },
                )
                .map(|_| ()),
            ),
            ("unknown", c.delete("b").map(|_| ())),
            ("unknown2", c.delete("nope").map(|_| ())),
        ];
        for (what, r) in &attempts {
            assert!(r.is_err(), "{what}");
        }
        assert_eq!(attempts[0].1, Err(CatalogError::AlreadyExists("a".into())));
        assert_eq!(attempts[4].1, Err(CatalogError::UnknownTopic("b".into())));
        assert_eq!(c, before);
        assert_eq!(c.version(), 3);
        assert_eq!(c.get("a").unwrap().config.partitions, 2);
    }

    #[test]
    fn the_name_rule_is_checked_before_existence() {
        // An invalid name is InvalidName even for a name that could never exist.
        let mut c = Catalog::new();
        assert!(matches!(
            c.create("..", cfg(1)),
            Err(CatalogError::InvalidName { .. })
        ));
    }

    #[test]
    fn error_messages_name_the_value_and_the_rule() {
        let msgs = [
            CatalogError::AlreadyExists("t".into()).to_string(),
            CatalogError::UnknownTopic("t".into()).to_string(),
            CatalogError::InvalidPartitions {
                name: "t".into(),
                partitions: 0,
            }
            .to_string(),
            CatalogError::Corrupt("cannot parse /d/catalog.json: eof".into()).to_string(),
        ];
        assert_eq!(msgs[0], "topic \"t\" already exists");
        assert_eq!(msgs[1], "unknown topic \"t\"");
        assert_eq!(
            msgs[2],
            "topic \"t\": 0 partitions is out of range; a topic has 1 to 10000 partitions"
        );
        assert_eq!(msgs[3], "topic catalog: cannot parse /d/catalog.json: eof");
    }

    #[test]
    fn from_parts_checks_every_invariant() {
        let t = |id, name: &str| Topic {
            id,
            name: name.into(),
            config: cfg(1),
        };
        assert!(Catalog::from_parts(4, 2, vec![t(0, "a"), t(1, "b")]).is_ok());
        let cases = [
            (vec![t(0, "a"), t(1, "a")], "listed twice"),
            (vec![t(0, "a"), t(0, "b")], "id 0 is used by two topics"),
            (vec![t(2, "a")], "not below next_topic_id 2"),
            (vec![t(0, "../etc")], "invalid topic name"),
            (
                vec![Topic {
                    config: cfg(0),
                    ..t(0, "a")
                }],
                "partitions",
            ),
        ];
        for (topics, needle) in cases {
            let err = Catalog::from_parts(4, 2, topics).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Create(String, TopicConfig),
        Delete(String),
    }

    fn op() -> impl Strategy<Value = Op> {
        // A small name space so creates collide and deletes hit; "" and ".." are invalid.
        let name = prop::sample::select(vec!["a", "b", "c", "d", "", ".."]).prop_map(String::from);
        let config = (
            prop_oneof![
                Just(0u32),
                1u32..4,
                Just(MAX_PARTITIONS),
                Just(MAX_PARTITIONS + 1)
            ],
            prop::option::of(prop_oneof![Just(0u64), 1u64..1_000_000]),
            prop::option::of(prop_oneof![Just(0u64), 1u64..1_000_000, Just(u64::MAX)]),
            prop::option::of(prop_oneof![
                Just(MIN_SEGMENT_BYTES),
                Just(MIN_SEGMENT_BYTES - 1)
            ]),
        )
            .prop_map(
                |(partitions, retention_bytes, retention_ms, segment_bytes)| TopicConfig {
                    partitions,
                    retention_bytes,
                    retention_ms,
                    segment_bytes,
                },
            );
        prop_oneof![
            (name.clone(), config).prop_map(|(n, c)| Op::Create(n, c)),
            name.prop_map(Op::Delete),
        ]
    }

    proptest! {
        #[test]
        fn random_changes_keep_the_invariants(ops in prop::collection::vec(op(), 0..200)) {
            let mut c = Catalog::new();
            let mut model: BTreeMap<String, Topic> = BTreeMap::new();
            let mut ids_given = HashSet::new();
            let mut successes = 0u64;
            for op in ops {
                let before = c.clone();
                let ok = match &op {
                    Op::Create(name, config) => match c.create(name, config.clone()) {
                        Ok(t) => {
                            let t = t.clone();
                            prop_assert_eq!(&t.name, name);
                            prop_assert_eq!(&t.config, config);
                            prop_assert!(ids_given.insert(t.id), "id {} given twice", t.id);
                            prop_assert!(model.insert(name.clone(), t).is_none());
                            true
                        }
                        Err(e) => {
                            let expected_dup = model.contains_key(name);
                            prop_assert_eq!(
                                matches!(e, CatalogError::AlreadyExists(_)),
                                expected_dup
                            );
                            false
                        }
                    },
                    Op::Delete(name) => match c.delete(name) {
                        Ok(t) => {
                            prop_assert_eq!(Some(t), model.remove(name));
                            true
                        }
                        Err(e) => {
                            prop_assert_eq!(e, CatalogError::UnknownTopic(name.clone()));
                            prop_assert!(!model.contains_key(name));
                            false
                        }
                    },
                };
                if ok {
                    successes += 1;
                } else {
                    prop_assert_eq!(&c, &before);
                }
                prop_assert_eq!(c.version(), successes);
                prop_assert_eq!(c.check(), Ok(()));
                prop_assert!(ids_given.iter().all(|&id| id < c.next_topic_id()));
                let topics: Vec<&Topic> = c.topics().collect();
                let expected: Vec<&Topic> = model.values().collect();
                prop_assert_eq!(topics, expected);
            }
        }
    }
}
