//! The kernel's view of each CPU, from /proc/cpuinfo.

use std::collections::{BTreeMap, BTreeSet};

/// One `processor` block of /proc/cpuinfo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCpu {
    pub processor: usize,
    pub vendor: String,
    pub model_name: String,
    /// `flags` on x86, `Features` on Arm.
    pub flags: BTreeSet<String>,
    /// The same flags in the kernel's order (its capability-bit order), which
    /// is how Incus lists a core's flags.
    pub flags_in_order: Vec<String>,
    pub address_bits: Option<(u8, u8)>,
    /// The microcode revision the kernel loaded (`0xde`), on x86: an update
    /// can take features away (TSX), so the hardware history names it.
    pub microcode: Option<String>,
}

/// Parses /proc/cpuinfo text into blocks keyed by processor number.
pub fn parse(text: &str) -> BTreeMap<usize, KernelCpu> {
    let mut cpus = BTreeMap::new();
    for block in text.split("\n\n") {
        let mut cpu = KernelCpu::default();
        let mut processor = None;
        for line in block.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "processor" => processor = value.parse().ok(),
                "vendor_id" | "CPU implementer" if cpu.vendor.is_empty() => cpu.vendor = value.to_string(),
                "model name" => cpu.model_name = value.to_string(),
                "flags" | "Features" => {
                    cpu.flags_in_order = value.split_whitespace().map(str::to_string).collect();
                    cpu.flags = cpu.flags_in_order.iter().cloned().collect();
                }
                "address sizes" => cpu.address_bits = parse_address_sizes(value),
                "microcode" => cpu.microcode = Some(value.to_string()),
                _ => {}
            }
        }
        if let Some(processor) = processor {
            cpu.processor = processor;
            cpus.insert(processor, cpu);
        }
    }
    cpus
}

/// `48 bits physical, 48 bits virtual` -> (48, 48).
fn parse_address_sizes(value: &str) -> Option<(u8, u8)> {
    let mut numbers = value
        .split(',')
        .filter_map(|part| part.split_whitespace().next()?.parse().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// Reads and parses /proc/cpuinfo; `None` where there is none (not Linux, sandbox).
pub fn read() -> Option<BTreeMap<usize, KernelCpu>> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .map(|text| parse(&text))
        .filter(|cpus| !cpus.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_parsed_per_processor() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\nflags\t\t: fpu sse2 avx\nmicrocode\t: 0xde\naddress sizes\t: 46 bits physical, 57 bits virtual\n\nprocessor\t: 1\nflags\t\t: fpu sse2\n";
        let cpus = parse(text);
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[&0].vendor, "GenuineIntel");
        assert_eq!(cpus[&0].address_bits, Some((46, 57)));
        assert_eq!(cpus[&0].microcode.as_deref(), Some("0xde"));
        assert_eq!(cpus[&1].microcode, None);
        assert_eq!(cpus[&0].flags.len(), 3);
        assert_eq!(cpus[&1].flags.iter().collect::<Vec<_>>(), ["fpu", "sse2"]);
    }

    #[test]
    fn arm_features_count_as_flags() {
        let cpus = parse("processor\t: 0\nFeatures\t: fp asimd aes\nCPU implementer\t: 0x41\n");
        assert!(cpus[&0].flags.contains("asimd"));
    }
}
