//! The provisioning journal: a local, durable record of provisioning outcomes, written
//! the moment a run reports its verdict.
//!
//! MAAS workload annotations are the shared record of a successful provisioning, but
//! writing them is a MAAS operation that can wait, fail or be cut by a restart. The
//! journal closes that gap: the node actor appends the outcome here (and waits for the
//! `fsync`) before it does anything else with it, so a maas-flow killed right after a
//! script exited 0 does not run it again.
//!
//! Every entry is keyed by the MAAS region (its base URL), the machine, and the
//! deployment ([`DeploymentKey`]: MAAS's `current_installation_result_id`, a new id per
//! deploy), so two regions, two test runs or a redeploy of the same machine never
//! borrow each other's outcome. Where MAAS gives no installation id (API 1.0), the
//! entry is keyed without one and cleared when the machine is seen leaving Deployed.
//!
//! The file is JSON lines, one entry per line, appended and `fdatasync`ed; the
//! directory is `fsync`ed when the file is created. On open, a torn last line (a crash
//! mid-append) is dropped and a file with many superseded lines is compacted (temp
//! file, fsync, rename, fsync of the directory). A file in the old format (one JSON
//! object keyed by system_id, `provision.state_file` before the journal) is migrated.
//!
//! What is left: a run that finished but whose journal append had not reached the disk
//! when maas-flow died (the few milliseconds between the script's exit and the
//! `fdatasync`) is run again.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The journal's file name under `state_dir`.
pub const JOURNAL_FILE: &str = "provision-journal.jsonl";

/// Compact on open when superseded lines outnumber live entries by this much.
const COMPACT_SLACK: usize = 1000;

/// One outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// RFC 3339 time of the successful run, if any.
    pub provisioned_at: Option<String>,
    /// Failed attempts since the last success.
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// The deployment an outcome belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeploymentKey {
    /// The MAAS region's base URL.
    pub region: String,
    pub system_id: String,
    /// MAAS's `current_installation_result_id` for this deployment, if MAAS gave one.
    pub installation: Option<i64>,
}

/// One line of the journal: a record, or (`record: null`) the machine's entry cleared.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    region: String,
    system_id: String,
    installation: Option<i64>,
    /// Migrated from the old format, which did not know the deployment: matches
    /// whichever deployment the machine is in (the old file was cleared on release).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    any_installation: bool,
    record: Option<Record>,
}

/// The latest entry per (region, system_id).
type Entries = HashMap<(String, String), (Option<i64>, bool, Record)>;

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: not a journal entry: {source}")]
    Corrupt {
        path: String,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

pub struct FileStore {
    path: PathBuf,
    entries: Mutex<Entries>,
    /// The open journal, appended under this lock so lines never interleave.
    file: Mutex<File>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileStore({})", self.path.display())
    }
}

