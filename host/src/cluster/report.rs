//! `cpu-flags`: gather every member (each document summarised as it
//! arrives), let the policy intersect, check what it answered, and report
//! each node's provenance.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Result, bail};
use serde::Serialize;

use nodecache_policy_sdk::intersect::common_to_all;

use crate::api::cpu_summary::{self, CpuSummary, SummaryError};
use crate::cluster::gather::{Progress, gather_with};
use crate::cluster_file::Cluster;
use crate::model::{
    ClusterFlags, HostError, NodeOutcome, NodeReport, NodeResources, NodeVerdict, ResolvedNode, Source,
};
use crate::runtime::PolicyRuntime;
use crate::runtime::capabilities::Capabilities;

/// The cluster's common flags and how every node took part.
#[derive(Debug, Clone, Serialize)]
pub struct CpuFlagsReport {
    pub arch: String,
    pub flags: Vec<String>,
    /// The x86-64 psABI level of the common set (x86_64 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Common flags the kernel synthesises (no single CPUID bit): no
    /// hypervisor can set them, so the hypervisor outputs leave them out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernel_synthesised: Vec<String>,
    /// Common flags that are CPUID bits QEMU has no property for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_to_qemu: Vec<String>,
    /// What every included node's hypervisor can give a migratable guest
    /// (x86_64): the VM formats, `--baseline` and `--level` are made from
    /// it. A node without a hypervisor set has its host flags stand in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_flags: Option<Vec<String>>,
    /// Included nodes whose host flags stood in for a hypervisor set they
    /// do not have (a plain Incus server, a node without `/dev/kvm`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hypervisor_stand_ins: Vec<String>,
    /// The included nodes by CPU vendor (the document's `vendor` field): a
    /// cluster mixing Intel and AMD can migrate only a guest with a CPU of
    /// neither vendor's models.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub vendors: BTreeMap<String, Vec<String>>,
    /// Features of `guest_flags` known to vanish from running fleets (see
    /// `flags::fragile`), with why.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fragile: BTreeMap<String, &'static str>,
    /// The x86-64 level of `guest_flags`: what a guest can be given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_level: Option<String>,
    /// The fewest physical address bits of the included nodes that say
    /// (a guest's `phys-bits` must fit every node it may run on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physical_bits: Option<u32>,
    /// The group (`--group`) the answer is for; absent for the whole cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// True when some node had no data: the flags were computed over the rest.
    pub partial: bool,
    /// How the common set differs from the one last computed for this
    /// cluster or group, and why (`baseline_change`); empty when it does not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<crate::baselines::BaselineChange>,
    /// Nodes whose policy call broke (trap, budget, deadline), for counting.
    #[serde(skip)]
    pub policy_failures: usize,
    pub nodes: Vec<NodeStatus>,
}

/// This machine in the cluster file (its local member) and its groups:
/// the node an NFD feature file describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThisNode {
    pub name: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub source: NodeSource,
    pub age_seconds: Option<u64>,
    pub arch: Option<String>,
    pub error: Option<String>,
    /// The node's own x86-64 level (flags on every one of its cores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Where the node's guest set came from, when it took part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<GuestSource>,
    /// The level of what this node can give a guest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_level: Option<String>,
    /// Why a stand-in node has no hypervisor set, in its own words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypervisor_unavailable: Option<String>,
    /// The node's CPU, when it took part: for levels and explanations.
    #[serde(skip)]
    pub cpu: Option<CpuSummary>,
}

impl NodeStatus {
    /// The flags every core of this node has, when it took part.
    pub fn flags(&self) -> Option<BTreeSet<&str>> {
        let cpu = self.cpu.as_ref()?;
        let groups = cpu.core_groups.iter().filter(|group| group.cores > 0);
        let common = common_to_all(groups.map(|group| group.flags()))?;
        Some(common.into_iter().collect())
    }

    /// `stale, 2 d old` when the node was served from an entry it could not
    /// refresh (its data may no longer be its hardware's).
    pub fn staleness(&self) -> Option<String> {
        if self.source != NodeSource::Stale {
            return None;
        }
        Some(match self.age_seconds {
            Some(age) => format!("stale, {} old", crate::format::rough_age(age)),
            None => "stale".to_string(),
        })
    }

    /// What this node can give a guest: its hypervisor set, or (a
    /// stand-in) its host flags, when it took part.
    pub fn guest_flags(&self) -> Option<BTreeSet<&str>> {
        match self.cpu.as_ref()?.hypervisor.as_ref() {
            Some(set) if set.unavailable.is_none() => Some(set.flags().collect()),
            _ => self.flags(),
        }
    }
}

