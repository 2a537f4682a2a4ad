//! The cluster's common CPU flags: those every core of every included node has.

use crate::host::describe_error;
use crate::types::*;

/// Intersects the per-core flags of every node of `architecture`.
///
/// A node of another architecture is excluded and says so. A node without
/// usable data (its refresh failed, it reports no cores, or no flags) is
/// `no-data`: the result cannot vouch for it, and the host decides whether a
/// partial answer is acceptable. Unlike Incus, nothing is silently skipped.
pub fn cluster_cpu_flags(reports: &[NodeReport], architecture: &str) -> ClusterFlags {
    let mut common = Common::default();
    let nodes = reports
        .iter()
        .map(|report| NodeOutcome {
            name: report.name.clone(),
            verdict: match &report.outcome {
                Err(error) => NodeVerdict::NoData(describe_error(error)),
                Ok(node) => judge(node, architecture, &mut common),
            },
        })
        .collect();
    ClusterFlags {
        architecture: architecture.to_string(),
        flags: common
            .flags
            .unwrap_or_default()
            .into_iter()
            .map(str::to_string)
            .collect(),
        nodes,
    }
}

/// The flags every one of `sets` has, sorted and without repeats; `None`
/// when there are no sets. The one intersection of nodecache: the policy's
/// common flags ([`cluster_cpu_flags`]) and the host's per-core, per-node
/// and guest sets are all made by it.
pub fn common_to_all<'a, S>(sets: impl IntoIterator<Item = S>) -> Option<Vec<&'a str>>
where
    S: IntoIterator<Item = &'a str>,
{
    let mut common = Common::default();
    for set in sets {
        common.narrow_by(set);
    }
    common.flags
}

/// The flags common so far, and the flag lists already intersected into
/// them. Intersecting a set twice changes nothing, and the cores of a
/// cluster bought in batches share a few flag lists: each list is split and
/// merged once, however many nodes carry it.
#[derive(Default)]
struct Common<'a> {
    flags: Option<Vec<&'a str>>,
    applied: Vec<&'a str>,
}

impl<'a> Common<'a> {
    fn narrow(&mut self, group: &'a CoreGroup) {
        if self.applied.iter().any(|list| same_text(list, &group.flags)) {
            return;
        }
        self.applied.push(&group.flags);
        self.narrow_by(group.flags());
    }

    fn narrow_by(&mut self, set: impl IntoIterator<Item = &'a str>) {
        let mut flags: Vec<&str> = set.into_iter().collect();
        if !flags.is_sorted() {
            flags.sort_unstable();
        }
        match &mut self.flags {
            None => {
                flags.dedup();
                self.flags = Some(flags);
            }
            // Both sorted: one merge walk, not a search per flag.
            Some(set) => {
                let mut have = flags.iter().peekable();
                set.retain(|flag| {
                    while have.next_if(|held| *held < flag).is_some() {}
                    have.peek() == Some(&flag)
                });
            }
        }
    }
}

/// Equality eight bytes at a time. It runs for every core group of every
/// node, and wasm32's `memcmp` compares byte by byte: for a thousand
/// members, a quarter of the intersection's instructions.
fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (words_a, words_b) = (a.chunks_exact(8), b.chunks_exact(8));
    a.len() == b.len()
        && words_a.remainder() == words_b.remainder()
        && words_a.zip(words_b).all(|(x, y)| word(x) == word(y))
}

fn word(bytes: &[u8]) -> u64 {
    u64::from_ne_bytes(bytes.try_into().expect("chunks_exact(8) yields 8 bytes"))
}

