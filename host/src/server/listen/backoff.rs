//! What the accept loop does when `accept` fails (a full fd table, above
//! all): it waits before trying again, longer each time up to a second, and
//! logs the first failure of a run of them, not each one. Without the wait
//! the loop spins on the error at full speed, and the log fills the disk.

use std::time::Duration;

#[derive(Default)]
pub struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const LONGEST: Duration = Duration::from_secs(1);

    pub async fn wait(&mut self, error: &std::io::Error) {
        if self.failures == 0 {
            tracing::warn!("accept failed: {error}; waiting before accepting again");
        }
        self.failures = self.failures.saturating_add(1);
        tokio::time::sleep(self.delay()).await;
    }

    fn delay(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(7);
        (Self::FIRST * 2u32.pow(doublings)).min(Self::LONGEST)
    }

    pub fn reset(&mut self) {
        if self.failures > 0 {
            tracing::info!("accepting again after {} failed accepts", self.failures);
        }
        self.failures = 0;
    }
}