/// Where a node's guest set came from, as printed in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestSource {
    /// Its hypervisor's own set.
    Kvm,
    /// Its host flags: it has no hypervisor set.
    StandIn,
}

/// Where a node's part of an answer came from, as printed in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeSource {
    Cache,
    Revalidated,
    Local,
    Remote,
    Stale,
    /// No usable data: the answer cannot vouch for this node.
    Error,
    /// Another architecture than the one asked for.
    Excluded,
}

/// Where one gathered node's document came from, how old it is, and what
/// went wrong: a node as `resources` and `cluster status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub source: NodeSource,
    pub age_seconds: Option<u64>,
    /// Why it has no data, or why its refresh failed.
    pub error: Option<String>,
}

impl Provenance {
    pub fn of(outcome: Result<&crate::model::NodeResources, &crate::model::HostError>) -> Provenance {
        match outcome {
            Ok(got) => Provenance {
                source: got.source.into(),
                age_seconds: Some(got.age_ms / 1000),
                error: got.refresh_error.as_ref().map(|e| e.to_string()),
            },
            Err(error) => Provenance {
                source: NodeSource::Error,
                age_seconds: None,
                error: Some(error.to_string()),
            },
        }
    }
}

impl std::fmt::Display for NodeSource {
    /// As the JSON spells it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeSource::Cache => "cache",
            NodeSource::Revalidated => "revalidated",
            NodeSource::Local => "local",
            NodeSource::Remote => "remote",
            NodeSource::Stale => "stale",
            NodeSource::Error => "error",
            NodeSource::Excluded => "excluded",
        })
    }
}

#[cfg(test)]
mod node_source_tests {
    use super::NodeSource;

    /// Logs and tables print a source as the JSON spells it.
    #[test]
    fn a_source_displays_as_its_json() {
        for source in [
            NodeSource::Cache,
            NodeSource::Revalidated,
            NodeSource::Local,
            NodeSource::Remote,
            NodeSource::Stale,
            NodeSource::Error,
            NodeSource::Excluded,
        ] {
            assert_eq!(serde_json::to_value(source).unwrap(), source.to_string());
        }
    }
}

impl From<Source> for NodeSource {
    fn from(source: Source) -> Self {
        match source {
            Source::Cache => NodeSource::Cache,
            Source::Revalidated => NodeSource::Revalidated,
            Source::Local => NodeSource::Local,
            Source::Remote => NodeSource::Remote,
            Source::Stale => NodeSource::Stale,
        }
    }
}

impl CpuFlagsReport {
    /// The CPU vendor of every included node, when they share one: a
    /// named model is one vendor's.
    pub fn one_vendor(&self) -> Option<&str> {
        match self.vendors.len() {
            1 => self.vendors.keys().next().map(String::as_str),
            _ => None,
        }
    }

    /// The report with each x86_64 node's own levels, made once before
    /// the report is shared (for JSON, `--level` and `--explain`; a
    /// thousand nodes' flag sets are not worth making for a plain list).
    pub fn with_node_levels(mut self) -> CpuFlagsReport {
        if self.arch != "x86_64" {
            return self;
        }
        for node in &mut self.nodes {
            node.level = node
                .flags()
                .and_then(|flags| crate::machine::level::level(|flag| flags.contains(flag)))
                .map(str::to_string);
            node.guest_level = node
                .guest_flags()
                .and_then(|flags| crate::machine::level::level(|flag| flags.contains(flag)))
                .map(str::to_string);
        }
        self
    }

    /// Nodes the common set cannot vouch for.
    pub fn nodes_without_data(&self) -> Vec<&NodeStatus> {
        self.nodes
            .iter()
            .filter(|node| node.source == NodeSource::Error)
            .collect()
    }
}

