//! A cluster: `cpu-flags` over 100 members that each answer after
//! 100 ms, cold (empty cache) and warm, and the resident memory of an idle
//! `nodecache serve`. Run: `cargo bench -p nodecache --bench cluster`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use nodecache::cluster::report::{NodeSource, cpu_flags};
use nodecache::cluster_file::ClusterFile;
use nodecache::cluster_file::{Cluster, ClusterMember};
use nodecache::net::remote::RemoteFetcher;
use nodecache::node_name::NodeName;
use nodecache::runtime::capabilities::Capabilities;
use nodecache::runtime::{Limits, PolicyRuntime};
use nodecache::store::CacheStore;

const MEMBERS: usize = 100;
const ANSWER_DELAY: Duration = Duration::from_millis(100);

// The end-to-end tests' helpers; this bench uses a few of them.
#[path = "../../tests/util.rs"]
#[allow(dead_code)]
mod support;

/// 100 loopback servers that answer `/1.0/resources` after 100 ms.
fn slow_members(tokio: &tokio::runtime::Runtime) -> Cluster {
    let members = (0..MEMBERS)
        .map(|i| ClusterMember {
            name: NodeName::parse(&format!("node-{i:03}")).unwrap(),
            local: false,
            url: Some(support::slow_member(tokio, ANSWER_DELAY)),
            groups: Vec::new(),
            offline: None,
        })
        .collect();
    Cluster { members }
}

fn benches(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cluster = slow_members(&tokio);
    let membership = ClusterFile {
        cluster: cluster.clone(),
        ..ClusterFile::this_machine()
    };
    let runtime = Arc::new(PolicyRuntime::default_policy(Limits::default()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let capabilities = Arc::new(Capabilities::new(
        CacheStore::new(dir.path()),
        BTreeMap::new(),
        RemoteFetcher::for_membership(&membership).unwrap(),
    ));
    let run = |expected_source: NodeSource| {
        let report = tokio
            .block_on(cpu_flags(
                &runtime,
                capabilities.clone(),
                &cluster,
                "x86_64",
                128,
                None,
                &nodecache::cluster::gather::silent(),
            ))
            .unwrap();
        assert!(
            report.nodes.iter().all(|n| n.source == expected_source),
            "{:?}",
            report.nodes[0]
        );
        assert_eq!(report.nodes.len(), MEMBERS);
        black_box(report)
    };

    let mut group = c.benchmark_group("cpu-flags over 100 members answering after 100 ms");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.bench_function("cold (empty cache)", |b| {
        b.iter_batched(
            || std::fs::remove_dir_all(dir.path().join("resources")).ok(),
            |_| run(NodeSource::Remote),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("warm (every entry cached)", |b| b.iter(|| run(NodeSource::Cache)));
    group.finish();

    println!("idle `nodecache serve` resident memory: {} KiB", serve_rss_kib());
}

/// VmRSS of a `nodecache serve` that has answered one request and then sat idle.
fn serve_rss_kib() -> u64 {
    let state = tempfile::tempdir().unwrap();
    let server = support::spawn_serve(Some(state.path()), &["--insecure-http"]);
    let answer = support::http_get_json(&server.url, "/1.0/resources");
    assert_eq!(answer["type"], "sync");
    std::thread::sleep(Duration::from_secs(1));
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

criterion_group!(cluster, benches);
criterion_main!(cluster);
