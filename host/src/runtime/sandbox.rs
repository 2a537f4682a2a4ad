//! The sandbox each plugin instance runs in: WASI with no files, sockets,
//! environment or real clock; WASI's random interfaces drawing from the
//! call's own generator (the host's `random-u64` source, seeded per node when
//! the operator asks for repeatable runs); a memory cap; and a fuel budget so
//! a runaway policy traps instead of hanging the host.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::lent::Lent;
use crate::model::HostError;
use crate::runtime::capabilities::{Capabilities, Grant};

/// Per-call resource limits of a plugin instance.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory a single instance may grow to.
    pub memory_bytes: usize,
    /// Guest instructions (roughly) a single call may execute.
    pub fuel: u64,
    /// Wall-clock bound on a whole call, host imports included.
    pub call_deadline: Duration,
}

impl Limits {
    /// The default limits, with a call deadline that leaves room for what a
    /// call may wait on the network: a fetch, a conditional refetch and a
    /// fallback, each up to the members' `fetch_deadline`. A cluster file's
    /// `deadline = "150s"` must not be cut short by the call's own 120 s.
    pub fn for_fetch_deadline(fetch_deadline: Duration) -> Limits {
        let defaults = Limits::default();
        Limits {
            call_deadline: defaults
                .call_deadline
                .max(fetch_deadline.saturating_mul(3) + Duration::from_secs(10)),
            ..defaults
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            fuel: 2_000_000_000,
            call_deadline: Duration::from_secs(120),
        }
    }
}

/// How often a running guest yields to tokio, so deadlines can fire.
const FUEL_YIELD_INTERVAL: u64 = 10_000_000;

pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    pub capabilities: Arc<Capabilities>,
    /// What this call may touch.
    pub grant: Grant,
    /// The call's generator behind `random-u64`.
    random: StdRng,
    /// Host calls that do work (probe, fetch, cache, log) made so far.
    host_calls: u32,
    /// The largest document this policy can be handed back from the cache.
    cacheable_bytes: usize,
    /// Every document lent in this call, to check the policy's answer against.
    pub lent: Lent,
}

/// Working host calls one policy call may make. Fuel counts the guest's
/// instructions, not the host's work: without a count, a policy calling
/// `probe-local` in a loop would run until the call's deadline. A policy
/// needs a handful per node.
pub const HOST_CALL_BUDGET: u32 = 100;

impl PluginState {
    pub fn new(capabilities: Arc<Capabilities>, grant: Grant, limits: &Limits) -> Self {
        let seed = capabilities.seed_for(&grant);
        let wasi = WasiCtxBuilder::new()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(StoppedClock)
            .monotonic_clock(StoppedClock)
            .secure_random(StdRng::seed_from_u64(seed ^ 0x5ec))
            .insecure_random(StdRng::seed_from_u64(seed ^ 0x1e5))
            .insecure_random_seed(u128::from(seed))
            .build();
        PluginState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(16)
                .build(),
            capabilities,
            grant,
            random: StdRng::seed_from_u64(seed),
            host_calls: 0,
            cacheable_bytes: limits.memory_bytes / 4,
            lent: Lent::default(),
        }
    }

    /// Refuses to cache a document the policy could not hold when it reads
    /// it back: a cache read, the copy it answers with and its own working
    /// copies must fit its memory cap, so an entry may take a quarter of it
    /// (16 MiB of the default 64 MiB, the default response cap too). An
    /// entry larger than that would trap every later call for its node.
    pub fn check_cacheable(&self, document: &str) -> Result<(), HostError> {
        if document.len() > self.cacheable_bytes {
            return Err(HostError::Storage(format!(
                "a document of {} bytes is larger than this policy can hold when it reads it back \
                 ({} bytes, a quarter of its memory cap): not cached",
                document.len(),
                self.cacheable_bytes
            )));
        }
        Ok(())
    }

    /// Counts one working host call, or refuses it once the call's budget
    /// is spent (the policy gets an error, and its instruction budget ends a
    /// loop that ignores it).
    pub fn charge(&mut self, import: &str) -> Result<(), HostError> {
        self.host_calls = self.host_calls.saturating_add(1);
        if self.host_calls > HOST_CALL_BUDGET {
            return Err(HostError::NotGranted(format!(
                "{import}: this call has used its {HOST_CALL_BUDGET} host calls"
            )));
        }
        Ok(())
    }

    pub fn random_u64(&mut self) -> u64 {
        self.random.next_u64()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// WASI's clocks read zero: the policy's only time is the host's `now-ms` import.
struct StoppedClock;

impl HostWallClock for StoppedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

pub fn add_wasi(linker: &mut Linker<PluginState>) -> Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker).map_err(anyhow::Error::from)
}

pub fn apply_limits(store: &mut Store<PluginState>, limits: &Limits) -> Result<()> {
    store.limiter(|state| &mut state.limits);
    store.set_fuel(limits.fuel).map_err(anyhow::Error::from)?;
    store
        .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
        .map_err(anyhow::Error::from)?;
    Ok(())
}

/// Turns a wasmtime error into one that says what limit or trap stopped the guest.
pub fn describe_trap(error: wasmtime::Error, store: &Store<PluginState>) -> anyhow::Error {
    let error = anyhow::Error::from(error);
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => error.context("the policy used up its instruction budget"),
        Some(trap) => {
            let fuel_left = store.get_fuel().unwrap_or(0);
            let context = format!("the policy trapped ({trap}; {fuel_left} fuel left)");
            error.context(context)
        }
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call's state over an empty cache, lent nothing.
    fn state_with(limits: &Limits) -> (tempfile::TempDir, PluginState) {
        let dir = tempfile::tempdir().unwrap();
        let capabilities = Arc::new(Capabilities::new(
            CacheStore::new(dir.path()),
            Default::default(),
            RemoteFetcher::default(),
        ));
        let state = PluginState::new(capabilities, Grant::none(), limits);
        (dir, state)
    }

    #[test]
    fn a_document_too_large_to_read_back_is_not_cached() {
        let limits = Limits {
            memory_bytes: 4096,
            ..Limits::default()
        };
        let (_dir, state) = state_with(&limits);
        assert!(state.check_cacheable(&"x".repeat(1024)).is_ok());
        let refused = state.check_cacheable(&"x".repeat(1025)).unwrap_err().to_string();
        assert!(
            refused.contains("1025 bytes") && refused.contains("not cached"),
            "{refused}"
        );
    }

    #[test]
    fn a_long_fetch_deadline_lengthens_the_call_deadline() {
        assert_eq!(
            Limits::for_fetch_deadline(Duration::from_secs(10)).call_deadline,
            Duration::from_secs(120)
        );
        assert_eq!(
            Limits::for_fetch_deadline(Duration::from_secs(150)).call_deadline,
            Duration::from_secs(460)
        );
    }
    use crate::net::remote::RemoteFetcher;
    use crate::store::CacheStore;
}
