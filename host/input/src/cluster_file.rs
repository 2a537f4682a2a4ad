//! The cluster file (`--cluster FILE`, `NODECACHE_CLUSTER`): who the members
//! are, where they answer, and how to talk to them.
//!
//! ```toml
//! incus = "https://10.0.0.1:8443"       # optional: the members are this Incus
//!                                       # cluster's (read on every run), beside
//!                                       # any listed below
//! local = "node-a"                      # optional: which member is this machine
//! deadline = "5s"                       # optional: per-node fetch deadline
//! max-response-bytes = 16777216         # optional: larger answers are refused
//! [policy]                              # optional: policy parameters
//! max-age = "1h"
//! [tls]                                 # optional: for https:// members
//! client-cert = "client.crt"
//! client-key = "client.key"
//! server-certs = ["cluster.crt"]        # pinned server certificates
//! [[member]]
//! name = "node-a"
//! url = "https://10.0.0.1:8443"
//! server-cert = "node-a.crt"            # optional: the certificate this member
//!                                       # alone must present (else server-certs)
//! ```
//! Every error names the file; where the TOML gives them, the line and the
//! key too (a file too large or unreadable has neither).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow};
use serde::Deserialize;
use toml::Spanned;

pub use crate::cluster::{Cluster, ClusterMember};
use crate::node_name::NodeName;

/// Defaults for talking to members.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 << 20;

/// Everything the cluster file says.
#[derive(Debug, Clone)]
pub struct ClusterFile {
    pub cluster: Cluster,
    /// An Incus cluster whose members join the listed ones (`incus_members`).
    pub incus: Option<String>,
    /// `local = "…"` naming a member Incus has yet to list.
    pub local_pending: Option<String>,
    pub deadline: Duration,
    pub max_response_bytes: u64,
    pub policy: BTreeMap<String, String>,
    pub tls: TlsFiles,
}

