//! KubeVirt's VirtualMachine CPU (`spec.domain.cpu`) and the node labels
//! a migration target must carry.

use anyhow::{Result, bail};

use crate::outputs::GuestCpu;

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
    let model = super::unversioned(&cpu.libvirt_model);
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
