//! The trust store: the client certificates `serve` answers, kept as
//! `<state>/trust/<sha256>.der` (Incus names certificates by the same
//! digest), and where the state directory is.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_added_listed_and_removed_by_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, _) = crate::identity::generate_certificate().unwrap();
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
}
