//! The pinned policy, for frozen or air-gapped inventories: an entry that
//! exists is used whatever its age; only a node with no usable entry is
//! probed or fetched. Built against contract 0.1.0 on purpose, so the host's
//! 0.1 path stays exercised by a shipped policy.

use nodecache_policy_sdk::steps::{from_entry, refresh, usable_entry};
use nodecache_policy_sdk::{Host, Member, NodeResources, Policy, PolicyError, PolicyInfo, Source};

pub struct Pinned;

impl Policy for Pinned {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "pinned".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            parameters: Vec::new(),
        }
    }

    fn get_node_resources(host: &impl Host, node: &Member) -> Result<NodeResources, PolicyError> {
        match usable_entry(host, &node.name) {
            Some(entry) => Ok(from_entry(entry, Source::Cache, None)),
            None => refresh(host, node).map_err(PolicyError::Unavailable),
        }
    }
}

nodecache_policy_sdk::export_policy_v0_1!(Pinned);

#[cfg(test)]
mod tests {
    use super::*;
    use nodecache_policy_sdk::fake_host::{FakeHost, remote};
    use nodecache_policy_sdk::{CacheFault, HostError};

    #[test]
    fn an_entry_of_any_age_is_used_and_the_node_never_asked() {
        let host = FakeHost::default()
            .with_entry("n2", "{\"frozen\":1}", 400 * 86_400_000)
            .with_fetch("n2", Ok("{\"new\":1}"));
        let got = Pinned::get_node_resources(&host, &remote("n2")).unwrap();
        assert_eq!(
            (got.source, got.document.as_str()),
            (Source::Cache, "{\"frozen\":1}")
        );
        assert_eq!(host.counts().fetches, 0);
    }

    #[test]
    fn only_a_missing_or_damaged_entry_is_fetched() {
        let host = FakeHost::default()
            .with_fault("n2", CacheFault::Corrupt("torn".into()))
            .with_fetch("n2", Ok("{\"new\":1}"));
        assert_eq!(
            Pinned::get_node_resources(&host, &remote("n2")).unwrap().source,
            Source::Remote
        );
        let dead = FakeHost::default().with_fetch("n3", Err(HostError::Unreachable("air gap".into())));
        assert!(matches!(
            Pinned::get_node_resources(&dead, &remote("n3")),
            Err(PolicyError::Unavailable(HostError::Unreachable(_)))
        ));
    }
}
