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
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::api::cpu_summary::{self, CpuSummary};
use crate::node_name::NodeName;

const FORMAT: &str = "nodecache-cache/1";
/// An entry larger than this is not a resources document: treat it as corrupt.
const MAX_ENTRY_BYTES: u64 = 64 << 20;
/// Fetch times this far in the future are clock trouble, not a fresh entry.
const FUTURE_TOLERANCE_MS: u64 = 5 * 60 * 1000;

#[derive(Debug, Clone)]
pub struct CacheStore {
    resources_dir: PathBuf,
}

/// A cache entry that was read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEntry {
    pub document: String,
    pub validator: Option<String>,
    pub fetched_at_ms: u64,
    pub age_ms: u64,
    /// The summary stored beside the document, when there is a well-formed one.
    pub summary: Option<CpuSummary>,
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
}

impl CacheStore {
    /// A store rooted at `root` (the `resources/` directory is made on first write).
    pub fn new(root: &Path) -> CacheStore {
        CacheStore {
            resources_dir: root.join("resources"),
        }
    }

    /// `$XDG_CACHE_HOME/nodecache`, else `~/.cache/nodecache`.
    pub fn default_root() -> Result<PathBuf> {
        crate::xdg::user_dir("XDG_CACHE_HOME", ".cache", "--cache-dir").context("cannot place the cache")
    }

    pub fn path_of(&self, node: &NodeName) -> PathBuf {
        self.resources_dir.join(format!("{node}.json"))
    }

    pub fn read(&self, node: &NodeName, now_ms: u64) -> Result<Option<CachedEntry>, CacheFault> {
        let path = self.path_of(node);
        let unreadable = |e: io::Error| CacheFault::Unreadable {
            path: path.display().to_string(),
            problem: e.to_string(),
        };
        // One open: the size checked is the size of the file read, even if it
        // is replaced meanwhile. Non-blocking, so a FIFO in the entry's place
        // cannot hang the call in `open` (it is then refused as not a file).
        let opened = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path);
        let mut file = match opened {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unreadable(e)),
        };
        let corrupt = |problem: String| CacheFault::Corrupt {
            path: path.display().to_string(),
            problem,
        };
        let metadata = file.metadata().map_err(unreadable)?;
        if !metadata.is_file() {
            return Err(corrupt("not a regular file".into()));
        }
        let size = metadata.len();
        if size > MAX_ENTRY_BYTES {
            return Err(corrupt(format!(
                "{size} bytes is larger than any resources document"
            )));
        }
        // Read at most the size the open file had: one read call, and a file
        // that grows meanwhile (or a device behind a link, which says 0)
        // cannot make the read unbounded. What was cut short fails the
        // header's length check below.
        let mut bytes = Vec::with_capacity(size as usize);
        (&mut file)
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        let entry = parse_entry(bytes, node, now_ms).map_err(corrupt)?;
        Ok(Some(entry))
    }

    /// Replaces the node's entry with `document` (and its validator, if
    /// any), and returns the CPU summary stored with it, if it has one.
    pub fn write(
        &self,
        node: &NodeName,
        document: &str,
        validator: Option<&str>,
        fetched_at_ms: u64,
    ) -> Result<Option<CpuSummary>> {
        // Summarising parses the whole document, so it also shows it is JSON.
        let summary = match cpu_summary::from_document(document) {
            Ok(summary) => Some(summary),
            Err(_) => {
                serde_json::from_str::<serde::de::IgnoredAny>(document)
                    .with_context(|| format!("refusing to cache a document for {node} that is not JSON"))?;
                None
            }
        };
        let validator = validator.filter(|v| !v.is_empty());
        self.replace(node, document, validator, fetched_at_ms, summary.as_ref())?;
        Ok(summary)
    }

    /// Stamps the node's entry as confirmed at `now_ms`: same document and
    /// validator, age 0. An error when there is no whole entry to restamp.
    pub fn restamp(&self, node: &NodeName, now_ms: u64) -> Result<()> {
        let entry = self
            .read(node, now_ms)
            .map_err(anyhow::Error::from)?
            .with_context(|| format!("no cache entry for {node} to restamp"))?;
        let summary = entry.summary.as_ref();
        self.replace(node, &entry.document, entry.validator.as_deref(), now_ms, summary)
    }

    fn replace(
        &self,
        node: &NodeName,
        document: &str,
        validator: Option<&str>,
        fetched_at_ms: u64,
        summary: Option<&CpuSummary>,
    ) -> Result<()> {
        fs::create_dir_all(&self.resources_dir)
            .with_context(|| format!("cannot create {}", self.resources_dir.display()))?;
        let header = Header {
            format: FORMAT.into(),
            node: node.to_string(),
            fetched_at_ms,
            length: document.len(),
            validator: validator.map(str::to_string),
            sha256: Some(crate::digest::sha256_hex(document.as_bytes())),
            cpu: summary.cloned(),
        };
        let path = self.path_of(node);
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.resources_dir)
            .with_context(|| {
                format!(
                    "cannot create a temporary file in {}",
                    self.resources_dir.display()
                )
            })?;
        let written = (|| -> io::Result<()> {
            serde_json::to_writer(&mut temp, &header)?;
            temp.write_all(b"\n")?;
            // No fsync: the rename keeps readers from seeing a torn entry, and an
            // entry a crash leaves damaged fails its length check and is a miss.
            temp.write_all(document.as_bytes())
        })();
        written.with_context(|| format!("cannot write the cache entry for {node}"))?;
        temp.persist(&path)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
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

