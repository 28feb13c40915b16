//! The catalog on disk (`DATA/catalog.json`, replaced atomically) and the paths of topic and
//! partition directories (`DATA/topics/<topic>/<partition>/`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::catalog::{validate_name, Catalog, CatalogError, Topic};

/// Format of `catalog.json` this build writes and the only one it reads.
pub const CATALOG_FORMAT_VERSION: u32 = 1;
/// The catalog file, in the data directory.
pub const CATALOG_FILE_NAME: &str = "catalog.json";
/// Where `save` writes the next catalog before renaming it over `CATALOG_FILE_NAME`.
pub const CATALOG_TMP_FILE_NAME: &str = "catalog.json.tmp";
/// The directory of topic directories, in the data directory.
pub const TOPICS_DIR_NAME: &str = "topics";

/// `DATA/topics`.
pub fn topics_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(TOPICS_DIR_NAME)
}

/// `DATA/topics/<topic name>`.
pub fn topic_dir(data_dir: &Path, topic: &Topic) -> PathBuf {
    debug_assert!(
        validate_name(&topic.name).is_ok(),
        "invalid topic name {:?}",
        topic.name
    );
    topics_dir(data_dir).join(&topic.name)
}

/// `DATA/topics/<topic name>/<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &Topic, partition: u32) -> PathBuf {
    debug_assert!(
        partition < topic.config.partitions,
        "{} has no partition {partition}",
        topic.name
    );
    topic_dir(data_dir, topic).join(partition.to_string())
}

/// Directories under `DATA/topics` named like a topic but not a topic of `catalog`: the files of
/// deleted topics left by a crash between saving the deletion and removing them. Entries that
/// strata cannot have made (files, symlinks, names no topic can have such as `lost+found`) are
/// left out, so a caller may delete everything listed. Sorted; a missing `topics` directory
/// gives an empty list.
pub fn orphan_topic_dirs(data_dir: &Path, catalog: &Catalog) -> io::Result<Vec<PathBuf>> {
    let dir = topics_dir(data_dir);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut orphans = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if validate_name(name).is_ok() && catalog.get(name).is_none() {
            orphans.push(entry.path());
        }
    }
    orphans.sort();
    Ok(orphans)
}

/// What `catalog.json` holds, as written.
#[derive(Serialize)]
struct CatalogFileOut<'a> {
    version: u32,
    catalog_version: u64,
    next_topic_id: u64,
    topics: Vec<&'a Topic>,
}

/// What `catalog.json` holds, as read (after its format version was checked).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFileIn {
    version: u32,
    catalog_version: u64,
    next_topic_id: u64,
    topics: Vec<Topic>,
}

/// Only the format version, read first so an unknown format is named as such.
#[derive(Deserialize)]
struct FormatProbe {
    version: u32,
}

/// Loads and saves the catalog of one data directory. Invariant: `DATA/catalog.json` is only
/// ever replaced whole (write, fsync, rename, fsync the directory), so it is the old catalog or
/// the new one, never a mix.
#[derive(Debug, Clone)]
pub struct CatalogStore {
    data_dir: PathBuf,
}

impl CatalogStore {
    pub fn new(data_dir: &Path) -> CatalogStore {
        CatalogStore {
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// `DATA/catalog.json`.
    pub fn path(&self) -> PathBuf {
        self.data_dir.join(CATALOG_FILE_NAME)
    }

    fn tmp_path(&self) -> PathBuf {
        self.data_dir.join(CATALOG_TMP_FILE_NAME)
    }

    /// The saved catalog; an empty one if none was ever saved. A file that cannot be read,
    /// parsed, or that breaks an invariant of the catalog is `Corrupt`, never an empty catalog.
    pub fn load(&self) -> Result<Catalog, CatalogError> {
        let path = self.path();
        let shown = path.display();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Catalog::new()),
            Err(e) => return Err(CatalogError::Corrupt(format!("cannot read {shown}: {e}"))),
        };
        let probe: FormatProbe = serde_json::from_slice(&bytes)
            .map_err(|e| CatalogError::Corrupt(format!("cannot parse {shown}: {e}")))?;
        if probe.version != CATALOG_FORMAT_VERSION {
            return Err(CatalogError::Corrupt(format!(
                "{shown} has format version {}; this build reads only version \
                 {CATALOG_FORMAT_VERSION}",
                probe.version
            )));
        }
        let file: CatalogFileIn = serde_json::from_slice(&bytes)
            .map_err(|e| CatalogError::Corrupt(format!("cannot parse {shown}: {e}")))?;
        debug_assert_eq!(file.version, probe.version);
        Catalog::from_parts(file.catalog_version, file.next_topic_id, file.topics)
            .map_err(|e| CatalogError::Corrupt(format!("{shown} is inconsistent: {e}")))
    }

