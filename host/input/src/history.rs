//! Each node's hardware history: one file per node under
//! `<cache-dir>/history/`, a record appended whenever the cache replaces
//! the node's entry with other hardware (its fingerprint changed). The
//! cache keeps only the newest document; this keeps what changed, when,
//! and how it was seen, for `nodecache history` and for naming why the
//! cluster's baseline moved.
//!
//! A file is one JSON object (`{"format":"nodecache-history/1","node":…,
//! "records":[…]}`), replaced atomically as cache entries are. It is
//! bounded by [`MAX_RECORDS`] and [`MAX_BYTES`], oldest dropped first. A
//! file that cannot be read as one is renamed aside (`NODE.damaged-MS.json`)
//! with one warning, and the history starts again: a damaged history never
//! fails a run, and nothing in it is deleted.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::file_read::{self, ReadError, Rule};
use crate::hardware_diff::HardwareDiff;
use crate::node_name::NodeName;

const FORMAT: &str = "nodecache-history/1";
/// Records kept per node: years of monthly microcode updates.
pub const MAX_RECORDS: usize = 64;
/// Bytes a node's history may take; a diff's lists are capped, so one
/// record always fits.
pub const MAX_BYTES: usize = 256 << 10;

/// How the new hardware was seen. Only a probe or a whole fetch replaces
/// an entry's hardware: a 304 confirms the cached hardware and a stale
/// answer serves it, so neither makes a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seen {
    /// This machine, probed.
    Probe,
    /// A member's document, fetched whole.
    Fetch,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Seen::Probe => "probe",
            Seen::Fetch => "fetch",
        })
    }
}

/// One hardware change of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When the cache replaced the entry (Unix milliseconds).
    pub at_ms: u64,
    pub seen: Seen,
    /// The replaced and the new hardware fingerprints (validators).
    pub old: String,
    pub new: String,
    pub diff: HardwareDiff,
}

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    node: String,
    records: Vec<Record>,
}

/// The history directory.
#[derive(Debug, Clone)]
pub struct History {
    dir: PathBuf,
}

impl History {
    /// The history beside the cache rooted at `root`.
    pub fn new(root: &Path) -> History {
        History {
            dir: root.join("history"),
        }
    }

    pub fn path_of(&self, node: &NodeName) -> PathBuf {
        self.dir.join(format!("{node}.json"))
    }

    /// The node's records, oldest first; none when it has no history. A
    /// damaged file is set aside with a warning and reads as none.
    pub fn read(&self, node: &NodeName) -> Vec<Record> {
        // Another user able to write here could plant a history: read
        // nothing then, and set nothing aside (it is not damage).
        if self.dir.exists()
            && let Err(e) = crate::private_path::check_private(&self.dir, true)
        {
            tracing::warn!(
                "{}: not read: {e:#}; the history must be this user's alone",
                self.dir.display()
            );
            return Vec::new();
        }
        match self.load(node) {
            Ok(records) => records,
            Err(problem) => {
                self.set_aside(node, &problem);
                Vec::new()
            }
        }
    }

