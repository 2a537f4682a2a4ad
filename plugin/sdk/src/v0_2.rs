//! Contract `nodecache:policy@0.2.x`: the generated bindings, the [`Host`]
//! over their imports, and conversions at the WIT edge.

use crate::host::Host;
use crate::policy::Policy;
use crate::types::*;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.2.0",
        world: "cache-policy",
        pub_export_macro: true,
        export_macro_name: "export_raw",
        default_bindings_module: "nodecache_policy_sdk::v0_2::bindings",
    });
}

use bindings::nodecache::policy::host as imports;
#[doc(hidden)]
pub use bindings::nodecache::policy::types as wit;

/// Makes a type implementing [`Policy`] the component's export of contract 0.2.
/// Call it once, in the policy's crate: `nodecache_policy_sdk::export_policy!(MyPolicy);`
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Exported;
            impl $crate::v0_2::bindings::exports::nodecache::policy::policy::Guest for Exported {
                fn get_node_resources(
                    node: $crate::v0_2::wit::Member,
                ) -> ::core::result::Result<$crate::v0_2::wit::NodeResources, $crate::v0_2::wit::PolicyError>
                {
                    $crate::v0_2::get_node_resources::<$policy>(node)
                }
                fn cluster_cpu_flags(
                    reports: ::std::vec::Vec<$crate::v0_2::wit::NodeReport>,
                    architecture: ::std::string::String,
                ) -> $crate::v0_2::wit::ClusterFlags {
                    $crate::v0_2::cluster_cpu_flags::<$policy>(reports, architecture)
                }
                fn describe() -> $crate::v0_2::wit::PolicyInfo {
                    $crate::v0_2::describe::<$policy>()
                }
            }
    $crate::v0_2::bindings::export_raw!(Exported with_types_in $crate::v0_2::bindings);
        };
    };
}

#[doc(hidden)]
pub fn get_node_resources<P: Policy>(node: wit::Member) -> Result<wit::NodeResources, wit::PolicyError> {
    let node = Member {
        name: node.name,
        local: node.local,
    };
    P::get_node_resources(&ImportedHost, &node)
        .map(node_resources_to_wit)
        .map_err(policy_error_to_wit)
}

#[doc(hidden)]
pub fn cluster_cpu_flags<P: Policy>(
    reports: Vec<wit::NodeReport>,
    architecture: String,
) -> wit::ClusterFlags {
    let reports: Vec<NodeReport> = reports.into_iter().map(report_from_wit).collect();
    let flags = P::cluster_cpu_flags(&reports, &architecture);
    wit::ClusterFlags {
        architecture: flags.architecture,
        flags: flags.flags,
        nodes: flags
            .nodes
            .into_iter()
            .map(|node| wit::NodeOutcome {
                name: node.name,
                verdict: match node.verdict {
                    NodeVerdict::Included => wit::NodeVerdict::Included,
                    NodeVerdict::ExcludedArch(arch) => wit::NodeVerdict::ExcludedArch(arch),
                    NodeVerdict::NoData(why) => wit::NodeVerdict::NoData(why),
                },
            })
            .collect(),
    }
}

#[doc(hidden)]
pub fn describe<P: Policy>() -> wit::PolicyInfo {
    let info = P::describe();
    wit::PolicyInfo {
        name: info.name,
        version: info.version,
        parameters: info
            .parameters
            .into_iter()
            .map(|p| wit::Parameter {
                name: p.name,
                default_value: p.default_value,
                description: p.description,
            })
            .collect(),
    }
}

/// The real host, reached through the component's imports.
/// Only usable inside the component: a native build aborts when an import is called.
pub struct ImportedHost;

impl Host for ImportedHost {
    fn probe_local(&self) -> Result<Document, HostError> {
        imports::probe_local()
            .map(document_from_wit)
            .map_err(host_error_from_wit)
    }

    fn local_fingerprint(&self) -> Result<String, HostError> {
        imports::local_fingerprint().map_err(host_error_from_wit)
    }

    fn fetch_remote(&self, node: &Member) -> Result<Document, HostError> {
        imports::fetch_remote(&member_to_wit(node))
            .map(document_from_wit)
            .map_err(host_error_from_wit)
    }

    fn fetch_remote_if_changed(&self, node: &Member, validator: &str) -> Result<Fetched, HostError> {
        match imports::fetch_remote_if_changed(&member_to_wit(node), validator) {
            Ok(wit::Fetched::NotModified) => Ok(Fetched::NotModified),
            Ok(wit::Fetched::Modified(document)) => Ok(Fetched::Modified(document_from_wit(document))),
            Err(error) => Err(host_error_from_wit(error)),
        }
    }

    fn cache_read(&self, node: &str) -> Result<Option<CacheEntry>, CacheFault> {
        match imports::cache_read(node) {
            Ok(entry) => Ok(entry.map(|e| CacheEntry {
                document: e.document,
                age_ms: e.age_ms,
                validator: e.validator,
            })),
            Err(wit::CacheFault::Corrupt(why)) => Err(CacheFault::Corrupt(why)),
            Err(wit::CacheFault::Unreadable(why)) => Err(CacheFault::Unreadable(why)),
        }
    }

