//! `resources`, `cpu-flags` and `can-run`: questions answered through the
//! policy, for one member or the whole cluster. `cpu-flags` is asked as
//! `serve` asks it (`crate::query`); this file gathers the report and prints.

use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use serde::Serialize;

use super::args::ResourcesFormat;
use super::context::{Context, Members};
use super::failure::Failure;
use super::print::{Bar, print, table};
use crate::api::Resources;
use crate::cluster::report::Provenance;
use crate::format;
use crate::model::PolicyError;
use crate::node_name::NodeName;
use crate::outputs::output::{FlagsFormat, FlagsOutput};
use crate::outputs::placement;
use crate::query::{Asker, FlagsRequest, default_arch};

pub(super) async fn resources(
    context: &Context,
    node: Option<&str>,
    format: ResourcesFormat,
) -> Result<(), Failure> {
    let members = context.members(None).await?;
    let cluster = &members.file.cluster;
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
    let policy = context.policy(&members, 1).await?;
    let outcome = policy
        .runtime
        .get_node_resources(policy.capabilities.clone(), &member.as_member())
        .await?;
    let resources =
        outcome.map_err(|failure: PolicyError| anyhow::Error::new(failure).context(member.name.clone()))?;
    tracing::info!(node = %member.name, source = %resources.source, age_ms = resources.age_ms, "resources");
    let outcome = MemberResources {
        name: member.name.to_string(),
        provenance: Provenance::of(Ok(&resources)),
        resources: Some(parse_document(&member.name, &resources.document)?),
    };
    match format {
        ResourcesFormat::Document => print(&format::pretty_json(&outcome.resources)),
        ResourcesFormat::Json => print(&format::pretty_json(&outcome)),
        ResourcesFormat::Table => print(&resources_table(&[outcome])),
    }
}

/// One member's outcome in `resources --all` and `--format json`.
#[derive(Serialize)]
struct MemberResources {
    name: String,
    #[serde(flatten)]
    provenance: Provenance,
    resources: Option<Resources>,
}