    /// Every node with a history file, by name.
    pub fn nodes(&self) -> Vec<NodeName> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut nodes: Vec<NodeName> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let node = name.strip_suffix(".json").filter(|n| !n.contains(".damaged-"))?;
                NodeName::parse(node).ok()
            })
            .collect();
        nodes.sort();
        nodes
    }

    /// Appends `record` to the node's history, dropping the oldest records
    /// beyond the caps, and replaces the file atomically.
    pub fn append(&self, node: &NodeName, record: Record) -> Result<()> {
        let mut records = self.read(node);
        records.push(record);
        if records.len() > MAX_RECORDS {
            records.drain(..records.len() - MAX_RECORDS);
        }
        let mut file = File {
            format: FORMAT.into(),
            node: node.to_string(),
            records,
        };
        let mut bytes = serde_json::to_vec(&file)?;
        while bytes.len() > MAX_BYTES && file.records.len() > 1 {
            file.records.remove(0);
            bytes = serde_json::to_vec(&file)?;
        }
        self.replace(node, &bytes)
    }

    fn load(&self, node: &NodeName) -> Result<Vec<Record>, String> {
        let bytes = match file_read::read(&self.path_of(node), Rule::kept(MAX_BYTES as u64)) {
            Ok(bytes) => bytes,
            Err(ReadError::Missing) => return Ok(Vec::new()),
            Err(ReadError::TooLarge { max }) => return Err(format!("larger than its {max}-byte cap")),
            Err(e) => return Err(e.to_string()),
        };
        parse(&bytes, node)
    }

    /// Renames a damaged history out of the way, keeping it for whoever
    /// wants to look, and says so once (the next run finds no file).
    fn set_aside(&self, node: &NodeName, problem: &str) {
        let path = self.path_of(node);
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let aside = self.dir.join(format!("{node}.damaged-{millis}.json"));
        match fs::rename(&path, &aside) {
            Ok(()) => tracing::warn!(
                "{}: damaged hardware history ({problem}): set aside as {}; a new one starts",
                path.display(),
                aside.display()
            ),
            Err(e) => tracing::warn!(
                "{}: damaged hardware history ({problem}), and it cannot be set aside: {e}",
                path.display()
            ),
        }
    }

    fn replace(&self, node: &NodeName, bytes: &[u8]) -> Result<()> {
        crate::private_path::replace_file(&self.dir, &format!("{node}.json"), bytes)
            .with_context(|| format!("the hardware history of {node}"))
    }
}

/// A history file's records, checked: its format and node. Public for
/// the fuzz targets.
pub fn parse(bytes: &[u8], node: &NodeName) -> Result<Vec<Record>, String> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| format!("not a history: {e}"))?;
    if file.format != FORMAT {
        return Err(format!("format {:?}, expected {FORMAT:?}", file.format));
    }
    if file.node != node.as_str() {
        return Err(format!("a history of node {:?}", file.node));
    }
    Ok(file.records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_ms: u64, padding: usize) -> Record {
        Record {
            at_ms,
            seen: Seen::Fetch,
            old: format!("old{at_ms}"),
            new: format!("new{at_ms}"),
            diff: HardwareDiff::unknown("x".repeat(padding)),
        }
    }

    #[test]
    fn records_are_kept_oldest_first_within_both_caps() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::new(dir.path());
        let node = NodeName::parse("n1").unwrap();
        for at in 0..(MAX_RECORDS as u64 + 10) {
            history.append(&node, record(at, 0)).unwrap();
        }
        let records = history.read(&node);
        assert_eq!(records.len(), MAX_RECORDS);
        assert_eq!(records[0].at_ms, 10);
        // Large records: the byte cap binds before the count.
        for at in 100..120 {
            history.append(&node, record(at, 40_000)).unwrap();
        }
        let size = fs::metadata(history.path_of(&node)).unwrap().len();
        assert!(size <= MAX_BYTES as u64, "{size}");
        let records = history.read(&node);
        assert_eq!(records.last().unwrap().at_ms, 119);
        assert!(records.len() < 10, "{}", records.len());
        assert_eq!(history.nodes(), [node]);
    }

    #[test]
    fn a_damaged_or_foreign_history_is_set_aside_and_a_new_one_starts() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::new(dir.path());
        let node = NodeName::parse("n1").unwrap();
        history.append(&node, record(1, 0)).unwrap();
        let path = history.path_of(&node);
        for damage in [
            b"{\"format\":\"nodecache-history/1\",\"node\":\"n1\",\"rec".to_vec(),
            br#"{"format":"nodecache-history/1","node":"n2","records":[]}"#.to_vec(),
            vec![b' '; MAX_BYTES + 1],
        ] {
            fs::write(&path, &damage).unwrap();
            assert!(history.read(&node).is_empty());
            assert!(!path.exists());
            history.append(&node, record(2, 0)).unwrap();
            assert_eq!(history.read(&node).len(), 1);
        }
        let aside = fs::read_dir(dir.path().join("history"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".damaged-")
            })
            .count();
        assert!(aside >= 1);
    }
}
