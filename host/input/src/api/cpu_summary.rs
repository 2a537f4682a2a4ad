//! The part of a resources document the flag intersection needs, read
//! without materialising the rest of the document.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

/// A node's architecture and its cores grouped by identical flag sets: the
/// SDK's types, which policies see too (serialised into cache entries here).
pub use nodecache_policy_sdk::{CoreGroup, CpuSummary, HypervisorSummary};

// Views borrow from the document: flag names are allocated once per group
// of identical cores, not once per core.
#[derive(Deserialize)]
struct DocumentView<'a> {
    #[serde(borrow)]
    cpu: CpuView<'a>,
    #[serde(default, borrow)]
    nodecache_hypervisor: Option<HypervisorView<'a>>,
}

#[derive(Deserialize)]
struct HypervisorView<'a> {
    #[serde(default, borrow)]
    flags: Option<Vec<FlagName<'a>>>,
    #[serde(default)]
    unavailable: Option<String>,
}

#[derive(Deserialize)]
struct CpuView<'a> {
    architecture: String,
    #[serde(default, borrow)]
    sockets: Option<Vec<SocketView<'a>>>,
}

#[derive(Deserialize)]
struct SocketView<'a> {
    #[serde(default)]
    vendor: Option<String>,
    #[serde(default)]
    address_sizes: Option<AddressSizesView>,
    #[serde(default, borrow)]
    cores: Option<Vec<CoreView<'a>>>,
}

#[derive(Deserialize)]
struct AddressSizesView {
    physical_bits: u32,
}

#[derive(Deserialize)]
struct CoreView<'a> {
    #[serde(default, borrow)]
    flags: Option<Vec<FlagName<'a>>>,
}

/// A flag name borrowed from the document where it has no escapes (always,
/// in practice). serde's own `Cow<str>` inside a `Vec` always copies: that
/// was a thousand allocations per `cpu-flags` over ten cached members.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FlagName<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for FlagName<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FlagName<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a flag name")
            }
            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
                Ok(FlagName(Cow::Borrowed(name)))
            }
            fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
                Ok(FlagName(Cow::Owned(name.to_string())))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Why a document cannot be summarised.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("flag {0:?} is not a flag name (1-64 of A-Z a-z 0-9 _ . -)")]
    NotAFlag(String),
    #[error("architecture {0:?} is not an architecture name (1-64 of A-Z a-z 0-9 _ . -)")]
    NotAnArchitecture(String),
}

/// What a CPU flag name looks like on every architecture Linux reports:
/// nothing that could break a line, a terminal or a space-separated list.
pub fn is_flag_shaped(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
}

/// Whether `summary` is one [`from_document`] could have made: a
/// flag-shaped architecture, and each group's flags flag-shaped, sorted,
/// unique and joined by single spaces. A summary read back from a file
/// is used only then (the host's check of a policy's answer walks the
/// sorted lists, and names reach terminals).
pub fn is_well_formed(summary: &CpuSummary) -> bool {
    is_flag_shaped(&summary.architecture)
        && summary.core_groups.iter().all(|group| is_flag_list(&group.flags))
        && summary.hypervisor.as_ref().is_none_or(|hypervisor| {
            is_flag_list(&hypervisor.flags)
                && hypervisor
                    .unavailable
                    .as_deref()
                    .is_none_or(|why| *why == clean_reason(why))
        })
        && summary.vendor.as_deref().is_none_or(is_flag_shaped)
}

/// Sorted, unique, flag-shaped names joined by single spaces.
fn is_flag_list(flags: &str) -> bool {
    let mut previous = "";
    flags.is_empty()
        || flags.split(' ').all(|flag| {
            let in_order = previous < flag;
            previous = flag;
            in_order && is_flag_shaped(flag)
        })
}

/// A node's own words on why it has no hypervisor set, made fit for a
/// terminal as all outside text is.
fn clean_reason(why: &str) -> String {
    crate::format::for_terminal(why, 200)
}

/// Summarises a bare `api.Resources` JSON document; a flag that is not
/// flag-shaped makes the document unusable.
pub fn from_document(document: &str) -> Result<CpuSummary, SummaryError> {
    let view: DocumentView = serde_json::from_str(document)?;
    let vendor = view
        .cpu
        .sockets
        .as_ref()
        .and_then(|sockets| sockets.first())
        .and_then(|socket| socket.vendor.clone())
        .filter(|vendor| is_flag_shaped(vendor));
    let physical_bits = view
        .cpu
        .sockets
        .iter()
        .flatten()
        .filter_map(|socket| socket.address_sizes.as_ref().map(|sizes| sizes.physical_bits))
        .min();
    let hypervisor = match view.nodecache_hypervisor {
        None => None,
        Some(set) => Some(hypervisor_summary(set)?),
    };
    // The architecture reaches terminals and selects nodes as flags do.
    if !is_flag_shaped(&view.cpu.architecture) {
        return Err(SummaryError::NotAnArchitecture(view.cpu.architecture));
    }
    // Cores of a node nearly always list the same flags in the same
    // order: group them as listed (an equality test), and sort and
    // check each group once, not each core.
    let mut as_listed: Vec<(Vec<FlagName>, u32)> = Vec::new();
    let cores = view
        .cpu
        .sockets
        .into_iter()
        .flatten()
        .flat_map(|s| s.cores.into_iter().flatten());
    for core in cores {
        let flags = core.flags.unwrap_or_default();
        match as_listed.iter_mut().find(|(listed, _)| *listed == flags) {
            Some((_, count)) => *count += 1,
            None => as_listed.push((flags, 1)),
        }
    }
    let mut groups: BTreeMap<Vec<FlagName>, u32> = BTreeMap::new();
    for (mut flags, count) in as_listed {
        if let Some(bad) = flags.iter().find(|flag| !is_flag_shaped(&flag.0)) {
            return Err(SummaryError::NotAFlag(bad.0.to_string()));
        }
        flags.sort_unstable();
        flags.dedup();
        *groups.entry(flags).or_default() += count;
    }
    Ok(CpuSummary {
        architecture: view.cpu.architecture,
        core_groups: groups
            .into_iter()
            .map(|(flags, cores)| CoreGroup {
                cores,
                flags: join(&flags),
            })
            .collect(),
        hypervisor,
        vendor,
        physical_bits,
    })
}

