//! The x86-64 psABI microarchitecture level (v1 to v4) a flag set reaches:
//! what a distribution built for `x86-64-v3` needs from every node.

/// Each level's additions, in Linux names (`abm` is the LZCNT bit; `xsave`
/// stands in for OSXSAVE, which Linux does not list). Levels are cumulative.
const LEVELS: [(&str, &[&str]); 4] = [
    (
        "x86-64-v1",
        &["cmov", "cx8", "fpu", "fxsr", "mmx", "syscall", "sse", "sse2"],
    ),
    (
        "x86-64-v2",
        &["cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"],
    ),
    (
        "x86-64-v3",
        &[
            "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",
        ],
    ),
    (
        "x86-64-v4",
        &["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"],
    ),
];

/// The highest level whose flags (and all lower levels') `has` grants;
/// `None` when not even v1 (another architecture, or no flags).
pub fn level(has: impl Fn(&str) -> bool) -> Option<&'static str> {
    LEVELS
        .iter()
        .take_while(|(_, adds)| adds.iter().all(|flag| has(flag)))
        .last()
        .map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn fixture(name: &str) -> BTreeSet<String> {
        let path = format!(
            "{}/../tests/fixtures/cpuinfo/{name}.flags",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .flat_map(|line| line.split_whitespace())
            .map(str::to_string)
            .collect()
    }

    fn level_of(name: &str) -> Option<&'static str> {
        let flags = fixture(name);
        level(|flag| flags.contains(flag))
    }

    #[test]
    fn known_cpus_reach_their_levels() {
        assert_eq!(level_of("amd-opteron-6136-k10"), Some("x86-64-v1"));
        assert_eq!(level_of("intel-xeon-e5620-westmere"), Some("x86-64-v2"));
        assert_eq!(level_of("intel-xeon-e5-2650v2-ivybridge"), Some("x86-64-v2"));
        assert_eq!(level_of("intel-xeon-e5-2680v3-haswell"), Some("x86-64-v3"));
        assert_eq!(level_of("amd-epyc-7301-naples"), Some("x86-64-v3"));
        assert_eq!(level_of("intel-xeon-gold-6132-skylake"), Some("x86-64-v4"));
        assert_eq!(level_of("amd-epyc-9654-genoa"), Some("x86-64-v4"));
        assert_eq!(level_of("arm-neoverse-n1-graviton2"), None);
    }

    #[test]
    fn a_missing_flag_caps_the_level_and_is_named() {
        let westmere = fixture("intel-xeon-e5620-westmere");
        let westmere = |flag: &str| westmere.contains(flag);
        assert_eq!(level(westmere), Some("x86-64-v2"));
        let with_avx2 = |flag: &str| westmere(flag) || flag == "avx2";
        assert_eq!(level(with_avx2), Some("x86-64-v2"), "avx2 alone is not v3");
        assert_eq!(level(|_| false), None);
    }
}