/// Decides how one resolved node takes part, narrowing `common` when it is included.
fn judge<'a>(node: &'a ResolvedNode, architecture: &str, common: &mut Common<'a>) -> NodeVerdict {
    if node.cpu.architecture != architecture {
        return NodeVerdict::ExcludedArch(node.cpu.architecture.clone());
    }
    let groups = node.cpu.core_groups.iter().filter(|group| group.cores > 0);
    if groups.clone().next().is_none() {
        return NodeVerdict::NoData("reports no CPU cores".into());
    }
    if groups.clone().any(|group| group.flags().next().is_none()) {
        return NodeVerdict::NoData("reports no CPU flags for some cores".into());
    }
    for group in groups {
        common.narrow(group);
    }
    NodeVerdict::Included
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, architecture: &str, cores: &[&[&str]]) -> NodeReport {
        let core_groups = cores.iter().map(|flags| CoreGroup::new(1, flags)).collect();
        NodeReport {
            name: name.into(),
            outcome: Ok(ResolvedNode {
                source: Source::Cache,
                age_ms: 0,
                refresh_error: None,
                cpu: CpuSummary {
                    architecture: architecture.into(),
                    core_groups,
                    hypervisor: None,
                    vendor: None,
                    physical_bits: None,
                },
            }),
        }
    }

    #[test]
    fn common_to_all_keeps_what_every_set_has_sorted_once() {
        let sets: [&[&str]; 3] = [&["b", "a", "c", "a"], &["c", "a", "b"], &["a", "c"]];
        assert_eq!(
            common_to_all(sets.iter().map(|s| s.iter().copied())),
            Some(vec!["a", "c"])
        );
        assert_eq!(common_to_all(std::iter::empty::<[&str; 0]>()), None);
        assert_eq!(common_to_all([["x"], ["y"]]), Some(vec![]));
    }

    #[test]
    fn every_core_of_every_node_must_have_a_flag() {
        let reports = [
            node(
                "a",
                "x86_64",
                &[&["sse2", "avx2", "avx512f"], &["sse2", "avx2", "avx512f"]],
            ),
            node("b", "x86_64", &[&["sse2", "avx2", "avx512f"], &["sse2", "avx2"]]),
            node("c", "x86_64", &[&["avx2", "sse2", "aes"]]),
        ];
        let result = cluster_cpu_flags(&reports, "x86_64");
        assert_eq!(result.flags, ["avx2", "sse2"]);
        assert!(result.nodes.iter().all(|n| n.verdict == NodeVerdict::Included));
    }

    #[test]
    fn nodes_of_another_architecture_are_excluded_and_listed() {
        let reports = [
            node("x1", "x86_64", &[&["sse2", "avx2"]]),
            node("arm", "aarch64", &[&["fp", "asimd"]]),
            node("x2", "x86_64", &[&["sse2"]]),
        ];
        let result = cluster_cpu_flags(&reports, "x86_64");
        assert_eq!(result.flags, ["sse2"]);
        assert_eq!(
            result.nodes[1].verdict,
            NodeVerdict::ExcludedArch("aarch64".into())
        );
        let arm = cluster_cpu_flags(&reports, "aarch64");
        assert_eq!(arm.flags, ["asimd", "fp"]);
        assert_eq!(arm.nodes[0].verdict, NodeVerdict::ExcludedArch("x86_64".into()));
    }

    #[test]
    fn nodes_without_cores_or_flags_are_no_data_and_do_not_widen_the_set() {
        let reports = [
            node("a", "x86_64", &[&["sse2", "avx2"]]),
            node("empty", "x86_64", &[]),
            node("lxd", "x86_64", &[&[]]),
        ];
        let result = cluster_cpu_flags(&reports, "x86_64");
        assert_eq!(result.flags, ["avx2", "sse2"]);
        assert!(matches!(&result.nodes[1].verdict, NodeVerdict::NoData(why) if why.contains("no CPU cores")));
        assert!(matches!(&result.nodes[2].verdict, NodeVerdict::NoData(why) if why.contains("no CPU flags")));
    }

    #[test]
    fn a_failed_node_is_reported_with_its_error() {
        let failed = NodeReport {
            name: "b".into(),
            outcome: Err(HostError::Unreachable("refused".into())),
        };
        let result = cluster_cpu_flags(&[node("a", "x86_64", &[&["sse2"]]), failed], "x86_64");
        assert!(
            matches!(&result.nodes[1].verdict, NodeVerdict::NoData(why) if why.contains("unreachable: refused"))
        );
    }

    #[test]
    fn empty_and_foreign_clusters_have_no_common_flags() {
        let empty = cluster_cpu_flags(&[], "x86_64");
        assert!(empty.flags.is_empty() && empty.nodes.is_empty());
        assert_eq!(empty.architecture, "x86_64");
        assert!(
            cluster_cpu_flags(&[node("arm", "aarch64", &[&["fp"]])], "x86_64")
                .flags
                .is_empty()
        );
    }

    #[test]
    fn same_text_is_byte_equality() {
        for (a, b) in [
            ("", ""),
            ("fpu", "fpu"),
            ("abcdefgh", "abcdefgh"),
            ("abcdefghi", "abcdefghi"),
        ] {
            assert!(same_text(a, b));
        }
        for (a, b) in [
            ("", "a"),
            ("fpu", "fpv"),
            ("abcdefgh", "abcdefgx"),
            ("abcdefghi", "abcdefghj"),
            ("xbcdefghi", "abcdefghi"),
        ] {
            assert!(!same_text(a, b) && !same_text(b, a));
        }
    }

    #[test]
    fn flags_come_out_sorted_and_unique() {
        let result = cluster_cpu_flags(
            &[node("a", "x86_64", &[&["sse2", "avx", "sse2", "aes"]])],
            "x86_64",
        );
        assert_eq!(result.flags, ["aes", "avx", "sse2"]);
    }
}