    /// Replaces the saved catalog with `catalog` atomically: after a crash at any point, `load`
    /// returns either the previous catalog or this one. The data directory must exist.
    pub fn save(&self, catalog: &Catalog) -> Result<(), CatalogError> {
        let file = CatalogFileOut {
            version: CATALOG_FORMAT_VERSION,
            catalog_version: catalog.version(),
            next_topic_id: catalog.next_topic_id(),
            topics: catalog.topics().collect(),
        };
        let mut json = serde_json::to_vec_pretty(&file)
            .map_err(|e| CatalogError::Corrupt(format!("cannot serialize the catalog: {e}")))?;
        json.push(b'\n');
        let tmp = self.tmp_path();
        let path = self.path();
        let result = write_synced(&tmp, &json)
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))
            .and_then(|()| {
                fs::rename(&tmp, &path).map_err(|e| {
                    format!("cannot rename {} to {}: {e}", tmp.display(), path.display())
                })
            });
        if let Err(e) = result {
            // Best effort: the previous catalog is intact, only the temporary file is left.
            let _ = fs::remove_file(&tmp);
            return Err(CatalogError::Corrupt(e));
        }
        // The rename is durable only once the directory entry is.
        File::open(&self.data_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| {
                CatalogError::Corrupt(format!(
                    "cannot sync directory {} after replacing {}: {e}",
                    self.data_dir.display(),
                    path.display()
                ))
            })
    }
}

