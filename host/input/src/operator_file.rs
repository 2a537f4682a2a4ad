//! Files an operator names on the command line or in the cluster file (the
//! cluster file, a policy, a recorded resources document, certificates and
//! keys), read with a bound: a path that points at `/dev/zero` or a runaway
//! log is an error naming the file, not gigabytes of memory. Pipes stay
//! welcome where a file is read once (`--cluster <(generate)`); what `serve`
//! reads again while it runs (the policy it reloads, the recorded resources
//! document) must be a regular file ([`read_file`]), checked before a byte
//! is read, so a FIFO put at its path cannot wedge the server. Both go
//! through `file_read`, the one reader.

use std::path::Path;

use anyhow::{Context, Result, anyhow};

use crate::file_read::{self, ReadError, Rule};

/// The cluster file: 5,000 members take about 400 KB.
pub const CLUSTER_FILE_BYTES: u64 = 2 << 20;
/// A policy component: the largest on the shelf (componentize-py) is 18 MB;
/// its size is checked before a byte is read, so a reload of a larger file
/// reads nothing.
pub const POLICY_BYTES: u64 = 64 << 20;
/// A recorded resources document: as large as a member's answer may be.
pub const RESOURCES_BYTES: u64 = 64 << 20;
/// A PEM certificate chain or key.
pub const PEM_BYTES: u64 = 1 << 20;

/// The whole of `path` (`what` names it in errors), read once: a pipe is
/// welcome, a device is not, and more than `max` bytes is an error.
pub fn read(path: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
    named(path, what, Rule::operator(max))
}

/// The whole of the regular file at `path`, for what `serve` reads again
/// while it runs: a FIFO or a device is refused before a byte is read,
/// and the open never waits.
pub fn read_file(path: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
    named(path, what, Rule::reread(max))
}

fn named(path: &Path, what: &str, rule: Rule) -> Result<Vec<u8>> {
    file_read::read(path, rule).map_err(|e| match e {
        ReadError::TooLarge { max } => anyhow!(
            "{what} {}: larger than {max} bytes, more than any {what} needs",
            path.display()
        ),
        ReadError::Missing | ReadError::Io(_) => {
            anyhow!("cannot read {what} {}: {e}", path.display())
        }
        _ => anyhow!("{what} {}: {e}", path.display()),
    })
}

/// [`read`], as UTF-8 text.
pub fn read_text(path: &Path, what: &str, max: u64) -> Result<String> {
    String::from_utf8(read(path, what, max)?)
        .with_context(|| format!("{what} {}: not UTF-8 text", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found in the second hardening pass: a FIFO at the `--policy` path
    /// wedged live reload for good (the watcher blocked in `open`).
    #[test]
    fn what_serve_reads_again_must_be_a_regular_file_and_is_never_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("policy.wasm");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let error = read_file(&fifo, "policy", 1 << 10).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("policy.wasm: is a FIFO, not a regular file"),
            "{error}"
        );
        let error = read_file(Path::new("/dev/zero"), "policy", 1 << 10).unwrap_err();
        assert_eq!(
            error.to_string(),
            "policy /dev/zero: is a device, not a regular file"
        );
        let file = dir.path().join("ok");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(read_file(&file, "policy", 1).unwrap(), b"x");
    }

    #[test]
    fn a_file_within_the_bound_is_read_whole() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "x".repeat(1024)).unwrap();
        assert_eq!(read_text(file.path(), "f", 1024).unwrap().len(), 1024);
        assert!(read(Path::new("/nonexistent"), "f", 1).is_err());
    }
}
