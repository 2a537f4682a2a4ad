//! When a cached document is good enough, and what to do when a refresh fails.

use crate::bindings::{CacheEntry, CacheFault, HostError, LogLevel, Member};
use crate::bindings::{NodeResources, PolicyError, Source};
use crate::host::{Host, describe_error};
use crate::settings::Settings;

/// A node's resources: the cache entry while it is younger than `max-age`,
/// otherwise a fresh probe (local member) or fetch (remote member) that
/// replaces the entry. When the refresh fails, an entry younger than
/// `stale-max-age` is served and marked stale rather than failing the node.
pub fn get_node_resources(host: &impl Host, node: &Member) -> Result<NodeResources, PolicyError> {
    let settings = Settings::from_host(host)?;
    let cached = usable_entry(host, &node.name);
    if let Some(entry) = &cached
        && entry.age_ms < settings.max_age_ms
    {
        return Ok(from_entry(entry, Source::Cache, None));
    }
    match refresh(host, node) {
        Ok(resources) => Ok(resources),
        Err(error) => match cached {
            Some(entry) if entry.age_ms < settings.stale_max_age_ms => {
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "{}: refresh failed ({}); serving the cached entry from {} s ago",
                        node.name,
                        describe_error(&error),
                        entry.age_ms / 1000
                    ),
                );
                Ok(from_entry(&entry, Source::Stale, Some(error)))
            }
            _ => Err(PolicyError::Unavailable(error)),
        },
    }
}

/// The cache entry, or `None` when there is none or it cannot be used:
/// a corrupt or unreadable entry is a miss, never an error.
fn usable_entry(host: &impl Host, node: &str) -> Option<CacheEntry> {
    match host.cache_read(node) {
        Ok(entry) => entry,
        Err(CacheFault::Corrupt(why)) => {
            host.log(
                LogLevel::Warn,
                &format!("{node}: cache entry is corrupt ({why}); refreshing"),
            );
            None
        }
        Err(CacheFault::Unreadable(why)) => {
            host.log(
                LogLevel::Warn,
                &format!("{node}: cache entry is unreadable ({why}); refreshing"),
            );
            None
        }
    }
}

/// Probes or fetches the node now and rewrites its cache entry.
fn refresh(host: &impl Host, node: &Member) -> Result<NodeResources, HostError> {
    let (document, source) = if node.local {
        (host.probe_local()?, Source::Local)
    } else {
        (host.fetch_remote(node)?, Source::Remote)
    };
    if let Err(error) = host.cache_write(&node.name, &document) {
        // The document is good; only the next call pays for the failed write.
        host.log(
            LogLevel::Warn,
            &format!(
                "{}: could not write the cache ({})",
                node.name,
                describe_error(&error)
            ),
        );
    }
    Ok(NodeResources {
        document,
        source,
        age_ms: 0,
        refresh_error: None,
    })
}

