//! One cluster answer, printed the way it was asked for: by the CLI's
//! `cpu-flags` and by `serve`'s `GET /1.0/cluster/cpu-flags`, alike.

use anyhow::{Context, Result};
use serde_json::json;

use super::explain::{self, explain, table};
use super::{GuestCpu, platforms, qemu, qemu_answers, render};
use crate::cluster::report::CpuFlagsReport;
use crate::format::{flag_list, pretty_json};
use crate::machine::fragile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
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
    /// A Proxmox VE custom CPU model: a `cpu-models.conf` section.
    Proxmox,
    /// OpenStack Nova's `[libvirt]` CPU options.
    Nova,
    /// A KubeVirt VirtualMachine's CPU and the nodeSelector it needs.
    Kubevirt,
    /// A Kubernetes Node Feature Discovery feature file for this machine.
    Nfd,
}

impl FlagsFormat {
    /// The formats that describe a guest CPU (x86_64 only).
    fn is_vm(self) -> bool {
        matches!(
            self,
            FlagsFormat::Qemu
                | FlagsFormat::Libvirt
                | FlagsFormat::Incus
                | FlagsFormat::Proxmox
                | FlagsFormat::Nova
                | FlagsFormat::Kubevirt
                | FlagsFormat::Nfd
        )
    }

    fn name(self) -> &'static str {
        match self {
            FlagsFormat::List => "list",
            FlagsFormat::Json => "json",
            FlagsFormat::Qemu => "qemu",
            FlagsFormat::Libvirt => "libvirt",
            FlagsFormat::Incus => "incus",
            FlagsFormat::Proxmox => "proxmox",
            FlagsFormat::Nova => "nova",
            FlagsFormat::Kubevirt => "kubevirt",
            FlagsFormat::Nfd => "nfd",
        }
    }
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
    /// Leave the features known to vanish from fleets (`flags::fragile`)
    /// out of the guest CPU.
    pub drop_fragile: bool,
    /// The name of a platform's custom model (Proxmox); derived from the
    /// cluster or group when not given.
    pub model_name: Option<String>,
    /// The machine an NFD feature file describes (the local member).
    pub this_node: Option<crate::cluster::report::ThisNode>,
    /// How long NFD keeps the labels if the file is not rewritten.
    pub nfd_valid_for: std::time::Duration,
}

/// NFD labels' default lifetime: a day and an hour, past the default
/// policy's 24 h, so a daily job's labels never lapse between runs.
pub const NFD_VALID_FOR: std::time::Duration = std::time::Duration::from_secs(25 * 3600);

/// An architecture as Linux names one (`x86_64`, `aarch64`, `ppc64le`):
/// anything else is refused, naming it, instead of answering with an empty
/// set (and computing one for every distinct junk value).
pub fn check_arch(arch: &str) -> Result<(), String> {
    let shaped =
        (1..=32).contains(&arch.len()) && arch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if shaped {
        Ok(())
    } else {
        Err(format!(
            "architecture {} is not an architecture name (1-32 of A-Z a-z 0-9 _)",
            crate::format::for_terminal(&format!("{arch:?}"), 80)
        ))
    }
}

pub const DEFAULT_BASELINE: &str = "kvm64";
/// `--baseline auto`: the named QEMU model closest to what every included
/// node's hypervisor can give a guest, with what it lacks turned off.
pub const AUTO: &str = "auto";

/// The named model closest to the guest set (libvirt's measure), of the
/// cluster's one vendor, else `kvm64`, and why.
fn auto_baseline(report: &CpuFlagsReport, guest: &[String]) -> Result<(qemu::Baseline, String)> {
    let common: std::collections::BTreeSet<&str> = guest.iter().map(String::as_str).collect();
    let models = qemu_answers::named_models()?;
    let vendors: Vec<&str> = report.vendors.keys().map(String::as_str).collect();
    match qemu::closest(&models, &common, report.one_vendor()) {
        Some(fit) => {
            let why = qemu::why_chosen(&models, &common, &fit);
            Ok((fit.model, why))
        }
        None => {
            let why = format!(
                "kvm64, because no named model is {}",
                match vendors.as_slice() {
                    [] => "known to fit nodes that report no CPU vendor".to_string(),
                    [one] => format!("of vendor {one} in this QEMU"),
                    _ => format!("of every vendor of a cluster mixing {}", vendors.join(" and ")),
                }
            );
            tracing::warn!("--baseline auto: {why}");
            Ok((qemu_answers::baseline(DEFAULT_BASELINE)?, why))
        }
    }
}

