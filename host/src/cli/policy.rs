//! `policy check` and `policy list`: load components and let them describe
//! themselves; `check` also makes one real call, so a component that only
//! looks like a policy is refused before an operator points `serve` at it.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context as _, bail};

use super::context::Context;
use super::failure::Failure;
use super::print::print;
use crate::cluster::gather::silent;
use crate::cluster::report::cpu_flags;
use crate::cluster_file::Cluster;
use crate::model::PolicyInfo;
use crate::net::remote::RemoteFetcher;
use crate::runtime::capabilities::Capabilities;
use crate::runtime::{PolicyRuntime, embedded};
use crate::store::CacheStore;

pub(super) async fn check(context: &Context, choice: &str) -> Result<(), Failure> {
    let config = context.cluster_file()?.config;
    let runtime = Arc::new(context.loader(1).load(Some(choice))?);
    let info = describe(&runtime).await?;
    crate::model::check_settings(&info, runtime.origin(), config.keys())?;
    let call = one_call(&runtime, config).await?;
    print(&format!(
        "{}: ok\n{}{call}\n",
        runtime.origin(),
        described(&info, &runtime)
    ))
}

/// Both of the policy's calls, as a run makes them, for a test node: this
/// machine with an empty cache of its own, the operator's settings, and
/// every check the host makes of an answer. What it says, or why the
/// component is not a policy that can serve.
async fn one_call(runtime: &Arc<PolicyRuntime>, config: BTreeMap<String, String>) -> anyhow::Result<String> {
    let cache = tempfile::tempdir().context("a cache directory for the test call")?;
    let capabilities = Arc::new(Capabilities::new(
        CacheStore::new(cache.path()),
        config,
        RemoteFetcher::default(),
    ));
    let cluster = Cluster::this_machine();
    let arch = std::env::consts::ARCH;
    let report = cpu_flags(runtime, capabilities, &cluster, arch, 1, None, &silent())
        .await
        .with_context(|| format!("policy {}: the test call failed", runtime.origin()))?;
    if let Some(node) = report.nodes_without_data().first() {
        bail!(
            "policy {}: the test call (this machine, an empty cache) gave no document: {}",
            runtime.origin(),
            node.error.as_deref().unwrap_or("no reason given")
        );
    }
    let source = report
        .nodes
        .first()
        .and_then(|node| serde_json::to_value(node.source).ok())
        .and_then(|source| source.as_str().map(str::to_string))
        .unwrap_or_default();
    Ok(format!(
        "test call: this machine with an empty cache answered from {source}, {} flags common",
        report.flags.len()
    ))
}

pub(super) async fn list(context: &Context) -> Result<(), Failure> {
    let loader = context.loader(1);
    let mut text = String::new();
    for policy in embedded::all() {
        let runtime = loader.load(Some(policy.name))?;
        let info = describe(&runtime).await?;
        text.push_str(&described(&info, &runtime));
        text.push('\n');
    }
    print(&text)
}

/// describe() is lent no node: the store is never touched.
async fn describe(runtime: &PolicyRuntime) -> anyhow::Result<PolicyInfo> {
    let store = CacheStore::new(&std::env::temp_dir().join("nodecache-policy-check"));
    let capabilities = Arc::new(Capabilities::new(
        store,
        BTreeMap::new(),
        RemoteFetcher::default(),
    ));
    runtime.describe(capabilities).await
}

fn described(info: &PolicyInfo, runtime: &PolicyRuntime) -> String {
    let mut text = format!(
        "policy: {} {}\ncontract: {}\nparameters:{}\n",
        info.name,
        info.version,
        runtime.contract(),
        if info.parameters.is_empty() { " none" } else { "" }
    );
    for parameter in &info.parameters {
        text.push_str(&format!(
            "  {} (default {}): {}\n",
            parameter.name, parameter.default_value, parameter.description
        ));
    }
    text
}