/// One line per node: where its document came from, how old it is, and
/// the hardware at a glance.
fn resources_table(outcomes: &[MemberResources]) -> String {
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|outcome| {
            let source = outcome.provenance.source.to_string();
            let age = outcome
                .provenance
                .age_seconds
                .map_or_else(|| "-".to_string(), format::rough_age);
            let (model, threads, sockets, memory) = match &outcome.resources {
                Some(resources) => (
                    resources
                        .cpu
                        .sockets
                        .first()
                        .map_or_else(|| "-".to_string(), |socket| socket.name.clone()),
                    resources.cpu.total.to_string(),
                    resources.cpu.sockets.len().to_string(),
                    format!("{:.1} GiB", resources.memory.total as f64 / f64::from(1u32 << 30)),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            vec![
                outcome.name.clone(),
                source,
                age,
                model,
                sockets,
                threads,
                memory,
                outcome.provenance.error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "SOURCE", "AGE", "CPU", "SOCKETS", "THREADS", "MEMORY", "ERROR",
        ],
        &rows,
    )
}

pub(super) async fn resources_all(context: &Context, format: ResourcesFormat) -> Result<(), Failure> {
    let members = context.members(None).await?;
    let policy = context.policy(&members, members.instances()).await?;
    let bar = Bar::for_members(members.file.cluster.members.len());
    let gathered = policy.gather(&members, &(bar.clone() as Arc<_>)).await?;
    drop(bar);
    let mut outcomes = Vec::with_capacity(gathered.len());
    for node in gathered {
        let resources = match &node.outcome {
            Ok(got) => Some(parse_document(&node.member.name, &got.document)?),
            Err(_) => None,
        };
        outcomes.push(MemberResources {
            name: node.member.name.to_string(),
            provenance: Provenance::of(node.outcome.as_ref()),
            resources,
        });
    }
    match format {
        ResourcesFormat::Table => print(&resources_table(&outcomes)),
        ResourcesFormat::Document | ResourcesFormat::Json => print(&format::pretty_json(&outcomes)),
    }
}

/// The policy hands documents back as text; a policy is a plugin, so check it.
fn parse_document(node: &NodeName, document: &str) -> anyhow::Result<Resources> {
    serde_json::from_str(document)
        .with_context(|| format!("{node}: the policy returned something that is not a resources document"))
}

/// `cpu-flags`' options, as parsed.
pub(super) struct FlagsOptions {
    pub output: FlagsOutput,
    pub arch: Option<String>,
    pub allow_partial: bool,
    pub group: Option<String>,
    pub apply: Option<Apply>,
}

/// `--apply`: set the answer's Incus keys on the group's Incus cluster group.
pub(super) struct Apply {
    /// `--yes`: make the change, not only show it.
    pub yes: bool,
}

pub(super) async fn cpu_flags(context: &Context, options: FlagsOptions) -> Result<(), Failure> {
    let FlagsOptions {
        output,
        arch,
        allow_partial,
        group,
        apply,
    } = options;
    // The question is checked whole before any member, or Incus, is asked.
    if apply.is_some() && output.format != FlagsFormat::Incus {
        return Err(Failure::usage(anyhow!(
            "--apply sets Incus keys: use it with --format incus"
        )));
    }
    let mut request = FlagsRequest::new(arch, allow_partial, output, Asker::Cli)?;
    let members = context.members(group.as_deref()).await?;
    request.output.this_node = members.this_node();
    let policy = context.policy(&members, members.instances()).await?;
    let bar = Bar::for_members(members.file.cluster.members.len());
    let mut report = policy.report(&members, &request.arch, bar.clone()).await?;
    drop(bar);
    report.group = group.clone();
    crate::cluster::baseline_change::track(&context.cache_root()?, &mut report, crate::util::clock::now_ms());
    let answer = tokio::task::spawn_blocking(move || request.answer(Arc::new(report)))
        .await
        .map_err(anyhow::Error::from)??;
    for warning in &answer.warnings {
        tracing::warn!("{warning}");
    }
    print(&answer.body.to_text())?;
    // clap makes --apply require --group; the format is incus, so the keys are there.
    if let (Some(Apply { yes }), Some(group), Some(keys)) = (apply, group.as_deref(), &answer.incus_keys) {
        let shown = crate::outputs::incus_group::apply(&members.file, group, keys, yes).await?;
        eprint!("{shown}");
    }
    Ok(())
}

/// The guest `can-run` places.
pub(super) enum Guest {
    /// These flags (Linux or QEMU names).
    Flags(String),
    /// `-cpu host` on this member.
    HostCpuOf(String),
}

pub(super) async fn can_run(
    context: &Context,
    guest: Guest,
    group: Option<&str>,
    output: FlagsFormat,
) -> Result<(), Failure> {
    if !matches!(output, FlagsFormat::List | FlagsFormat::Json) {
        return Err(Failure::usage(anyhow!(
            "can-run prints a table or JSON: --format list or json"
        )));
    }
    // Names are checked before any node is asked.
    let named = match &guest {
        Guest::Flags(flags) => {
            Some(placement::linux_names(flags).map_err(|why| Failure::usage(anyhow!(why)))?)
        }
        Guest::HostCpuOf(_) => None,
    };
    let members = context.members(group).await?;
    let policy = context.policy(&members, members.instances()).await?;
    let bar = Bar::for_members(members.file.cluster.members.len());
    let report = policy.report(&members, &default_arch(), bar.clone()).await?;
    drop(bar);
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
                .ok_or_else(|| Failure::usage(anyhow!(not_among(&members, &name))))?;
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

/// Why `name` is not among the members asked: outside the group given
/// (a member still), or no member at all.
fn not_among(members: &Members, name: &str) -> String {
    let in_file =
        |all: &crate::cluster_file::Cluster| all.members.iter().any(|member| member.name.to_string() == name);
    match &members.ungrouped {
        Some((group, all)) if in_file(all) => format!(
            "{name:?} is a member, but not of group {group} (its members: {})",
            members.file.cluster.names()
        ),
        _ => format!(
            "{name:?} is not a member (members: {})",
            members.file.cluster.names()
        ),
    }
}
