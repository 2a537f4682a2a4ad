//! Whether a connection is doing anything, counted in requests rather than
//! bytes. A byte timer is reset by any traffic, so an HTTP/2 client sending
//! PINGs (or SETTINGS, or WINDOW_UPDATEs) and never a request would hold
//! its connection forever; this one is not.

use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use tokio::sync::Notify;
use tokio::time::Instant;

pub struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    in_flight: usize,
    started: u64,
    /// When the connection opened, or its last request ended.
    quiet_since: Instant,
}

/// One request in progress; ends it on drop (answered or abandoned).
struct InFlight(Arc<Activity>);

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(State {
                in_flight: 0,
                started: 0,
                quiet_since: Instant::now(),
            }),
            changed: Notify::new(),
        })
    }

    /// `app`, with each of its requests counted here.
    pub fn track(self: Arc<Activity>, app: Router) -> Router {
        app.layer(axum::middleware::from_fn(move |request: Request, next: Next| {
            let in_flight = self.clone().begin();
            async move {
                let response = next.run(request).await;
                drop(in_flight);
                response
            }
        }))
    }

    fn begin(self: Arc<Activity>) -> InFlight {
        self.update(|state| {
            state.in_flight += 1;
            state.started += 1;
        });
        InFlight(self)
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        self.changed.notify_waiters();
    }

    /// Returns once no request has been in progress for `idle` (or, before
    /// the first request, for `first`); never while one is in progress.
    pub async fn quiet_too_long(&self, first: Duration, idle: Duration) {
        loop {
            let mut changed = pin!(self.changed.notified());
            // Registered before the state is read, so no change is missed.
            changed.as_mut().enable();
            let deadline = {
                let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let allowed = if state.started == 0 { first } else { idle };
                (state.in_flight == 0).then(|| state.quiet_since + allowed)
            };
            match deadline {
                None => changed.await,
                Some(deadline) => tokio::select! {
                    () = changed => {}
                    () = tokio::time::sleep_until(deadline) => return,
                },
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|state| {
            state.in_flight -= 1;
            state.quiet_since = Instant::now();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(120);

    /// Under tokio's paused clock, so the deadlines are exact, not raced.
    #[tokio::test(start_paused = true)]
    async fn a_connection_is_quiet_after_its_deadline_and_never_mid_request() {
        let activity = Activity::new();
        let opened = Instant::now();
        activity.quiet_too_long(FIRST, IDLE).await;
        assert_eq!(opened.elapsed(), FIRST, "no first request: the header deadline");

        let activity = Activity::new();
        let request = activity.clone().begin();
        let watcher = tokio::spawn({
            let activity = activity.clone();
            async move { activity.quiet_too_long(FIRST, IDLE).await }
        });
        tokio::time::sleep(IDLE * 3).await;
        assert!(!watcher.is_finished(), "a request in progress is never quiet");
        let ended = Instant::now();
        drop(request);
        watcher.await.unwrap();
        assert_eq!(ended.elapsed(), IDLE, "after a request: the idle deadline");
    }
}
