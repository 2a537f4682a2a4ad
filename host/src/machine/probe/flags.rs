//! Per-CPU flags from CPUID reconciled with the kernel's view.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use super::cpuid::{self, CpuidReading};
use super::cpuinfo::{self, KernelCpu};
use super::topology;

/// What one logical CPU reports, from both sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuFlags {
    pub cpu: usize,
    /// Named CPUID bits read on this CPU.
    pub cpuid: BTreeSet<String>,
    /// This CPU's /proc/cpuinfo flags, where the kernel publishes them.
    pub kernel: Option<BTreeSet<String>>,
}

impl CpuFlags {
    /// The flags a guest may rely on. Where the kernel publishes a view it
    /// wins: it clears bits it disabled (errata, old microcode: `rdseed` on
    /// some Zen parts), keeps bits it forced, and adds flags it synthesises
    /// (`constant_tsc`, `nopl`...). Without it, CPUID's named bits.
    pub fn effective(&self) -> &BTreeSet<String> {
        self.kernel.as_ref().unwrap_or(&self.cpuid)
    }

    /// CPUID reports these, the kernel does not (it cleared or hides them).
    pub fn hidden_by_kernel(&self) -> BTreeSet<String> {
        match &self.kernel {
            Some(kernel) => self.cpuid.difference(kernel).cloned().collect(),
            None => BTreeSet::new(),
        }
    }

    /// The kernel reports these, CPUID does not name them (synthesised or forced).
    pub fn kernel_only(&self) -> BTreeSet<String> {
        match &self.kernel {
            Some(kernel) => kernel.difference(&self.cpuid).cloned().collect(),
            None => BTreeSet::new(),
        }
    }
}

/// Everything the probe learns about the CPUs in one pass.
#[derive(Debug, Clone, Default)]
pub struct LocalCpus {
    pub flags: Vec<CpuFlags>,
    pub readings: BTreeMap<usize, CpuidReading>,
    pub kernel: BTreeMap<usize, KernelCpu>,
    pub places: Vec<topology::CpuPlace>,
}

/// Reads every online CPU: CPUID on each (pinned), /proc/cpuinfo, /sys topology.
pub fn local_cpus() -> io::Result<LocalCpus> {
    let online = topology::online_cpus();
    let readings = cpuid::read_cpus(&online)?;
    let kernel = cpuinfo::read().unwrap_or_default();
    let flags = online
        .iter()
        .zip(&readings)
        .map(|(&cpu, reading)| CpuFlags {
            cpu,
            cpuid: reading.flags.clone(),
            kernel: kernel.get(&cpu).map(|k| k.flags.clone()),
        })
        .collect();
    Ok(LocalCpus {
        flags,
        readings: online.iter().copied().zip(readings).collect(),
        kernel,
        places: topology::places(&online),
    })
}

/// Just the per-CPU flags, for `nodecache probe`.
pub fn local_cpu_flags() -> io::Result<Vec<CpuFlags>> {
    Ok(local_cpus()?.flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_kernel_view_wins_and_differences_are_reported() {
        let cpu = CpuFlags {
            cpu: 0,
            cpuid: set(&["fpu", "sse2", "rdseed"]),
            kernel: Some(set(&["fpu", "sse2", "constant_tsc"])),
        };
        assert_eq!(cpu.effective(), &set(&["constant_tsc", "fpu", "sse2"]));
        assert_eq!(cpu.hidden_by_kernel(), set(&["rdseed"]));
        assert_eq!(cpu.kernel_only(), set(&["constant_tsc"]));
    }

    #[test]
    fn without_a_kernel_view_cpuid_stands() {
        let cpu = CpuFlags {
            cpu: 0,
            cpuid: set(&["fpu"]),
            kernel: None,
        };
        assert_eq!(cpu.effective(), &set(&["fpu"]));
        assert!(cpu.hidden_by_kernel().is_empty());
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn this_machine_reports_every_online_cpu() {
        let cpus = local_cpus().unwrap();
        let numbers: Vec<usize> = cpus.flags.iter().map(|cpu| cpu.cpu).collect();
        assert_eq!(numbers, crate::machine::probe::processors_in_proc_cpuinfo());
        assert!(cpus.flags.iter().all(|cpu| cpu.effective().contains("fpu")));
    }
}
