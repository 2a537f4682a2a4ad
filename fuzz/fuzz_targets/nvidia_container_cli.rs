//! `nvidia-container-cli info --csv` output, as any installed driver
//! tool may print it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|csv: &str| {
    let _ = nodecache::probe::devices::nvidia::parse_container_cli(csv);
});
