//! The host capabilities the policy uses, as a trait so tests can supply a fake.

use crate::bindings::{CacheEntry, CacheFault, HostError, LogLevel, Member};

/// What the policy may ask of the host. Mirrors the WIT `host` interface.
pub trait Host {
    fn probe_local(&self) -> Result<String, HostError>;
    fn fetch_remote(&self, node: &Member) -> Result<String, HostError>;
    fn cache_read(&self, node: &str) -> Result<Option<CacheEntry>, CacheFault>;
    fn cache_write(&self, node: &str, document: &str) -> Result<(), HostError>;
    fn log(&self, level: LogLevel, message: &str);
    fn config(&self, key: &str) -> Option<String>;
}

/// The real host, reached through the component's imports.
///
/// Only usable inside the component: a native build aborts when an import is called.
pub struct ImportedHost;

impl Host for ImportedHost {
    fn probe_local(&self) -> Result<String, HostError> {
        crate::bindings::nodecache::policy::host::probe_local()
    }

    fn fetch_remote(&self, node: &Member) -> Result<String, HostError> {
        crate::bindings::nodecache::policy::host::fetch_remote(node)
    }

    fn cache_read(&self, node: &str) -> Result<Option<CacheEntry>, CacheFault> {
        crate::bindings::nodecache::policy::host::cache_read(node)
    }

    fn cache_write(&self, node: &str, document: &str) -> Result<(), HostError> {
        crate::bindings::nodecache::policy::host::cache_write(node, document)
    }

    fn log(&self, level: LogLevel, message: &str) {
        crate::bindings::nodecache::policy::host::log(level, message)
    }

    fn config(&self, key: &str) -> Option<String> {
        crate::bindings::nodecache::policy::host::config(key)
    }
}

/// One line naming the kind of failure and its detail, for logs and verdicts.
pub fn describe_error(error: &HostError) -> String {
    match error {
        HostError::InvalidNode(m) => format!("invalid node: {m}"),
        HostError::ProbeFailed(m) => format!("probe failed: {m}"),
        HostError::Unreachable(m) => format!("unreachable: {m}"),
        HostError::TimedOut(m) => format!("timed out: {m}"),
        HostError::RemoteError(m) => format!("remote error: {m}"),
        HostError::BadResponse(m) => format!("bad response: {m}"),
        HostError::Storage(m) => format!("storage: {m}"),
    }
}
