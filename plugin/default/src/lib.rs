//! The default policy: a cache entry younger than `max-age` is used as it
//! is; an older one is refreshed (probe or fetch) and rewritten. When the
//! refresh fails, an entry younger than `stale-max-age` is served, marked
//! stale with the error, rather than failing the node.

use nodecache_policy_sdk::steps::cached_or_refreshed;
use nodecache_policy_sdk::{Host, Member, NodeResources, Parameter, Policy, PolicyError, PolicyInfo, config};

pub const MAX_AGE: &str = "max-age";
pub const STALE_MAX_AGE: &str = "stale-max-age";

pub struct Default;

impl Policy for Default {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "default".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            parameters: vec![
                Parameter::new(
                    MAX_AGE,
                    "24h",
                    "a cache entry younger than this is used without asking the node",
                ),
                Parameter::new(
                    STALE_MAX_AGE,
                    "7d",
                    "when a refresh fails, an entry younger than this is served as stale",
                ),
            ],
        }
    }

    fn get_node_resources(host: &impl Host, node: &Member) -> Result<NodeResources, PolicyError> {
        let max_age_ms = config::duration_ms(host, MAX_AGE, "24h")?;
        let stale_max_age_ms = config::duration_ms(host, STALE_MAX_AGE, "7d")?;
        cached_or_refreshed(host, node, max_age_ms, stale_max_age_ms)
    }
}

nodecache_policy_sdk::export_policy!(Default);

#[cfg(test)]
mod tests {
    use super::*;
    use nodecache_policy_sdk::Source;
    use nodecache_policy_sdk::fake_host::{FakeHost, local, remote};
    use nodecache_policy_sdk::{CacheFault, HostError};

    const DAY_MS: u64 = 86_400_000;

    fn get(host: &FakeHost, node: &Member) -> Result<NodeResources, PolicyError> {
        Default::get_node_resources(host, node)
    }

    #[test]
    fn an_entry_just_under_max_age_is_used() {
        let host = FakeHost::default().with_entry("n1", "{\"cached\":1}", DAY_MS - 1);
        let got = get(&host, &local("n1")).unwrap();
        assert_eq!((got.source, got.age_ms), (Source::Cache, DAY_MS - 1));
        assert_eq!(got.document, "{\"cached\":1}");
        assert_eq!(host.counts().probes, 0);
        assert!(host.written("n1").is_none());
    }

    #[test]
    fn an_entry_at_or_over_max_age_is_refreshed() {
        for age in [DAY_MS, DAY_MS + 1] {
            let host = FakeHost::default()
                .with_entry("n1", "{\"cached\":1}", age)
                .with_probe(Ok("{\"probed\":1}"));
            let got = get(&host, &local("n1")).unwrap();
            assert_eq!((got.source, got.age_ms), (Source::Local, 0), "age {age}");
            assert_eq!(host.written("n1").as_deref(), Some("{\"probed\":1}"));
        }
    }

    #[test]
    fn a_missing_entry_of_a_remote_node_is_fetched_and_cached() {
        let host = FakeHost::default().with_fetch("n2", Ok("{\"remote\":1}"));
        assert_eq!(get(&host, &remote("n2")).unwrap().source, Source::Remote);
        assert_eq!(host.counts().probes, 0);
        assert_eq!(host.written("n2").as_deref(), Some("{\"remote\":1}"));
    }

    #[test]
    fn a_corrupt_entry_is_a_miss_not_an_error() {
        let host = FakeHost::default()
            .with_fault("n1", CacheFault::Corrupt("truncated".into()))
            .with_probe(Ok("{\"probed\":1}"));
        assert_eq!(get(&host, &local("n1")).unwrap().source, Source::Local);
        assert!(host.logged("corrupt"));
    }

    #[test]
    fn max_age_from_config_is_honoured() {
        let host = FakeHost::default()
            .with_config(MAX_AGE, "60s")
            .with_entry("n1", "{}", 61_000)
            .with_probe(Ok("{\"probed\":1}"));
        assert_eq!(get(&host, &local("n1")).unwrap().source, Source::Local);
        let host = FakeHost::default()
            .with_config(MAX_AGE, "60s")
            .with_entry("n1", "{}", 59_000);
        assert_eq!(get(&host, &local("n1")).unwrap().source, Source::Cache);
    }

    #[test]
    fn a_failed_refresh_serves_a_stale_entry_with_its_error() {
        let host = FakeHost::default()
            .with_entry("n2", "{\"old\":1}", 2 * DAY_MS)
            .with_fetch("n2", Err(HostError::Unreachable("connection refused".into())));
        let got = get(&host, &remote("n2")).unwrap();
        assert_eq!((got.source, got.age_ms), (Source::Stale, 2 * DAY_MS));
        assert!(matches!(got.refresh_error, Some(HostError::Unreachable(_))));
    }

    #[test]
    fn an_entry_past_stale_max_age_is_not_served() {
        let host = FakeHost::default()
            .with_config(STALE_MAX_AGE, "2d")
            .with_entry("n2", "{}", 2 * DAY_MS)
            .with_fetch("n2", Err(HostError::TimedOut("5 s".into())));
        assert!(matches!(
            get(&host, &remote("n2")),
            Err(PolicyError::Unavailable(HostError::TimedOut(_)))
        ));
    }

    #[test]
    fn no_entry_and_a_failed_refresh_is_an_error() {
        let host = FakeHost::default().with_probe(Err(HostError::ProbeFailed("no /proc".into())));
        assert!(matches!(
            get(&host, &local("n1")),
            Err(PolicyError::Unavailable(HostError::ProbeFailed(_)))
        ));
    }

    #[test]
    fn a_bad_max_age_is_a_config_error() {
        let host = FakeHost::default().with_config(MAX_AGE, "tomorrow");
        assert!(matches!(get(&host, &local("n1")), Err(PolicyError::BadConfig(_))));
    }

    #[test]
    fn describe_lists_every_parameter() {
        let names: Vec<_> = Default::describe()
            .parameters
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, [MAX_AGE, STALE_MAX_AGE]);
    }
}
