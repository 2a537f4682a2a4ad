//! An example policy, longer than the README's: this machine is probed on
//! every call (a probe costs milliseconds, and it is never stale); a
//! member's entry is used for `remote-max-age` (1 h); when refreshing a
//! member fails, its entry is served, marked stale, up to `stale-max-age`
//! (2 d). Not embedded: build it and load it with `--policy`
//! (plugin/README.md, "A second example").
//!
//! What it shows of the SDK: [`Member::local`] to tell this machine from
//! the others, the shared [`steps`] (a refresh for this machine, the
//! default policy's max-age-then-stale for the members),
//! [`config`] for the operator's settings, and [`FakeHost`] tests that
//! move the clock.
//!
//! [`steps`]: nodecache_policy_sdk::steps
//! [`FakeHost`]: nodecache_policy_sdk::FakeHost

use nodecache_policy_sdk::steps::{cached_or_refreshed, refresh};
use nodecache_policy_sdk::{Host, Member, NodeResources, Parameter, Policy, PolicyError, PolicyInfo, config};

/// How long a member's entry is used without asking it.
pub const REMOTE_MAX_AGE: &str = "remote-max-age";
/// How long a member's entry may be served when it cannot be asked.
pub const STALE_MAX_AGE: &str = "stale-max-age";

/// The policy; the component's export is made by `export_policy!` below.
pub struct LocalFresh;

impl Policy for LocalFresh {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "local-fresh".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            parameters: vec![
                Parameter::new(
                    REMOTE_MAX_AGE,
                    "1h",
                    "a member's entry younger than this is used without asking it (this machine is always probed)",
                ),
                Parameter::new(
                    STALE_MAX_AGE,
                    "2d",
                    "when asking a member fails, its entry younger than this is served as stale",
                ),
            ],
        }
    }

    fn get_node_resources(host: &impl Host, node: &Member) -> Result<NodeResources, PolicyError> {
        // Settings first, so a bad one is the operator's error on every node.
        let remote_max_age_ms = config::duration_ms(host, REMOTE_MAX_AGE, "1h")?;
        let stale_max_age_ms = config::duration_ms(host, STALE_MAX_AGE, "2d")?;
        if node.local {
            // Probed and written (so `resources` and other policies see it);
            // with no entry to fall back on, a failed probe is the node's error.
            return refresh(host, node).map_err(PolicyError::Unavailable);
        }
        cached_or_refreshed(host, node, remote_max_age_ms, stale_max_age_ms)
    }
}

nodecache_policy_sdk::export_policy!(LocalFresh);

#[cfg(test)]
mod tests {
    use super::*;
    use nodecache_policy_sdk::HostError;
    use nodecache_policy_sdk::Source;
    use nodecache_policy_sdk::fake_host::{FakeHost, local, remote};

    const HOUR_MS: u64 = 3_600_000;
    const DAY_MS: u64 = 24 * HOUR_MS;

    fn get(host: &FakeHost, node: &Member) -> Result<NodeResources, PolicyError> {
        LocalFresh::get_node_resources(host, node)
    }

    #[test]
    fn this_machine_is_probed_on_every_call_even_with_a_fresh_entry() {
        let host = FakeHost::default()
            .with_entry("here", "{\"cached\":1}", 1_000)
            .with_probe(Ok("{\"probed\":1}"));
        for _ in 0..3 {
            let got = get(&host, &local("here")).unwrap();
            assert_eq!((got.source, got.age_ms), (Source::Local, 0));
            assert_eq!(got.document, "{\"probed\":1}");
        }
        assert_eq!(host.counts().probes, 3);
        assert_eq!(host.written("here").as_deref(), Some("{\"probed\":1}"));
    }

    #[test]
    fn a_failed_probe_is_the_nodes_error_not_a_stale_entry() {
        let host = FakeHost::default()
            .with_entry("here", "{\"cached\":1}", 1_000)
            .with_probe(Err(HostError::ProbeFailed("no /proc".into())));
        let error = get(&host, &local("here")).unwrap_err();
        assert_eq!(
            error,
            PolicyError::Unavailable(HostError::ProbeFailed("no /proc".into()))
        );
    }

    #[test]
    fn a_member_is_cached_for_an_hour_then_asked() {
        let host = FakeHost::default().with_fetch("b", Ok("{\"b\":1}"));
        assert_eq!(get(&host, &remote("b")).unwrap().source, Source::Remote);
        host.advance(HOUR_MS - 1);
        let cached = get(&host, &remote("b")).unwrap();
        assert_eq!((cached.source, cached.age_ms), (Source::Cache, HOUR_MS - 1));
        host.advance(1);
        assert_eq!(get(&host, &remote("b")).unwrap().source, Source::Remote);
        assert_eq!(host.counts().fetches, 2);
    }

    #[test]
    fn an_unreachable_member_is_served_stale_up_to_two_days_then_has_no_data() {
        let down = HostError::Unreachable("connection refused".into());
        let host = FakeHost::default().with_fetch("b", Ok("{\"b\":1}"));
        get(&host, &remote("b")).unwrap();
        host.set_fetch("b", Err(down.clone()));
        host.advance(2 * DAY_MS - 1);
        let stale = get(&host, &remote("b")).unwrap();
        assert_eq!(stale.source, Source::Stale);
        assert_eq!(stale.refresh_error, Some(down.clone()));
        assert_eq!(stale.document, "{\"b\":1}");
        host.advance(1);
        assert_eq!(
            get(&host, &remote("b")).unwrap_err(),
            PolicyError::Unavailable(down)
        );
    }

    #[test]
    fn the_operator_sets_both_ages() {
        let host = FakeHost::default()
            .with_config(REMOTE_MAX_AGE, "10m")
            .with_config(STALE_MAX_AGE, "1h")
            .with_fetch("b", Ok("{\"b\":1}"));
        get(&host, &remote("b")).unwrap();
        host.advance(10 * 60_000);
        assert_eq!(get(&host, &remote("b")).unwrap().source, Source::Remote);
        let bad = FakeHost::default().with_config(REMOTE_MAX_AGE, "soon");
        assert!(matches!(get(&bad, &remote("b")), Err(PolicyError::BadConfig(_))));
    }
}
