//! The server's identity and trust store: a self-signed ECDSA P-384
//! certificate made on first start (as Incus makes its own), and the client
//! certificates allowed to ask, kept as `<state>/trust/<sha256>.der`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::node_name::NodeName;
use crate::tls;

/// `$XDG_STATE_HOME/nodecache`, else `~/.local/state/nodecache`.
pub fn default_state_dir() -> Result<PathBuf> {
    crate::xdg::user_dir("XDG_STATE_HOME", ".local/state", "--state-dir")
        .context("cannot place the state directory")
}

/// Client certificates this server answers.
#[derive(Debug, Clone)]
pub struct TrustStore {
    dir: PathBuf,
}

impl TrustStore {
    pub fn new(state_dir: &Path) -> TrustStore {
        TrustStore {
            dir: state_dir.join("trust"),
        }
    }

    /// Adds every certificate of a PEM file; returns their fingerprints.
    pub fn add(&self, cert_file: &Path) -> Result<Vec<String>> {
        fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        let mut added = Vec::new();
        for cert in tls::load_certs(cert_file)? {
            let fingerprint = tls::fingerprint(cert.as_ref());
            let path = self.dir.join(format!("{fingerprint}.der"));
            fs::write(&path, cert.as_ref()).with_context(|| format!("cannot write {}", path.display()))?;
            added.push(fingerprint);
        }
        Ok(added)
    }

    /// Fingerprints of the trusted certificates, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.dir.display())),
        };
        let mut fingerprints: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".der").map(str::to_string))
            .collect();
        fingerprints.sort();
        Ok(fingerprints)
    }

    /// Removes the certificate whose fingerprint starts with `prefix` (it must be unique).
    pub fn remove(&self, prefix: &str) -> Result<String> {
        let prefix = prefix.to_ascii_lowercase();
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{prefix:?} is not a certificate fingerprint (hex)");
        }
        let matches: Vec<String> = self
            .list()?
            .into_iter()
            .filter(|f| f.starts_with(&prefix))
            .collect();
        match matches.as_slice() {
            [one] => {
                fs::remove_file(self.dir.join(format!("{one}.der"))).context("remove certificate")?;
                Ok(one.clone())
            }
            [] => bail!("no trusted certificate has a fingerprint starting with {prefix}"),
            _ => bail!(
                "{} trusted certificates start with {prefix}; give more digits",
                matches.len()
            ),
        }
    }

    /// True when this exact certificate is trusted (read fresh: `trust add` needs no restart).
    pub fn contains(&self, cert: &[u8]) -> bool {
        let path = self.dir.join(format!("{}.der", tls::fingerprint(cert)));
        fs::read(path).is_ok_and(|stored| stored == cert)
    }
}

/// The server certificate and key in `state_dir`, made on first use.
/// Concurrent first runs make one pair between them (an exclusive lock on
/// `state_dir/.identity.lock`), and each file appears whole or not at all
/// (written aside, then renamed): a key left without its certificate by a
/// killed run is replaced, not an error forever.
pub fn ensure_server_identity(state_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let cert = state_dir.join("server.crt");
    let key = state_dir.join("server.key");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    fs::create_dir_all(state_dir).with_context(|| format!("cannot create {}", state_dir.display()))?;
    let lock_path = state_dir.join(".identity.lock");
    let lock =
        fs::File::create(&lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let (cert_pem, key_pem) = generate_certificate()?;
    replace_file(state_dir, &key, &key_pem)?;
    replace_file(state_dir, &cert, &cert_pem)?;
    tracing::info!("created server certificate {}", cert.display());
    Ok((cert, key))
}

/// Writes `contents` to a temporary file in `dir` (mode 0600, as tempfile
/// makes them) and renames it to `path`.
fn replace_file(dir: &Path, path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    temp.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// A self-signed ECDSA P-384 certificate for this host, 127.0.0.1 and ::1.
pub fn generate_certificate() -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).context("generate key")?;
    let mut params = rcgen::CertificateParams::new(vec![NodeName::of_this_machine().to_string()])
        .context("certificate parameters")?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("::1".parse().unwrap()));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "nodecache");
    let cert = params.self_signed(&key).context("self-sign certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// TLS 1.3 server configuration that asks for a client certificate and
/// proves the client holds its key; whether it is trusted is decided per
/// request, so an untrusted client gets Incus's 403 rather than a reset.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let provider = tls::provider();
    let verifier = Arc::new(tls::AnyClientCert {
        provider: provider.clone(),
    });
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 configuration")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls::load_certs(cert)?, tls::load_key(key)?)
        .context("server certificate and key do not match")?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_added_listed_and_removed_by_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, _) = generate_certificate().unwrap();
        let cert_file = dir.path().join("client.crt");
        fs::write(&cert_file, &cert_pem).unwrap();
        let store = TrustStore::new(dir.path());
        let added = store.add(&cert_file).unwrap();
        assert_eq!(store.list().unwrap(), added);
        let der = tls::load_certs(&cert_file).unwrap().remove(0);
        assert!(store.contains(der.as_ref()));
        assert!(store.remove("zz").is_err());
        assert_eq!(store.remove(&added[0][..12]).unwrap(), added[0]);
        assert!(!store.contains(der.as_ref()));
    }

    #[test]
    fn a_server_identity_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_server_identity(dir.path()).unwrap();
        let first = fs::read(&cert).unwrap();
        ensure_server_identity(dir.path()).unwrap();
        assert_eq!(fs::read(&cert).unwrap(), first);
        assert!(server_config(&cert, &key).is_ok());
        let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&key).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "the key is the user's alone");
    }

    #[test]
    fn a_key_left_without_its_certificate_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("server.key"), "half a pair").unwrap();
        let (cert, key) = ensure_server_identity(dir.path()).unwrap();
        assert!(server_config(&cert, &key).is_ok());
    }
}
