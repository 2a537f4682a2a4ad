//! The host's clock: cache ages, fetch times and what policies read as `now-ms`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch by this machine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
