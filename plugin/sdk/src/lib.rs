//! The nodecache policy SDK: everything a cache policy needs besides its own
//! decisions.
//!
//! Layout:
//! - [`types`]: what a policy and the host exchange, as plain Rust types, the
//!   same whichever contract version the component is built against.
//! - [`Host`]: the host's whole interface (probe, fetch, cache, clock,
//!   randomness, log, config) as a trait, so policy logic is plain functions
//!   that unit tests drive with [`FakeHost`], natively or under wasmtime.
//! - [`Policy`]: the three exports; `cluster_cpu_flags` defaults to
//!   [`intersect::cluster_cpu_flags`].
//! - [`config`]: durations and numbers read from the operator's settings;
//!   [`steps`]: the cache read, refresh and stale fallback most policies share.
//! - `v0_2` / `v0_1`: the generated bindings of one contract version each
//!   (feature `contract-0-2`, the default, or `contract-0-1`), the
//!   [`Host`] implementation over their imports, and the macros
//!   `export_policy!` / `export_policy_v0_1!` that make a type
//!   implementing [`Policy`] the component's export.
//!
//! Every public item is documented (`missing_docs` is denied), and the
//! docs build without a broken link (`cargo doc` with `-D warnings`, run
//! by `scripts/test`).

#![deny(missing_docs)]

pub mod config;
pub mod fake_host;
pub mod host;
pub mod intersect;
pub mod policy;
pub mod steps;
pub mod types;

#[cfg(feature = "contract-0-1")]
pub mod v0_1;
#[cfg(feature = "contract-0-2")]
pub mod v0_2;

pub use fake_host::FakeHost;
pub use host::{Host, describe_error};
pub use policy::Policy;
pub use types::*;
