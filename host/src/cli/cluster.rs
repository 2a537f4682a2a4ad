//! The cluster file's members as a whole: `cluster status` (each member's
//! state, as `incus cluster list` shows it) and `cluster
//! accept-certificate` (trust on first use, pinned into the file).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use anyhow::anyhow;
use futures::{FutureExt, StreamExt};

use super::args::TableFormat;
use super::context::Context;
use super::failure::Failure;
use super::print::{Bar, print, table};
use crate::cluster::gather::DEFAULT_CONCURRENCY;
use crate::cluster::pin_member;
use crate::cluster::report::{NodeSource, Provenance};
use crate::net::remote::Reachability;
use crate::net::{certificate, first_use, tls};
use crate::node_name::NodeName;

/// `cluster accept-certificate NODE`: the member's certificate, shown,
/// confirmed (a terminal's yes, `--fingerprint` matching, or `--yes`) and
/// pinned. A member pinned already is left alone when it presents the
/// pinned certificate and refused when it presents another: a changed
/// certificate is what pinning exists to catch.
pub(super) async fn accept_certificate(
    context: &Context,
    node: &str,
    expected: Option<&str>,
    yes: bool,
) -> Result<(), Failure> {
    let Some(path) = context.cluster_path() else {
        return Err(Failure::usage(anyhow!(
            "accept-certificate pins into a cluster file: give --cluster FILE (or NODECACHE_CLUSTER)"
        )));
    };
    let file = context.cluster_file()?.file;
    let node = NodeName::parse(node).map_err(|e| Failure::usage(anyhow!(e)))?;
    let member = file
        .cluster
        .find(&node)
        .ok_or_else(|| Failure::usage(anyhow!("{node} is not a member in {}", path.display())))?;
    let Some(url) = &member.url else {
        return Err(Failure::usage(anyhow!(
            "{node} has no url in {}: it is this machine, or asked through Incus",
            path.display()
        )));
    };
    let der = first_use::presented_certificate(url, file.deadline).await?;
    let seen = certificate::describe(der.as_ref())?;
    let shown = format!(
        "{node} at {url} presents\n  fingerprint: {}\n  subject: {}\n  expires: {}\n",
        seen.fingerprint, seen.subject, seen.expires
    );
    if let Some(pinned) = file.tls.member_certs.get(&node) {
        let pinned_fingerprints: Vec<String> = tls::load_certs(pinned)
            .map(|certs| certs.iter().map(|c| tls::fingerprint(c.as_ref())).collect())
            .unwrap_or_default();
        if pinned_fingerprints.contains(&seen.fingerprint) {
            return print(&format!(
                "{shown}already pinned: server-cert = {}\n",
                pinned.display()
            ));
        }
        return Err(anyhow!(
            "{shown}but {node} is pinned to {} ({}): refused. If the change is expected (the node \
             was reinstalled), compare the fingerprint with `nodecache identity` on {node}, remove \
             the server-cert line from its [[member]] entry, and accept again",
            pinned.display(),
            match pinned_fingerprints.as_slice() {
                [] => "unreadable".to_string(),
                fingerprints => fingerprints.join(", "),
            }
        )
        .into());
    }
    confirm(&shown, &seen.fingerprint, &node, expected, yes)?;
    let pem = pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.as_ref()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    let written = pin_member::pin(path, &node, &pem)?;
    print(&format!(
        "pinned {node}: {} (server-cert in {}); only this certificate answers for {node} from now on\n",
        written.display(),
        path.display()
    ))
}

/// The operator's confirmation: the fingerprint they expect, `--yes`, or
/// a `y` typed at a terminal after seeing the certificate.
fn confirm(
    shown: &str,
    presented: &str,
    node: &NodeName,
    expected: Option<&str>,
    yes: bool,
) -> Result<(), Failure> {
    if let Some(expected) = expected {
        let expected = expected.replace(':', "").to_ascii_lowercase();
        if expected != presented {
            return Err(anyhow!("{shown}not the expected {expected}: nothing pinned").into());
        }
        return Ok(());
    }
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(anyhow!(
            "{shown}no terminal to confirm on: give --fingerprint SHA256 (from `nodecache identity` \
             on {node}) or --yes"
        )));
    }
    eprint!("{shown}Pin this certificate for {node}? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(anyhow::Error::from)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(anyhow!("not confirmed: nothing pinned").into())
    }
}

