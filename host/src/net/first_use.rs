//! Trust on first use, as `incus remote add --accept-certificate` does it:
//! a TLS handshake with a member that accepts whatever certificate it
//! presents (checking only that the member holds its key) and returns the
//! certificate, so the operator can compare its fingerprint and pin it.
//! No request is sent: nothing of ours reaches a server not yet trusted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rustls::pki_types::{CertificateDer, ServerName};

use super::tls::{self, RecordingServerCert};

/// The certificate the server at `url` (`https://host:port`) presents,
/// within `deadline`.
pub async fn presented_certificate(url: &str, deadline: Duration) -> Result<CertificateDer<'static>> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{url}: not a URL"))?;
    if parsed.scheme() != "https" {
        bail!("{url}: not https, so it presents no certificate to pin");
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| anyhow!("{url}: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let recorder = Arc::new(RecordingServerCert {
        seen: Mutex::new(None),
        provider: tls::provider(),
    });
    let config = tls::client_config_with(recorder.clone(), None)?;
    let name =
        ServerName::try_from(host.clone()).with_context(|| format!("{url}: {host} is not a server name"))?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    };
    match tokio::time::timeout(deadline, handshake).await {
        Err(_) => bail!("{url}: no TLS handshake within {:.1} s", deadline.as_secs_f64()),
        Ok(Err(e)) => Err(anyhow!("{url}: TLS handshake failed: {e}")),
        Ok(Ok(_stream)) => recorder
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| anyhow!("{url}: the server presented no certificate")),
    }
}
