//! This server's identity: a self-signed ECDSA P-384 certificate and its
//! key, made in the state directory on first start (as Incus makes its own).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::node_name::NodeName;

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
    // Named for its machine, as Incus's `root@host`: every node's
    // certificate said "nodecache", and `trust list` could not tell them apart.
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("nodecache@{}", NodeName::of_this_machine()),
    );
    let cert = params.self_signed(&key).context("self-sign certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tls::server_config;

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
