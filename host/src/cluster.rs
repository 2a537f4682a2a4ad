//! Who is in the cluster. Without configuration: this machine alone.

use crate::model::Member;
use crate::node_name::NodeName;

#[derive(Debug, Clone)]
pub struct Cluster {
    pub members: Vec<ClusterMember>,
}

#[derive(Debug, Clone)]
pub struct ClusterMember {
    pub name: NodeName,
    /// This machine: probed, never fetched.
    pub local: bool,
    /// Where a remote member answers (`https://host:8443`).
    pub url: Option<String>,
}

impl ClusterMember {
    pub fn as_member(&self) -> Member {
        Member {
            name: self.name.clone(),
            local: self.local,
        }
    }
}

impl Cluster {
    /// A one-node cluster of this machine, named by its host name.
    pub fn this_machine() -> Cluster {
        Cluster {
            members: vec![ClusterMember {
                name: NodeName::of_this_machine(),
                local: true,
                url: None,
            }],
        }
    }

    pub fn find(&self, name: &NodeName) -> Option<&ClusterMember> {
        self.members.iter().find(|member| &member.name == name)
    }

    pub fn local(&self) -> Option<&ClusterMember> {
        self.members.iter().find(|member| member.local)
    }

    pub fn names(&self) -> String {
        self.members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