fn parse_entry(mut bytes: Vec<u8>, node: &NodeName, now_ms: u64) -> Result<CachedEntry, String> {
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
    match &header.sha256 {
        Some(digest) if *digest != crate::digest::sha256_hex(document.as_bytes()) => {
            return Err("document does not match its digest".into());
        }
        Some(_) => {}
        None => {
            serde_json::from_str::<serde::de::IgnoredAny>(&document)
                .map_err(|e| format!("document is not JSON: {e}"))?;
        }
    }
    Ok(CachedEntry {
        document,
        validator: header.validator,
        fetched_at_ms: header.fetched_at_ms,
        age_ms: now_ms.saturating_sub(header.fetched_at_ms),
        summary: header.cpu.filter(cpu_summary::is_well_formed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, CacheStore, NodeName) {
        let dir = tempfile::tempdir().unwrap();
        let store = CacheStore::new(dir.path());
        (dir, store, NodeName::parse("n1").unwrap())
    }

    #[test]
    fn a_written_entry_reads_back_with_its_age() {
        let (_dir, store, node) = setup();
        store.write(&node, "{\"cpu\":{}}", None, 1_000).unwrap();
        let entry = store.read(&node, 4_000).unwrap().unwrap();
        assert_eq!(entry.document, "{\"cpu\":{}}");
        assert_eq!(entry.age_ms, 3_000);
    }

    #[test]
    fn a_validator_is_kept_and_a_restamp_resets_the_age_only() {
        let (_dir, store, node) = setup();
        store.write(&node, "{\"cpu\":{}}", Some("abc"), 1_000).unwrap();
        let entry = store.read(&node, 9_000).unwrap().unwrap();
        assert_eq!((entry.validator.as_deref(), entry.age_ms), (Some("abc"), 8_000));
        store.restamp(&node, 9_000).unwrap();
        let entry = store.read(&node, 9_500).unwrap().unwrap();
        assert_eq!(
            (entry.document.as_str(), entry.validator.as_deref(), entry.age_ms),
            ("{\"cpu\":{}}", Some("abc"), 500)
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
        store.write(&node, "{\"cpu\":{}}", None, 1_000).unwrap();
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
                .replace("{\"cpu\":{}}", "{\"cpu\":{]]")
                .into_bytes(),
            Vec::new(),
            // An entry without a digest (as tests and older writers make them) is parsed.
            b"{\"format\":\"nodecache-cache/1\",\"node\":\"n1\",\"fetched_at_ms\":1,\"length\":5}\n{]]]}"
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

    #[test]
    fn an_entry_keeps_its_cpu_summary_and_an_ill_formed_one_is_ignored() {
        let (_dir, store, node) = setup();
        let document =
            r#"{"cpu":{"architecture":"x86_64","sockets":[{"cores":[{"flags":["sse2","fpu"]}]}]}}"#;
        let written = store.write(&node, document, None, 1_000).unwrap().unwrap();
        let entry = store.read(&node, 2_000).unwrap().unwrap();
        assert_eq!(entry.summary.as_ref(), Some(&written));
        assert_eq!(written.core_groups[0].flags, "fpu sse2");
        // A header whose summary was edited out of order: the entry is
        // still good, its summary is not used.
        let path = store.path_of(&node);
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("\"fpu sse2\"", "\"sse2 fpu\"");
        fs::write(&path, text).unwrap();
        let entry = store.read(&node, 2_000).unwrap().unwrap();
        assert_eq!((entry.document.as_str(), entry.summary), (document, None));
        // A document that is JSON but no resources document has no summary.
        assert_eq!(store.write(&node, "{\"v\":1}", None, 1).unwrap(), None);
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
        store.write(&node, "{}", None, 10 * FUTURE_TOLERANCE_MS).unwrap();
        assert!(matches!(store.read(&node, 0), Err(CacheFault::Corrupt { .. })));
    }

    #[test]
    fn writes_replace_and_leave_no_temporary_files() {
        let (dir, store, node) = setup();
        store.write(&node, "{\"v\":1}", None, 1).unwrap();
        store.write(&node, "{\"v\":2}", None, 2).unwrap();
        assert_eq!(store.read(&node, 2).unwrap().unwrap().document, "{\"v\":2}");
        let names: Vec<_> = fs::read_dir(dir.path().join("resources"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["n1.json"]);
    }

    #[test]
    fn non_json_documents_are_not_cached() {
        let (_dir, store, node) = setup();
        assert!(store.write(&node, "not json", None, 1).is_err());
        assert_eq!(store.read(&node, 1), Ok(None));
    }

    #[test]
    fn remove_forgets_and_tolerates_absence() {
        let (_dir, store, node) = setup();
        store.write(&node, "{}", None, 1).unwrap();
        store.remove(&node).unwrap();
        store.remove(&node).unwrap();
        assert_eq!(store.read(&node, 1), Ok(None));
    }
}
