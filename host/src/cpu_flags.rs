//! `cpu-flags`: gather every member, let the policy intersect, and report
//! each node's provenance.

use std::sync::Arc;

use anyhow::Result;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::api::cpu_summary::CpuSummary;
use crate::capabilities::Capabilities;
use crate::cluster::Cluster;
use crate::gather::{Gathered, gather};
use crate::model::{FetchError, NodeReport, ResolvedNode, Source, Verdict};
use crate::runtime::PolicyRuntime;

/// The cluster's common flags and how every node took part.
#[derive(Debug, Clone, Serialize)]
pub struct CpuFlagsReport {
    pub arch: String,
    pub flags: Vec<String>,
    /// True when some node had no data: the flags were computed over the rest.
    pub partial: bool,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub source: NodeSource,
    pub age_seconds: Option<u64>,
    pub arch: Option<String>,
    pub error: Option<String>,
}

/// Where a node's part of an answer came from, as printed in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeSource {
    Cache,
    Local,
    Remote,
    Stale,
    /// No usable data: the answer cannot vouch for this node.
    Error,
    /// Another architecture than the one asked for.
    Excluded,
}

impl From<Source> for NodeSource {
    fn from(source: Source) -> Self {
        match source {
            Source::Cache => NodeSource::Cache,
            Source::Local => NodeSource::Local,
            Source::Remote => NodeSource::Remote,
            Source::Stale => NodeSource::Stale,
        }
    }
}

impl CpuFlagsReport {
    /// Nodes the common set cannot vouch for.
    pub fn nodes_without_data(&self) -> Vec<&NodeStatus> {
        self.nodes
            .iter()
            .filter(|node| node.source == NodeSource::Error)
            .collect()
    }
}

pub async fn cpu_flags(
    runtime: &PolicyRuntime,
    capabilities: Arc<Capabilities>,
    cluster: &Cluster,
    architecture: &str,
    concurrency: usize,
    progress: &ProgressBar,
) -> Result<CpuFlagsReport> {
    let members: Vec<_> = cluster.members.iter().map(|m| m.as_member()).collect();
    let gathered = gather(runtime, capabilities.clone(), &members, concurrency, progress).await?;
    let reports: Vec<NodeReport> = gathered.iter().map(to_report).collect();
    let common = runtime
        .cluster_cpu_flags(capabilities, &reports, architecture)
        .await?;
    let nodes: Vec<NodeStatus> = reports
        .iter()
        .zip(&common.verdicts)
        .map(|(report, (_, verdict))| node_status(report, verdict))
        .collect();
    let partial = nodes.iter().any(|node| node.source == NodeSource::Error);
    Ok(CpuFlagsReport {
        arch: common.architecture,
        flags: common.flags,
        partial,
        nodes,
    })
}

fn to_report(gathered: &Gathered) -> NodeReport {
    let outcome = gathered.outcome.clone().and_then(|resources| {
        let cpu = CpuSummary::from_document(&resources.document)
            .map_err(|e| FetchError::BadResponse(format!("unreadable resources document: {e}")))?;
        Ok(ResolvedNode {
            source: resources.source,
            age_ms: resources.age_ms,
            refresh_error: resources.refresh_error,
            cpu,
        })
    });
    NodeReport {
        name: gathered.member.name.to_string(),
        outcome,
    }
}

fn node_status(report: &NodeReport, verdict: &Verdict) -> NodeStatus {
    let resolved = report.outcome.as_ref().ok();
    let (source, error) = match (verdict, &report.outcome) {
        (Verdict::Included, Ok(node)) => (
            node.source.into(),
            node.refresh_error.as_ref().map(|e| e.to_string()),
        ),
        (Verdict::ExcludedArch(_), _) => (NodeSource::Excluded, None),
        (Verdict::NoData(why), _) => (NodeSource::Error, Some(why.clone())),
        (Verdict::Included, Err(e)) => (NodeSource::Error, Some(e.to_string())),
    };
    NodeStatus {
        name: report.name.clone(),
        source,
        age_seconds: resolved.map(|node| node.age_ms / 1000),
        arch: resolved.map(|node| node.cpu.architecture.clone()),
        error,
    }
}
