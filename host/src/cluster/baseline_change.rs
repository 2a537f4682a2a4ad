//! Naming what changed the cluster's baseline. Each computed common set is
//! compared with the last one kept for its scope (`nodecache::baselines`);
//! when they differ, the change is named with its causes, read from the
//! nodes' hardware histories: "the cluster lost hle, rtm since 2026-12-01
//! 12:00 UTC: node-b (microcode 0xde → 0xf0)". The histories are read only
//! then, so an unchanged (warm) answer costs one small file read.

use std::collections::BTreeSet;

use crate::baselines::{BaselineChange, Baselines, Cause, Kept, Scope};
use crate::cluster::report::CpuFlagsReport;
use crate::format::capped_list;
use crate::hardware_diff::Change;
use crate::history::{History, Record};
use crate::node_name::NodeName;
use crate::util::when;

/// An unchanged set is written again (its confirmation time) at most this
/// often, so a busy `serve` does not rewrite the file on every answer.
const CONFIRM_EVERY_MS: u64 = 60_000;

/// The scope of a report: its group, if any, and its architecture; `None`
/// for a group whose name cannot name a file.
pub fn scope_of(report: &CpuFlagsReport) -> Option<Scope> {
    let group = match &report.group {
        Some(group) => Some(NodeName::parse(group).ok()?),
        None => None,
    };
    Some(Scope {
        group,
        arch: report.arch.clone(),
    })
}

/// Compares `report`'s common set with the one kept for its scope, keeps
/// the new one, and puts the change (if any) in `report.changes`. A
/// partial answer is not a baseline (its set grows by the nodes it lacks)
/// and is neither compared nor kept. Returns the scope's kept baseline as
/// it now stands (`None` for an answer that is not a baseline), so a
/// caller needs not read it again.
pub fn track(cache_root: &std::path::Path, report: &mut CpuFlagsReport, now_ms: u64) -> Option<Kept> {
    let scope = scope_of(report)?;
    if report.partial || report.nodes.iter().all(|node| node.cpu.is_none()) {
        return None;
    }
    let baselines = Baselines::new(cache_root);
    let members: Vec<String> = report
        .nodes
        .iter()
        .filter(|node| node.cpu.is_some())
        .map(|node| node.name.clone())
        .collect();
    let (kept, write) = match baselines.read(&scope) {
        None => (
            Kept::new(report.flags.clone(), report.level.clone(), members, now_ms),
            true,
        ),
        Some(mut kept) if kept.flags == report.flags => {
            let due = now_ms.saturating_sub(kept.confirmed_at_ms) >= CONFIRM_EVERY_MS;
            kept.members = members;
            kept.confirmed_at_ms = now_ms;
            (kept, due)
        }
        Some(old) => {
            let change = name_change(&History::new(cache_root), &scope, &old, report, now_ms);
            let mut kept = Kept::new(report.flags.clone(), report.level.clone(), members, now_ms);
            kept.changes = old.changes;
            kept.push(change.clone());
            report.changes.push(change);
            (kept, true)
        }
    };
    if write && let Err(e) = baselines.write(&scope, &kept) {
        tracing::warn!("cannot keep {}'s baseline: {e:#}", scope.describe());
    }
    Some(kept)
}

