//! The revalidate policy: entries are kept long (`max-age`, default 30 days),
//! but once one is older than `revalidate-after` (default 5 minutes) the
//! node is asked whether its hardware changed: a remote member by a
//! conditional request (`If-None-Match` its validator; a 304 costs no body),
//! this machine by its fingerprint (a few /proc and /sys reads, no probe).
//! Unchanged: the entry is restamped and served as `revalidated`. Changed:
//! the new document replaces it. A microcode update or a CPU hot-plug is
//! seen within minutes instead of a day, for one small request per node.

use nodecache_policy_sdk::steps::{from_entry, refresh, stale_or_unavailable, store, usable_entry};
use nodecache_policy_sdk::{
    CacheEntry, Fetched, Host, HostError, LogLevel, Member, NodeResources, Parameter, Policy, PolicyError,
    PolicyInfo, Source, config, describe_error,
};

pub const MAX_AGE: &str = "max-age";
pub const REVALIDATE_AFTER: &str = "revalidate-after";
pub const STALE_MAX_AGE: &str = "stale-max-age";

pub struct Revalidate;

impl Policy for Revalidate {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "revalidate".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            parameters: vec![
                Parameter::new(
                    REVALIDATE_AFTER,
                    "5m",
                    "an entry older than this is checked with the node (304 or fingerprint)",
                ),
                Parameter::new(
                    MAX_AGE,
                    "30d",
                    "an entry older than this is fetched whole, whatever its validator",
                ),
                Parameter::new(
                    STALE_MAX_AGE,
                    "30d",
                    "when the node cannot be asked, an entry younger than this is served as stale",
                ),
            ],
        }
    }

    fn get_node_resources(host: &impl Host, node: &Member) -> Result<NodeResources, PolicyError> {
        let revalidate_after_ms = config::duration_ms(host, REVALIDATE_AFTER, "5m")?;
        let max_age_ms = config::duration_ms(host, MAX_AGE, "30d")?;
        let stale_max_age_ms = config::duration_ms(host, STALE_MAX_AGE, "30d")?;
        let entry = usable_entry(host, &node.name);
        let outcome = match &entry {
            Some(entry) if entry.age_ms < revalidate_after_ms => {
                return Ok(from_entry(entry.clone(), Source::Cache, None));
            }
            Some(entry) if entry.age_ms < max_age_ms => match &entry.validator {
                Some(validator) => revalidate(host, node, entry, validator),
                None => refresh(host, node),
            },
            _ => refresh(host, node),
        };
        outcome.or_else(|error| stale_or_unavailable(host, node, entry, error, stale_max_age_ms))
    }
}

/// Asks the node whether its hardware still matches `validator`.
fn revalidate(
    host: &impl Host,
    node: &Member,
    entry: &CacheEntry,
    validator: &str,
) -> Result<NodeResources, HostError> {
    let fetched = if node.local {
        if host.local_fingerprint()? == validator {
            Fetched::NotModified
        } else {
            Fetched::Modified(host.probe_local()?)
        }
    } else {
        host.fetch_remote_if_changed(node, validator)?
    };
    match fetched {
        Fetched::NotModified => {
            if let Err(error) = host.cache_restamp(&node.name) {
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "{}: could not restamp the cache ({})",
                        node.name,
                        describe_error(&error)
                    ),
                );
            }
            let mut confirmed = from_entry(entry.clone(), Source::Revalidated, None);
            confirmed.age_ms = 0;
            Ok(confirmed)
        }
        Fetched::Modified(document) => {
            host.log(
                LogLevel::Info,
                &format!("{}: hardware changed; replacing the entry", node.name),
            );
            let source = if node.local { Source::Local } else { Source::Remote };
            Ok(store(host, node, document, source))
        }
    }
}

nodecache_policy_sdk::export_policy!(Revalidate);

#[cfg(test)]
mod tests {
    use super::*;
    use nodecache_policy_sdk::fake_host::{FakeHost, local, remote};

    const MINUTE_MS: u64 = 60_000;

    fn get(host: &FakeHost, node: &Member) -> NodeResources {
        Revalidate::get_node_resources(host, node).unwrap()
    }

