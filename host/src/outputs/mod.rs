//! What operators paste: a cluster's common flags in the terms of QEMU,
//! libvirt and Incus ([`output`], [`render`]) and of the platforms above
//! them ([`platforms`]: Proxmox VE), why each node holds the
//! cluster back ([`explain`]), where a guest can run ([`placement`]), and
//! the keys set on an Incus cluster group ([`incus_group`]). Names are
//! joined through CPUID bits (`machine::names`), and a baseline model's own
//! flags come from QEMU ([`qemu`], [`qemu_answers`]).

pub(crate) mod explain;
pub(crate) mod incus_group;
pub(crate) mod model_props;
pub(crate) mod output;
pub(crate) mod placement;
pub(crate) mod platforms;
pub(crate) mod qemu;
pub(crate) mod qemu_answers;
pub(crate) mod render;

use serde::Serialize;

use crate::machine::names;
use qemu::Baseline;

/// libvirt's cpu_map, where libvirt is installed.
const LIBVIRT_CPU_MAP: &str = "/usr/share/libvirt/cpu_map";

pub(crate) fn libvirt_model(model: &str) -> String {
    let known = std::path::Path::new(LIBVIRT_CPU_MAP)
        .join(format!("x86_{model}.xml"))
        .is_file();
    if known || model == "kvm64" {
        model.to_string()
    } else {
        "kvm64".to_string()
    }
}

/// The common set as a hypervisor takes it: a baseline model plus
/// features, less the model's own features some node cannot give.
#[derive(Debug, Clone, Serialize)]
pub struct GuestCpu {
    pub baseline: String,
    /// Where the baseline's own flags were learned ("QEMU 10.0.2").
    pub baseline_source: String,
    /// QEMU names of the common flags the baseline does not already give.
    pub qemu_features: Vec<String>,
    /// QEMU names of the baseline's own features that some node cannot
    /// give a guest: turned off, so the model starts everywhere.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub qemu_disabled: Vec<String>,
    /// libvirt names of every common flag libvirt knows.
    pub libvirt_features: Vec<String>,
    /// libvirt names of the disabled features.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub libvirt_disabled: Vec<String>,
    /// The model the libvirt output names: the baseline where libvirt knows
    /// it (its cpu_map has it), else `kvm64`.
    pub libvirt_model: String,
    /// With `--baseline auto`: why this model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen_because: Option<String>,
}

impl GuestCpu {
    pub fn new(common: &[String], baseline: &Baseline) -> GuestCpu {
        let known: Vec<names::FlagNames> = common.iter().filter_map(|flag| names::by_linux(flag)).collect();
        let mut qemu_features: Vec<String> = known
            .iter()
            .filter(|names| !baseline.flags.contains(names.linux))
            .filter_map(|names| names.qemu.map(str::to_string))
            .collect();
        qemu_features.sort();
        let mut libvirt_features: Vec<String> = known
            .iter()
            .filter_map(|names| names.libvirt.map(str::to_string))
            .collect();
        libvirt_features.sort();
        let common_set: std::collections::BTreeSet<&str> = common.iter().map(String::as_str).collect();
        let qemu_disabled = qemu::fit(baseline, &common_set, 0).disabled;
        // libvirt spells these properties as QEMU does but for the bits
        // the name table joins under other names.
        let mut libvirt_disabled: Vec<String> = qemu_disabled
            .iter()
            .filter_map(|prop| match names::by_qemu(prop) {
                Some(names) => names.libvirt.map(str::to_string),
                None => Some(prop.clone()),
            })
            .collect();
        libvirt_disabled.sort();
        GuestCpu {
            baseline: baseline.model.clone(),
            baseline_source: baseline.source.clone(),
            qemu_features,
            qemu_disabled,
            libvirt_features,
            libvirt_disabled,
            libvirt_model: libvirt_model(&baseline.model),
            chosen_because: None,
        }
    }
}
