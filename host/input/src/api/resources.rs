//! Incus's `api.Resources` document, with the same JSON field names, so
//! Incus and LXD clients read ours and we read theirs.
//!
//! CPU, memory and load are modelled here, being what nodecache computes
//! with; the device sections (GPU, network, storage, USB, PCI, system,
//! serial) are carried as JSON values, so a document read from Incus is
//! written back without losing them. The local probe makes its own device
//! sections from the typed structs in `devices`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu: Cpu,
    #[serde(default)]
    pub memory: Memory,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usb: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<Load>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<Value>,
    /// nodecache's extension (`resources_nodecache_hypervisor` in `/1.0`'s
    /// `api_extensions`): what this node's hypervisor can give a guest.
    /// Incus and LXD clients ignore a field they do not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodecache_hypervisor: Option<Hypervisor>,
}

/// What a node's KVM, with QEMU's own additions and migratable filter, can
/// give a guest: the CPU a migration depends on, smaller than the host's
/// flags (features KVM does not virtualise, microcode that took some away).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hypervisor {
    /// `kvm`.
    pub accelerator: String,
    /// Sorted Linux names of the CPUID bits, then QEMU's names of the
    /// feature-MSR bits (`mds-no`, ...); `null` when there is no set.
    #[serde(default)]
    pub flags: Option<Vec<String>>,
    /// Why there is no set: `/dev/kvm` missing or not readable, an ioctl
    /// refused. Never a guess.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub architecture: String,
    #[serde(default)]
    pub sockets: Vec<CpuSocket>,
    #[serde(default)]
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuSocket {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vendor: String,
    #[serde(default)]
    pub socket: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_sizes: Option<AddressSizes>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<CpuCache>,
    #[serde(default)]
    pub cores: Vec<CpuCore>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frequency: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frequency_minimum: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frequency_turbo: u64,
    /// nodecache's extension (`resources_nodecache_microcode`): the
    /// microcode revision of the socket's first CPU, as /proc/cpuinfo says
    /// (`0xde`). Incus carries none; a microcode update that takes features
    /// away is the change operators most need named (`nodecache history`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodecache_microcode: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AddressSizes {
    pub physical_bits: u64,
    pub virtual_bits: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuCache {
    pub level: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub size: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuCore {
    pub core: u64,
    #[serde(default)]
    pub die: u64,
    #[serde(default)]
    pub threads: Vec<CpuThread>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frequency: u64,
    /// Linux /proc/cpuinfo names; `null` when the server does not report them (LXD 5.0).
    #[serde(default)]
    pub flags: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuThread {
    pub id: i64,
    #[serde(default)]
    pub numa_node: u64,
    pub thread: u64,
    #[serde(default)]
    pub online: bool,
    #[serde(default)]
    pub isolated: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<MemoryNode>,
    #[serde(default)]
    pub hugepages_total: u64,
    #[serde(default)]
    pub hugepages_used: u64,
    #[serde(default)]
    pub hugepages_size: u64,
    #[serde(default)]
    pub used: u64,
    #[serde(default)]
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryNode {
    pub numa_node: u64,
    #[serde(default)]
    pub hugepages_used: u64,
    #[serde(default)]
    pub hugepages_total: u64,
    #[serde(default)]
    pub used: u64,
    #[serde(default)]
    pub total: u64,
}

/// Incus's Go struct has no JSON tags here, hence the capitalised names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    #[serde(rename = "Average1Min")]
    pub average_1min: f64,
    #[serde(rename = "Average5Min")]
    pub average_5min: f64,
    /// Incus fills this from the 15-minute figure of /proc/loadavg.
    #[serde(rename = "Average10Min")]
    pub average_10min: f64,
    #[serde(rename = "Processes")]
    pub processes: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::envelope::unwrap_resources;

    const INCUS: &str = include_str!("../../../../tests/fixtures/incus-6.0.4-resources.envelope.json");
    const LXD: &str = include_str!("../../../../tests/fixtures/lxd-5.0.2-resources.envelope.json");

    #[test]
    fn an_incus_document_round_trips_without_loss() {
        let original: Value = serde_json::from_str::<Value>(INCUS).unwrap()["metadata"].clone();
        let typed: Resources = serde_json::from_value(original.clone()).unwrap();
        assert_eq!(typed.cpu.sockets[0].cores[0].flags.as_ref().unwrap().len(), 106);
        assert_eq!(serde_json::to_value(&typed).unwrap(), original);
    }

    #[test]
    fn an_lxd_document_without_flags_reads() {
        let typed = unwrap_resources(LXD.as_bytes()).unwrap();
        assert_eq!(typed.cpu.architecture, "x86_64");
        assert!(typed.cpu.sockets[0].cores.iter().all(|core| core.flags.is_none()));
        assert!(typed.load.is_none());
    }
}
