//! The always-fresh policy: every call asks the node (probe or fetch); the
//! cache is written anyway, so that when the node cannot be asked a recent
//! entry (younger than `stale-max-age`) is served, marked stale.

use nodecache_policy_sdk::steps::{refresh, stale_or_unavailable, usable_entry};
use nodecache_policy_sdk::{Host, Member, NodeResources, Parameter, Policy, PolicyError, PolicyInfo, config};

pub const STALE_MAX_AGE: &str = "stale-max-age";

pub struct AlwaysFresh;

impl Policy for AlwaysFresh {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "always-fresh".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            parameters: vec![Parameter::new(
                STALE_MAX_AGE,
                "7d",
                "when the node cannot be asked, an entry younger than this is served as stale",
            )],
        }
    }

    fn get_node_resources(host: &impl Host, node: &Member) -> Result<NodeResources, PolicyError> {
        let stale_max_age_ms = config::duration_ms(host, STALE_MAX_AGE, "7d")?;
        refresh(host, node).or_else(|error| {
            let entry = usable_entry(host, &node.name);
            stale_or_unavailable(host, node, entry, error, stale_max_age_ms)
        })
    }
}

nodecache_policy_sdk::export_policy!(AlwaysFresh);

#[cfg(test)]
mod tests {
    use super::*;
    use nodecache_policy_sdk::fake_host::{FakeHost, local, remote};
    use nodecache_policy_sdk::{HostError, Source};

    #[test]
    fn a_fresh_entry_is_still_refreshed_and_rewritten() {
        let host = FakeHost::default()
            .with_entry("n1", "{\"old\":1}", 0)
            .with_probe(Ok("{\"new\":1}"));
        assert_eq!(
            AlwaysFresh::get_node_resources(&host, &local("n1"))
                .unwrap()
                .source,
            Source::Local
        );
        assert_eq!(host.written("n1").as_deref(), Some("{\"new\":1}"));
    }

    #[test]
    fn an_unreachable_node_falls_back_to_its_entry_then_fails_past_the_limit() {
        let host = FakeHost::default()
            .with_entry("n2", "{\"old\":1}", 60_000)
            .with_fetch("n2", Err(HostError::Unreachable("refused".into())));
        assert_eq!(
            AlwaysFresh::get_node_resources(&host, &remote("n2"))
                .unwrap()
                .source,
            Source::Stale
        );
        let host = host.with_config(STALE_MAX_AGE, "1m");
        assert!(matches!(
            AlwaysFresh::get_node_resources(&host, &remote("n2")),
            Err(PolicyError::Unavailable(HostError::Unreachable(_)))
        ));
    }
}
