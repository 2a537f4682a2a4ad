//! A member's answer: an Incus envelope or a bare `api.Resources` document,
//! then everything the host makes of it (summary, fingerprint, typed view).
//! The canonical form fingerprints digest is checked against the `Value`
//! it replaced: the same bytes wherever the `Value` could be made, and
//! `None` only where it could not. (A number too large for an f64 inside a
//! left-out field fails the `Value`, not the canonical form: it is skipped.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodecache_input::api::{cpu_summary, envelope};
use serde_json::Value;

const LEAVE_OUT: &[&str] = &["used", "load", "frequency"];

fuzz_target!(|body: &[u8]| {
    let _ = envelope::unwrap_resources(body);
    if let Ok((_, summary)) = envelope::resources_document(body) {
        assert!(cpu_summary::is_well_formed(&summary), "{summary:?}");
    }
    if let Ok(text) = envelope::resources_text(body) {
        if let Ok(summary) = cpu_summary::from_document(&text) {
            assert!(cpu_summary::is_well_formed(&summary), "{summary:?}");
        }
        let _ = nodecache_input::document_fingerprint::of_document(&text);
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let canonical = nodecache_input::canonical_json::without(text, LEAVE_OUT);
        match through_value(text) {
            Some(expected) => assert_eq!(canonical, Some(expected), "{text}"),
            None => assert!(canonical.is_none() || text.contains(['e', 'E']), "{text}"),
        }
    }
});

fn through_value(text: &str) -> Option<Vec<u8>> {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|key, _| !LEAVE_OUT.contains(&key.as_str()));
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value: Value = serde_json::from_str(text).ok()?;
    strip(&mut value);
    serde_json::to_vec(&value).ok()
}