pub async fn cpu_flags(
    runtime: &Arc<PolicyRuntime>,
    capabilities: Arc<Capabilities>,
    cluster: &Cluster,
    architecture: &str,
    concurrency: usize,
    cutoff: Option<tokio::time::Instant>,
    progress: &Arc<dyn Progress>,
) -> Result<CpuFlagsReport> {
    let members: Vec<_> = cluster.members.iter().map(|m| m.as_member()).collect();
    let policy = runtime.origin().to_string();
    let gathered = gather_with(
        runtime,
        capabilities.clone(),
        &members,
        concurrency,
        cutoff,
        progress,
        move |resources| resolve(resources, &policy),
    )
    .await?;
    let reports: Vec<NodeReport> = gathered
        .into_iter()
        .map(|gathered| NodeReport {
            name: gathered.member.name.to_string(),
            outcome: gathered.outcome,
        })
        .collect();
    let policy_failures = reports
        .iter()
        .filter(|report| matches!(report.outcome, Err(HostError::PolicyFailed(_))))
        .count();
    let common = runtime
        .cluster_cpu_flags(capabilities, &reports, architecture)
        .await?;
    let verdicts = checked_verdicts(&reports, &common, architecture)
        .map_err(|problem| anyhow::anyhow!("policy {}: cluster-cpu-flags {problem}", runtime.origin()))?;
    let nodes: Vec<NodeStatus> = reports
        .into_iter()
        .zip(verdicts)
        .map(|(report, verdict)| node_status(report, verdict))
        .collect();
    let partial = nodes.iter().any(|node| node.source == NodeSource::Error);
    let (guest_flags, hypervisor_stand_ins) = if common.architecture == "x86_64" {
        let (flags, stand_ins) = guest_set(&nodes);
        (Some(flags), stand_ins)
    } else {
        (None, Vec::new())
    };
    let x86 = common.architecture == "x86_64";
    let (kernel_synthesised, unknown_to_qemu) = if x86 {
        crate::machine::names::unsettable(&common.flags)
    } else {
        Default::default()
    };
    Ok(CpuFlagsReport {
        level: x86
            .then(|| crate::machine::level::level(|flag| common.flags.iter().any(|f| f == flag)))
            .flatten()
            .map(str::to_string),
        arch: common.architecture,
        flags: common.flags,
        kernel_synthesised,
        unknown_to_qemu,
        guest_level: guest_flags
            .as_ref()
            .and_then(|flags| crate::machine::level::level(|flag| flags.iter().any(|f| f == flag)))
            .map(str::to_string),
        vendors: vendors(&nodes),
        physical_bits: nodes
            .iter()
            .filter(|node| node.source != NodeSource::Excluded)
            .filter_map(|node| node.cpu.as_ref()?.physical_bits)
            .min(),
        fragile: guest_flags
            .as_deref()
            .map(crate::machine::fragile::among)
            .unwrap_or_default(),
        guest_flags,
        hypervisor_stand_ins,
        group: None,
        partial,
        changes: Vec::new(),
        policy_failures,
        nodes,
    })
}

/// The intersection of what the included nodes can give a guest, and the
/// nodes whose host flags stood in for it. Made here, not by the policy:
/// contract 0.2 carries the CPUs' flags alone.
fn guest_set(nodes: &[NodeStatus]) -> (Vec<String>, Vec<String>) {
    let taking_part: Vec<(&NodeStatus, BTreeSet<&str>)> = nodes
        .iter()
        .filter_map(|node| Some((node, node.guest_flags()?)))
        .collect();
    let stand_ins = taking_part
        .iter()
        .filter(|(node, _)| node.hypervisor == Some(GuestSource::StandIn))
        .map(|(node, _)| node.name.clone())
        .collect();
    let common = common_to_all(taking_part.iter().map(|(_, flags)| flags.iter().copied()));
    let flags = common
        .unwrap_or_default()
        .into_iter()
        .map(str::to_string)
        .collect();
    (flags, stand_ins)
}

/// The included nodes by CPU vendor, each list in report order.
fn vendors(nodes: &[NodeStatus]) -> BTreeMap<String, Vec<String>> {
    let mut vendors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in nodes {
        if let Some(vendor) = node.cpu.as_ref().and_then(|cpu| cpu.vendor.as_ref()) {
            vendors.entry(vendor.clone()).or_default().push(node.name.clone());
        }
    }
    vendors
}

