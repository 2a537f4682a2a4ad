//! The cache: one file per node under `<cache-dir>/resources/`, replaced
//! atomically (temp file in the same directory, then rename) so a reader
//! never sees a torn entry.
//!
//! A file is a one-line JSON header, then the document:
//! `{"format":"nodecache-cache/1","node":"n1","fetched_at_ms":…,"length":…,"validator":…,"sha256":…,"cpu":…}\n{…api.Resources…}`
//! The header lets a read check the entry is whole and take the document
//! without re-serialising it. `validator` (absent in entries written through
//! contract 0.1) identifies the hardware the document describes;
//! `fetched_at_ms` is when the document was fetched or last confirmed;
//! `cpu` is the document's CPU summary, made once when it is written so that
//! a warm `cpu-flags` does not parse every member's document again.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::api::cpu_summary::{self, CpuSummary};
use crate::file_read::{self, ReadError, Rule};
use crate::hardware_diff::HardwareDiff;
use crate::history::{History, Record, Seen};
use crate::node_name::NodeName;

const FORMAT: &str = "nodecache-cache/1";
/// Entries are written under this prefix, then renamed into place.
const TEMP_PREFIX: &str = ".tmp-";
/// An entry larger than this is not a resources document: treat it as corrupt.
const MAX_ENTRY_BYTES: u64 = 64 << 20;
/// Fetch times this far in the future are clock trouble, not a fresh entry.
const FUTURE_TOLERANCE_MS: u64 = 5 * 60 * 1000;

/// A temporary file older than this belongs to no live writer (a write
/// takes well under a second; a policy call at most minutes): a writer
/// killed mid-write left it, and the first write of a later run removes it.
const ORPHAN_AGE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone)]
pub struct CacheStore {
    root: PathBuf,
    resources_dir: PathBuf,
    /// Whether the cache directory and its `resources/` are this user's
    /// alone, learned once they exist: entries are read and written only
    /// then (another user able to write there could plant a fresh entry).
    private: Arc<OnceLock<Result<(), String>>>,
    /// Orphaned temporary files are looked for once per process, on the
    /// first write, not on every one (a cold run writes every member).
    orphans_swept: Arc<Once>,
    /// Where a write that changes a node's hardware records the change.
    history: History,
}

/// A cache entry that was read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEntry {
    pub document: String,
    pub validator: Option<String>,
    pub fetched_at_ms: u64,
    pub age_ms: u64,
    /// The document's CPU summary: the one stored beside it when that is
    /// well formed, else made from the document as it was read.
    pub summary: CpuSummary,
    /// When the cache first saw this hardware (`cluster status`).
    pub hardware_since_ms: Option<u64>,
}

/// Why an existing entry cannot be used. The policy treats both as a miss.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheFault {
    #[error("{path}: corrupt cache entry: {problem}")]
    Corrupt { path: String, problem: String },
    #[error("{path}: unreadable cache entry: {problem}")]
    Unreadable { path: String, problem: String },
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    node: String,
    fetched_at_ms: u64,
    length: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    validator: Option<String>,
    /// SHA-256 of the document: a damaged entry is found by a digest (µs)
    /// rather than by parsing it. Entries without one are parsed instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    /// The document's CPU summary; absent for documents without one (and in
    /// entries written before summaries were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpu: Option<CpuSummary>,
    /// When an entry first held this hardware (this validator): the last
    /// hardware change the cache saw. Absent without a validator (no
    /// hardware identity to compare) and in older entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hardware_since_ms: Option<u64>,
}

/// The fields of a [`Header`] that date its hardware.
#[derive(Deserialize)]
struct Stamp {
    node: String,
    fetched_at_ms: u64,
    #[serde(default)]
    validator: Option<String>,
    #[serde(default)]
    hardware_since_ms: Option<u64>,
}

impl CacheStore {
    /// A store rooted at `root` (the `resources/` directory is made on first write).
    pub fn new(root: &Path) -> CacheStore {
        CacheStore {
            root: root.to_path_buf(),
            resources_dir: root.join("resources"),
            private: Arc::new(OnceLock::new()),
            orphans_swept: Arc::new(Once::new()),
            history: History::new(root),
        }
    }

