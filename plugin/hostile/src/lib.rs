//! A policy that misbehaves on request, so the test suite can show what the
//! host does with a hostile or broken plugin. Never embedded or shipped: the
//! tests build it. The operator setting `hostile` picks the misbehaviour:
//!
//! - `drop-verdicts`: `cluster-cpu-flags` answers for no node.
//! - `duplicate-verdict`: the first node gets two verdicts.
//! - `invent-flag`: the common set gains `made-up-flag`.
//! - `bad-document`: every document is `{"not":"resources"}`.
//! - `add-flag`: adds `fake_flag` to the first core of the document it was lent.
//! - `mislabel`: a document fetched now, called a cache entry 999,999 s old.
//! - `terminal`: logs and fails with escape sequences (clear the screen,
//!   retitle the window), as text meant to drive the operator's terminal.
//! - `write-other`: writes the cache entry of a node it was not lent.
//! - `loop`: `get-node-resources` never returns (the instruction budget stops it).
//! - `allocate`: allocates until the memory cap stops it.
//! - `trap`: panics (a trap).
//! - `huge`: returns a 48 MiB document.
//! - `probe-loop`: calls `probe-local` forever, ignoring its errors (host
//!   work that fuel does not count; the host's call budget stops it).
//! - `escape`: tries to leave the sandbox (read a file, list a directory,
//!   connect to the TCP port in the `escape-port` setting, read the
//!   environment, see the clock move), logs what it found at warn level as
//!   `sandbox: ...`, then behaves.
//! - anything else (or unset): behaves like the default policy without a cache.
//!
//! With the setting `hostile-node` set, `get-node-resources` misbehaves for
//! that node only and behaves for the others: a cluster where one node's
//! call breaks and the rest answer.

use nodecache_policy_sdk::steps::refresh;
use nodecache_policy_sdk::{
    ClusterFlags, Document, Host, LogLevel, Member, NodeOutcome, NodeReport, NodeResources, NodeVerdict,
    Parameter, Policy, PolicyError, PolicyInfo, intersect,
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
            parameters: vec![
                Parameter::new("hostile", "", "the misbehaviour (see the crate's documentation)"),
                Parameter::new("escape-port", "9", "the loopback port `escape` tries to reach"),
                Parameter::new(
                    "hostile-node",
                    "",
                    "the one node to misbehave for (empty: every node)",
                ),
            ],
        }
    }

    fn get_node_resources(host: &impl Host, node: &Member) -> Result<NodeResources, PolicyError> {
        let only = host.config("hostile-node").unwrap_or_default();
        if !only.is_empty() && node.name != only {
            return refresh(host, node).map_err(PolicyError::Unavailable);
        }
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
            "escape" => {
                host.log(LogLevel::Warn, &format!("sandbox: {}", try_to_escape(host)));
                refresh(host, node).map_err(PolicyError::Unavailable)
            }
            "add-flag" => {
                let mut resources = refresh(host, node).map_err(PolicyError::Unavailable)?;
                resources.document =
                    resources
                        .document
                        .replacen("\"flags\":[\"", "\"flags\":[\"fake_flag\",\"", 1);
                Ok(resources)
            }
            "mislabel" => {
                let mut resources = refresh(host, node).map_err(PolicyError::Unavailable)?;
                resources.source = nodecache_policy_sdk::Source::Cache;
                resources.age_ms = 999_999_000;
                Ok(resources)
            }
            "terminal" => {
                host.log(LogLevel::Warn, "\u{1b}[2Jcleared");
                Err(PolicyError::Unavailable(
                    nodecache_policy_sdk::HostError::Unreachable("\u{1b}]0;owned\u{7}retitled".into()),
                ))
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

/// What each way out of the sandbox gave: `denied (why)` or what it reached.
fn try_to_escape(host: &impl Host) -> String {
    let outcome = |result: Result<String, std::io::Error>| match result {
        Ok(reached) => format!("REACHED {reached}"),
        Err(e) => format!("denied ({e})"),
    };
    let file = outcome(std::fs::read_to_string("/etc/hostname").map(|text| text.trim().to_string()));
    let dir = outcome(std::fs::read_dir(".").map(|entries| format!("{} entries", entries.count())));
    let port: u16 = host
        .config("escape-port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(9);
    let socket =
        outcome(std::net::TcpStream::connect(("127.0.0.1", port)).map(|s| format!("{:?}", s.peer_addr())));
    let env = std::env::vars().count();
    let (wall, clock) = (std::time::SystemTime::now(), std::time::Instant::now());
    let mut spins = 0u64;
    for _ in 0..5_000_000 {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
    let moved = std::time::SystemTime::now() != wall || clock.elapsed() != std::time::Duration::ZERO;
    format!(
        "file {file}; dir {dir}; socket {socket}; environment {env} variables; clock {}",
        if moved { "MOVED" } else { "stopped" }
    )
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

/// For the test suite's check that the wasm test runner reports failure
/// (tests/policies.rs): ignored, so only that check runs them.
#[cfg(test)]
mod tests {
    #[test]
    #[ignore = "run by tests/policies.rs only"]
    fn a_deliberately_passing_test() {
        assert_eq!(1 + 1, 2);
    }

    #[test]
    #[ignore = "run by tests/policies.rs only"]
    fn a_deliberately_failing_test() {
        assert_eq!(1 + 1, 3, "a deliberate failure");
    }
}
