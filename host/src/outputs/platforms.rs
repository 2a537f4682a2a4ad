//! The guest CPU in the terms of the platforms that run QEMU for their
//! operators: Proxmox VE's custom CPU models (`cpu-models.conf`),
//! KubeVirt's VirtualMachine CPU, and Kubernetes Node Feature Discovery's
//! feature files (`features.d`).
//!
//! Proxmox VE's format, as its manual page `cpu-models.conf(5)` gives it
//! (Proxmox VE 8): a section per model headed `cpu-model: NAME`, options
//! indented by a tab or several spaces, option and value separated by one
//! space, `#` lines ignored; `flags` is `+FLAG;-FLAG…` in QEMU's names,
//! `phys-bits` 8 to 64, `reported-model` a model QEMU defines. A VM names
//! the model `custom-NAME`.

use std::collections::BTreeSet;

use anyhow::{Result, bail};

use super::GuestCpu;
use super::qemu::{self, Baseline};
use crate::cluster::report::{CpuFlagsReport, ThisNode};

/// Proxmox's custom model names: what its section header and a VM's
/// `cpu: custom-NAME` take.
pub fn check_model_name(name: &str) -> Result<(), String> {
    let shaped = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if shaped {
        Ok(())
    } else {
        Err(format!(
            "--model-name {}: 1-40 of A-Z a-z 0-9 - _ . starting with a letter or digit",
            crate::format::for_terminal(&format!("{name:?}"), 64)
        ))
    }
}

/// A `cpu-models.conf` section: the baseline as `reported-model`, the
/// common features it lacks added, its own features some node cannot give
/// removed, and the fewest physical address bits of the nodes (omitted
/// when no node says, leaving Proxmox's default).
pub fn proxmox_section(cpu: &GuestCpu, name: &str, physical_bits: Option<u32>) -> String {
    let flags: Vec<String> = cpu
        .qemu_features
        .iter()
        .map(|flag| format!("+{flag}"))
        .chain(cpu.qemu_disabled.iter().map(|flag| format!("-{flag}")))
        .collect();
    let mut text = format!(
        "# nodecache: append to /etc/pve/virtual-guest/cpu-models.conf on any node; a VM uses it as `qm set VMID --cpu custom-{name}`\n\
         cpu-model: {name}\n"
    );
    if !flags.is_empty() {
        text.push_str(&format!("\tflags {}\n", flags.join(";")));
    }
    if let Some(bits) = physical_bits {
        text.push_str(&format!("\tphys-bits {bits}\n"));
    }
    // QEMU's `X` is its alias of `X-v1`: Proxmox lists the unversioned names.
    let reported = cpu.baseline.strip_suffix("-v1").unwrap_or(&cpu.baseline);
    text.push_str(&format!("\treported-model {reported}\n"));
    text
}

/// Models KubeVirt refuses by default (its `obsoleteCPUModels`).
const KUBEVIRT_OBSOLETE: &[&str] = &["kvm64", "qemu64"];

/// A KubeVirt VirtualMachine's `spec.template.spec.domain.cpu` (the model
/// and each feature required or disabled, in libvirt's names, as
/// virt-launcher hands them to libvirt), and the `nodeSelector` labels of
/// KubeVirt's node labeller a migration target must carry. Never `kvm64`
/// or `qemu64`, which KubeVirt refuses: then an error says why no named
/// model fits.
pub fn kubevirt_cpu(cpu: &GuestCpu) -> Result<String> {
    // The unversioned name, as KubeVirt's node labeller labels models.
    let model = cpu
        .libvirt_model
        .strip_suffix("-v1")
        .unwrap_or(&cpu.libvirt_model);
    if KUBEVIRT_OBSOLETE.contains(&model) {
        bail!(
            "no named CPU model fits every node for KubeVirt, which refuses {model} (its default obsoleteCPUModels): {}",
            cpu.chosen_because
                .as_deref()
                .unwrap_or("--baseline names it; give a named model, or auto")
        );
    }
    let mut yaml = format!(
        "# nodecache: the CPU every node can give a guest, for a KubeVirt VirtualMachine;\n\
         # a live migration's target must carry the nodeSelector labels (KubeVirt's node labeller sets them)\n\
         spec:\n  template:\n    spec:\n      domain:\n        cpu:\n          model: {model}\n"
    );
    let features: Vec<(&str, &str)> = cpu
        .libvirt_features
        .iter()
        .map(|name| (name.as_str(), "require"))
        .chain(cpu.libvirt_disabled.iter().map(|name| (name.as_str(), "disable")))
        .collect();
    if !features.is_empty() {
        yaml.push_str("          features:\n");
        for (name, policy) in &features {
            yaml.push_str(&format!(
                "            - name: {name}\n              policy: {policy}\n"
            ));
        }
    }
    yaml.push_str(&format!(
        "      nodeSelector:\n        cpu-model.node.kubevirt.io/{model}: \"true\"\n"
    ));
    for (name, _) in features.iter().filter(|(_, policy)| *policy == "require") {
        yaml.push_str(&format!(
            "        cpu-feature.node.kubevirt.io/{name}: \"true\"\n"
        ));
    }
    Ok(yaml)
}

