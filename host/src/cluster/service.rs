//! What `serve` answers for the whole cluster, when it has a cluster file:
//! the common CPU flags and any member's resources, through the active
//! policy and the cache, exactly as the CLI computes them.
//!
//! Concurrent requests for the same architecture share one computation (and
//! every fetch is already shared); a request, reading Incus's member list
//! included, is bounded by one deadline, the members' fetch deadline plus a
//! margin; a policy failure fails that request, names the policy and is
//! counted, and the server keeps answering.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cluster::baseline_change::track;
use crate::cluster::gather::{DEFAULT_CONCURRENCY, silent};
use crate::cluster::incus_members::add_members_with;
use crate::cluster::report::{CpuFlagsReport, cpu_flags};
use crate::cluster_file::Cluster;
use crate::cluster_file::ClusterFile;
use crate::model::{NodeResources, PolicyError};
use crate::node_name::NodeName;
use crate::runtime::capabilities::Capabilities;
use crate::runtime::slot::PolicySlot;
use crate::util::clock::now_ms;
use crate::util::singleflight::{SingleFlight, boxed};

/// Beyond the members' own deadline, what a request may take (policy calls, intersection).
const REQUEST_MARGIN: Duration = Duration::from_secs(10);
/// What is kept of a request's deadline for the work after the members
/// (the intersection, the answer): members still unanswered this long
/// before the end time out alone.
const AFTER_MEMBERS: Duration = Duration::from_secs(5);

pub struct ClusterApi {
    /// The cluster file as written: its members, or with `incus = "…"`
    /// where Incus's member list is read again for each request.
    file: ClusterFile,
    /// The capabilities that reach the members last read: with `incus`,
    /// replaced only when Incus's list reaches other members or URLs, so
    /// requests share fetches in flight and build no client.
    latest: std::sync::Mutex<Arc<Capabilities>>,
    pub slot: Arc<PolicySlot>,
    /// Answers being computed, by architecture and group.
    in_flight: SingleFlight<(String, Option<String>), Result<Arc<CpuFlagsReport>, ApiError>>,
    /// Reads of Incus's member list under way, shared by the requests that
    /// arrive meanwhile.
    incus_reads: SingleFlight<(), Result<Arc<ClusterFile>, String>>,
}

/// Why a cluster request failed, as the HTTP status it maps to.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// Not a member (404).
    UnknownNode(String),
    /// Members without data and no `allow-partial` (503), or a node without data.
    NoData(String),
    /// The policy failed (500), named in the message.
    Policy(String),
    /// The request ran past its deadline (504).
    TimedOut(String),
}

impl ClusterApi {
    /// `capabilities` reach `file`'s members (with `incus`, those Incus
    /// listed at start).
    pub fn new(file: ClusterFile, capabilities: Arc<Capabilities>, slot: Arc<PolicySlot>) -> ClusterApi {
        ClusterApi {
            file,
            latest: std::sync::Mutex::new(capabilities),
            slot,
            in_flight: SingleFlight::default(),
            incus_reads: SingleFlight::default(),
        }
    }

    fn deadline(&self) -> Duration {
        Self::request_deadline(self.file.deadline)
    }

    fn latest(&self) -> std::sync::MutexGuard<'_, Arc<Capabilities>> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The members for this request, and the capabilities that reach them:
    /// read again from Incus when the cluster file names one, so a member
    /// Incus gains, loses or marks offline shows on the next request.
    async fn members(&self) -> Result<(Cow<'_, Cluster>, Arc<Capabilities>), ApiError> {
        let current = self.latest().clone();
        if self.file.incus.is_none() {
            return Ok((Cow::Borrowed(&self.file.cluster), current));
        }
        let unavailable = |e: String| ApiError::NoData(format!("the Incus cluster's members: {e}"));
        // Requests under way at once share one read of Incus's list (a burst
        // of `/1.0/cluster/resources/{node}` read a 60k-member list each).
        let (file, client) = (self.file.clone(), current.remote.cluster_client().clone());
        let read = self.incus_reads.run((), || {
            boxed(async move {
                let mut membership = file;
                match add_members_with(&mut membership, &client).await {
                    Ok(()) => Ok(Arc::new(membership)),
                    Err(e) => Err(format!("{e:#}")),
                }
            })
        });
        let membership = read.await.map_err(unavailable)?;
        let mut latest = self.latest();
        let remote = latest
            .remote
            .for_members(&membership)
            .map_err(|e| unavailable(format!("{e:#}")))?;
        if !remote.reaches_same(&latest.remote) {
            let capabilities = Capabilities::new(latest.store.clone(), latest.config.clone(), remote)
                .with_random_seed(latest.random_seed);
            *latest = Arc::new(capabilities);
        }
        Ok((Cow::Owned(membership.cluster.clone()), latest.clone()))
    }

