//! The part of a resources document the flag intersection needs, read
//! without materialising the rest of the document.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A node's architecture and its cores grouped by identical flag sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSummary {
    pub architecture: String,
    pub core_groups: Vec<CoreGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreGroup {
    pub cores: u32,
    /// Sorted; empty when the document gives no flags for these cores.
    pub flags: Vec<String>,
}

#[derive(Deserialize)]
struct DocumentView {
    cpu: CpuView,
}

#[derive(Deserialize)]
struct CpuView {
    architecture: String,
    #[serde(default)]
    sockets: Option<Vec<SocketView>>,
}

#[derive(Deserialize)]
struct SocketView {
    #[serde(default)]
    cores: Option<Vec<CoreView>>,
}

#[derive(Deserialize)]
struct CoreView {
    #[serde(default)]
    flags: Option<Vec<String>>,
}

impl CpuSummary {
    /// Summarises a bare `api.Resources` JSON document.
    pub fn from_document(document: &str) -> Result<CpuSummary, serde_json::Error> {
        let view: DocumentView = serde_json::from_str(document)?;
        let mut groups: BTreeMap<Vec<String>, u32> = BTreeMap::new();
        let cores = view
            .cpu
            .sockets
            .into_iter()
            .flatten()
            .flat_map(|s| s.cores.into_iter().flatten());
        for core in cores {
            let mut flags = core.flags.unwrap_or_default();
            flags.sort_unstable();
            flags.dedup();
            *groups.entry(flags).or_default() += 1;
        }
        Ok(CpuSummary {
            architecture: view.cpu.architecture,
            core_groups: groups
                .into_iter()
                .map(|(flags, cores)| CoreGroup { cores, flags })
                .collect(),
        })
    }
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
        let summary = CpuSummary::from_document(doc).unwrap();
        assert_eq!(summary.architecture, "x86_64");
        assert_eq!(core_count(&summary), 4);
        assert_eq!(
            summary.core_groups,
            [
                CoreGroup {
                    cores: 1,
                    flags: vec![]
                },
                CoreGroup {
                    cores: 1,
                    flags: vec!["fpu".into()]
                },
                CoreGroup {
                    cores: 2,
                    flags: vec!["fpu".into(), "sse2".into()]
                },
            ]
        );
    }

    #[test]
    fn a_document_without_sockets_has_no_cores() {
        let summary =
            CpuSummary::from_document(r#"{"cpu":{"architecture":"x86_64","sockets":null}}"#).unwrap();
        assert_eq!(core_count(&summary), 0);
    }
}
