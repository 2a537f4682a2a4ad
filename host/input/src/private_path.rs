//! Whether a path is this user's alone: owned by this user, writable by
//! nobody else, and the kind it should be (a link is neither a file nor a
//! directory). What nodecache reads back from its cache directory (compiled
//! policies, resources entries) is trusted only then: another user able to
//! write there could hand it a forged entry or a poisoned artifact.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Owned by this user, and writable by nobody else.
pub fn check_private(path: &Path, directory: bool) -> Result<()> {
    let metadata =
        fs::symlink_metadata(path).with_context(|| format!("cannot inspect {}", path.display()))?;
    check_metadata(path, &metadata, directory)
}

/// [`check_private`] on metadata already read (of an opened file, say).
pub fn check_metadata(path: &Path, metadata: &fs::Metadata, directory: bool) -> Result<()> {
    let kind_ok = if directory {
        metadata.is_dir()
    } else {
        metadata.is_file()
    };
    if !kind_ok {
        bail!(
            "{} is not a {}",
            path.display(),
            if directory { "directory" } else { "regular file" }
        );
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if metadata.uid() != me {
        bail!(
            "{} belongs to uid {}, not to this user (uid {me})",
            path.display(),
            metadata.uid()
        );
    }
    if metadata.mode() & 0o022 != 0 {
        bail!(
            "{} is writable by group or others (mode {:o}); make it private: chmod go-w {}",
            path.display(),
            metadata.mode() & 0o7777,
            path.display()
        );
    }
    Ok(())
}

/// Replaces `dir/name` with `bytes` atomically (a temporary file beside
/// it, then a rename), making `dir` (mode 0700) when missing and writing
/// only if it is this user's alone: the history and the kept baselines
/// are written so, as cache entries are.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    check_private(dir, true).context("it must be this user's alone")?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let path = dir.join(name);
    temp.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    temp.persist(&path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
