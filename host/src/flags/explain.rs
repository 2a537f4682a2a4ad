//! `--explain`: which nodes lack which flags, and which node pins the
//! cluster down: the flags it alone holds back and the level the cluster
//! would reach without it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::level::level;
use crate::cpu_flags::CpuFlagsReport;

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
        .filter_map(|node| Some((node.name.as_str(), node.flags()?)))
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
        "{} flags common to all included nodes; level {}\n\n",
        report.flags.len(),
        report.level.as_deref().unwrap_or("-")
    );
    if explanation.differing.is_empty() {
        text.push_str("Every included node has the same flags.\n");
    } else {
        let width = explanation
            .differing
            .iter()
            .map(|d| d.flag.len())
            .max()
            .unwrap_or(4)
            .max(4);
        text.push_str(&format!("{:width$}  nodes lacking it\n", "flag"));
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
    text.push_str(&format!(
        "\n{:width$}  {:9}  {:>10}  level without it  flags it alone holds back\n",
        "node", "level", "holds back"
    ));
    for node in &explanation.nodes {
        text.push_str(&format!(
            "{:width$}  {:9}  {:>10}  {:16}  {}\n",
            node.name,
            node.level.as_deref().unwrap_or("-"),
            node.holds_back.len(),
            node.level_without.as_deref().unwrap_or("-"),
            node.holds_back.join(" ")
        ));
    }
    text
}
