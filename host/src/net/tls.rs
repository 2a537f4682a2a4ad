//! TLS as Incus does it: TLS 1.3 only, certificates trusted by exact match
//! (pinning), not by a certificate authority. Used by both the client
//! (`remote`) and the server (`serve`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

pub use nodecache_input::pem::{fingerprint, load_certs, load_key};

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Both verifiers check handshake signatures the same way: with the crypto
/// provider's algorithms, proving the peer holds its certificate's key.
/// Only which certificate is acceptable differs between them.
macro_rules! handshake_signatures_by_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// How a refused server certificate is described, so the fetch that met
/// it can say which member it was and what to pin ([`unpinned_fingerprint`]).
const NOT_PINNED: &str = "is not pinned";

/// The fingerprint of the certificate a pinned client refused, found in
/// an error's text (rustls's error reaches reqwest's only as text).
pub fn unpinned_fingerprint(error: &str) -> Option<&str> {
    let (before, _) = error.split_once(NOT_PINNED)?;
    let fingerprint = before.trim_end().rsplit(' ').next()?;
    (fingerprint.len() == 64 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit())).then_some(fingerprint)
}

/// Accepts a server whose certificate is exactly one of `trusted`.
#[derive(Debug)]
pub struct PinnedServerCerts {
    pub trusted: Vec<CertificateDer<'static>>,
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedServerCerts {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .trusted
            .iter()
            .any(|cert| cert.as_ref() == end_entity.as_ref())
        {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate {} {NOT_PINNED}",
                fingerprint(end_entity.as_ref())
            )))
        }
    }

    handshake_signatures_by_provider!();
}

/// Accepts any server certificate (the handshake still proves the server
/// holds its key) and keeps it: trust on first use ([`super::first_use`]),
/// never a client that sends a request.
#[derive(Debug)]
pub struct RecordingServerCert {
    pub seen: std::sync::Mutex<Option<CertificateDer<'static>>>,
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for RecordingServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures_by_provider!();
}

/// Server side: asks for a client certificate and checks the client holds its
/// key, but accepts any certificate; whether it is trusted is decided for
/// every request (`serve`), so an untrusted client gets Incus's 403 rather
/// than a reset, and a certificate removed from the trust store is refused
/// on the next request of a connection already open.
#[derive(Debug)]
pub struct AnyClientCert {
    pub provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures_by_provider!();
}

/// A client's certificate chain and its key.
pub type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// TLS 1.3 client configuration: servers trusted by exact certificate
/// (`trusted`), our certificate presented if we have one.
pub fn client_config(
    trusted: &[CertificateDer<'static>],
    identity: Option<Identity>,
) -> Result<rustls::ClientConfig> {
    let verifier = Arc::new(PinnedServerCerts {
        trusted: trusted.to_vec(),
        provider: provider(),
    });
    client_config_with(verifier, identity)
}

/// TLS 1.3 client configuration whose `verifier` decides which server
/// certificate is acceptable: [`PinnedServerCerts`] for every request,
/// [`RecordingServerCert`] for trust on first use.
pub fn client_config_with(
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<Identity>,
) -> Result<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 configuration")?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match identity {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .context("client certificate"),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// TLS 1.3 server configuration that asks for a client certificate and
/// proves the client holds its key; whether it is trusted is decided per
/// request, so an untrusted client gets Incus's 403 rather than a reset.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let provider = provider();
    let verifier = Arc::new(AnyClientCert {
        provider: provider.clone(),
    });
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 configuration")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .context("server certificate and key do not match")?;
    Ok(Arc::new(config))
}
