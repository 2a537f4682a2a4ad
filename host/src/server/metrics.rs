//! `serve`'s `GET /metrics`, in the Prometheus text format (0.0.4), written
//! by `prometheus-client`. Two kinds of metric:
//!
//! - what `serve` counts as it runs: requests by endpoint and status with a
//!   latency histogram, open connections, connections refused by the
//!   per-client cap (kept in [`Metrics`], updated by the listener and the
//!   access log);
//! - what is true at the scrape: each node's entry age, source, failure and
//!   last hardware change; each scope's (the cluster, each group of the
//!   cluster file) common flag count, x86-64 level and last baseline change;
//!   the policy's name and version, calls, failures and reloads. These are
//!   read when scraped (the cluster answer through the same shared
//!   computation `cpu-flags` requests use), so a scrape never shows a value
//!   older than the policy allows.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::baselines::{Baselines, Scope};
use crate::cluster::report::{CpuFlagsReport, NodeSource};
use crate::cluster::service::ClusterApi;
use crate::node_name::NodeName;
use crate::runtime::slot::PolicySlot;

pub use prometheus_text::CONTENT_TYPE;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    node: String,
    source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    scope: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    name: String,
    version: String,
    contract: String,
}

type Seconds = Gauge<f64, AtomicU64>;

/// What `serve` counts while it runs.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    open: Gauge,
    refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// One open connection; dropping it closes it in the gauge.
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "nodecache_http_requests",
            "Requests answered, by endpoint and HTTP status",
            requests.clone(),
        );
        // 1 ms to about 33 s: a warm answer to a cluster answer at its deadline.
        let latency = Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "nodecache_http_request_duration_seconds",
            "How long requests took to answer, by endpoint",
            latency.clone(),
        );
        let open = Gauge::default();
        registry.register("nodecache_connections_open", "Connections open now", open.clone());
        let refused = Counter::default();
        registry.register(
            "nodecache_connections_refused",
            "Connections closed unserved: the client already held its cap (--max-connections-per-client)",
            refused.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            open,
            refused,
        }
    }

    /// A request to `path` answered with `status` after `seconds`.
    pub fn observe(&self, path: &str, status: u16, seconds: f64) {
        let endpoint = endpoint_of(path);
        self.requests
            .get_or_create(&RequestLabels { endpoint, status })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(seconds);
    }

    pub fn opened(&self) -> OpenConnection {
        self.open.inc();
        OpenConnection(self.open.clone())
    }

    pub fn refused(&self) {
        self.refused.inc();
    }

    /// The whole exposition: the counts kept here, then what holds now.
    pub async fn render(&self, policy: &PolicySlot, cluster: Option<&Arc<ClusterApi>>) -> String {
        let mut now = Registry::default();
        register_policy(&mut now, policy);
        if let Some(cluster) = cluster {
            register_cluster(&mut now, cluster).await;
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        let _ = prometheus_text::encode(&mut text, &now);
        text
    }
}

/// The route a path takes, so a label never carries what a client typed.
fn endpoint_of(path: &str) -> &'static str {
    match path {
        "/1.0" => "/1.0",
        "/1.0/resources" => "/1.0/resources",
        "/1.0/cluster/cpu-flags" => "/1.0/cluster/cpu-flags",
        "/metrics" => "/metrics",
        _ if path.starts_with("/1.0/cluster/resources/") => "/1.0/cluster/resources/{node}",
        _ => "other",
    }
}

