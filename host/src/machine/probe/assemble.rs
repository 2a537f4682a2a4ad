//! Builds the `api.Resources` document from what the probe read.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use super::devices::ids::IdDatabase;
use super::devices::sysfs::Roots;
use super::devices::{dmi, gpu, network, pci, storage, usb};
use super::flags::{LocalCpus, local_cpus};
use nodecache_policy_sdk::intersect::common_to_all;

use super::{memory, topology};
use crate::api::resources::{AddressSizes, Cpu, CpuCache, CpuCore, CpuSocket, CpuThread, Resources};

/// Probes this machine. Blocking: reads /proc and /sys and pins threads.
///
/// The CPU section (CPUID from a thread pinned to each CPU, which mostly
/// waits for the scheduler to move it), memory (one sysfs file per memory
/// block) and the device sections share nothing, so they run side by side.
pub fn probe_resources() -> io::Result<Resources> {
    std::thread::scope(|scope| {
        let cpu = scope.spawn(|| local_cpus().map(|cpus| cpu_section(&cpus)));
        let memory = scope.spawn(|| (memory::memory(), memory::load()));
        let hypervisor = scope.spawn(super::hypervisor::probe);
        let roots = Roots::local();
        let pci_ids = IdDatabase::pci();
        let devices = Resources {
            pci: section(pci::pci(&roots, &pci_ids)),
            network: section(network::network(&roots, &pci_ids)),
            storage: section(storage::storage(&roots)),
            system: section(dmi::system(&roots, dmi::local_kind(&roots))),
            gpu: section(gpu::gpu(&roots, &pci_ids)),
            usb: section(usb::usb(&roots)),
            ..Resources::default()
        };
        let (memory, load) = memory
            .join()
            .map_err(|_| io::Error::other("the memory probe panicked"))?;
        let cpu = cpu
            .join()
            .map_err(|_| io::Error::other("the CPU probe panicked"))??;
        let hypervisor = hypervisor
            .join()
            .map_err(|_| io::Error::other("the hypervisor probe panicked"))?;
        Ok(Resources {
            cpu,
            memory,
            load,
            nodecache_hypervisor: Some(hypervisor),
            ..devices
        })
    })
}

/// A device section as the document carries it (the sections nodecache
/// does not read are kept as JSON values).
fn section(typed: impl serde::Serialize) -> Option<serde_json::Value> {
    serde_json::to_value(typed).ok()
}

fn cpu_section(cpus: &LocalCpus) -> Cpu {
    // socket -> (die, core) -> logical CPUs
    let mut layout: BTreeMap<u64, BTreeMap<(u64, u64), Vec<&topology::CpuPlace>>> = BTreeMap::new();
    for place in &cpus.places {
        layout
            .entry(place.socket)
            .or_default()
            .entry((place.die, place.core))
            .or_default()
            .push(place);
    }
    let sockets = layout
        .into_iter()
        .map(|(socket, cores)| socket_section(cpus, socket, cores))
        .collect();
    Cpu {
        architecture: std::env::consts::ARCH.to_string(),
        sockets,
        total: cpus.places.len() as u64,
    }
}

fn socket_section(
    cpus: &LocalCpus,
    socket: u64,
    cores: BTreeMap<(u64, u64), Vec<&topology::CpuPlace>>,
) -> CpuSocket {
    let first = cores.values().flatten().map(|p| p.cpu).min().unwrap_or(0);
    let reading = cpus.readings.get(&first);
    let kernel = cpus.kernel.get(&first);
    let pick = |a: Option<&String>, b: Option<&String>| {
        a.filter(|s| !s.is_empty()).or(b).cloned().unwrap_or_default()
    };
    let address_bits = kernel
        .and_then(|k| k.address_bits)
        .or(reading.and_then(|r| r.address_bits));
    let (frequency_turbo, frequency_minimum) = topology::frequency_mhz(first);
    CpuSocket {
        name: pick(kernel.map(|k| &k.model_name), reading.map(|r| &r.brand)),
        vendor: pick(kernel.map(|k| &k.vendor), reading.map(|r| &r.vendor)),
        socket,
        address_sizes: address_bits.map(|(physical, virt)| AddressSizes {
            physical_bits: physical.into(),
            virtual_bits: virt.into(),
        }),
        cache: topology::caches(first)
            .into_iter()
            .map(|c| CpuCache {
                level: c.level,
                kind: c.kind,
                size: c.size,
            })
            .collect(),
        cores: cores
            .into_iter()
            .map(|((die, core), threads)| core_section(cpus, die, core, &threads))
            .collect(),
        frequency: 0,
        frequency_minimum,
        frequency_turbo,
        nodecache_microcode: kernel.and_then(|k| k.microcode.clone()),
    }
}

