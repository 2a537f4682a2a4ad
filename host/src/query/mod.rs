//! One cluster question, asked the same way by the CLI's `cpu-flags` and by
//! `serve`'s `GET /1.0/cluster/cpu-flags`: a checked [`FlagsRequest`] in, a
//! [`FlagsAnswer`] out. Whoever computed the report (the CLI's one run,
//! `serve`'s shared one), this is where the default architecture, the
//! partial-data rule and its wording, the node levels (made once) and the
//! choice of output live, so the two answer byte for byte alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cluster::report::CpuFlagsReport;
use crate::format::{LISTED, capped_list};
use crate::outputs::output::{FlagsFormat, FlagsOutput, Rendered, check_arch};
use crate::outputs::qemu_answers::UnknownModel;
use crate::outputs::render;

/// Who asks, for naming the switch that allows a partial answer the way
/// the asker writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    Cli,
    Http,
}

impl Asker {
    fn allow_partial(self) -> &'static str {
        match self {
            Asker::Cli => "--allow-partial",
            Asker::Http => "allow-partial=1",
        }
    }
}

/// A `cpu-flags` question, checked before any node is asked.
#[derive(Debug, Clone)]
pub struct FlagsRequest {
    /// The architecture asked for: this machine's unless named.
    pub arch: String,
    pub allow_partial: bool,
    pub output: FlagsOutput,
    pub asker: Asker,
}

/// Why a question got no answer, as an exit status or an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The question itself is wrong (exit 2, 400): nothing was asked.
    #[error("{0}")]
    BadRequest(String),
    /// Some node has no data and no partial answer was allowed, or none
    /// has any (exit 3; 503, or 500 when the policy failed for a node).
    #[error("{message}")]
    NoData { message: String, policy_failures: usize },
    /// The answer could not be made (exit 1, 500).
    #[error(transparent)]
    Failed(anyhow::Error),
}

/// The answer to a [`FlagsRequest`].
#[derive(Debug, Clone)]
pub struct FlagsAnswer {
    pub body: Rendered,
    /// The Incus keys, as values, when the output is `incus`.
    pub incus_keys: Option<BTreeMap<String, String>>,
    /// What the operator should hear beside the answer (stderr, the log).
    pub warnings: Vec<String>,
}

impl FlagsRequest {
    /// The request, or why it is refused: the architecture (this machine's
    /// by default) must be a name, and the output's options must say
    /// something together.
    pub fn new(
        arch: Option<String>,
        allow_partial: bool,
        output: FlagsOutput,
        asker: Asker,
    ) -> Result<FlagsRequest, QueryError> {
        let arch = arch.unwrap_or_else(default_arch);
        check_arch(&arch).map_err(QueryError::BadRequest)?;
        output.check(&arch).map_err(QueryError::BadRequest)?;
        Ok(FlagsRequest {
            arch,
            allow_partial,
            output,
            asker,
        })
    }

    /// Answers from `report` (computed for `self.arch`). Blocking: the
    /// hypervisor forms may run QEMU once; call it off the async workers.
    pub fn answer(&self, report: Arc<CpuFlagsReport>) -> Result<FlagsAnswer, QueryError> {
        let missing = missing(&report);
        self.check_partial(&report, &missing)?;
        let mut warnings = Vec::new();
        if !missing.is_empty() {
            warnings.push(format!(
                "partial result: without {}",
                capped_list(&missing, "; ", LISTED)
            ));
        }
        warnings.extend(self.output.warnings(&report));
        warnings.extend(report.changes.iter().map(|change| change.message.clone()));
        let report = match self.output.needs_node_levels() {
            true => Arc::new(Arc::unwrap_or_clone(report).with_node_levels()),
            false => report,
        };
        let rendering = self.output.render(&report).map_err(|e| {
            // A baseline QEMU does not define is the question's fault.
            if e.downcast_ref::<UnknownModel>().is_some() {
                QueryError::BadRequest(format!("{e:#}"))
            } else {
                QueryError::Failed(e)
            }
        })?;
        let incus_keys = match self.output.format {
            FlagsFormat::Incus => rendering.guest.as_ref().map(render::incus_keys),
            _ => None,
        };
        Ok(FlagsAnswer {
            body: rendering.body,
            incus_keys,
            warnings,
        })
    }

    /// The partial-data rule: every node has data, or a partial answer is
    /// allowed and some node has data. With none, a partial set would be
    /// empty, read by a script as "no flag is safe".
    fn check_partial(&self, report: &CpuFlagsReport, missing: &[String]) -> Result<(), QueryError> {
        let allowed = self.allow_partial && missing.len() < report.nodes.len();
        if missing.is_empty() || allowed {
            return Ok(());
        }
        let hint = if missing.len() == report.nodes.len() {
            "no node has data".to_string()
        } else {
            format!("{} computes over the rest", self.asker.allow_partial())
        };
        Err(QueryError::NoData {
            message: format!(
                "no data for {} of {} nodes, so no flag set is safe for them: {} ({hint})",
                missing.len(),
                report.nodes.len(),
                capped_list(missing, "; ", LISTED),
            ),
            policy_failures: report.policy_failures,
        })
    }
}

/// This machine's architecture, as Linux names it: what a question asks
/// for when it names none.
pub fn default_arch() -> String {
    std::env::consts::ARCH.to_string()
}

/// The nodes without data, each with why, fit for a terminal.
fn missing(report: &CpuFlagsReport) -> Vec<String> {
    report
        .nodes_without_data()
        .iter()
        .map(|node| format!("{} ({})", node.name, node.error.as_deref().unwrap_or("no data")))
        .collect()
}
