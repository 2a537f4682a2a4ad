//! What outside tools print, read into Incus's types: the parsing half of
//! each tool the probe runs (running it, with its time limit, stays in the
//! host's `probe::devices`).

pub mod lshw;
pub mod nvidia;
