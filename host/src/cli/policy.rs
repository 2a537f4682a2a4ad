//! `policy check`: load a component and let it describe itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Failure;
use super::commands::print;
use crate::capabilities::Capabilities;
use crate::remote::RemoteFetcher;
use crate::runtime::{Limits, PolicyRuntime};
use crate::store::CacheStore;

pub(super) async fn policy_check(file: &std::path::Path) -> Result<(), Failure> {
    let runtime = PolicyRuntime::from_file(file, Limits::default())?;
    // describe() touches no capability; the store is never written.
    let store = CacheStore::new(&std::env::temp_dir().join("nodecache-policy-check"));
    let capabilities = Arc::new(Capabilities::new(
        store,
        BTreeMap::new(),
        RemoteFetcher::default(),
    ));
    let info = runtime.describe(capabilities).await?;
    let mut text = format!(
        "{}: ok\npolicy: {} {}\ncontract: {}\nparameters:\n",
        file.display(),
        info.name,
        info.version,
        runtime.contract()
    );
    for parameter in &info.parameters {
        text.push_str(&format!(
            "  {} (default {}): {}\n",
            parameter.name, parameter.default_value, parameter.description
        ));
    }
    print(&text)
}