    /// How long a cluster request may take, given the members' fetch deadline.
    /// This machine (the cluster file's local member) and its groups.
    pub fn this_node(&self) -> Option<crate::cluster::report::ThisNode> {
        self.file
            .cluster
            .local()
            .map(|member| crate::cluster::report::ThisNode {
                name: member.name.to_string(),
                groups: member.groups.clone(),
            })
    }

    /// The cache the cluster's answers are kept in.
    pub fn store(&self) -> crate::store::CacheStore {
        self.latest().store.clone()
    }

    /// The cluster file's groups (with a name fit for a file), each with
    /// its members.
    pub fn groups(&self) -> Vec<(NodeName, Vec<NodeName>)> {
        let cluster = &self.file.cluster;
        cluster
            .group_names()
            .into_iter()
            .filter_map(|group| {
                let name = NodeName::parse(group).ok()?;
                let members = cluster
                    .members
                    .iter()
                    .filter(|member| member.groups.iter().any(|g| g == group))
                    .map(|member| member.name.clone())
                    .collect();
                Some((name, members))
            })
            .collect()
    }

    pub fn request_deadline(fetch_deadline: Duration) -> Duration {
        fetch_deadline + REQUEST_MARGIN
    }

    /// The common flags of the cluster (or of `group`'s members) for
    /// `arch`; requests made while one is being computed get its answer.
    pub async fn cpu_flags(
        self: &Arc<Self>,
        arch: &str,
        group: Option<&str>,
    ) -> Result<Arc<CpuFlagsReport>, ApiError> {
        let key = (arch.to_string(), group.map(str::to_string));
        let (api, owned) = (self.clone(), key.clone());
        self.in_flight
            .run(key, || {
                boxed(async move { api.compute_cpu_flags(&owned.0, owned.1.as_deref()).await })
            })
            .await
    }

    async fn compute_cpu_flags(
        &self,
        arch: &str,
        group: Option<&str>,
    ) -> Result<Arc<CpuFlagsReport>, ApiError> {
        // One deadline for all the request's work, reading Incus's member
        // list included; members still unanswered near its end time out
        // alone, so `allow-partial` gets the rest rather than a 504.
        let deadline = Instant::now() + self.deadline();
        let work = async {
            let (cluster, capabilities) = self.members().await?;
            let cluster = match group {
                Some(group) => Cow::Owned(cluster.in_group(group).map_err(ApiError::UnknownNode)?),
                None => cluster,
            };
            let policy = self.slot.current();
            let silent = silent();
            let members_by = deadline.checked_sub(AFTER_MEMBERS).unwrap_or(deadline);
            let cache_root = capabilities.store.root().to_path_buf();
            let run = cpu_flags(
                &policy.runtime,
                capabilities,
                &cluster,
                arch,
                DEFAULT_CONCURRENCY,
                Some(members_by),
                &silent,
            );
            match run.await {
                Ok(mut report) => {
                    for _ in 0..report.policy_failures {
                        self.slot.count_failure();
                    }
                    report.group = group.map(str::to_string);
                    // Off the async workers: it reads and may write files.
                    let report = tokio::task::spawn_blocking(move || {
                        track(&cache_root, &mut report, now_ms());
                        report
                    })
                    .await
                    .map_err(|e| ApiError::Policy(format!("keeping the baseline: {e}")))?;
                    Ok(Arc::new(report))
                }
                Err(error) => {
                    self.slot.count_failure();
                    Err(ApiError::Policy(format!("{error:#}")))
                }
            }
        };
        tokio::time::timeout_at(deadline, work).await.unwrap_or_else(|_| {
            Err(ApiError::TimedOut(format!(
                "cpu-flags ran past its {:.0} s deadline",
                self.deadline().as_secs_f64()
            )))
        })
    }

    /// One member's resources, through the policy and the cache, within
    /// one deadline that covers reading Incus's member list too.
    pub async fn resources(&self, node: &str) -> Result<NodeResources, ApiError> {
        let name = NodeName::parse(node).map_err(|e| ApiError::UnknownNode(e.to_string()))?;
        let work = async {
            let (cluster, capabilities) = self.members().await?;
            let member = cluster.find(&name).ok_or_else(|| {
                ApiError::UnknownNode(format!("node \"{name}\" is not a member of the cluster"))
            })?;
            let (policy, member) = (self.slot.current(), member.as_member());
            if let Some(error) = member.offline_failure() {
                return Err(ApiError::NoData(error.to_string()));
            }
            match policy.runtime.get_node_resources(capabilities, &member).await {
                Ok(Ok(resources)) => Ok(resources),
                Ok(Err(PolicyError::Unavailable(error))) => Err(ApiError::NoData(format!("{name}: {error}"))),
                Ok(Err(failure @ PolicyError::BadConfig(_))) => Err(ApiError::Policy(failure.to_string())),
                Err(error) => {
                    self.slot.count_failure();
                    Err(ApiError::Policy(format!("{error:#}")))
                }
            }
        };
        tokio::time::timeout(self.deadline(), work)
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::TimedOut(format!(
                    "{name}: ran past the request deadline"
                )))
            })
    }
}
