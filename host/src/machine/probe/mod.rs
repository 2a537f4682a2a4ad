//! This machine's hardware as an Incus `api.Resources` document.
//!
//! Flags come per logical CPU from CPUID (the probing thread pinned to that
//! CPU) reconciled with the kernel's /proc/cpuinfo line for the same CPU;
//! topology, caches and NUMA from /sys; memory and load from /proc and /sys
//! (`memory`); GPUs, PCI and USB devices, network cards, disks and the DMI
//! identity from /sys and ethtool (`devices`), as Incus reads them.

pub(crate) mod cpuid;
pub use nodecache_input::cpuinfo;
pub(crate) mod devices;
pub(crate) mod flag_table;
pub(crate) mod flags;
pub mod hypervisor;
pub(crate) mod memory;
pub(crate) mod topology;

mod assemble;

pub use assemble::probe_resources;
pub use flags::{CpuFlags, local_cpu_flags};

/// The logical CPUs `/proc/cpuinfo` lists (its `processor` lines): counted
/// apart from /sys, which the probe reads, so a test comparing the two can
/// fail.
#[cfg(test)]
pub(crate) fn processors_in_proc_cpuinfo() -> Vec<usize> {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .lines()
        .filter(|line| line.starts_with("processor"))
        .map(|line| line.rsplit(':').next().unwrap().trim().parse().unwrap())
        .collect()
}