/// Writes `bytes` to a new or truncated file at `path` and syncs its data and length.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::TopicConfig;

    fn cfg(partitions: u32) -> TopicConfig {
        TopicConfig::with_partitions(partitions)
    }

    fn sample() -> Catalog {
        let mut c = Catalog::new();
        c.create("orders", cfg(3)).unwrap();
        c.create(
            "logs.app-1_x",
            TopicConfig {
                partitions: 10_000,
                retention_bytes: Some(1 << 30),
                retention_ms: Some(i64::MAX as u64),
                segment_bytes: Some(64 * 1024),
            },
        )
        .unwrap();
        c.create("gone", cfg(1)).unwrap();
        c.delete("gone").unwrap();
        c
    }

    fn corrupt_message(r: Result<Catalog, CatalogError>) -> String {
        match r {
            Err(CatalogError::Corrupt(msg)) => msg,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn paths_follow_the_layout() {
        let t = Topic {
            id: 7,
            name: "orders".into(),
            config: cfg(3),
        };
        let data = Path::new("/data");
        assert_eq!(topics_dir(data), Path::new("/data/topics"));
        assert_eq!(topic_dir(data, &t), Path::new("/data/topics/orders"));
        assert_eq!(
            partition_dir(data, &t, 2),
            Path::new("/data/topics/orders/2")
        );
        assert_eq!(
            CatalogStore::new(data).path(),
            Path::new("/data/catalog.json")
        );
    }

    #[test]
    fn missing_file_loads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let c = CatalogStore::new(dir.path()).load().unwrap();
        assert_eq!(c, Catalog::new());
        assert_eq!((c.version(), c.len()), (0, 0));
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::new(dir.path());
        let c = sample();
        store.save(&c).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded, c);
        assert_eq!(loaded.version(), 4);
        assert_eq!(loaded.next_topic_id(), 3);
        // The counters survive a restart: the next topic gets a fresh id.
        let mut loaded = loaded;
        assert_eq!(loaded.create("gone", cfg(1)).unwrap().id, 3);
        store.save(&loaded).unwrap();
        assert_eq!(store.load().unwrap(), loaded);
        // An empty catalog round-trips too.
        store.save(&Catalog::new()).unwrap();
        assert_eq!(store.load().unwrap(), Catalog::new());
    }

    #[test]
    fn the_file_holds_the_format_version_counters_and_topics() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::new(dir.path());
        store.save(&sample()).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["catalog_version"], 4);
        assert_eq!(v["next_topic_id"], 3);
        let names: Vec<&str> = v["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["logs.app-1_x", "orders"]);
        assert_eq!(v["topics"][1]["config"]["partitions"], 3);
        assert!(v["topics"][1]["config"]["retention_ms"].is_null());
    }

    #[test]
    fn save_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::new(dir.path());
        // A stale temporary file from a crash is replaced, then renamed away.
        fs::write(dir.path().join(CATALOG_TMP_FILE_NAME), b"half a catal").unwrap();
        store.save(&sample()).unwrap();
        store.save(&sample()).unwrap();
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [CATALOG_FILE_NAME]);
    }

    #[test]
    fn save_into_a_missing_directory_fails_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = CatalogStore::new(&missing).save(&sample()).unwrap_err();
        let CatalogError::Corrupt(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(
            msg.contains(&missing.join(CATALOG_TMP_FILE_NAME).display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn garbage_is_corrupt_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::new(dir.path());
        let path = store.path().display().to_string();
        for garbage in [
            &b"not json at all"[..],
            b"",
            b"{\"version\": 1, \"topics\": [",
            b"\xff\xfe",
        ] {
            fs::write(store.path(), garbage).unwrap();
            let msg = corrupt_message(store.load());
            assert!(msg.contains(&path) && msg.contains("cannot parse"), "{msg}");
        }
        // Valid JSON of the wrong shape.
        fs::write(store.path(), br#"{"version": 1, "catalog_version": "x"}"#).unwrap();
        let msg = corrupt_message(store.load());
        assert!(msg.contains(&path), "{msg}");
        fs::write(store.path(), br#"{"topics": []}"#).unwrap();
        let msg = corrupt_message(store.load());
        assert!(msg.contains(&path) && msg.contains("version"), "{msg}");
    }

    #[test]
    fn unknown_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::new(dir.path());
        fs::write(store.path(), br#"{"version": 2, "whatever": true}"#).unwrap();
        let msg = corrupt_message(store.load());
        assert!(msg.contains(&store.path().display().to_string()), "{msg}");
        assert!(
            msg.contains("format version 2") && msg.contains("only version 1"),
            "{msg}"
        );
    }

    #[test]
    fn a_file_breaking_an_invariant_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::new(dir.path());
        let topic = r#"{"id": 5, "name": "a", "config": {"partitions": 1}}"#;
        let json = format!(
            r#"{{"version": 1, "catalog_version": 1, "next_topic_id": 5, "topics": [{topic}]}}"#
        );
        fs::write(store.path(), json).unwrap();
        let msg = corrupt_message(store.load());
        assert!(
            msg.contains("inconsistent") && msg.contains("next_topic_id 5"),
            "{msg}"
        );
        let json = r#"{"version": 1, "catalog_version": 1, "next_topic_id": 1,
            "topics": [{"id": 0, "name": "../../etc", "config": {"partitions": 1}}]}"#;
        fs::write(store.path(), json).unwrap();
        let msg = corrupt_message(store.load());
        assert!(msg.contains("invalid topic name"), "{msg}");
    }

    #[test]
    fn unreadable_path_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::new(dir.path());
        fs::create_dir(store.path()).unwrap(); // a directory where the file should be
        let msg = corrupt_message(store.load());
        assert!(
            msg.contains("cannot read") && msg.contains(CATALOG_FILE_NAME),
            "{msg}"
        );
    }

    #[test]
    fn orphan_topic_dirs_lists_only_dirs_of_unknown_topics() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let c = sample();
        assert_eq!(orphan_topic_dirs(data, &c).unwrap(), Vec::<PathBuf>::new());
        let topics = topics_dir(data);
        fs::create_dir_all(&topics).unwrap();
        assert!(orphan_topic_dirs(data, &c).unwrap().is_empty());
        for t in c.topics() {
            fs::create_dir_all(partition_dir(data, t, 0)).unwrap();
        }
        fs::create_dir_all(topics.join("gone").join("0")).unwrap();
        fs::create_dir(topics.join("b-old")).unwrap();
        fs::create_dir(topics.join("lost+found")).unwrap();
        fs::write(topics.join("stray-file"), b"x").unwrap();
        std::os::unix::fs::symlink(data, topics.join("link")).unwrap();
        assert_eq!(
            orphan_topic_dirs(data, &c).unwrap(),
            [topics.join("b-old"), topics.join("gone")]
        );
    }
}
