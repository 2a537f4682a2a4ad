//! A policy that misbehaves on request, so the test suite can show what the
//! host does with a hostile or broken plugin. Never embedded or shipped: the
//! tests build it. The operator setting `hostile` picks the misbehaviour:
//!
//! - `drop-verdicts`: `cluster-cpu-flags` answers for no node.
//! - `duplicate-verdict`: the first node gets two verdicts.
//! - `invent-flag`: the common set gains `made-up-flag`.
//! - `bad-document`: every document is `{"not":"resources"}`.
//! - `write-other`: writes the cache entry of a node it was not lent.
//! - `loop`: `get-node-resources` never returns (the instruction budget stops it).
//! - `allocate`: allocates until the memory cap stops it.
//! - `trap`: panics (a trap).
//! - `huge`: returns a 48 MiB document.
//! - `probe-loop`: calls `probe-local` forever, ignoring its errors (host
//!   work that fuel does not count; the host's call budget stops it).
//! - anything else (or unset): behaves like the default policy without a cache.

use nodecache_policy_sdk::steps::refresh;
use nodecache_policy_sdk::{
    ClusterFlags, Document, Host, Member, NodeOutcome, NodeReport, NodeResources, NodeVerdict, Policy,
    PolicyError, PolicyInfo, intersect,
};

pub struct Hostile;

fn mode(host: &impl Host) -> String {
    host.config("hostile").unwrap_or_default()
}

impl Policy for Hostile {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            parameters: Vec::new(),
        }
    }

    fn get_node_resources(host: &impl Host, node: &Member) -> Result<NodeResources, PolicyError> {
        match mode(host).as_str() {
            "loop" => {
                let mut spins = 0u64;
                loop {
                    spins = std::hint::black_box(spins.wrapping_add(1));
                }
            }
            "allocate" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            "trap" => panic!("a deliberate trap"),
            "probe-loop" => loop {
                let _ = std::hint::black_box(host.probe_local());
            },
            "huge" => {
                let mut resources = refresh(host, node).map_err(PolicyError::Unavailable)?;
                resources.document = "x".repeat(48 << 20);
                Ok(resources)
            }
            "write-other" => {
                let document = Document {
                    body: "{}".into(),
                    validator: String::new(),
                };
                host.cache_write("someone-else", &document)
                    .map_err(PolicyError::Unavailable)?;
                refresh(host, node).map_err(PolicyError::Unavailable)
            }
            "bad-document" => {
                let mut resources = refresh(host, node).map_err(PolicyError::Unavailable)?;
                resources.document = "{\"not\":\"resources\"}".into();
                Ok(resources)
            }
            _ => refresh(host, node).map_err(PolicyError::Unavailable),
        }
    }

    fn cluster_cpu_flags(reports: &[NodeReport], architecture: &str) -> ClusterFlags {
        let mut flags = intersect::cluster_cpu_flags(reports, architecture);
        match mode(&imported_host()).as_str() {
            "drop-verdicts" => flags.nodes.clear(),
            "duplicate-verdict" => {
                if let Some(first) = flags.nodes.first().cloned() {
                    flags.nodes.push(NodeOutcome {
                        name: first.name,
                        verdict: NodeVerdict::Included,
                    });
                }
            }
            "invent-flag" => flags.flags.push("made-up-flag".into()),
            _ => {}
        }
        flags
    }
}

/// `cluster-cpu-flags` is given no host; config is reachable through the imports.
#[cfg(target_arch = "wasm32")]
fn imported_host() -> nodecache_policy_sdk::v0_2::ImportedHost {
    nodecache_policy_sdk::v0_2::ImportedHost
}

#[cfg(not(target_arch = "wasm32"))]
fn imported_host() -> nodecache_policy_sdk::FakeHost {
    nodecache_policy_sdk::FakeHost::default()
}

nodecache_policy_sdk::export_policy!(Hostile);