    fn cache_write(&self, node: &str, document: &Document) -> Result<(), HostError> {
        let document = wit::Document {
            body: document.body.clone(),
            validator: document.validator.clone(),
        };
        imports::cache_write(node, &document).map_err(host_error_from_wit)
    }

    fn cache_restamp(&self, node: &str) -> Result<(), HostError> {
        imports::cache_restamp(node).map_err(host_error_from_wit)
    }

    fn cache_remove(&self, node: &str) -> Result<(), HostError> {
        imports::cache_remove(node).map_err(host_error_from_wit)
    }

    fn now_ms(&self) -> u64 {
        imports::now_ms()
    }

    fn random_u64(&self) -> u64 {
        imports::random_u64()
    }

    fn log(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Trace => wit::LogLevel::Trace,
            LogLevel::Debug => wit::LogLevel::Debug,
            LogLevel::Info => wit::LogLevel::Info,
            LogLevel::Warn => wit::LogLevel::Warn,
            LogLevel::Error => wit::LogLevel::Error,
        };
        imports::log(level, message)
    }

    fn config(&self, key: &str) -> Option<String> {
        imports::config(key)
    }
}

fn member_to_wit(member: &Member) -> wit::Member {
    wit::Member {
        name: member.name.clone(),
        local: member.local,
    }
}

fn document_from_wit(document: wit::Document) -> Document {
    Document {
        body: document.body,
        validator: document.validator,
    }
}

fn host_error_from_wit(error: wit::HostError) -> HostError {
    use wit::HostError as W;
    match error {
        W::InvalidNode(m) => HostError::InvalidNode(m),
        W::NotGranted(m) => HostError::NotGranted(m),
        W::ProbeFailed(m) => HostError::ProbeFailed(m),
        W::Unreachable(m) => HostError::Unreachable(m),
        W::TimedOut(m) => HostError::TimedOut(m),
        W::RemoteError(m) => HostError::RemoteError(m),
        W::BadResponse(m) => HostError::BadResponse(m),
        W::Storage(m) => HostError::Storage(m),
    }
}

fn host_error_to_wit(error: HostError) -> wit::HostError {
    use wit::HostError as W;
    match error {
        HostError::InvalidNode(m) => W::InvalidNode(m),
        HostError::NotGranted(m) => W::NotGranted(m),
        HostError::ProbeFailed(m) => W::ProbeFailed(m),
        HostError::Unreachable(m) => W::Unreachable(m),
        HostError::TimedOut(m) => W::TimedOut(m),
        HostError::RemoteError(m) => W::RemoteError(m),
        HostError::BadResponse(m) => W::BadResponse(m),
        HostError::Storage(m) => W::Storage(m),
        HostError::PolicyFailed(m) => W::BadResponse(format!("policy failed: {m}")),
    }
}

fn source_to_wit(source: Source) -> wit::Source {
    match source {
        Source::Cache => wit::Source::Cache,
        Source::Revalidated => wit::Source::Revalidated,
        Source::Local => wit::Source::Local,
        Source::Remote => wit::Source::Remote,
        Source::Stale => wit::Source::Stale,
    }
}

fn source_from_wit(source: wit::Source) -> Source {
    match source {
        wit::Source::Cache => Source::Cache,
        wit::Source::Revalidated => Source::Revalidated,
        wit::Source::Local => Source::Local,
        wit::Source::Remote => Source::Remote,
        wit::Source::Stale => Source::Stale,
    }
}

fn node_resources_to_wit(resources: NodeResources) -> wit::NodeResources {
    wit::NodeResources {
        document: resources.document,
        source: source_to_wit(resources.source),
        age_ms: resources.age_ms,
        refresh_error: resources.refresh_error.map(host_error_to_wit),
    }
}

fn policy_error_to_wit(error: PolicyError) -> wit::PolicyError {
    match error {
        PolicyError::Unavailable(e) => wit::PolicyError::Unavailable(host_error_to_wit(e)),
        PolicyError::BadConfig(m) => wit::PolicyError::BadConfig(m),
    }
}

fn report_from_wit(report: wit::NodeReport) -> NodeReport {
    NodeReport {
        name: report.name,
        outcome: report
            .outcome
            .map(|node| ResolvedNode {
                source: source_from_wit(node.source),
                age_ms: node.age_ms,
                refresh_error: node.refresh_error.map(host_error_from_wit),
                cpu: CpuSummary {
                    architecture: node.cpu.architecture,
                    core_groups: node
                        .cpu
                        .core_groups
                        .into_iter()
                        .map(|g| CoreGroup {
                            cores: g.cores,
                            flags: g.flags,
                        })
                        .collect(),
                    // Contract 0.2 does not carry these to a policy.
                    hypervisor: None,
                    vendor: None,
                    physical_bits: None,
                },
            })
            .map_err(host_error_from_wit),
    }
}
