//! The text an operator pastes into QEMU, libvirt or Incus.

use std::collections::BTreeMap;

use super::GuestCpu;

/// `-cpu` for QEMU: `MODEL,feature,…,lacking=off,…,enforce`. Bare names
/// (each means `name=on`; QEMU 7.2 maps `_` to `-` only in bare names, not
/// after `+`), `=off` for the model's features some node cannot give, and
/// `enforce`: a node whose KVM cannot supply a feature refuses to start
/// the guest instead of starting it with another CPU than promised.
pub fn qemu_cpu(cpu: &GuestCpu) -> String {
    let mut parts = vec![cpu.baseline.clone()];
    parts.extend(cpu.qemu_features.iter().cloned());
    parts.extend(cpu.qemu_disabled.iter().map(|name| format!("{name}=off")));
    parts.push("enforce".into());
    parts.join(",")
}

/// A libvirt domain's `<cpu>`: the baseline model, every common feature
/// required, the model's features some node lacks disabled.
/// `check='full'`: libvirt compares the CPU QEMU really made with this
/// definition once the guest starts and refuses a mismatch, the check that
/// matches QEMU's `enforce` ('partial' checks only against the host-model
/// before start, and would let a feature silently go missing).
pub fn libvirt_cpu(cpu: &GuestCpu) -> String {
    let mut xml = format!(
        "<cpu mode='custom' match='exact' check='full'>\n  <model fallback='forbid'>{}</model>\n",
        cpu.libvirt_model
    );
    for feature in &cpu.libvirt_features {
        xml.push_str(&format!("  <feature policy='require' name='{feature}'/>\n"));
    }
    for feature in &cpu.libvirt_disabled {
        xml.push_str(&format!("  <feature policy='disable' name='{feature}'/>\n"));
    }
    xml.push_str("</cpu>\n");
    xml
}

/// The keys an Incus cluster group takes (`incus cluster group set GROUP
/// key=value`, or `incus config set`); a disabled feature is written
/// `-name`. Kept as values: `--apply` sets them, the text prints them.
pub fn incus_keys(cpu: &GuestCpu) -> BTreeMap<String, String> {
    let flags: Vec<String> = cpu
        .qemu_features
        .iter()
        .cloned()
        .chain(cpu.qemu_disabled.iter().map(|name| format!("-{name}")))
        .collect();
    BTreeMap::from([
        (
            "instances.vm.cpu.x86_64.baseline".to_string(),
            cpu.baseline.clone(),
        ),
        ("instances.vm.cpu.x86_64.flags".to_string(), flags.join(",")),
    ])
}

/// Incus keys as `key=value` lines, as `--format incus` prints them.
pub fn incus_text(keys: &BTreeMap<String, String>) -> String {
    keys.iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::qemu::Baseline;

    fn guest(common: &[&str]) -> GuestCpu {
        let baseline = Baseline {
            model: "kvm64".into(),
            flags: ["fpu", "sse2", "pni"].iter().map(|f| f.to_string()).collect(),
            shown_as: Vec::new(),
            unprovable: Vec::new(),
            source: "test".into(),
            vendor: None,
        };
        let common: Vec<String> = common.iter().map(|f| f.to_string()).collect();
        GuestCpu::new(&common, &baseline)
    }

    #[test]
    fn qemu_gets_qemu_names_less_the_baseline_and_synthetic_flags() {
        let cpu = guest(&[
            "fpu",
            "sse2",
            "pni",
            "sse4_2",
            "sha_ni",
            "avx512_vnni",
            "constant_tsc",
            "tsc_deadline_timer",
        ]);
        assert_eq!(
            qemu_cpu(&cpu),
            "kvm64,avx512vnni,sha-ni,sse4.2,tsc-deadline,enforce"
        );
        assert_eq!(
            incus_text(&incus_keys(&cpu)),
            "instances.vm.cpu.x86_64.baseline=kvm64\n\
             instances.vm.cpu.x86_64.flags=avx512vnni,sha-ni,sse4.2,tsc-deadline\n"
        );
    }

    #[test]
    fn libvirt_gets_every_common_feature_in_its_names() {
        let xml = libvirt_cpu(&guest(&["fpu", "pclmulqdq", "sse4_2", "constant_tsc"]));
        assert!(xml.contains("<model fallback='forbid'>kvm64</model>"));
        for name in ["fpu", "pclmuldq", "sse4.2"] {
            assert!(xml.contains(&format!("name='{name}'")), "{name}: {xml}");
        }
        assert!(!xml.contains("constant_tsc"));
    }
}