impl FileStore {
    /// Open (or start) the journal at `path`, creating its directory (mode 0700).
    /// `region` is the MAAS base URL that entries migrated from the old format get.
    pub fn open(path: impl Into<PathBuf>, region: &str) -> Result<Self, JournalError> {
        let path = path.into();
        let io = |source| JournalError::Io {
            path: path.display().to_string(),
            source,
        };
        let dir = parent_dir(&path);
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let (entries, rewrite) = match std::fs::read(&path) {
            Ok(bytes) => parse(&bytes, region, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Entries::new(), true),
            Err(e) => return Err(io(e)),
        };
        if rewrite {
            write_atomic(&path, &render(&entries)).map_err(io)?;
        }
        let file = OpenOptions::new().append(true).open(&path).map_err(io)?;
        Ok(FileStore {
            path,
            entries: Mutex::new(entries),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The outcome recorded for this deployment, if any.
    pub fn get(&self, key: &DeploymentKey) -> Option<Record> {
        let g = self.entries.lock();
        let (installation, any, record) = g.get(&(key.region.clone(), key.system_id.clone()))?;
        (*any || *installation == key.installation).then(|| record.clone())
    }

    /// Record (or with `None`, clear) a machine's outcome and wait until it is on disk.
    /// Blocking: call off the actor thread.
    pub fn put(&self, key: &DeploymentKey, record: Option<Record>) -> Result<(), JournalError> {
        let line = Line {
            region: key.region.clone(),
            system_id: key.system_id.clone(),
            installation: key.installation,
            any_installation: false,
            record: record.clone(),
        };
        let mut text = serde_json::to_string(&line).map_err(|e| JournalError::Io {
            path: self.path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        text.push('\n');
        let mut f = self.file.lock();
        {
            let mut g = self.entries.lock();
            let k = (key.region.clone(), key.system_id.clone());
            match record {
                Some(r) => g.insert(k, (key.installation, false, r)),
                None => g.remove(&k),
            };
        }
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|source| JournalError::Io {
                path: self.path.display().to_string(),
                source,
            })
    }
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Read a journal (or an old-format file). Returns the entries and whether the file
/// should be rewritten (migrated, torn tail, or worth compacting).
fn parse(bytes: &[u8], region: &str, path: &Path) -> Result<(Entries, bool), JournalError> {
    let mut entries = Entries::new();
    let trimmed = bytes.trim_ascii_start();
    if trimmed.is_empty() {
        return Ok((entries, false));
    }
    // The old format: one pretty-printed object keyed by system_id.
    if trimmed.starts_with(b"{") && !trimmed.starts_with(b"{\"region\"") {
        if let Ok(old) = serde_json::from_slice::<BTreeMap<String, Record>>(bytes) {
            for (id, r) in old {
                entries.insert((region.to_string(), id), (None, true, r));
            }
            return Ok((entries, true));
        }
    }
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let mut count = 0usize;
    let mut torn = false;
    for (i, l) in lines.iter().enumerate() {
        if l.trim_ascii().is_empty() {
            continue;
        }
        match serde_json::from_slice::<Line>(l) {
            Ok(line) => {
                count += 1;
                let k = (line.region, line.system_id);
                match line.record {
                    Some(r) => entries.insert(k, (line.installation, line.any_installation, r)),
                    None => entries.remove(&k),
                };
            }
            // Only the last line can be torn by a crash mid-append.
            Err(_) if i + 1 == lines.len() => torn = true,
            Err(source) => {
                return Err(JournalError::Corrupt {
                    path: path.display().to_string(),
                    line: i + 1,
                    source,
                })
            }
        }
    }
    if torn {
        tracing::warn!(path = %path.display(), "provisioning journal ends in a torn line (a crash mid-write); dropping it");
    }
    let compact = count > entries.len() + COMPACT_SLACK;
    Ok((entries, torn || compact))
}

fn render(entries: &Entries) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keys: Vec<_> = entries.keys().collect();
    keys.sort();
    for k in keys {
        let (installation, any, record) = &entries[k];
        let line = Line {
            region: k.0.clone(),
            system_id: k.1.clone(),
            installation: *installation,
            any_installation: *any,
            record: Some(record.clone()),
        };
        if let Ok(s) = serde_json::to_string(&line) {
            out.extend_from_slice(s.as_bytes());
            out.push(b'\n');
        }
    }
    out
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("maas-flow-state")
    ));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Count the journal lines (tests and diagnostics).
pub fn line_count(path: &Path) -> std::io::Result<usize> {
    Ok(std::io::BufReader::new(File::open(path)?).lines().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(region: &str, id: &str, inst: Option<i64>) -> DeploymentKey {
        DeploymentKey {
            region: region.into(),
            system_id: id.into(),
            installation: inst,
        }
    }

    fn done() -> Record {
        Record {
            provisioned_at: Some("t".into()),
            attempts: 0,
            last_error: None,
        }
    }

    #[test]
    fn survives_reopen_keyed_by_region_and_deployment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/journal.jsonl");
        let s = FileStore::open(&p, "http://a/MAAS/").unwrap();
        s.put(&key("http://a/MAAS/", "abc", Some(7)), Some(done()))
            .unwrap();
        s.put(
            &key("http://a/MAAS/", "def", None),
            Some(Record {
                attempts: 2,
                ..Record::default()
            }),
        )
        .unwrap();
        let s2 = FileStore::open(&p, "http://a/MAAS/").unwrap();
        assert!(s2.get(&key("http://a/MAAS/", "abc", Some(7))).is_some());
        // Another deployment of the same machine, or another region: nothing.
        assert!(s2.get(&key("http://a/MAAS/", "abc", Some(8))).is_none());
        assert!(s2.get(&key("http://b/MAAS/", "abc", Some(7))).is_none());
        assert_eq!(
            s2.get(&key("http://a/MAAS/", "def", None))
                .unwrap()
                .attempts,
            2
        );
        s2.put(&key("http://a/MAAS/", "abc", Some(7)), None)
            .unwrap();
        let s3 = FileStore::open(&p, "http://a/MAAS/").unwrap();
        assert!(s3.get(&key("http://a/MAAS/", "abc", Some(7))).is_none());
    }

    #[test]
    fn torn_tail_is_dropped_and_corruption_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.jsonl");
        let s = FileStore::open(&p, "r").unwrap();
        s.put(&key("r", "abc", Some(1)), Some(done())).unwrap();
        drop(s);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"region\":\"r\",\"sys").unwrap();
        drop(f);
        let s = FileStore::open(&p, "r").unwrap();
        assert!(s.get(&key("r", "abc", Some(1))).is_some());
        s.put(&key("r", "def", Some(2)), Some(done())).unwrap();
        let s = FileStore::open(&p, "r").unwrap();
        assert!(s.get(&key("r", "def", Some(2))).is_some());
        std::fs::write(&p, "garbage\n{\"also\":1}\n").unwrap();
        assert!(matches!(
            FileStore::open(&p, "r"),
            Err(JournalError::Corrupt { line: 1, .. })
        ));
    }

    #[test]
    fn old_state_file_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        std::fs::write(
            &p,
            r#"{"abc": {"provisioned_at": "t", "attempts": 0, "last_error": null}}"#,
        )
        .unwrap();
        let s = FileStore::open(&p, "http://a/MAAS/").unwrap();
        // The old file did not know the deployment; it was cleared on release.
        assert!(s.get(&key("http://a/MAAS/", "abc", Some(9))).is_some());
        assert!(s.get(&key("http://b/MAAS/", "abc", Some(9))).is_none());
        let s = FileStore::open(&p, "http://a/MAAS/").unwrap();
        assert!(s.get(&key("http://a/MAAS/", "abc", None)).is_some());
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .starts_with("{\"region\""));
    }
}
