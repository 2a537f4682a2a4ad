//! A member's answer: an Incus envelope or a bare `api.Resources` document,
//! then everything the host makes of it (summary, fingerprint, typed view).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodecache::api::{cpu_summary, envelope};

fuzz_target!(|body: &[u8]| {
    let _ = envelope::unwrap_resources(body);
    if let Ok((_, summary)) = envelope::resources_document(body) {
        assert!(cpu_summary::is_well_formed(&summary), "{summary:?}");
    }
    if let Ok(text) = envelope::resources_text(body) {
        if let Ok(summary) = cpu_summary::from_document(&text) {
            assert!(cpu_summary::is_well_formed(&summary), "{summary:?}");
        }
        let _ = nodecache::fingerprint::of_document(&text);
    }
});