/// A policy is a plugin: it answers for every report, by name, exactly once;
/// it includes only nodes that have data and the architecture asked for,
/// and never excludes one of that architecture; and every flag it calls
/// common is on every core of every node it included. Returns the verdicts
/// in report order, or what is wrong.
pub fn checked_verdicts<'a>(
    reports: &[NodeReport],
    answer: &'a ClusterFlags,
    architecture: &str,
) -> Result<Vec<&'a NodeVerdict>> {
    let members: HashSet<&str> = reports.iter().map(|report| report.name.as_str()).collect();
    let mut by_name: HashMap<&str, &NodeVerdict> = HashMap::with_capacity(answer.nodes.len());
    for NodeOutcome { name, verdict } in &answer.nodes {
        if by_name.insert(name.as_str(), verdict).is_some() {
            bail!("returned two verdicts for node {name:?}");
        }
        if !members.contains(name.as_str()) {
            bail!("returned a verdict for {name:?}, which is not a member");
        }
    }
    let mut verdicts = Vec::with_capacity(reports.len());
    let mut included: Vec<&ResolvedNode> = Vec::new();
    for report in reports {
        let Some(&verdict) = by_name.get(report.name.as_str()) else {
            bail!("returned no verdict for node {:?}", report.name);
        };
        match (verdict, &report.outcome) {
            (NodeVerdict::Included, Err(_)) => bail!("included node {:?}, which has no data", report.name),
            (NodeVerdict::Included, Ok(node)) if node.cpu.architecture != architecture => bail!(
                "included node {:?} of architecture {}, not {architecture}",
                report.name,
                node.cpu.architecture
            ),
            (NodeVerdict::Included, Ok(node)) => included.push(node),
            (NodeVerdict::ExcludedArch(_), Ok(node)) if node.cpu.architecture == architecture => {
                bail!("excluded node {:?}, which is {architecture}", report.name)
            }
            _ => {}
        }
        verdicts.push(verdict);
    }
    if answer.architecture != architecture {
        bail!(
            "answered for architecture {:?}, not {architecture:?}",
            answer.architecture
        );
    }
    if included.is_empty() && !answer.flags.is_empty() {
        bail!("returned flags without including any node");
    }
    // Group flags are sorted (CpuSummary sorts them): one merge walk for
    // each distinct flag list, however many nodes share it.
    let mut answered: Vec<&str> = answer.flags.iter().map(String::as_str).collect();
    answered.sort_unstable();
    let mut checked: HashSet<&str> = HashSet::new();
    for node in &included {
        for group in node.cpu.core_groups.iter().filter(|group| group.cores > 0) {
            if !checked.insert(&group.flags) {
                continue;
            }
            if let Some(flag) = first_missing(&answered, group.flags()) {
                bail!("returned flag {flag:?}, which some core of an included node lacks");
            }
        }
    }
    Ok(verdicts)
}

/// The first of the sorted `wanted` that the sorted `have` lacks.
fn first_missing<'a, 'b>(wanted: &[&'a str], have: impl Iterator<Item = &'b str>) -> Option<&'a str> {
    let mut have = have.peekable();
    for &flag in wanted {
        while have.next_if(|h| *h < flag).is_some() {}
        if have.peek() != Some(&flag) {
            return Some(flag);
        }
    }
    None
}

/// What the policy intersects for one node: its document's summary (the
/// one the cache kept, or made now), the document dropped. A document the
/// policy returned that is not a resources document fails that node, naming
/// the policy.
fn resolve(resources: NodeResources, policy: &str) -> Result<ResolvedNode, HostError> {
    let summary = match resources.summary {
        Some(summary) => Ok(summary),
        None => cpu_summary::from_document(&resources.document),
    };
    let cpu = summary.map_err(|e| match e {
        SummaryError::Json(e) => HostError::BadResponse(format!(
            "policy {policy} returned something that is not a resources document: {e}"
        )),
        not_a_name @ (SummaryError::NotAFlag(_) | SummaryError::NotAnArchitecture(_)) => {
            HostError::BadResponse(not_a_name.to_string())
        }
    })?;
    Ok(ResolvedNode {
        source: resources.source,
        age_ms: resources.age_ms,
        refresh_error: resources.refresh_error,
        cpu,
    })
}

