//! What changed between two resources documents of one node, in the terms
//! an operator acts on: flags added and removed per core group, microcode,
//! CPU count, memory size, devices, and the hypervisor set. Made only when
//! a node's hardware fingerprint changed (rare), so it parses both
//! documents whole; kept compact in the node's history (`history`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::Resources;

/// Each list is cut at this many names, so one record stays small whatever
/// two documents it compares (a node replaced by another of a new vendor).
const MAX_LISTED: usize = 256;

/// One value before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change<T> {
    pub old: T,
    pub new: T,
}

/// A core group's flags before and after: cores with identical flags,
/// paired old to new by the flags they share most.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupChange {
    /// Cores in the group before and after (0: the group is new, or gone).
    pub cores: Change<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// What changed; an empty diff means the fingerprint moved on something
/// this compact view leaves out (a disk's size, a MAC address).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardwareDiff {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<GroupChange>,
    /// The sockets' microcode revisions (`0xde`, or `0xde,0xf0` when
    /// sockets differ); `null` on a side whose document has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub microcode: Option<Change<Option<String>>>,
    /// Logical CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Change<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<Change<u64>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices_added: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices_removed: Vec<String>,
    /// The hypervisor set (nodecache's extension), when either side has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hypervisor_added: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hypervisor_removed: Vec<String>,
    /// Why there is no diff: the replaced entry could not be read, a
    /// document was not a resources document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
}

impl HardwareDiff {
    /// The diff of `old` and `new`, or one saying why there is none.
    pub fn between(old: &str, new: &str) -> HardwareDiff {
        let parse = |side: &str, text: &str| {
            serde_json::from_str::<Resources>(text).map_err(|e| format!("the {side} document: {e}"))
        };
        match (parse("old", old), parse("new", new)) {
            (Ok(old), Ok(new)) => diff(&old, &new),
            (Err(why), _) | (_, Err(why)) => HardwareDiff::unknown(why),
        }
    }

    pub fn unknown(why: String) -> HardwareDiff {
        HardwareDiff {
            unknown: Some(why),
            ..HardwareDiff::default()
        }
    }

    /// Flags some core group lost.
    pub fn removed_flags(&self) -> BTreeSet<&str> {
        self.flags
            .iter()
            .flat_map(|group| group.removed.iter().map(String::as_str))
            .collect()
    }

    /// Flags some core group gained.
    pub fn added_flags(&self) -> BTreeSet<&str> {
        self.flags
            .iter()
            .flat_map(|group| group.added.iter().map(String::as_str))
            .collect()
    }

    /// `microcode 0xde → 0xf0`, when it changed.
    pub fn microcode_change(&self) -> Option<String> {
        let Change { old, new } = self.microcode.as_ref()?;
        let show = |value: &Option<String>| value.clone().unwrap_or_else(|| "none".into());
        Some(format!("microcode {} → {}", show(old), show(new)))
    }

    /// One line: `microcode 0xde → 0xf0; lost hle, rtm; 8 → 4 CPUs`.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self.microcode_change().into_iter().collect();
        let listed = |names: BTreeSet<&str>| crate::format::capped_list(&names, ", ", 8);
        let (removed, added) = (self.removed_flags(), self.added_flags());
        if !removed.is_empty() {
            parts.push(format!("lost {}", listed(removed)));
        }
        if !added.is_empty() {
            parts.push(format!("gained {}", listed(added)));
        }
        if let Some(Change { old, new }) = &self.cpus {
            parts.push(format!("{old} → {new} CPUs"));
        }
        if let Some(Change { old, new }) = &self.memory_bytes {
            let gib = |bytes: &u64| *bytes as f64 / f64::from(1u32 << 30);
            parts.push(format!("memory {:.1} → {:.1} GiB", gib(old), gib(new)));
        }
        if !self.devices_added.is_empty() || !self.devices_removed.is_empty() {
            parts.push(format!(
                "devices +{} −{}",
                self.devices_added.len(),
                self.devices_removed.len()
            ));
        }
        let (gave, took) = (&self.hypervisor_added, &self.hypervisor_removed);
        if !gave.is_empty() || !took.is_empty() {
            parts.push(format!("hypervisor set +{} −{}", gave.len(), took.len()));
        }
        if let Some(why) = &self.unknown {
            parts.push(format!("no diff: {why}"));
        }
        if parts.is_empty() {
            parts.push("fingerprint only (no compared field changed)".into());
        }
        parts.join("; ")
    }
}

