//! The command line resolved once, as ripgrep's `HiArgs` is: handlers get
//! a [`Context`] (the global options, parsed and checked) and, for a
//! cluster question, [`Members`] and a loaded [`Policy`], never the raw
//! arguments.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};

use super::args::Cli;
use super::failure::Failure;
use crate::cluster::gather::{DEFAULT_CONCURRENCY, Gathered, Progress};
use crate::cluster::report::{CpuFlagsReport, cpu_flags};
use crate::cluster_file::{Cluster, ClusterFile};
use crate::net::remote::RemoteFetcher;
use crate::runtime::artifacts::ArtifactCache;
use crate::runtime::capabilities::Capabilities;
use crate::runtime::{Limits, Loader, PolicyRuntime};
use crate::server::trust;
use crate::store::CacheStore;

/// The global options.
pub(super) struct Context {
    /// `--policy`: an embedded policy's name or a component file.
    pub policy: Option<String>,
    random_seed: Option<u64>,
    cache_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    cluster: Option<PathBuf>,
    settings: Vec<String>,
    /// `--refresh`: the policy finds no cache entry this run.
    refresh: bool,
}

/// The members a cluster question is about (the cluster file's, with
/// those its Incus cluster lists, narrowed to a group when asked), and the
/// policy's settings: the file's `[policy]` table, overridden by `--set`.
pub(super) struct Members {
    pub file: ClusterFile,
    pub config: BTreeMap<String, String>,
    /// With a group: its name, and the cluster before it was narrowed (so
    /// "a member, not of this group" is told apart from "not a member").
    pub ungrouped: Option<(String, Cluster)>,
}

/// A policy loaded for a question, and the capabilities it is lent.
pub(super) struct Policy {
    pub runtime: Arc<PolicyRuntime>,
    pub capabilities: Arc<Capabilities>,
}

impl Members {
    /// This machine (the local member) and its groups, whatever group the
    /// run is narrowed to: the node an NFD feature file describes.
    pub(super) fn this_node(&self) -> Option<crate::cluster::report::ThisNode> {
        let all = match &self.ungrouped {
            Some((_, all)) => all,
            None => &self.file.cluster,
        };
        all.local().map(|member| crate::cluster::report::ThisNode {
            name: member.name.to_string(),
            groups: member.groups.clone(),
        })
    }
}

impl Context {
    pub(super) fn new(cli: &Cli) -> Context {
        Context {
            policy: cli.policy.clone(),
            random_seed: cli.random_seed,
            cache_dir: cli.cache_dir.clone(),
            state_dir: cli.state_dir.clone(),
            cluster: cli.cluster.clone(),
            settings: cli.settings.clone(),
            refresh: cli.refresh,
        }
    }

    /// Whether a cluster file was given (else this machine alone).
    pub(super) fn has_cluster_file(&self) -> bool {
        self.cluster.is_some()
    }

    /// The cluster file's path, for commands that edit it.
    pub(super) fn cluster_path(&self) -> Option<&std::path::Path> {
        self.cluster.as_deref()
    }

    /// The cluster file as written (Incus's members not yet read), and the
    /// policy's settings.
    pub(super) fn cluster_file(&self) -> Result<Members, Failure> {
        let settings = parse_settings(&self.settings)?;
        let file = match &self.cluster {
            Some(path) => ClusterFile::load(path).map_err(Failure::usage)?,
            None => ClusterFile::this_machine(),
        };
        let mut config = file.policy.clone();
        config.extend(settings);
        Ok(Members {
            file,
            config,
            ungrouped: None,
        })
    }

    /// The members, Incus's read now when the file names an Incus cluster
    /// (on every run), narrowed to `group` when given.
    pub(super) async fn members(&self, group: Option<&str>) -> Result<Members, Failure> {
        let written = self.cluster_file()?;
        let mut members = Members {
            file: written.with_incus_members().await?,
            config: written.config,
            ungrouped: None,
        };
        if let Some(group) = group {
            let inside = members
                .file
                .cluster
                .in_group(group)
                .map_err(|e| Failure::usage(anyhow!(e)))?;
            let all = std::mem::replace(&mut members.file.cluster, inside);
            members.ungrouped = Some((group.to_string(), all));
        }
        Ok(members)
    }

