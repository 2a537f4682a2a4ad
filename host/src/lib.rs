//! nodecache: what hardware each node has, and which CPU flags a VM may use
//! so it can live-migrate to any node. The cache policy and the flag
//! intersection run as a sandboxed WebAssembly component (see `runtime`).

pub mod api;
pub mod canonical_json;
pub mod capabilities;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod cluster_api;
pub mod cpu_flags;
pub mod digest;
pub mod file_read;
pub mod fingerprint;
pub mod flags;
pub mod format;
pub mod gather;
pub mod identity;
pub mod incus_group;
pub mod incus_members;
pub mod listen;
pub mod membership;
pub mod model;
pub mod node_name;
pub mod operator_file;
pub mod private_path;
pub mod probe;
pub mod remote;
pub mod resources_source;
pub mod runtime;
pub mod serve;
pub mod singleflight;
pub mod store;
pub mod tls;
pub mod trust;
pub mod xdg;
