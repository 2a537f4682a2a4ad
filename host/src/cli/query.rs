//! `resources` and `cpu-flags`: questions answered through the policy, for
//! one member or the whole cluster.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::Failure;
use super::args::Cli;
use super::commands::{policy_and_capabilities, print};
use crate::api::Resources;
use crate::cpu_flags::{NodeSource, cpu_flags};
use crate::flags::output::{FlagsFormat, FlagsOutput};
use crate::flags::placement;
use crate::format;
use crate::gather::{DEFAULT_CONCURRENCY, gather};
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
    let (runtime, capabilities) = policy_and_capabilities(cli, membership, config, 1).await?;
    let outcome = runtime
        .get_node_resources(capabilities, &member.as_member())
        .await?;
    let resources =
        outcome.map_err(|failure: PolicyFailure| anyhow::Error::new(failure).context(member.name.clone()))?;
    tracing::info!(node = %member.name, source = %resources.source, age_ms = resources.age_ms, "resources");
    print(&format::pretty_json(&parse_document(
        &member.name,
        &resources.document,
    )?))
}

/// One member's outcome in `resources --all`.
#[derive(Serialize)]
struct MemberResources {
    name: String,
    source: NodeSource,
    age_seconds: Option<u64>,
    error: Option<String>,
    resources: Option<Resources>,
}

pub(super) async fn resources_all(
    cli: &Cli,
    membership: &Membership,
    config: BTreeMap<String, String>,
) -> Result<(), Failure> {
    let (runtime, capabilities) =
        policy_and_capabilities(cli, membership, config, instances_for(membership)).await?;
    let members: Vec<_> = membership.cluster.members.iter().map(|m| m.as_member()).collect();
    let progress = progress_bar(members.len());
    let gathered = gather(&runtime, capabilities, &members, DEFAULT_CONCURRENCY, &progress).await?;
    progress.finish_and_clear();
    let mut outcomes = Vec::with_capacity(gathered.len());
    for node in gathered {
        let name = node.member.name.to_string();
        outcomes.push(match node.outcome {
            Ok(got) => MemberResources {
                resources: Some(parse_document(&node.member.name, &got.document)?),
                source: got.source.into(),
                age_seconds: Some(got.age_ms / 1000),
                error: got.refresh_error.map(|e| e.to_string()),
                name,
            },
            Err(error) => MemberResources {
                name,
                source: NodeSource::Error,
                age_seconds: None,
                error: Some(error.to_string()),
                resources: None,
            },
        });
    }
    print(&format::pretty_json(&outcomes))
}

/// The policy hands documents back as text; a policy is a plugin, so check it.
fn parse_document(node: &NodeName, document: &str) -> anyhow::Result<Resources> {
    serde_json::from_str(document)
        .with_context(|| format!("{node}: the policy returned something that is not a resources document"))
}

pub(super) async fn cpu_flags_command(
    cli: &Cli,
    membership: &Membership,
    config: BTreeMap<String, String>,
    output: FlagsOutput,
    arch: &str,
    allow_partial: bool,
) -> Result<String, Failure> {
    let (runtime, capabilities) =
        policy_and_capabilities(cli, membership, config, instances_for(membership)).await?;
    let progress = progress_bar(membership.cluster.members.len());
    let cluster = &membership.cluster;
    let report = cpu_flags(
        &runtime,
        capabilities,
        cluster,
        arch,
        DEFAULT_CONCURRENCY,
        None,
        &progress,
    )
    .await?;
    progress.finish_and_clear();
    let missing: Vec<String> = report
        .nodes_without_data()
        .iter()
        .map(|node| format!("{} ({})", node.name, node.error.as_deref().unwrap_or("no data")))
        .collect();
    if !report.answerable(allow_partial) {
        return Err(Failure {
            code: 3,
            error: anyhow!(
                "no data for {} of {} nodes, so no flag set is safe for them: {} ({})",
                missing.len(),
                report.nodes.len(),
                crate::format::capped_list(&missing, "; ", crate::format::LISTED),
                report.partial_hint("--allow-partial")
            ),
        });
    }
    if !missing.is_empty() {
        tracing::warn!(
            "partial result: without {}",
            crate::format::capped_list(&missing, "; ", crate::format::LISTED)
        );
    }
    for warning in output.warnings(&report) {
        tracing::warn!("{warning}");
    }
    let mut report = report;
    let text = tokio::task::spawn_blocking(move || output.render(&mut report))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(|e| {
            // A baseline QEMU does not define is a usage error.
            if e.downcast_ref::<crate::flags::qemu_answers::UnknownModel>()
                .is_some()
            {
                Failure::usage(e)
            } else {
                Failure::from(e)
            }
        })?;
    print(&text)?;
    Ok(text)
}

/// Instances alive at once for a whole-cluster question: one per member
/// asked concurrently, and one for the intersection.
fn instances_for(membership: &Membership) -> usize {
    membership.cluster.members.len().min(DEFAULT_CONCURRENCY) + 1
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

/// The guest `can-run` places.
pub(super) enum Guest {
    /// These flags (Linux or QEMU names).
    Flags(String),
    /// `-cpu host` on this member.
    HostCpuOf(String),
}

pub(super) async fn can_run_command(
    cli: &Cli,
    membership: &Membership,
    config: BTreeMap<String, String>,
    guest: Guest,
    output: FlagsFormat,
) -> Result<(), Failure> {
    // Names are checked before any node is asked.
    let named = match &guest {
        Guest::Flags(flags) => {
            Some(placement::linux_names(flags).map_err(|why| Failure::usage(anyhow!(why)))?)
        }
        Guest::HostCpuOf(_) => None,
    };
    let (runtime, capabilities) =
        policy_and_capabilities(cli, membership, config, instances_for(membership)).await?;
    let progress = progress_bar(membership.cluster.members.len());
    let arch = std::env::consts::ARCH;
    let report = cpu_flags(
        &runtime,
        capabilities,
        &membership.cluster,
        arch,
        DEFAULT_CONCURRENCY,
        None,
        &progress,
    )
    .await?;
    progress.finish_and_clear();
    let required = match (guest, named) {
        (_, Some(named)) => {
            let unknown = placement::unknown_names(&named, &report);
            if !unknown.is_empty() {
                return Err(Failure::usage(anyhow!(
                    "--flags: {} {} not a CPU flag Linux, QEMU or any node knows",
                    crate::format::capped_list(&unknown, ", ", crate::format::LISTED),
                    if unknown.len() == 1 { "is" } else { "are" }
                )));
            }
            named
        }
        (Guest::Flags(_), None) => unreachable!("named above"),
        (Guest::HostCpuOf(name), None) => {
            let node = report
                .nodes
                .iter()
                .find(|node| node.name == name)
                .ok_or_else(|| {
                    Failure::usage(anyhow!(
                        "{name:?} is not a member (members: {})",
                        membership.cluster.names()
                    ))
                })?;
            let flags = node.guest_flags().ok_or_else(|| {
                anyhow!(
                    "no data for {name}, so its host CPU is unknown: {}",
                    node.error.as_deref().unwrap_or("another architecture")
                )
            })?;
            placement::host_cpu_of(&flags)
        }
    };
    if !report.hypervisor_stand_ins.is_empty() {
        tracing::warn!(
            "host flags stand in for what these nodes' hypervisors can give a guest: {}",
            crate::format::capped_list(&report.hypervisor_stand_ins, ", ", crate::format::LISTED)
        );
    }
    let placement = placement::place(&report, required);
    match output {
        FlagsFormat::Json => print(&format::pretty_json(&placement)),
        _ => print(&placement::table(&placement)),
    }
}
