//! What QEMU and libvirt call each x86 CPUID bit Linux names.
//!
//! The table is derived by `scripts/gen-flag-names.py`: which CPUID bit
//! each Linux name is, from the kernel's `cpufeatures.h`; the QEMU name
//! from QEMU itself (switching each CPU property and seeing which CPUID bit
//! moves); the libvirt name from its cpu_map; joined on the CPUID bit, and
//! kept in the repository. The probe reads its CPUID bits from it too. Names are never matched across tools by spelling: Linux's
//! `ibrs` and QEMU's `ibrs` are different bits, and Linux's `sha_ni` is
//! QEMU's `sha-ni`.

use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("x86_flag_names.tsv");

/// CPUID bits a hypervisor can give a guest that Linux does not name
/// (`amd-psfd`, `lfence-always-serializing`, ...): QEMU and libvirt share
/// one name for each, which stands in every column. Derived from the
/// installed tools by `scripts/gen-hypervisor-names.py`.
const UNNAMED_BY_LINUX: &str = include_str!("x86_unnamed_by_linux.tsv");

/// One CPUID bit (or feature-MSR bit) by its three names and its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagNames {
    pub linux: &'static str,
    /// `None`: QEMU has no property for the bit.
    pub qemu: Option<&'static str>,
    /// `None`: libvirt has no feature for the bit.
    pub libvirt: Option<&'static str>,
    pub place: BitPlace,
}

/// Where a feature bit lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitPlace {
    /// CPUID `leaf.subleaf`, register (0 = EAX .. 3 = EDX), bit.
    Cpuid {
        leaf: u32,
        subleaf: u32,
        register: u8,
        bit: u8,
    },
    /// A feature MSR's bit, as KVM_GET_MSRS on the system fd reports it.
    Msr { index: u32, bit: u8 },
}

/// The feature-MSR bits QEMU turns into CPU properties, by the one name
/// QEMU and libvirt share (libvirt 11.3's `cpu_map/x86_features.xml`; a
/// test checks them against the installed libvirt). Linux prints none of
/// them in /proc/cpuinfo, so the name is QEMU's in every column.
const MSR_FEATURES: &[(&str, u32, u8)] = &[
    ("split-lock-detect", 0xcf, 5),
    ("rdctl-no", 0x10a, 0),
    ("ibrs-all", 0x10a, 1),
    ("rsba", 0x10a, 2),
    ("skip-l1dfl-vmentry", 0x10a, 3),
    ("ssb-no", 0x10a, 4),
    ("mds-no", 0x10a, 5),
    ("pschange-mc-no", 0x10a, 6),
    ("tsx-ctrl", 0x10a, 7),
    ("taa-no", 0x10a, 8),
    ("sbdr-ssdp-no", 0x10a, 13),
    ("fbsdp-no", 0x10a, 14),
    ("psdp-no", 0x10a, 15),
    ("fb-clear", 0x10a, 17),
    ("pbrsb-no", 0x10a, 24),
    ("gds-no", 0x10a, 26),
    ("rfds-no", 0x10a, 27),
    ("rfds-clear", 0x10a, 28),
];

struct Table {
    rows: Vec<FlagNames>,
    /// How many of `rows`, from the start, are x86_flag_names.tsv's: the
    /// CPUID bits Linux names.
    linux_named: usize,
    by_linux: HashMap<&'static str, FlagNames>,
    by_qemu: HashMap<&'static str, FlagNames>,
}

fn table() -> &'static Table {
    static TABLE_INDEX: OnceLock<Table> = OnceLock::new();
    TABLE_INDEX.get_or_init(|| {
        let mut rows: Vec<FlagNames> = TABLE
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(parse_row)
            .collect();
        let linux_named = rows.len();
        rows.extend(
            UNNAMED_BY_LINUX
                .lines()
                .filter(|line| !line.starts_with('#') && !line.is_empty())
                .map(parse_unnamed_row),
        );
        rows.extend(MSR_FEATURES.iter().map(|&(name, index, bit)| FlagNames {
            linux: name,
            qemu: Some(name),
            libvirt: Some(name),
            place: BitPlace::Msr { index, bit },
        }));
        Table {
            by_linux: rows.iter().map(|row| (row.linux, *row)).collect(),
            by_qemu: rows.iter().filter_map(|row| Some((row.qemu?, *row))).collect(),
            rows,
            linux_named,
        }
    })
}

fn parse_row(line: &'static str) -> FlagNames {
    let fields: Vec<&'static str> = line.split('\t').collect();
    assert_eq!(fields.len(), 7, "x86_flag_names.tsv: malformed row {line:?}");
    let name = |field: &'static str| (field != "-").then_some(field);
    FlagNames {
        linux: fields[0],
        qemu: name(fields[5]),
        libvirt: name(fields[6]),
        place: cpuid_place(&fields[1..5], line),
    }
}

/// A row of `x86_unnamed_by_linux.tsv`: name, leaf, subleaf, register, bit.
fn parse_unnamed_row(line: &'static str) -> FlagNames {
    let fields: Vec<&'static str> = line.split('\t').collect();
    assert_eq!(
        fields.len(),
        5,
        "x86_unnamed_by_linux.tsv: malformed row {line:?}"
    );
    FlagNames {
        linux: fields[0],
        qemu: Some(fields[0]),
        libvirt: Some(fields[0]),
        place: cpuid_place(&fields[1..5], line),
    }
}

