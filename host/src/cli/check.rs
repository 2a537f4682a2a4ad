//! `nodecache check`: a monitoring command, as Nagios and its heirs run
//! them. One line on stdout and an exit status: 0 OK, 1 WARNING (a node
//! served stale, or whose refresh failed), 2 CRITICAL (a node with no
//! data: no flag set is safe for it), 3 UNKNOWN (nodecache itself could
//! not answer: a bad cluster file, a failing policy). Any cron job or
//! monitoring system can run it; the line ends with performance data.

use super::context::Context;
use super::failure::Failure;
use super::print::{Bar, print};
use crate::cluster::report::{CpuFlagsReport, NodeSource};
use crate::query::default_arch;

/// The states, by exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }
}

/// Runs the check over the cluster (or `group`), prints its line, and
/// exits with its state.
pub(super) async fn check(context: &Context, group: Option<&str>) -> Result<(), Failure> {
    let (state, line) = match report(context, group).await {
        Ok(report) => judge(&report),
        Err(failure) => (
            State::Unknown,
            format!(
                "cannot check: {}",
                crate::format::for_terminal(&format!("{:#}", failure.error).replace('\n', " "), 400)
            ),
        ),
    };
    let scope = group.map_or_else(|| "cluster".to_string(), |group| format!("group {group}"));
    print(&format!("NODECACHE {} - {scope}: {line}\n", state.word()))?;
    match state {
        State::Ok => Ok(()),
        _ => Err(Failure::reported(state as i32)),
    }
}

async fn report(context: &Context, group: Option<&str>) -> Result<CpuFlagsReport, Failure> {
    let members = context.members(group).await?;
    let policy = context.policy(&members, members.instances()).await?;
    let bar = Bar::for_members(members.file.cluster.members.len());
    Ok(policy.report(&members, &default_arch(), bar).await?)
}

/// The state of a report, and its line: the worst node decides.
fn judge(report: &CpuFlagsReport) -> (State, String) {
    let names = |keep: &dyn Fn(&crate::cluster::report::NodeStatus) -> bool| -> Vec<String> {
        report
            .nodes
            .iter()
            .filter(|node| keep(node))
            .map(|node| node.name.clone())
            .collect()
    };
    let no_data = names(&|node| node.source == NodeSource::Error);
    let stale = names(&|node| node.source == NodeSource::Stale);
    let failing = names(&|node| node.source != NodeSource::Error && node.error.is_some());
    let state = if !no_data.is_empty() {
        State::Critical
    } else if !stale.is_empty() || !failing.is_empty() {
        State::Warning
    } else {
        State::Ok
    };
    let list = |names: &[String]| crate::format::capped_list(names, ", ", crate::format::LISTED);
    let mut parts = Vec::new();
    if !no_data.is_empty() {
        parts.push(format!("no data for {}", list(&no_data)));
    }
    if !stale.is_empty() {
        parts.push(format!("stale: {}", list(&stale)));
    }
    let failing_not_stale: Vec<String> = failing.iter().filter(|n| !stale.contains(n)).cloned().collect();
    if !failing_not_stale.is_empty() {
        parts.push(format!("refresh failed: {}", list(&failing_not_stale)));
    }
    if parts.is_empty() {
        parts.push(match report.nodes.len() {
            1 => "1 node answers".to_string(),
            n => format!("{n} nodes answer"),
        });
    }
    let level = report.level.as_deref().unwrap_or("-");
    let line = format!(
        "{}; {} common flags, {level} | nodes={} no_data={} stale={} failing={} flags={}",
        parts.join("; "),
        report.flags.len(),
        report.nodes.len(),
        no_data.len(),
        stale.len(),
        failing.len(),
        report.flags.len()
    );
    (state, line)
}
