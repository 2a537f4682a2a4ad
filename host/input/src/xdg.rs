//! Where nodecache keeps things for this user, by the XDG base directory
//! rules: `$XDG_<KIND>_HOME/nodecache`, else `~/<fallback>/nodecache`.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// `variable` (e.g. `XDG_CACHE_HOME`) if set, else `$HOME/<fallback>`, then
/// `nodecache`; `option` names the flag that overrides it, for the error.
pub fn user_dir(variable: &str, fallback: &str, option: &str) -> Result<PathBuf> {
    if let Some(base) = std::env::var_os(variable).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(base).join("nodecache"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .with_context(|| format!("neither {variable} nor HOME is set (use {option})"))?;
    Ok(PathBuf::from(home).join(fallback).join("nodecache"))
}
