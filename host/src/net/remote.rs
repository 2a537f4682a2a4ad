//! Fetching a member's resources over its REST API (`GET /1.0/resources`),
//! from nodecache and Incus servers alike: pinned server certificates, a
//! client certificate, a per-node deadline and a response size cap.
//!
//! A document is kept exactly as received. Its validator is the member's
//! `ETag` (nodecache serve sends its hardware fingerprint), or, from a member
//! that sends none (Incus), the digest of the document's non-volatile fields:
//! a conditional fetch then still saves the policy a rewrite, if not the transfer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::api::envelope::{EnvelopeError, resources_document};
use crate::cluster_file::{ClusterFile, DEFAULT_DEADLINE, DEFAULT_MAX_RESPONSE_BYTES};
use crate::machine::fingerprint;
use crate::model::{Document, Fetched, HostError};
use crate::net::tls::{self, Identity};
use crate::node_name::NodeName;

/// Knows how to reach each remote member.
#[derive(Debug)]
pub struct RemoteFetcher {
    /// Each member's base URL, the index of its client, and what is
    /// pinned for it (said when its certificate is refused).
    urls: BTreeMap<NodeName, Route>,
    /// One client per set of pinned certificates: the cluster file's
    /// `server-certs` first, then one per distinct member `server-cert`
    /// (members sharing a certificate share its client and connections).
    clients: Vec<reqwest::Client>,
    /// Which client pins each member `server-cert` file.
    client_of_cert: BTreeMap<PathBuf, usize>,
    deadline: Duration,
    max_response_bytes: u64,
}

/// What `GET /1.0` told of a member (`cluster status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachability {
    /// It answered and trusts this node's client certificate.
    Trusted,
    /// It answered as untrusted: it does not trust the client certificate
    /// this node presents (`trust add` it there).
    Untrusted,
    /// No answer, or a refused one, in the fetch's words.
    Unreachable(String),
}

/// How one member is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    url: String,
    client: usize,
    /// The cluster file's words for what its certificate must be.
    pinned: String,
}

