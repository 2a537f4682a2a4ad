//! Builds the default policy (`plugin/default`) for wasm32-wasip2 so the
//! host can embed it: `cargo build` alone yields a working `nodecache`.
//!
//! The nested cargo uses its own target directory beside ours, so it never
//! waits on the outer build's lock. `NODECACHE_DEFAULT_POLICY=FILE` embeds a
//! prebuilt component instead.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let embedded = out_dir.join("default_policy.wasm");
    println!("cargo:rerun-if-env-changed=NODECACHE_DEFAULT_POLICY");
    if let Some(prebuilt) = env::var_os("NODECACHE_DEFAULT_POLICY") {
        println!("cargo:rerun-if-changed={}", Path::new(&prebuilt).display());
        std::fs::copy(&prebuilt, &embedded).expect("copy NODECACHE_DEFAULT_POLICY");
        return;
    }
    for watched in [
        "plugin/default/src",
        "plugin/default/Cargo.toml",
        "wit",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out_dir.ancestors().nth(4).unwrap_or(&out_dir).join("wasm-policy");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            "nodecache-policy-default",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // The embedded component needs no debug info: smaller binary, same code.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "none")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    for inherited in [
        "CARGO_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        build.env_remove(inherited);
    }
    let status = build.status().expect("run cargo to build the default policy");
    if !status.success() {
        panic!(
            "building the default policy for wasm32-wasip2 failed ({status}); \
             if the target is missing: rustup target add wasm32-wasip2"
        );
    }
    let built = target_dir.join("wasm32-wasip2/release/nodecache_policy_default.wasm");
    std::fs::copy(&built, &embedded).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
}