/// What changed between the kept set and the report's, and which nodes made it.
fn name_change(
    history: &History,
    scope: &Scope,
    old: &Kept,
    report: &CpuFlagsReport,
    now_ms: u64,
) -> BaselineChange {
    let (before, after): (BTreeSet<&str>, BTreeSet<&str>) = (
        old.flags.iter().map(String::as_str).collect(),
        report.flags.iter().map(String::as_str).collect(),
    );
    let lost: Vec<String> = before.difference(&after).map(|f| f.to_string()).collect();
    let gained: Vec<String> = after.difference(&before).map(|f| f.to_string()).collect();
    let mut because = Vec::new();
    for node in report.nodes.iter().filter(|node| node.cpu.is_some()) {
        // A node that lacks a lost flag took it away; one whose history
        // shows a gained flag added gave it. Histories are read only for
        // nodes that may be either.
        let has = node.flags().unwrap_or_default();
        let lacks_lost = lost.iter().any(|flag| !has.contains(flag.as_str()));
        if !lacks_lost && gained.is_empty() {
            continue;
        }
        let record = recent_record(history, &node.name, old.confirmed_at_ms, &lost);
        let added_gained = record.as_ref().is_some_and(|record| {
            let added = record.diff.added_flags();
            gained.iter().any(|flag| added.contains(flag.as_str()))
        });
        if !lacks_lost && !added_gained {
            continue;
        }
        let why = match record {
            Some(record) => reason(&record),
            None if !old.members.contains(&node.name) => "joined".to_string(),
            None => "lacks them".to_string(),
        };
        because.push(Cause {
            node: node.name.clone(),
            why,
        });
    }
    if !gained.is_empty() {
        let present: BTreeSet<&str> = report.nodes.iter().map(|node| node.name.as_str()).collect();
        for left in old.members.iter().filter(|name| !present.contains(name.as_str())) {
            because.push(Cause {
                node: left.clone(),
                why: "left".to_string(),
            });
        }
    }
    let level = (old.level != report.level).then(|| Change {
        old: old.level.clone(),
        new: report.level.clone(),
    });
    let message = message(
        scope,
        old.confirmed_at_ms,
        &lost,
        &gained,
        level.as_ref(),
        &because,
    );
    BaselineChange {
        at_ms: now_ms,
        since_ms: old.confirmed_at_ms,
        lost,
        gained,
        level,
        because,
        message,
    }
}

/// The node's latest hardware change since `since_ms`, preferring one that
/// took a `lost` flag away.
fn recent_record(history: &History, node: &str, since_ms: u64, lost: &[String]) -> Option<Record> {
    let name = NodeName::parse(node).ok()?;
    let recent: Vec<Record> = history
        .read(&name)
        .into_iter()
        .filter(|record| record.at_ms >= since_ms)
        .collect();
    let took_lost = |record: &&Record| {
        let removed = record.diff.removed_flags();
        lost.iter().any(|flag| removed.contains(flag.as_str()))
    };
    recent.iter().rev().find(took_lost).or(recent.last()).cloned()
}

/// Why a node changed, in a few words: its microcode when that changed,
/// else the diff's summary.
fn reason(record: &Record) -> String {
    record
        .diff
        .microcode_change()
        .unwrap_or_else(|| record.diff.summary())
}

/// `the cluster lost hle, rtm since 2026-12-01 12:00 UTC: node-b (microcode
/// 0xde → 0xf0)`, with what it gained and its level's change, if any.
fn message(
    scope: &Scope,
    since_ms: u64,
    lost: &[String],
    gained: &[String],
    level: Option<&Change<Option<String>>>,
    because: &[Cause],
) -> String {
    let mut what = Vec::new();
    if !lost.is_empty() {
        what.push(format!("lost {}", capped_list(lost, ", ", 16)));
    }
    if !gained.is_empty() {
        what.push(format!("gained {}", capped_list(gained, ", ", 16)));
    }
    let mut line = format!(
        "{} {} since {}",
        scope.describe(),
        what.join(" and "),
        when::utc_minute(since_ms)
    );
    if let Some(Change { old, new }) = level {
        let show = |level: &Option<String>| level.clone().unwrap_or_else(|| "no level".into());
        line.push_str(&format!(" ({} → {})", show(old), show(new)));
    }
    if !because.is_empty() {
        let causes: Vec<String> = because
            .iter()
            .map(|cause| format!("{} ({})", cause.node, cause.why))
            .collect();
        line.push_str(&format!(": {}", capped_list(&causes, ", ", 8)));
    }
    line
}