/// A document's hypervisor set: flags checked and sorted as core flags
/// are; a set without flags says why (or that it did not say).
fn hypervisor_summary(set: HypervisorView) -> Result<HypervisorSummary, SummaryError> {
    match set.flags {
        Some(mut flags) => {
            if let Some(bad) = flags.iter().find(|flag| !is_flag_shaped(&flag.0)) {
                return Err(SummaryError::NotAFlag(bad.0.to_string()));
            }
            flags.sort_unstable();
            flags.dedup();
            Ok(HypervisorSummary {
                flags: join(&flags),
                unavailable: None,
            })
        }
        None => Ok(HypervisorSummary {
            flags: String::new(),
            unavailable: Some(clean_reason(
                set.unavailable.as_deref().unwrap_or("the node gave no reason"),
            )),
        }),
    }
}

fn join(flags: &[FlagName]) -> String {
    let mut joined = String::with_capacity(flags.iter().map(|flag| flag.0.len() + 1).sum());
    for flag in flags {
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(&flag.0);
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core_count(summary: &CpuSummary) -> u32 {
        summary.core_groups.iter().map(|group| group.cores).sum()
    }

    #[test]
    fn identical_cores_are_grouped() {
        let doc = r#"{"cpu":{"architecture":"x86_64","sockets":[
            {"cores":[{"flags":["sse2","fpu"]},{"flags":["fpu","sse2"]}]},
            {"cores":[{"flags":["fpu"]},{"flags":null}]}]}}"#;
        let summary = from_document(doc).unwrap();
        assert_eq!(summary.architecture, "x86_64");
        assert_eq!(core_count(&summary), 4);
        assert_eq!(
            summary.core_groups,
            [
                CoreGroup::new::<&str>(1, &[]),
                CoreGroup::new(1, &["fpu"]),
                CoreGroup::new(2, &["sse2", "fpu"]),
            ]
        );
    }

    #[test]
    fn names_that_are_not_flags_are_refused() {
        for bad in ["x\nINJECTED", "a b", "", "\u{1b}[31m", "nul\u{0}"] {
            let doc = format!(
                r#"{{"cpu":{{"architecture":"x86_64","sockets":[{{"cores":[{{"flags":["fpu",{}]}}]}}]}}}}"#,
                serde_json::json!(bad)
            );
            assert!(
                matches!(from_document(&doc), Err(SummaryError::NotAFlag(_))),
                "{bad:?}"
            );
        }
    }

    /// Found by fuzz/fuzz_targets/resources_document.rs: a summary whose
    /// architecture `is_well_formed` refuses was made, and an architecture
    /// such as "x86\nINJECTED" would have reached a terminal.
    #[test]
    fn architectures_that_are_not_names_are_refused() {
        for bad in ["x86_~64", "x86\nINJECTED", "", "\u{1b}[31m"] {
            let doc = format!(
                r#"{{"cpu":{{"architecture":{},"sockets":[{{"cores":[{{"flags":["fpu"]}}]}}]}}}}"#,
                serde_json::json!(bad)
            );
            assert!(
                matches!(from_document(&doc), Err(SummaryError::NotAnArchitecture(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_summaries_as_from_document_makes_them_are_well_formed() {
        let doc = r#"{"cpu":{"architecture":"x86_64","sockets":[{"cores":[{"flags":["sse2","fpu","avx"]},{"flags":[]}]}]}}"#;
        let made = from_document(doc).unwrap();
        assert!(is_well_formed(&made));
        let with = |flags: &str| CpuSummary {
            architecture: "x86_64".into(),
            core_groups: vec![CoreGroup {
                cores: 1,
                flags: flags.into(),
            }],
            hypervisor: None,
            vendor: None,
            physical_bits: None,
        };
        assert!(is_well_formed(&with("avx fpu sse2")));
        for bad in [
            "fpu avx",
            "avx avx",
            "avx  fpu",
            " avx",
            "avx ",
            "avx\tfpu",
            "avx x\u{1b}[31m",
        ] {
            assert!(!is_well_formed(&with(bad)), "{bad:?}");
        }
        let mut foreign = with("fpu");
        foreign.architecture = "x86_64\n".into();
        assert!(!is_well_formed(&foreign));
    }

    #[test]
    fn a_document_without_sockets_has_no_cores() {
        let summary = from_document(r#"{"cpu":{"architecture":"x86_64","sockets":null}}"#).unwrap();
        assert_eq!(core_count(&summary), 0);
    }
}