/// One member in `cluster status`.
#[derive(Debug, serde::Serialize)]
struct MemberStatus {
    name: String,
    groups: Vec<String>,
    /// `local`, `online`, `untrusted` (it answers but does not trust
    /// this node's client certificate), `unreachable` or `offline` (Incus).
    reachable: &'static str,
    /// What the policy made of it: the source of its data (cache,
    /// revalidated, local, remote, stale), or error when it has none.
    source: NodeSource,
    age_seconds: Option<u64>,
    /// When the cache first saw this hardware (Unix seconds).
    hardware_changed_at: Option<u64>,
    /// Why it has no data, or why its refresh failed, or why it is unreachable.
    error: Option<String>,
}

/// `cluster status`: every member asked through the policy (as `resources
/// --all` does) and, at the same time, asked `GET /1.0` to tell whether it
/// answers and trusts this node; with what the cache knows of its hardware.
pub(super) async fn status(context: &Context, format: TableFormat) -> Result<(), Failure> {
    let members = context.members(None).await?;
    let policy = context.policy(&members, members.instances()).await?;
    let bar = Bar::for_members(members.file.cluster.members.len());
    let progress = bar.clone() as Arc<dyn crate::cluster::gather::Progress>;
    let remote = policy.capabilities.remote.clone();
    // Owned members and a boxed future: a stream over borrowed ones is not
    // general enough to be `Send` for the spawned command.
    let owned = members.file.cluster.members.clone();
    let reach = futures::stream::iter(owned.into_iter().map(move |member| {
        let remote = remote.clone();
        async move {
            if member.local {
                return ("local", None::<String>);
            }
            if let Some(why) = &member.offline {
                return ("offline", Some(why.clone()));
            }
            match remote.reachability(&member.name).await {
                Reachability::Trusted => ("online", None),
                Reachability::Untrusted => (
                    "untrusted",
                    Some(
                        "answers, but does not trust this node's client certificate (trust add it there)"
                            .into(),
                    ),
                ),
                Reachability::Unreachable(why) => ("unreachable", Some(why)),
            }
        }
    }))
    .buffered(DEFAULT_CONCURRENCY)
    .collect::<Vec<(&'static str, Option<String>)>>()
    .boxed();
    let gathered = policy.gather(&members, &progress);
    let (reach, gathered) = tokio::join!(reach, gathered);
    let gathered = gathered?;
    drop(bar);
    let now_ms = crate::util::clock::now_ms();
    let mut rows = Vec::with_capacity(gathered.len());
    for ((member, node), (reachable, unreachable)) in
        members.file.cluster.members.iter().zip(gathered).zip(reach)
    {
        let Provenance {
            source,
            age_seconds,
            error,
        } = Provenance::of(node.outcome.as_ref());
        // The entry's header alone: the policy has read the entry already.
        let hardware_since_ms = policy.capabilities.store.hardware_since_ms(&member.name);
        rows.push(MemberStatus {
            name: member.name.to_string(),
            groups: member.groups.clone(),
            reachable,
            source,
            age_seconds,
            hardware_changed_at: hardware_since_ms.map(|ms| ms / 1000),
            error: error.or(unreachable),
        });
    }
    let text = match format {
        TableFormat::Json => crate::format::pretty_json(&rows),
        TableFormat::Table => {
            let ago = |seconds: Option<u64>| match seconds {
                Some(seconds) => format!("{} ago", crate::format::rough_age(seconds)),
                None => "-".to_string(),
            };
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|row| {
                    vec![
                        row.name.clone(),
                        row.reachable.to_string(),
                        row.source.to_string(),
                        match row.age_seconds {
                            Some(age) => crate::format::rough_age(age),
                            None => "-".into(),
                        },
                        ago(row
                            .hardware_changed_at
                            .map(|at| (now_ms / 1000).saturating_sub(at))),
                        if row.groups.is_empty() {
                            "-".into()
                        } else {
                            row.groups.join(",")
                        },
                        row.error.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            table(
                &[
                    "NAME",
                    "REACHABLE",
                    "SOURCE",
                    "DATA AGE",
                    "HARDWARE CHANGED",
                    "GROUPS",
                    "ERROR",
                ],
                &cells,
            )
        }
    };
    print(&text)
}
