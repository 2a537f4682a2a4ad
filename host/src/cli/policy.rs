//! `policy check` and `policy list`: load components and let them describe themselves.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Failure;
use super::args::Cli;
use super::commands::{loader, print};
use crate::capabilities::Capabilities;
use crate::model::PolicyInfo;
use crate::remote::RemoteFetcher;
use crate::runtime::{PolicyRuntime, embedded};
use crate::store::CacheStore;

pub(super) async fn policy_check(cli: &Cli, choice: &str) -> Result<(), Failure> {
    let runtime = loader(cli, 1).load(Some(choice))?;
    let info = describe(&runtime).await?;
    print(&format!(
        "{}: ok\n{}",
        runtime.origin(),
        described(&info, &runtime)
    ))
}

pub(super) async fn policy_list(cli: &Cli) -> Result<(), Failure> {
    let loader = loader(cli, 1);
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