    #[test]
    fn an_entry_younger_than_revalidate_after_is_used_without_asking() {
        let host = FakeHost::default().with_entry("n2", "{\"a\":1}", 5 * MINUTE_MS - 1);
        assert_eq!(get(&host, &remote("n2")).source, Source::Cache);
        assert_eq!(host.counts().conditional_fetches + host.counts().fetches, 0);
    }

    #[test]
    fn an_unchanged_member_is_restamped_not_refetched() {
        let host = FakeHost::default()
            .with_entry("n2", "{\"a\":1}", 5 * MINUTE_MS)
            .with_fetch("n2", Ok("{\"a\":1}"));
        let got = get(&host, &remote("n2"));
        assert_eq!((got.source, got.age_ms), (Source::Revalidated, 0));
        assert_eq!(got.document, "{\"a\":1}");
        let counts = host.counts();
        assert_eq!(
            (
                counts.not_modified,
                counts.restamps,
                counts.writes,
                counts.fetches
            ),
            (1, 1, 0, 0)
        );
        // Restamped: the next call within the interval asks nobody.
        host.advance(MINUTE_MS);
        assert_eq!(get(&host, &remote("n2")).source, Source::Cache);
        assert_eq!(host.counts().conditional_fetches, 1);
    }

    #[test]
    fn a_changed_member_is_refetched_within_one_interval() {
        let host = FakeHost::default()
            .with_entry("n2", "{\"a\":1}", 0)
            .with_fetch("n2", Ok("{\"a\":1}"));
        host.set_fetch("n2", Ok("{\"a\":2,\"microcode\":\"0xb4\"}"));
        host.advance(5 * MINUTE_MS);
        let got = get(&host, &remote("n2"));
        assert_eq!(got.source, Source::Remote);
        assert_eq!(
            host.written("n2").as_deref(),
            Some("{\"a\":2,\"microcode\":\"0xb4\"}")
        );
    }

    #[test]
    fn this_machine_is_checked_by_fingerprint_without_a_probe() {
        let host = FakeHost::default().with_probe(Ok("{\"local\":1}")).with_entry(
            "me",
            "{\"local\":1}",
            10 * MINUTE_MS,
        );
        assert_eq!(get(&host, &local("me")).source, Source::Revalidated);
        assert_eq!((host.counts().fingerprints, host.counts().probes), (1, 0));

        let changed = FakeHost::default().with_probe(Ok("{\"local\":2}")).with_entry(
            "me",
            "{\"local\":1}",
            10 * MINUTE_MS,
        );
        assert_eq!(get(&changed, &local("me")).source, Source::Local);
        assert_eq!(changed.counts().probes, 1);
    }

    #[test]
    fn entries_without_a_validator_or_past_max_age_are_fetched_whole() {
        let host = FakeHost::default()
            .with_entry_validated("n2", "{\"a\":1}", None, 10 * MINUTE_MS)
            .with_fetch("n2", Ok("{\"a\":1}"));
        assert_eq!(get(&host, &remote("n2")).source, Source::Remote);
        let old = FakeHost::default()
            .with_config(MAX_AGE, "1h")
            .with_entry("n2", "{\"a\":1}", 61 * MINUTE_MS)
            .with_fetch("n2", Ok("{\"a\":1}"));
        assert_eq!(get(&old, &remote("n2")).source, Source::Remote);
        assert_eq!(old.counts().conditional_fetches, 0);
    }

    #[test]
    fn an_unreachable_member_is_served_stale() {
        let host = FakeHost::default()
            .with_entry("n2", "{\"a\":1}", 10 * MINUTE_MS)
            .with_fetch("n2", Err(HostError::Unreachable("refused".into())));
        let got = get(&host, &remote("n2"));
        assert_eq!(got.source, Source::Stale);
        assert!(got.refresh_error.is_some());
    }

    #[test]
    fn revalidate_after_comes_from_config() {
        let host = FakeHost::default()
            .with_config(REVALIDATE_AFTER, "30s")
            .with_entry("n2", "{\"a\":1}", 31_000)
            .with_fetch("n2", Ok("{\"a\":1}"));
        assert_eq!(get(&host, &remote("n2")).source, Source::Revalidated);
        let bad = FakeHost::default().with_config(REVALIDATE_AFTER, "often");
        assert!(matches!(
            Revalidate::get_node_resources(&bad, &remote("n2")),
            Err(PolicyError::BadConfig(m)) if m.contains(REVALIDATE_AFTER)
        ));
    }
}
