//! Memory and load, computed as Incus computes them so the two agree:
//! memory total from the online memory blocks in /sys (the installed size,
//! not the kernel's MemTotal), used = total - (free + buffers + cached),
//! per-NUMA-node figures from /sys/devices/system/node, and processes as the
//! number of /proc/<pid> entries.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::Path;

use crate::api::resources::{Load, Memory, MemoryNode};

/// /proc/meminfo-style fields (`Name: value kB`, or `Node 0 Name: value kB`
/// in a NUMA node's meminfo) in bytes; counts stay counts.
fn meminfo_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let line = match line.strip_prefix("Node ") {
            Some(rest) => rest.split_once(' ')?.1.trim_start(),
            None => line,
        };
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        Some(if parts.next() == Some("kB") {
            value * 1024
        } else {
            value
        })
    })
}

/// Parses /proc/meminfo into Incus's memory section (bytes). `installed` is
/// the size from memory blocks, when /sys gives it.
pub fn parse_meminfo(text: &str, installed: Option<u64>) -> Memory {
    let field = |name: &str| meminfo_field(text, name).unwrap_or(0);
    let total = installed.unwrap_or_else(|| field("MemTotal"));
    let hugepage_size = field("Hugepagesize");
    let huge_total = field("HugePages_Total");
    let huge_free = field("HugePages_Free");
    Memory {
        nodes: Vec::new(),
        hugepages_total: huge_total * hugepage_size,
        hugepages_used: huge_total.saturating_sub(huge_free) * hugepage_size,
        hugepages_size: hugepage_size,
        used: total.saturating_sub(field("MemFree") + field("Buffers") + field("Cached")),
        total,
    }
}

/// Parses /proc/loadavg (`0.41 0.21 0.12 2/74 1234`); `processes` is counted separately.
pub fn parse_loadavg(text: &str, processes: u64) -> Option<Load> {
    let mut parts = text.split_whitespace().map(|p| p.parse::<f64>().ok());
    Some(Load {
        average_1min: parts.next()??,
        average_5min: parts.next()??,
        average_10min: parts.next()??,
        processes,
    })
}

/// Memory blocks (`memoryN` entries of /sys) and their size: how Incus
/// counts installed memory, per machine and per NUMA node.
struct MemoryBlocks {
    size: u64,
    online: HashSet<u64>,
}

impl MemoryBlocks {
    /// Reads each block's `online` flag once.
    fn read() -> Option<MemoryBlocks> {
        let text = fs::read_to_string("/sys/devices/system/memory/block_size_bytes").ok()?;
        let size = u64::from_str_radix(text.trim(), 16).ok()?;
        let online: HashSet<u64> = block_numbers(Path::new("/sys/devices/system/memory"))
            .filter(|n| is_online(&format!("/sys/devices/system/memory/memory{n}/online")))
            .collect();
        (!online.is_empty()).then_some(MemoryBlocks { size, online })
    }

    /// Bytes of the online blocks listed in `dir` (the machine's or a node's).
    fn online_bytes(&self, dir: &Path) -> Option<u64> {
        let count = block_numbers(dir).filter(|n| self.online.contains(n)).count() as u64;
        (count > 0).then_some(count * self.size)
    }
}

/// Whether a block's `online` file says `1`: one `open` and one `read`
/// into a small buffer (a machine has hundreds of blocks, and
/// `read_to_string` adds a `statx` and a second `read` to each).
fn is_online(path: &str) -> bool {
    let mut flag = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut file| file.read(&mut flag))
        .is_ok_and(|read| flag[..read].trim_ascii() == b"1")
}

fn block_numbers(dir: &Path) -> impl Iterator<Item = u64> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("memory")?.parse().ok())
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Each NUMA node's memory. Huge pages are counted as Incus counts them:
/// the node meminfo's `HugePages_Total`/`_Free`, which are pages of the
/// default size only, times that size (`hugepage_size`, bytes); a node's
/// 1 GiB pages beside 2 MiB defaults are not in it.
fn numa_nodes(root: &Path, blocks: Option<&MemoryBlocks>, hugepage_size: u64) -> Vec<MemoryNode> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut nodes: Vec<MemoryNode> = entries
        .flatten()
        .filter_map(|entry| {
            let numa_node: u64 = entry.file_name().to_str()?.strip_prefix("node")?.parse().ok()?;
            let dir = entry.path();
            let meminfo = fs::read_to_string(dir.join("meminfo")).ok()?;
            let field = |name: &str| meminfo_field(&meminfo, name).unwrap_or(0);
            let (huge_total, huge_free) = (field("HugePages_Total"), field("HugePages_Free"));
            Some(MemoryNode {
                numa_node,
                hugepages_used: huge_total.saturating_sub(huge_free) * hugepage_size,
                hugepages_total: huge_total * hugepage_size,
                used: field("MemUsed"),
                total: blocks
                    .and_then(|b| b.online_bytes(&dir))
                    .unwrap_or(field("MemTotal")),
            })
        })
        .collect();
    nodes.sort_by_key(|node| node.numa_node);
    nodes
}

