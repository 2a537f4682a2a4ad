//! Fetching a member's resources over its REST API (`GET /1.0/resources`),
//! from nodecache and Incus servers alike: pinned server certificates, a
//! client certificate, a per-node deadline and a response size cap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::api::envelope::{EnvelopeError, unwrap_resources};
use crate::membership::{DEFAULT_DEADLINE, DEFAULT_MAX_RESPONSE_BYTES, Membership};
use crate::model::FetchError;
use crate::node_name::NodeName;
use crate::tls;

/// Knows how to reach each remote member.
#[derive(Debug)]
pub struct RemoteFetcher {
    urls: BTreeMap<NodeName, String>,
    client: reqwest::Client,
    deadline: Duration,
    max_response_bytes: u64,
}

impl Default for RemoteFetcher {
    fn default() -> Self {
        RemoteFetcher {
            urls: BTreeMap::new(),
            client: build_client(&[], None).expect("a client without certificates always builds"),
            deadline: DEFAULT_DEADLINE,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl RemoteFetcher {
    /// A fetcher for the members of `membership`, loading its certificates.
    pub fn for_membership(membership: &Membership) -> Result<RemoteFetcher> {
        let mut trusted = Vec::new();
        for path in &membership.tls.server_certs {
            trusted.extend(tls::load_certs(path)?);
        }
        let identity = match (&membership.tls.client_cert, &membership.tls.client_key) {
            (Some(cert), Some(key)) => Some((tls::load_certs(cert)?, tls::load_key(key)?)),
            (None, None) => None,
            _ => anyhow::bail!("the cluster file's [tls] needs both client-cert and client-key"),
        };
        let urls = membership
            .cluster
            .members
            .iter()
            .filter_map(|member| Some((member.name.clone(), member.url.clone()?)))
            .collect();
        Ok(RemoteFetcher {
            urls,
            client: build_client(&trusted, identity)?,
            deadline: membership.deadline,
            max_response_bytes: membership.max_response_bytes,
        })
    }

    pub async fn fetch(&self, node: &NodeName) -> Result<String, FetchError> {
        let Some(base) = self.urls.get(node) else {
            return Err(FetchError::Unreachable(format!(
                "{node} has no address in the cluster configuration"
            )));
        };
        let url = format!("{base}/1.0/resources");
        match tokio::time::timeout(self.deadline, self.fetch_url(&url)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::TimedOut(format!(
                "{url} did not answer within {:.1} s",
                self.deadline.as_secs_f64()
            ))),
        }
    }

    async fn fetch_url(&self, url: &str) -> Result<String, FetchError> {
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| FetchError::Unreachable(format!("{url}: {}", error_chain(&e))))?;
        let status = response.status();
        if let Some(length) = response.content_length()
            && length > self.max_response_bytes
        {
            return Err(too_large(url, length, self.max_response_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::BadResponse(format!("{url}: body cut short: {}", error_chain(&e))))?
        {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > self.max_response_bytes {
                return Err(too_large(url, body.len() as u64, self.max_response_bytes));
            }
        }
        match unwrap_resources(&body) {
            Ok(resources) => {
                serde_json::to_string(&resources).map_err(|e| FetchError::BadResponse(format!("{url}: {e}")))
            }
            Err(EnvelopeError::Server { code, message }) => {
                Err(FetchError::RemoteError(format!("{url}: {code} {message}")))
            }
            Err(EnvelopeError::Malformed(why)) if !status.is_success() => {
                Err(FetchError::RemoteError(format!("{url}: HTTP {status} ({why})")))
            }
            Err(EnvelopeError::Malformed(why)) => Err(FetchError::BadResponse(format!("{url}: {why}"))),
        }
    }
}

fn too_large(url: &str, got: u64, cap: u64) -> FetchError {
    FetchError::BadResponse(format!(
        "{url}: response of {got} bytes or more exceeds the {cap}-byte cap"
    ))
}

/// TLS 1.3 only; servers trusted by exact certificate; our certificate if we have one.
fn build_client(
    trusted: &[rustls::pki_types::CertificateDer<'static>],
    identity: Option<(
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> Result<reqwest::Client> {
    let provider = tls::provider();
    let verifier = Arc::new(tls::PinnedServerCerts {
        trusted: trusted.to_vec(),
        provider: provider.clone(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 configuration")?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match identity {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .context("client certificate")?,
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        // A member answers for itself: never follow it elsewhere, never via a proxy.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")
}

fn error_chain(error: &dyn std::error::Error) -> String {
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
