//! What one machine has, and what its CPU flags mean: the probe that reads
//! this machine into Incus's document, the hardware fingerprint that says
//! when it changed, and the x86 flag knowledge every layer above uses
//! (one name table, the x86-64 levels, the features fleets lose).

pub mod fingerprint;
pub(crate) mod fragile;
pub(crate) mod level;
pub(crate) mod names;
pub mod probe;