    /// The cache directory: `resources/`, `history/`, `baselines/`, `compiled/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Each node's hardware history, kept beside the entries.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// `$XDG_CACHE_HOME/nodecache`, else `~/.cache/nodecache`.
    pub fn default_root() -> Result<PathBuf> {
        crate::xdg::user_dir("XDG_CACHE_HOME", ".cache", "--cache-dir").context("cannot place the cache")
    }

    /// Whether the cache's root and `resources/` are this user's alone
    /// (owned by this user, writable by nobody else, not links); `Ok` while
    /// they do not exist yet. Checked once per process, once they exist.
    fn check_private(&self) -> Result<(), String> {
        if let Some(known) = self.private.get() {
            return known.clone();
        }
        if !self.resources_dir.exists() {
            return Ok(());
        }
        let root = self.resources_dir.parent().unwrap_or(&self.resources_dir);
        let verdict = crate::private_path::check_private(root, true)
            .and_then(|()| crate::private_path::check_private(&self.resources_dir, true))
            .map_err(|e| format!("{e:#}; the cache must be this user's alone"));
        self.private.get_or_init(|| verdict).clone()
    }

    pub fn path_of(&self, node: &NodeName) -> PathBuf {
        self.resources_dir.join(format!("{node}.json"))
    }

    pub fn read(&self, node: &NodeName, now_ms: u64) -> Result<Option<CachedEntry>, CacheFault> {
        let path = self.path_of(node);
        let unreadable = |problem: String| CacheFault::Unreadable {
            path: path.display().to_string(),
            problem,
        };
        self.check_private().map_err(unreadable)?;
        let corrupt = |problem: String| CacheFault::Corrupt {
            path: path.display().to_string(),
            problem,
        };
        // The one reader: no link followed (it could lead out of the cache),
        // never waiting on a FIFO, this user's alone, bounded by the size
        // the open file had.
        let bytes = match file_read::read(&path, Rule::kept(MAX_ENTRY_BYTES)) {
            Ok(bytes) => bytes,
            Err(ReadError::Missing) => return Ok(None),
            Err(ReadError::Link) => {
                return Err(corrupt(
                    "a symbolic link, not followed: not a regular file".into(),
                ));
            }
            Err(e @ ReadError::NotRegular { .. }) => return Err(corrupt(e.to_string())),
            Err(ReadError::TooLarge { max }) => {
                return Err(corrupt(format!(
                    "larger than {max} bytes, more than any resources document"
                )));
            }
            Err(e @ (ReadError::NotPrivate(_) | ReadError::Io(_))) => {
                return Err(unreadable(e.to_string()));
            }
        };
        let entry = parse_entry(bytes, node, now_ms).map_err(corrupt)?;
        Ok(Some(entry))
    }

    /// Replaces the node's entry with `document` (and its validator, if
    /// any), and returns the CPU summary stored with it (`known`, or made
    /// now). When the replaced entry held other hardware (another
    /// validator), the change is recorded in the node's history, as `seen`.
    pub fn write(
        &self,
        node: &NodeName,
        document: &str,
        validator: Option<&str>,
        fetched_at_ms: u64,
        known: Option<CpuSummary>,
        seen: Seen,
    ) -> Result<CpuSummary> {
        // Summarising parses the whole document, so it also shows it is an
        // `api.Resources` document: anything else would be read back as a
        // fresh entry that fails every run until it expires. `known` is the
        // summary the host made of this very document when it fetched it.
        let summary = match known {
            Some(summary) => summary,
            None => cpu_summary::from_document(document).with_context(|| {
                format!("refusing to cache a document for {node} that is not a resources document")
            })?,
        };
        let validator = validator.filter(|v| !v.is_empty());
        // Only an entry with a validator has a hardware identity to compare.
        let previous = validator.and_then(|_| self.stamp(node));
        let since = validator.map(|validator| match &previous {
            Some(old) if old.validator.as_deref() == Some(validator) => old
                .hardware_since_ms
                .unwrap_or(old.fetched_at_ms)
                .min(fetched_at_ms),
            _ => fetched_at_ms,
        });
        // Other hardware than the entry being replaced: its document is
        // read for the diff before it is gone (rare, so the cost is too).
        let replaced = match (previous.and_then(|old| old.validator), validator) {
            (Some(old), Some(new)) if old != new => Some((old, self.read(node, fetched_at_ms))),
            _ => None,
        };
        self.replace(node, document, validator, fetched_at_ms, &summary, since)?;
        if let (Some((old, entry)), Some(new)) = (replaced, validator) {
            let diff = match entry {
                Ok(Some(entry)) => HardwareDiff::between(&entry.document, document),
                Ok(None) => HardwareDiff::unknown("the replaced entry was gone".into()),
                Err(fault) => HardwareDiff::unknown(format!("the replaced entry: {fault}")),
            };
            let record = Record {
                at_ms: fetched_at_ms,
                seen,
                old,
                new: new.to_string(),
                diff,
            };
            // The history is a record of the cache, never a reason to fail it.
            if let Err(e) = self.history.append(node, record) {
                tracing::warn!("{node}: cannot record the hardware change: {e:#}");
            }
        }
        Ok(summary)
    }

