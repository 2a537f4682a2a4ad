//! The early-refresh policy: probabilistic early expiration ("XFetch",
//! Vattani, Chierichetti and Lowenstein, "Optimal Probabilistic Cache
//! Stampede Prevention", VLDB 2015). An entry is refreshed when
//!
//!     age + delta * beta * -ln(U) >= max-age,   U uniform in (0, 1]
//!
//! so the chance of an early refresh is exp(-(max-age - age) / (delta * beta)):
//! negligible for a young entry, rising as it nears max-age. Entries of a
//! large cluster written in one run then expire over many later runs
//! instead of all in the same one. U comes from the host's generator, which
//! the operator may seed, so a run can be repeated.

use nodecache_policy_sdk::steps::{from_entry, refresh, stale_or_unavailable, usable_entry};
use nodecache_policy_sdk::{
    Host, Member, NodeResources, Parameter, Policy, PolicyError, PolicyInfo, Source, config,
};

pub const MAX_AGE: &str = "max-age";
pub const BETA: &str = "beta";
pub const DELTA: &str = "delta";
pub const STALE_MAX_AGE: &str = "stale-max-age";

pub struct EarlyRefresh;

impl Policy for EarlyRefresh {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "early-refresh".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            parameters: vec![
                Parameter::new(MAX_AGE, "24h", "no entry is used past this age"),
                Parameter::new(
                    DELTA,
                    "max-age/10",
                    "the time scale of early refreshes: at max-age minus delta, a run refreshes an entry with probability 1/e (with beta 1)",
                ),
                Parameter::new(
                    BETA,
                    "1",
                    "above 1 refreshes earlier, below 1 later; 0 never early",
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
        let delta_ms = match host.config(DELTA) {
            Some(_) => config::duration_ms(host, DELTA, "0")?,
            None => max_age_ms / 10,
        };
        let beta = config::number(host, BETA, 1.0)?;
        let stale_max_age_ms = config::duration_ms(host, STALE_MAX_AGE, "7d")?;
        let entry = usable_entry(host, &node.name);
        if let Some(entry) = &entry
            && !expires_now(entry.age_ms, max_age_ms, delta_ms as f64 * beta, uniform(host))
        {
            return Ok(from_entry(entry.clone(), Source::Cache, None));
        }
        refresh(host, node).or_else(|error| stale_or_unavailable(host, node, entry, error, stale_max_age_ms))
    }
}

/// XFetch's test, with `scale_ms` = delta * beta.
pub fn expires_now(age_ms: u64, max_age_ms: u64, scale_ms: f64, uniform: f64) -> bool {
    age_ms as f64 + scale_ms * -uniform.ln() >= max_age_ms as f64
}

/// A uniform draw in (0, 1] from 53 random bits (never 0, whose log is -inf).
fn uniform(host: &impl Host) -> f64 {
    ((host.random_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
}

nodecache_policy_sdk::export_policy!(EarlyRefresh);

#[cfg(test)]
mod tests {
    use super::*;
    use nodecache_policy_sdk::fake_host::{FakeHost, remote};

    const HOUR_MS: u64 = 3_600_000;

    #[test]
    fn the_test_is_certain_at_both_ends() {
        assert!(expires_now(24 * HOUR_MS, 24 * HOUR_MS, 0.0, 1.0));
        assert!(!expires_now(24 * HOUR_MS - 1, 24 * HOUR_MS, 0.0, 0.5));
        // A young entry stays even on a draw as low as 1 in 1,000.
        assert!(!expires_now(0, 24 * HOUR_MS, 2.4 * HOUR_MS as f64, 0.001));
        assert!(expires_now(23 * HOUR_MS, 24 * HOUR_MS, 2.4 * HOUR_MS as f64, 0.1));
    }

    #[test]
    fn an_entry_past_max_age_is_always_refreshed_and_beta_0_never_early() {
        let host = FakeHost::default()
            .with_config(BETA, "0")
            .with_entry("n2", "{}", 24 * HOUR_MS - 1)
            .with_fetch("n2", Ok("{\"new\":1}"));
        for _ in 0..100 {
            assert_eq!(
                EarlyRefresh::get_node_resources(&host, &remote("n2"))
                    .unwrap()
                    .source,
                Source::Cache
            );
        }
        host.advance(1);
        assert_eq!(
            EarlyRefresh::get_node_resources(&host, &remote("n2"))
                .unwrap()
                .source,
            Source::Remote
        );
    }

    /// 1,000 entries written in one run, asked every 30 minutes: the
    /// refreshes spread over many runs before max-age instead of one.
    #[test]
    fn a_cluster_written_together_does_not_expire_together() {
        let host = FakeHost::default().with_seed(42);
        let nodes: Vec<String> = (0..1000).map(|i| format!("n{i}")).collect();
        let mut host = host;
        for name in &nodes {
            host = host.with_entry(name, "{}", 0).with_fetch(name, Ok("{}"));
        }
        let mut refreshed_per_run = Vec::new();
        for _run in 0..48 {
            host.advance(HOUR_MS / 2);
            let refreshed = nodes
                .iter()
                .filter(|name| {
                    EarlyRefresh::get_node_resources(&host, &remote(name))
                        .unwrap()
                        .source
                        == Source::Remote
                })
                .count();
            refreshed_per_run.push(refreshed);
        }
        let busiest = *refreshed_per_run.iter().max().unwrap();
        let runs_with_refreshes = refreshed_per_run.iter().filter(|&&n| n > 0).count();
        println!("refreshes per 30-min run over 24 h (seed 42): {refreshed_per_run:?}");
        assert!(busiest < 300, "busiest run refreshed {busiest} of 1000");
        assert!(runs_with_refreshes >= 8, "{refreshed_per_run:?}");
        // Hardly anything early: P = exp(-5) per entry and run at 12 h, exp(-6.7) at 8 h.
        assert!(
            refreshed_per_run[..16].iter().sum::<usize>() < 10,
            "{refreshed_per_run:?}"
        );
        assert!(
            refreshed_per_run[..24].iter().sum::<usize>() < 60,
            "{refreshed_per_run:?}"
        );
        // Every entry was refreshed by max-age (a few early ones twice).
        assert!(
            refreshed_per_run.iter().sum::<usize>() >= 1000,
            "{refreshed_per_run:?}"
        );
    }

    #[test]
    fn delta_and_beta_come_from_config() {
        let bad = FakeHost::default().with_config(BETA, "lots");
        assert!(matches!(
            EarlyRefresh::get_node_resources(&bad, &remote("n2")),
            Err(PolicyError::BadConfig(m)) if m.contains(BETA)
        ));
        let bad = FakeHost::default().with_config(DELTA, "soon");
        assert!(matches!(
            EarlyRefresh::get_node_resources(&bad, &remote("n2")),
            Err(PolicyError::BadConfig(m)) if m.contains(DELTA)
        ));
    }
}
