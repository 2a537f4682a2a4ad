//! The steps most policies are made of: read the entry (a fault is a miss),
//! refresh the node (probe or fetch, then write the cache), serve an old
//! entry when a refresh fails.

use crate::host::{Host, describe_error};
use crate::types::*;

/// The cache entry, or `None` when there is none or it cannot be used:
/// a corrupt or unreadable entry is a miss (logged), never an error.
pub fn usable_entry(host: &impl Host, node: &str) -> Option<CacheEntry> {
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

/// Probes (local member) or fetches (remote member) the node now and
/// rewrites its cache entry. A failed write is logged: the document is good.
pub fn refresh(host: &impl Host, node: &Member) -> Result<NodeResources, HostError> {
    let (document, source) = if node.local {
        (host.probe_local()?, Source::Local)
    } else {
        (host.fetch_remote(node)?, Source::Remote)
    };
    Ok(store(host, node, document, source))
}

/// Writes a fresh document to the cache and returns it as `source`, age 0.
pub fn store(host: &impl Host, node: &Member, document: Document, source: Source) -> NodeResources {
    if let Err(error) = host.cache_write(&node.name, &document) {
        host.log(
            LogLevel::Warn,
            &format!(
                "{}: could not write the cache ({})",
                node.name,
                describe_error(&error)
            ),
        );
    }
    NodeResources {
        document: document.body,
        source,
        age_ms: 0,
        refresh_error: None,
    }
}

/// A cache entry handed back as it is.
pub fn from_entry(entry: CacheEntry, source: Source, refresh_error: Option<HostError>) -> NodeResources {
    NodeResources {
        document: entry.document,
        source,
        age_ms: entry.age_ms,
        refresh_error,
    }
}

/// After a failed refresh: the entry, marked stale with the error, while it
/// is younger than `stale_max_age_ms`; otherwise the node is unavailable.
pub fn stale_or_unavailable(
    host: &impl Host,
    node: &Member,
    entry: Option<CacheEntry>,
    error: HostError,
    stale_max_age_ms: u64,
) -> Result<NodeResources, PolicyError> {
    match entry {
        Some(entry) if entry.age_ms < stale_max_age_ms => {
            host.log(
                LogLevel::Warn,
                &format!(
                    "{}: refresh failed ({}); serving the cached entry from {} s ago",
                    node.name,
                    describe_error(&error),
                    entry.age_ms / 1000
                ),
            );
            Ok(from_entry(entry, Source::Stale, Some(error)))
        }
        _ => Err(PolicyError::Unavailable(error)),
    }
}

/// The whole of a max-age policy: an entry younger than `max_age_ms` is
/// used as it is; an older one (or none) is refreshed; a failed refresh
/// serves the entry, marked stale, while it is younger than
/// `stale_max_age_ms`. The default policy is this; others use it for some
/// nodes (`local-fresh`, for members).
pub fn cached_or_refreshed(
    host: &impl Host,
    node: &Member,
    max_age_ms: u64,
    stale_max_age_ms: u64,
) -> Result<NodeResources, PolicyError> {
    let entry = usable_entry(host, &node.name);
    if let Some(entry) = &entry
        && entry.age_ms < max_age_ms
    {
        return Ok(from_entry(entry.clone(), Source::Cache, None));
    }
    refresh(host, node).or_else(|error| stale_or_unavailable(host, node, entry, error, stale_max_age_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::{FakeHost, local, remote};

    #[test]
    fn a_fault_is_a_logged_miss() {
        let host = FakeHost::default().with_fault("n1", CacheFault::Unreadable("denied".into()));
        assert_eq!(usable_entry(&host, "n1"), None);
        assert!(host.logged("unreadable"));
    }

    #[test]
    fn refresh_probes_the_local_member_and_fetches_a_remote_one() {
        let host = FakeHost::default()
            .with_probe(Ok("{\"p\":1}"))
            .with_fetch("n2", Ok("{\"f\":1}"));
        assert_eq!(refresh(&host, &local("n1")).unwrap().source, Source::Local);
        assert_eq!(refresh(&host, &remote("n2")).unwrap().source, Source::Remote);
        assert_eq!(host.written("n1").as_deref(), Some("{\"p\":1}"));
        assert_eq!(host.written("n2").as_deref(), Some("{\"f\":1}"));
    }

    #[test]
    fn a_failed_write_still_returns_the_document() {
        let host = FakeHost::default().with_probe(Ok("{}")).with_failing_writes();
        assert_eq!(refresh(&host, &local("n1")).unwrap().document, "{}");
        assert!(host.logged("could not write"));
    }

    #[test]
    fn stale_entries_are_served_only_below_their_limit() {
        let host = FakeHost::default().with_entry("n2", "{}", 10);
        let entry = host.cache_read("n2").unwrap();
        let error = HostError::TimedOut("5 s".into());
        let served = stale_or_unavailable(&host, &remote("n2"), entry.clone(), error.clone(), 11).unwrap();
        assert_eq!(served.source, Source::Stale);
        assert_eq!(served.refresh_error, Some(error.clone()));
        assert_eq!(
            stale_or_unavailable(&host, &remote("n2"), entry, error.clone(), 10),
            Err(PolicyError::Unavailable(error))
        );
    }
}
