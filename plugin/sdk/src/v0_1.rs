//! Contract `nodecache:policy@0.1.x`: the generated bindings, the [`Host`]
//! over their imports, and conversions at the WIT edge.
//!
//! 0.1 predates validators and randomness, so under it: documents carry an
//! empty validator, `fetch_remote_if_changed` is a full fetch answered
//! `Modified`, `local_fingerprint` and `cache_restamp` are `NotGranted`, and
//! `random_u64` mixes the host clock (no host-controlled seed). A policy that
//! needs those should target 0.2.

use std::cell::Cell;

use crate::host::Host;
use crate::policy::Policy;
use crate::types::*;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "policy-plugin",
        pub_export_macro: true,
        export_macro_name: "export_raw",
        default_bindings_module: "nodecache_policy_sdk::v0_1::bindings",
    });
}

use bindings::nodecache::policy::host as imports;
#[doc(hidden)]
pub use bindings::nodecache::policy::types as wit;

/// Makes a type implementing [`Policy`] the component's export of contract 0.1.
#[macro_export]
macro_rules! export_policy_v0_1 {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Exported;
            impl $crate::v0_1::bindings::exports::nodecache::policy::policy::Guest for Exported {
                fn get_node_resources(
                    node: $crate::v0_1::wit::Member,
                ) -> ::core::result::Result<$crate::v0_1::wit::NodeResources, $crate::v0_1::wit::PolicyError>
                {
                    $crate::v0_1::get_node_resources::<$policy>(node)
                }
                fn cluster_cpu_flags(
                    reports: ::std::vec::Vec<$crate::v0_1::wit::NodeReport>,
                    architecture: ::std::string::String,
                ) -> $crate::v0_1::wit::ClusterFlags {
                    $crate::v0_1::cluster_cpu_flags::<$policy>(reports, architecture)
                }
                fn describe() -> $crate::v0_1::wit::PolicyInfo {
                    $crate::v0_1::describe::<$policy>()
                }
            }
    $crate::v0_1::bindings::export_raw!(Exported with_types_in $crate::v0_1::bindings);
        };
    };
}

#[doc(hidden)]
pub fn get_node_resources<P: Policy>(node: wit::Member) -> Result<wit::NodeResources, wit::PolicyError> {
    let node = Member {
        name: node.name,
        local: node.local,
    };
    match P::get_node_resources(&ImportedHost::default(), &node) {
        Ok(resources) => Ok(wit::NodeResources {
            document: resources.document,
            source: match resources.source {
                Source::Cache | Source::Revalidated => wit::Source::Cache,
                Source::Local => wit::Source::Local,
                Source::Remote => wit::Source::Remote,
                Source::Stale => wit::Source::Stale,
            },
            age_ms: resources.age_ms,
            refresh_error: resources.refresh_error.map(host_error_to_wit),
        }),
        Err(PolicyError::Unavailable(e)) => Err(wit::PolicyError::Unavailable(host_error_to_wit(e))),
        Err(PolicyError::BadConfig(m)) => Err(wit::PolicyError::BadConfig(m)),
    }
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

/// The real host of contract 0.1, reached through the component's imports.
#[derive(Default)]
pub struct ImportedHost {
    random_counter: Cell<u64>,
}

fn unversioned(body: String) -> Document {
    Document {
        body,
        validator: String::new(),
    }
}

impl Host for ImportedHost {
    fn probe_local(&self) -> Result<Document, HostError> {
        imports::probe_local()
            .map(unversioned)
            .map_err(host_error_from_wit)
    }

    fn local_fingerprint(&self) -> Result<String, HostError> {
        Err(HostError::NotGranted(
            "local-fingerprint needs contract 0.2".into(),
        ))
    }

    fn fetch_remote(&self, node: &Member) -> Result<Document, HostError> {
        let member = wit::Member {
            name: node.name.clone(),
            local: node.local,
        };
        imports::fetch_remote(&member)
            .map(unversioned)
            .map_err(host_error_from_wit)
    }

    fn fetch_remote_if_changed(&self, node: &Member, _validator: &str) -> Result<Fetched, HostError> {
        self.fetch_remote(node).map(Fetched::Modified)
    }

    fn cache_read(&self, node: &str) -> Result<Option<CacheEntry>, CacheFault> {
        match imports::cache_read(node) {
            Ok(entry) => Ok(entry.map(|e| CacheEntry {
                document: e.document,
                age_ms: e.age_ms,
                validator: None,
            })),
            Err(wit::CacheFault::Corrupt(why)) => Err(CacheFault::Corrupt(why)),
            Err(wit::CacheFault::Unreadable(why)) => Err(CacheFault::Unreadable(why)),
        }
    }

    fn cache_write(&self, node: &str, document: &Document) -> Result<(), HostError> {
        imports::cache_write(node, &document.body).map_err(host_error_from_wit)
    }

    fn cache_restamp(&self, _node: &str) -> Result<(), HostError> {
        Err(HostError::NotGranted("cache-restamp needs contract 0.2".into()))
    }

    fn cache_remove(&self, node: &str) -> Result<(), HostError> {
        imports::cache_remove(node).map_err(host_error_from_wit)
    }

    fn now_ms(&self) -> u64 {
        imports::now_ms()
    }

    fn random_u64(&self) -> u64 {
        let counter = self.random_counter.get().wrapping_add(1);
        self.random_counter.set(counter);
        let mut z = imports::now_ms() ^ counter.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^ (z >> 31)
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

fn host_error_from_wit(error: wit::HostError) -> HostError {
    use wit::HostError as W;
    match error {
        W::InvalidNode(m) => HostError::InvalidNode(m),
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
        HostError::NotGranted(m) => W::InvalidNode(format!("not granted: {m}")),
        HostError::ProbeFailed(m) => W::ProbeFailed(m),
        HostError::Unreachable(m) => W::Unreachable(m),
        HostError::TimedOut(m) => W::TimedOut(m),
        HostError::RemoteError(m) => W::RemoteError(m),
        HostError::BadResponse(m) => W::BadResponse(m),
        HostError::Storage(m) => W::Storage(m),
        HostError::PolicyFailed(m) => W::BadResponse(format!("policy failed: {m}")),
    }
}

fn report_from_wit(report: wit::NodeReport) -> NodeReport {
    NodeReport {
        name: report.name,
        outcome: report
            .outcome
            .map(|node| ResolvedNode {
                source: match node.source {
                    wit::Source::Cache => Source::Cache,
                    wit::Source::Local => Source::Local,
                    wit::Source::Remote => Source::Remote,
                    wit::Source::Stale => Source::Stale,
                },
                age_ms: node.age_ms,
                refresh_error: node.refresh_error.map(host_error_from_wit),
                cpu: CpuSummary {
                    architecture: node.cpu.architecture,
                    core_groups: node
                        .cpu
                        .core_groups
                        .into_iter()
                        .map(|g| CoreGroup::new(g.cores, &g.flags))
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
