//! One cluster answer, printed the way it was asked for: by the CLI's
//! `cpu-flags` and by `serve`'s `GET /1.0/cluster/cpu-flags`, alike.

use anyhow::Result;
use serde_json::json;

use super::explain::{explain, table};
use super::{GuestCpu, qemu, render};
use crate::cpu_flags::CpuFlagsReport;
use crate::format::{flag_list, pretty_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlagsFormat {
    /// One flag per line, sorted (Linux names).
    List,
    /// Flags, level and every node's provenance.
    Json,
    /// A QEMU `-cpu` value: the baseline model and the features it lacks, in QEMU's names.
    Qemu,
    /// A libvirt domain `<cpu>` element requiring every common feature, in libvirt's names.
    Libvirt,
    /// The keys of an Incus cluster group's CPU definition (key=value lines).
    Incus,
}

/// How to print a report.
#[derive(Debug, Clone)]
pub struct FlagsOutput {
    pub format: FlagsFormat,
    /// The baseline model for the hypervisor formats (and, given, in JSON).
    pub baseline: Option<String>,
    /// Print the x86-64 level of the cluster and of each node.
    pub level: bool,
    /// Explain which nodes lack which flags.
    pub explain: bool,
    /// Refuse, instead of letting a node's host flags stand in, when some
    /// included node has no hypervisor set.
    pub require_hypervisor: bool,
}

pub const DEFAULT_BASELINE: &str = "kvm64";
/// `--baseline auto`: the newest named QEMU model every included node can run.
pub const AUTO: &str = "auto";

/// The named model closest to the guest set, with what it disables, else
/// `kvm64` (and why), and the newer models passed over.
fn auto_baseline(report: &CpuFlagsReport) -> Result<(qemu::Baseline, Vec<qemu::PassedOver>)> {
    let guest = report.guest_flags.as_deref().unwrap_or(&report.flags);
    let common: std::collections::BTreeSet<&str> = guest.iter().map(String::as_str).collect();
    let models = qemu::named_models()?;
    let vendors = report.vendors();
    let vendor = match vendors.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    };
    let chosen = match qemu::closest(&models, &common, vendor) {
        Some(fit) => fit.model,
        None => {
            tracing::warn!(
                "--baseline auto: no named model fits {}; kvm64 stands in",
                match vendors.len() {
                    0 => "nodes that report no CPU vendor".to_string(),
                    1 => format!("vendor {}", vendors[0]),
                    _ => format!("a cluster mixing vendors ({})", vendors.join(", ")),
                }
            );
            qemu::baseline(DEFAULT_BASELINE)?
        }
    };
    let passed_over = qemu::passed_over(&models, &common, &chosen);
    Ok((chosen, passed_over))
}

impl FlagsOutput {
    /// The text to print. Asks QEMU for the baseline's own flags when the
    /// output needs them (blocking: it runs one QEMU process).
    pub fn render(&self, report: &mut CpuFlagsReport) -> Result<String> {
        self.check_hypervisors(report)?;
        if self.format == FlagsFormat::Json {
            return Ok(pretty_json(&self.json(report)?));
        }
        if self.level || self.explain {
            report.fill_node_levels();
        }
        Ok(match self.format {
            _ if self.explain => table(report, &explain(report)),
            _ if self.level => levels(report),
            FlagsFormat::List | FlagsFormat::Json => flag_list(&report.flags),
            hypervisor => {
                // Asked of QEMU only here, where the text needs it.
                let guest = self
                    .guest_cpu(report)?
                    .expect("the hypervisor formats always build one");
                match hypervisor {
                    FlagsFormat::Qemu => format!("{}\n", render::qemu_cpu(&guest)),
                    FlagsFormat::Libvirt => render::libvirt_cpu(&guest),
                    _ => render::incus_keys(&guest),
                }
            }
        })
    }

    /// The JSON form: the report with each node's level, and the guest CPU
    /// and explanation when asked for.
    pub fn json(&self, report: &mut CpuFlagsReport) -> Result<serde_json::Value> {
        self.check_hypervisors(report)?;
        report.fill_node_levels();
        let mut value = serde_json::to_value(&*report)?;
        if let Some(guest) = self.guest_cpu(report)? {
            value["guest_cpu"] = json!(guest);
        }
        if self.explain {
            value["explain"] = json!(explain(report));
        }
        Ok(value)
    }

    /// With `require_hypervisor`, no host flags may stand in for a node's
    /// hypervisor set.
    fn check_hypervisors(&self, report: &CpuFlagsReport) -> Result<()> {
        if self.require_hypervisor && !report.hypervisor_stand_ins.is_empty() {
            anyhow::bail!(
                "no hypervisor set for {} (their host flags would stand in; without --require-hypervisor they do)",
                report.hypervisor_stand_ins.join(", ")
            );
        }
        Ok(())
    }

    /// The hypervisor view, when the format or a `--baseline` asks for it.
    fn guest_cpu(&self, report: &CpuFlagsReport) -> Result<Option<GuestCpu>> {
        Ok(match (self.format, &self.baseline) {
            (FlagsFormat::Qemu | FlagsFormat::Libvirt | FlagsFormat::Incus, baseline)
            | (_, baseline @ Some(_)) => {
                let model = baseline.as_deref().unwrap_or(DEFAULT_BASELINE);
                let (baseline, passed_over) = match model {
                    AUTO => auto_baseline(report)?,
                    model => (qemu::baseline(model)?, Vec::new()),
                };
                let guest_flags = report.guest_flags.as_deref().unwrap_or(&report.flags);
                let mut guest = GuestCpu::new(guest_flags, &baseline);
                guest.passed_over = passed_over;
                Some(guest)
            }
            _ => None,
        })
    }
}

/// `--level`: the level a guest can be given on the whole cluster, then on
/// each node (its hypervisor's set, or its host flags standing in).
fn levels(report: &CpuFlagsReport) -> String {
    let mut text = format!("cluster {}\n", report.guest_level.as_deref().unwrap_or("-"));
    for node in &report.nodes {
        text.push_str(&format!(
            "{} {}\n",
            node.name,
            node.guest_level.as_deref().unwrap_or("-")
        ));
    }
    text
}
