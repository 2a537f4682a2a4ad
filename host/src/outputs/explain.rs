//! `--explain`: which nodes lack which features a guest could be given,
//! and which node pins the cluster down: the features it alone holds back
//! and the level the cluster would reach without it; then the guest CPU:
//! the model, what it adds and what it turns off, and the fragile features.
//! Made from what each node's hypervisor can give a guest (its host flags
//! where it has no hypervisor set, marked).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::GuestCpu;
use crate::cluster::report::CpuFlagsReport;
use crate::machine::level::level;

#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// Flags some included nodes have and others lack, with the nodes that lack each.
    pub differing: Vec<Differing>,
    /// Every included node: what it alone holds back, most first.
    pub nodes: Vec<NodeWeight>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Differing {
    pub flag: String,
    pub nodes_with: usize,
    pub lacking: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeWeight {
    pub name: String,
    pub level: Option<String>,
    /// Flags every other included node has and this one lacks.
    pub holds_back: Vec<String>,
    /// The common set's level without this node.
    pub level_without: Option<String>,
}

/// Explains `report` from its included nodes' flags (by counting: a flag
/// one node alone holds back is on every node but that one).
pub fn explain(report: &CpuFlagsReport) -> Explanation {
    let nodes: Vec<(&str, BTreeSet<&str>)> = report
        .nodes
        .iter()
        .filter_map(|node| Some((node.name.as_str(), node.guest_flags()?)))
        .collect();
    let mut having: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, flags) in &nodes {
        for flag in flags {
            *having.entry(flag).or_default() += 1;
        }
    }
    let total = nodes.len();
    let differing = having
        .iter()
        .filter(|&(_, &count)| count < total)
        .map(|(&flag, &count)| Differing {
            flag: flag.to_string(),
            nodes_with: count,
            lacking: nodes
                .iter()
                .filter(|(_, flags)| !flags.contains(flag))
                .map(|(name, _)| name.to_string())
                .collect(),
        })
        .collect();
    let common: BTreeSet<&str> = having
        .iter()
        .filter(|&(_, &count)| count == total)
        .map(|(&flag, _)| flag)
        .collect();
    let mut weights: Vec<NodeWeight> = nodes
        .iter()
        .map(|(name, flags)| {
            let holds_back: Vec<String> = having
                .iter()
                .filter(|&(flag, &count)| total > 1 && count == total - 1 && !flags.contains(flag))
                .map(|(flag, _)| flag.to_string())
                .collect();
            let without = |flag: &str| common.contains(flag) || holds_back.iter().any(|f| f == flag);
            NodeWeight {
                name: name.to_string(),
                level: level(|flag| flags.contains(flag)).map(str::to_string),
                level_without: (total > 1).then(|| level(without)).flatten().map(str::to_string),
                holds_back,
            }
        })
        .collect();
    weights.sort_by(|a, b| {
        b.holds_back
            .len()
            .cmp(&a.holds_back.len())
            .then(a.name.cmp(&b.name))
    });
    Explanation {
        differing,
        nodes: weights,
    }
}

/// A table for a terminal.
pub fn table(report: &CpuFlagsReport, explanation: &Explanation) -> String {
    let mut text = format!(
        "{} features every included node can give a guest; level {}\n",
        report.guest_flags.as_ref().map_or(0, Vec::len),
        report.guest_level.as_deref().unwrap_or("-")
    );
    if !report.hypervisor_stand_ins.is_empty() {
        text.push_str(&format!(
            "host flags stand in for the hypervisor set of {}\n",
            report.hypervisor_stand_ins.join(", ")
        ));
    }
    text.push('\n');
    if explanation.differing.is_empty() {
        text.push_str("Every included node has the same flags.\n");
    } else {
        let width = explanation
            .differing
            .iter()
            .map(|d| d.flag.len())
            .max()
            .unwrap_or(7)
            .max(7);
        text.push_str(&format!("{:width$}  nodes lacking it\n", "feature"));
        for differing in &explanation.differing {
            text.push_str(&format!(
                "{:width$}  {}\n",
                differing.flag,
                differing.lacking.join(", ")
            ));
        }
    }
    let width = explanation
        .nodes
        .iter()
        .map(|n| n.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    // Each column says what it counts; the legend below says it in full
    // ("holds back" and "level without it" left readers guessing).
    text.push_str(&format!(
        "\n{:width$}  {:9}  {:>11}  {:24}  {}\n",
        "node", "own level", "lacks alone", "cluster level without it", "features only this node lacks"
    ));
    for node in &explanation.nodes {
        text.push_str(&format!(
            "{:width$}  {:9}  {:>11}  {:24}  {}\n",
            node.name,
            node.level.as_deref().unwrap_or("-"),
            node.holds_back.len(),
            node.level_without.as_deref().unwrap_or("-"),
            node.holds_back.join(" ")
        ));
    }
    text.push_str(
        "(own level: the x86-64 level of what the node can give a guest; lacks alone: how many\n \
         features every other node can give and this one cannot; cluster level without it: the\n \
         common set's level were the node to leave)\n",
    );
    let stale: Vec<String> = report
        .nodes
        .iter()
        .filter_map(|node| Some(format!("{} ({})", node.name, node.staleness()?)))
        .collect();
    if !stale.is_empty() {
        text.push_str(&format!(
            "\nserved from entries their nodes could not refresh: {}\n",
            stale.join(", ")
        ));
    }
    text
}

/// The guest CPU `--explain` describes: the model and why, what it adds,
/// what it turns off, and the fragile features it keeps.
pub fn guest_cpu_table(guest: &GuestCpu, report: &CpuFlagsReport) -> String {
    let mut text = format!(
        "\nguest CPU: {} (its features from {})\n",
        guest.baseline, guest.baseline_source
    );
    if let Some(why) = &guest.chosen_because {
        text.push_str(&format!("  chosen: {why}\n"));
    }
    let list = |names: &[String]| match names {
        [] => "-".to_string(),
        names => names.join(" "),
    };
    text.push_str(&format!(
        "  adds ({}): {}\n",
        guest.qemu_features.len(),
        list(&guest.qemu_features)
    ));
    text.push_str(&format!(
        "  turns off, some node cannot give them ({}): {}\n",
        guest.qemu_disabled.len(),
        list(&guest.qemu_disabled)
    ));
    for (flag, why) in &report.fragile {
        text.push_str(&format!(
            "  fragile: {flag}: {why} (--drop-fragile leaves it out)\n"
        ));
    }
    if report.vendors.len() > 1 {
        text.push_str(&format!("  {}\n", vendor_warning(report)));
    }
    text
}

/// The warning for a cluster mixing CPU vendors, naming each vendor's nodes.
pub fn vendor_warning(report: &CpuFlagsReport) -> String {
    let groups: Vec<String> = report
        .vendors
        .iter()
        .map(|(vendor, nodes)| format!("{vendor}: {}", nodes.join(", ")))
        .collect();
    format!(
        "the cluster mixes CPU vendors ({}); a guest migrating between them sees its vendor change",
        groups.join("; ")
    )
}
