//! Contract `nodecache:policy@0.1.x`: generated bindings, the host imports,
//! and conversions between the bindings and the host's own model.

//!
//! 0.1 predates validators: documents it writes carry none, and a refusal
//! of a capability reaches it as `invalid-node` ("not granted: ...").

use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use super::sandbox::PluginState;
use super::v0_2::{self as latest, wit as newer};
use crate::api::cpu_summary::CpuSummary;
use crate::format::from_policy;
use crate::model;

wasmtime::component::bindgen!({
    path: "../wit/v0.1.0",
    world: "policy-plugin",
    imports: { default: async },
    exports: { default: async },
});

use self::nodecache::policy::types as wit;

/// The minor versions this module runs (any patch level).
pub const MINOR: (u64, u64) = (0, 1);

/// A 0.1 component, compiled and pre-instantiated.
pub struct Pre(PolicyPluginPre<PluginState>);

impl Pre {
    pub fn new(linker: &mut Linker<PluginState>, component: &Component) -> anyhow::Result<Pre> {
        PolicyPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)?;
        Ok(Pre(PolicyPluginPre::new(linker.instantiate_pre(component)?)?))
    }

    pub async fn get_node_resources(
        &self,
        store: &mut Store<PluginState>,
        member: &model::Member,
    ) -> wasmtime::Result<Result<model::NodeResources, model::PolicyError>> {
        let plugin = self.0.instantiate_async(&mut *store).await?;
        let node = wit::Member {
            name: member.name.to_string(),
            local: member.local,
        };
        let result = plugin
            .nodecache_policy_policy()
            .call_get_node_resources(store, &node)
            .await?;
        Ok(result.map(node_resources_from_wit).map_err(policy_error_from_wit))
    }

    pub async fn cluster_cpu_flags(
        &self,
        store: &mut Store<PluginState>,
        reports: &[model::NodeReport],
        architecture: &str,
    ) -> wasmtime::Result<model::ClusterFlags> {
        let plugin = self.0.instantiate_async(&mut *store).await?;
        let reports: Vec<_> = reports.iter().map(report_to_wit).collect();
        let flags = plugin
            .nodecache_policy_policy()
            .call_cluster_cpu_flags(store, &reports, architecture)
            .await?;
        Ok(cluster_flags_from_wit(flags))
    }

    pub async fn describe(&self, store: &mut Store<PluginState>) -> wasmtime::Result<model::PolicyInfo> {
        let plugin = self.0.instantiate_async(&mut *store).await?;
        let info = plugin.nodecache_policy_policy().call_describe(store).await?;
        Ok(policy_info_from_wit(info))
    }
}

impl wit::Host for PluginState {}

/// Every 0.1 import is 0.2's, through conversions: one implementation of
/// what a policy is lent, as Zed's older extension versions delegate to
/// the latest.
impl self::nodecache::policy::host::Host for PluginState {
    async fn probe_local(&mut self) -> Result<String, wit::HostError> {
        let document = latest::Host::probe_local(self).await;
        document.map(|document| document.body).map_err(error_from_latest)
    }

    async fn fetch_remote(&mut self, node: wit::Member) -> Result<String, wit::HostError> {
        let node = newer::Member {
            name: node.name,
            local: node.local,
        };
        let document = latest::Host::fetch_remote(self, node).await;
        document.map(|document| document.body).map_err(error_from_latest)
    }

    async fn cache_read(&mut self, node: String) -> Result<Option<wit::CacheEntry>, wit::CacheFault> {
        match latest::Host::cache_read(self, node).await {
            Ok(entry) => Ok(entry.map(|entry| wit::CacheEntry {
                document: entry.document,
                age_ms: entry.age_ms,
            })),
            Err(newer::CacheFault::Corrupt(why)) => Err(wit::CacheFault::Corrupt(why)),
            Err(newer::CacheFault::Unreadable(why)) => Err(wit::CacheFault::Unreadable(why)),
        }
    }

    /// 0.1 predates validators: the entry is written without one.
    async fn cache_write(&mut self, node: String, document: String) -> Result<(), wit::HostError> {
        self.write_entry(&node, &document, None)
            .map_err(fetch_error_to_wit)
    }

    async fn cache_remove(&mut self, node: String) -> Result<(), wit::HostError> {
        latest::Host::cache_remove(self, node)
            .await
            .map_err(error_from_latest)
    }

    async fn now_ms(&mut self) -> u64 {
        latest::Host::now_ms(self).await
    }

    async fn log(&mut self, level: wit::LogLevel, message: String) {
        let level = match level {
            wit::LogLevel::Trace => newer::LogLevel::Trace,
            wit::LogLevel::Debug => newer::LogLevel::Debug,
            wit::LogLevel::Info => newer::LogLevel::Info,
            wit::LogLevel::Warn => newer::LogLevel::Warn,
            wit::LogLevel::Error => newer::LogLevel::Error,
        };
        latest::Host::log(self, level, message).await
    }

    async fn config(&mut self, key: String) -> Option<String> {
        latest::Host::config(self, key).await
    }
}

