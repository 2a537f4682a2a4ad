//! What nodecache reads from outside, and the types it reads it into. Every
//! parser here takes bytes that a peer, a tool, an operator or the disk
//! gave, bounds them and names what is wrong; none panics (each has a fuzz
//! target in `fuzz/`). The host (`nodecache`) re-exports these modules under
//! the same names, so `nodecache::api` is this crate's `api`.
//!
//! - Incus's document and types: [`api`] (the resources document, its CPU
//!   summary, the envelope), [`model`] (what a policy is lent and returns),
//!   [`document_fingerprint`], [`canonical_json`];
//! - the cluster: [`cluster_file`] (the cluster file and its members),
//!   [`incus_members`] (Incus's member list), [`node_name`];
//! - the cache on disk: [`store`], read with [`file_read`]'s bounds, kept
//!   private ([`private_path`]) in the [`xdg`] directories; each node's
//!   hardware [`history`] beside it, with its [`hardware_diff`]s, and the
//!   cluster's last common sets ([`baselines`]);
//! - the machine and its tools: [`cpuinfo`], [`ids`] (pci.ids, usb.ids),
//!   [`tool_output`] (lshw, nvidia-container-cli);
//! - operators' files: [`operator_file`], [`pem`] (certificates and keys);
//! - shared: [`digest`], [`format`] (text made fit for a terminal).

pub mod api;
pub mod baselines;
pub mod canonical_json;
// The members (`Cluster`), re-exported by `cluster_file`, whose part they are.
mod cluster;
pub mod cluster_file;
pub mod cpuinfo;
pub mod digest;
pub mod document_fingerprint;
pub mod file_read;
pub mod format;
pub mod hardware_diff;
pub mod history;
pub mod ids;
pub mod incus_members;
pub mod model;
pub mod node_name;
pub mod operator_file;
pub mod pem;
pub mod private_path;
pub mod store;
pub mod tool_output;
pub mod xdg;