/// The named model of the cluster's one vendor closest to the guest set
/// among those it runs whole (none of the model's features turned off:
/// KubeVirt's rule, a model `usable` on every node), and why; an error
/// saying why when there is none.
fn usable_baseline(report: &CpuFlagsReport, guest: &[String]) -> Result<(qemu::Baseline, String)> {
    let common: std::collections::BTreeSet<&str> = guest.iter().map(String::as_str).collect();
    let models = qemu_answers::named_models()?;
    let vendor = match (report.one_vendor(), report.vendors.len()) {
        (Some(one), _) => one.to_string(),
        (None, 0) => {
            anyhow::bail!("no node reports its CPU vendor, so no named model is known to be usable on all")
        }
        (None, _) => anyhow::bail!(
            "a cluster mixing {} has no named model usable on every node",
            report
                .vendors
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    };
    let whole: Vec<qemu::Baseline> = models
        .iter()
        .filter(|model| model.vendor.as_deref() == Some(vendor.as_str()))
        .filter(|model| qemu::fit(model, &common, 0).disabled.is_empty())
        .cloned()
        .collect();
    match qemu::closest(&whole, &common, Some(&vendor)) {
        Some(fit) => {
            let why = format!(
                "the closest of the {} named {vendor} models every node runs whole",
                whole.len()
            );
            Ok((fit.model, why))
        }
        None => {
            let nearest = qemu::closest(&models, &common, Some(&vendor));
            let lacks = nearest
                .map(|fit| {
                    format!(
                        ": the closest, {}, lacks {}",
                        fit.model.model,
                        fit.disabled.join(", ")
                    )
                })
                .unwrap_or_default();
            anyhow::bail!(
                "no named {vendor} model is usable on every node (KubeVirt runs a model only where nothing of it is missing){lacks}"
            )
        }
    }
}

/// A rendered answer: JSON (the CLI prints it pretty, `serve` wraps it
/// in Incus's envelope) or text both print as it is.
#[derive(Debug, Clone)]
pub enum Rendered {
    Json(serde_json::Value),
    Text(String),
}

impl Rendered {
    /// What the CLI prints.
    pub fn to_text(&self) -> String {
        match self {
            Rendered::Json(value) => pretty_json(value),
            Rendered::Text(text) => text.clone(),
        }
    }
}

/// An answer and the guest CPU it was made from, when one was: `--apply`
/// takes the Incus keys from it as values, never from the printed text.
#[derive(Debug, Clone)]
pub struct Rendering {
    pub body: Rendered,
    pub guest: Option<GuestCpu>,
}

impl FlagsOutput {
    /// Whether the answer shows each node's level: the JSON, `--level` and
    /// `--explain` do (a thousand nodes' flag sets are not worth making
    /// for a plain list).
    pub fn needs_node_levels(&self) -> bool {
        matches!(self.format, FlagsFormat::Json | FlagsFormat::Nfd) || self.level || self.explain
    }

    /// The answer, from a report whose node levels are filled when
    /// [`Self::needs_node_levels`]. Asks QEMU for the baseline's own flags
    /// when the output needs them (blocking: it runs one QEMU process).
    pub fn render(&self, report: &CpuFlagsReport) -> Result<Rendering> {
        self.check_hypervisors(report)?;
        // The guest CPU (QEMU asked for the baseline) only where the answer
        // shows it: not for `--level` or the plain list.
        let (body, guest) = match self.format {
            FlagsFormat::Json => {
                let guest = self.guest_cpu(report)?;
                (Rendered::Json(self.json(report, guest.as_ref())?), guest)
            }
            _ if self.explain => {
                let guest = self.guest_cpu(report)?;
                let mut text = table(report, &explain(report));
                if let Some(guest) = &guest {
                    text.push_str(&explain::guest_cpu_table(guest, report));
                }
                (Rendered::Text(text), guest)
            }
            _ if self.level => (Rendered::Text(levels(report)), None),
            FlagsFormat::List => (Rendered::Text(flag_list(&report.flags)), None),
            hypervisor => {
                let guest = self.guest_cpu(report)?.with_context(|| {
                    format!(
                        "the qemu, libvirt, incus and proxmox formats describe x86_64 guests, not {}",
                        report.arch
                    )
                })?;
                let text = match hypervisor {
                    FlagsFormat::Qemu => format!("{}\n", render::qemu_cpu(&guest)),
                    FlagsFormat::Libvirt => render::libvirt_cpu(&guest),
                    FlagsFormat::Proxmox => {
                        platforms::proxmox_section(&guest, &self.model_name_for(report), report.physical_bits)
                    }
                    FlagsFormat::Nova => {
                        platforms::nova_fragment(report, &guest, &qemu_answers::named_models()?)?
                    }
                    FlagsFormat::Kubevirt => platforms::kubevirt_cpu(&guest)?,
                    FlagsFormat::Nfd => self.nfd(report, &guest)?,
                    _ => render::incus_text(&render::incus_keys(&guest)),
                };
                (Rendered::Text(text), Some(guest))
            }
        };
        Ok(Rendering { body, guest })
    }

    /// The JSON form: the report, and the guest CPU and explanation when
    /// asked for.
    fn json(&self, report: &CpuFlagsReport, guest: Option<&GuestCpu>) -> Result<serde_json::Value> {
        let mut value = serde_json::to_value(report)?;
        if let Some(guest) = guest {
            value["guest_cpu"] = json!(guest);
        }
        if self.explain {
            value["explain"] = json!(explain(report));
        }
        Ok(value)
    }

    /// Options that say nothing together are refused, not ignored:
    /// `--explain` and `--level` are tables of their own, not a QEMU line.
    pub fn check(&self, arch: &str) -> Result<(), String> {
        let vm_format = self.format.is_vm();
        if vm_format && arch != "x86_64" {
            return Err(format!(
                "the qemu, libvirt, incus and proxmox formats describe x86_64 guests, not {}",
                crate::format::for_terminal(arch, 64)
            ));
        }
        if vm_format && (self.explain || self.level) {
            return Err(format!(
                "--explain and --level print tables: use them without --format {} (or with --format json)",
                self.format.name()
            ));
        }
        if let Some(name) = &self.model_name {
            if self.format != FlagsFormat::Proxmox {
                return Err("--model-name names a Proxmox custom model: use it with --format proxmox".into());
            }
            platforms::check_model_name(name)?;
        }
        if let Some(model) = &self.baseline
            && !(1..=64).contains(&model.len())
        {
            return Err(format!(
                "--baseline {} is not a CPU model name",
                crate::format::for_terminal(model, 64)
            ));
        }
        Ok(())
    }

    /// Whether the answer describes a guest CPU (made from the hypervisor
    /// sets) rather than the CPUs' common flags alone.
    pub fn describes_a_guest(&self) -> bool {
        self.format.is_vm() || self.baseline.is_some() || self.explain || self.level
    }

    /// What an operator should hear on stderr about the guest CPU: nodes
    /// whose host flags stood in, and a cluster mixing CPU vendors.
    pub fn warnings(&self, report: &CpuFlagsReport) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.describes_a_guest() || report.guest_flags.is_none() {
            return warnings;
        }
        let stand_ins: Vec<String> = report
            .nodes
            .iter()
            .filter(|node| node.hypervisor == Some(crate::cluster::report::GuestSource::StandIn))
            .map(|node| {
                format!(
                    "{} ({})",
                    node.name,
                    node.hypervisor_unavailable
                        .as_deref()
                        .unwrap_or("no hypervisor set")
                )
            })
            .collect();
        if !stand_ins.is_empty() {
            warnings.push(format!(
                "host flags stand in for what these nodes' hypervisors can give a guest: {} (--require-hypervisor refuses instead)",
                crate::format::capped_list(&stand_ins, "; ", crate::format::LISTED)
            ));
        }
        if report.vendors.len() > 1 {
            warnings.push(explain::vendor_warning(report));
        }
        warnings
    }

    /// The custom model's name: given, else `nodecache-cluster` or
    /// `nodecache-GROUP`.
    fn model_name_for(&self, report: &CpuFlagsReport) -> String {
        self.model_name.clone().unwrap_or_else(|| match &report.group {
            Some(group) => format!("nodecache-{group}"),
            None => "nodecache-cluster".to_string(),
        })
    }

    /// The NFD feature file of this machine.
    fn nfd(&self, report: &CpuFlagsReport, guest: &GuestCpu) -> Result<String> {
        let node = self
            .this_node
            .as_ref()
            .context("the NFD format describes this machine, and the cluster file names no local member")?;
        let expiry_ms = crate::util::clock::now_ms() + self.nfd_valid_for.as_millis() as u64;
        let models = qemu_answers::named_models()?;
        platforms::nfd_features(
            report,
            &guest.baseline,
            node,
            &models,
            &crate::util::when::rfc3339(expiry_ms),
        )
    }

    /// With `require_hypervisor`, no host flags may stand in for a node's
    /// hypervisor set.
    fn check_hypervisors(&self, report: &CpuFlagsReport) -> Result<()> {
        // The plain list is the CPUs' flags: nothing stands in for it.
        let uses_guest_set = self.describes_a_guest() || self.format == FlagsFormat::Json;
        if self.require_hypervisor && uses_guest_set && !report.hypervisor_stand_ins.is_empty() {
            anyhow::bail!(
                "no hypervisor set for {} (their host flags would stand in; without --require-hypervisor they do)",
                crate::format::capped_list(&report.hypervisor_stand_ins, ", ", crate::format::LISTED)
            );
        }
        Ok(())
    }

    /// The guest CPU, when the format, a `--baseline` or `--explain` asks
    /// for it (x86_64 only: the models are QEMU's x86 ones).
    fn guest_cpu(&self, report: &CpuFlagsReport) -> Result<Option<GuestCpu>> {
        let Some(guest_flags) = report.guest_flags.as_deref().filter(|_| self.describes_a_guest()) else {
            return Ok(None);
        };
        let guest_flags: Vec<String> = guest_flags
            .iter()
            .filter(|flag| !(self.drop_fragile && fragile::is_fragile(flag)))
            .cloned()
            .collect();
        // NFD and KubeVirt name the model every node runs: the closest, by
        // default (KubeVirt refuses kvm64).
        let default = match self.format {
            FlagsFormat::Nfd | FlagsFormat::Kubevirt | FlagsFormat::Nova => AUTO,
            _ => DEFAULT_BASELINE,
        };
        let (baseline, why) = match self.baseline.as_deref().unwrap_or(default) {
            // KubeVirt runs a model only where libvirt calls it usable
            // (nothing of it missing): the closest of those.
            AUTO if self.format == FlagsFormat::Kubevirt => {
                let (baseline, why) = usable_baseline(report, &guest_flags)?;
                (baseline, Some(why))
            }
            AUTO => {
                let (baseline, why) = auto_baseline(report, &guest_flags)?;
                (baseline, Some(why))
            }
            model => (qemu_answers::baseline(model)?, None),
        };
        let mut guest = GuestCpu::new(&guest_flags, &baseline);
        guest.chosen_because = why;
        Ok(Some(guest))
    }
}

/// `--level`: the level a guest can be given on the whole cluster, then on
/// each node (its hypervisor's set, or its host flags standing in).
fn levels(report: &CpuFlagsReport) -> String {
    let whole = crate::baselines::scope_name(report.group.as_deref());
    let mut text = format!("{whole} {}\n", report.guest_level.as_deref().unwrap_or("-"));
    for node in &report.nodes {
        text.push_str(&format!(
            "{} {}{}\n",
            node.name,
            node.guest_level.as_deref().unwrap_or("-"),
            stale_mark(node)
        ));
    }
    text
}

/// ` (stale, 2 d old)` for a node served from an entry it could not
/// refresh: its level may no longer be its hardware's.
fn stale_mark(node: &crate::cluster::report::NodeStatus) -> String {
    node.staleness()
        .map(|stale| format!(" ({stale})"))
        .unwrap_or_default()
}
