//! What the host and a policy exchange, independent of any contract version:
//! each `runtime::vX_Y` module converts between these and its bindings.

use crate::api::cpu_summary::CpuSummary;

// One vocabulary with the policies: a node's failure, where its document
// came from, the policy's failure, a node's verdict, what the intersection
// is given and answers, and what a policy says of itself are the SDK's
// types. The host's own below carry what never crosses to a guest.
pub use nodecache_policy_sdk::types::{
    ClusterFlags, HostError, LogLevel, NodeOutcome, NodeReport, NodeVerdict, Parameter, PolicyError,
    PolicyInfo, ResolvedNode, Source,
};

/// A resources document as the host hands it to a policy: the body as
/// received or probed, and the validator that identifies its hardware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub body: String,
    pub validator: String,
    /// The CPU summary the host made when it checked the body, kept so the
    /// cache write does not parse the body again. Never crosses to the guest.
    pub summary: Option<CpuSummary>,
}

/// What a conditional fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    NotModified,
    Modified(Document),
}

/// A node's document and where the policy got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeResources {
    pub document: String,
    pub source: Source,
    pub age_ms: u64,
    pub refresh_error: Option<HostError>,
    /// The document's CPU summary, when the policy returned the very
    /// document it read from or wrote to the cache (which keeps one).
    pub summary: Option<CpuSummary>,
}

/// Refuses a setting the policy `info` describes does not declare, naming
/// the ones it does: a typo (`max_age` for `max-age`) would otherwise be
/// ignored and the default used without a word. The refusal names the
/// policy by `origin`; the CLI makes it exit 2 wherever it surfaces
/// (`cli::Failure`).
pub fn check_settings<'a>(
    info: &PolicyInfo,
    origin: &str,
    keys: impl IntoIterator<Item = &'a String>,
) -> anyhow::Result<()> {
    unknown_settings(info, keys).map_err(|why| anyhow::Error::new(why).context(format!("policy {origin}")))
}

fn unknown_settings<'a>(
    info: &PolicyInfo,
    keys: impl IntoIterator<Item = &'a String>,
) -> Result<(), UnknownSettings> {
    let known: Vec<&str> = info.parameters.iter().map(|p| p.name.as_str()).collect();
    let unknown: Vec<String> = keys
        .into_iter()
        .filter(|key| !known.contains(&key.as_str()))
        .map(|key| format!("\"{key}\""))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let (what, verb) = match unknown.len() {
        1 => ("setting", "is not a parameter"),
        _ => ("settings", "are not parameters"),
    };
    let known = match known.is_empty() {
        true => "none".to_string(),
        false => crate::format::capped_list(known, ", ", crate::format::LISTED),
    };
    Err(UnknownSettings(format!(
        "{what} {} {verb} of {} (it knows: {known})",
        crate::format::capped_list(&unknown, ", ", crate::format::LISTED),
        info.name
    )))
}

/// Settings (`--set`, `[policy]`) the policy does not declare: the
/// operator's mistake, a usage error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnknownSettings(pub String);

/// A cluster member as a policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: crate::node_name::NodeName,
    /// This machine: probed, never fetched.
    pub local: bool,
    /// Why it has no data this run without being asked (Incus reports it
    /// offline): the policy is not called for it, so no cached document
    /// stands in for a member known to be down.
    pub offline: Option<String>,
}

impl Member {
    /// Why this member has no data without being asked: it is known offline.
    /// One wording for the CLI's report and `serve`'s 503.
    pub fn offline_failure(&self) -> Option<HostError> {
        let why = self.offline.as_ref()?;
        Some(HostError::Unreachable(format!("{} is offline: {why}", self.name)))
    }
}
