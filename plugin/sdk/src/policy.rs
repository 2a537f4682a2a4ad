//! The three exports a policy provides, as a trait the export macros wire up.

use crate::host::Host;
use crate::types::*;

/// A cache policy. Every call runs on a fresh instance: nothing persists
/// between calls except what the policy writes through the host's cache.
pub trait Policy {
    /// Name, version and the parameters the policy reads through `config`.
    fn describe() -> PolicyInfo;

    /// The node's resources: from cache, or refreshed, as the policy decides.
    fn get_node_resources(host: &impl Host, node: &Member) -> Result<NodeResources, PolicyError>;

    /// The flags every core of every included node of `architecture` has.
    /// The host checks the answer; the shared intersection is the default.
    fn cluster_cpu_flags(reports: &[NodeReport], architecture: &str) -> ClusterFlags {
        crate::intersect::cluster_cpu_flags(reports, architecture)
    }
}
