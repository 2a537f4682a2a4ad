//! The policy a long-running `serve` answers with, swapped while it runs.
//!
//! A new policy is loaded and checked (`describe`) beside the active one and
//! then swapped in atomically; a request holds the `Arc` of the policy it
//! started with, so in-flight requests finish on it. A policy that fails to
//! load or check leaves the active one serving, and the failure is logged
//! and counted. Reloads come from the policy file changing (polled) and from
//! SIGHUP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{Loader, PolicyRuntime, embedded};
use crate::model::PolicyInfo;
use crate::runtime::capabilities::Capabilities;
use crate::util::clock::now_ms;

/// A loaded, checked policy.
pub struct ActivePolicy {
    pub runtime: Arc<PolicyRuntime>,
    pub info: PolicyInfo,
    pub loaded_at_ms: u64,
}

pub struct PolicySlot {
    /// `--policy` as given: an embedded name or a file, reloaded from there.
    choice: Option<String>,
    loader: Loader,
    capabilities: Arc<Capabilities>,
    active: RwLock<Arc<ActivePolicy>>,
    /// Requests the active policy failed (trap, budget, deadline, bad answer).
    call_failures: AtomicU64,
    /// Calls started on the policies this slot replaced.
    replaced_calls: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

/// The slot's counters since `serve` started, for its metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlotCounts {
    pub calls: u64,
    pub call_failures: u64,
    pub reloads: u64,
    pub reload_failures: u64,
}

/// How often the policy file is checked for a change.
const POLL: Duration = Duration::from_millis(500);

impl PolicySlot {
    pub async fn load(
        choice: Option<String>,
        loader: Loader,
        capabilities: Arc<Capabilities>,
    ) -> Result<PolicySlot> {
        let active = load_checked(choice.clone(), loader.clone(), capabilities.clone()).await?;
        Ok(PolicySlot {
            choice,
            loader,
            capabilities,
            active: RwLock::new(Arc::new(active)),
            call_failures: AtomicU64::new(0),
            replaced_calls: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        })
    }

    /// The policy to start a request with.
    pub fn current(&self) -> Arc<ActivePolicy> {
        self.active.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn count_failure(&self) {
        self.call_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Loads the policy again from where it came from and swaps it in if it
    /// loads and describes itself; otherwise the active one stays.
    pub async fn reload(&self, why: &str) -> Result<()> {
        match load_checked(
            self.choice.clone(),
            self.loader.clone(),
            self.capabilities.clone(),
        )
        .await
        {
            Ok(fresh) => {
                tracing::warn!(
                    "policy reloaded ({why}): {} {} ({})",
                    fresh.info.name,
                    fresh.info.version,
                    fresh.runtime.contract()
                );
                let replaced = std::mem::replace(
                    &mut *self.active.write().unwrap_or_else(|e| e.into_inner()),
                    Arc::new(fresh),
                );
                self.replaced_calls
                    .fetch_add(replaced.runtime.calls(), Ordering::Relaxed);
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("policy not reloaded ({why}), the active one keeps serving: {error:#}");
                Err(error)
            }
        }
    }

    /// Calls, failures, reloads and refused reloads since `serve` started.
    pub fn counts(&self) -> SlotCounts {
        SlotCounts {
            calls: self.replaced_calls.load(Ordering::Relaxed) + self.current().runtime.calls(),
            call_failures: self.call_failures.load(Ordering::Relaxed),
            reloads: self.reloads.load(Ordering::Relaxed),
            reload_failures: self.reload_failures.load(Ordering::Relaxed),
        }
    }

    /// What `GET /1.0` says about the policy, so a swap is observable.
    pub fn status(&self) -> Value {
        let active = self.current();
        json!({
            "name": active.info.name,
            "version": active.info.version,
            "contract": active.runtime.contract().to_string(),
            "origin": active.runtime.origin(),
            "loaded_at_ms": active.loaded_at_ms,
            "reloads": self.reloads.load(Ordering::Relaxed),
            "reload_failures": self.reload_failures.load(Ordering::Relaxed),
            "call_failures": self.call_failures.load(Ordering::Relaxed),
        })
    }

    /// Reloads on SIGHUP, and when the policy file (if it is one) changes.
    pub fn watch(self: &Arc<Self>) -> Result<()> {
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")?;
        let slot = self.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let _ = slot.reload("SIGHUP").await;
            }
        });
        let file = self.choice.clone().filter(|choice| !embedded::is_name(choice));
        if let Some(file) = file {
            let slot = self.clone();
            tokio::spawn(async move {
                let mut seen = stamp(&file);
                loop {
                    tokio::time::sleep(POLL).await;
                    let now = stamp(&file);
                    if now != seen {
                        seen = now;
                        let _ = slot.reload("the policy file changed").await;
                    }
                }
            });
        }
        Ok(())
    }
}

/// What tells a replaced file from the one loaded: inode, size, modification time.
fn stamp(path: &str) -> Option<(u64, u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.ino(), metadata.len(), metadata.modified().ok()?))
}

/// Compiles (off the async threads) and lets the policy describe itself.
async fn load_checked(
    choice: Option<String>,
    loader: Loader,
    capabilities: Arc<Capabilities>,
) -> Result<ActivePolicy> {
    let runtime = tokio::task::spawn_blocking(move || loader.load(choice.as_deref()))
        .await
        .context("policy loader")??;
    let info = runtime.describe(capabilities.clone()).await?;
    crate::model::check_settings(&info, runtime.origin(), capabilities.config.keys())?;
    Ok(ActivePolicy {
        runtime: Arc::new(runtime),
        info,
        loaded_at_ms: now_ms(),
    })
}
