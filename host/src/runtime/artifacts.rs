//! Compiled policies kept between runs, so a CLI call that loads a policy it
//! has seen deserializes it (under a millisecond) instead of compiling it
//! with Cranelift (about 100 ms for the shelf, 9 s for the Python example).
//!
//! wasmtime's own means: `Engine::precompile_component` writes an artifact,
//! `Component::deserialize` maps it back. Deserializing is unsafe in the
//! sense that wasmtime trusts the bytes to be its own output, so an artifact
//! is only ever read from a directory this user alone can write (owner and
//! mode checked, else refused with the reason, and the policy is compiled as
//! if there were no cache), and only after its SHA-256, stored in front of
//! it, matches: a damaged artifact is recompiled, never trusted. Its name is
//! the component's digest, nodecache's version and the engine's
//! compatibility hash, so a changed policy, a new nodecache or another
//! engine configuration is a miss, never a stale hit.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::digest::{hex, sha256};
use crate::file_read::{self, ReadError, Rule};
use crate::private_path::check_private;

/// Where compiled policies are kept: `<cache-dir>/compiled/`.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

/// How a component was obtained, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obtained {
    /// Deserialized from a whole artifact.
    Cached,
    /// Compiled: there was no artifact for this component and engine.
    Compiled,
    /// Compiled: the artifact was there but could not be trusted (why).
    Recompiled(String),
}

const DIGEST_LEN: usize = 32;
/// How many compiled policies of this nodecache are kept (each is
/// megabytes; the shelf is five, and a policy author's rebuilds come and go).
pub const KEPT_ARTIFACTS: usize = 16;

/// The largest compiled policy read back: the shelf's largest component
/// (componentize-py's, 18 MB) compiles to about 60 MB.
const ARTIFACT_BYTES: u64 = 1 << 30;

impl ArtifactCache {
    /// Opens (making it, mode 0700, if missing) the artifact directory, or
    /// says why it cannot be trusted: not a directory, another owner, or
    /// writable by group or others.
    pub fn open(dir: &Path) -> Result<ArtifactCache> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        check_private(dir, true)?;
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The artifact's path for `component` on `engine`.
    pub fn path_for(&self, engine: &Engine, component: &[u8]) -> PathBuf {
        let component_digest = hex(&sha256(component)[..16]);
        self.dir.join(format!(
            "{component_digest}-{}-{}.cwasm",
            build_tag(),
            engine_tag(engine)
        ))
    }

