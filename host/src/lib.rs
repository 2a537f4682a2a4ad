//! nodecache: what hardware each node has, and which CPU flags a VM may use
//! so it can live-migrate to any node. The cache policy and the flag
//! intersection run as a sandboxed WebAssembly component (see `runtime`).
//!
//! What nodecache reads from outside (Incus's documents, the cluster file,
//! cache entries, tool output) is parsed in `nodecache-input` (host/input),
//! a crate without the policy runtime that the fuzz targets build alone.
//! Its modules are re-exported here under their own names.

pub use nodecache_input::{
    api, canonical_json, cluster, digest, file_read, format, membership, model, node_name, operator_file,
    private_path, store, xdg,
};

pub mod capabilities;
pub mod cli;
pub mod clock;
pub mod cluster_api;
pub mod cpu_flags;
pub mod fingerprint;
pub mod flags;
pub mod gather;
pub mod identity;
pub mod incus_group;
pub mod incus_members;
pub mod listen;
pub mod probe;
pub mod remote;
pub mod resources_source;
pub mod runtime;
pub mod serve;
pub mod singleflight;
pub mod tls;
pub mod trust;
