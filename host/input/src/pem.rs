//! Certificates and keys in PEM, as operators and Incus keep them: parsed
//! into rustls's DER types (from `rustls-pki-types`, the crate rustls
//! re-exports them from), and a certificate's SHA-256 fingerprint, how
//! Incus names certificates. The TLS configurations that use them are the
//! host's `tls`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = crate::operator_file::read(path, "certificate", crate::operator_file::PEM_BYTES)?;
    certs_from_pem(&pem).with_context(|| path.display().to_string())
}

/// Every certificate of a PEM text; an error when there is none or one is
/// malformed.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("not a PEM certificate")?;
    if certs.is_empty() {
        bail!("no certificate in the file");
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = crate::operator_file::read(path, "private key", crate::operator_file::PEM_BYTES)?;
    PrivateKeyDer::from_pem_slice(&pem).with_context(|| format!("{}: not a PEM private key", path.display()))
}

/// SHA-256 of a certificate's DER, hex: how Incus names certificates.
pub fn fingerprint(cert: &[u8]) -> String {
    crate::digest::sha256_hex(cert)
}
