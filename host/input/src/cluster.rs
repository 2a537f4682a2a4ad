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
    /// The groups the cluster file puts it in (`groups = ["rack-a"]`), or
    /// Incus's cluster groups for a member Incus lists.
    pub groups: Vec<String>,
    /// Why it is not asked: Incus reports it offline (its status and message).
    pub offline: Option<String>,
}

impl ClusterMember {
    pub fn as_member(&self) -> Member {
        Member {
            name: self.name.clone(),
            local: self.local,
            offline: self.offline.clone(),
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
                groups: Vec::new(),
                offline: None,
            }],
        }
    }

    /// The members of `group` alone, or why there are none.
    pub fn in_group(&self, group: &str) -> Result<Cluster, String> {
        let members: Vec<ClusterMember> = self
            .members
            .iter()
            .filter(|member| member.groups.iter().any(|g| g == group))
            .cloned()
            .collect();
        if members.is_empty() {
            let known = self.group_names();
            return Err(format!(
                "no member is in group {group:?} (groups known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    crate::format::capped_list(known, ", ", crate::format::LISTED)
                }
            ));
        }
        Ok(Cluster { members })
    }

    /// Every group some member is in, sorted, once each.
    pub fn group_names(&self) -> std::collections::BTreeSet<&str> {
        self.members
            .iter()
            .flat_map(|member| member.groups.iter().map(String::as_str))
            .collect()
    }

    pub fn find(&self, name: &NodeName) -> Option<&ClusterMember> {
        self.members.iter().find(|member| &member.name == name)
    }

    pub fn local(&self) -> Option<&ClusterMember> {
        self.members.iter().find(|member| member.local)
    }

    /// The members' names for a message: the first few, the rest counted.
    pub fn names(&self) -> String {
        crate::format::capped_list(
            self.members.iter().map(|m| m.name.as_str()),
            ", ",
            crate::format::LISTED,
        )
    }
}
