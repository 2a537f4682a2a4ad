//! `lshw -json` output, as any installed lshw (or whatever sits at its
//! path) may print it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|json: &str| {
    let _ = nodecache_input::tool_output::lshw::parse(json);
});