    /// Removes the artifacts of other nodecache versions (and of the name
    /// format before versions were in it): no run of this one can use them,
    /// and each is megabytes. Of this version's, at most [`KEPT_ARTIFACTS`]
    /// stay, the least recently used removed first (a hit restamps its
    /// artifact): every rebuilt policy left one more, and nothing removed
    /// them. Artifacts of this version for another engine configuration
    /// are kept like any other: a small policy and a large one get
    /// different engines (see `PolicyRuntime::engine`), and each would
    /// otherwise remove the other's and compile again on every alternation.
    /// Called after a compile, so a run that finds its artifact never lists
    /// the directory.
    fn prune(&self) {
        let ours = format!("-{}-", build_tag());
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut kept = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy().into_owned();
            if !name.ends_with(".cwasm") {
                continue;
            }
            if name.contains(&ours) {
                let used = entry.metadata().and_then(|m| m.modified()).ok();
                kept.push((used, entry.path()));
            } else {
                self.remove(&entry.path(), "compiled by another nodecache build");
            }
        }
        if kept.len() > KEPT_ARTIFACTS {
            // Oldest use first; an artifact whose time cannot be read goes first.
            kept.sort();
            for (_, path) in &kept[..kept.len() - KEPT_ARTIFACTS] {
                self.remove(path, "the least recently used compiled policy");
            }
        }
    }

    fn remove(&self, path: &Path, why: &str) {
        match fs::remove_file(path) {
            Ok(()) => tracing::info!("removed {}: {why}", path.display()),
            // Another process pruning at the same time got there first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
        }
    }

    /// Marks an artifact used now (its modification time), for [`Self::prune`].
    fn restamp(path: &Path) {
        let now = std::time::SystemTime::now();
        if let Err(e) = fs::File::options()
            .write(true)
            .open(path)
            .and_then(|file| file.set_modified(now))
        {
            tracing::debug!("cannot restamp {}: {e}", path.display());
        }
    }

    /// The compiled component: deserialized from its artifact when a whole,
    /// private one exists, else compiled and its artifact written.
    pub fn component(&self, engine: &Engine, bytes: &[u8]) -> Result<(Component, Obtained)> {
        let path = self.path_for(engine, bytes);
        let source = sha256(bytes);
        let obtained = match self.read_trusted(&path, &source) {
            Ok(Some(artifact)) => {
                // SAFETY: the bytes are an artifact this user's nodecache wrote
                // (private directory and file) with `precompile_component` for an
                // engine of the same compatibility hash, and they are whole (their
                // SHA-256 matches); wasmtime also checks the header and version.
                match unsafe { Component::deserialize(engine, &artifact) } {
                    Ok(component) => {
                        Self::restamp(&path);
                        return Ok((component, Obtained::Cached));
                    }
                    Err(e) => Obtained::Recompiled(format!("wasmtime refused it: {e}")),
                }
            }
            Ok(None) => Obtained::Compiled,
            Err(why) => Obtained::Recompiled(format!("{why:#}")),
        };
        if let Obtained::Recompiled(why) = &obtained {
            tracing::warn!("compiled policy {}: {why}; compiling again", path.display());
        }
        let artifact = engine.precompile_component(bytes).map_err(anyhow::Error::from)?;
        // SAFETY: these bytes come from `precompile_component` on this engine, just now.
        let component = unsafe { Component::deserialize(engine, &artifact) }.map_err(anyhow::Error::from)?;
        if let Err(e) = self.write(&path, &source, &artifact) {
            tracing::warn!("cannot keep the compiled policy: {e:#}");
        }
        self.prune();
        Ok((component, obtained))
    }

    /// The artifact at `path` if it is there, private, whole and made from
    /// the component whose digest is `source`. Opened without following a
    /// link and without blocking, and checked (a regular file of this
    /// user's, not writable by others) before a byte is read; then read to
    /// the size it had: a link to `/dev/zero` or a FIFO in its place is an
    /// error at once, never a hang or an unbounded read.
    fn read_trusted(&self, path: &Path, source: &[u8; DIGEST_LEN]) -> Result<Option<Vec<u8>>> {
        // The one reader: no link followed, never waiting on a FIFO, this
        // user's alone, bounded; checked before a byte is read.
        let bytes = match file_read::read(path, Rule::kept(ARTIFACT_BYTES)) {
            Ok(bytes) => bytes,
            Err(ReadError::Missing) => return Ok(None),
            Err(e) => bail!("{}: {e}", path.display()),
        };
        if bytes.len() < DIGEST_LEN {
            bail!("{} bytes: too short to be an artifact", bytes.len());
        }
        let (digest, artifact) = bytes.split_at(DIGEST_LEN);
        if binding(source, artifact) != digest {
            bail!("its digest does not match: damaged, or made from another component");
        }
        Ok(Some(artifact.to_vec()))
    }

    /// Writes `binding || artifact` through a private temporary file and a rename.
    fn write(&self, path: &Path, source: &[u8; DIGEST_LEN], artifact: &[u8]) -> Result<()> {
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(&self.dir)
            .with_context(|| format!("cannot create a file in {}", self.dir.display()))?;
        temp.write_all(&binding(source, artifact))?;
        temp.write_all(artifact)?;
        temp.persist(path)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

/// What an artifact's header holds: the digest of the component it was
/// compiled from and of the artifact together, so an artifact is whole
/// and bound to its component (its name carries only part of the
/// component's digest).
fn binding(source: &[u8; DIGEST_LEN], artifact: &[u8]) -> [u8; DIGEST_LEN] {
    crate::digest::sha256_of_parts(&[source, artifact])
}

/// What an artifact's name says of the engine that compiled it: wasmtime's
/// compatibility hash (its version, target and configuration).
fn engine_tag(engine: &Engine) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// What an artifact's name says of the nodecache that wrote it: its version.
fn build_tag() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::runtime::{PolicyRuntime, embedded, sandbox::Limits};

    fn setup() -> (tempfile::TempDir, ArtifactCache, Engine, &'static [u8]) {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(&dir.path().join("compiled")).unwrap();
        let engine = PolicyRuntime::engine(&Limits::default(), 4, 0).unwrap();
        let bytes = embedded::find("default").unwrap().component;
        (dir, cache, engine, bytes)
    }

    /// Found in the second hardening pass: an artifact was read before its
    /// type and owner were checked (a link to `/dev/zero` ran the process
    /// out of memory, a FIFO hung every run), and its checksum bound it to
    /// nothing but itself.
    #[test]
    fn an_artifact_is_checked_before_it_is_read_and_bound_to_its_component() {
        let (_dir, cache, engine, bytes) = setup();
        let path = cache.path_for(&engine, bytes);
        let source = sha256(bytes);
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let error = cache.read_trusted(&path, &source).unwrap_err();
        assert!(
            format!("{error:#}").contains("is a symbolic link, not followed"),
            "{error:#}"
        );
        fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(made.success());
        let error = cache.read_trusted(&path, &source).unwrap_err();
        assert!(
            format!("{error:#}").ends_with("is a FIFO, not a regular file"),
            "{error:#}"
        );
        fs::remove_file(&path).unwrap();
        // Another component's artifact, whole, under this one's name.
        let other = embedded::find("pinned").unwrap().component;
        cache.component(&engine, other).unwrap();
        fs::rename(cache.path_for(&engine, other), &path).unwrap();
        let error = cache.read_trusted(&path, &source).unwrap_err();
        assert!(
            format!("{error:#}").contains("made from another component"),
            "{error:#}"
        );
        assert!(matches!(
            cache.component(&engine, bytes).unwrap().1,
            Obtained::Recompiled(_)
        ));
    }

    #[test]
    fn a_second_load_is_a_hit_and_another_component_a_miss() {
        let (_dir, cache, engine, bytes) = setup();
        assert_eq!(cache.component(&engine, bytes).unwrap().1, Obtained::Compiled);
        assert_eq!(cache.component(&engine, bytes).unwrap().1, Obtained::Cached);
        let other = embedded::find("pinned").unwrap().component;
        assert_eq!(cache.component(&engine, other).unwrap().1, Obtained::Compiled);
        let mode = fs::metadata(cache.path_for(&engine, bytes)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_compile_removes_artifacts_of_other_builds_only() {
        let (_dir, cache, engine, bytes) = setup();
        let before_versions = cache
            .dir()
            .join("00112233445566778899aabbccddeeff-0123456789abcdef.cwasm");
        let other_version = cache
            .dir()
            .join("00112233445566778899aabbccddeeff-v0.0.1-0123456789abcdef.cwasm");
        let other_engine = cache.dir().join(format!(
            "00112233445566778899aabbccddeeff-{}-0123456789abcdef.cwasm",
            build_tag()
        ));
        let not_ours = cache.dir().join("notes.txt");
        for file in [&before_versions, &other_version, &other_engine, &not_ours] {
            fs::write(file, b"old").unwrap();
        }
        cache.component(&engine, bytes).unwrap();
        let other = embedded::find("pinned").unwrap().component;
        cache.component(&engine, other).unwrap();
        assert!(!before_versions.exists() && !other_version.exists());
        assert!(other_engine.exists() && not_ours.exists());
        assert!(cache.path_for(&engine, bytes).exists() && cache.path_for(&engine, other).exists());
    }

    /// A bounded directory: beyond [`KEPT_ARTIFACTS`] of this build, the
    /// least recently used go first, and a hit counts as a use.
    #[test]
    fn at_most_the_kept_number_stay_the_least_recently_used_removed_first() {
        let (_dir, cache, engine, bytes) = setup();
        cache.component(&engine, bytes).unwrap();
        let hit = cache.path_for(&engine, bytes);
        let day = std::time::Duration::from_secs(86_400);
        let long_ago = std::time::SystemTime::now() - 100 * day;
        let set_time = |path: &Path, at| {
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(at)
                .unwrap();
        };
        // The hit's artifact is the oldest of all, until it is used again.
        set_time(&hit, long_ago);
        let mut older = Vec::new();
        for i in 0..KEPT_ARTIFACTS + 3 {
            let path = cache
                .dir()
                .join(format!("{i:032x}-{}-0123456789abcdef.cwasm", build_tag()));
            fs::write(&path, b"old").unwrap();
            set_time(&path, long_ago + day * (i as u32 + 1));
            older.push(path);
        }
        assert_eq!(cache.component(&engine, bytes).unwrap().1, Obtained::Cached);
        // A compile prunes: this build keeps KEPT_ARTIFACTS, the four oldest uses gone.
        let other = embedded::find("pinned").unwrap().component;
        cache.component(&engine, other).unwrap();
        let left: Vec<bool> = older.iter().map(|path| path.exists()).collect();
        assert_eq!(
            left.iter().filter(|&&kept| kept).count(),
            KEPT_ARTIFACTS - 2,
            "{left:?}"
        );
        assert!(
            left[..5].iter().all(|&kept| !kept),
            "the oldest uses go first: {left:?}"
        );
        assert!(hit.exists(), "the artifact just used stays");
        assert!(
            cache.path_for(&engine, other).exists(),
            "the artifact just made stays"
        );
    }

    #[test]
    fn a_damaged_artifact_is_recompiled_not_trusted() {
        let (_dir, cache, engine, bytes) = setup();
        cache.component(&engine, bytes).unwrap();
        let path = cache.path_for(&engine, bytes);
        let mut artifact = fs::read(&path).unwrap();
        let middle = artifact.len() / 2;
        artifact[middle] ^= 0xff;
        fs::write(&path, &artifact).unwrap();
        match cache.component(&engine, bytes).unwrap().1 {
            Obtained::Recompiled(why) => assert!(why.contains("damaged"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(cache.component(&engine, bytes).unwrap().1, Obtained::Cached);
        fs::write(&path, b"short").unwrap();
        assert!(matches!(
            cache.component(&engine, bytes).unwrap().1,
            Obtained::Recompiled(_)
        ));
    }

    #[test]
    fn a_directory_others_can_write_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("compiled");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o775)).unwrap();
        let error = format!("{:#}", ArtifactCache::open(&shared).unwrap_err());
        assert!(
            error.contains("writable by group or others (mode 775)"),
            "{error}"
        );
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(ArtifactCache::open(&shared).is_ok());
    }

    #[test]
    fn an_artifact_others_can_write_is_not_read() {
        let (_dir, cache, engine, bytes) = setup();
        cache.component(&engine, bytes).unwrap();
        let path = cache.path_for(&engine, bytes);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        match cache.component(&engine, bytes).unwrap().1 {
            Obtained::Recompiled(why) => assert!(why.contains("writable by group or others"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
