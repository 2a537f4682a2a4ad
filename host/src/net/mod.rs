//! Talking to other nodes: mutual TLS (rustls, certificates pinned by
//! fingerprint), this node's identity, and the HTTPS client that fetches a
//! member's document within the cluster file's deadline and size cap.

pub(crate) mod certificate;
pub(crate) mod first_use;
pub(crate) mod identity;
pub mod remote;
pub(crate) mod tls;
