//! pci.ids and usb.ids, as the distribution (or anyone who can write
//! /usr/share/misc) ships them; then lookups in what was read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodecache_input::ids::IdDatabase;

fuzz_target!(|text: &str| {
    let names = IdDatabase::from_text(text);
    let _ = names.device("10de", "1287");
    let _ = names.device("1af4", "1000");
    let _ = names.class(3, 1);
    let _ = names.class(0xff, 0xff);
});
