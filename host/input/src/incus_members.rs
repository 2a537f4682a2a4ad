//! Incus's member list (`GET /1.0/cluster/members?recursion=1`) read into
//! cluster members, and merged into the cluster file's: every name, URL,
//! group and status checked, as it comes from outside. The host asks Incus
//! for it (`incus_members`).

use anyhow::{Result, anyhow};
use serde::Deserialize;

use crate::api::envelope::Envelope;
use crate::cluster_file::ClusterMember;
use crate::cluster_file::{ClusterFile, check_url, is_group_name};
use crate::format;
use crate::node_name::NodeName;

/// One entry of Incus's member list (the fields nodecache uses).
#[derive(Deserialize)]
struct IncusMember {
    server_name: String,
    url: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// Incus's answer to `/1.0/cluster/members?recursion=1` as members.
pub fn parse_members(body: &[u8]) -> Result<Vec<ClusterMember>, String> {
    let envelope: Envelope<Vec<IncusMember>> =
        serde_json::from_slice(body).map_err(|e| format!("not an Incus member list: {e}"))?;
    if envelope.kind == "error" {
        return Err(format!(
            "Incus refused: {} {}",
            envelope.error_code, envelope.error
        ));
    }
    let listed = envelope
        .metadata
        .ok_or("Incus sent no member list (is this server clustered?)")?;
    let mut seen = std::collections::HashSet::with_capacity(listed.len());
    listed
        .into_iter()
        .map(|member| {
            let name = NodeName::parse(&member.server_name).map_err(|e| {
                format!(
                    "member {}: {e}",
                    format::for_terminal(&format!("{:?}", member.server_name), 80)
                )
            })?;
            // Two entries for one name: which status holds is unknowable.
            if !seen.insert(name.clone()) {
                return Err(format!("Incus listed member {name} twice"));
            }
            let url = check_url(&member.url).map_err(|e| format!("member {name}: {e}"))?;
            // Incus's groups become nodecache's: names, or the list is refused.
            if let Some(bad) = member.groups.iter().find(|group| !is_group_name(group)) {
                return Err(format!(
                    "member {name}: group {} is not a group name (1-64 of A-Z a-z 0-9 _ . -)",
                    format::for_terminal(&format!("{bad:?}"), 80)
                ));
            }
            // Evacuated members are up, only emptied of instances: still asked.
            // Status and message reach terminals: made fit for them.
            let offline = (!matches!(member.status.as_str(), "Online" | "Evacuated")).then(|| {
                let status = match member.status.as_str() {
                    "" => "no status".to_string(),
                    status => format::for_terminal(status, 40),
                };
                match member.message.as_str() {
                    "" => format!("Incus reports it {status}"),
                    message => format!(
                        "Incus reports it {status} ({})",
                        format::for_terminal(message, 200)
                    ),
                }
            });
            Ok(ClusterMember {
                name,
                local: false,
                url: Some(url),
                groups: member.groups,
                offline,
            })
        })
        .collect()
}

/// Incus's members beside the listed ones: a member the file lists too
/// keeps the file's address and certificate, gains Incus's groups, and is
/// offline when Incus says so, but for this machine, which is always probed
/// (its own probe needs no network). One pass over an index by name: a
/// 100,000-member list is linear, not quadratic.
pub fn merge(membership: &mut ClusterFile, listed: Vec<ClusterMember>) -> Result<()> {
    let members = &mut membership.cluster.members;
    let mut index: std::collections::HashMap<NodeName, usize> = members
        .iter()
        .enumerate()
        .map(|(at, member)| (member.name.clone(), at))
        .collect();
    for member in listed {
        match index.get(&member.name) {
            Some(&at) => {
                let known = &mut members[at];
                for group in member.groups {
                    if !known.groups.contains(&group) {
                        known.groups.push(group);
                    }
                }
                if !known.local {
                    known.offline = member.offline;
                }
            }
            None => {
                index.insert(member.name.clone(), members.len());
                members.push(member);
            }
        }
    }
    if let Some(local) = membership.local_pending.take() {
        let names = membership.cluster.names();
        let member = membership
            .cluster
            .members
            .iter_mut()
            .find(|m| m.name.as_str() == local)
            .ok_or_else(|| anyhow!("key local: {local:?} is neither listed nor an Incus member ({names})"))?;
        member.local = true;
        member.offline = None;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape Incus 6.0.4 answers with (fields trimmed to those read).
    const TWO_MEMBERS: &str = r#"{"type":"sync","status":"Success","status_code":200,
      "operation":"","error_code":0,"error":"","metadata":[
      {"server_name":"node1","url":"https://127.0.0.1:9443","database":true,
       "status":"Online","message":"Fully operational","architecture":"x86_64",
       "groups":["default","gen9"]},
      {"server_name":"node2","url":"https://127.0.0.2:9443","database":false,
       "status":"Offline","message":"No heartbeat for 21s","architecture":"x86_64",
       "groups":["default"]}]}"#;

    #[test]
    fn members_groups_and_offline_status_are_read() {
        let members = parse_members(TWO_MEMBERS.as_bytes()).unwrap();
        assert_eq!(members[0].name.as_str(), "node1");
        assert_eq!(members[0].url.as_deref(), Some("https://127.0.0.1:9443"));
        assert_eq!(members[0].groups, ["default", "gen9"]);
        assert_eq!(members[0].offline, None);
        assert_eq!(
            members[1].offline.as_deref(),
            Some("Incus reports it Offline (No heartbeat for 21s)")
        );
    }

    #[test]
    fn refusals_and_hostile_entries_are_named() {
        let refused = r#"{"type":"error","error_code":403,"error":"not authorized","metadata":null}"#;
        assert_eq!(
            parse_members(refused.as_bytes()).unwrap_err(),
            "Incus refused: 403 not authorized"
        );
        let hostile = TWO_MEMBERS.replace("\"node2\"", "\"../../etc\"");
        assert!(
            parse_members(hostile.as_bytes())
                .unwrap_err()
                .contains("member \"../../etc\"")
        );
        let elsewhere = TWO_MEMBERS.replace("https://127.0.0.2:9443", "ftp://127.0.0.2");
        assert!(
            parse_members(elsewhere.as_bytes())
                .unwrap_err()
                .contains("member node2")
        );
        assert!(
            parse_members(b"<html>")
                .unwrap_err()
                .starts_with("not an Incus member list")
        );
    }

    /// Found in the second hardening pass: Incus's groups, status and
    /// message reached stderr and stdout with their escape sequences.
    #[test]
    fn incus_text_cannot_drive_a_terminal() {
        let escaping = TWO_MEMBERS.replace("\"gen9\"", "\"gen9\\u001b[2J\"");
        let refused = parse_members(escaping.as_bytes()).unwrap_err();
        assert!(
            refused.contains("member node1: group \"gen9\\u{1b}[2J\" is not a group name"),
            "{refused}"
        );
        assert!(!refused.contains('\u{1b}'));
        let shouting = TWO_MEMBERS
            .replace("\"Offline\"", "\"Off\\u001b[31mline\"")
            .replace(
                "No heartbeat for 21s",
                &format!("{}\\n{}", "x".repeat(300), "forged line"),
            );
        let members = parse_members(shouting.as_bytes()).unwrap();
        let offline = members[1].offline.as_deref().unwrap();
        assert!(!offline.chars().any(char::is_control), "{offline:?}");
        assert!(
            offline.starts_with("Incus reports it Off?[31mline (xxx") && offline.ends_with("…)"),
            "{offline}"
        );
    }

    #[test]
    fn a_member_url_is_scheme_host_and_port_only() {
        for (url, ok) in [
            ("https://10.0.0.2:8443", true),
            ("https://10.0.0.2:8443/", true),
            ("http://127.0.0.1:8443", true),
            ("http://127.0.0.1:8080/admin/delete?all=1&x=", false),
            ("https://node-b:8443/other", false),
            ("https://user:pw@node-b:8443", false),
            ("https://node-b:8443#x", false),
        ] {
            let listed = TWO_MEMBERS.replace("https://127.0.0.2:9443", url);
            assert_eq!(parse_members(listed.as_bytes()).is_ok(), ok, "{url}");
        }
        let listed = TWO_MEMBERS.replace("https://127.0.0.2:9443", "https://10.0.0.2:8443/");
        assert_eq!(
            parse_members(listed.as_bytes()).unwrap()[1].url.as_deref(),
            Some("https://10.0.0.2:8443")
        );
    }

    #[test]
    fn a_listed_member_keeps_its_entry_and_gains_incus_groups() {
        let mut membership = ClusterFile::from_text(
            "incus = \"https://127.0.0.1:9443\"\nlocal = \"node2\"\n\
             [[member]]\nname = \"node1\"\nurl = \"https://10.0.0.1:8443\"\ngroups = [\"rack-a\"]\n",
            std::path::Path::new("/etc/nodecache"),
        )
        .unwrap();
        merge(&mut membership, parse_members(TWO_MEMBERS.as_bytes()).unwrap()).unwrap();
        let node1 = &membership.cluster.members[0];
        assert_eq!(node1.url.as_deref(), Some("https://10.0.0.1:8443"));
        assert_eq!(node1.groups, ["rack-a", "default", "gen9"]);
        let node2 = &membership.cluster.members[1];
        assert!(node2.local, "local names a member only Incus lists");
        assert_eq!(node2.offline, None, "this machine is probed, whatever Incus says");
    }

    /// One rule for this machine, listed in the file or known from Incus
    /// alone: it is probed, whatever Incus reports of it.
    #[test]
    fn this_machine_is_probed_even_when_incus_calls_it_offline() {
        let mut membership = ClusterFile::from_text(
            "incus = \"https://127.0.0.1:9443\"\nlocal = \"node2\"\n\
             [[member]]\nname = \"node2\"\nurl = \"https://127.0.0.2:9443\"\n",
            std::path::Path::new("/etc/nodecache"),
        )
        .unwrap();
        merge(&mut membership, parse_members(TWO_MEMBERS.as_bytes()).unwrap()).unwrap();
        let node2 = membership
            .cluster
            .members
            .iter()
            .find(|m| m.name.as_str() == "node2")
            .unwrap();
        assert!(node2.local);
        assert_eq!(node2.offline, None);
    }

    #[test]
    fn a_name_listed_twice_is_refused() {
        let twice = TWO_MEMBERS.replace("\"node2\"", "\"node1\"");
        assert_eq!(
            parse_members(twice.as_bytes()).unwrap_err(),
            "Incus listed member node1 twice"
        );
    }
}
