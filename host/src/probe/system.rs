//! Memory and load, from /proc/meminfo and /proc/loadavg.

use crate::api::resources::{Load, Memory};

/// Parses /proc/meminfo into Incus's memory section (bytes).
pub fn parse_meminfo(text: &str) -> Memory {
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| {
                let rest = line.strip_prefix(name)?.strip_prefix(':')?;
                let mut parts = rest.split_whitespace();
                let value: u64 = parts.next()?.parse().ok()?;
                Some(if parts.next() == Some("kB") {
                    value * 1024
                } else {
                    value
                })
            })
            .unwrap_or(0)
    };
    let total = field("MemTotal");
    let available = field("MemAvailable");
    let hugepage_size = field("Hugepagesize");
    let huge_total = field("HugePages_Total");
    let huge_free = field("HugePages_Free");
    Memory {
        nodes: Vec::new(),
        hugepages_total: huge_total * hugepage_size,
        hugepages_used: (huge_total - huge_free.min(huge_total)) * hugepage_size,
        hugepages_size: hugepage_size,
        used: total.saturating_sub(available),
        total,
    }
}

/// Parses /proc/loadavg (`0.41 0.21 0.12 2/74 1234`).
pub fn parse_loadavg(text: &str) -> Option<Load> {
    let mut parts = text.split_whitespace();
    let mut next_f64 = || parts.next()?.parse::<f64>().ok();
    let (one, five, fifteen) = (next_f64()?, next_f64()?, next_f64()?);
    let processes = text.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()?;
    Some(Load {
        average_1min: one,
        average_5min: five,
        average_10min: fifteen,
        processes,
    })
}

pub fn memory() -> Memory {
    std::fs::read_to_string("/proc/meminfo")
        .map(|t| parse_meminfo(&t))
        .unwrap_or_default()
}

pub fn load() -> Option<Load> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_parses_into_bytes() {
        let text = "MemTotal:       25165824 kB\nMemFree:  100 kB\nMemAvailable:   20971520 kB\nHugePages_Total:       4\nHugePages_Free:        1\nHugepagesize:       2048 kB\n";
        let memory = parse_meminfo(text);
        assert_eq!(memory.total, 25_769_803_776);
        assert_eq!(memory.used, (25_165_824 - 20_971_520) * 1024);
        assert_eq!(memory.hugepages_size, 2 << 20);
        assert_eq!(memory.hugepages_total, 4 * (2 << 20));
        assert_eq!(memory.hugepages_used, 3 * (2 << 20));
    }

    #[test]
    fn loadavg_parses() {
        let load = parse_loadavg("0.41 0.21 0.12 2/74 1234\n").unwrap();
        assert_eq!(
            (load.average_1min, load.average_10min, load.processes),
            (0.41, 0.12, 74)
        );
        assert!(parse_loadavg("garbage").is_none());
    }
}