/// Certificate files named by the cluster file, resolved against its directory.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub server_certs: Vec<PathBuf>,
    /// Members pinned to a certificate of their own (`server-cert`): only it
    /// answers for them, as Incus pins each remote, so one member's
    /// certificate cannot answer as another.
    pub member_certs: BTreeMap<NodeName, PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileShape {
    incus: Option<Spanned<String>>,
    local: Option<Spanned<String>>,
    deadline: Option<Spanned<String>>,
    max_response_bytes: Option<u64>,
    #[serde(default)]
    policy: BTreeMap<String, toml::Value>,
    tls: Option<TlsShape>,
    #[serde(default)]
    member: Vec<MemberShape>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TlsShape {
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    #[serde(default)]
    server_certs: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MemberShape {
    name: Spanned<String>,
    url: Option<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    server_cert: Option<PathBuf>,
}

impl ClusterFile {
    /// This machine alone, with default settings.
    pub fn this_machine() -> ClusterFile {
        ClusterFile {
            cluster: Cluster::this_machine(),
            incus: None,
            local_pending: None,
            deadline: DEFAULT_DEADLINE,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            policy: BTreeMap::new(),
            tls: TlsFiles::default(),
        }
    }

    /// A cluster file's text; relative certificate paths are resolved against `base`.
    pub fn from_text(text: &str, base: &Path) -> Result<ClusterFile, String> {
        parse(text, base)
    }

    pub fn load(path: &Path) -> Result<ClusterFile> {
        let text =
            crate::operator_file::read_text(path, "cluster file", crate::operator_file::CLUSTER_FILE_BYTES)?;
        parse(&text, path.parent().unwrap_or(Path::new("."))).map_err(|e| anyhow!("{}: {e}", path.display()))
    }
}

fn parse(text: &str, base: &Path) -> Result<ClusterFile, String> {
    // toml's message is a caret diagram over several lines; it is kept
    // whole (each line is printed on its own, so the caret stays under
    // the column it points at).
    let shape: FileShape = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    let at = |span: Range<usize>| {
        format!(
            "line {}",
            text.as_bytes()[..span.start.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        )
    };
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let mut members = Vec::new();
    let mut member_certs = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for member in &shape.member {
        let name = NodeName::parse(member.name.get_ref())
            .map_err(|e| format!("{}, key member.name: {e}", at(member.name.span())))?;
        if !seen.insert(name.clone()) {
            return Err(format!(
                "{}, key member.name: {name} is listed twice",
                at(member.name.span())
            ));
        }
        let url = match &member.url {
            Some(url) => Some(
                check_url(url.get_ref()).map_err(|e| format!("{}, key member.url: {e}", at(url.span())))?,
            ),
            None => None,
        };
        let mut groups = Vec::new();
        for group in &member.groups {
            let text = group.get_ref();
            if !is_group_name(text) {
                return Err(format!(
                    "{}, key member.groups: {text:?} is not a group name (1-64 of A-Z a-z 0-9 _ . -)",
                    at(group.span())
                ));
            }
            groups.push(text.clone());
        }
        if let Some(cert) = &member.server_cert {
            member_certs.insert(name.clone(), resolve(cert.clone()));
        }
        members.push(ClusterMember {
            name,
            local: false,
            url,
            groups,
            offline: None,
        });
    }
    let incus = match &shape.incus {
        Some(url) => {
            Some(check_url(url.get_ref()).map_err(|e| format!("{}, key incus: {e}", at(url.span())))?)
        }
        None => None,
    };
    let mut local_pending = None;
    if let Some(local) = &shape.local {
        match members.iter_mut().find(|m| m.name.as_str() == local.get_ref()) {
            Some(member) => member.local = true,
            // Incus lists its members on each run: checked then.
            None if incus.is_some() => local_pending = Some(local.get_ref().clone()),
            None => {
                return Err(format!(
                    "{}, key local: {:?} is not a listed member",
                    at(local.span()),
                    local.get_ref()
                ));
            }
        }
    }
    if let Some(member) = members.iter().find(|m| !m.local && m.url.is_none()) {
        return Err(format!(
            "member {} has no url (only the local member may omit it)",
            member.name
        ));
    }
    let deadline = match &shape.deadline {
        Some(text_value) => parse_duration(text_value.get_ref())
            .map_err(|e| format!("{}, key deadline: {e}", at(text_value.span())))?,
        None => DEFAULT_DEADLINE,
    };
    if members.is_empty() && incus.is_none() {
        return Err("no [[member]] and no incus = \"https://…\": the cluster has no members".into());
    }
    let policy = shape
        .policy
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            (key, value)
        })
        .collect();
    let mut tls = shape.tls.map_or_else(TlsFiles::default, |tls| TlsFiles {
        client_cert: tls.client_cert.map(resolve),
        client_key: tls.client_key.map(resolve),
        server_certs: tls.server_certs.into_iter().map(resolve).collect(),
        member_certs: BTreeMap::new(),
    });
    tls.member_certs = member_certs;
    Ok(ClusterFile {
        cluster: Cluster { members },
        incus,
        local_pending,
        deadline,
        max_response_bytes: shape.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
        policy,
        tls,
    })
}

/// A group name (1-64 of A-Z a-z 0-9 _ . -), in the cluster file or Incus.
pub fn is_group_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// `https://host:port` for any host; `http://` only for loopback addresses;
/// returned as its origin (no path, no trailing `/`).
pub fn check_url(url: &str) -> Result<String, String> {
    // Quoted, capped: the address may come from Incus, and errors reach terminals.
    let shown = crate::format::for_terminal(&format!("{url:?}"), 200);
    let parsed = url::Url::parse(url).map_err(|e| format!("{shown} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            let host = parsed.host_str().unwrap_or("").trim_matches(['[', ']']);
            let loopback = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(format!(
                    "{shown}: plain http:// is only allowed to a loopback address"
                ));
            }
        }
        other => return Err(format!("{shown}: scheme {other:?} is not https")),
    }
    if parsed.host().is_none() {
        return Err(format!("{shown} has no host"));
    }
    // nodecache chooses the path it asks (`/1.0/resources`): an address
    // with its own path, query, fragment or credentials could aim the
    // request at another service of that host.
    if !matches!(parsed.path(), "" | "/")
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(format!(
            "{shown}: a member's address is scheme, host and port only (nodecache chooses the path)"
        ));
    }
    Ok(parsed.origin().ascii_serialization())
}

