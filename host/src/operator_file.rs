//! Files an operator names on the command line or in the cluster file (the
//! cluster file, a policy, a recorded resources document, certificates and
//! keys), read with a bound: a path that points at `/dev/zero` or a runaway
//! log is an error naming the file, not gigabytes of memory. Pipes stay
//! welcome (`--cluster <(generate)`), so the bound is on bytes read, not on
//! the kind of file.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The cluster file: 5,000 members take about 400 KB.
pub const CLUSTER_FILE_BYTES: u64 = 16 << 20;
/// A policy component: the largest on the shelf (componentize-py) is 18 MB.
pub const POLICY_BYTES: u64 = 256 << 20;
/// A recorded resources document: as large as a member's answer may be.
pub const RESOURCES_BYTES: u64 = 64 << 20;
/// A PEM certificate chain or key.
pub const PEM_BYTES: u64 = 1 << 20;

/// The whole of `path` (`what` names it in errors), or an error when it holds
/// more than `max` bytes.
pub fn read(path: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!(
            "{what} {}: larger than {} bytes, more than any {what} needs",
            path.display(),
            max
        );
    }
    Ok(bytes)
}

/// [`read`], as UTF-8 text.
pub fn read_text(path: &Path, what: &str, max: u64) -> Result<String> {
    String::from_utf8(read(path, what, max)?)
        .with_context(|| format!("{what} {}: not UTF-8 text", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_is_refused_after_the_bound() {
        let error = read(Path::new("/dev/zero"), "cluster file", 1 << 10).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cluster file /dev/zero: larger than 1024 bytes, more than any cluster file needs"
        );
    }

    #[test]
    fn a_file_within_the_bound_is_read_whole() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "x".repeat(1024)).unwrap();
        assert_eq!(read_text(file.path(), "f", 1024).unwrap().len(), 1024);
        assert!(read(Path::new("/nonexistent"), "f", 1).is_err());
    }
}