fn diff(old: &Resources, new: &Resources) -> HardwareDiff {
    let (old_microcode, new_microcode) = (microcode(old), microcode(new));
    let (old_hypervisor, new_hypervisor) = (hypervisor(old), hypervisor(new));
    let (old_devices, new_devices) = (devices(old), devices(new));
    HardwareDiff {
        flags: group_changes(core_groups(old), core_groups(new)),
        microcode: (old_microcode != new_microcode).then_some(Change {
            old: old_microcode,
            new: new_microcode,
        }),
        cpus: changed(old.cpu.total, new.cpu.total),
        memory_bytes: changed(old.memory.total, new.memory.total),
        devices_added: listed(new_devices.difference(&old_devices)),
        devices_removed: listed(old_devices.difference(&new_devices)),
        hypervisor_added: listed(new_hypervisor.difference(&old_hypervisor)),
        hypervisor_removed: listed(old_hypervisor.difference(&new_hypervisor)),
        unknown: None,
    }
}

fn changed(old: u64, new: u64) -> Option<Change<u64>> {
    (old != new).then_some(Change { old, new })
}

fn listed<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    names.take(MAX_LISTED).cloned().collect()
}

/// The sockets' distinct microcode revisions, joined; `None` when no
/// socket says (an Incus or LXD document).
fn microcode(resources: &Resources) -> Option<String> {
    let revisions: BTreeSet<&str> = resources
        .cpu
        .sockets
        .iter()
        .filter_map(|socket| socket.nodecache_microcode.as_deref())
        .collect();
    (!revisions.is_empty()).then(|| revisions.into_iter().collect::<Vec<_>>().join(","))
}

fn hypervisor(resources: &Resources) -> BTreeSet<String> {
    let flags = resources
        .nodecache_hypervisor
        .as_ref()
        .and_then(|h| h.flags.as_ref());
    flags.into_iter().flatten().cloned().collect()
}

/// Cores by their flag set: how many cores have exactly these flags.
fn core_groups(resources: &Resources) -> BTreeMap<BTreeSet<String>, u32> {
    let mut groups = BTreeMap::new();
    let cores = resources.cpu.sockets.iter().flat_map(|socket| &socket.cores);
    for flags in cores.filter_map(|core| core.flags.as_ref()) {
        *groups.entry(flags.iter().cloned().collect()).or_insert(0) += 1;
    }
    groups
}

/// Pairs each old group with the new group sharing most flags (greedily,
/// largest overlap first); an unpaired group is reported against nothing.
fn group_changes(
    old: BTreeMap<BTreeSet<String>, u32>,
    new: BTreeMap<BTreeSet<String>, u32>,
) -> Vec<GroupChange> {
    let (old, new): (Vec<_>, Vec<_>) = (old.into_iter().collect(), new.into_iter().collect());
    let mut pairs: Vec<(usize, usize, usize)> = Vec::new();
    for (i, (old_flags, _)) in old.iter().enumerate() {
        for (j, (new_flags, _)) in new.iter().enumerate() {
            pairs.push((old_flags.intersection(new_flags).count(), i, j));
        }
    }
    pairs.sort_by_key(|pair| std::cmp::Reverse(pair.0));
    let (mut old_used, mut new_used) = (vec![false; old.len()], vec![false; new.len()]);
    let empty = BTreeSet::new();
    let mut changes = Vec::new();
    let mut report = |before: (&BTreeSet<String>, u32), after: (&BTreeSet<String>, u32)| {
        let change = GroupChange {
            cores: Change {
                old: before.1,
                new: after.1,
            },
            added: listed(after.0.difference(before.0)),
            removed: listed(before.0.difference(after.0)),
        };
        let same = change.added.is_empty() && change.removed.is_empty() && before.1 == after.1;
        if !same {
            changes.push(change);
        }
    };
    for (_, i, j) in pairs {
        if !old_used[i] && !new_used[j] {
            (old_used[i], new_used[j]) = (true, true);
            report((&old[i].0, old[i].1), (&new[j].0, new[j].1));
        }
    }
    for ((flags, cores), _) in old.iter().zip(&old_used).filter(|(_, used)| !**used) {
        report((flags, *cores), (&empty, 0));
    }
    for ((flags, cores), _) in new.iter().zip(&new_used).filter(|(_, used)| !**used) {
        report((&empty, 0), (flags, *cores));
    }
    changes
}

