//! What the host lends a policy: local probing, remote fetch, the cache,
//! the clock, randomness, logging and configuration. Shared by every plugin
//! instance; each call is lent them through a [`Grant`] for one node.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::cpu_summary::CpuSummary;
use crate::history::Seen;
use crate::machine::fingerprint;
use crate::machine::probe;
use crate::model::{Document, Fetched, HostError, LogLevel, Member};
use crate::net::remote::RemoteFetcher;
use crate::node_name::NodeName;
use crate::store::{CacheFault, CacheStore, CachedEntry};
use crate::util::clock::now_ms;
use crate::util::singleflight::{SingleFlight, boxed};

/// What one plugin call may touch, decided when the call starts, as Zed's
/// capability granter does: during `get-node-resources(node)` that node's
/// cache entry, and probing (if it is this machine) or fetching (if it is
/// remote); during `cluster-cpu-flags` and `describe` none of it. A swapped-in
/// policy so cannot read, write or fetch other names.
#[derive(Debug, Clone)]
pub struct Grant {
    node: Option<Member>,
}

impl Grant {
    pub fn for_node(member: &Member) -> Grant {
        Grant {
            node: Some(member.clone()),
        }
    }

    /// Nothing but the clock, randomness, logging and configuration.
    pub fn none() -> Grant {
        Grant { node: None }
    }

    /// The granted node, if `node` is it.
    fn node(&self, capability: &str, node: &str) -> Result<NodeName, HostError> {
        let name = NodeName::parse(node).map_err(|e| HostError::InvalidNode(e.to_string()))?;
        match &self.node {
            Some(member) if member.name == name => Ok(name),
            Some(member) => Err(HostError::NotGranted(format!(
                "{capability} for node \"{name}\": this call is lent node \"{}\" only",
                member.name
            ))),
            None => Err(HostError::NotGranted(format!(
                "{capability} for node \"{name}\": this call is lent no node"
            ))),
        }
    }

    fn local(&self, capability: &str) -> Result<(), HostError> {
        match &self.node {
            Some(member) if member.local => Ok(()),
            Some(member) => Err(HostError::NotGranted(format!(
                "{capability}: this call is about node \"{}\", which is not this machine",
                member.name
            ))),
            None => Err(HostError::NotGranted(format!(
                "{capability}: this call is lent no node"
            ))),
        }
    }

    fn remote(&self, capability: &str, node: &str) -> Result<NodeName, HostError> {
        let name = self.node(capability, node)?;
        match &self.node {
            Some(member) if member.local => Err(HostError::NotGranted(format!(
                "{capability} for node \"{name}\": it is this machine, probed, never fetched"
            ))),
            _ => Ok(name),
        }
    }
}

pub struct Capabilities {
    pub store: CacheStore,
    /// Policy parameters set by the operator (`--set key=value`, cluster file).
    pub config: BTreeMap<String, String>,
    pub remote: Arc<RemoteFetcher>,
    /// Seeds every call's generator from this and the node's name, so a run repeats.
    pub random_seed: Option<u64>,
    /// `--refresh`: cache reads find nothing, so every policy asks its node.
    refresh: bool,
    /// Fetches under way, so concurrent requests for one node share one fetch.
    in_flight: SingleFlight<(NodeName, Option<String>), Result<Fetched, HostError>>,
}

impl Capabilities {
    pub fn new(store: CacheStore, config: BTreeMap<String, String>, remote: RemoteFetcher) -> Capabilities {
        Capabilities {
            store,
            config,
            remote: Arc::new(remote),
            random_seed: None,
            refresh: false,
            in_flight: SingleFlight::default(),
        }
    }

    pub fn with_random_seed(mut self, seed: Option<u64>) -> Capabilities {
        self.random_seed = seed;
        self
    }

    /// Every cache read finds nothing (`--refresh`): whatever its rules,
    /// a policy then asks its node, and writes what it gets.
    pub fn with_refresh(mut self, refresh: bool) -> Capabilities {
        self.refresh = refresh;
        self
    }

