//! What the host lends a policy: local probing, remote fetch, the cache,
//! the clock, logging and configuration. Shared by every plugin instance.

use std::collections::BTreeMap;

use crate::model::{FetchError, LogLevel};
use crate::node_name::NodeName;
use crate::probe;
use crate::remote::RemoteFetcher;
use crate::store::{CacheFault, CacheStore, CachedEntry, now_ms};

pub struct Capabilities {
    pub store: CacheStore,
    /// Policy parameters set by the operator (`--set key=value`, cluster file).
    pub config: BTreeMap<String, String>,
    pub remote: RemoteFetcher,
}

impl Capabilities {
    pub async fn probe_local(&self) -> Result<String, FetchError> {
        let probed = tokio::task::spawn_blocking(probe::probe_resources)
            .await
            .map_err(|e| FetchError::ProbeFailed(e.to_string()))?;
        let resources = probed.map_err(|e| FetchError::ProbeFailed(e.to_string()))?;
        serde_json::to_string(&resources).map_err(|e| FetchError::ProbeFailed(e.to_string()))
    }

    pub async fn fetch_remote(&self, node: &str) -> Result<String, FetchError> {
        let name = parse_name(node)?;
        self.remote.fetch(&name).await
    }

    pub fn cache_read(&self, node: &str) -> Result<Option<CachedEntry>, CacheFault> {
        let name = NodeName::parse(node).map_err(|e| CacheFault::Unreadable {
            path: node.to_string(),
            problem: e.to_string(),
        })?;
        self.store.read(&name, now_ms())
    }

    pub fn cache_write(&self, node: &str, document: &str) -> Result<(), FetchError> {
        let name = parse_name(node)?;
        self.store
            .write(&name, document, now_ms())
            .map_err(|e| FetchError::Storage(format!("{e:#}")))
    }

    pub fn cache_remove(&self, node: &str) -> Result<(), FetchError> {
        let name = parse_name(node)?;
        self.store
            .remove(&name)
            .map_err(|e| FetchError::Storage(format!("{e:#}")))
    }

    pub fn config(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }

    pub fn log(&self, level: LogLevel, message: &str) {
        match level {
            LogLevel::Trace => tracing::trace!(target: "policy", "{message}"),
            LogLevel::Debug => tracing::debug!(target: "policy", "{message}"),
            LogLevel::Info => tracing::info!(target: "policy", "{message}"),
            LogLevel::Warn => tracing::warn!(target: "policy", "{message}"),
            LogLevel::Error => tracing::error!(target: "policy", "{message}"),
        }
    }
}

fn parse_name(node: &str) -> Result<NodeName, FetchError> {
    NodeName::parse(node).map_err(|e| FetchError::InvalidNode(e.to_string()))
}
