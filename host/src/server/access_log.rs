//! One log line per request, as a service should leave: who asked (the
//! client certificate's name in the trust store, else its fingerprint),
//! the method and path, the status, how long it took, and for a cluster
//! request the source of each node's data. Logged under the target
//! `nodecache::access` at info, which `serve` shows by default; with
//! `--log-format json` each line is an object with these fields.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use crate::server::metrics::Metrics;

/// The node sources of a cluster answer (`a=cache b=remote`), which a
/// handler puts in its response's extensions for the log.
#[derive(Debug, Clone)]
pub struct NodeSources(pub String);

/// A request being served: what its log line needs from its start.
pub struct Entry {
    metrics: Arc<Metrics>,
    client: String,
    peer: std::net::SocketAddr,
    method: axum::http::Method,
    path: String,
    started: Instant,
}

impl Entry {
    /// Begins `request`'s line; `client` names who asked. Its end is
    /// counted in `metrics` too.
    pub fn begin(
        metrics: Arc<Metrics>,
        client: String,
        peer: std::net::SocketAddr,
        request: &Request,
    ) -> Entry {
        Entry {
            metrics,
            client,
            peer,
            method: request.method().clone(),
            // What a client sent, made fit for a log line.
            path: crate::format::for_terminal(request.uri().path(), 200),
            started: Instant::now(),
        }
    }

    /// Logs the line, with the answer's status and node sources.
    pub fn finish(self, response: &Response) {
        let sources = response
            .extensions()
            .get::<NodeSources>()
            .map(|sources| sources.0.clone())
            .unwrap_or_default();
        let seconds = self.started.elapsed().as_secs_f64();
        self.metrics
            .observe(&self.path, response.status().as_u16(), seconds);
        tracing::info!(
            target: "nodecache::access",
            client = %self.client,
            peer = %self.peer,
            method = %self.method,
            path = %self.path,
            status = response.status().as_u16(),
            duration_ms = seconds * 1000.0,
            sources = %sources,
            "request"
        );
    }
}

/// Middleware: runs the request and logs it, `client` naming who asked.
pub async fn logged(
    metrics: Arc<Metrics>,
    client: String,
    peer: std::net::SocketAddr,
    request: Request,
    next: Next,
) -> Response {
    let entry = Entry::begin(metrics, client, peer, &request);
    let response = next.run(request).await;
    entry.finish(&response);
    response
}

/// A connection closed unserved, and why.
pub fn refused(peer: std::net::SocketAddr, why: &str) {
    tracing::info!(target: "nodecache::access", peer = %peer, why, "connection refused");
}