    /// The seed of one call's generator: fixed per node when the operator
    /// seeded the host, fresh entropy otherwise.
    pub fn seed_for(&self, grant: &Grant) -> u64 {
        match self.random_seed {
            Some(seed) => {
                let name = grant.node.as_ref().map(|m| m.name.as_str()).unwrap_or("");
                let digest = ring::digest::digest(&ring::digest::SHA256, format!("{seed}/{name}").as_bytes());
                u64::from_le_bytes(
                    digest.as_ref()[..8]
                        .try_into()
                        .expect("a SHA-256 digest has 8 bytes"),
                )
            }
            None => rand::random(),
        }
    }

    pub async fn probe_local(&self, grant: &Grant) -> Result<Document, HostError> {
        grant.local("probe-local")?;
        let probed = tokio::task::spawn_blocking(|| {
            let validator = fingerprint::local().map_err(|e| e.to_string())?;
            let resources = probe::probe_resources().map_err(|e| e.to_string())?;
            Ok::<_, String>((resources, validator))
        })
        .await
        .map_err(|e| HostError::ProbeFailed(e.to_string()))?;
        let (resources, validator) = probed.map_err(HostError::ProbeFailed)?;
        let body = serde_json::to_string(&resources).map_err(|e| HostError::ProbeFailed(e.to_string()))?;
        Ok(Document {
            body,
            validator,
            summary: None,
        })
    }

    pub async fn local_fingerprint(&self, grant: &Grant) -> Result<String, HostError> {
        grant.local("local-fingerprint")?;
        tokio::task::spawn_blocking(fingerprint::local)
            .await
            .map_err(|e| HostError::ProbeFailed(e.to_string()))?
            .map_err(|e| HostError::ProbeFailed(format!("fingerprint: {e}")))
    }

    pub async fn fetch_remote(&self, grant: &Grant, node: &str) -> Result<Document, HostError> {
        let name = grant.remote("fetch-remote", node)?;
        match self.shared_fetch(name.clone(), None).await? {
            Fetched::Modified(document) => Ok(document),
            Fetched::NotModified => Err(HostError::BadResponse(format!("{name}: not modified, unasked"))),
        }
    }

    pub async fn fetch_remote_if_changed(
        &self,
        grant: &Grant,
        node: &str,
        validator: &str,
    ) -> Result<Fetched, HostError> {
        let name = grant.remote("fetch-remote-if-changed", node)?;
        self.shared_fetch(name, Some(validator.to_string())).await
    }

    /// Fetches a member; a request identical to one under way waits for that one.
    async fn shared_fetch(&self, name: NodeName, validator: Option<String>) -> Result<Fetched, HostError> {
        let remote = self.remote.clone();
        let key = (name.clone(), validator.clone());
        self.in_flight
            .run(key, || {
                boxed(async move { remote.fetch_if_changed(&name, validator.as_deref()).await })
            })
            .await
    }

    pub fn cache_read(&self, grant: &Grant, node: &str) -> Result<Option<CachedEntry>, CacheFault> {
        let name = grant
            .node("cache-read", node)
            .map_err(|e| CacheFault::Unreadable {
                path: node.to_string(),
                problem: e.to_string(),
            })?;
        if self.refresh {
            return Ok(None);
        }
        self.store.read(&name, now_ms())
    }

    pub fn cache_write(
        &self,
        grant: &Grant,
        node: &str,
        document: &str,
        validator: Option<&str>,
        known: Option<CpuSummary>,
    ) -> Result<CpuSummary, HostError> {
        let name = grant.node("cache-write", node)?;
        // A call lent this machine probes it; any other fetches its node.
        let seen = match &grant.node {
            Some(member) if member.local => Seen::Probe,
            _ => Seen::Fetch,
        };
        self.store
            .write(&name, document, validator, now_ms(), known, seen)
            .map_err(|e| HostError::Storage(format!("{e:#}")))
    }

    pub fn cache_restamp(&self, grant: &Grant, node: &str) -> Result<(), HostError> {
        let name = grant.node("cache-restamp", node)?;
        self.store
            .restamp(&name, now_ms())
            .map_err(|e| HostError::Storage(format!("{e:#}")))
    }

    pub fn cache_remove(&self, grant: &Grant, node: &str) -> Result<(), HostError> {
        let name = grant.node("cache-remove", node)?;
        self.store
            .remove(&name)
            .map_err(|e| HostError::Storage(format!("{e:#}")))
    }

    pub fn config(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }

