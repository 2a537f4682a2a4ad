//! `serve --nfd-features-file PATH`: this machine's Node Feature Discovery
//! feature file, kept current. Every `--nfd-interval` the cluster's answer
//! is computed as `GET /1.0/cluster/cpu-flags?format=nfd` computes it; the
//! file is replaced when its labels changed, or when its expiry draws near
//! (so NFD keeps the labels while serve runs, and drops them if it stops).
//!
//! NFD's rules for `features.d` (its "local" feature source): a file is
//! read whole, at most 64 KiB; a name starting with a dot is ignored, so
//! the new file is written as a dotfile beside the old one and renamed over
//! it, and NFD (or any reader) sees the old file or the new, never a part.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cluster::service::ClusterApi;
use crate::outputs::output::{FlagsFormat, FlagsOutput};
use crate::query::{Asker, FlagsRequest};

/// What keeps the file.
pub struct NfdFile {
    pub path: PathBuf,
    pub interval: Duration,
    pub cluster: Arc<ClusterApi>,
}

impl NfdFile {
    /// How long NFD keeps the labels unless the file is rewritten: an hour,
    /// or two intervals when they are longer.
    fn valid_for(&self) -> Duration {
        (self.interval * 2).max(Duration::from_secs(3600))
    }

    /// Keeps the file until the process ends. A failed computation or
    /// write is logged and tried again at the next interval; the file
    /// written last stays (its expiry bounds how long NFD trusts it).
    pub async fn keep(self) {
        let mut written: Option<(String, tokio::time::Instant)> = None;
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let text = match self.render().await {
                Ok(text) => text,
                Err(e) => {
                    tracing::warn!("NFD feature file {}: not rewritten: {e:#}", self.path.display());
                    continue;
                }
            };
            let labels = labels_of(&text);
            let renew_at = |at: tokio::time::Instant| at + self.valid_for() - self.interval * 2;
            let unchanged = written
                .as_ref()
                .is_some_and(|(last, at)| *last == labels && tokio::time::Instant::now() < renew_at(*at));
            if unchanged {
                tracing::debug!(target: "nodecache::server::nfd_file", "NFD feature file unchanged");
                continue;
            }
            match self.replace(&text) {
                Ok(()) => {
                    tracing::info!(target: "nodecache::server::nfd_file", path = %self.path.display(), "NFD feature file rewritten");
                    written = Some((labels, tokio::time::Instant::now()));
                }
                Err(e) => tracing::warn!("NFD feature file {}: {e:#}", self.path.display()),
            }
        }
    }

    /// The file's text, as `format=nfd` answers it.
    async fn render(&self) -> Result<String> {
        let output = FlagsOutput {
            format: FlagsFormat::Nfd,
            baseline: None,
            level: false,
            explain: false,
            require_hypervisor: false,
            drop_fragile: false,
            model_name: None,
            this_node: self.cluster.this_node(),
            nfd_valid_for: self.valid_for(),
        };
        let request = FlagsRequest::new(None, false, output, Asker::Http)?;
        let report = self
            .cluster
            .cpu_flags(&request.arch, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let answer = tokio::task::spawn_blocking(move || request.answer(report)).await??;
        Ok(answer.body.to_text())
    }

    /// Writes `text` as a dotfile beside the file, then renames it over.
    fn replace(&self, text: &str) -> Result<()> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = dir.unwrap_or(std::path::Path::new("."));
        let name = self
            .path
            .file_name()
            .context("the NFD feature file needs a file name")?;
        let mut temp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        temp.write_all(text.as_bytes())?;
        temp.as_file().sync_all()?;
        // NFD reads files as their owner left them readable: 0644.
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        temp.persist(&self.path)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot replace {}", self.path.display()))?;
        Ok(())
    }
}

/// The file's labels: its lines but the comments and directives (the
/// expiry moves with every write).
fn labels_of(text: &str) -> String {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}
