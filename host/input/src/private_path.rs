//! Whether a path is this user's alone: owned by this user, writable by
//! nobody else, and the kind it should be (a link is neither a file nor a
//! directory). What nodecache reads back from its cache directory (compiled
//! policies, resources entries) is trusted only then: another user able to
//! write there could hand it a forged entry or a poisoned artifact.

use std::fs;
use std::os::unix::fs::MetadataExt;
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
