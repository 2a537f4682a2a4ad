//! `nodecache check`: a monitoring command, as Nagios and its heirs run
//! them. One line on stdout and an exit status: 0 OK, 1 WARNING (a node
//! served stale, or whose refresh failed, or a baseline that lost flags
//! since `--since`), 2 CRITICAL (a node with no
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
/// exits with its state. `since` is when a shrunk baseline stops being
/// worth a warning (`--since`: a time, or a duration ago).
pub(super) async fn check(context: &Context, group: Option<&str>, since: &str) -> Result<(), Failure> {
    let since_ms = crate::util::when::parse_since(since, crate::util::clock::now_ms())
        .map_err(|e| Failure::usage(anyhow::anyhow!("--since {e}")))?;
    let (state, line) = match report(context, group).await {
        Ok((report, kept)) => {
            let shrinks = shrinks_since(context, &report, kept, since_ms);
            judge(&report, &shrinks)
        }
        Err(failure) => (
            State::Unknown,
            format!(
                "cannot check: {}",
                crate::format::for_terminal(&format!("{:#}", failure.error).replace('\n', " "), 400)
            ),
        ),
    };
    let scope = crate::baselines::scope_name(group);
    print(&format!("NODECACHE {} - {scope}: {line}\n", state.word()))?;
    match state {
        State::Ok => Ok(()),
        _ => Err(Failure::reported(state as i32)),
    }
}

/// The answer, and its scope's kept baseline as this answer left it.
async fn report(
    context: &Context,
    group: Option<&str>,
) -> Result<(CpuFlagsReport, Option<crate::baselines::Kept>), Failure> {
    let members = context.members(group).await?;
    let policy = context.policy(&members, members.instances()).await?;
    let bar = Bar::for_members(members.file.cluster.members.len());
    let mut report = policy.report(&members, &default_arch(), bar).await?;
    report.group = group.map(str::to_string);
    let kept = crate::cluster::baseline_change::track(
        &context.cache_root()?,
        &mut report,
        crate::util::clock::now_ms(),
    );
    Ok((report, kept))
}

/// The changes that took flags from the report's baseline at or after
/// `since_ms`, as kept for its scope (this run's own, if it saw one): the
/// baseline this run kept, else (a partial answer keeps none) as read.
fn shrinks_since(
    context: &Context,
    report: &CpuFlagsReport,
    kept: Option<crate::baselines::Kept>,
    since_ms: u64,
) -> Vec<String> {
    let read = || {
        let scope = crate::cluster::baseline_change::scope_of(report)?;
        crate::baselines::Baselines::new(&context.cache_root().ok()?).read(&scope)
    };
    kept.or_else(read)
        .map(|kept| kept.changes)
        .unwrap_or_default()
        .into_iter()
        .filter(|change| change.at_ms >= since_ms && !change.lost.is_empty())
        .map(|change| change.message)
        .collect()
}

/// The state of a report, and its line: the worst node decides, and a
/// baseline that shrank (`shrinks`, newest last) warns.
fn judge(report: &CpuFlagsReport, shrinks: &[String]) -> (State, String) {
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
    } else if !stale.is_empty() || !failing.is_empty() || !shrinks.is_empty() {
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
    if let Some(latest) = shrinks.last() {
        parts.push(format!("baseline shrank: {latest}"));
    }
    if parts.is_empty() {
        parts.push(match report.nodes.len() {
            1 => "1 node answers".to_string(),
            n => format!("{n} nodes answer"),
        });
    }
    let level = report.level.as_deref().unwrap_or("-");
    let line = format!(
        "{}; {} common flags, {level} | nodes={} no_data={} stale={} failing={} flags={} shrinks={}",
        parts.join("; "),
        report.flags.len(),
        report.nodes.len(),
        no_data.len(),
        stale.len(),
        failing.len(),
        report.flags.len(),
        shrinks.len()
    );
    (state, line)
}
