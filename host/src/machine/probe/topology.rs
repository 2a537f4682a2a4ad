//! Where each logical CPU sits (socket, die, core, thread, NUMA node) and its
//! caches, from /sys/devices/system/cpu.

use std::fs;
use std::path::Path;

const CPU_ROOT: &str = "/sys/devices/system/cpu";

/// A logical CPU's place in the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuPlace {
    pub cpu: usize,
    pub socket: u64,
    pub die: u64,
    pub core: u64,
    pub numa_node: u64,
    pub online: bool,
    pub isolated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    pub level: u64,
    pub kind: String,
    pub size: u64,
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
pub fn parse_cpu_list(text: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.parse::<usize>().ok()),
        }
    }
    cpus
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn read_number(path: impl AsRef<Path>) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}

/// The online logical CPUs; falls back to what the scheduler reports.
pub fn online_cpus() -> Vec<usize> {
    read_trimmed(format!("{CPU_ROOT}/online"))
        .map(|list| parse_cpu_list(&list))
        .filter(|cpus| !cpus.is_empty())
        .unwrap_or_else(|| (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect())
}

/// Places of the given CPUs.
pub fn places(cpus: &[usize]) -> Vec<CpuPlace> {
    let isolated = read_trimmed(format!("{CPU_ROOT}/isolated"))
        .map(|l| parse_cpu_list(&l))
        .unwrap_or_default();
    cpus.iter()
        .map(|&cpu| {
            let dir = format!("{CPU_ROOT}/cpu{cpu}");
            CpuPlace {
                cpu,
                socket: read_number(format!("{dir}/topology/physical_package_id")).unwrap_or(0),
                die: read_number(format!("{dir}/topology/die_id")).unwrap_or(0),
                core: read_number(format!("{dir}/topology/core_id")).unwrap_or(cpu as u64),
                numa_node: numa_node_of(&dir).unwrap_or(0),
                online: read_number(format!("{dir}/online")).is_none_or(|v| v == 1),
                isolated: isolated.contains(&cpu),
            }
        })
        .collect()
}

/// The NUMA node a CPU's directory links to, as Incus finds it: a `nodeN`
/// entry that is a node (it has `numastat`), else node 0.
fn numa_node_of(cpu_dir: &str) -> Option<u64> {
    fs::read_dir(cpu_dir).ok()?.flatten().find_map(|entry| {
        let name = entry.file_name();
        let number = name.to_str()?.strip_prefix("node")?.parse().ok()?;
        entry.path().join("numastat").exists().then_some(number)
    })
}

/// The caches CPU `cpu` sees (Incus lists those of the socket's first CPU).
pub fn caches(cpu: usize) -> Vec<Cache> {
    let Ok(entries) = fs::read_dir(format!("{CPU_ROOT}/cpu{cpu}/cache")) else {
        return Vec::new();
    };
    let mut caches: Vec<(String, Cache)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("index"))
        .filter_map(|entry| {
            let dir = entry.path();
            let cache = Cache {
                level: read_number(dir.join("level"))?,
                kind: read_trimmed(dir.join("type"))?,
                size: parse_size(&read_trimmed(dir.join("size"))?)?,
            };
            Some((entry.file_name().to_string_lossy().into_owned(), cache))
        })
        .collect();
    caches.sort_by(|a, b| (a.1.level, &a.0).cmp(&(b.1.level, &b.0)));
    caches.into_iter().map(|(_, cache)| cache).collect()
}

/// `32K` -> 32768.
fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let multiplier = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    digits.parse::<u64>().ok().map(|n| n * multiplier)
}

/// Maximum and minimum frequency of `cpu` in MHz, where cpufreq exposes them.
pub fn frequency_mhz(cpu: usize) -> (u64, u64) {
    let dir = format!("{CPU_ROOT}/cpu{cpu}/cpufreq");
    let khz = |name: &str| read_number(format!("{dir}/{name}")).map_or(0, |khz| khz / 1000);
    (khz("cpuinfo_max_freq"), khz("cpuinfo_min_freq"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by grafting a second NUMA node into a real Incus's /sys
    /// (tests/recorded_sysfs.rs): Incus counts a CPU's `nodeN` link only when
    /// the node has `numastat`; nodecache took any `nodeN`.
    #[test]
    fn a_node_link_counts_only_to_a_node_with_numastat() {
        let root = tempfile::tempdir().unwrap();
        let (cpu, node) = (root.path().join("cpu1"), root.path().join("node1"));
        fs::create_dir_all(&cpu).unwrap();
        fs::create_dir_all(&node).unwrap();
        std::os::unix::fs::symlink(&node, cpu.join("node1")).unwrap();
        assert_eq!(numa_node_of(cpu.to_str().unwrap()), None);
        fs::write(node.join("numastat"), "numa_hit 1\n").unwrap();
        assert_eq!(numa_node_of(cpu.to_str().unwrap()), Some(1));
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("5"), [5]);
    }

    #[test]
    fn cache_sizes_parse() {
        assert_eq!(parse_size("32K"), Some(32768));
        assert_eq!(parse_size("1024K"), Some(1 << 20));
        assert_eq!(parse_size("32M"), Some(32 << 20));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn the_online_cpus_are_those_proc_cpuinfo_lists() {
        assert_eq!(online_cpus(), crate::machine::probe::processors_in_proc_cpuinfo());
    }
}