/// 0.2's error in 0.1's words: 0.1 has no `not-granted`, so a refused
/// capability reaches it as `invalid-node` ("not granted: ...").
fn error_from_latest(error: newer::HostError) -> wit::HostError {
    use newer::HostError as E;
    match error {
        E::InvalidNode(m) => wit::HostError::InvalidNode(m),
        E::NotGranted(m) => wit::HostError::InvalidNode(format!("not granted: {m}")),
        E::ProbeFailed(m) => wit::HostError::ProbeFailed(m),
        E::Unreachable(m) => wit::HostError::Unreachable(m),
        E::TimedOut(m) => wit::HostError::TimedOut(m),
        E::RemoteError(m) => wit::HostError::RemoteError(m),
        E::BadResponse(m) => wit::HostError::BadResponse(m),
        E::Storage(m) => wit::HostError::Storage(m),
    }
}

fn fetch_error_to_wit(error: model::HostError) -> wit::HostError {
    error_from_latest(latest::fetch_error_to_wit(error))
}

fn fetch_error_from_wit(error: wit::HostError) -> model::HostError {
    use newer::HostError as E;
    latest::fetch_error_from_wit(match error {
        wit::HostError::InvalidNode(m) => E::InvalidNode(m),
        wit::HostError::ProbeFailed(m) => E::ProbeFailed(m),
        wit::HostError::Unreachable(m) => E::Unreachable(m),
        wit::HostError::TimedOut(m) => E::TimedOut(m),
        wit::HostError::RemoteError(m) => E::RemoteError(m),
        wit::HostError::BadResponse(m) => E::BadResponse(m),
        wit::HostError::Storage(m) => E::Storage(m),
    })
}

fn source_from_wit(source: wit::Source) -> model::Source {
    match source {
        wit::Source::Cache => model::Source::Cache,
        wit::Source::Local => model::Source::Local,
        wit::Source::Remote => model::Source::Remote,
        wit::Source::Stale => model::Source::Stale,
    }
}

fn source_to_wit(source: model::Source) -> wit::Source {
    match source {
        model::Source::Cache | model::Source::Revalidated => wit::Source::Cache,
        model::Source::Local => wit::Source::Local,
        model::Source::Remote => wit::Source::Remote,
        model::Source::Stale => wit::Source::Stale,
    }
}

fn node_resources_from_wit(resources: wit::NodeResources) -> model::NodeResources {
    model::NodeResources {
        document: resources.document,
        source: source_from_wit(resources.source),
        age_ms: resources.age_ms,
        refresh_error: resources.refresh_error.map(fetch_error_from_wit),
        summary: None,
    }
}

fn policy_error_from_wit(error: wit::PolicyError) -> model::PolicyError {
    match error {
        wit::PolicyError::Unavailable(e) => model::PolicyError::Unavailable(fetch_error_from_wit(e)),
        wit::PolicyError::BadConfig(m) => model::PolicyError::BadConfig(from_policy(m)),
    }
}

fn summary_to_wit(summary: &CpuSummary) -> wit::CpuSummary {
    wit::CpuSummary {
        architecture: summary.architecture.clone(),
        core_groups: summary
            .core_groups
            .iter()
            .map(|g| wit::CoreGroup {
                cores: g.cores,
                flags: g.flags().map(str::to_string).collect(),
            })
            .collect(),
    }
}

fn report_to_wit(report: &model::NodeReport) -> wit::NodeReport {
    wit::NodeReport {
        name: report.name.clone(),
        outcome: match &report.outcome {
            Ok(node) => Ok(wit::ResolvedNode {
                source: source_to_wit(node.source),
                age_ms: node.age_ms,
                refresh_error: node.refresh_error.clone().map(fetch_error_to_wit),
                cpu: summary_to_wit(&node.cpu),
            }),
            Err(error) => Err(fetch_error_to_wit(error.clone())),
        },
    }
}

fn cluster_flags_from_wit(flags: wit::ClusterFlags) -> model::ClusterFlags {
    model::ClusterFlags {
        architecture: flags.architecture,
        flags: flags.flags,
        nodes: flags
            .nodes
            .into_iter()
            .map(|node| {
                let verdict = match node.verdict {
                    wit::NodeVerdict::Included => model::NodeVerdict::Included,
                    wit::NodeVerdict::ExcludedArch(arch) => {
                        model::NodeVerdict::ExcludedArch(from_policy(arch))
                    }
                    wit::NodeVerdict::NoData(why) => model::NodeVerdict::NoData(from_policy(why)),
                };
                model::NodeOutcome {
                    name: node.name,
                    verdict,
                }
            })
            .collect(),
    }
}

fn policy_info_from_wit(info: wit::PolicyInfo) -> model::PolicyInfo {
    model::PolicyInfo {
        name: from_policy(info.name),
        version: from_policy(info.version),
        parameters: info
            .parameters
            .into_iter()
            .map(|p| model::Parameter {
                name: from_policy(p.name),
                default_value: from_policy(p.default_value),
                description: from_policy(p.description),
            })
            .collect(),
    }
}
