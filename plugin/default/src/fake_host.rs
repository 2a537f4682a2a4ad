//! An in-memory host for the policy's unit tests (native or under wasmtime).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::bindings::{CacheEntry, CacheFault, HostError, LogLevel, Member};
use crate::host::Host;

#[derive(Default)]
pub struct FakeHost {
    entries: HashMap<String, Result<CacheEntry, CacheFault>>,
    probe: Option<Result<String, HostError>>,
    fetches: HashMap<String, Result<String, HostError>>,
    config: HashMap<String, String>,
    failing_writes: bool,
    probe_count: Cell<u32>,
    writes: RefCell<HashMap<String, String>>,
    logs: RefCell<Vec<String>>,
}

pub fn local(name: &str) -> Member {
    Member {
        name: name.into(),
        local: true,
    }
}

pub fn remote(name: &str) -> Member {
    Member {
        name: name.into(),
        local: false,
    }
}

impl FakeHost {
    pub fn with_entry(mut self, node: &str, document: &str, age_ms: u64) -> Self {
        let entry = CacheEntry {
            document: document.into(),
            age_ms,
        };
        self.entries.insert(node.into(), Ok(entry));
        self
    }

    pub fn with_fault(mut self, node: &str, fault: CacheFault) -> Self {
        self.entries.insert(node.into(), Err(fault));
        self
    }

    pub fn with_probe(mut self, outcome: Result<&str, HostError>) -> Self {
        self.probe = Some(outcome.map(str::to_string));
        self
    }

    pub fn with_fetch(mut self, node: &str, outcome: Result<&str, HostError>) -> Self {
        self.fetches.insert(node.into(), outcome.map(str::to_string));
        self
    }

    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    pub fn with_failing_writes(mut self) -> Self {
        self.failing_writes = true;
        self
    }

    pub fn probes(&self) -> u32 {
        self.probe_count.get()
    }

    pub fn written(&self, node: &str) -> Option<String> {
        self.writes.borrow().get(node).cloned()
    }

    pub fn logged(&self, needle: &str) -> bool {
        self.logs.borrow().iter().any(|line| line.contains(needle))
    }
}

impl Host for FakeHost {
    fn probe_local(&self) -> Result<String, HostError> {
        self.probe_count.set(self.probe_count.get() + 1);
        self.probe
            .clone()
            .unwrap_or_else(|| Err(HostError::ProbeFailed("no probe set".into())))
    }

    fn fetch_remote(&self, node: &Member) -> Result<String, HostError> {
        self.fetches
            .get(&node.name)
            .cloned()
            .unwrap_or_else(|| Err(HostError::Unreachable(format!("{} unknown", node.name))))
    }

    fn cache_read(&self, node: &str) -> Result<Option<CacheEntry>, CacheFault> {
        self.entries.get(node).cloned().transpose()
    }

    fn cache_write(&self, node: &str, document: &str) -> Result<(), HostError> {
        if self.failing_writes {
            return Err(HostError::Storage("disk full".into()));
        }
        self.writes.borrow_mut().insert(node.into(), document.into());
        Ok(())
    }

    fn log(&self, _level: LogLevel, message: &str) {
        self.logs.borrow_mut().push(message.into());
    }

    fn config(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }
}
