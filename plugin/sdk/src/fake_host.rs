//! An in-memory host for policy unit tests, natively or as wasm32-wasip2
//! under wasmtime: a cache that reads back what was written, a clock the test
//! moves, nodes whose documents the test changes, a seeded generator, and
//! counters of every request the policy made.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::host::Host;
use crate::types::*;

/// Starts at a plausible epoch time, so ages never underflow.
const START_MS: u64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
struct StoredEntry {
    document: String,
    validator: Option<String>,
    written_at_ms: u64,
}

/// What the fake counted, for assertions.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// `probe_local` calls.
    pub probes: u32,
    /// `local_fingerprint` calls.
    pub fingerprints: u32,
    /// `fetch_remote` calls.
    pub fetches: u32,
    /// `fetch_remote_if_changed` calls.
    pub conditional_fetches: u32,
    /// Conditional fetches answered "not modified".
    pub not_modified: u32,
    /// `cache_write` calls that wrote.
    pub writes: u32,
    /// `cache_restamp` calls that restamped.
    pub restamps: u32,
}

/// The host, in memory: build one with the `with_*` methods (entries,
/// the probe, members' answers, settings), run the policy's functions
/// against it, move its clock with [`FakeHost::advance`], and assert on
/// [`FakeHost::counts`], [`FakeHost::written`] and [`FakeHost::logged`].
pub struct FakeHost {
    now_ms: Cell<u64>,
    entries: RefCell<HashMap<String, Result<StoredEntry, CacheFault>>>,
    local: Option<Result<Document, HostError>>,
    remotes: RefCell<HashMap<String, Result<Document, HostError>>>,
    config: HashMap<String, String>,
    failing_writes: bool,
    random_state: Cell<u64>,
    counts: Cell<Counts>,
    written: RefCell<HashMap<String, Document>>,
    logs: RefCell<Vec<String>>,
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost {
            now_ms: Cell::new(START_MS),
            entries: RefCell::default(),
            local: None,
            remotes: RefCell::default(),
            config: HashMap::new(),
            failing_writes: false,
            random_state: Cell::new(0x5eed),
            counts: Cell::default(),
            written: RefCell::default(),
            logs: RefCell::default(),
        }
    }
}

/// The local member `name`.
pub fn local(name: &str) -> Member {
    Member {
        name: name.into(),
        local: true,
    }
}

/// The remote member `name`.
pub fn remote(name: &str) -> Member {
    Member {
        name: name.into(),
        local: false,
    }
}

/// The validator the fake gives a document it was handed without one.
pub fn validator_of(body: &str) -> String {
    format!("v{}-{}", body.len(), body.bytes().map(u64::from).sum::<u64>())
}

fn document(body: &str) -> Document {
    Document {
        body: body.into(),
        validator: validator_of(body),
    }
}

impl FakeHost {
    /// A cache entry `age_ms` old, with the validator of its document.
    pub fn with_entry(self, node: &str, body: &str, age_ms: u64) -> Self {
        self.with_entry_validated(node, body, Some(&validator_of(body)), age_ms)
    }

    /// A cache entry `age_ms` old with this validator (`None`: written
    /// under contract 0.1, which has none).
    pub fn with_entry_validated(self, node: &str, body: &str, validator: Option<&str>, age_ms: u64) -> Self {
        let entry = StoredEntry {
            document: body.into(),
            validator: validator.map(str::to_string),
            written_at_ms: self.now_ms.get() - age_ms,
        };
        self.entries.borrow_mut().insert(node.into(), Ok(entry));
        self
    }

    /// A cache entry that exists but cannot be used.
    pub fn with_fault(self, node: &str, fault: CacheFault) -> Self {
        self.entries.borrow_mut().insert(node.into(), Err(fault));
        self
    }

    /// What probing this machine gives (its fingerprint is the document's validator).
    pub fn with_probe(mut self, outcome: Result<&str, HostError>) -> Self {
        self.local = Some(outcome.map(document));
        self
    }

    /// What fetching `node` gives; a conditional fetch compares validators.
    pub fn with_fetch(self, node: &str, outcome: Result<&str, HostError>) -> Self {
        self.set_fetch(node, outcome);
        self
    }

    /// Changes what `node` answers from now on (its hardware changed, or it died).
    pub fn set_fetch(&self, node: &str, outcome: Result<&str, HostError>) {
        self.remotes
            .borrow_mut()
            .insert(node.into(), outcome.map(document));
    }

    /// An operator setting (`--set key=value`).
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    /// Every cache write fails with `HostError::Storage`.
    pub fn with_failing_writes(mut self) -> Self {
        self.failing_writes = true;
        self
    }

    /// Seeds `random_u64`, so a test of a random policy repeats.
    pub fn with_seed(self, seed: u64) -> Self {
        self.random_state.set(seed);
        self
    }

    /// Moves the clock forward: every entry ages.
    pub fn advance(&self, ms: u64) {
        self.now_ms.set(self.now_ms.get() + ms);
    }

    /// What the policy asked of the host so far.
    pub fn counts(&self) -> Counts {
        self.counts.get()
    }

    /// The document last written for `node`, if any.
    pub fn written(&self, node: &str) -> Option<String> {
        self.written.borrow().get(node).map(|d| d.body.clone())
    }