    /// Stamps the node's entry as confirmed at `now_ms`: same document and
    /// validator, age 0. An error when there is no whole entry to restamp.
    pub fn restamp(&self, node: &NodeName, now_ms: u64) -> Result<()> {
        let entry = self
            .read(node, now_ms)
            .map_err(anyhow::Error::from)?
            .with_context(|| format!("no cache entry for {node} to restamp"))?;
        self.replace(
            node,
            &entry.document,
            entry.validator.as_deref(),
            now_ms,
            &entry.summary,
            entry.hardware_since_ms,
        )
    }

    /// When the cache first saw the hardware of the node's entry
    /// (`cluster status`), from its header alone; `None` without an entry
    /// or a hardware identity.
    pub fn hardware_since_ms(&self, node: &NodeName) -> Option<u64> {
        self.stamp(node)?.hardware_since_ms
    }

    /// The header fields of the node's entry that say when and for which
    /// hardware it was written: its first line only, through the one
    /// reader, the CPU summary skipped rather than built (it is most of a
    /// header's bytes). `None` for a missing or unreadable entry.
    fn stamp(&self, node: &NodeName) -> Option<Stamp> {
        self.check_private().ok()?;
        let line = file_read::read_first_line(&self.path_of(node), Rule::kept(MAX_ENTRY_BYTES)).ok()?;
        serde_json::from_slice::<Stamp>(&line)
            .ok()
            .filter(|stamp| stamp.node == node.as_str())
    }

    fn replace(
        &self,
        node: &NodeName,
        document: &str,
        validator: Option<&str>,
        fetched_at_ms: u64,
        summary: &CpuSummary,
        hardware_since_ms: Option<u64>,
    ) -> Result<()> {
        self.orphans_swept
            .call_once(|| remove_orphans(&self.resources_dir, SystemTime::now()));
        let header = Header {
            format: FORMAT.into(),
            node: node.to_string(),
            fetched_at_ms,
            length: document.len(),
            validator: validator.map(str::to_string),
            sha256: Some(crate::digest::sha256_hex(document.as_bytes())),
            cpu: Some(summary.clone()),
            hardware_since_ms,
        };
        let path = self.path_of(node);
        let mut temp = self.temp_file()?;
        // The entry is made in memory and written in one call: serde_json
        // writing to the file itself makes a system call per token (a fifth
        // of a cold run's cache writes, measured).
        let mut entry = Vec::with_capacity(document.len() + 1024);
        serde_json::to_writer(&mut entry, &header).context("cannot encode a cache header")?;
        entry.push(b'\n');
        entry.extend_from_slice(document.as_bytes());
        // No fsync: the rename keeps readers from seeing a torn entry, and an
        // entry a crash leaves damaged fails its length check and is a miss.
        temp.write_all(&entry)
            .with_context(|| format!("cannot write the cache entry for {node}"))?;
        temp.persist(&path)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
    }

