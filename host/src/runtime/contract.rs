//! Which contract a component was built against, and clear rejections of
//! files that are not policies this host can run.

use std::fmt;

use anyhow::{Result, bail};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The WIT package every policy exports from.
pub const PACKAGE: &str = "nodecache:policy";
/// The export a policy must provide, without its version.
pub const POLICY_INTERFACE: &str = "nodecache:policy/policy";
/// The minor versions this host runs, one `runtime::vX_Y` module each
/// (0.x minors are incompatible with each other, as in semver).
pub const ACCEPTED: [(u64, u64); 2] = [super::v0_1::MINOR, super::v0_2::MINOR];

/// `nodecache:policy@0.1.x, nodecache:policy@0.2.x`, for error messages.
pub fn accepted() -> String {
    ACCEPTED
        .iter()
        .map(|(major, minor)| format!("{PACKAGE}@{major}.{minor}.x"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PACKAGE}@{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Rejects files that are not WebAssembly components before compiling them.
pub fn check_binary_kind(bytes: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        bail!("not a WebAssembly file (no \\0asm header)");
    }
    match bytes[4..8] {
        [0x01, 0x00, 0x00, 0x00] => {
            bail!("a core WebAssembly module, not a component (build it with --target wasm32-wasip2)")
        }
        [_, _, 0x01, 0x00] => Ok(()),
        _ => bail!("an unknown WebAssembly binary version"),
    }
}

/// Finds the `nodecache:policy/policy@X.Y.Z` export and checks its version.
pub fn contract_of(component: &Component, engine: &Engine) -> Result<ContractVersion> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
    let Some(export) = exports.iter().find(|name| name.starts_with(POLICY_INTERFACE)) else {
        bail!(
            "does not export {POLICY_INTERFACE} (exports: {}); is it a nodecache policy?",
            if exports.is_empty() {
                "none".to_string()
            } else {
                crate::format::capped_list(&exports, ", ", crate::format::LISTED)
            }
        );
    };
    // A program (`wasi:cli/run`: a compiled test binary of a policy crate,
    // say) or a server (`wasi:http/incoming-handler`) may carry the policy
    // export too and even answer, but it is not a policy. (Other exports
    // stay allowed: componentize-py adds one of its own.)
    let entry_points: Vec<&String> = exports
        .iter()
        .filter(|name| name.starts_with("wasi:cli/run") || name.starts_with("wasi:http/incoming-handler"))
        .collect();
    if !entry_points.is_empty() {
        bail!(
            "exports {} beside {export}: a program (a compiled test binary?), not a policy built as a library",
            crate::format::capped_list(&entry_points, ", ", crate::format::LISTED)
        );
    }
    let version = export
        .strip_prefix(POLICY_INTERFACE)
        .and_then(|rest| rest.strip_prefix('@'))
        .and_then(parse_version);
    let Some(version) = version else {
        bail!(
            "exports {export} without a version; this host accepts {}",
            accepted()
        );
    };
    if !ACCEPTED.contains(&(version.major, version.minor)) {
        bail!(
            "built against contract {version}; this host accepts {}",
            accepted()
        );
    }
    Ok(version)
}

fn parse_version(text: &str) -> Option<ContractVersion> {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().ok());
    let version = ContractVersion {
        major: parts.next()??,
        minor: parts.next()??,
        patch: parts.next()??,
    };
    parts.next().is_none().then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_kinds_are_told_apart() {
        assert!(
            check_binary_kind(b"hello world")
                .unwrap_err()
                .to_string()
                .contains("not a WebAssembly file")
        );
        let core = b"\0asm\x01\0\0\0";
        assert!(
            check_binary_kind(core)
                .unwrap_err()
                .to_string()
                .contains("core WebAssembly module")
        );
        assert!(check_binary_kind(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_version("0.1.0"),
            Some(ContractVersion {
                major: 0,
                minor: 1,
                patch: 0
            })
        );
        assert_eq!(parse_version("0.1"), None);
        assert_eq!(parse_version("0.1.0.1"), None);
    }
}