    pub fn log(&self, level: LogLevel, message: &str) {
        let message = crate::format::for_terminal(message, 2000);
        match level {
            LogLevel::Trace => tracing::trace!(target: "policy", "{message}"),
            LogLevel::Debug => tracing::debug!(target: "policy", "{message}"),
            LogLevel::Info => tracing::info!(target: "policy", "{message}"),
            LogLevel::Warn => tracing::warn!(target: "policy", "{message}"),
            LogLevel::Error => tracing::error!(target: "policy", "{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_file::ClusterFile;
    use crate::cluster_file::{Cluster, ClusterMember};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn member(name: &str, local: bool) -> Member {
        Member {
            name: NodeName::parse(name).unwrap(),
            local,
            offline: None,
        }
    }

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
        let mut membership = ClusterFile::this_machine();
        let name = NodeName::parse("peer").unwrap();
        membership.cluster = Cluster {
            members: vec![ClusterMember {
                name,
                local: false,
                url: Some(url),
                groups: Vec::new(),
                offline: None,
            }],
        };
        let dir = tempfile::tempdir().unwrap();
        let capabilities = Capabilities::new(
            CacheStore::new(dir.path()),
            BTreeMap::new(),
            RemoteFetcher::for_membership(&membership).unwrap(),
        );
        let grant = Grant::for_node(&member("peer", false));
        let results =
            futures::future::join_all((0..8).map(|_| capabilities.fetch_remote(&grant, "peer"))).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // Once it is done, the next request fetches anew.
        capabilities.fetch_remote(&grant, "peer").await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_call_is_lent_its_own_node_only_and_refusals_name_capability_and_node() {
        let dir = tempfile::tempdir().unwrap();
        let capabilities = Capabilities::new(
            CacheStore::new(dir.path()),
            BTreeMap::new(),
            RemoteFetcher::default(),
        );
        let n1 = Grant::for_node(&member("n1", false));
        let document = r#"{"cpu":{"architecture":"x86_64"}}"#;
        capabilities.cache_write(&n1, "n1", document, None, None).unwrap();
        let refused = capabilities
            .cache_write(&n1, "other", "{}", None, None)
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "not granted: cache-write for node \"other\": this call is lent node \"n1\" only"
        );
        assert!(capabilities.cache_remove(&n1, "other").is_err());
        assert!(matches!(
            capabilities.cache_read(&n1, "other"),
            Err(CacheFault::Unreadable { .. })
        ));
        assert!(
            matches!(capabilities.probe_local(&n1).await, Err(HostError::NotGranted(m)) if m.contains("probe-local"))
        );
        let none = Grant::none();
        assert!(
            matches!(capabilities.cache_write(&none, "n1", "{}", None, None), Err(HostError::NotGranted(m)) if m.contains("lent no node"))
        );
        let me = Grant::for_node(&member("me", true));
        assert!(
            matches!(capabilities.fetch_remote(&me, "me").await, Err(HostError::NotGranted(m)) if m.contains("never fetched"))
        );
        assert!(!dir.path().join("resources/other.json").exists());
    }

    #[test]
    fn a_seeded_host_gives_each_node_its_own_repeatable_seed() {
        let dir = tempfile::tempdir().unwrap();
        let seeded = Capabilities::new(
            CacheStore::new(dir.path()),
            BTreeMap::new(),
            RemoteFetcher::default(),
        )
        .with_random_seed(Some(7));
        let (a, b) = (
            Grant::for_node(&member("a", false)),
            Grant::for_node(&member("b", false)),
        );
        // The oracle is coreutils, not this code: the first 8 bytes of
        // `printf '7/a' | sha256sum` (681ebd31f1942012…), read little-endian.
        assert_eq!(seeded.seed_for(&a), 0x1220_94f1_31bd_1e68);
        assert_eq!(
            seeded.seed_for(&b),
            0xa4b3_0ae8_8b7e_1038,
            "printf '7/b' | sha256sum"
        );
        // Another host with the same seed (another run) draws the same.
        let again = Capabilities::new(
            CacheStore::new(dir.path()),
            BTreeMap::new(),
            RemoteFetcher::default(),
        )
        .with_random_seed(Some(7));
        assert_eq!(again.seed_for(&a), seeded.seed_for(&a));
    }
}
