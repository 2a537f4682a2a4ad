//! One machine: the local probe, warm one-node `cpu-flags` in-process, the
//! policy's per-node cost on a cache hit beside the same decision in native
//! Rust, and that cost for every policy of the shelf (plus any component
//! named by `NODECACHE_BENCH_POLICY`, e.g. the Python example).
//! Run: `cargo bench -p nodecache --bench core`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use nodecache::cluster::report::{CpuFlagsReport, NodeSource, cpu_flags};
use nodecache::cluster_file::Cluster;
use nodecache::machine::probe;
use nodecache::net::remote::RemoteFetcher;
use nodecache::runtime::capabilities::Capabilities;
use nodecache::runtime::{Limits, PolicyRuntime, embedded};
use nodecache::store::CacheStore;
use nodecache::util::clock::now_ms;

const MAX_AGE_MS: u64 = 86_400_000;

/// A one-node cluster of this machine with a cache in a temporary directory.
struct OneNode {
    _dir: tempfile::TempDir,
    capabilities: Arc<Capabilities>,
    runtime: Arc<PolicyRuntime>,
    cluster: Cluster,
    tokio: tokio::runtime::Runtime,
}

impl OneNode {
    fn new() -> OneNode {
        Self::with_policy(PolicyRuntime::default_policy(Limits::default()).unwrap())
    }

    fn with_policy(runtime: PolicyRuntime) -> OneNode {
        let dir = tempfile::tempdir().unwrap();
        let store = CacheStore::new(dir.path());
        let capabilities = Arc::new(Capabilities::new(
            store,
            BTreeMap::new(),
            RemoteFetcher::default(),
        ));
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let node = OneNode {
            _dir: dir,
            capabilities,
            runtime: Arc::new(runtime),
            cluster: Cluster::this_machine(),
            tokio,
        };
        node.cpu_flags(); // fill the cache, so every measured call is a hit
        node
    }

    fn cpu_flags(&self) -> CpuFlagsReport {
        let hidden = nodecache::cluster::gather::silent();
        let run = cpu_flags(
            &self.runtime,
            self.capabilities.clone(),
            &self.cluster,
            std::env::consts::ARCH,
            64,
            None,
            &hidden,
        );
        self.tokio.block_on(run).unwrap()
    }
}

fn benches(c: &mut Criterion) {
    c.bench_function("local probe (CPUID on every CPU + /proc + /sys)", |b| {
        b.iter(|| black_box(probe::probe_resources().unwrap()))
    });

    // Its part that asks KVM what it can give a guest (the sections run
    // side by side, so the whole probe pays this only where it is longest).
    c.bench_function(
        "hypervisor set (KVM_GET_SUPPORTED_CPUID, feature MSRs, a throwaway vCPU)",
        |b| b.iter(|| black_box(probe::hypervisor::probe())),
    );

    // What a revalidation of this machine (and a 304 from serve) costs instead of a probe.
    c.bench_function("local hardware fingerprint (/proc + /sys, no probe)", |b| {
        b.iter(|| black_box(nodecache::machine::fingerprint::local().unwrap()))
    });

    // What every CLI invocation pays before its first call: Cranelift compiles
    // the component, then the pooled engine pre-instantiates it.
    let mut startup = c.benchmark_group("start-up");
    startup.sample_size(10);
    startup.bench_function(
        "load the embedded policy (engine + compile + pre-instantiate)",
        |b| b.iter(|| black_box(PolicyRuntime::default_policy(Limits::default()).unwrap())),
    );
    startup.finish();

    let node = OneNode::new();
    let member = node.cluster.members[0].as_member();

    c.bench_function("warm cpu-flags, one node, in-process", |b| {
        b.iter(|| {
            let report = node.cpu_flags();
            assert_eq!(report.nodes[0].source, NodeSource::Cache);
            black_box(report)
        })
    });

    c.bench_function(
        "policy per node: instantiate + get-node-resources (cache hit)",
        |b| {
            b.iter(|| {
                let call = node
                    .runtime
                    .get_node_resources(node.capabilities.clone(), &member);
                black_box(node.tokio.block_on(call).unwrap().unwrap())
            })
        },
    );

    c.bench_function("policy: instantiate + describe()", |b| {
        b.iter(|| {
            black_box(
                node.tokio
                    .block_on(node.runtime.describe(node.capabilities.clone()))
                    .unwrap(),
            )
        })
    });

    c.bench_function("native per node: cache read + freshness decision", |b| {
        b.iter(|| {
            let entry = node
                .capabilities
                .store
                .read(&member.name, now_ms())
                .unwrap()
                .unwrap();
            assert!(entry.age_ms < MAX_AGE_MS);
            black_box(entry)
        })
    });
}

/// Every policy's per-node cost with a fresh entry in the cache, default first.
fn shelf(c: &mut Criterion) {
    let mut runtimes: Vec<PolicyRuntime> = embedded::all()
        .iter()
        .map(|policy| PolicyRuntime::embedded(policy.name, Limits::default()).unwrap())
        .collect();
    if let Some(path) = std::env::var_os("NODECACHE_BENCH_POLICY") {
        runtimes.push(PolicyRuntime::from_file(std::path::Path::new(&path), Limits::default()).unwrap());
    }
    let mut group = c.benchmark_group("per node, fresh entry cached: instantiate + get-node-resources");
    for runtime in runtimes {
        let origin = runtime.origin().to_string();
        let node = OneNode::with_policy(runtime);
        let member = node.cluster.members[0].as_member();
        group.bench_function(origin, |b| {
            b.iter(|| {
                let call = node
                    .runtime
                    .get_node_resources(node.capabilities.clone(), &member);
                // always-fresh probes on every call; early-refresh, true to
                // XFetch, refreshes a fresh entry with probability e^-10.
                black_box(node.tokio.block_on(call).unwrap().unwrap())
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = core;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = benches, shelf
}
criterion_main!(core);
