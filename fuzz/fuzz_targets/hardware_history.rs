//! A node's hardware history file as a crash or another writer may leave
//! it, and the diff of two documents a member may send.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodecache_input::hardware_diff::HardwareDiff;
use nodecache_input::history;
use nodecache_input::node_name::NodeName;

fuzz_target!(|bytes: &[u8]| {
    let node = NodeName::parse("n1").unwrap();
    if let Ok(records) = history::parse(bytes, &node) {
        for record in records {
            let _ = record.diff.summary();
        }
    }
    // Two documents, split at the first NUL: the diff and its line never panic.
    let text = String::from_utf8_lossy(bytes);
    let (old, new) = text.split_once('\0').unwrap_or((&text, "{}"));
    let _ = HardwareDiff::between(old, new).summary();
});
