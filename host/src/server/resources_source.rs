//! Where `serve`'s `GET /1.0/resources` comes from: this machine, probed, or
//! a recorded document. Either way an answer carries its `ETag`, and a
//! request whose `If-None-Match` already holds it is a 304 without the
//! document being made.
//!
//! Probing costs milliseconds of CPUID, /proc and /sys reads, and a plain
//! HTTP `serve` answers anyone on the host: so this machine is probed at
//! most once per [`PROBE_REUSE`], however many ask, and every request in
//! that time shares the answer. A hot-plugged CPU shows within a second.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

use crate::api::envelope::resources_text;
use crate::machine::{fingerprint, probe};

/// How long one probe of this machine answers for.
pub const PROBE_REUSE: Duration = Duration::from_secs(1);

/// Where `/1.0/resources` comes from.
#[derive(Clone)]
pub enum ResourcesSource {
    /// This machine, probed at most once per [`PROBE_REUSE`].
    Probe(Arc<RecentProbe>),
    /// A recorded document (for recorded or simulated nodes), read again
    /// whenever the file changes, so a test can change a node's hardware.
    Recorded(Arc<RecordedFile>),
}

/// A document (bare, as text) and its `ETag`; an empty document means the
/// client holds the tag (a 304).
pub struct Tagged {
    pub document: String,
    pub tag: String,
}

impl ResourcesSource {
    pub fn probe() -> Self {
        ResourcesSource::Probe(Arc::new(RecentProbe::default()))
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let file = RecordedFile {
            path: path.to_path_buf(),
            last: Mutex::new(None),
        };
        file.current()?;
        Ok(ResourcesSource::Recorded(Arc::new(file)))
    }

    /// The current document and tag; `client_holds(tag)` says whether the
    /// client already has a tag, so its document need not be made.
    pub async fn current(&self, client_holds: impl Fn(&str) -> bool) -> Result<Arc<Tagged>, String> {
        match self {
            ResourcesSource::Recorded(file) => file.current().map_err(|e| format!("{e:#}")),
            ResourcesSource::Probe(recent) => recent.current(client_holds).await,
        }
    }
}

/// The last probe of this machine, and when it was made.
#[derive(Default)]
pub struct RecentProbe {
    /// Held across a probe, so concurrent requests wait for one probe
    /// instead of each making their own.
    last: tokio::sync::Mutex<Option<(Instant, Arc<Tagged>)>>,
}

impl RecentProbe {
    async fn current(&self, client_holds: impl Fn(&str) -> bool) -> Result<Arc<Tagged>, String> {
        let mut last = self.last.lock().await;
        if let Some((at, tagged)) = last.as_ref()
            && at.elapsed() < PROBE_REUSE
            && (!tagged.document.is_empty() || client_holds(&tagged.tag))
        {
            return Ok(tagged.clone());
        }
        let tag = blocking(|| fingerprint::local().map_err(|e| format!("fingerprint: {e}"))).await?;
        let tagged = if client_holds(&tag) {
            Arc::new(Tagged {
                document: String::new(),
                tag,
            })
        } else {
            let document = blocking(|| {
                let resources = probe::probe_resources().map_err(|e| e.to_string())?;
                serde_json::to_string(&resources).map_err(|e| e.to_string())
            })
            .await?;
            tracing::debug!("probed this machine's resources");
            Arc::new(Tagged { document, tag })
        };
        *last = Some((Instant::now(), tagged.clone()));
        Ok(tagged)
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| e.to_string())
        .and_then(|done| done)
}

pub struct RecordedFile {
    path: PathBuf,
    last: Mutex<Option<Reading>>,
}

/// The last reading of a recorded file, valid while its time and length hold.
struct Reading {
    modified: SystemTime,
    len: u64,
    tagged: Arc<Tagged>,
}

impl RecordedFile {
    /// The document text (bare, as recorded) and its tag, re-read if the file changed.
    fn current(&self) -> Result<Arc<Tagged>> {
        let unreadable = || format!("cannot read {}", self.path.display());
        let metadata = std::fs::metadata(&self.path).with_context(unreadable)?;
        let (modified, len) = (metadata.modified()?, metadata.len());
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reading) = last.as_ref()
            && (reading.modified, reading.len) == (modified, len)
        {
            return Ok(reading.tagged.clone());
        }
        let bytes = crate::operator_file::read_file(
            &self.path,
            "resources file",
            crate::operator_file::RESOURCES_BYTES,
        )?;
        let document = resources_text(&bytes).with_context(|| format!("{}", self.path.display()))?;
        let tag = fingerprint::of_document(&document).unwrap_or_default();
        let tagged = Arc::new(Tagged { document, tag });
        *last = Some(Reading {
            modified,
            len,
            tagged: tagged.clone(),
        });
        Ok(tagged)
    }
}