/// Devices by a stable identity: PCI devices, disks and USB devices, as
/// `pci 0000:00:1f.2 8086:2922`, `disk sda QEMU HARDDISK`, `usb 1d6b:0002`.
fn devices(resources: &Resources) -> BTreeSet<String> {
    let mut devices = BTreeSet::new();
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let items = |section: &Option<Value>, key: &str| -> Vec<Value> {
        let list = section
            .as_ref()
            .and_then(|s| s.get(key))
            .and_then(Value::as_array);
        list.cloned().unwrap_or_default()
    };
    for device in items(&resources.pci, "devices") {
        devices.insert(format!(
            "pci {} {}:{}",
            text(&device, "pci_address"),
            text(&device, "vendor_id"),
            text(&device, "product_id")
        ));
    }
    for disk in items(&resources.storage, "disks") {
        devices.insert(
            format!("disk {} {}", text(&disk, "id"), text(&disk, "model"))
                .trim_end()
                .to_string(),
        );
    }
    for device in items(&resources.usb, "devices") {
        devices.insert(
            format!(
                "usb {}:{} {}",
                text(&device, "vendor_id"),
                text(&device, "product_id"),
                text(&device, "product")
            )
            .trim_end()
            .to_string(),
        );
    }
    devices
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(flags: &[&[&str]], microcode: &str, memory: u64, disks: &[&str]) -> String {
        let cores: Vec<Value> = flags
            .iter()
            .enumerate()
            .map(|(core, flags)| serde_json::json!({"core": core, "flags": flags}))
            .collect();
        let disks: Vec<Value> = disks
            .iter()
            .map(|id| serde_json::json!({"id": id, "model": "QEMU"}))
            .collect();
        serde_json::json!({
            "cpu": {"architecture": "x86_64", "total": flags.len(),
                    "sockets": [{"socket": 0, "cores": cores, "nodecache_microcode": microcode}]},
            "memory": {"total": memory},
            "storage": {"disks": disks},
        })
        .to_string()
    }

    #[test]
    fn a_microcode_update_that_took_tsx_is_named_with_its_flags() {
        let old = document(
            &[&["avx", "hle", "rtm"], &["avx", "hle", "rtm"]],
            "0xde",
            1 << 30,
            &["sda"],
        );
        let new = document(&[&["avx"], &["avx"]], "0xf0", 1 << 30, &["sda"]);
        let diff = HardwareDiff::between(&old, &new);
        assert_eq!(diff.flags.len(), 1);
        assert_eq!(diff.flags[0].removed, ["hle", "rtm"]);
        assert_eq!(diff.flags[0].cores, Change { old: 2, new: 2 });
        assert_eq!(
            diff.microcode,
            Some(Change {
                old: Some("0xde".into()),
                new: Some("0xf0".into())
            })
        );
        assert_eq!(diff.cpus, None);
        assert_eq!(diff.summary(), "microcode 0xde → 0xf0; lost hle, rtm");
    }

    #[test]
    fn cpus_memory_devices_and_a_new_core_group_are_each_reported() {
        let old = document(&[&["avx", "sse2"]], "0x1", 1 << 30, &["sda"]);
        let new = document(&[&["avx", "sse2"], &["sse2"]], "0x1", 2 << 30, &["sdb"]);
        let diff = HardwareDiff::between(&old, &new);
        assert_eq!(diff.cpus, Some(Change { old: 1, new: 2 }));
        assert_eq!(
            diff.memory_bytes,
            Some(Change {
                old: 1 << 30,
                new: 2 << 30
            })
        );
        assert_eq!(diff.devices_added, ["disk sdb QEMU"]);
        assert_eq!(diff.devices_removed, ["disk sda QEMU"]);
        // The unchanged group pairs with itself; the new one stands alone.
        assert_eq!(diff.flags.len(), 1);
        assert_eq!(diff.flags[0].cores, Change { old: 0, new: 1 });
        assert_eq!(diff.flags[0].added, ["sse2"]);
        assert!(diff.microcode.is_none());
    }

    #[test]
    fn a_document_that_is_not_one_gives_a_diff_saying_why() {
        let diff = HardwareDiff::between("{", &document(&[&["avx"]], "0x1", 1, &[]));
        assert!(diff.unknown.as_deref().unwrap().starts_with("the old document"));
        assert!(diff.summary().starts_with("no diff: the old document"));
    }
}
