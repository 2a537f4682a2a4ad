//! The component's exports: thin glue from the WIT interface to the policy functions.

use crate::bindings::{self, ClusterFlags, Guest, Member, NodeReport, NodeResources};
use crate::bindings::{PolicyError, PolicyInfo};
use crate::host::ImportedHost;

struct DefaultPolicy;

impl Guest for DefaultPolicy {
    fn get_node_resources(node: Member) -> Result<NodeResources, PolicyError> {
        crate::freshness::get_node_resources(&ImportedHost, &node)
    }

    fn cluster_cpu_flags(reports: Vec<NodeReport>, architecture: String) -> ClusterFlags {
        crate::flags::cluster_cpu_flags(&reports, &architecture)
    }

    fn describe() -> PolicyInfo {
        crate::settings::describe()
    }
}

bindings::export!(DefaultPolicy with_types_in bindings);