impl Default for RemoteFetcher {
    fn default() -> Self {
        RemoteFetcher {
            urls: BTreeMap::new(),
            clients: vec![build_client(&[], None).expect("a client without certificates always builds")],
            client_of_cert: BTreeMap::new(),
            deadline: DEFAULT_DEADLINE,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl RemoteFetcher {
    /// A fetcher for the members of `membership`, loading its certificates.
    pub fn for_membership(membership: &ClusterFile) -> Result<RemoteFetcher> {
        let (trusted, identity) = load_tls(membership)?;
        // Every client presents the same client certificate.
        let identity = || {
            identity
                .as_ref()
                .map(|(certs, key)| (certs.clone(), key.clone_key()))
        };
        let mut clients = vec![build_client(&trusted, identity())?];
        let mut client_of_cert = BTreeMap::new();
        for member in membership.cluster.members.iter().filter(|m| m.url.is_some()) {
            let Some(path) = membership.tls.member_certs.get(&member.name) else {
                continue;
            };
            if !client_of_cert.contains_key(path) {
                let pinned = tls::load_certs(path).with_context(|| format!("member {}", member.name))?;
                clients.push(build_client(&pinned, identity())?);
                client_of_cert.insert(path.clone(), clients.len() - 1);
            }
        }
        let mut fetcher = RemoteFetcher {
            urls: BTreeMap::new(),
            clients,
            client_of_cert,
            deadline: membership.deadline,
            max_response_bytes: membership.max_response_bytes,
        };
        fetcher.urls = fetcher.route(membership)?;
        Ok(fetcher)
    }

    /// A fetcher for another member list of the same cluster file (Incus's,
    /// read again for a `serve` request): this one's clients, so no
    /// certificate is loaded and no TLS configuration built again.
    pub fn for_members(&self, membership: &ClusterFile) -> Result<RemoteFetcher> {
        Ok(RemoteFetcher {
            urls: self.route(membership)?,
            clients: self.clients.clone(),
            client_of_cert: self.client_of_cert.clone(),
            deadline: membership.deadline,
            max_response_bytes: membership.max_response_bytes,
        })
    }

    /// Whether both reach the same members at the same URLs.
    pub fn reaches_same(&self, other: &RemoteFetcher) -> bool {
        self.urls == other.urls
    }

    /// The client that asks Incus for its members: the cluster file's
    /// `server-certs` and client certificate.
    pub fn cluster_client(&self) -> &reqwest::Client {
        &self.clients[0]
    }

    /// Each member with a URL, and the client whose pinned certificates it must answer with.
    fn route(&self, membership: &ClusterFile) -> Result<BTreeMap<NodeName, Route>> {
        let shared_pins = match membership.tls.server_certs.as_slice() {
            [] => "nothing is pinned for it: no server-cert, no [tls] server-certs".to_string(),
            paths => format!(
                "pinned: [tls] server-certs = {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut urls = BTreeMap::new();
        for member in &membership.cluster.members {
            let Some(url) = member.url.clone() else {
                continue;
            };
            let (client, pinned) = match membership.tls.member_certs.get(&member.name) {
                None => (0, shared_pins.clone()),
                Some(path) => {
                    let client = *self.client_of_cert.get(path).with_context(|| {
                        format!(
                            "member {}: its server-cert {} was not loaded when the cluster file was read",
                            member.name,
                            path.display()
                        )
                    })?;
                    (client, format!("pinned: its server-cert = {}", path.display()))
                }
            };
            urls.insert(member.name.clone(), Route { url, client, pinned });
        }
        Ok(urls)
    }

    /// The member's document unless its hardware still matches `validator`
    /// (`None`: fetched whatever it is).
    pub async fn fetch_if_changed(
        &self,
        node: &NodeName,
        validator: Option<&str>,
    ) -> Result<Fetched, HostError> {
        let Some(route) = self.urls.get(node) else {
            return Err(HostError::Unreachable(format!(
                "{node} has no address in the cluster configuration"
            )));
        };
        let url = format!("{}/1.0/resources", route.url);
        let client = &self.clients[route.client];
        match tokio::time::timeout(self.deadline, self.fetch_url(client, &url, validator)).await {
            Ok(Err(HostError::Unreachable(why))) => {
                Err(HostError::Unreachable(route.explained(node, &url, why)))
            }
            Ok(result) => result,
            Err(_) => Err(HostError::TimedOut(self.timed_out(&url))),
        }
    }

    /// Whether the member answers `GET /1.0` within the deadline, and
    /// whether it trusts this node's client certificate (Incus's `auth`).
    pub async fn reachability(&self, node: &NodeName) -> Reachability {
        let Some(route) = self.urls.get(node) else {
            return Reachability::Unreachable(format!("{node} has no address in the cluster configuration"));
        };
        let url = format!("{}/1.0", route.url);
        let ask = async {
            let response = self.clients[route.client]
                .get(&url)
                .send()
                .await
                .map_err(|e| route.explained(node, &url, format!("{url}: {}", error_chain(&e))))?;
            let body = body_within(response, &url, 1 << 20)
                .await
                .map_err(|e| e.to_string())?;
            let answer: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| format!("{url}: not Incus's envelope: {e}"))?;
            Ok::<_, String>(answer["metadata"]["auth"].as_str() == Some("trusted"))
        };
        match tokio::time::timeout(self.deadline, ask).await {
            Err(_) => Reachability::Unreachable(self.timed_out(&url)),
            Ok(Err(why)) => Reachability::Unreachable(why),
            Ok(Ok(true)) => Reachability::Trusted,
            Ok(Ok(false)) => Reachability::Untrusted,
        }
    }

    fn timed_out(&self, url: &str) -> String {
        format!("{url} did not answer within {:.1} s", self.deadline.as_secs_f64())
    }

    async fn fetch_url(
        &self,
        client: &reqwest::Client,
        url: &str,
        validator: Option<&str>,
    ) -> Result<Fetched, HostError> {
        let mut request = client.get(url);
        if let Some(validator) = validator {
            request = request.header(reqwest::header::IF_NONE_MATCH, format!("\"{validator}\""));
        }
        let response = request
            .send()
            .await
            .map_err(|e| HostError::Unreachable(format!("{url}: {}", error_chain(&e))))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED && validator.is_some() {
            return Ok(Fetched::NotModified);
        }
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|value| value.to_str().ok())
            .map(entity_tag);
        let body = body_within(response, url, self.max_response_bytes).await?;
        let (text, summary) = match resources_document(&body) {
            Ok(checked) => checked,
            Err(EnvelopeError::Server { code, message }) => {
                let message = crate::format::for_terminal(&message, 300);
                return Err(HostError::RemoteError(format!("{url}: {code} {message}")));
            }
            Err(EnvelopeError::Malformed(why)) if !status.is_success() => {
                return Err(HostError::RemoteError(format!("{url}: HTTP {status} ({why})")));
            }
            Err(EnvelopeError::Malformed(why)) => {
                return Err(HostError::BadResponse(format!("{url}: {why}")));
            }
        };
        let validator_now = match etag {
            Some(tag) => tag,
            None => fingerprint::of_document(&text).unwrap_or_default(),
        };
        if validator == Some(validator_now.as_str()) {
            return Ok(Fetched::NotModified);
        }
        Ok(Fetched::Modified(Document {
            body: text,
            validator: validator_now,
            summary: Some(summary),
        }))
    }
}

impl Route {
    /// Why the member at `url` could not be reached, in words that say
    /// what to do when its certificate was refused: which certificate it
    /// presented, what the cluster file pins for it, and the two ways to
    /// pin the right one. Any other reason is `why` as it is.
    fn explained(&self, node: &NodeName, url: &str, why: String) -> String {
        let Some(presented) = tls::unpinned_fingerprint(&why) else {
            return why;
        };
        format!(
            "{url}: certificate {presented} is not pinned for {node}; if it is {node}'s \
             (`nodecache identity` there shows it), run `nodecache cluster accept-certificate {node}` \
             or set server-cert = \"FILE\" in its [[member]] entry ({})",
            self.pinned
        )
    }
}

/// The cluster file's pinned server certificates and client identity.
fn load_tls(
    membership: &ClusterFile,
) -> Result<(Vec<rustls::pki_types::CertificateDer<'static>>, Option<Identity>)> {
    let mut trusted = Vec::new();
    for path in &membership.tls.server_certs {
        trusted.extend(tls::load_certs(path)?);
    }
    let identity = match (&membership.tls.client_cert, &membership.tls.client_key) {
        (Some(cert), Some(key)) => Some((tls::load_certs(cert)?, tls::load_key(key)?)),
        (None, None) => None,
        _ => anyhow::bail!("the cluster file's [tls] needs both client-cert and client-key"),
    };
    Ok((trusted, identity))
}

/// A client for the cluster file's `[tls]` (its pinned `server-certs`, its
/// client certificate): what asks an Incus cluster for its members.
pub fn cluster_client(membership: &ClusterFile) -> Result<reqwest::Client> {
    let (trusted, identity) = load_tls(membership)?;
    build_client(&trusted, identity)
}

/// A response's body, refused as soon as it passes `cap` bytes: by the
/// length it declares, then as it arrives, so an endless or huge answer
/// costs at most `cap` bytes of memory.
pub(crate) async fn body_within(
    mut response: reqwest::Response,
    url: &str,
    cap: u64,
) -> Result<Vec<u8>, HostError> {
    if let Some(length) = response.content_length()
        && length > cap
    {
        return Err(too_large(url, length, cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HostError::BadResponse(format!("{url}: body cut short: {}", error_chain(&e))))?
    {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > cap {
            return Err(too_large(url, body.len() as u64, cap));
        }
    }
    Ok(body)
}

/// The opaque part of an `ETag` (`W/"abc"` or `"abc"` -> `abc`).
fn entity_tag(header: &str) -> String {
    let tag = header.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.trim_matches('"').to_string()
}

fn too_large(url: &str, got: u64, cap: u64) -> HostError {
    HostError::BadResponse(format!(
        "{url}: response of {got} bytes or more exceeds the {cap}-byte cap"
    ))
}

/// A member client: `tls::client_config`, no redirects, no proxy, no idle pool.
fn build_client(
    trusted: &[rustls::pki_types::CertificateDer<'static>],
    identity: Option<Identity>,
) -> Result<reqwest::Client> {
    let config = tls::client_config(trusted, identity)?;
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        // A member answers for itself: never follow it elsewhere, never via a proxy.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        // A member is asked once per run (once per max-age in `serve`): an
        // idle connection kept for it is never reused. Closing each at once
        // took a cold 5,000-member run from 3.5 to 2.4 s of CPU.
        .pool_max_idle_per_host(0)
        .build()
        .context("cannot build the HTTP client")
}

pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_file::{Cluster, ClusterMember};

    fn member(name: &str, url: &str) -> ClusterMember {
        ClusterMember {
            name: NodeName::parse(name).unwrap(),
            local: false,
            url: Some(url.to_string()),
            groups: Vec::new(),
            offline: None,
        }
    }

    #[test]
    fn another_member_list_reuses_the_clients_and_says_whether_it_moved() {
        let dir = tempfile::tempdir().unwrap();
        let pinned = dir.path().join("b.crt");
        std::fs::write(&pinned, crate::net::identity::generate_certificate().unwrap().0).unwrap();
        let mut membership = ClusterFile::this_machine();
        membership.cluster = Cluster {
            members: vec![
                member("a", "https://127.0.0.1:1"),
                member("b", "https://127.0.0.1:2"),
            ],
        };
        let b = NodeName::parse("b").unwrap();
        membership.tls.member_certs.insert(b.clone(), pinned);
        let fetcher = RemoteFetcher::for_membership(&membership).unwrap();
        assert_eq!(
            fetcher.clients.len(),
            2,
            "the cluster's client and b's pinned one"
        );

        let again = fetcher.for_members(&membership).unwrap();
        assert!(again.reaches_same(&fetcher));
        assert_eq!(
            again.urls[&b].client, 1,
            "b still answers with its own certificate"
        );

        membership
            .cluster
            .members
            .push(member("c", "https://127.0.0.1:3"));
        let grown = fetcher.for_members(&membership).unwrap();
        assert!(!grown.reaches_same(&fetcher));
        assert_eq!(grown.clients.len(), 2, "no client built for the new member");

        let c = NodeName::parse("c").unwrap();
        membership.tls.member_certs.insert(c, dir.path().join("c.crt"));
        let error = format!("{:#}", fetcher.for_members(&membership).unwrap_err());
        assert!(error.contains("member c") && error.contains("c.crt"), "{error}");
    }
}
