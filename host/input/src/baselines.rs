//! The last common flag set computed for each cluster and group, kept under
//! `<cache-dir>/baselines/` so the next computation can say what changed:
//! one small file per scope and architecture (`cluster.x86_64.json`,
//! `group-fast.x86_64.json`), replaced atomically, with the recent changes.
//! A damaged file is set aside with one warning, as a history is, and the
//! next computation starts it again.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::file_read::{self, ReadError, Rule};
use crate::hardware_diff::Change;
use crate::node_name::NodeName;

const FORMAT: &str = "nodecache-baseline/1";
/// Changes kept per scope, newest last.
pub const MAX_CHANGES: usize = 32;
/// A kept baseline is a flag list, a member list and a few changes.
const MAX_BYTES: u64 = 4 << 20;

/// `cluster` or `group fast`: how an answer's scope is named in `--level`,
/// `check`'s line and the metrics' `scope` label.
pub fn scope_name(group: Option<&str>) -> String {
    match group {
        Some(group) => format!("group {group}"),
        None => "cluster".to_string(),
    }
}

/// Which answer a baseline is: the whole cluster's, or a group's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub group: Option<NodeName>,
    pub arch: String,
}

impl Scope {
    /// `the cluster` or `group fast`, as messages name it.
    pub fn describe(&self) -> String {
        match &self.group {
            Some(group) => format!("group {group}"),
            None => "the cluster".to_string(),
        }
    }

    /// `cluster` or `group fast` ([`scope_name`]), as a metric's label says it.
    pub fn label(&self) -> String {
        scope_name(self.group.as_ref().map(NodeName::as_str))
    }

    fn file_name(&self) -> String {
        match &self.group {
            Some(group) => format!("group-{group}.{}.json", self.arch),
            None => format!("cluster.{}.json", self.arch),
        }
    }
}

/// The last common set of a scope and what changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    format: String,
    pub flags: Vec<String>,
    pub level: Option<String>,
    /// The nodes it was computed over.
    pub members: Vec<String>,
    /// When a computation last gave this set.
    pub confirmed_at_ms: u64,
    /// When a computation first gave this set.
    pub changed_at_ms: u64,
    pub changes: Vec<BaselineChange>,
}

impl Kept {
    pub fn new(flags: Vec<String>, level: Option<String>, members: Vec<String>, now_ms: u64) -> Kept {
        Kept {
            format: FORMAT.into(),
            flags,
            level,
            members,
            confirmed_at_ms: now_ms,
            changed_at_ms: now_ms,
            changes: Vec::new(),
        }
    }

    /// Adds `change`, dropping the oldest beyond [`MAX_CHANGES`].
    pub fn push(&mut self, change: BaselineChange) {
        self.changes.push(change);
        if self.changes.len() > MAX_CHANGES {
            self.changes.drain(..self.changes.len() - MAX_CHANGES);
        }
    }
}

/// One change of a scope's common set, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineChange {
    /// When the new set was first computed.
    pub at_ms: u64,
    /// When the old set was last computed: the change happened between.
    pub since_ms: u64,
    pub lost: Vec<String>,
    pub gained: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Change<Option<String>>>,
    /// The nodes that made it, each with why.
    pub because: Vec<Cause>,
    /// The whole change in one line, as stderr and the log say it.
    pub message: String,
}

/// A node behind a baseline change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub node: String,
    /// `microcode 0xde → 0xf0`, `joined`, `left`, `lost hle, rtm`.
    pub why: String,
}

/// The baselines directory.
#[derive(Debug, Clone)]
pub struct Baselines {
    dir: PathBuf,
}

impl Baselines {
    pub fn new(root: &Path) -> Baselines {
        Baselines {
            dir: root.join("baselines"),
        }
    }

    /// The scope's kept baseline; `None` when there is none yet, or it was
    /// damaged (then it is set aside, with a warning).
    pub fn read(&self, scope: &Scope) -> Option<Kept> {
        let path = self.dir.join(scope.file_name());
        let problem = match file_read::read(&path, Rule::kept(MAX_BYTES)) {
            Err(ReadError::Missing) => return None,
            Err(e) => e.to_string(),
            Ok(bytes) => match serde_json::from_slice::<Kept>(&bytes) {
                Ok(kept) if kept.format == FORMAT => return Some(kept),
                Ok(kept) => format!("format {:?}, expected {FORMAT:?}", kept.format),
                Err(e) => format!("not a kept baseline: {e}"),
            },
        };
        let aside = path.with_extension("damaged.json");
        match fs::rename(&path, &aside) {
            Ok(()) => tracing::warn!(
                "{}: damaged baseline ({problem}): set aside as {}; the next answer starts a new one",
                path.display(),
                aside.display()
            ),
            Err(e) => tracing::warn!("{}: damaged baseline ({problem}): {e}", path.display()),
        }
        None
    }

    /// Replaces the scope's kept baseline, atomically.
    pub fn write(&self, scope: &Scope, kept: &Kept) -> Result<()> {
        let bytes = serde_json::to_vec(kept)?;
        crate::private_path::replace_file(&self.dir, &scope.file_name(), &bytes)
            .with_context(|| format!("the kept baseline of {}", scope.describe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_baseline_reads_back_and_a_damaged_one_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let baselines = Baselines::new(dir.path());
        let scope = Scope {
            group: Some(NodeName::parse("fast").unwrap()),
            arch: "x86_64".into(),
        };
        assert_eq!(baselines.read(&scope), None);
        let kept = Kept::new(vec!["avx".into()], None, vec!["a".into()], 5);
        baselines.write(&scope, &kept).unwrap();
        assert_eq!(baselines.read(&scope), Some(kept));
        let path = dir.path().join("baselines/group-fast.x86_64.json");
        fs::write(&path, b"{\"format\":").unwrap();
        assert_eq!(baselines.read(&scope), None);
        assert!(!path.exists());
        assert!(
            dir.path()
                .join("baselines/group-fast.x86_64.damaged.json")
                .exists()
        );
    }
}
