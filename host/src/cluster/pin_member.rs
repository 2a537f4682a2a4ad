//! Pinning a member's certificate into the operator's cluster file
//! (`cluster accept-certificate`): the certificate is written beside the
//! file as `pinned/<node>.crt`, and the member's `[[member]]` entry gains
//! `server-cert = "pinned/<node>.crt"` (relative paths resolve against the
//! file's directory). The file is edited with toml_edit, so the
//! operator's comments and layout stay; both files are replaced atomically.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use toml_edit::{DocumentMut, Item, value};

use crate::node_name::NodeName;

/// The cluster file's text with `server-cert = "cert"` set in `node`'s
/// `[[member]]` entry. A member not listed there (one Incus lists, say) is
/// an error saying how to list it.
pub fn with_server_cert(text: &str, node: &NodeName, cert: &str) -> Result<String> {
    let mut document: DocumentMut = text.parse().context("not TOML")?;
    let members = document
        .get_mut("member")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| anyhow!("it has no [[member]] entries"))?;
    let entry = members
        .iter_mut()
        .find(|member| member.get("name").and_then(Item::as_str) == Some(node.as_str()))
        .ok_or_else(|| {
            anyhow!("{node} has no [[member]] entry; add one (name and url) to pin its certificate")
        })?;
    entry.insert("server-cert", value(cert));
    Ok(document.to_string())
}

/// Writes `pem` as `pinned/<node>.crt` beside `cluster_file` and points
/// the member's entry at it; returns the certificate's path.
pub fn pin(cluster_file: &Path, node: &NodeName, pem: &str) -> Result<PathBuf> {
    // A bare file name's parent is "": the paths below stay relative.
    let dir = cluster_file.parent().unwrap_or(Path::new(""));
    let text = crate::operator_file::read_text(
        cluster_file,
        "cluster file",
        crate::operator_file::CLUSTER_FILE_BYTES,
    )?;
    let relative = format!("pinned/{node}.crt");
    let edited = with_server_cert(&text, node, &relative)
        .with_context(|| format!("cannot pin in {}", cluster_file.display()))?;
    let pinned_dir = dir.join("pinned");
    std::fs::create_dir_all(&pinned_dir)
        .with_context(|| format!("cannot create {}", pinned_dir.display()))?;
    let cert_path = dir.join(&relative);
    replace(&cert_path, pem.as_bytes())?;
    replace(cluster_file, edited.as_bytes())?;
    Ok(cert_path)
}

/// Writes `path` whole or not at all: a temporary file beside it, with
/// the old file's permissions, renamed over it.
fn replace(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".nodecache-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    temp.write_all(contents)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let permissions = match std::fs::metadata(path) {
        Ok(old) => old.permissions(),
        Err(_) => std::os::unix::fs::PermissionsExt::from_mode(0o644),
    };
    std::fs::set_permissions(temp.path(), permissions)
        .with_context(|| format!("cannot set the permissions of {}", temp.path().display()))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// toml (the parser the cluster file is read with) reads the edit
    /// back: the member has its server-cert, the others and the comments
    /// are as they were.
    #[test]
    fn the_member_entry_gains_its_server_cert_and_the_rest_stays() {
        let text = "# our cluster\nlocal = \"a\"\n\n[[member]]\nname = \"a\"\n\n[[member]]\n\
                    name = \"b\"   # the new one\nurl = \"https://10.0.0.2:8443\"\n";
        let b = NodeName::parse("b").unwrap();
        let edited = with_server_cert(text, &b, "pinned/b.crt").unwrap();
        assert!(edited.starts_with("# our cluster\nlocal = \"a\"\n"), "{edited}");
        assert!(edited.contains("# the new one"), "{edited}");
        let read: toml::Value = toml::from_str(&edited).unwrap();
        let members = read["member"].as_array().unwrap();
        assert_eq!(members[1]["server-cert"].as_str(), Some("pinned/b.crt"));
        assert!(members[0].get("server-cert").is_none());
        let c = NodeName::parse("c").unwrap();
        let error = with_server_cert(text, &c, "x").unwrap_err().to_string();
        assert!(error.contains("c has no [[member]] entry"), "{error}");
    }
}
