//! Asks the policy for every member's resources at once: one plugin
//! instance per node, each call its own tokio task (so guests run on every
//! worker thread), bounded concurrency, results in membership order.
//!
//! A caller that needs less than the whole document (`cpu-flags` needs the
//! CPU summary) reduces it in the same task with [`gather_with`]: the work
//! runs on every worker thread beside the guests, and a thousand documents are not
//! all alive at once.

use std::sync::Arc;

use anyhow::{Context, Result};
use futures::stream::{self, StreamExt};

use crate::model::{HostError, Member, NodeResources, PolicyError};
use crate::runtime::PolicyRuntime;
use crate::runtime::capabilities::Capabilities;

/// How many members are asked at the same time. A cold run mostly waits
/// on members, so more at once is faster, but each call in flight holds a
/// policy instance's touched memory and a connection: with 384, a cold
/// 1,000-member run takes 0.39 s and 68 MB (with 128, 0.65 s), and more
/// gains nothing once every core is busy (BENCHMARKS.md, "Scale", measured on 2).
pub const DEFAULT_CONCURRENCY: usize = 384;

// `serve` asks with this concurrency from the runtime's default pool.
const _: () = assert!(DEFAULT_CONCURRENCY < crate::runtime::DEFAULT_INSTANCES as usize);

/// Told as each member finishes: the CLI draws a bar with it; `serve`
/// and the benches pass [`silent`]. A trait, so this layer knows nothing
/// of terminals.
pub trait Progress: Send + Sync {
    fn member_done(&self);
}

/// No progress shown.
struct Silent;

impl Progress for Silent {
    fn member_done(&self) {}
}

/// A progress that shows nothing.
pub fn silent() -> Arc<dyn Progress> {
    Arc::new(Silent)
}

/// One member's outcome: its document (or what the caller made of it), or
/// why there is none.
#[derive(Debug, Clone)]
pub struct Gathered<T = NodeResources> {
    pub member: Member,
    pub outcome: Result<T, HostError>,
}

/// Runs `get-node-resources` for every member. A node that cannot be had is
/// an outcome, not an error, and so is a call the policy broke for one node
/// (a trap, its budget, its deadline): that node fails, the others stand.
/// A bad configuration fails the run: it would fail every node alike. A
/// member known to be offline is not asked: its outcome says so.
/// `progress` is told as each member finishes.
pub async fn gather(
    runtime: &Arc<PolicyRuntime>,
    capabilities: Arc<Capabilities>,
    members: &[Member],
    concurrency: usize,
    progress: &Arc<dyn Progress>,
) -> Result<Vec<Gathered>> {
    gather_with(runtime, capabilities, members, concurrency, None, progress, Ok).await
}

/// [`gather`], each member's resources passed through `reduce` in its own
/// task as soon as the policy answers; an error of `reduce` is that
/// member's outcome. With a `cutoff`, a member not answered by then (not
/// yet asked, or still answering) times out alone, so a request with a
/// deadline answers for the members that made it (serve's `allow-partial`)
/// instead of failing whole.
pub async fn gather_with<T: Send + 'static>(
    runtime: &Arc<PolicyRuntime>,
    capabilities: Arc<Capabilities>,
    members: &[Member],
    concurrency: usize,
    cutoff: Option<tokio::time::Instant>,
    progress: &Arc<dyn Progress>,
    reduce: impl Fn(NodeResources) -> Result<T, HostError> + Clone + Send + 'static,
) -> Result<Vec<Gathered<T>>> {
    // Owned members: a closure over borrowed ones is not general enough to be
    // `Send` for a caller that boxes this future (serve shares it between requests).
    let owned: Vec<Member> = members.to_vec();
    let calls = owned.into_iter().map(|member| {
        let (runtime, capabilities, progress) = (runtime.clone(), capabilities.clone(), progress.clone());
        let reduce = reduce.clone();
        tokio::spawn(async move {
            if let Some(error) = member.offline_failure() {
                progress.member_done();
                return (member, Ok(Err(PolicyError::Unavailable(error))));
            }
            let call = runtime.get_node_resources(capabilities, &member);
            let answer = match cutoff {
                Some(cutoff) => match tokio::time::timeout_at(cutoff, call).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        progress.member_done();
                        let late = HostError::TimedOut("not answered within the request's deadline".into());
                        return (member, Ok(Err(PolicyError::Unavailable(late))));
                    }
                },
                None => call.await,
            };
            let result = answer.map(|answer| answer.map(&reduce));
            progress.member_done();
            (member, result)
        })
    });
    let results: Vec<_> = stream::iter(calls).buffered(concurrency.max(1)).collect().await;
    let mut gathered = Vec::with_capacity(results.len());
    for joined in results {
        let (member, result) = joined.context("a policy call panicked")?;
        let outcome = match result {
            Err(broken) => {
                tracing::warn!("{broken:#}");
                Err(HostError::PolicyFailed(format!("{broken:#}")))
            }
            Ok(Ok(reduced)) => reduced,
            Ok(Err(PolicyError::Unavailable(error))) => Err(error),
            // The operator's settings are wrong for every node: the run's
            // error, typed so the CLI can call it a usage error.
            Ok(Err(failure @ PolicyError::BadConfig(_))) => return Err(failure.into()),
        };
        gathered.push(Gathered { member, outcome });
    }
    Ok(gathered)
}
