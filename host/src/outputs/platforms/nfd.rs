//! Kubernetes Node Feature Discovery's feature files (`features.d`): this
//! machine's labels, read by NFD's "local" source.

use std::collections::BTreeSet;

use anyhow::{Result, bail};

use crate::cluster::report::{CpuFlagsReport, ThisNode};
use crate::outputs::qemu::{self, Baseline};

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
    label(format!("{scope}.model"), super::unversioned(baseline));
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
        .map(|model| super::unversioned(&model.model))
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
}
