//! Builds the policy shelf (`plugin/<name>`) for wasm32-wasip2 so the host
//! can embed it: `cargo build` alone yields a working `nodecache` with every
//! shipped policy, and `runtime::embedded` lists them.
//!
//! Each policy is built by its own nested cargo: a policy's SDK features pick
//! its contract version, and one invocation would unify them. The nested
//! cargo uses its own target directory beside ours, so it never waits on the
//! outer build's lock. `NODECACHE_EMBED_<NAME>=FILE` (e.g.
//! `NODECACHE_EMBED_DEFAULT`) embeds a prebuilt component instead.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The embedded policies, in the order `nodecache policy list` shows them.
const SHELF: &[&str] = &["default", "revalidate", "early-refresh", "always-fresh", "pinned"];

/// A policy needs little stack: a 128 KiB shadow stack (instead of Rust's
/// 1 MiB default) keeps the component's initial memory small, so the host's
/// per-call instantiation has fewer pages to reset.
const WASM_RUSTFLAGS: &str = "-C link-arg=-zstack-size=131072";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    // What the embedded policies are built from: their crates, the SDK,
    // the contracts and the lock file. Not all of plugin/: the Python
    // example's test writes a __pycache__ there, which rebuilt the host.
    let shelf = SHELF.iter().map(|name| format!("plugin/{name}"));
    let sources = ["plugin/sdk", "wit", "Cargo.lock", "Cargo.toml"].map(String::from);
    for watched in sources.into_iter().chain(shelf) {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out_dir.ancestors().nth(4).unwrap_or(&out_dir).join("wasm-policy");
    let mut list = String::from("static SHELF: &[EmbeddedPolicy] = &[\n");
    for name in SHELF {
        let embedded = out_dir.join(format!("{name}.wasm"));
        let variable = format!("NODECACHE_EMBED_{}", name.to_uppercase().replace('-', "_"));
        println!("cargo:rerun-if-env-changed={variable}");
        match env::var_os(&variable) {
            Some(prebuilt) => {
                println!("cargo:rerun-if-changed={}", Path::new(&prebuilt).display());
                std::fs::copy(&prebuilt, &embedded).unwrap_or_else(|e| panic!("copy {variable}: {e}"));
            }
            None => {
                let built = build_policy(&root, &target_dir, name);
                std::fs::copy(&built, &embedded).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
            }
        }
        writeln!(
            list,
            "    EmbeddedPolicy {{ name: {name:?}, component: include_bytes!({:?}) }},",
            embedded.display().to_string()
        )
        .unwrap();
    }
    list.push_str("];\n");
    std::fs::write(out_dir.join("embedded_policies.rs"), list).expect("write embedded_policies.rs");
}

fn build_policy(root: &Path, target_dir: &Path, name: &str) -> PathBuf {
    let package = format!("nodecache-policy-{name}");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--release", "--target", "wasm32-wasip2", "-p", &package])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
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
    // The embedded components need no debug info: smaller binary, same code.
    build
        .env("CARGO_PROFILE_RELEASE_DEBUG", "none")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        .env("CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS", WASM_RUSTFLAGS);
    let status = build.status().expect("run cargo to build a policy");
    if !status.success() {
        panic!(
            "building policy {name} for wasm32-wasip2 failed ({status}); \
             if the target is missing: rustup target add wasm32-wasip2"
        );
    }
    target_dir.join(format!(
        "wasm32-wasip2/release/{}.wasm",
        package.replace('-', "_")
    ))
}
