//! A local, durable record of provisioning outcomes (for API 1.0, which has no
//! workload annotations, or for operators who prefer a file).
//!
//! The file is JSON, rewritten whole with write-to-temp, fsync, rename, fsync of the
//! directory, so a crash leaves the old or the new version, never a torn one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// RFC 3339 time of the successful run, if any.
    pub provisioned_at: Option<String>,
    /// Failed attempts since the last success.
    pub attempts: u32,
    pub last_error: Option<String>,
}

pub struct FileStore {
    path: PathBuf,
    records: Mutex<BTreeMap<String, Record>>,
    /// Serialises writers so renames happen in order.
    write_lock: Mutex<()>,
}

impl FileStore {
    /// Open (or start) the store; a missing file is an empty store, a corrupt one an error.
    pub fn open(path: impl Into<PathBuf>) -> std::io::Result<Self> {
        let path = path.into();
        let records = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(FileStore {
            path,
            records: Mutex::new(records),
            write_lock: Mutex::new(()),
        })
    }

    pub fn get(&self, system_id: &str) -> Option<Record> {
        self.records.lock().get(system_id).cloned()
    }

    /// Set (or with `None`, remove) a record and persist. Blocking: call off the actor thread.
    pub fn put(&self, system_id: &str, record: Option<Record>) -> std::io::Result<()> {
        let _w = self.write_lock.lock();
        let snapshot = {
            let mut g = self.records.lock();
            match record {
                Some(r) => g.insert(system_id.to_string(), r),
                None => g.remove(system_id),
            };
            serde_json::to_vec_pretty(&*g).map_err(std::io::Error::other)?
        };
        write_atomic(&self.path, &snapshot)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("maas-flow-state")
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        let s = FileStore::open(&p).unwrap();
        s.put(
            "abc",
            Some(Record {
                provisioned_at: Some("t".into()),
                attempts: 0,
                last_error: None,
            }),
        )
        .unwrap();
        s.put(
            "def",
            Some(Record {
                attempts: 2,
                ..Record::default()
            }),
        )
        .unwrap();
        let s2 = FileStore::open(&p).unwrap();
        assert_eq!(s2.get("abc").unwrap().provisioned_at.as_deref(), Some("t"));
        assert_eq!(s2.get("def").unwrap().attempts, 2);
        s2.put("abc", None).unwrap();
        assert!(FileStore::open(&p).unwrap().get("abc").is_none());
        std::fs::write(&p, "{not json").unwrap();
        assert!(FileStore::open(&p).is_err());
    }
}
