//! /proc/cpuinfo as a kernel (or a container's lxcfs) may print it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = nodecache_input::cpuinfo::parse(text);
});
