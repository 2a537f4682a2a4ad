//! `resources` and `cpu-flags`: questions answered through the policy, for
//! one member or the whole cluster.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Failure;
use super::args::{Cli, FlagsFormat};
use super::commands::{capabilities, load_policy, print};
use crate::cpu_flags::cpu_flags;
use crate::format;
use crate::gather::DEFAULT_CONCURRENCY;
use crate::membership::Membership;
use crate::model::PolicyFailure;
use crate::node_name::NodeName;

pub(super) async fn resources(
    cli: &Cli,
    membership: &Membership,
    config: BTreeMap<String, String>,
    node: Option<&str>,
) -> Result<(), Failure> {
    let cluster = &membership.cluster;
    let member = match node {
        None => cluster
            .local()
            .context("the cluster file names no local member: give a NODE")?,
        Some(name) => {
            let name = NodeName::parse(name).map_err(|e| Failure::usage(e.into()))?;
            cluster.find(&name).ok_or_else(|| {
                Failure::usage(anyhow!(
                    "node \"{name}\" is not a member of the cluster (members: {})",
                    cluster.names()
                ))
            })?
        }
    };
    let capabilities = capabilities(cli, config, membership)?;
    let runtime = load_policy(cli)?;
    let outcome = runtime
        .get_node_resources(capabilities, &member.as_member())
        .await?;
    let resources = outcome.map_err(|failure: PolicyFailure| anyhow!("{}: {failure}", member.name))?;
    let document: crate::api::Resources = serde_json::from_str(&resources.document).with_context(|| {
        format!(
            "{}: the policy returned something that is not a resources document",
            member.name
        )
    })?;
    tracing::info!(node = %member.name, source = %resources.source, age_ms = resources.age_ms, "resources");
    print(&format!(
        "{}\n",
        serde_json::to_string_pretty(&document).context("serialise")?
    ))
}

pub(super) async fn resources_all(
    cli: &Cli,
    membership: &Membership,
    config: BTreeMap<String, String>,
) -> Result<(), Failure> {
    let capabilities = capabilities(cli, config, membership)?;
    let runtime = load_policy(cli)?;
    let members: Vec<_> = membership.cluster.members.iter().map(|m| m.as_member()).collect();
    let progress = progress_bar(members.len());
    let gathered =
        crate::gather::gather(&runtime, capabilities, &members, DEFAULT_CONCURRENCY, &progress).await?;
    progress.finish_and_clear();
    let mut outcomes = Vec::with_capacity(gathered.len());
    for node in gathered {
        let entry = match node.outcome {
            Ok(resources) => serde_json::json!({
                "name": node.member.name.as_str(),
                "source": resources.source.to_string(),
                "age_seconds": resources.age_ms / 1000,
                "error": resources.refresh_error.map(|e| e.to_string()),
                "resources": serde_json::from_str::<serde_json::Value>(&resources.document)
                    .context("the policy returned a document that is not JSON")?,
            }),
            Err(error) => serde_json::json!({
                "name": node.member.name.as_str(), "source": "error", "age_seconds": null,
                "error": error.to_string(), "resources": null,
            }),
        };
        outcomes.push(entry);
    }
    print(&format!(
        "{}\n",
        serde_json::to_string_pretty(&outcomes).context("serialise")?
    ))
}

pub(super) async fn cpu_flags_command(
    cli: &Cli,
    membership: &Membership,
    config: BTreeMap<String, String>,
    output: FlagsFormat,
    arch: &str,
    allow_partial: bool,
) -> Result<(), Failure> {
    let capabilities = capabilities(cli, config, membership)?;
    let runtime = load_policy(cli)?;
    let progress = progress_bar(membership.cluster.members.len());
    let cluster = &membership.cluster;
    let report = cpu_flags(
        &runtime,
        capabilities,
        cluster,
        arch,
        DEFAULT_CONCURRENCY,
        &progress,
    )
    .await?;
    progress.finish_and_clear();
    let missing: Vec<String> = report
        .nodes_without_data()
        .iter()
        .map(|node| format!("{} ({})", node.name, node.error.as_deref().unwrap_or("no data")))
        .collect();
    if !missing.is_empty() && !allow_partial {
        return Err(Failure {
            code: 3,
            error: anyhow!(
                "no data for {} of {} nodes, so no flag set is safe for them: {} (--allow-partial computes over the rest)",
                missing.len(),
                report.nodes.len(),
                missing.join("; ")
            ),
        });
    }
    if !missing.is_empty() {
        tracing::warn!("partial result: without {}", missing.join("; "));
    }
    match output {
        FlagsFormat::List => print(&format::flag_list(&report.flags)),
        FlagsFormat::Json => print(&format::cpu_flags_json(&report)),
    }
}

/// A bar on stderr while asking many members; indicatif draws nothing when
/// stderr is not a terminal, so piped output stays clean.
fn progress_bar(members: usize) -> ProgressBar {
    if members < PROGRESS_THRESHOLD {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(members as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} asking nodes {bar:30} {pos}/{len} {elapsed}") {
        bar.set_style(style);
    }
    bar
}

/// Below this many members, a run is too quick for a bar to help.
const PROGRESS_THRESHOLD: usize = 8;