/// `250ms`, `5s`, `1.5m`, `1h`, `7d` (a bare number is seconds): the same
/// grammar as the policies' own settings (`nodecache_policy_sdk::config`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    nodecache_policy_sdk::config::parse_duration_ms(text)
        .map(Duration::from_millis)
        .map_err(|why| format!("{text:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> ClusterFile {
        parse(text, Path::new("/etc/nodecache")).unwrap()
    }

    fn parse_err(text: &str) -> String {
        parse(text, Path::new("/etc/nodecache")).unwrap_err()
    }

    #[test]
    fn the_documented_shape_parses() {
        let membership = parse_ok(
            r#"
local = "node-a"
deadline = "1500ms"
[policy]
max-age = "1h"
[tls]
client-cert = "client.crt"
server-certs = ["/abs/cluster.crt"]
[[member]]
name = "node-a"
url = "https://10.0.0.1:8443"
[[member]]
name = "node-b"
url = "http://127.0.0.1:9001/"
"#,
        );
        let members = &membership.cluster.members;
        assert_eq!(members.len(), 2);
        assert!(members[0].local && !members[1].local);
        assert_eq!(members[1].url.as_deref(), Some("http://127.0.0.1:9001"));
        assert_eq!(membership.deadline, Duration::from_millis(1500));
        assert_eq!(membership.policy["max-age"], "1h");
        assert_eq!(
            membership.tls.client_cert.unwrap(),
            Path::new("/etc/nodecache/client.crt")
        );
        assert_eq!(membership.tls.server_certs[0], Path::new("/abs/cluster.crt"));
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let error = parse_err("[[member]]\nname = \"ok\"\nurl = \"http://10.1.2.3:80\"\n");
        assert!(
            error.contains("line 3") && error.contains("member.url") && error.contains("loopback"),
            "{error}"
        );
        let error = parse_err("[[member]]\nname = \"../x\"\nurl = \"https://a:1\"\n");
        assert!(
            error.contains("line 2") && error.contains("member.name"),
            "{error}"
        );
        let error = parse_err("[[member]]\nnmae = \"x\"\n");
        assert!(error.contains("line 2") && error.contains("nmae"), "{error}");
        let error = parse_err("local = \"c\"\n[[member]]\nname = \"a\"\nurl = \"https://a:1\"\n");
        assert!(error.contains("line 1") && error.contains("key local"), "{error}");
        let error = parse_err("deadline = \"soon\"\n");
        assert!(error.contains("key deadline"), "{error}");
    }

    #[test]
    fn members_need_a_url_and_unique_names() {
        assert!(parse_err("[[member]]\nname = \"a\"\n").contains("no url"));
        let twice = "[[member]]\nname = \"a\"\nurl = \"https://a:1\"\n[[member]]\nname = \"a\"\nurl = \"https://b:1\"\n";
        assert!(parse_err(twice).contains("listed twice"));
    }

    #[test]
    fn members_carry_groups_and_a_group_narrows_the_cluster() {
        let text = "[[member]]\nname = \"a\"\nurl = \"https://a:1\"\ngroups = [\"rack-a\", \"gen3\"]\n\
                    [[member]]\nname = \"b\"\nurl = \"https://b:1\"\n";
        let membership = parse_ok(text);
        assert_eq!(membership.cluster.members[0].groups, ["rack-a", "gen3"]);
        assert_eq!(membership.cluster.in_group("gen3").unwrap().names(), "a");
        let error = membership.cluster.in_group("rack-b").unwrap_err();
        assert!(error.contains("gen3, rack-a"), "{error}");
        let error = parse_err("[[member]]\nname = \"a\"\nurl = \"https://a:1\"\ngroups = [\"bad name\"]\n");
        assert!(
            error.contains("line 4") && error.contains("not a group name"),
            "{error}"
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("x").is_err());
    }
}