    pub(super) fn cache_root(&self) -> anyhow::Result<PathBuf> {
        match &self.cache_dir {
            Some(dir) => Ok(dir.clone()),
            None => CacheStore::default_root(),
        }
    }

    pub(super) fn state_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.state_dir {
            Some(dir) => Ok(dir.clone()),
            None => trust::default_state_dir(),
        }
    }

    /// What a policy of this run is lent: the cache, the settings, and a
    /// client for the members' URLs and certificates.
    pub(super) fn capabilities(&self, members: &Members) -> anyhow::Result<Arc<Capabilities>> {
        let root = self.cache_root()?;
        let remote = RemoteFetcher::for_membership(&members.file)?;
        Ok(Arc::new(
            Capabilities::new(CacheStore::new(&root), members.config.clone(), remote)
                .with_random_seed(self.random_seed)
                .with_refresh(self.refresh),
        ))
    }

    /// A loader with a pool for `instances` at once, keeping compiled
    /// policies under `<cache-dir>/compiled/`.
    pub(super) fn loader(&self, instances: usize) -> Loader {
        let artifacts = self
            .cache_root()
            .and_then(|root| ArtifactCache::open(&root.join("compiled")))
            .map_err(|e| tracing::warn!("not keeping compiled policies: {e:#}"))
            .ok();
        Loader {
            instances: u32::try_from(instances).unwrap_or(u32::MAX),
            artifacts,
            ..Loader::default()
        }
    }

    /// The policy `--policy` names (the default one without it), with a
    /// pool for `instances` at once and limits fit for the members' fetch
    /// deadline, compiled only when no trusted artifact of it is kept; and
    /// the capabilities it is lent. A setting the policy does not declare
    /// (a typo such as `max_age`) is a usage error naming the keys it
    /// knows, never silently ignored.
    pub(super) async fn policy(&self, members: &Members, instances: usize) -> Result<Policy, Failure> {
        let mut loader = self.loader(instances);
        loader.limits = Limits::for_fetch_deadline(members.file.deadline);
        let runtime = loader.load(self.policy.as_deref())?;
        let capabilities = self.capabilities(members)?;
        let info = runtime.describe(capabilities.clone()).await?;
        crate::model::check_settings(&info, runtime.origin(), capabilities.config.keys())?;
        Ok(Policy {
            runtime: Arc::new(runtime),
            capabilities,
        })
    }
}

impl Members {
    /// The file's members with those its Incus cluster lists (the file
    /// alone without `incus = "…"`).
    pub(super) async fn with_incus_members(&self) -> Result<ClusterFile, Failure> {
        let mut file = self.file.clone();
        crate::cluster::incus_members::add_members(&mut file)
            .await
            .context("reading the members of the Incus cluster")?;
        Ok(file)
    }

    /// Policy instances alive at once for a whole-cluster question: one per
    /// member asked concurrently, and one for the intersection.
    pub(super) fn instances(&self) -> usize {
        self.file.cluster.members.len().min(DEFAULT_CONCURRENCY) + 1
    }
}

impl Policy {
    /// Every member through the policy at once, each answer as it came
    /// (`resources --all`, `cluster status`).
    pub(super) async fn gather(
        &self,
        members: &Members,
        progress: &Arc<dyn Progress>,
    ) -> anyhow::Result<Vec<Gathered>> {
        let asked: Vec<_> = members
            .file
            .cluster
            .members
            .iter()
            .map(|m| m.as_member())
            .collect();
        crate::cluster::gather::gather(
            &self.runtime,
            self.capabilities.clone(),
            &asked,
            DEFAULT_CONCURRENCY,
            progress,
        )
        .await
    }

    /// Every member asked, and what they share for `arch`.
    pub(super) async fn report(
        &self,
        members: &Members,
        arch: &str,
        progress: Arc<dyn Progress>,
    ) -> anyhow::Result<CpuFlagsReport> {
        cpu_flags(
            &self.runtime,
            self.capabilities.clone(),
            &members.file.cluster,
            arch,
            DEFAULT_CONCURRENCY,
            None,
            &progress,
        )
        .await
    }
}

fn parse_settings(settings: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    settings
        .iter()
        .map(|setting| match setting.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_string(), value.trim().to_string()))
            }
            _ => Err(Failure::usage(anyhow!("--set {setting:?}: expected KEY=VALUE"))),
        })
        .collect()
}