/// Leaf (hex), subleaf, register and bit columns.
fn cpuid_place(fields: &[&str], line: &str) -> BitPlace {
    let bad = || -> ! { panic!("flag name table: malformed row {line:?}") };
    BitPlace::Cpuid {
        leaf: u32::from_str_radix(fields[0].trim_start_matches("0x"), 16).unwrap_or_else(|_| bad()),
        subleaf: fields[1].parse().unwrap_or_else(|_| bad()),
        register: ["eax", "ebx", "ecx", "edx"]
            .iter()
            .position(|r| *r == fields[2])
            .unwrap_or_else(|| bad()) as u8,
        bit: fields[3]
            .parse()
            .ok()
            .filter(|bit| *bit < 32)
            .unwrap_or_else(|| bad()),
    }
}

/// The CPUID bits Linux names, in the table's order: what the probe reads
/// from CPUID itself (the one table, `x86_flag_names.tsv`).
pub fn linux_named() -> &'static [FlagNames] {
    let table = table();
    &table.rows[..table.linux_named]
}

/// Every bit the table names: the CPUID bits, then the feature-MSR bits.
pub fn all() -> &'static [FlagNames] {
    &table().rows
}

/// The names of the CPUID bit Linux calls `linux`; `None` for a flag the
/// kernel synthesises (no single CPUID bit a hypervisor could set).
pub fn by_linux(linux: &str) -> Option<FlagNames> {
    table().by_linux.get(linux).copied()
}

/// The names of the CPUID bit QEMU's property `qemu` sets.
pub fn by_qemu(qemu: &str) -> Option<FlagNames> {
    table().by_qemu.get(qemu).copied()
}

/// Splits common Linux flags into those no hypervisor can set: flags the
/// kernel synthesises, and CPUID bits QEMU has no property for.
pub fn unsettable(common: &[String]) -> (Vec<String>, Vec<String>) {
    let mut kernel_synthesised = Vec::new();
    let mut unknown_to_qemu = Vec::new();
    for flag in common {
        match by_linux(flag) {
            None => kernel_synthesised.push(flag.clone()),
            Some(names) if names.qemu.is_none() => unknown_to_qemu.push(flag.clone()),
            Some(_) => {}
        }
    }
    (kernel_synthesised, unknown_to_qemu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_differ_between_tools_are_joined_by_bit() {
        let sha = by_linux("sha_ni").unwrap();
        assert_eq!((sha.qemu, sha.libvirt), (Some("sha-ni"), Some("sha-ni")));
        let vnni = by_linux("avx512_vnni").unwrap();
        assert_eq!(
            (vnni.qemu, vnni.libvirt),
            (Some("avx512vnni"), Some("avx512vnni"))
        );
        assert_eq!(by_linux("sse4_2").unwrap().qemu, Some("sse4.2"));
        assert_eq!(by_linux("pclmulqdq").unwrap().libvirt, Some("pclmuldq"));
        assert_eq!(by_linux("tsc_deadline_timer").unwrap().qemu, Some("tsc-deadline"));
        assert_eq!(by_qemu("pni").unwrap().linux, "pni");
    }

    #[test]
    fn kernel_synthesised_flags_and_same_name_traps_have_no_bit() {
        for synthetic in [
            "constant_tsc",
            "nopl",
            "cpuid",
            "rep_good",
            "xtopology",
            "ibrs",
            "ibpb",
            "stibp",
            "ssbd",
        ] {
            assert_eq!(by_linux(synthetic), None, "{synthetic}");
        }
    }

    /// The measured reference (QEMU 7.2, libvirt 9.0): every name it gives
    /// is ours; a newer tool may name a bit the reference left unnamed.
    #[test]
    fn the_table_agrees_with_the_measured_reference() {
        let reference = include_str!("../../../tests/fixtures/flag-name-map.tsv");
        let mut compared = 0;
        for line in reference.lines().filter(|l| !l.starts_with('#')) {
            let fields: Vec<&str> = line.split('\t').collect();
            let Some(ours) = by_linux(fields[0]) else {
                // Left out of the table only if neither tool names it, or
                // named here: the RDT monitoring bits (CPUID 0xF.1 EDX)
                // libvirt names and QEMU has no property for, so no guest
                // can be given them.
                let left_out = ["cqm_mbm_total", "cqm_mbm_local"];
                assert!(
                    (fields[3], fields[4]) == ("-", "-") || left_out.contains(&fields[0]),
                    "{}: QEMU or libvirt names it ({}, {}), the table does not have it",
                    fields[0],
                    fields[3],
                    fields[4]
                );
                continue;
            };
            compared += 1;
            for (theirs, ours, tool) in [
                (fields[3], ours.qemu, "qemu"),
                (fields[4], ours.libvirt, "libvirt"),
            ] {
                if theirs != "-" {
                    assert_eq!(ours, Some(theirs), "{} in {tool}", fields[0]);
                }
            }
        }
        let named = reference
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                let fields: Vec<&str> = l.split('\t').collect();
                fields[3] != "-" || fields[4] != "-"
            })
            .count();
        assert!(
            compared >= named,
            "{compared} rows compared, {named} named by a tool"
        );
    }
}
