//! What the host lends a policy: local probing, remote fetch, the cache,
//! the clock, logging and configuration. Shared by every plugin instance.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::model::{FetchError, LogLevel};
use crate::node_name::NodeName;
use crate::probe;
use crate::remote::RemoteFetcher;
use crate::store::{CacheFault, CacheStore, CachedEntry, now_ms};

pub struct Capabilities {
    pub store: CacheStore,
    /// Policy parameters set by the operator (`--set key=value`, cluster file).
    pub config: BTreeMap<String, String>,
    pub remote: Arc<RemoteFetcher>,
    /// Fetches under way, so concurrent requests for one node share one fetch.
    in_flight: Mutex<HashMap<NodeName, SharedFetch>>,
}

type SharedFetch = Shared<BoxFuture<'static, Result<String, FetchError>>>;

impl Capabilities {
    pub fn new(store: CacheStore, config: BTreeMap<String, String>, remote: RemoteFetcher) -> Capabilities {
        Capabilities {
            store,
            config,
            remote: Arc::new(remote),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    pub async fn probe_local(&self) -> Result<String, FetchError> {
        let probed = tokio::task::spawn_blocking(probe::probe_resources)
            .await
            .map_err(|e| FetchError::ProbeFailed(e.to_string()))?;
        let resources = probed.map_err(|e| FetchError::ProbeFailed(e.to_string()))?;
        serde_json::to_string(&resources).map_err(|e| FetchError::ProbeFailed(e.to_string()))
    }

    /// Fetches a member; a request for a node already being fetched waits for that fetch.
    pub async fn fetch_remote(&self, node: &str) -> Result<String, FetchError> {
        let name = parse_name(node)?;
        let fetch = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            let entry = in_flight.entry(name.clone()).or_insert_with(|| {
                let (remote, name) = (self.remote.clone(), name.clone());
                async move { remote.fetch(&name).await }.boxed().shared()
            });
            entry.clone()
        };
        let result = fetch.clone().await;
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight.get(&name).is_some_and(|current| current.ptr_eq(&fetch)) {
            in_flight.remove(&name);
        }
        result
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Cluster, ClusterMember};
    use crate::membership::Membership;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A loopback server answering `/1.0/resources` after 100 ms, counting connections.
    async fn slow_server(count: Arc<AtomicUsize>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buffer = [0u8; 4096];
                    let _ = stream.read(&mut buffer).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let body = r#"{"cpu":{"architecture":"x86_64","sockets":[],"total":0}}"#;
                    let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn concurrent_fetches_of_one_node_share_one_request() {
        let count = Arc::new(AtomicUsize::new(0));
        let url = slow_server(count.clone()).await;
        let mut membership = Membership::this_machine();
        let name = NodeName::parse("peer").unwrap();
        membership.cluster = Cluster {
            members: vec![ClusterMember {
                name,
                local: false,
                url: Some(url),
            }],
        };
        let dir = tempfile::tempdir().unwrap();
        let capabilities = Capabilities::new(
            CacheStore::new(dir.path()),
            BTreeMap::new(),
            RemoteFetcher::for_membership(&membership).unwrap(),
        );
        let results = futures::future::join_all((0..8).map(|_| capabilities.fetch_remote("peer"))).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // Once it is done, the next request fetches anew.
        capabilities.fetch_remote("peer").await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }
}
