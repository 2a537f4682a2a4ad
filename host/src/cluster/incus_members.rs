//! Members from a real Incus cluster (`incus = "https://…"` in the cluster
//! file): its `GET /1.0/cluster/members?recursion=1`, asked on every run
//! (and by `serve` on every cluster request), so a member Incus gains,
//! loses or sees go offline needs no edit here.
//!
//! Each member Incus lists is then asked for its `/1.0/resources` at the
//! URL Incus gives, like any member, with the cluster file's `[tls]` (the
//! client certificate Incus trusts, the cluster certificate pinned): a
//! cluster of Incus servers is answered without nodecache on them. Incus's
//! cluster groups become nodecache groups (`--group`). A member Incus
//! reports offline is listed as such and not asked.

use anyhow::{Context, Result, anyhow};

use nodecache_input::cluster_file::ClusterFile;
pub use nodecache_input::incus_members::{merge, parse_members};

use crate::net::remote::{body_within, cluster_client, error_chain};

/// Adds the members `membership.incus` lists (nothing without it).
pub async fn add_members(membership: &mut ClusterFile) -> Result<()> {
    if membership.incus.is_none() {
        return Ok(());
    }
    let client = cluster_client(membership).context("the cluster file's [tls], for incus")?;
    add_members_with(membership, &client).await
}

/// As [`add_members`], asking Incus with `client` (the cluster file's
/// `[tls]`, built once by whoever asks often: `serve`).
pub async fn add_members_with(membership: &mut ClusterFile, client: &reqwest::Client) -> Result<()> {
    let Some(base) = membership.incus.clone() else {
        return Ok(());
    };
    let url = format!("{base}/1.0/cluster/members?recursion=1");
    let body = tokio::time::timeout(
        membership.deadline,
        read_bounded(client, &url, membership.max_response_bytes),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "{url} did not answer within {:.1} s",
            membership.deadline.as_secs_f64()
        )
    })??;
    // Parsing a member list of megabytes is CPU work: off the async workers.
    let listed = tokio::task::spawn_blocking(move || parse_members(&body))
        .await
        .context("parsing Incus's member list")?
        .map_err(|why| anyhow!("{url}: {why}"))?;
    merge(membership, listed)
}

async fn read_bounded(client: &reqwest::Client, url: &str, cap: u64) -> Result<Vec<u8>> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| anyhow!("{url}: {}", error_chain(&e)))?;
    Ok(body_within(response, url, cap).await?)
}