/// A node's line in the report; an included node keeps its CPU summary
/// (levels and explanations are made from it).
fn node_status(report: NodeReport, verdict: &NodeVerdict) -> NodeStatus {
    let (source, error) = match (verdict, &report.outcome) {
        (NodeVerdict::Included, Ok(node)) => (
            node.source.into(),
            node.refresh_error.as_ref().map(|e| e.to_string()),
        ),
        (NodeVerdict::ExcludedArch(_), _) => (NodeSource::Excluded, None),
        // A node the host could not get is told in the host's words: the
        // policy only saw them through its contract ("policy failed" became
        // "bad response: policy failed").
        (NodeVerdict::NoData(_) | NodeVerdict::Included, Err(e)) => (NodeSource::Error, Some(e.to_string())),
        (NodeVerdict::NoData(why), Ok(_)) => (NodeSource::Error, Some(why.clone())),
    };
    let resolved = report.outcome.ok();
    let took_part = !matches!(source, NodeSource::Error | NodeSource::Excluded);
    let hypervisor = resolved
        .as_ref()
        .filter(|_| took_part)
        .map(|node| node.cpu.hypervisor.as_ref());
    let (hypervisor, hypervisor_unavailable) = match hypervisor {
        None => (None, None),
        Some(Some(set)) if set.unavailable.is_none() => (Some(GuestSource::Kvm), None),
        Some(Some(set)) => (Some(GuestSource::StandIn), set.unavailable.clone()),
        Some(None) => (
            Some(GuestSource::StandIn),
            Some("its document has no hypervisor set (not a nodecache node)".to_string()),
        ),
    };
    NodeStatus {
        name: report.name,
        source,
        age_seconds: resolved.as_ref().map(|node| node.age_ms / 1000),
        arch: resolved.as_ref().map(|node| node.cpu.architecture.clone()),
        error,
        level: None,
        hypervisor,
        guest_level: None,
        hypervisor_unavailable,
        cpu: resolved.filter(|_| took_part).map(|node| node.cpu),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cpu_summary::CoreGroup;

    fn report(name: &str, architecture: &str, flags: &[&str]) -> NodeReport {
        NodeReport {
            name: name.into(),
            outcome: Ok(ResolvedNode {
                source: Source::Cache,
                age_ms: 0,
                refresh_error: None,
                cpu: CpuSummary {
                    architecture: architecture.into(),
                    core_groups: vec![CoreGroup::new(2, flags)],
                    hypervisor: None,
                    vendor: None,
                    physical_bits: None,
                },
            }),
        }
    }

    fn dead(name: &str) -> NodeReport {
        NodeReport {
            name: name.into(),
            outcome: Err(HostError::Unreachable("refused".into())),
        }
    }

    fn answer(flags: &[&str], verdicts: &[(&str, NodeVerdict)]) -> ClusterFlags {
        ClusterFlags {
            architecture: "x86_64".into(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            nodes: verdicts
                .iter()
                .map(|(name, verdict)| NodeOutcome {
                    name: name.to_string(),
                    verdict: verdict.clone(),
                })
                .collect(),
        }
    }

    fn problem(reports: &[NodeReport], answer: &ClusterFlags) -> String {
        checked_verdicts(reports, answer, "x86_64")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_honest_answer_passes_in_report_order() {
        let reports = [
            report("a", "x86_64", &["sse2", "avx"]),
            report("arm", "aarch64", &["fp"]),
            dead("c"),
        ];
        let honest = answer(
            &["sse2"],
            &[
                ("c", NodeVerdict::NoData("refused".into())),
                ("a", NodeVerdict::Included),
                ("arm", NodeVerdict::ExcludedArch("aarch64".into())),
            ],
        );
        let verdicts = checked_verdicts(&reports, &honest, "x86_64").unwrap();
        assert_eq!(verdicts[0], &NodeVerdict::Included);
        assert_eq!(verdicts[2], &NodeVerdict::NoData("refused".into()));
    }

    #[test]
    fn hostile_verdict_lists_are_named() {
        let reports = [report("a", "x86_64", &["sse2"]), dead("b")];
        let missing = answer(&["sse2"], &[("a", NodeVerdict::Included)]);
        assert!(problem(&reports, &missing).contains("no verdict for node \"b\""));
        let twice = answer(
            &[],
            &[
                ("a", NodeVerdict::Included),
                ("a", NodeVerdict::Included),
                ("b", NodeVerdict::NoData("x".into())),
            ],
        );
        assert!(problem(&reports, &twice).contains("two verdicts"));
        let extra = answer(
            &[],
            &[
                ("a", NodeVerdict::Included),
                ("b", NodeVerdict::NoData("x".into())),
                ("z", NodeVerdict::Included),
            ],
        );
        assert!(problem(&reports, &extra).contains("\"z\", which is not a member"));
    }

    #[test]
    fn invented_flags_and_vouching_for_dead_nodes_are_refused() {
        let reports = [report("a", "x86_64", &["sse2"]), dead("b")];
        let invented = answer(
            &["sse2", "made-up-flag"],
            &[
                ("a", NodeVerdict::Included),
                ("b", NodeVerdict::NoData("x".into())),
            ],
        );
        assert!(problem(&reports, &invented).contains("\"made-up-flag\""));
        let vouching = answer(
            &["sse2"],
            &[("a", NodeVerdict::Included), ("b", NodeVerdict::Included)],
        );
        assert!(problem(&reports, &vouching).contains("no data"));
        let no_nodes = answer(
            &["sse2"],
            &[
                ("a", NodeVerdict::NoData("?".into())),
                ("b", NodeVerdict::NoData("x".into())),
            ],
        );
        assert!(problem(&reports, &no_nodes).contains("without including any node"));
        let dropped = answer(
            &[],
            &[
                ("a", NodeVerdict::ExcludedArch("arm".into())),
                ("b", NodeVerdict::NoData("x".into())),
            ],
        );
        assert!(problem(&reports, &dropped).contains("excluded node \"a\""));
    }
}
