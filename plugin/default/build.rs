//! A policy needs little stack: a 128 KiB shadow stack (instead of Rust's
//! 1 MiB default) keeps the component's initial memory small, so the host's
//! per-call instantiation has fewer pages to reset.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=-zstack-size=131072");
    }
}
