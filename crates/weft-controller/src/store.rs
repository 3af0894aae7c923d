//! The config store: every applied resource, as the user wrote it, with a
//! resource version. Behind the [`Store`] trait so etcd or the Kubernetes API
//! can back it later; [`RedbStore`] is the embedded default (one file in the
//! data directory, transactional, survives restarts).

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Identifies a stored resource: `networking.istio.io/VirtualService default/reviews`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// API group (`""` for core).
    pub group: String,
    pub kind: String,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    fn encode(&self) -> String {
        // `\u{1f}` (unit separator) cannot appear in any of the parts.
        format!("{}\u{1f}{}\u{1f}{}\u{1f}{}", self.group, self.kind, self.namespace, self.name)
    }

    fn decode(s: &str) -> Option<ObjectKey> {
        let mut p = s.split('\u{1f}');
        Some(ObjectKey {
            group: p.next()?.to_string(),
            kind: p.next()?.to_string(),
            namespace: p.next()?.to_string(),
            name: p.next()?.to_string(),
        })
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A stored resource: the document as applied, and its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredObject {
    pub key: ObjectKey,
    /// The store revision at which this object last changed.
    pub resource_version: u64,
    pub body: serde_json::Value,
}

/// One change in an atomic batch.
#[derive(Debug, Clone)]
pub enum Change {
    /// Create or replace; with `expected_version`, only if the stored version matches
    /// (0 meaning "must not exist yet").
    Put { key: ObjectKey, body: serde_json::Value, expected_version: Option<u64> },
    Delete { key: ObjectKey, expected_version: Option<u64> },
}

impl Change {
    pub fn key(&self) -> &ObjectKey {
        match self {
            Change::Put { key, .. } | Change::Delete { key, .. } => key,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{key} was changed by someone else: it is at version {actual}, the request expected {expected}; get it again and retry")]
    Conflict { key: ObjectKey, expected: u64, actual: u64 },
    #[error("{0} does not exist")]
    NotFound(ObjectKey),
    #[error("store: {0}")]
    Backend(String),
}

/// What a batch did to each object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
    Deleted,
}

pub trait Store: Send + Sync + 'static {
    /// Every stored object, ordered by key.
    fn list(&self) -> Result<Vec<StoredObject>, StoreError>;
    fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError>;
    /// Applies all changes or none. Returns the new revision and each change's outcome.
    fn commit(&self, changes: &[Change]) -> Result<(u64, Vec<Outcome>), StoreError>;
    /// The latest revision (0 for an empty store).
    fn revision(&self) -> Result<u64, StoreError>;
}

const OBJECTS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("objects");
const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");

/// The embedded store: a redb database file.
pub struct RedbStore {
    db: redb::Database,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

#[derive(Serialize, Deserialize)]
struct Record {
    resource_version: u64,
    body: serde_json::Value,
}

impl RedbStore {
    /// Opens (or creates) `DIR/weft.redb`.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Backend(format!("data dir {}: {e}", dir.display())))?;
        let db = redb::Database::create(dir.join("weft.redb")).map_err(backend)?;
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(OBJECTS).map_err(backend)?;
            txn.open_table(META).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(RedbStore { db })
    }
}

impl Store for RedbStore {
    fn list(&self) -> Result<Vec<StoredObject>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(OBJECTS).map_err(backend)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            let Some(key) = ObjectKey::decode(k.value()) else { continue };
            let rec: Record = serde_json::from_slice(v.value()).map_err(backend)?;
            out.push(StoredObject { key, resource_version: rec.resource_version, body: rec.body });
        }
        Ok(out)
    }

    fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(OBJECTS).map_err(backend)?;
        let Some(v) = table.get(key.encode().as_str()).map_err(backend)? else { return Ok(None) };
        let rec: Record = serde_json::from_slice(v.value()).map_err(backend)?;
        Ok(Some(StoredObject { key: key.clone(), resource_version: rec.resource_version, body: rec.body }))
    }

    fn commit(&self, changes: &[Change]) -> Result<(u64, Vec<Outcome>), StoreError> {
        let txn = self.db.begin_write().map_err(backend)?;
        let mut outcomes = Vec::with_capacity(changes.len());
        let revision;
        {
            let mut meta = txn.open_table(META).map_err(backend)?;
            let mut objects = txn.open_table(OBJECTS).map_err(backend)?;
            let current = meta.get("revision").map_err(backend)?.map(|v| v.value()).unwrap_or(0);
            let next = current + 1;
            let mut changed = false;
            for change in changes {
                let (key, expected) = match change {
                    Change::Put { key, expected_version, .. } | Change::Delete { key, expected_version } => (key, *expected_version),
                };
                let encoded = key.encode();
                let existing: Option<Record> = match objects.get(encoded.as_str()).map_err(backend)? {
                    Some(v) => Some(serde_json::from_slice(v.value()).map_err(backend)?),
                    None => None,
                };
                let actual = existing.as_ref().map(|r| r.resource_version).unwrap_or(0);
                if let Some(expected) = expected {
                    if expected != actual {
                        // Dropping the transaction without commit leaves the store untouched.
                        return Err(StoreError::Conflict { key: key.clone(), expected, actual });
                    }
                }
                match change {
                    Change::Put { body, .. } => {
                        if existing.as_ref().is_some_and(|r| r.body == *body) {
                            outcomes.push(Outcome::Unchanged);
                            continue;
                        }
                        let rec = serde_json::to_vec(&Record { resource_version: next, body: body.clone() }).map_err(backend)?;
                        objects.insert(encoded.as_str(), rec.as_slice()).map_err(backend)?;
                        outcomes.push(if existing.is_some() { Outcome::Configured } else { Outcome::Created });
                        changed = true;
                    }
                    Change::Delete { .. } => {
                        if existing.is_none() {
                            return Err(StoreError::NotFound(key.clone()));
                        }
                        objects.remove(encoded.as_str()).map_err(backend)?;
                        outcomes.push(Outcome::Deleted);
                        changed = true;
                    }
                }
            }
            revision = if changed {
                meta.insert("revision", next).map_err(backend)?;
                next
            } else {
                current
            };
        }
        txn.commit().map_err(backend)?;
        Ok((revision, outcomes))
    }

    fn revision(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        Ok(meta.get("revision").map_err(backend)?.map(|v| v.value()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ObjectKey {
        ObjectKey { group: "networking.istio.io".into(), kind: "VirtualService".into(), namespace: "default".into(), name: name.into() }
    }

    fn put(name: &str, v: i64, expected: Option<u64>) -> Change {
        Change::Put { key: key(name), body: json!({"spec": {"v": v}}), expected_version: expected }
    }

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("weft-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn versions_outcomes_and_restart() {
        let dir = temp_dir("basic");
        {
            let s = RedbStore::open(&dir).unwrap();
            assert_eq!(s.revision().unwrap(), 0);
            let (rev, out) = s.commit(&[put("a", 1, None), put("b", 1, None)]).unwrap();
            assert_eq!((rev, out), (1, vec![Outcome::Created, Outcome::Created]));
            let (rev, out) = s.commit(&[put("a", 1, None)]).unwrap();
            assert_eq!((rev, out), (1, vec![Outcome::Unchanged]), "no change, no new revision");
            let (rev, out) = s.commit(&[put("a", 2, None)]).unwrap();
            assert_eq!((rev, out), (2, vec![Outcome::Configured]));
            assert_eq!(s.get(&key("a")).unwrap().unwrap().resource_version, 2);
            assert_eq!(s.get(&key("b")).unwrap().unwrap().resource_version, 1);
        }
        // Reopen: everything survived.
        let s = RedbStore::open(&dir).unwrap();
        assert_eq!(s.revision().unwrap(), 2);
        let all = s.list().unwrap();
        assert_eq!(all.iter().map(|o| o.key.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(all[0].body, json!({"spec": {"v": 2}}));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_conflict_rejects_the_whole_batch() {
        let dir = temp_dir("conflict");
        let s = RedbStore::open(&dir).unwrap();
        s.commit(&[put("a", 1, None)]).unwrap();
        let before = s.list().unwrap();
        let err = s.commit(&[put("b", 1, None), put("a", 2, Some(7))]).unwrap_err();
        assert!(matches!(err, StoreError::Conflict { expected: 7, actual: 1, .. }), "{err}");
        assert_eq!(s.list().unwrap(), before, "b was not written either");
        assert_eq!(s.revision().unwrap(), 1);
        // The right version goes through; "0" means create-only.
        s.commit(&[put("a", 2, Some(1))]).unwrap();
        assert!(matches!(s.commit(&[put("a", 3, Some(0))]).unwrap_err(), StoreError::Conflict { .. }));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn delete_and_missing_delete() {
        let dir = temp_dir("delete");
        let s = RedbStore::open(&dir).unwrap();
        s.commit(&[put("a", 1, None)]).unwrap();
        let (rev, out) = s.commit(&[Change::Delete { key: key("a"), expected_version: None }]).unwrap();
        assert_eq!((rev, out), (2, vec![Outcome::Deleted]));
        assert!(s.get(&key("a")).unwrap().is_none());
        assert!(matches!(s.commit(&[Change::Delete { key: key("a"), expected_version: None }]).unwrap_err(), StoreError::NotFound(_)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
