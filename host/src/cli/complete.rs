//! What a shell completes beyond the options: member and group names from
//! the cluster file the command line names (`--cluster FILE`, else
//! `NODECACHE_CLUSTER`). The shell asks the binary itself (`COMPLETE=bash
//! nodecache -- WORDS…`, clap_complete's protocol), so the names are the
//! file's as it is now. Incus's members are not asked: a TAB does not
//! wait on the network.

use std::ffi::OsString;
use std::path::PathBuf;

use clap_complete::CompletionCandidate;

use crate::cluster_file::ClusterFile;

/// The cluster file the words being completed name, else the environment's.
fn cluster_file() -> Option<ClusterFile> {
    let words: Vec<OsString> = std::env::args_os().collect();
    let named = words.iter().enumerate().find_map(|(i, word)| {
        let word = word.to_str()?;
        match word.strip_prefix("--cluster=") {
            Some(path) => Some(PathBuf::from(path)),
            None if word == "--cluster" => words.get(i + 1).map(PathBuf::from),
            None => None,
        }
    });
    let path = named.or_else(|| std::env::var_os("NODECACHE_CLUSTER").map(PathBuf::from))?;
    ClusterFile::load(&path).ok()
}

/// Member names, for `resources NODE`, `can-run --from`, `cluster accept-certificate`.
pub fn members() -> Vec<CompletionCandidate> {
    let Some(file) = cluster_file() else {
        return Vec::new();
    };
    file.cluster
        .members
        .iter()
        .map(|member| CompletionCandidate::new(member.name.to_string()))
        .collect()
}

/// Group names, for `--group`.
pub fn groups() -> Vec<CompletionCandidate> {
    let Some(file) = cluster_file() else {
        return Vec::new();
    };
    file.cluster
        .group_names()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}