/// A core's flags are those all of its threads have: a guest vCPU may land on any.
fn core_section(cpus: &LocalCpus, die: u64, core: u64, threads: &[&topology::CpuPlace]) -> CpuCore {
    let sets = threads.iter().filter_map(|place| {
        let cpu = cpus.flags.iter().find(|f| f.cpu == place.cpu)?;
        Some(cpu.effective().iter().map(String::as_str))
    });
    let flags: Option<BTreeSet<String>> =
        common_to_all(sets).map(|common| common.into_iter().map(str::to_string).collect());
    CpuCore {
        core,
        die,
        threads: threads
            .iter()
            .enumerate()
            .map(|(index, place)| CpuThread {
                id: place.cpu as i64,
                numa_node: place.numa_node,
                thread: index as u64,
                online: place.online,
                isolated: place.isolated,
            })
            .collect(),
        frequency: 0,
        flags: flags.map(|set| in_kernel_order(set, cpus, threads)),
    }
}

/// A core's flags listed as Incus lists them: in the order of the kernel's
/// flags line of the core's first thread (its capability-bit order, not
/// the alphabet). Without a kernel view, sorted.
fn in_kernel_order(
    flags: BTreeSet<String>,
    cpus: &LocalCpus,
    threads: &[&topology::CpuPlace],
) -> Vec<String> {
    let order = threads
        .first()
        .and_then(|place| cpus.kernel.get(&place.cpu))
        .map(|kernel| &kernel.flags_in_order);
    match order {
        Some(order) if !order.is_empty() => order
            .iter()
            .filter(|flag| flags.contains(*flag))
            .cloned()
            .collect(),
        _ => flags.into_iter().collect(),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_probe_counts_every_online_cpu_once() {
        let resources = probe_resources().unwrap();
        let threads: usize = resources
            .cpu
            .sockets
            .iter()
            .flat_map(|s| &s.cores)
            .map(|c| c.threads.len())
            .sum();
        assert_eq!(threads, crate::machine::probe::processors_in_proc_cpuinfo().len());
        assert_eq!(resources.cpu.total as usize, threads);
        assert_eq!(resources.cpu.architecture, std::env::consts::ARCH);
        assert!(resources.memory.total > 0);
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;
    use crate::machine::probe::cpuinfo::KernelCpu;

    /// Threads of one core that disagree (the second lacks `avx`): the
    /// core keeps what both have, in the first thread's line order.
    #[test]
    fn a_cores_flags_follow_the_kernels_line() {
        let line = ["fpu", "vme", "tsc", "sse2", "avx", "aes"];
        let mut cpus = LocalCpus::default();
        for cpu in [0, 1] {
            let flags_in_order: Vec<String> = line
                .iter()
                .filter(|flag| cpu == 0 || **flag != "avx")
                .map(|flag| flag.to_string())
                .collect();
            cpus.kernel.insert(
                cpu,
                KernelCpu {
                    processor: cpu,
                    flags: flags_in_order.iter().cloned().collect(),
                    flags_in_order,
                    ..KernelCpu::default()
                },
            );
        }
        let common: BTreeSet<String> = ["aes", "fpu", "sse2", "tsc", "vme"].map(String::from).into();
        let places: Vec<topology::CpuPlace> = [0, 1]
            .map(|cpu| topology::CpuPlace {
                cpu,
                ..topology::CpuPlace::default()
            })
            .into();
        let threads: Vec<&topology::CpuPlace> = places.iter().collect();
        assert_eq!(
            in_kernel_order(common.clone(), &cpus, &threads),
            ["fpu", "vme", "tsc", "sse2", "aes"]
        );
        assert_eq!(
            in_kernel_order(common, &LocalCpus::default(), &threads),
            ["aes", "fpu", "sse2", "tsc", "vme"]
        );
    }
}
