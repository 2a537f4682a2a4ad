//! What a QEMU CPU model asks of a host, read in the Linux flags a node
//! reports. A model's expansion lists QEMU properties; most are a CPUID bit
//! the name table knows, some are another spelling of one, some are bits
//! Linux only shows through a flag it synthesises, feature-MSR bits (the
//! `*-no` bits of the arch-capabilities MSR) only a node's hypervisor set
//! shows, and the rest no flag line can show (CPUID bits Linux does not
//! name, or bits newer than the table). `--baseline auto` turns those off
//! in the model it picks: nothing proves every node has them, and a guest
//! started on a node without one would lose it, or not start, on migration.

use crate::machine::names;

/// What one enabled property of a model needs a node to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// This Linux flag.
    Flag(&'static str),
    /// Any of these Linux flags (a bit Linux reports under another name).
    AnyOf(&'static [&'static str]),
    /// Nothing a flag line shows.
    Unprovable,
}

/// QEMU's other spellings of properties the table knows by one name.
const ALIASES: &[(&str, &str)] = &[
    ("sse3", "pni"),
    ("pclmuldq", "pclmulqdq"),
    ("sse4-1", "sse4.1"),
    ("sse4_1", "sse4.1"),
    ("sse4-2", "sse4.2"),
    ("sse4_2", "sse4.2"),
    ("xd", "nx"),
    ("i64", "lm"),
    ("ffxsr", "fxsr-opt"),
];

/// Speculation-control bits Linux hides under their own name and reports as
/// the flags it derives from them (arch/x86/kernel/cpu/common.c,
/// `init_speculation_control`); kernels before 4.17 printed `spec_ctrl`
/// and `intel_stibp` themselves. KVM offers a guest the Intel bit on an
/// AMD host with the AMD one and back, so one flag stands for both.
/// A hypervisor set names three of these bits as QEMU does (Linux prints
/// no flag of its own for them), so either name shows them.
const SHOWN_AS: &[(&str, &[&str])] = &[
    ("spec-ctrl", &["spec-ctrl", "spec_ctrl", "ibrs"]),
    ("stibp", &["intel_stibp", "stibp"]),
    ("ssbd", &["spec_ctrl_ssbd", "ssbd"]),
    ("ibrs", &["ibrs"]),
    ("ibpb", &["ibpb"]),
    ("amd-stibp", &["amd-stibp", "stibp"]),
    ("amd-ssbd", &["amd-ssbd", "ssbd"]),
    ("ibrs-all", &["ibrs_enhanced"]),
];

/// What the enabled property `prop` asks of a node.
pub fn ask(prop: &str) -> Ask {
    if let Some((_, shown)) = SHOWN_AS.iter().find(|(name, _)| *name == prop) {
        return Ask::AnyOf(shown);
    }
    let spelled = ALIASES
        .iter()
        .find(|(alias, _)| *alias == prop)
        .map(|(_, name)| name.to_string())
        .unwrap_or_else(|| prop.replace('_', "-"));
    match names::by_qemu(prop).or_else(|| names::by_qemu(&spelled)) {
        Some(names) => Ask::Flag(names.linux),
        None => Ask::Unprovable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_and_hidden_bits_read_as_the_flags_linux_prints() {
        assert_eq!(ask("sha-ni"), Ask::Flag("sha_ni"));
        assert_eq!(ask("sse4_2"), Ask::Flag("sse4_2"));
        assert_eq!(ask("sse3"), Ask::Flag("pni"));
        assert_eq!(ask("lahf_lm"), Ask::Flag("lahf_lm"));
        assert_eq!(ask("i64"), Ask::Flag("lm"));
        assert_eq!(ask("spec-ctrl"), Ask::AnyOf(&["spec-ctrl", "spec_ctrl", "ibrs"]));
        // A feature-MSR bit: a hypervisor set names it (QEMU's name).
        assert_eq!(ask("rdctl-no"), Ask::Flag("rdctl-no"));
        // A CPUID bit Linux gives no name: QEMU's name.
        assert_eq!(ask("amd-psfd"), Ask::Flag("amd-psfd"));
        assert_eq!(ask("x-no-such-bit"), Ask::Unprovable);
    }

    #[test]
    fn every_alias_names_a_property_the_table_knows() {
        for (alias, name) in ALIASES {
            assert!(names::by_qemu(name).is_some(), "{alias} -> {name}");
        }
    }
}
