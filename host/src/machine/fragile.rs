//! Features known to vanish from running fleets: a guest started with one
//! cannot migrate to a node after the node lost it, so `--explain` and the
//! JSON name them, and `--drop-fragile` leaves them out of the guest CPU.

use std::collections::BTreeMap;

/// Each feature (Linux name; feature-MSR bits by QEMU's name) and why.
const FRAGILE: &[(&str, &str)] = &[
    (
        "hle",
        "TSX: microcode updates turned it off on running Intel fleets (why QEMU has Haswell-noTSX)",
    ),
    (
        "rtm",
        "TSX: microcode updates turned it off on running Intel fleets (why QEMU has Haswell-noTSX)",
    ),
    (
        "tsx-ctrl",
        "follows TSX: present or not with the microcode that switches TSX off",
    ),
    (
        "taa-no",
        "follows TSX: a microcode update that disables TSX changes what the CPU reports",
    ),
    (
        "mpx",
        "MPX: gone from CPUs after Ice Lake and from newer QEMU CPU model versions",
    ),
    ("avx512_4vnniw", "Xeon Phi only: no later CPU has it"),
    ("avx512_4fmaps", "Xeon Phi only: no later CPU has it"),
    (
        "avx512_vp2intersect",
        "Tiger Lake only among Intel CPUs: later Intel CPUs lack it",
    ),
];

/// The fragile features among `flags`, with why each is.
pub fn among(flags: &[String]) -> BTreeMap<String, &'static str> {
    FRAGILE
        .iter()
        .filter(|(flag, _)| flags.iter().any(|f| f == flag))
        .map(|(flag, why)| (flag.to_string(), *why))
        .collect()
}

/// Whether `flag` is one of them.
pub fn is_fragile(flag: &str) -> bool {
    FRAGILE.iter().any(|(fragile, _)| *fragile == flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fragile_feature_is_a_bit_a_hypervisor_can_set() {
        for (flag, _) in FRAGILE {
            let names = crate::machine::names::by_linux(flag).unwrap_or_else(|| panic!("{flag}"));
            assert!(names.qemu.is_some(), "{flag}");
        }
        let found = among(&["rtm".into(), "sse2".into(), "hle".into()]);
        assert_eq!(found.keys().collect::<Vec<_>>(), ["hle", "rtm"]);
    }
}
