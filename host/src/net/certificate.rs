//! What a certificate says about itself, for people: its subject and when
//! it expires, beside the fingerprint nodecache pins it by. `trust list`,
//! `identity` and `cluster accept-certificate` show these so an operator
//! can tell certificates apart and compare a fingerprint out of band.

use anyhow::{Result, anyhow};

use crate::net::tls;

/// One certificate, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// SHA-256 of the DER, hex: what nodecache and Incus pin.
    pub fingerprint: String,
    /// The subject's distinguished name, e.g. `CN=nodecache@node-a`.
    pub subject: String,
    /// The last moment it is valid, as `YYYY-MM-DD`.
    pub expires: String,
    /// Seconds since the Unix epoch of that moment.
    pub expires_at_s: i64,
}

impl Described {
    /// Whether it has expired at `now_s` (nodecache pins by exact
    /// certificate and does not refuse an expired one, as Incus does not;
    /// the operator is told, to replace it in time).
    pub fn expired_at(&self, now_s: i64) -> bool {
        self.expires_at_s < now_s
    }
}

/// Describes a DER certificate; an error names what could not be read.
pub fn describe(der: &[u8]) -> Result<Described> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
    let not_after = cert.validity().not_after.to_datetime();
    Ok(Described {
        fingerprint: tls::fingerprint(der),
        subject: cert.subject().to_string(),
        expires: format!(
            "{:04}-{:02}-{:02}",
            not_after.year(),
            u8::from(not_after.month()),
            not_after.day()
        ),
        expires_at_s: not_after.unix_timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle is rcgen, which wrote the certificate: the subject and
    /// the expiry it was asked for come back.
    #[test]
    fn a_certificate_is_described_by_subject_and_expiry() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["node-a".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "nodecache@node-a");
        params.not_after = rcgen::date_time_ymd(2036, 2, 29);
        let cert = params.self_signed(&key).unwrap();
        let described = describe(cert.der()).unwrap();
        assert_eq!(described.subject, "CN=nodecache@node-a");
        assert_eq!(described.expires, "2036-02-29");
        assert_eq!(described.fingerprint, tls::fingerprint(cert.der()));
        assert!(!described.expired_at(0));
        assert!(described.expired_at(described.expires_at_s + 1));
        assert!(
            describe(b"not der")
                .unwrap_err()
                .to_string()
                .contains("not an X.509")
        );
    }
}