pub fn memory() -> Memory {
    let blocks = MemoryBlocks::read();
    let installed = blocks
        .as_ref()
        .and_then(|b| b.online_bytes(Path::new("/sys/devices/system/memory")));
    let mut memory = fs::read_to_string("/proc/meminfo")
        .map(|t| parse_meminfo(&t, installed))
        .unwrap_or_default();
    memory.nodes = numa_nodes(
        Path::new("/sys/devices/system/node"),
        blocks.as_ref(),
        memory.hugepages_size,
    );
    memory
}

pub fn load() -> Option<Load> {
    let processes = fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_str().is_some_and(is_number))
                .count() as u64
        })
        .unwrap_or(0);
    parse_loadavg(&fs::read_to_string("/proc/loadavg").ok()?, processes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       25165824 kB\nMemFree:  1000 kB\nMemAvailable:   20971520 kB\nBuffers:  100 kB\nCached:  2000 kB\nHugePages_Total:       4\nHugePages_Free:        1\nHugepagesize:       2048 kB\n";

    #[test]
    fn meminfo_parses_into_bytes() {
        let memory = parse_meminfo(MEMINFO, None);
        assert_eq!(memory.total, 25_165_824 * 1024);
        assert_eq!(memory.used, (25_165_824 - 1000 - 100 - 2000) * 1024);
        assert_eq!(memory.hugepages_size, 2 << 20);
        assert_eq!(memory.hugepages_total, 4 * (2 << 20));
        assert_eq!(memory.hugepages_used, 3 * (2 << 20));
    }

    #[test]
    fn installed_memory_overrides_memtotal() {
        let memory = parse_meminfo(MEMINFO, Some(24 << 30));
        assert_eq!(memory.total, 24 << 30);
        assert_eq!(memory.used, (24 << 30) - 3100 * 1024);
    }

    #[test]
    fn numa_node_meminfo_lines_parse() {
        let text = "Node 0 MemTotal:       13330636 kB\nNode 0 MemUsed:         8109388 kB\nNode 0 HugePages_Total:     4\n";
        assert_eq!(meminfo_field(text, "MemUsed"), Some(8_109_388 * 1024));
        // A count, not kB: the node's pages of the default size.
        assert_eq!(meminfo_field(text, "HugePages_Total"), Some(4));
        assert_eq!(
            meminfo_field("SwapCached: 5 kB\nCached: 7 kB\n", "Cached"),
            Some(7 * 1024)
        );
    }

    /// The machine: four 2 MiB pages (the default size) and one
    /// 1 GiB page on node 0. Incus says 8388608 bytes of huge pages for the
    /// node; summing every size said 1082130432, more than the machine's.
    #[test]
    fn a_nodes_huge_pages_are_those_of_the_default_size() {
        let root = tempfile::tempdir().unwrap();
        let node = root.path().join("node0");
        let gigantic = node.join("hugepages/hugepages-1048576kB");
        fs::create_dir_all(&gigantic).unwrap();
        fs::write(gigantic.join("nr_hugepages"), "1\n").unwrap();
        fs::write(gigantic.join("free_hugepages"), "1\n").unwrap();
        fs::write(
            node.join("meminfo"),
            "Node 0 MemTotal:  2097152 kB\nNode 0 MemUsed:  1048576 kB\n\
             Node 0 HugePages_Total:     4\nNode 0 HugePages_Free:      1\n",
        )
        .unwrap();
        let nodes = numa_nodes(root.path(), None, 2 << 20);
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].hugepages_total, 8_388_608);
        assert_eq!(nodes[0].hugepages_used, 3 * (2 << 20));
        assert_eq!(nodes[0].total, 2 << 30);
    }

    #[test]
    fn loadavg_parses() {
        let load = parse_loadavg("0.41 0.21 0.12 2/74 1234\n", 70).unwrap();
        assert_eq!(
            (load.average_1min, load.average_10min, load.processes),
            (0.41, 0.12, 70)
        );
        assert!(parse_loadavg("garbage", 0).is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_has_memory_and_processes() {
        let memory = memory();
        assert!(memory.total > 0 && memory.used < memory.total);
        assert!(load().unwrap().processes > 0);
    }
}
