//! Requests for the same thing while it is under way share its one answer:
//! concurrent fetches of a member, concurrent `cpu-flags` of an architecture.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

pub struct SingleFlight<K, V: Clone> {
    in_flight: Mutex<HashMap<K, Shared<BoxFuture<'static, V>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            in_flight: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> SingleFlight<K, V> {
    /// The answer for `key`: the one under way if there is one, else `start()`'s.
    /// Once it is done, the next request for `key` starts anew.
    pub async fn run(&self, key: K, start: impl FnOnce() -> BoxFuture<'static, V>) -> V {
        let shared = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            in_flight
                .entry(key.clone())
                .or_insert_with(|| start().shared())
                .clone()
        };
        let result = shared.clone().await;
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight.get(&key).is_some_and(|current| current.ptr_eq(&shared)) {
            in_flight.remove(&key);
        }
        result
    }
}

/// Boxes a future for [`SingleFlight::run`].
pub fn boxed<V>(future: impl std::future::Future<Output = V> + Send + 'static) -> BoxFuture<'static, V> {
    future.boxed()
}
