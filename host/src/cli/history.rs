//! `nodecache history`: each node's hardware changes, as the cache saw
//! them (`nodecache::history`), newest last: when, how it was seen, and
//! what changed. Reads the history files only: no node is asked.

use anyhow::anyhow;
use serde::Serialize;

use super::args::TableFormat;
use super::context::Context;
use super::failure::Failure;
use super::print::{print, table};
use crate::hardware_diff::HardwareDiff;
use crate::history::{History, Seen};
use crate::node_name::NodeName;
use crate::util::when;

/// Which nodes, and from when.
pub(super) struct HistoryQuery {
    pub node: Option<String>,
    pub all: bool,
    pub since: Option<String>,
    pub format: TableFormat,
}

/// One change, as `--format json` prints it.
#[derive(Serialize)]
struct Change {
    node: String,
    /// RFC 3339, UTC.
    at: String,
    at_ms: u64,
    seen: Seen,
    old_fingerprint: String,
    new_fingerprint: String,
    diff: HardwareDiff,
}

pub(super) fn history(context: &Context, query: HistoryQuery) -> Result<(), Failure> {
    let now_ms = crate::util::clock::now_ms();
    let since = match &query.since {
        Some(text) => when::parse_since(text, now_ms).map_err(|e| Failure::usage(anyhow!("--since {e}")))?,
        None => 0,
    };
    let history = History::new(&context.cache_root()?);
    let nodes = match (&query.node, query.all) {
        (_, true) => history.nodes(),
        (Some(name), false) => vec![NodeName::parse(name).map_err(|e| Failure::usage(e.into()))?],
        (None, false) => {
            let members = context.cluster_file()?;
            let local = members.file.cluster.local().ok_or_else(|| {
                Failure::usage(anyhow!(
                    "the cluster file names no local member: give a NODE or --all"
                ))
            })?;
            vec![local.name.clone()]
        }
    };
    let mut changes: Vec<Change> = nodes
        .iter()
        .flat_map(|node| {
            history.read(node).into_iter().map(move |record| Change {
                node: node.to_string(),
                at: when::rfc3339(record.at_ms),
                at_ms: record.at_ms,
                seen: record.seen,
                old_fingerprint: record.old,
                new_fingerprint: record.new,
                diff: record.diff,
            })
        })
        .filter(|change| change.at_ms >= since)
        .collect();
    changes.sort_by(|a, b| (a.at_ms, &a.node).cmp(&(b.at_ms, &b.node)));
    match query.format {
        TableFormat::Json => print(&crate::format::pretty_json(&changes)),
        TableFormat::Table => {
            if changes.is_empty() {
                let whom = match nodes.as_slice() {
                    [one] => one.to_string(),
                    _ => "any node".to_string(),
                };
                eprintln!("no hardware change recorded for {whom}");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = changes
                .iter()
                .map(|change| {
                    vec![
                        when::utc_minute(change.at_ms),
                        change.node.clone(),
                        change.seen.to_string(),
                        change.diff.summary(),
                    ]
                })
                .collect();
            print(&table(&["WHEN", "NODE", "SEEN", "CHANGE"], &rows))
        }
    }
}
