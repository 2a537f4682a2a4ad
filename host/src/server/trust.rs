//! The trust store: the client certificates `serve` answers, kept as
//! `<state>/trust/<sha256>.der` (Incus names certificates by the same
//! digest), and where the state directory is.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::net::tls;

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

/// What `trust add` did with one certificate, by its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    New(String),
    /// Trusted before: nothing was written.
    AlreadyTrusted(String),
}

impl Added {
    pub fn fingerprint(&self) -> &str {
        match self {
            Added::New(fingerprint) | Added::AlreadyTrusted(fingerprint) => fingerprint,
        }
    }
}

impl std::fmt::Display for Added {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Added::New(_) => "added",
            Added::AlreadyTrusted(_) => "already trusted",
        };
        write!(f, "{what} {}", self.fingerprint())
    }
}

impl TrustStore {
    pub fn new(state_dir: &Path) -> TrustStore {
        TrustStore {
            dir: state_dir.join("trust"),
        }
    }

    /// Adds every certificate of a PEM file; returns their fingerprints.
    pub fn add(&self, cert_file: &Path) -> Result<Vec<Added>> {
        fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        let known = self.list()?;
        let mut added = Vec::new();
        for cert in tls::load_certs(cert_file)? {
            let fingerprint = tls::fingerprint(cert.as_ref());
            if known.contains(&fingerprint) {
                added.push(Added::AlreadyTrusted(fingerprint));
                continue;
            }
            let path = self.dir.join(format!("{fingerprint}.der"));
            fs::write(&path, cert.as_ref()).with_context(|| format!("cannot write {}", path.display()))?;
            added.push(Added::New(fingerprint));
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

    /// True when this exact certificate is trusted (read fresh: `trust add`
    /// needs no restart). Read on every request, so through the one reader:
    /// a FIFO or link in the store cannot hang or redirect it, and an entry
    /// someone else could have written trusts nobody.
    pub fn contains(&self, cert: &[u8]) -> bool {
        let path = self.dir.join(format!("{}.der", tls::fingerprint(cert)));
        match crate::file_read::read(
            &path,
            crate::file_read::Rule::kept(crate::operator_file::PEM_BYTES),
        ) {
            Ok(stored) => stored == cert,
            Err(crate::file_read::ReadError::Missing) => false,
            Err(e) => {
                tracing::warn!("trusted certificate {}: {e}; not trusted", path.display());
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_added_listed_and_removed_by_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, _) = crate::net::identity::generate_certificate().unwrap();
        let cert_file = dir.path().join("client.crt");
        fs::write(&cert_file, &cert_pem).unwrap();
        let store = TrustStore::new(dir.path());
        let added = store.add(&cert_file).unwrap();
        let [Added::New(fingerprint)] = added.as_slice() else {
            panic!("one certificate, new: {added:?}");
        };
        let fingerprint = fingerprint.clone();
        assert_eq!(store.list().unwrap(), std::slice::from_ref(&fingerprint));
        assert_eq!(
            store.add(&cert_file).unwrap(),
            [Added::AlreadyTrusted(fingerprint.clone())]
        );
        let der = tls::load_certs(&cert_file).unwrap().remove(0);
        assert!(store.contains(der.as_ref()));
        assert!(store.remove("zz").is_err());
        assert_eq!(store.remove(&fingerprint[..12]).unwrap(), fingerprint);
        assert!(!store.contains(der.as_ref()));
    }

    /// `contains` runs on every request: an entry that is a FIFO, a link or
    /// writable by others was read with a plain, blocking, link-following
    /// read; now it trusts nobody, at once.
    #[test]
    fn an_entry_that_is_not_this_users_plain_file_trusts_nobody_and_never_blocks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, _) = crate::net::identity::generate_certificate().unwrap();
        let cert_file = dir.path().join("client.crt");
        fs::write(&cert_file, &cert_pem).unwrap();
        let store = TrustStore::new(dir.path());
        let entry = store
            .dir
            .join(format!("{}.der", store.add(&cert_file).unwrap()[0].fingerprint()));
        let der = tls::load_certs(&cert_file).unwrap().remove(0);
        fs::set_permissions(&entry, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!store.contains(der.as_ref()), "an entry others can write");
        let real = dir.path().join("elsewhere.der");
        fs::rename(&entry, &real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&real, &entry).unwrap();
        assert!(!store.contains(der.as_ref()), "a link");
        fs::remove_file(&entry).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&entry).status().unwrap();
        assert!(made.success());
        assert!(!store.contains(der.as_ref()), "a FIFO");
    }
}
