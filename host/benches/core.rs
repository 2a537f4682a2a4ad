//! Issue-2 figures: local probe, warm one-node `cpu-flags` in-process, and
//! the policy's per-node cost on a cache hit beside the same decision in
//! native Rust. Run: `cargo bench -p nodecache --bench core`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use indicatif::ProgressBar;
use nodecache::capabilities::Capabilities;
use nodecache::cluster::Cluster;
use nodecache::cpu_flags::cpu_flags;
use nodecache::probe;
use nodecache::remote::RemoteFetcher;
use nodecache::runtime::{Limits, PolicyRuntime};
use nodecache::store::{CacheStore, now_ms};

const MAX_AGE_MS: u64 = 86_400_000;

fn setup() -> (
    tempfile::TempDir,
    Arc<Capabilities>,
    PolicyRuntime,
    Cluster,
    tokio::runtime::Runtime,
) {
    let dir = tempfile::tempdir().unwrap();
    let capabilities = Arc::new(Capabilities::new(
        CacheStore::new(dir.path()),
        BTreeMap::new(),
        RemoteFetcher::default(),
    ));
    let runtime = PolicyRuntime::default_policy(Limits::default()).unwrap();
    let cluster = Cluster::this_machine();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Fill the cache once, so every measured call is a hit.
    tokio
        .block_on(cpu_flags(
            &runtime,
            capabilities.clone(),
            &cluster,
            std::env::consts::ARCH,
            64,
            &ProgressBar::hidden(),
        ))
        .unwrap();
    (dir, capabilities, runtime, cluster, tokio)
}

fn benches(c: &mut Criterion) {
    c.bench_function("local probe (CPUID on every CPU + /proc + /sys)", |b| {
        b.iter(|| black_box(probe::probe_resources().unwrap()))
    });

    let (_dir, capabilities, runtime, cluster, tokio) = setup();
    let member = cluster.members[0].as_member();

    c.bench_function("warm cpu-flags, one node, in-process", |b| {
        b.iter(|| {
            let report = tokio
                .block_on(cpu_flags(
                    &runtime,
                    capabilities.clone(),
                    &cluster,
                    std::env::consts::ARCH,
                    64,
                    &ProgressBar::hidden(),
                ))
                .unwrap();
            assert_eq!(report.nodes[0].source, "cache");
            black_box(report)
        })
    });

    c.bench_function(
        "policy per node: instantiate + get-node-resources (cache hit)",
        |b| {
            b.iter(|| {
                let resources = tokio
                    .block_on(runtime.get_node_resources(capabilities.clone(), &member))
                    .unwrap();
                black_box(resources.unwrap())
            })
        },
    );

    c.bench_function("policy: instantiate + describe()", |b| {
        b.iter(|| black_box(tokio.block_on(runtime.describe(capabilities.clone())).unwrap()))
    });

    c.bench_function("native per node: cache read + freshness decision", |b| {
        b.iter(|| {
            let entry = capabilities.store.read(&member.name, now_ms()).unwrap().unwrap();
            assert!(entry.age_ms < MAX_AGE_MS);
            black_box(entry)
        })
    });
}

criterion_group! {
    name = core;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(core);
