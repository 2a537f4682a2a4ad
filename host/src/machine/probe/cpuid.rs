//! Reading CPUID on a chosen logical CPU.
//!
//! CPUID answers for the CPU the instruction runs on, so each CPU is read
//! from a thread pinned to it (hybrid and mixed-microcode machines differ
//! per CPU; Incus reads one CPU per socket and loses that).

use std::collections::BTreeSet;
use std::io;

use super::flag_table::{Register, cpuid_bits};

/// The named feature bits CPUID reports on `cpu`, with its vendor and brand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuidReading {
    pub flags: BTreeSet<String>,
    pub vendor: String,
    pub brand: String,
    pub address_bits: Option<(u8, u8)>,
}

/// Reads CPUID on every CPU in `cpus`, each from a thread pinned to it.
pub fn read_cpus(cpus: &[usize]) -> io::Result<Vec<CpuidReading>> {
    std::thread::scope(|scope| {
        let readers: Vec<_> = cpus
            .iter()
            .map(|&cpu| scope.spawn(move || read_on(cpu)))
            .collect();
        readers
            .into_iter()
            .map(|reader| {
                reader
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("CPUID reader panicked")))
            })
            .collect()
    })
}

fn read_on(cpu: usize) -> io::Result<CpuidReading> {
    pin_current_thread(cpu)?;
    Ok(read_here())
}

#[cfg(target_os = "linux")]
fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::other(format!("CPU {cpu} is beyond CPU_SETSIZE")));
    }
    // SAFETY: an all-zero `cpu_set_t` is the empty set (plain data).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked above), so it indexes `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed; pid 0 is this thread.
    let pinned = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if pinned != 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::new(
            error.kind(),
            format!("cannot pin to CPU {cpu}: {error}"),
        ));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn pin_current_thread(_cpu: usize) -> io::Result<()> {
    Ok(())
}

#[cfg(target_arch = "x86_64")]
fn read_here() -> CpuidReading {
    let query = |leaf: u32, subleaf: u32| raw_cpuid::cpuid!(leaf, subleaf);
    let max_basic = query(0, 0).eax;
    let max_extended = query(0x8000_0000, 0).eax;
    let in_range = |l: u32, s: u32| -> bool {
        let max_for_family = match l & 0xffff_0000 {
            0 => max_basic,
            0x8000_0000 => max_extended,
            base => {
                let max = query(base, 0).eax;
                if max & 0xffff_0000 == base { max } else { 0 }
            }
        };
        let subleaf_ok = match (l, s) {
            (7, s) if s > 0 => query(7, 0).eax >= s,
            _ => true,
        };
        l <= max_for_family && max_for_family != 0 && subleaf_ok
    };
    let mut flags = BTreeSet::new();
    for bit in cpuid_bits() {
        if !in_range(bit.leaf, bit.subleaf) {
            continue;
        }
        let result = query(bit.leaf, bit.subleaf);
        let register = match bit.register {
            Register::Eax => result.eax,
            Register::Ebx => result.ebx,
            Register::Ecx => result.ecx,
            Register::Edx => result.edx,
        };
        if register & (1 << bit.bit) != 0 {
            flags.insert(bit.name.to_string());
        }
    }
    let info = raw_cpuid::CpuId::new();
    CpuidReading {
        flags,
        vendor: info
            .get_vendor_info()
            .map(|v| v.as_str().to_string())
            .unwrap_or_default(),
        brand: info
            .get_processor_brand_string()
            .map(|b| b.as_str().trim().to_string())
            .unwrap_or_default(),
        address_bits: info
            .get_processor_capacity_feature_info()
            .map(|c| (c.physical_address_bits(), c.linear_address_bits())),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn read_here() -> CpuidReading {
    CpuidReading::default()
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn every_x86_64_cpu_reports_the_baseline() {
        let readings = read_cpus(&[0]).unwrap();
        for flag in [
            "fpu", "sse", "sse2", "lm", "cx8", "cmov", "fxsr", "mmx", "syscall",
        ] {
            assert!(
                readings[0].flags.contains(flag),
                "{flag} missing from {:?}",
                readings[0].flags
            );
        }
        assert!(!readings[0].vendor.is_empty());
    }
}
