//! Incus's `/1.0/cluster/members?recursion=1` answer, as any server at the
//! cluster file's `incus = …` address may send it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let _ = nodecache_input::incus_members::parse_members(body);
});
