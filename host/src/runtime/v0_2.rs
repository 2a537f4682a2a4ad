//! Contract `nodecache:policy@0.2.x`: generated bindings, the host imports,
//! and conversions between the bindings and the host's own model.

use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use super::sandbox::PluginState;
use crate::api::cpu_summary::CpuSummary;
use crate::format::from_policy;
use crate::model;

wasmtime::component::bindgen!({
    path: "../wit/v0.2.0",
    world: "cache-policy",
    imports: { default: async },
    exports: { default: async },
});

pub(super) use self::nodecache::policy::host::Host;
pub(super) use self::nodecache::policy::types as wit;

/// The minor versions this module runs (any patch level).
pub const MINOR: (u64, u64) = (0, 2);

/// A 0.2 component, compiled and pre-instantiated.
pub struct Pre(CachePolicyPre<PluginState>);

impl Pre {
    pub fn new(linker: &mut Linker<PluginState>, component: &Component) -> anyhow::Result<Pre> {
        CachePolicy::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)?;
        Ok(Pre(CachePolicyPre::new(linker.instantiate_pre(component)?)?))
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
        Ok(model::PolicyInfo {
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
        })
    }
}

impl wit::Host for PluginState {}

impl self::nodecache::policy::host::Host for PluginState {
    async fn probe_local(&mut self) -> Result<wit::Document, wit::HostError> {
        self.charge("probe-local").map_err(fetch_error_to_wit)?;
        self.capabilities
            .probe_local(&self.grant)
            .await
            .map(|mut document| {
                self.lent.probed(&document.body, document.summary.take());
                document_to_wit(document)
            })
            .map_err(fetch_error_to_wit)
    }

    async fn local_fingerprint(&mut self) -> Result<String, wit::HostError> {
        self.charge("local-fingerprint").map_err(fetch_error_to_wit)?;
        self.capabilities
            .local_fingerprint(&self.grant)
            .await
            // This machine's hardware as it is now: an entry stored with it
            // as validator is confirmed.
            .inspect(|fingerprint| self.lent.confirmed(fingerprint))
            .map_err(fetch_error_to_wit)
    }

    async fn fetch_remote(&mut self, node: wit::Member) -> Result<wit::Document, wit::HostError> {
        self.charge("fetch-remote").map_err(fetch_error_to_wit)?;
        let document = self
            .capabilities
            .fetch_remote(&self.grant, &node.name)
            .await
            .map_err(fetch_error_to_wit)?;
        let mut document = document;
        self.lent.fetched(&document.body, document.summary.take());
        Ok(document_to_wit(document))
    }

    async fn fetch_remote_if_changed(
        &mut self,
        node: wit::Member,
        validator: String,
    ) -> Result<wit::Fetched, wit::HostError> {
        self.charge("fetch-remote-if-changed")
            .map_err(fetch_error_to_wit)?;
        match self
            .capabilities
            .fetch_remote_if_changed(&self.grant, &node.name, &validator)
            .await
        {
            Ok(model::Fetched::NotModified) => {
                self.lent.confirmed(&validator);
                Ok(wit::Fetched::NotModified)
            }
            Ok(model::Fetched::Modified(mut document)) => {
                self.lent.fetched(&document.body, document.summary.take());
                Ok(wit::Fetched::Modified(document_to_wit(document)))
            }
            Err(error) => Err(fetch_error_to_wit(error)),
        }
    }

    async fn cache_read(&mut self, node: String) -> Result<Option<wit::CacheEntry>, wit::CacheFault> {
        if let Err(refused) = self.charge("cache-read") {
            return Err(wit::CacheFault::Unreadable(refused.to_string()));
        }
        match self.capabilities.cache_read(&self.grant, &node) {
            Ok(entry) => Ok(entry.map(|e| {
                self.lent
                    .read_from_cache(&e.document, e.age_ms, e.validator.as_deref(), e.summary);
                wit::CacheEntry {
                    document: e.document,
                    age_ms: e.age_ms,
                    validator: e.validator,
                }
            })),
            Err(fault @ crate::store::CacheFault::Corrupt { .. }) => {
                Err(wit::CacheFault::Corrupt(fault.to_string()))
            }
            Err(fault) => Err(wit::CacheFault::Unreadable(fault.to_string())),
        }
    }

    async fn cache_write(&mut self, node: String, document: wit::Document) -> Result<(), wit::HostError> {
        self.write_entry(&node, &document.body, Some(&document.validator))
            .map_err(fetch_error_to_wit)
    }

