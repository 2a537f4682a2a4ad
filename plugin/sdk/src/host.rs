//! The host's interface as a trait: the component implements it over its
//! imports (`v0_2::ImportedHost`), unit tests over [`crate::FakeHost`].

use crate::types::*;

/// Everything a policy may ask of the host: every import of contract 0.2.
/// Under contract 0.1 the 0.2-only calls degrade as `v0_1` documents.
pub trait Host {
    /// This machine's resources, probed now, with its fingerprint as validator.
    fn probe_local(&self) -> Result<Document, HostError>;
    /// This machine's hardware fingerprint, without a probe.
    fn local_fingerprint(&self) -> Result<String, HostError>;
    /// A member's resources, fetched now.
    fn fetch_remote(&self, node: &Member) -> Result<Document, HostError>;
    /// A member's resources unless its hardware still matches `validator`.
    fn fetch_remote_if_changed(&self, node: &Member, validator: &str) -> Result<Fetched, HostError>;
    /// The node's cache entry, if there is one (`None`: a miss).
    fn cache_read(&self, node: &str) -> Result<Option<CacheEntry>, CacheFault>;
    /// Replaces the node's entry with `document` (atomically), age 0.
    fn cache_write(&self, node: &str, document: &Document) -> Result<(), HostError>;
    /// Restarts an existing entry's age at 0 without rewriting its document.
    fn cache_restamp(&self, node: &str) -> Result<(), HostError>;
    /// Removes the node's entry (a missing one is not an error).
    fn cache_remove(&self, node: &str) -> Result<(), HostError>;
    /// Milliseconds since the Unix epoch, by the host's clock.
    fn now_ms(&self) -> u64;
    /// 64 random bits from the host's (possibly seeded) generator.
    fn random_u64(&self) -> u64;
    /// A line in the host's log, under the policy's name.
    fn log(&self, level: LogLevel, message: &str);
    /// An operator-set parameter.
    fn config(&self, key: &str) -> Option<String>;
}

/// One line naming the kind of failure and its detail, for logs and verdicts.
pub fn describe_error(error: &HostError) -> String {
    error.to_string()
}
