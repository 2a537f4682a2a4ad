//! OpenStack Nova's `[libvirt]` CPU options (`nova.conf`), and the flavor
//! trait that asks for the newest model.

use std::collections::BTreeSet;

use anyhow::{Result, bail};

use crate::cluster::report::CpuFlagsReport;
use crate::outputs::GuestCpu;
use crate::outputs::qemu::{self, Baseline};

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
    let vendor = match report.one_vendor() {
        Some(one) => one.to_string(),
        None => bail!(
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
        .filter(|model| crate::outputs::libvirt_model(&model.model) == model.model)
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
        .map(|model| super::unversioned(&model.model))
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
