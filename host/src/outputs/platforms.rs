//! The guest CPU in the terms of the platforms that run QEMU for their
//! operators: Proxmox VE's custom CPU models (`cpu-models.conf`),
//! OpenStack Nova's `[libvirt]` CPU options, KubeVirt's VirtualMachine CPU,
//! and Kubernetes Node Feature Discovery's feature files (`features.d`).
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

/// libvirt's names of the features Nova reports as placement traits
/// (`HW_CPU_X86_*`; Nova 26's `CPU_TRAITS_MAPPING`), oldest extension
/// first: the flavor comment names the newest one that tells the newest
/// model from the others.
const NOVA_TRAITS: &[(&str, &str)] = &[
    ("mmx", "MMX"),
    ("sse", "SSE"),
    ("sse2", "SSE2"),
    ("ssse3", "SSSE3"),
    ("sse4a", "SSE4A"),
    ("sse4.1", "SSE41"),
    ("sse4.2", "SSE42"),
    ("pclmuldq", "CLMUL"),
    ("aes", "AESNI"),
    ("avx", "AVX"),
    ("f16c", "F16C"),
    ("fma", "FMA3"),
    ("fma4", "FMA4"),
    ("xop", "XOP"),
    ("tbm", "TBM"),
    ("abm", "ABM"),
    ("bmi1", "BMI"),
    ("bmi2", "BMI2"),
    ("avx2", "AVX2"),
    ("mpx", "MPX"),
    ("sha-ni", "SHA"),
    ("avx512f", "AVX512F"),
    ("avx512cd", "AVX512CD"),
    ("avx512bw", "AVX512BW"),
    ("avx512dq", "AVX512DQ"),
    ("avx512vl", "AVX512VL"),
    ("avx512ifma", "AVX512IFMA"),
    ("avx512vbmi", "AVX512VBMI"),
    ("avx512vnni", "AVX512VNNI"),
    ("avx512vbmi2", "AVX512VBMI2"),
    ("avx512bitalg", "AVX512BITALG"),
    ("vaes", "AVX512VAES"),
    ("gfni", "AVX512GFNI"),
    ("vpclmulqdq", "AVX512VPCLMULQDQ"),
    ("avx512-vpopcntdq", "AVX512VPOPCNTDQ"),
];

/// OpenStack Nova's `[libvirt]` fragment of `nova.conf`: `cpu_mode =
/// custom`, every named model of the cluster's vendor that libvirt knows
/// and every node runs once `cpu_model_extra_flags` turns off what some
/// node cannot give (those of the closest model), oldest (fewest features)
/// first, and a comment on the flavor trait that selects the newest.
pub fn nova_fragment(report: &CpuFlagsReport, cpu: &GuestCpu, models: &[Baseline]) -> Result<String> {
    let vendor = match report.vendors.keys().collect::<Vec<_>>().as_slice() {
        [one] => one.to_string(),
        _ => bail!(
            "Nova's cpu_models name models of one CPU vendor: this answer's nodes report {} vendors",
            report.vendors.len()
        ),
    };
    let common: BTreeSet<&str> = report.guest_flags.iter().flatten().map(String::as_str).collect();
    let disabled: BTreeSet<&String> = cpu.qemu_disabled.iter().collect();
    let mut runs: Vec<&Baseline> = models
        .iter()
        .filter(|model| model.vendor.as_deref() == Some(vendor.as_str()))
        .filter(|model| {
            qemu::fit(model, &common, 0)
                .disabled
                .iter()
                .all(|d| disabled.contains(d))
        })
        .filter(|model| super::libvirt_model(&model.model) == model.model)
        .collect();
    runs.sort_by(|a, b| (a.flags.len(), &a.model).cmp(&(b.flags.len(), &b.model)));
    if runs.is_empty() {
        bail!(
            "no named {vendor} model that libvirt knows runs on every node, even with {} turned off",
            cpu.qemu_disabled.join(", ")
        );
    }
    let names: Vec<&str> = runs
        .iter()
        .map(|model| model.model.strip_suffix("-v1").unwrap_or(&model.model))
        .collect();
    let extra: Vec<String> = cpu
        .libvirt_disabled
        .iter()
        .map(|name| format!("-{}", name.to_lowercase()))
        .collect();
    let mut text = format!(
        "# nodecache: the [libvirt] section of nova.conf on every compute node: the models every node runs, oldest first{}\n",
        if extra.is_empty() {
            String::new()
        } else {
            ", with what some node cannot give turned off".to_string()
        }
    );
    text.push_str(&flavor_comment(&runs));
    text.push_str(&format!(
        "[libvirt]\ncpu_mode = custom\ncpu_models = {}\n",
        names.join(", ")
    ));
    if !extra.is_empty() {
        text.push_str(&format!("cpu_model_extra_flags = {}\n", extra.join(", ")));
    }
    Ok(text)
}

/// The flavor trait that asks for a host of the newest model: the newest
/// extension it has that the next older listed model lacks (else the
/// newest it has).
fn flavor_comment(runs: &[&Baseline]) -> String {
    let libvirt_names = |model: &Baseline| -> BTreeSet<&'static str> {
        model
            .flags
            .iter()
            .filter_map(|flag| crate::machine::names::by_linux(flag)?.libvirt)
            .collect()
    };
    let newest = runs.last().map(|model| libvirt_names(model)).unwrap_or_default();
    let older = match runs.len() {
        0 | 1 => BTreeSet::new(),
        n => libvirt_names(runs[n - 2]),
    };
    let pick = NOVA_TRAITS
        .iter()
        .rev()
        .find(|(feature, _)| newest.contains(feature) && !older.contains(feature))
        .or_else(|| {
            NOVA_TRAITS
                .iter()
                .rev()
                .find(|(feature, _)| newest.contains(feature))
        });
    match pick {
        Some((feature, tr)) => format!(
            "# a flavor that needs the newest model asks for it with trait:HW_CPU_X86_{tr}=required ({feature})\n"
        ),
        None => "# no CPU trait Nova reports tells the newest model's hosts apart\n".to_string(),
    }
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