    async fn cache_restamp(&mut self, node: String) -> Result<(), wit::HostError> {
        self.charge("cache-restamp").map_err(fetch_error_to_wit)?;
        self.capabilities
            .cache_restamp(&self.grant, &node)
            .map(|()| self.lent.restamped())
            .map_err(fetch_error_to_wit)
    }

    async fn cache_remove(&mut self, node: String) -> Result<(), wit::HostError> {
        self.charge("cache-remove").map_err(fetch_error_to_wit)?;
        self.capabilities
            .cache_remove(&self.grant, &node)
            .map_err(fetch_error_to_wit)
    }

    async fn now_ms(&mut self) -> u64 {
        crate::util::clock::now_ms()
    }

    async fn random_u64(&mut self) -> u64 {
        PluginState::random_u64(self)
    }

    async fn log(&mut self, level: wit::LogLevel, message: String) {
        if self.charge("log").is_err() {
            return;
        }
        let level = match level {
            wit::LogLevel::Trace => model::LogLevel::Trace,
            wit::LogLevel::Debug => model::LogLevel::Debug,
            wit::LogLevel::Info => model::LogLevel::Info,
            wit::LogLevel::Warn => model::LogLevel::Warn,
            wit::LogLevel::Error => model::LogLevel::Error,
        };
        self.capabilities.log(level, &message);
    }

    async fn config(&mut self, key: String) -> Option<String> {
        self.capabilities.config(&key)
    }
}

impl PluginState {
    /// `cache-write`: the entry checked and kept, with its validator (none
    /// under contract 0.1, which delegates here).
    pub(super) fn write_entry(
        &mut self,
        node: &str,
        body: &str,
        validator: Option<&str>,
    ) -> Result<(), model::HostError> {
        self.charge("cache-write")?;
        self.check_cacheable(body)?;
        let known = self.lent.summary_of(body);
        let summary = self
            .capabilities
            .cache_write(&self.grant, node, body, validator, known)?;
        self.lent.note_summary(body, &summary);
        Ok(())
    }
}

fn document_to_wit(document: model::Document) -> wit::Document {
    wit::Document {
        body: document.body,
        validator: document.validator,
    }
}

pub(super) fn fetch_error_to_wit(error: model::HostError) -> wit::HostError {
    use model::HostError as E;
    match error {
        E::InvalidNode(m) => wit::HostError::InvalidNode(m),
        E::NotGranted(m) => wit::HostError::NotGranted(m),
        E::ProbeFailed(m) => wit::HostError::ProbeFailed(m),
        E::Unreachable(m) => wit::HostError::Unreachable(m),
        E::TimedOut(m) => wit::HostError::TimedOut(m),
        E::RemoteError(m) => wit::HostError::RemoteError(m),
        E::BadResponse(m) => wit::HostError::BadResponse(m),
        E::Storage(m) => wit::HostError::Storage(m),
        // The contract has no word for it: the node's answer is unusable.
        E::PolicyFailed(m) => wit::HostError::BadResponse(format!("policy failed: {m}")),
    }
}

pub(super) fn fetch_error_from_wit(error: wit::HostError) -> model::HostError {
    use model::HostError as E;
    match error {
        wit::HostError::InvalidNode(m) => E::InvalidNode(from_policy(m)),
        wit::HostError::NotGranted(m) => E::NotGranted(from_policy(m)),
        wit::HostError::ProbeFailed(m) => E::ProbeFailed(from_policy(m)),
        wit::HostError::Unreachable(m) => E::Unreachable(from_policy(m)),
        wit::HostError::TimedOut(m) => E::TimedOut(from_policy(m)),
        wit::HostError::RemoteError(m) => E::RemoteError(from_policy(m)),
        wit::HostError::BadResponse(m) => E::BadResponse(from_policy(m)),
        wit::HostError::Storage(m) => E::Storage(from_policy(m)),
    }
}

fn source_to_wit(source: model::Source) -> wit::Source {
    match source {
        model::Source::Cache => wit::Source::Cache,
        model::Source::Revalidated => wit::Source::Revalidated,
        model::Source::Local => wit::Source::Local,
        model::Source::Remote => wit::Source::Remote,
        model::Source::Stale => wit::Source::Stale,
    }
}

fn node_resources_from_wit(resources: wit::NodeResources) -> model::NodeResources {
    model::NodeResources {
        document: resources.document,
        source: match resources.source {
            wit::Source::Cache => model::Source::Cache,
            wit::Source::Revalidated => model::Source::Revalidated,
            wit::Source::Local => model::Source::Local,
            wit::Source::Remote => model::Source::Remote,
            wit::Source::Stale => model::Source::Stale,
        },
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
                flags: g.flags.clone(),
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
