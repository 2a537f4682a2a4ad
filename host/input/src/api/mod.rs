//! Incus-compatible wire types: `api.Resources` and the REST envelopes.

pub mod cpu_summary;
pub mod devices;
pub mod envelope;
pub mod resources;

pub use resources::Resources;