fn counter(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

fn register_policy(registry: &mut Registry, slot: &PolicySlot) {
    let active = slot.current();
    let info = Family::<PolicyLabels, Gauge>::default();
    info.get_or_create(&PolicyLabels {
        name: active.info.name.clone(),
        version: active.info.version.clone(),
        contract: active.runtime.contract().to_string(),
    })
    .set(1);
    registry.register("nodecache_policy_info", "The active policy (value 1)", info);
    let counts = slot.counts();
    for (name, help, value) in [
        ("nodecache_policy_calls", "Policy calls started", counts.calls),
        (
            "nodecache_policy_call_failures",
            "Requests the policy failed (trap, budget, deadline, bad answer)",
            counts.call_failures,
        ),
        (
            "nodecache_policy_reloads",
            "Policies swapped in while serving",
            counts.reloads,
        ),
        (
            "nodecache_policy_reloads_refused",
            "Reloads refused (the new policy did not load or check); the active one kept serving",
            counts.reload_failures,
        ),
    ] {
        registry.register(name, help, counter(value));
    }
}

/// Each node and each scope, from the cluster's answer for this machine's
/// architecture; `nodecache_cluster_answer` is 0 when there is none.
async fn register_cluster(registry: &mut Registry, cluster: &Arc<ClusterApi>) {
    let answered: Gauge = Gauge::default();
    registry.register(
        "nodecache_cluster_answer",
        "1 when the cluster's answer could be computed at this scrape, else 0",
        answered.clone(),
    );
    let Ok(report) = cluster.cpu_flags(&crate::query::default_arch(), None).await else {
        return;
    };
    answered.set(1);
    let store = cluster.store();
    let (age, source, failing, changed) = (
        Family::<NodeLabels, Seconds>::default(),
        Family::<SourceLabels, Gauge>::default(),
        Family::<NodeLabels, Gauge>::default(),
        Family::<NodeLabels, Seconds>::default(),
    );
    for node in &report.nodes {
        let labels = NodeLabels {
            node: node.name.clone(),
        };
        if let Some(seconds) = node.age_seconds {
            age.get_or_create(&labels).set(seconds as f64);
        }
        source
            .get_or_create(&SourceLabels {
                node: node.name.clone(),
                source: node.source.to_string(),
            })
            .set(1);
        let fails = node.source == NodeSource::Error || node.error.is_some();
        failing.get_or_create(&labels).set(i64::from(fails));
        let since = NodeName::parse(&node.name)
            .ok()
            .and_then(|name| store.hardware_since_ms(&name));
        if let Some(ms) = since {
            changed.get_or_create(&labels).set(ms as f64 / 1000.0);
        }
    }
    registry.register("nodecache_node_entry_age_seconds", "Age of the node's data", age);
    registry.register(
        "nodecache_node_source",
        "Where the node's data came from (value 1): cache, revalidated, local, remote, stale, error",
        source,
    );
    registry.register(
        "nodecache_node_failing",
        "1 when the node has no data or its refresh failed, else 0",
        failing,
    );
    registry.register(
        "nodecache_node_hardware_changed_timestamp_seconds",
        "When the cache first saw the node's current hardware (Unix time)",
        changed,
    );
    register_scopes(registry, cluster, &report, store.root());
}

/// The cluster's and each group's common set: size, level, last change.
fn register_scopes(
    registry: &mut Registry,
    cluster: &ClusterApi,
    report: &CpuFlagsReport,
    cache_root: &std::path::Path,
) {
    let (flags, level, changed) = (
        Family::<ScopeLabels, Gauge>::default(),
        Family::<ScopeLabels, Gauge>::default(),
        Family::<ScopeLabels, Seconds>::default(),
    );
    let baselines = Baselines::new(cache_root);
    let mut scopes: Vec<(Option<NodeName>, Vec<String>)> = vec![(None, report.flags.clone())];
    for (group, members) in cluster.groups() {
        let sets = report
            .nodes
            .iter()
            .filter(|node| members.iter().any(|member| member.as_str() == node.name))
            .filter_map(|node| node.flags());
        let common = nodecache_policy_sdk::intersect::common_to_all(sets.map(|set| set.into_iter()));
        let common: Vec<String> = common.into_iter().flatten().map(str::to_string).collect();
        scopes.push((Some(group), common));
    }
    for (group, common) in scopes {
        let scope = Scope {
            group,
            arch: report.arch.clone(),
        };
        let labels = ScopeLabels { scope: scope.label() };
        flags.get_or_create(&labels).set(common.len() as i64);
        let number = crate::machine::level::level(|flag| common.iter().any(|f| f == flag))
            .and_then(|name| name.strip_prefix("x86-64-v"))
            .and_then(|digit| digit.parse::<i64>().ok())
            .unwrap_or(0);
        level.get_or_create(&labels).set(number);
        if let Some(kept) = baselines.read(&scope) {
            changed
                .get_or_create(&labels)
                .set(kept.changed_at_ms as f64 / 1000.0);
        }
    }
    registry.register(
        "nodecache_baseline_flags",
        "Flags every core of every node of the scope shares",
        flags,
    );
    registry.register(
        "nodecache_baseline_x86_64_level",
        "The x86-64 psABI level of the scope's common set (0: none, or not x86)",
        level,
    );
    registry.register(
        "nodecache_baseline_changed_timestamp_seconds",
        "When the scope's common set was first computed as it is now (Unix time)",
        changed,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_names_the_route_never_what_the_client_typed() {
        assert_eq!(
            endpoint_of("/1.0/cluster/resources/n1"),
            "/1.0/cluster/resources/{node}"
        );
        assert_eq!(endpoint_of("/1.0/../../etc/passwd"), "other");
        assert_eq!(endpoint_of("/metrics"), "/metrics");
    }
}
