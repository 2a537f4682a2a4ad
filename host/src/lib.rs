//! nodecache: what hardware each node has, and which CPU flags a VM may use
//! so it can live-migrate to any node. The cache policy and the flag
//! intersection run as a sandboxed WebAssembly component (see `runtime`).
//!
//! # Layout
//!
//! Each folder is one job; imports run down this list, never up it
//! (`scripts/module-graph` checks it):
//!
//! - [`cli`]: the `nodecache` command line: arguments, one resolved
//!   context, the handlers, and printing.
//! - [`server`]: `nodecache serve`: Incus's API over mutual TLS, the
//!   listener and its limits, the trust store, graceful shutdown.
//! - [`query`]: one cluster question, asked the same way by the CLI and
//!   `serve`: a typed request in, an immutable report and its rendering out.
//! - [`outputs`]: what operators paste: QEMU, libvirt and Incus forms,
//!   explanations, placement, the Incus cluster group keys.
//! - [`cluster`]: the members asked through the policy at once, the report
//!   of what they share, Incus's member list, `serve`'s shared cluster.
//! - [`runtime`]: the policy as a wasmtime component, and the capabilities
//!   the host lends it (probing, fetching, the cache, the clock).
//! - [`net`]: mutual TLS, this node's identity, the HTTPS client for members.
//! - [`machine`]: what one machine has (the probe, its fingerprint) and
//!   what x86 flags mean (names, x86-64 levels, fragile features).
//! - [`util`]: small shared tools (the clock, single-flight).
//!
//! Below them all, what nodecache reads from outside (Incus's documents,
//! the cluster file, cache entries, tool output) is parsed in
//! `nodecache-input` (host/input), a crate without the policy runtime that
//! the fuzz targets build alone. Its modules are re-exported here under
//! their own names.

pub use nodecache_input::{
    api, baselines, canonical_json, cluster_file, digest, file_read, format, hardware_diff, history, model,
    node_name, operator_file, private_path, store, xdg,
};

pub mod cli;
pub mod cluster;
pub mod machine;
pub mod net;
pub(crate) mod outputs;
pub(crate) mod query;
pub mod runtime;
pub(crate) mod server;
pub mod util;
