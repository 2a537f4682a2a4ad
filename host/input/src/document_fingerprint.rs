//! A resources document's fingerprint: its non-volatile fields, digested,
//! for members that send no `ETag` (a real Incus). What changes with load
//! (memory in use, load averages, clock speeds, link state) is left out.
//! This machine's own fingerprint, read from /proc and /sys, is the host's
//! `fingerprint::local`; both use one digest.

/// Hex of the first 128 bits of SHA-256: ample to tell hardware apart.
pub fn digest(bytes: &[u8]) -> String {
    crate::digest::hex(&crate::digest::sha256(bytes)[..16])
}

/// Fields that change with load or link state, not with hardware.
const VOLATILE: &[&str] = &[
    "load",
    "used",
    "free",
    "hugepages_used",
    "hugepages_free",
    "frequency",
    "processes",
    "link_detected",
    "link_speed",
    "link_duplex",
];

/// The fingerprint of a resources document's hardware identity; `None` when
/// it is not JSON.
pub fn of_document(document: &str) -> Option<String> {
    crate::canonical_json::without(document, VOLATILE).map(|canonical| digest(&canonical))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The recursive formatter fingerprints were first made with (a
    /// `Value`, volatile fields stripped, keys sorted by hand): today's
    /// fingerprint must be the very same, or every stored validator would
    /// change with an upgrade.
    fn canonical_json_as_first_written(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let fields: Vec<String> = keys
                    .into_iter()
                    .map(|key| {
                        format!(
                            "{}:{}",
                            Value::String(key.clone()),
                            canonical_json_as_first_written(&map[key])
                        )
                    })
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
            Value::Array(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(canonical_json_as_first_written)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            scalar => scalar.to_string(),
        }
    }

    fn strip_volatile(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|key, _| !VOLATILE.contains(&key.as_str()));
                map.values_mut().for_each(strip_volatile);
            }
            Value::Array(items) => items.iter_mut().for_each(strip_volatile),
            _ => {}
        }
    }

    #[test]
    fn the_fingerprint_is_unchanged() {
        for text in [
            include_str!("../../../tests/fixtures/incus-6.0.4-resources.envelope.json"),
            include_str!("../../../tests/fixtures/lxd-5.0.2-resources.envelope.json"),
            r#"{"b":[1,2.5,-3e10,"x\"y\u0001",null,true],"a":{"\u00e9":{}}}"#,
        ] {
            let mut value: Value = serde_json::from_str(text).unwrap();
            strip_volatile(&mut value);
            assert_eq!(
                of_document(text).unwrap(),
                digest(canonical_json_as_first_written(&value).as_bytes())
            );
        }
    }

    #[test]
    fn load_and_memory_in_use_do_not_change_a_documents_fingerprint() {
        let a = r#"{"cpu":{"architecture":"x86_64","sockets":[{"frequency":2100,"cores":[{"flags":["sse2"]}]}]},
                   "memory":{"used":100,"total":1000},"load":{"Average1Min":0.5}}"#;
        let b = r#"{"load":{"Average1Min":3.5},"memory":{"total":1000,"used":900},
                   "cpu":{"sockets":[{"cores":[{"flags":["sse2"]}],"frequency":3400}],"architecture":"x86_64"}}"#;
        assert_eq!(of_document(a), of_document(b));
    }

    #[test]
    fn flags_and_memory_size_do() {
        let base = r#"{"cpu":{"sockets":[{"cores":[{"flags":["sse2"]}]}]},"memory":{"total":1000}}"#;
        let flags = r#"{"cpu":{"sockets":[{"cores":[{"flags":["sse2","avx"]}]}]},"memory":{"total":1000}}"#;
        let memory = r#"{"cpu":{"sockets":[{"cores":[{"flags":["sse2"]}]}]},"memory":{"total":2000}}"#;
        assert_ne!(of_document(base), of_document(flags));
        assert_ne!(of_document(base), of_document(memory));
        assert_eq!(of_document("not json"), None);
    }
}
