//! Validators: digests of a node's hardware identity, so "has this node
//! changed?" costs a digest instead of a whole document.
//!
//! Two kinds, never compared with each other:
//! - [`local`]: this machine, from a few /proc and /sys reads (no probe):
//!   /proc/cpuinfo less its clock speeds (model, flags, microcode, topology),
//!   the online CPUs, the memory size, the block, network and PCI
//!   devices backed by hardware, and what KVM can give a guest. `serve` sends it as the `ETag` of
//!   `/1.0/resources`, and `probe-local` hands it out as the validator.
//! - [`of_document`]: a resources document's non-volatile fields, for members
//!   that send no `ETag` (a real Incus): what changes with load (memory in
//!   use, load averages, clock speeds, link state) is left out.

use std::fs;
use std::path::Path;

use nodecache_input::document_fingerprint::digest;
pub use nodecache_input::document_fingerprint::of_document;

/// This machine's hardware fingerprint.
pub fn local() -> std::io::Result<String> {
    let mut identity = String::new();
    let cpuinfo = fs::read_to_string("/proc/cpuinfo")?;
    for line in cpuinfo.lines().filter(|line| !line.starts_with("cpu MHz")) {
        identity.push_str(line);
        identity.push('\n');
    }
    identity.push_str(
        fs::read_to_string("/sys/devices/system/cpu/online")
            .unwrap_or_default()
            .trim(),
    );
    identity.push('\n');
    let meminfo = fs::read_to_string("/proc/meminfo")?;
    identity.push_str(
        meminfo
            .lines()
            .find(|line| line.starts_with("MemTotal:"))
            .unwrap_or(""),
    );
    identity.push('\n');
    for (class, detail) in [("/sys/class/block", "size"), ("/sys/class/net", "address")] {
        hardware_devices(Path::new(class), detail, &mut identity);
    }
    pci_devices(&mut identity);
    // What KVM can give a guest changes with the kernel and its modules,
    // not with /proc/cpuinfo: what KVM reports (two ioctls) is hashed.
    identity.push_str(&crate::machine::probe::hypervisor::identity());
    identity.push('\n');
    Ok(digest(identity.as_bytes()))
}

/// Devices of a class that sit on real (or virtual) hardware: the ones with
/// a `device` link, so loop devices, bridges and veths do not churn it.
fn hardware_devices(class: &Path, detail: &str, identity: &mut String) {
    let Ok(entries) = fs::read_dir(class) else { return };
    let lines = entries
        .flatten()
        .filter(|entry| entry.path().join("device").exists())
        .map(|entry| {
            let value = fs::read_to_string(entry.path().join(detail)).unwrap_or_default();
            format!("{} {}", entry.file_name().to_string_lossy(), value.trim())
        });
    push_sorted(lines, identity);
}

/// Appends `lines` sorted, so directory order never changes the digest.
fn push_sorted(lines: impl Iterator<Item = String>, identity: &mut String) {
    let mut lines: Vec<String> = lines.collect();
    lines.sort();
    for line in lines {
        identity.push_str(&line);
        identity.push('\n');
    }
}

fn pci_devices(identity: &mut String) {
    let Ok(entries) = fs::read_dir("/sys/bus/pci/devices") else {
        return;
    };
    let lines = entries.flatten().map(|entry| {
        let read = |file: &str| fs::read_to_string(entry.path().join(file)).unwrap_or_default();
        format!(
            "{} {} {}",
            entry.file_name().to_string_lossy(),
            read("vendor").trim(),
            read("device").trim()
        )
    });
    push_sorted(lines, identity);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_fingerprint_is_stable_and_hex() {
        let first = local().unwrap();
        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(local().unwrap(), first);
    }
}
