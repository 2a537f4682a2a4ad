//! The trust store: the client certificates `serve` answers, kept as
//! `<state>/trust/<sha256>.der` (Incus names certificates by the same
//! digest), each with an optional `<sha256>.name` (`trust add --name`), and
//! where the state directory is.

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
    /// Trusted before: nothing was written (but the name, if one was given).
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

/// One trusted certificate as `trust list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Trusted {
    /// The name given with `trust add --name` (none: `-` in the table).
    pub name: Option<String>,
    pub subject: String,
    pub fingerprint: String,
    /// `YYYY-MM-DD`.
    pub expires: String,
    pub expired: bool,
}

/// A name file holds one name (63 characters) and a newline.
const NAME_BYTES: u64 = 64;

/// A name for a trusted certificate: what an operator calls the client
/// (`node-b`, `ops@laptop`). Kept short and printable, as it is shown in
/// tables and logs.
pub fn check_name(name: &str) -> Result<()> {
    let fits = |c: char| c.is_ascii_alphanumeric() || "._@+-".contains(c);
    if name.is_empty() || name.len() > 63 || !name.chars().all(fits) {
        bail!(
            "{:?} is not a certificate name: 1 to 63 of A-Z a-z 0-9 . _ @ + -",
            crate::format::for_terminal(name, 80)
        );
    }
    Ok(())
}

impl TrustStore {
    pub fn new(state_dir: &Path) -> TrustStore {
        TrustStore {
            dir: state_dir.join("trust"),
        }
    }

    /// Adds every certificate of a PEM file, named `name` if given (a name
    /// given again for a trusted certificate renames it); returns what was
    /// done with each, by fingerprint.
    pub fn add(&self, cert_file: &Path, name: Option<&str>) -> Result<Vec<Added>> {
        if let Some(name) = name {
            check_name(name)?;
        }
        fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        let known = self.fingerprints()?;
        let mut added = Vec::new();
        for cert in tls::load_certs(cert_file)? {
            let fingerprint = tls::fingerprint(cert.as_ref());
            if let Some(name) = name {
                let path = self.dir.join(format!("{fingerprint}.name"));
                fs::write(&path, format!("{name}\n"))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
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
    pub fn fingerprints(&self) -> Result<Vec<String>> {
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

    /// The trusted certificates, each with its name, subject and expiry,
    /// sorted by name (unnamed last), then fingerprint. An entry that cannot
    /// be read or parsed is an error naming its file.
    pub fn list(&self) -> Result<Vec<Trusted>> {
        let mut trusted = Vec::new();
        for fingerprint in self.fingerprints()? {
            let path = self.dir.join(format!("{fingerprint}.der"));
            let der = crate::file_read::read(
                &path,
                crate::file_read::Rule::kept(crate::operator_file::PEM_BYTES),
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let described =
                crate::net::certificate::describe(&der).with_context(|| format!("{}", path.display()))?;
            trusted.push(Trusted {
                name: self.name_of(&fingerprint),
                subject: described.subject.clone(),
                expired: described.expired_at((crate::util::clock::now_ms() / 1000) as i64),
                expires: described.expires,
                fingerprint,
            });
        }
        trusted.sort_by(|a, b| {
            (a.name.is_none(), &a.name, &a.fingerprint).cmp(&(b.name.is_none(), &b.name, &b.fingerprint))
        });
        Ok(trusted)
    }

    /// Removes the certificate whose fingerprint starts with `prefix` (it must be unique).
    pub fn remove(&self, prefix: &str) -> Result<String> {
        let prefix = prefix.to_ascii_lowercase();
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{prefix:?} is not a certificate fingerprint (hex)");
        }
        let matches: Vec<String> = self
            .fingerprints()?
            .into_iter()
            .filter(|f| f.starts_with(&prefix))
            .collect();
        match matches.as_slice() {
            [one] => {
                fs::remove_file(self.dir.join(format!("{one}.der"))).context("remove certificate")?;
                let _ = fs::remove_file(self.dir.join(format!("{one}.name")));
                Ok(one.clone())
            }
            [] => bail!("no trusted certificate has a fingerprint starting with {prefix}"),
            _ => bail!(
                "{} trusted certificates start with {prefix}; give more digits",
                matches.len()
            ),
        }
    }

    /// The name `trust add --name` gave the certificate with this
    /// fingerprint, if any (`trust list`, the access log). Read as the
    /// certificates are, through the one reader: a FIFO or link put in its
    /// place names nobody and never blocks.
    pub fn name_of(&self, fingerprint: &str) -> Option<String> {
        if !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let path = self.dir.join(format!("{fingerprint}.name"));
        let bytes = crate::file_read::read(&path, crate::file_read::Rule::kept(NAME_BYTES)).ok()?;
        let name = std::str::from_utf8(&bytes).ok()?.trim();
        check_name(name).is_ok().then(|| name.to_string())
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
        let added = store.add(&cert_file, None).unwrap();
        let [Added::New(fingerprint)] = added.as_slice() else {
            panic!("one certificate, new: {added:?}");
        };
        let fingerprint = fingerprint.clone();
        assert_eq!(store.fingerprints().unwrap(), std::slice::from_ref(&fingerprint));
        assert_eq!(
            store.add(&cert_file, None).unwrap(),
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
        let entry = store.dir.join(format!(
            "{}.der",
            store.add(&cert_file, None).unwrap()[0].fingerprint()
        ));
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
