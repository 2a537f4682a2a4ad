//! `nvidia-container-cli info --csv` output, as any installed driver
//! tool may print it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|csv: &str| {
    let _ = nodecache_input::tool_output::nvidia::parse_container_cli(csv);
});
