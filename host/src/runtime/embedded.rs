//! The shelf: policies built from `plugin/` by `build.rs` and embedded in
//! the binary, so `--policy NAME` picks one without a file.

use anyhow::{Result, anyhow};

/// A policy built into the binary.
pub struct EmbeddedPolicy {
    pub name: &'static str,
    pub component: &'static [u8],
}

/// The policy used when none is chosen.
pub const DEFAULT: &str = "default";

// `SHELF: &[EmbeddedPolicy]`, written by build.rs from the crates it built.
include!(concat!(env!("OUT_DIR"), "/embedded_policies.rs"));

pub fn all() -> &'static [EmbeddedPolicy] {
    SHELF
}

/// A name, not a path: no `/` and no `.wasm`.
pub fn is_name(choice: &str) -> bool {
    !choice.contains('/') && !choice.ends_with(".wasm")
}

pub fn find(name: &str) -> Result<&'static EmbeddedPolicy> {
    SHELF.iter().find(|policy| policy.name == name).ok_or_else(|| {
        let names: Vec<&str> = SHELF.iter().map(|policy| policy.name).collect();
        anyhow!(
            "no embedded policy is named {name:?} (embedded: {}; a file needs a / or .wasm)",
            names.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_shelf_is_embedded() {
        let names: Vec<&str> = all().iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            ["default", "revalidate", "early-refresh", "always-fresh", "pinned"]
        );
        assert!(all().iter().all(|p| p.component.starts_with(b"\0asm")));
    }

    #[test]
    fn names_and_paths_are_told_apart() {
        assert!(is_name("revalidate"));
        assert!(!is_name("./revalidate") && !is_name("policy.wasm"));
        let error = find("nope").err().unwrap().to_string();
        assert!(
            error.contains("\"nope\"") && error.contains("default, revalidate"),
            "{error}"
        );
    }
}
