//! `can-run`: which members can take a guest started with given flags (or
//! with a node's host CPU), and what every other member lacks: the check
//! before a live migration or an evacuation.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::cluster::report::{CpuFlagsReport, NodeSource};
use crate::machine::names;

#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    /// The flags the guest needs, in Linux names.
    pub required: Vec<String>,
    pub can_run: Vec<String>,
    pub cannot_run: Vec<Lacking>,
    /// Members nothing is known of (no data, or another architecture).
    pub unknown: Vec<Unknown>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lacking {
    pub name: String,
    pub lacks: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unknown {
    pub name: String,
    pub why: String,
}

/// Operator-given names, in Linux's spelling: a name Linux does not use
/// but QEMU does (`sse4.2`, `sha-ni`) is turned into Linux's by its CPUID bit.
pub fn linux_names(given: &str) -> Result<Vec<String>, String> {
    let mut linux = BTreeSet::new();
    for name in given.split([',', ' ']).filter(|name| !name.is_empty()) {
        if !crate::api::cpu_summary::is_flag_shaped(name) {
            return Err(format!(
                "--flags: \"{}\" is not a flag name (1-64 of A-Z a-z 0-9 _ . -)",
                crate::format::for_terminal(name, 64)
            ));
        }
        linux.insert(match (names::by_linux(name), names::by_qemu(name)) {
            (None, Some(names)) => names.linux.to_string(),
            _ => name.to_string(),
        });
    }
    match linux.is_empty() {
        true => Err("--flags: no flag named".to_string()),
        false => Ok(linux.into_iter().collect()),
    }
}

/// Required flags neither Linux, QEMU nor any node of `report` knows: a
/// typo would otherwise make every node "lacking" it, without a word.
pub fn unknown_names(required: &[String], report: &CpuFlagsReport) -> Vec<String> {
    let on_nodes: BTreeSet<&str> = report
        .nodes
        .iter()
        .filter_map(|node| node.flags())
        .flatten()
        .collect();
    required
        .iter()
        .filter(|name| names::by_linux(name).is_none() && !on_nodes.contains(name.as_str()))
        .cloned()
        .collect()
}

/// What a guest started with `-cpu host` on a node needs: what the node's
/// hypervisor gives it (its set, or its host flags standing in), less what
/// no hypervisor can set (flags the kernel synthesises).
pub fn host_cpu_of(flags: &BTreeSet<&str>) -> Vec<String> {
    flags
        .iter()
        .filter(|flag| names::by_linux(flag).is_some_and(|names| names.qemu.is_some()))
        .map(|flag| flag.to_string())
        .collect()
}

/// Sorts the report's members by whether they have every `required` flag.
pub fn place(report: &CpuFlagsReport, required: Vec<String>) -> Placement {
    let mut placement = Placement {
        required,
        can_run: Vec::new(),
        cannot_run: Vec::new(),
        unknown: Vec::new(),
    };
    for node in &report.nodes {
        // What the node's hypervisor can give a guest (its host flags
        // standing in where it has no hypervisor set).
        let Some(flags) = node.guest_flags() else {
            let why = match node.source {
                NodeSource::Excluded => format!("architecture {}", node.arch.as_deref().unwrap_or("unknown")),
                _ => node.error.clone().unwrap_or_else(|| "no data".into()),
            };
            placement.unknown.push(Unknown {
                name: node.name.clone(),
                why,
            });
            continue;
        };
        let lacks: Vec<String> = placement
            .required
            .iter()
            .filter(|flag| !flags.contains(flag.as_str()))
            .cloned()
            .collect();
        if lacks.is_empty() {
            placement.can_run.push(node.name.clone());
        } else {
            placement.cannot_run.push(Lacking {
                name: node.name.clone(),
                lacks,
            });
        }
    }
    placement
}

/// For a terminal: who can, who cannot and why, who is unknown.
pub fn table(placement: &Placement) -> String {
    let can_run = match placement.can_run.is_empty() {
        true => "none".to_string(),
        false => placement.can_run.join(", "),
    };
    let mut text = format!("needs {} flags; can run: {can_run}\n", placement.required.len());
    for lacking in &placement.cannot_run {
        text.push_str(&format!(
            "cannot: {} lacks {}\n",
            lacking.name,
            lacking.lacks.join(" ")
        ));
    }
    for unknown in &placement.unknown {
        text.push_str(&format!("unknown: {} ({})\n", unknown.name, unknown.why));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_spellings_become_linux_names() {
        assert_eq!(
            linux_names("sse4.2,sha-ni avx2").unwrap(),
            ["avx2", "sha_ni", "sse4_2"]
        );
        assert_eq!(linux_names("sse4_2").unwrap(), ["sse4_2"]);
        let refused = linux_names("sse2,ev\u{1b}[2Jil").unwrap_err();
        assert_eq!(
            refused,
            "--flags: \"ev?[2Jil\" is not a flag name (1-64 of A-Z a-z 0-9 _ . -)"
        );
        assert!(linux_names(", ,").is_err());
    }
}
