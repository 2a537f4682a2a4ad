//! A cache entry file as a crash, a disk or another writer may leave it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodecache_input::api::cpu_summary;
use nodecache_input::node_name::NodeName;
use nodecache_input::store::parse_entry;

fuzz_target!(|bytes: &[u8]| {
    let node = NodeName::parse("n1").unwrap();
    if let Ok(entry) = parse_entry(bytes.to_vec(), &node, 1 << 50) {
        assert!(cpu_summary::is_well_formed(&entry.summary), "{:?}", entry.summary);
    }
});
