//! The one way nodecache reads a file: cache entries, compiled policies,
//! policy files, the recorded resources document, the cluster file,
//! certificates, keys and the trust store all come through [`read`].
//!
//! - It opens without blocking: a FIFO at the path cannot hang `open`.
//! - It checks what it opened before reading a byte: the kind (a regular
//!   file; a pipe only where the rule allows one), and, for what nodecache
//!   keeps for itself, the owner (this user) and mode (nobody else may
//!   write).
//! - It bounds the size, by the open file's own size where it has one, so
//!   `/dev/zero` or a file growing meanwhile cannot make it read forever.
//! - What nodecache keeps in its own directories is opened without
//!   following a link: a link there could lead out of the directory.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What may be read at a path, and how much of it.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The most bytes any such file needs.
    pub max: u64,
    /// A pipe is allowed (`--cluster <(generate)`): read once, by the CLI.
    pub pipe: bool,
    /// It lives in a directory of nodecache's own: no links followed, and
    /// it must be this user's, writable by nobody else.
    pub kept: bool,
}

impl Rule {
    /// A file the operator names, read once (pipes welcome).
    pub const fn operator(max: u64) -> Rule {
        Rule {
            max,
            pipe: true,
            kept: false,
        }
    }

    /// A file the operator names that `serve` reads again while it runs:
    /// a regular file only, so nothing put at its path can wedge the server.
    pub const fn reread(max: u64) -> Rule {
        Rule {
            max,
            pipe: false,
            kept: false,
        }
    }

    /// A file nodecache keeps for itself (cache entry, compiled policy,
    /// trusted certificate).
    pub const fn kept(max: u64) -> Rule {
        Rule {
            max,
            pipe: false,
            kept: true,
        }
    }
}

/// Why a file was not read.
#[derive(Debug)]
pub enum ReadError {
    /// Nothing at the path.
    Missing,
    /// A symbolic link where links are not followed.
    Link,
    /// Not a regular file (`is` says what it is).
    NotRegular { is: &'static str },
    /// Not this user's alone (the reason, with the fix).
    NotPrivate(String),
    /// More bytes than the rule allows.
    TooLarge { max: u64 },
    /// The open or the read failed.
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Missing => write!(f, "No such file or directory"),
            ReadError::Link => write!(f, "is a symbolic link, not followed here"),
            ReadError::NotRegular { is } => write!(f, "is {is}, not a regular file"),
            ReadError::NotPrivate(why) => write!(f, "{why}"),
            ReadError::TooLarge { max } => write!(f, "larger than {max} bytes"),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// The whole file at `path`, read under `rule`.
pub fn read(path: &Path, rule: Rule) -> Result<Vec<u8>, ReadError> {
    let (file, metadata) = open(path, rule)?;
    if metadata.file_type().is_fifo() {
        // The operator's own pipe: opened again, blocking, to wait for its
        // writer as a shell would (a FIFO opened without blocking and no
        // writer yet reads as empty).
        let file = File::open(path).map_err(ReadError::Io)?;
        return bounded(file, rule.max + 1, rule.max);
    }
    bounded(file, metadata.len(), rule.max)
}

/// The first line of the file at `path` (without its newline), read under
/// `rule`: a file whose head is all a caller needs (a cache entry's
/// header) is not read whole.
pub fn read_first_line(path: &Path, rule: Rule) -> Result<Vec<u8>, ReadError> {
    use std::io::BufRead;
    let (file, metadata) = open(path, rule)?;
    let limit = if metadata.file_type().is_fifo() {
        rule.max
    } else {
        metadata.len()
    };
    let mut line = Vec::new();
    io::BufReader::new(file.take(limit))
        .read_until(b'\n', &mut line)
        .map_err(ReadError::Io)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(line)
}

/// Opens `path` under `rule`, checked before a byte is read: no link
/// followed where links are not, never waiting on a FIFO, a regular file
/// (or the operator's pipe where one is allowed), this user's alone where
/// the rule keeps it, within the rule's size.
fn open(path: &Path, rule: Rule) -> Result<(File, Metadata), ReadError> {
    let mut flags = libc::O_NONBLOCK;
    if rule.kept {
        flags |= libc::O_NOFOLLOW;
    }
    let file = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) if rule.kept && e.raw_os_error() == Some(libc::ELOOP) => return Err(ReadError::Link),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let metadata = file.metadata().map_err(ReadError::Io)?;
    let kind = metadata.file_type();
    let piped = kind.is_fifo() && rule.pipe;
    if !kind.is_file() && !piped {
        return Err(ReadError::NotRegular {
            is: kind_of(&metadata),
        });
    }
    if rule.kept {
        crate::private_path::check_metadata(path, &metadata, false)
            .map_err(|e| ReadError::NotPrivate(format!("{e:#}")))?;
    }
    if !piped && metadata.len() > rule.max {
        return Err(ReadError::TooLarge { max: rule.max });
    }
    Ok((file, metadata))
}

/// Reads at most `limit` bytes: a regular file's size as it was opened (a
/// file that grows meanwhile is cut, and what is cut fails its parse), or,
/// for a pipe, one past `max`, to tell a too-large input.
fn bounded(file: File, limit: u64, max: u64) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::with_capacity(limit.min(max) as usize);
    file.take(limit).read_to_end(&mut bytes).map_err(ReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge { max });
    }
    Ok(bytes)
}