    /// A temporary file beside the entries. The directory is made only when
    /// it is missing (first write, or a cache cleared under a running
    /// `serve`): asking the filesystem on every write cost a system call per
    /// member of a cold run.
    fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        // Written only where nobody else can write: a link there could aim
        // the rename elsewhere, another user's entry be trusted.
        self.check_private()
            .map_err(|problem| anyhow::anyhow!("{problem}"))?;
        let create = || {
            tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .tempfile_in(&self.resources_dir)
        };
        let temp = match create() {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.resources_dir)
                    .with_context(|| format!("cannot create {}", self.resources_dir.display()))?;
                self.check_private()
                    .map_err(|problem| anyhow::anyhow!("{problem}"))?;
                create()
            }
            other => other,
        };
        temp.with_context(|| {
            format!(
                "cannot create a temporary file in {}",
                self.resources_dir.display()
            )
        })
    }

    pub fn remove(&self, node: &NodeName) -> Result<()> {
        let path = self.path_of(node);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        }
    }
}

/// Removes the temporary files in `dir` older than [`ORPHAN_AGE`] at
/// `now`. Best effort: what cannot be removed now is tried on a later run.
fn remove_orphans(dir: &Path, now: SystemTime) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_temp = entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(TEMP_PREFIX.as_bytes());
        let modified = entry.metadata().and_then(|m| m.modified());
        let orphaned = modified.is_ok_and(|at| now.duration_since(at).is_ok_and(|age| age > ORPHAN_AGE));
        if is_temp && orphaned {
            match fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(
                    "removed {}, left by a writer that was killed",
                    entry.path().display()
                ),
                Err(e) => tracing::debug!("cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
}

/// One entry file's bytes, checked whole: its header, node, length, fetch
/// time, digest and document. Public for the fuzz targets.
pub fn parse_entry(mut bytes: Vec<u8>, node: &NodeName, now_ms: u64) -> Result<CachedEntry, String> {
    let newline = bytes.iter().position(|&b| b == b'\n').ok_or("no header line")?;
    let header: Header = serde_json::from_slice(&bytes[..newline]).map_err(|e| format!("bad header: {e}"))?;
    if header.format != FORMAT {
        return Err(format!("format {:?}, expected {FORMAT:?}", header.format));
    }
    if header.node != node.as_str() {
        return Err(format!("entry is for node {:?}", header.node));
    }
    let body_len = bytes.len() - newline - 1;
    if body_len != header.length {
        return Err(format!(
            "document is {body_len} bytes, header says {}",
            header.length
        ));
    }
    if header.fetched_at_ms > now_ms.saturating_add(FUTURE_TOLERANCE_MS) {
        return Err("fetch time is in the future".into());
    }
    bytes.drain(..=newline);
    let document = String::from_utf8(bytes).map_err(|_| "document is not UTF-8".to_string())?;
    if let Some(digest) = &header.sha256
        && *digest != crate::digest::sha256_hex(document.as_bytes())
    {
        return Err("document does not match its digest".into());
    }
    // A stored summary holds for the document only when the header also
    // carries the document's digest and it matched (nodecache writes both
    // at once). An entry without either (written before summaries were
    // kept, or by hand) is summarised now, which also shows it holds a
    // resources document: one that does not is a miss, not a fresh entry.
    let tied = header.cpu.filter(|_| header.sha256.is_some());
    let summary = match tied.filter(cpu_summary::is_well_formed) {
        Some(summary) => summary,
        None => {
            cpu_summary::from_document(&document).map_err(|e| format!("not a resources document: {e}"))?
        }
    };
    Ok(CachedEntry {
        document,
        validator: header.validator,
        fetched_at_ms: header.fetched_at_ms,
        age_ms: now_ms.saturating_sub(header.fetched_at_ms),
        summary,
        hardware_since_ms: header.hardware_since_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest resources documents: a CPU section with its architecture.
    const DOC: &str = r#"{"cpu":{"architecture":"x86_64"}}"#;
    const OTHER_DOC: &str = r#"{"cpu":{"architecture":"aarch64"}}"#;

    fn setup() -> (tempfile::TempDir, CacheStore, NodeName) {
        let dir = tempfile::tempdir().unwrap();
        let store = CacheStore::new(dir.path());
        (dir, store, NodeName::parse("n1").unwrap())
    }

    #[test]
    fn a_written_entry_reads_back_with_its_age() {
        let (_dir, store, node) = setup();
        store.write(&node, DOC, None, 1_000, None, Seen::Fetch).unwrap();
        let entry = store.read(&node, 4_000).unwrap().unwrap();
        assert_eq!(entry.document, DOC);
        assert_eq!(entry.age_ms, 3_000);
    }

    #[test]
    fn a_validator_is_kept_and_a_restamp_resets_the_age_only() {
        let (_dir, store, node) = setup();
        store
            .write(&node, DOC, Some("abc"), 1_000, None, Seen::Fetch)
            .unwrap();
        let entry = store.read(&node, 9_000).unwrap().unwrap();
        assert_eq!((entry.validator.as_deref(), entry.age_ms), (Some("abc"), 8_000));
        store.restamp(&node, 9_000).unwrap();
        let entry = store.read(&node, 9_500).unwrap().unwrap();
        assert_eq!(
            (entry.document.as_str(), entry.validator.as_deref(), entry.age_ms),
            (DOC, Some("abc"), 500)
        );
        assert!(store.restamp(&NodeName::parse("absent").unwrap(), 1).is_err());
    }

    #[test]
    fn a_missing_entry_is_none() {
        let (_dir, store, node) = setup();
        assert_eq!(store.read(&node, 0), Ok(None));
    }

    #[test]
    fn damaged_entries_are_corrupt() {
        let (_dir, store, node) = setup();
        store.write(&node, DOC, None, 1_000, None, Seen::Fetch).unwrap();
        let path = store.path_of(&node);
        let good = fs::read(&path).unwrap();
        let cases: Vec<Vec<u8>> = vec![
            good[..good.len() - 2].to_vec(),
            b"garbage".to_vec(),
            vec![0xff; 100],
            String::from_utf8(good.clone())
                .unwrap()
                .replace("\"n1\"", "\"n2\"")
                .into_bytes(),
            String::from_utf8(good.clone())
                .unwrap()
                .replace("\"x86_64\"}}", "\"x86_64\"]]")
                .into_bytes(),
            Vec::new(),
            // An entry without a digest (as tests and older writers make them) is parsed.
            b"{\"format\":\"nodecache-cache/1\",\"node\":\"n1\",\"fetched_at_ms\":1,\"length\":5}\n{]]]}"
                .to_vec(),
            // Valid JSON without a stored summary that is not a resources
            // document: a miss, not an entry served as fresh until it expires.
            b"{\"format\":\"nodecache-cache/1\",\"node\":\"n1\",\"fetched_at_ms\":1,\"length\":7}\n{\"v\":1}"
                .to_vec(),
        ];
        for bytes in cases {
            fs::write(&path, &bytes).unwrap();
            assert!(
                matches!(store.read(&node, 2_000), Err(CacheFault::Corrupt { .. })),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn an_entry_that_links_to_an_endless_device_is_refused_unread() {
        let (dir, store, node) = setup();
        fs::create_dir_all(dir.path().join("resources")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", store.path_of(&node)).unwrap();
        match store.read(&node, 0) {
            Err(CacheFault::Corrupt { problem, .. }) => {
                assert!(problem.contains("not a regular file"), "{problem}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// Found in the second hardening pass: only `compiled/` was checked, so
    /// a `resources/` others could write served a planted entry, and a
    /// `resources` link made the writer write elsewhere.
    #[test]
    fn entries_are_read_and_written_only_where_nobody_else_can_write() {
        use std::os::unix::fs::PermissionsExt;
        let document = r#"{"cpu":{"architecture":"x86_64"}}"#;
        // A resources/ anyone may write.
        let (dir, _, node) = setup();
        let good = CacheStore::new(dir.path());
        good.write(&node, document, None, 1_000, None, Seen::Fetch)
            .unwrap();
        fs::set_permissions(dir.path().join("resources"), fs::Permissions::from_mode(0o777)).unwrap();
        let store = CacheStore::new(dir.path());
        match store.read(&node, 2_000) {
            Err(CacheFault::Unreadable { problem, .. }) => {
                assert!(problem.contains("is writable by group or others"), "{problem}")
            }
            other => panic!("{other:?}"),
        }
        let refused = store
            .write(&node, document, None, 3_000, None, Seen::Fetch)
            .unwrap_err();
        assert!(
            format!("{refused:#}").contains("the cache must be this user's alone"),
            "{refused:#}"
        );
        // resources a link to a directory elsewhere: nothing is written there.
        let (dir, _, node) = setup();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("resources")).unwrap();
        let store = CacheStore::new(dir.path());
        assert!(
            store
                .write(&node, document, None, 1_000, None, Seen::Fetch)
                .is_err()
        );
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        // An entry that is a link: refused, not followed.
        let (dir, store, node) = setup();
        store
            .write(&node, document, None, 1_000, None, Seen::Fetch)
            .unwrap();
        let target = dir.path().join("target.json");
        fs::rename(store.path_of(&node), &target).unwrap();
        std::os::unix::fs::symlink(&target, store.path_of(&node)).unwrap();
        assert!(matches!(
            store.read(&node, 2_000),
            Err(CacheFault::Corrupt { .. })
        ));
    }

    /// Found in the second hardening pass: a header with a well-formed CPU
    /// summary and no digest, over `{"not":"resources"}`, was served fresh
    /// with the header's flags (and `resources` failed on it forever).
    #[test]
    fn a_summary_without_the_documents_digest_does_not_vouch_for_it() {
        let (_dir, store, node) = setup();
        let forged = r#"{"not":"resources"}"#;
        let header = serde_json::json!({
            "format": FORMAT, "node": node.as_str(), "fetched_at_ms": 1_000,
            "length": forged.len(), "cpu": {"architecture": "x86_64", "core_groups": [{"cores": 1, "flags": "avx512f fpu"}]},
        });
        fs::create_dir_all(store.path_of(&node).parent().unwrap()).unwrap();
        fs::write(store.path_of(&node), format!("{header}\n{forged}")).unwrap();
        // Corrupt, which every policy takes as a miss: the node is asked again.
        match store.read(&node, 2_000) {
            Err(CacheFault::Corrupt { problem, .. }) => {
                assert!(problem.starts_with("not a resources document"), "{problem}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_entry_keeps_its_cpu_summary_and_an_ill_formed_one_is_ignored() {
        let (_dir, store, node) = setup();
        let document =
            r#"{"cpu":{"architecture":"x86_64","sockets":[{"cores":[{"flags":["sse2","fpu"]}]}]}}"#;
        let written = store
            .write(&node, document, None, 1_000, None, Seen::Fetch)
            .unwrap();
        let entry = store.read(&node, 2_000).unwrap().unwrap();
        assert_eq!(entry.summary, written);
        assert_eq!(written.core_groups[0].flags, "fpu sse2");
        // A header whose summary was edited out of order: the entry is
        // still good, its summary is made again from the document.
        let path = store.path_of(&node);
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("\"fpu sse2\"", "\"sse2 fpu\"");
        fs::write(&path, text).unwrap();
        let entry = store.read(&node, 2_000).unwrap().unwrap();
        assert_eq!((entry.document.as_str(), entry.summary), (document, written));
        // A document that is JSON but no resources document is not cached.
        let refused = store
            .write(&node, "{\"v\":1}", None, 1, None, Seen::Fetch)
            .unwrap_err();
        assert!(
            format!("{refused:#}").contains("not a resources document"),
            "{refused:#}"
        );
    }

    #[test]
    fn a_fifo_in_an_entrys_place_is_refused_without_blocking() {
        let (dir, store, node) = setup();
        fs::create_dir_all(dir.path().join("resources")).unwrap();
        let path = store.path_of(&node);
        let made = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(made.success());
        match store.read(&node, 0) {
            Err(CacheFault::Corrupt { problem, .. }) => {
                assert!(problem.contains("not a regular file"), "{problem}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_future_fetch_time_is_corrupt() {
        let (_dir, store, node) = setup();
        store
            .write(&node, DOC, None, 10 * FUTURE_TOLERANCE_MS, None, Seen::Fetch)
            .unwrap();
        assert!(matches!(store.read(&node, 0), Err(CacheFault::Corrupt { .. })));
    }

    #[test]
    fn writes_replace_and_leave_no_temporary_files() {
        let (dir, store, node) = setup();
        store.write(&node, DOC, None, 1, None, Seen::Fetch).unwrap();
        store.write(&node, OTHER_DOC, None, 2, None, Seen::Fetch).unwrap();
        assert_eq!(store.read(&node, 2).unwrap().unwrap().document, OTHER_DOC);
        let names: Vec<_> = fs::read_dir(dir.path().join("resources"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["n1.json"]);
    }

    /// The last hardware change is when a validator was first written:
    /// kept across rewrites and restamps of the same hardware, moved by
    /// another, unknown without a validator.
    #[test]
    fn the_hardware_change_time_moves_only_when_the_validator_does() {
        let (_dir, store, node) = setup();
        let since = |now| store.read(&node, now).unwrap().unwrap().hardware_since_ms;
        store
            .write(&node, DOC, Some("v1"), 1_000, None, Seen::Fetch)
            .unwrap();
        assert_eq!(since(1_000), Some(1_000));
        store
            .write(&node, OTHER_DOC, Some("v1"), 2_000, None, Seen::Fetch)
            .unwrap();
        assert_eq!(since(2_000), Some(1_000));
        store.restamp(&node, 2_500).unwrap();
        assert_eq!(since(2_500), Some(1_000));
        store
            .write(&node, DOC, Some("v2"), 3_000, None, Seen::Fetch)
            .unwrap();
        assert_eq!(since(3_000), Some(3_000));
        store.write(&node, DOC, None, 4_000, None, Seen::Fetch).unwrap();
        assert_eq!(since(4_000), None);
    }

    /// Other hardware is recorded once, with its diff; the same hardware
    /// written again (a refresh) records nothing.
    #[test]
    fn a_changed_validator_appends_one_history_record() {
        let (_dir, store, node) = setup();
        store
            .write(&node, DOC, Some("v1"), 1_000, None, Seen::Fetch)
            .unwrap();
        store
            .write(&node, DOC, Some("v1"), 2_000, None, Seen::Fetch)
            .unwrap();
        assert!(store.history().read(&node).is_empty());
        store
            .write(&node, OTHER_DOC, Some("v2"), 3_000, None, Seen::Probe)
            .unwrap();
        store
            .write(&node, OTHER_DOC, Some("v2"), 4_000, None, Seen::Probe)
            .unwrap();
        let records = store.history().read(&node);
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!((record.at_ms, record.seen), (3_000, Seen::Probe));
        assert_eq!((record.old.as_str(), record.new.as_str()), ("v1", "v2"));
        assert_eq!(record.diff, HardwareDiff::between(DOC, OTHER_DOC));
    }

    #[test]
    fn temporary_files_of_killed_writers_are_removed_by_the_next_run() {
        let (dir, store, node) = setup();
        let resources = dir.path().join("resources");
        fs::create_dir_all(&resources).unwrap();
        let orphan = resources.join(".tmp-orphan");
        let live = resources.join(".tmp-live");
        for path in [&orphan, &live] {
            fs::write(path, vec![0u8; 4096]).unwrap();
        }
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&orphan)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
        store.write(&node, DOC, None, 1, None, Seen::Fetch).unwrap();
        assert!(!orphan.exists(), "an hour-old temporary file is an orphan");
        assert!(live.exists(), "a fresh one may be a live writer's");
    }

    #[test]
    fn non_json_documents_are_not_cached() {
        let (_dir, store, node) = setup();
        assert!(
            store
                .write(&node, "not json", None, 1, None, Seen::Fetch)
                .is_err()
        );
        assert_eq!(store.read(&node, 1), Ok(None));
    }

    #[test]
    fn remove_forgets_and_tolerates_absence() {
        let (_dir, store, node) = setup();
        store.write(&node, DOC, None, 1, None, Seen::Fetch).unwrap();
        store.remove(&node).unwrap();
        store.remove(&node).unwrap();
        assert_eq!(store.read(&node, 1), Ok(None));
    }
}