/// The label namespace: a subdomain of `feature.node.kubernetes.io`, which
/// NFD accepts from a feature file without `-extra-label-ns`.
pub const NFD_NAMESPACE: &str = "nodecache.feature.node.kubernetes.io";

/// NFD drops a feature file larger than this (`features.d`'s limit).
pub const NFD_MAX_BYTES: usize = 64 * 1024;

/// An NFD feature file (`features.d`, Node Feature Discovery's "local"
/// source): one `name=value` label a line under [`NFD_NAMESPACE`], after an
/// `# +expiry-time=` directive (RFC 3339), so labels go if nodecache stops
/// rewriting the file. For `node`: its guest x86-64 level, each named QEMU
/// model of its vendor it runs with nothing turned off, and its groups;
/// for the answer's scope (the cluster, or `--group`): the guest level
/// and the baseline model (`baseline` as chosen for the other formats).
pub fn nfd_features(
    report: &CpuFlagsReport,
    baseline: &str,
    node: &ThisNode,
    models: &[Baseline],
    expiry: &str,
) -> Result<String> {
    let Some(status) = report.nodes.iter().find(|status| status.name == node.name) else {
        bail!(
            "the NFD format describes this machine, and {} has no part in this answer",
            node.name
        );
    };
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut label =
        |name: String, value: &str| labels.push((format!("{NFD_NAMESPACE}/{name}"), value.to_string()));
    label("level".into(), status.guest_level.as_deref().unwrap_or("none"));
    if let Some(guest) = status.guest_flags() {
        let vendor = status.cpu.as_ref().and_then(|cpu| cpu.vendor.as_deref());
        for model in runs_whole(models, &guest, vendor) {
            label(format!("model.{model}"), "true");
        }
    }
    for group in &node.groups {
        label(format!("group.{group}"), "true");
    }
    let scope = match &report.group {
        Some(group) => format!("group.{group}"),
        None => "cluster".to_string(),
    };
    label(
        format!("{scope}.level"),
        report.guest_level.as_deref().unwrap_or("none"),
    );
    label(
        format!("{scope}.model"),
        baseline.strip_suffix("-v1").unwrap_or(baseline),
    );
    let mut text = format!(
        "# nodecache: {node} in {scope}; NFD reads this from /etc/kubernetes/node-feature-discovery/features.d/\n# +expiry-time={expiry}\n",
        node = node.name,
    );
    for (name, value) in labels {
        if !is_label_name(name.rsplit('/').next().unwrap_or("")) || !is_label_value(&value) {
            tracing::debug!("NFD: {name}={value} is not a Kubernetes label; left out");
            continue;
        }
        text.push_str(&format!("{name}={value}\n"));
    }
    if text.len() > NFD_MAX_BYTES {
        bail!(
            "the NFD feature file would be {} bytes, more than NFD reads ({NFD_MAX_BYTES})",
            text.len()
        );
    }
    Ok(text)
}

/// The named models of `vendor` every one of whose features `guest` has
/// (nothing turned off), by their unversioned name where QEMU has one.
fn runs_whole<'a>(models: &'a [Baseline], guest: &BTreeSet<&str>, vendor: Option<&str>) -> Vec<&'a str> {
    let mut names: Vec<&str> = models
        .iter()
        .filter(|model| vendor.is_some() && model.vendor.as_deref() == vendor)
        .filter(|model| qemu::fit(model, guest, 0).disabled.is_empty())
        .map(|model| model.model.strip_suffix("-v1").unwrap_or(&model.model))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// A Kubernetes label name (the part after the prefix): at most 63
/// characters, alphanumeric at both ends, `-_.` between.
fn is_label_name(name: &str) -> bool {
    is_label_value(name) && !name.is_empty()
}

/// A Kubernetes label value: empty, or at most 63 characters, alphanumeric
/// at both ends, `-_.` between.
fn is_label_value(value: &str) -> bool {
    let inner = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
    value.is_empty()
        || (value.len() <= 63
            && value.bytes().all(inner)
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_follow_kubernetes() {
        assert!(is_label_value("x86-64-v3") && is_label_value("Opteron_G1") && is_label_value(""));
        assert!(!is_label_value("-a") && !is_label_value("a b") && !is_label_value(&"a".repeat(64)));
        assert!(!is_label_name(""));
    }

    #[test]
    fn model_names_are_what_a_section_header_takes() {
        assert!(check_model_name("nodecache-rack_1.a").is_ok());
        for bad in ["", "-x", "a b", "a:b", &"x".repeat(41)] {
            assert!(check_model_name(bad).is_err(), "{bad:?}");
        }
    }
}
