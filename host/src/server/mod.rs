//! `nodecache serve`: Incus's API for this node and, with a cluster file,
//! for the cluster ([`routes`]); the listener and its limits ([`listen`]);
//! this node's document, probed or recorded ([`resources_source`]); who
//! may ask ([`trust`]); and a log line per request ([`access_log`]).

pub(crate) mod access_log;
pub(crate) mod listen;
pub(crate) mod metrics;
pub(crate) mod nfd_file;
pub(crate) mod resources_source;
pub(crate) mod routes;
pub(crate) mod trust;

pub use resources_source::ResourcesSource;
pub use routes::{Service, TlsSetup, serve};