fn from_entry(entry: &CacheEntry, source: Source, refresh_error: Option<HostError>) -> NodeResources {
    NodeResources {
        document: entry.document.clone(),
        source,
        age_ms: entry.age_ms,
        refresh_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::{FakeHost, local, remote};
    use crate::settings::{MAX_AGE, STALE_MAX_AGE};

    const DAY_MS: u64 = 86_400_000;

    #[test]
    fn an_entry_just_under_max_age_is_used() {
        let host = FakeHost::default().with_entry("n1", "{\"cached\":1}", DAY_MS - 1);
        let got = get_node_resources(&host, &local("n1")).unwrap();
        assert_eq!(got.source, Source::Cache);
        assert_eq!(got.document, "{\"cached\":1}");
        assert_eq!(got.age_ms, DAY_MS - 1);
        assert_eq!(host.probes(), 0);
        assert!(host.written("n1").is_none());
    }

    #[test]
    fn an_entry_at_or_over_max_age_is_refreshed() {
        for age in [DAY_MS, DAY_MS + 1] {
            let host = FakeHost::default()
                .with_entry("n1", "{\"cached\":1}", age)
                .with_probe(Ok("{\"probed\":1}"));
            let got = get_node_resources(&host, &local("n1")).unwrap();
            assert_eq!(got.source, Source::Local, "age {age}");
            assert_eq!(got.document, "{\"probed\":1}");
            assert_eq!(got.age_ms, 0);
            assert_eq!(host.written("n1").as_deref(), Some("{\"probed\":1}"));
        }
    }

    #[test]
    fn a_missing_entry_of_a_remote_node_is_fetched_and_cached() {
        let host = FakeHost::default().with_fetch("n2", Ok("{\"remote\":1}"));
        let got = get_node_resources(&host, &remote("n2")).unwrap();
        assert_eq!(got.source, Source::Remote);
        assert_eq!(host.probes(), 0);
        assert_eq!(host.written("n2").as_deref(), Some("{\"remote\":1}"));
    }

    #[test]
    fn a_corrupt_entry_is_a_miss_not_an_error() {
        let host = FakeHost::default()
            .with_fault("n1", CacheFault::Corrupt("truncated".into()))
            .with_probe(Ok("{\"probed\":1}"));
        let got = get_node_resources(&host, &local("n1")).unwrap();
        assert_eq!(got.source, Source::Local);
        assert!(host.logged("corrupt"));
    }

    #[test]
    fn an_unreadable_entry_is_a_miss_not_an_error() {
        let host = FakeHost::default()
            .with_fault("n1", CacheFault::Unreadable("permission denied".into()))
            .with_probe(Ok("{}"));
        assert_eq!(
            get_node_resources(&host, &local("n1")).unwrap().source,
            Source::Local
        );
    }

    #[test]
    fn max_age_from_config_is_honoured() {
        let host = FakeHost::default()
            .with_config(MAX_AGE, "60s")
            .with_entry("n1", "{}", 61_000)
            .with_probe(Ok("{\"probed\":1}"));
        assert_eq!(
            get_node_resources(&host, &local("n1")).unwrap().source,
            Source::Local
        );

        let host = FakeHost::default()
            .with_config(MAX_AGE, "60s")
            .with_entry("n1", "{}", 59_000);
        assert_eq!(
            get_node_resources(&host, &local("n1")).unwrap().source,
            Source::Cache
        );
    }

    #[test]
    fn a_failed_refresh_serves_a_stale_entry_with_its_error() {
        let failure = HostError::Unreachable("connection refused".into());
        let host = FakeHost::default()
            .with_entry("n2", "{\"old\":1}", 2 * DAY_MS)
            .with_fetch("n2", Err(failure.clone()));
        let got = get_node_resources(&host, &remote("n2")).unwrap();
        assert_eq!(got.source, Source::Stale);
        assert_eq!(got.age_ms, 2 * DAY_MS);
        assert_eq!(got.document, "{\"old\":1}");
        assert!(matches!(got.refresh_error, Some(HostError::Unreachable(_))));
    }

    #[test]
    fn an_entry_past_stale_max_age_is_not_served() {
        let host = FakeHost::default()
            .with_config(STALE_MAX_AGE, "2d")
            .with_entry("n2", "{}", 2 * DAY_MS)
            .with_fetch("n2", Err(HostError::TimedOut("5 s".into())));
        match get_node_resources(&host, &remote("n2")) {
            Err(PolicyError::Unavailable(HostError::TimedOut(_))) => {}
            other => panic!("expected the refresh error, got {other:?}"),
        }
    }

    #[test]
    fn no_entry_and_a_failed_refresh_is_an_error() {
        let host = FakeHost::default().with_probe(Err(HostError::ProbeFailed("no /proc".into())));
        assert!(matches!(
            get_node_resources(&host, &local("n1")),
            Err(PolicyError::Unavailable(HostError::ProbeFailed(_)))
        ));
    }

    #[test]
    fn a_failed_cache_write_still_returns_the_document() {
        let host = FakeHost::default()
            .with_probe(Ok("{\"probed\":1}"))
            .with_failing_writes();
        let got = get_node_resources(&host, &local("n1")).unwrap();
        assert_eq!(got.source, Source::Local);
        assert!(host.logged("could not write"));
    }

    #[test]
    fn a_bad_max_age_is_a_config_error() {
        let host = FakeHost::default().with_config(MAX_AGE, "tomorrow");
        assert!(matches!(
            get_node_resources(&host, &local("n1")),
            Err(PolicyError::BadConfig(_))
        ));
    }
}