fn kind_of(metadata: &Metadata) -> &'static str {
    let kind = metadata.file_type();
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fifo_in(dir: &Path) -> std::path::PathBuf {
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        fifo
    }

    /// The rules, each against what broke the code before it: a FIFO (open
    /// blocked for good), `/dev/zero` (read until memory ran out), a link
    /// out of a kept directory, a file others can write.
    #[test]
    fn every_rule_refuses_before_reading_and_never_waits() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo_in(dir.path());
        for rule in [Rule::reread(1024), Rule::kept(1024)] {
            assert!(matches!(
                read(&fifo, rule),
                Err(ReadError::NotRegular { is: "a FIFO" })
            ));
        }
        assert!(matches!(
            read(Path::new("/dev/zero"), Rule::operator(1024)),
            Err(ReadError::NotRegular { is: "a device" })
        ));
        let file = dir.path().join("file");
        std::fs::write(&file, "x".repeat(100)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(read(&link, Rule::kept(1024)), Err(ReadError::Link)));
        assert_eq!(
            read(&link, Rule::operator(1024)).unwrap().len(),
            100,
            "an operator's link is followed"
        );
        assert!(matches!(
            read(&file, Rule::operator(99)),
            Err(ReadError::TooLarge { max: 99 })
        ));
        assert!(matches!(
            read(&dir.path().join("none"), Rule::kept(9)),
            Err(ReadError::Missing)
        ));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let shared = read(&file, Rule::kept(1024)).unwrap_err().to_string();
        assert!(shared.contains("writable by group or others"), "{shared}");
    }

    /// A pipe the operator hands the CLI (`--cluster <(generate)`) is read
    /// whole once its writer writes, and bounded like a file.
    #[test]
    fn an_operators_pipe_is_read_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo_in(dir.path());
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, "x".repeat(2000)))
        };
        assert!(matches!(
            read(&fifo, Rule::operator(1000)),
            Err(ReadError::TooLarge { max: 1000 })
        ));
        let _ = writer.join();
        // A FIFO of its own: what the first writer left unread in a pipe the
        // kernel had not yet let go of was once read here.
        let other = tempfile::tempdir().unwrap();
        let fifo = fifo_in(other.path());
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::write(fifo, "member"))
        };
        assert_eq!(read(&fifo, Rule::operator(1000)).unwrap(), b"member");
        writer.join().unwrap().unwrap();
    }
}
