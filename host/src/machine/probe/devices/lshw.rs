//! The `system` section from `lshw -json` on machines without a DMI table
//! in /sys (many VMs, Arm boards), as Incus falls back to it: the machine's
//! own identity, the `Motherboard` bus's and that bus's firmware.
//!
//! lshw walks the whole machine (about 0.1 s) for facts that hold until
//! reboot, so a process asks it once and keeps the answer.

use std::path::Path;
use std::sync::OnceLock;

pub use nodecache_input::tool_output::lshw::parse;

use super::tool;
use crate::api::devices::System;

/// What lshw says of this machine (kind left empty), asked once per process.
pub fn local(program: &Path) -> Option<System> {
    static ANSWER: OnceLock<Option<System>> = OnceLock::new();
    ANSWER
        .get_or_init(|| {
            let json = tool::output(program, &["-json"], tool::TOOL_LIMIT)?;
            parse(&json)
                .inspect_err(|e| tracing::debug!("lshw -json: {e}"))
                .ok()
        })
        .clone()
}
