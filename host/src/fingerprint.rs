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

/// Hex of the first 128 bits of SHA-256: ample to tell hardware apart.
fn digest(bytes: &[u8]) -> String {
    crate::digest::hex(&crate::digest::sha256(bytes)[..16])
}

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
    identity.push_str(&crate::probe::hypervisor::identity());
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

/// Fields that change with load or link state, not with hardware.
const VOLATILE: &[&str] = &[
    "load",
    "used",
    "free",
    "hugepages_used",
    "hugepages_free",
    "frequency",
    "processes",
    "link_detected",
    "link_speed",
    "link_duplex",
];

/// The fingerprint of a resources document's hardware identity; `None` when
/// it is not JSON.
pub fn of_document(document: &str) -> Option<String> {
    crate::canonical_json::without(document, VOLATILE).map(|canonical| digest(&canonical))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The recursive formatter fingerprints were first made with (a
    /// `Value`, volatile fields stripped, keys sorted by hand): today's
    /// fingerprint must be the very same, or every stored validator would
    /// change with an upgrade.
    fn canonical_json_as_first_written(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let fields: Vec<String> = keys
                    .into_iter()
                    .map(|key| {
                        format!(
                            "{}:{}",
                            Value::String(key.clone()),
                            canonical_json_as_first_written(&map[key])
                        )
                    })
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
            Value::Array(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(canonical_json_as_first_written)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            scalar => scalar.to_string(),
        }
    }

    fn strip_volatile(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|key, _| !VOLATILE.contains(&key.as_str()));
                map.values_mut().for_each(strip_volatile);
            }
            Value::Array(items) => items.iter_mut().for_each(strip_volatile),
            _ => {}
        }
    }

    #[test]
    fn the_fingerprint_is_unchanged() {
        for text in [
            include_str!("../../tests/fixtures/incus-6.0.4-resources.envelope.json"),
            include_str!("../../tests/fixtures/lxd-5.0.2-resources.envelope.json"),
            r#"{"b":[1,2.5,-3e10,"x\"y\u0001",null,true],"a":{"\u00e9":{}}}"#,
        ] {
            let mut value: Value = serde_json::from_str(text).unwrap();
            strip_volatile(&mut value);
            assert_eq!(
                of_document(text).unwrap(),
                digest(canonical_json_as_first_written(&value).as_bytes())
            );
        }
    }

    #[test]
    fn the_local_fingerprint_is_stable_and_hex() {
        let first = local().unwrap();
        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(local().unwrap(), first);
    }

    #[test]
    fn load_and_memory_in_use_do_not_change_a_documents_fingerprint() {
        let a = r#"{"cpu":{"architecture":"x86_64","sockets":[{"frequency":2100,"cores":[{"flags":["sse2"]}]}]},
                   "memory":{"used":100,"total":1000},"load":{"Average1Min":0.5}}"#;
        let b = r#"{"load":{"Average1Min":3.5},"memory":{"total":1000,"used":900},
                   "cpu":{"sockets":[{"cores":[{"flags":["sse2"]}],"frequency":3400}],"architecture":"x86_64"}}"#;
        assert_eq!(of_document(a), of_document(b));
    }

    #[test]
    fn flags_and_memory_size_do() {
        let base = r#"{"cpu":{"sockets":[{"cores":[{"flags":["sse2"]}]}]},"memory":{"total":1000}}"#;
        let flags = r#"{"cpu":{"sockets":[{"cores":[{"flags":["sse2","avx"]}]}]},"memory":{"total":1000}}"#;
        let memory = r#"{"cpu":{"sockets":[{"cores":[{"flags":["sse2"]}]}]},"memory":{"total":2000}}"#;
        assert_ne!(of_document(base), of_document(flags));
        assert_ne!(of_document(base), of_document(memory));
        assert_eq!(of_document("not json"), None);
    }
}
