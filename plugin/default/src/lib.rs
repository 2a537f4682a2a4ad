//! The default nodecache policy, compiled to a WebAssembly component.
//!
//! The decisions live in plain functions over the [`host::Host`] trait so that
//! the same code runs in the component (against the real host imports) and in
//! unit tests (against an in-memory fake), natively or under wasmtime.

pub mod bindings;
pub mod flags;
pub mod freshness;
pub mod host;
pub mod settings;

#[cfg(test)]
mod fake_host;

#[cfg(target_arch = "wasm32")]
mod component;
