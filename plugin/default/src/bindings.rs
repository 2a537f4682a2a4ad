//! Types and imports generated from the `nodecache:policy@0.1.0` WIT package.

wit_bindgen::generate!({
    path: "../../wit/v0.1.0",
    world: "policy-plugin",
    pub_export_macro: true,
    additional_derives: [PartialEq],
    default_bindings_module: "nodecache_policy_default::bindings",
});

pub use exports::nodecache::policy::policy::Guest;
pub use nodecache::policy::types::*;