    /// Whether a line the policy logged contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.borrow().iter().any(|line| line.contains(needle))
    }

    fn count(&self, bump: impl FnOnce(&mut Counts)) {
        let mut counts = self.counts.get();
        bump(&mut counts);
        self.counts.set(counts);
    }

    fn remote_document(&self, node: &Member) -> Result<Document, HostError> {
        self.remotes
            .borrow()
            .get(&node.name)
            .cloned()
            .unwrap_or_else(|| Err(HostError::Unreachable(format!("{} unknown", node.name))))
    }
}

impl Host for FakeHost {
    fn probe_local(&self) -> Result<Document, HostError> {
        self.count(|c| c.probes += 1);
        self.local
            .clone()
            .unwrap_or_else(|| Err(HostError::ProbeFailed("no probe set".into())))
    }

    fn local_fingerprint(&self) -> Result<String, HostError> {
        self.count(|c| c.fingerprints += 1);
        match &self.local {
            Some(Ok(document)) => Ok(document.validator.clone()),
            Some(Err(error)) => Err(error.clone()),
            None => Err(HostError::ProbeFailed("no probe set".into())),
        }
    }

    fn fetch_remote(&self, node: &Member) -> Result<Document, HostError> {
        self.count(|c| c.fetches += 1);
        self.remote_document(node)
    }

    fn fetch_remote_if_changed(&self, node: &Member, validator: &str) -> Result<Fetched, HostError> {
        self.count(|c| c.conditional_fetches += 1);
        let document = self.remote_document(node)?;
        if document.validator == validator {
            self.count(|c| c.not_modified += 1);
            Ok(Fetched::NotModified)
        } else {
            Ok(Fetched::Modified(document))
        }
    }

    fn cache_read(&self, node: &str) -> Result<Option<CacheEntry>, CacheFault> {
        let now = self.now_ms.get();
        let entries = self.entries.borrow();
        let Some(stored) = entries.get(node) else {
            return Ok(None);
        };
        let stored = stored.clone()?;
        Ok(Some(CacheEntry {
            document: stored.document,
            age_ms: now.saturating_sub(stored.written_at_ms),
            validator: stored.validator,
        }))
    }

    fn cache_write(&self, node: &str, document: &Document) -> Result<(), HostError> {
        if self.failing_writes {
            return Err(HostError::Storage("disk full".into()));
        }
        self.count(|c| c.writes += 1);
        let entry = StoredEntry {
            document: document.body.clone(),
            validator: Some(document.validator.clone()).filter(|v| !v.is_empty()),
            written_at_ms: self.now_ms.get(),
        };
        self.entries.borrow_mut().insert(node.into(), Ok(entry));
        self.written.borrow_mut().insert(node.into(), document.clone());
        Ok(())
    }

    fn cache_restamp(&self, node: &str) -> Result<(), HostError> {
        if self.failing_writes {
            return Err(HostError::Storage("disk full".into()));
        }
        let now = self.now_ms.get();
        match self.entries.borrow_mut().get_mut(node) {
            Some(Ok(entry)) => {
                entry.written_at_ms = now;
                self.count(|c| c.restamps += 1);
                Ok(())
            }
            _ => Err(HostError::Storage(format!("{node}: no entry to restamp"))),
        }
    }

    fn cache_remove(&self, node: &str) -> Result<(), HostError> {
        self.entries.borrow_mut().remove(node);
        Ok(())
    }

    fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    /// splitmix64: a fixed sequence per seed.
    fn random_u64(&self) -> u64 {
        let state = self.random_state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.random_state.set(state);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn log(&self, _level: LogLevel, message: &str) {
        self.logs.borrow_mut().push(message.into());
    }

    fn config(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_read_back_and_age_with_the_clock() {
        let host = FakeHost::default();
        host.cache_write("n1", &document("{}")).unwrap();
        host.advance(5_000);
        let entry = host.cache_read("n1").unwrap().unwrap();
        assert_eq!(entry.age_ms, 5_000);
        assert_eq!(entry.validator.as_deref(), Some(validator_of("{}").as_str()));
        host.cache_restamp("n1").unwrap();
        assert_eq!(host.cache_read("n1").unwrap().unwrap().age_ms, 0);
    }

    #[test]
    fn a_conditional_fetch_answers_not_modified_while_the_document_is_unchanged() {
        let host = FakeHost::default().with_fetch("n2", Ok("{\"a\":1}"));
        let validator = validator_of("{\"a\":1}");
        assert_eq!(
            host.fetch_remote_if_changed(&remote("n2"), &validator),
            Ok(Fetched::NotModified)
        );
        host.set_fetch("n2", Ok("{\"a\":2}"));
        assert!(matches!(
            host.fetch_remote_if_changed(&remote("n2"), &validator),
            Ok(Fetched::Modified(_))
        ));
        assert_eq!(host.counts().conditional_fetches, 2);
        assert_eq!(host.counts().not_modified, 1);
    }

    #[test]
    fn the_generator_repeats_per_seed() {
        let a: Vec<u64> = (0..4)
            .map(|_| FakeHost::default().with_seed(7).random_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let host = FakeHost::default().with_seed(7);
        assert_ne!(host.random_u64(), host.random_u64());
    }
}
