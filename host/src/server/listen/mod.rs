//! Every listener `serve` opens, TLS or plain HTTP, runs through here with
//! the same limits, so no mode can be held open more cheaply than another:
//!
//! - a total cap on connections (`--max-connections`): at the cap, new ones
//!   wait in the kernel's backlog, unaccepted;
//! - a per-client cap (`--max-connections-per-client`): one address cannot
//!   take every slot; its extra connections are closed at once;
//! - a header-read deadline (`--header-timeout`): a request's head must
//!   arrive whole within it, however the bytes trickle (HTTP/1), and a
//!   connection must start its first request within it (HTTP/1 and 2);
//! - an idle deadline (`--idle-timeout`), counted in requests, not bytes:
//!   an HTTP/2 client sending PINGs and no request is closed like a silent
//!   one (`activity`), and a connection with no bytes either way mid-request
//!   too (`quiet_bytes`);
//! - a graceful stop: when told to stop (SIGTERM, SIGINT), nothing new is
//!   accepted, every connection finishes the request in flight and closes,
//!   and what is still open after [`DRAIN_DEADLINE`] is cut, as systemd's
//!   stop expects (the shape of mini-redis's shutdown).

mod activity;
mod backoff;
mod peers;
pub(crate) mod quiet_bytes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use activity::Activity;
use backoff::AcceptBackoff;
use peers::PeerCounts;
use quiet_bytes::QuietBytes;

/// What one client, and all of them together, may hold of the server.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A connection with no request in progress (or no bytes either way)
    /// for this long is closed.
    pub idle: Duration,
    /// A request's head must arrive whole within this, and a connection
    /// must start its first request within it.
    pub header: Duration,
    /// Connections served at once; the rest wait in the listen backlog.
    pub max_connections: usize,
    /// Connections one client address may hold at once; more are closed.
    pub max_per_client: usize,
}

/// HTTP/2 streams one connection may have open at once: enough for any
/// client nodecache knows, few enough that one connection cannot queue the
/// whole server's work.
const MAX_STREAMS_PER_CONNECTION: u32 = 32;

/// How long the requests in flight may take to finish once the server is
/// told to stop: a cluster request's own deadline (10 s of fetching and a
/// 10 s margin by default) fits, and systemd's 90 s stop timeout is not
/// reached.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Becomes true when the server stops: each connection then finishes the
/// request in flight and closes.
pub type Draining = tokio::sync::watch::Receiver<bool>;

/// Accepts connections within `limits` until `stop` completes, and hands
/// each (with its client's address, and the news of the stop) to `handle`,
/// on its own task. Then stops accepting and waits, up to
/// [`DRAIN_DEADLINE`], for every connection to finish.
pub async fn accept_loop<H, F>(
    listener: TcpListener,
    limits: ConnectionLimits,
    metrics: Arc<crate::server::metrics::Metrics>,
    stop: impl Future<Output = ()>,
    handle: H,
) -> Result<()>
where
    H: Fn(TcpStream, SocketAddr, Draining) -> F,
    F: Future<Output = Result<()>> + Send + 'static,
{
    let capacity = limits.max_connections.max(1);
    let slots = Arc::new(tokio::sync::Semaphore::new(capacity));
    let peers = PeerCounts::new(limits.max_per_client);
    let mut backoff = AcceptBackoff::default();
    let (tell_draining, draining) = tokio::sync::watch::channel(false);
    tokio::pin!(stop);
    loop {
        // A slot first: at the cap, connections wait in the backlog, unaccepted.
        let slot = tokio::select! {
            biased;
            () = &mut stop => break,
            slot = slots.clone().acquire_owned() => slot.context("connection slots closed")?,
        };
        let accepted = tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(e) => {
                backoff.wait(&e).await;
                continue;
            }
        };
        let Some(held) = peers.admit(peer.ip()) else {
            metrics.refused();
            crate::server::access_log::refused(
                peer,
                &format!("this client already holds {} connections", limits.max_per_client),
            );
            continue;
        };
        let connection = handle(stream, peer, draining.clone());
        let open = metrics.opened();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("{peer}: {e:#}");
            }
            drop((held, slot, open));
        });
    }
    drain(listener, &slots, capacity, tell_draining).await;
    Ok(())
}

/// Stops accepting, tells every connection, and waits for them all (every
/// slot back) up to [`DRAIN_DEADLINE`].
async fn drain(
    listener: TcpListener,
    slots: &tokio::sync::Semaphore,
    capacity: usize,
    tell_draining: tokio::sync::watch::Sender<bool>,
) {
    drop(listener);
    let open = capacity - slots.available_permits();
    tracing::info!("shutting down: accepting no more connections, {open} open finishing");
    tell_draining.send_replace(true);
    let all = u32::try_from(capacity).unwrap_or(u32::MAX);
    match tokio::time::timeout(DRAIN_DEADLINE, slots.acquire_many(all)).await {
        Ok(_) => tracing::info!("stopped: every connection finished"),
        Err(_) => tracing::warn!(
            "stopped: {} connections still open after {} s were cut",
            capacity - slots.available_permits(),
            DRAIN_DEADLINE.as_secs()
        ),
    }
}

/// Completes when the server stops (never, if it is gone without saying).
async fn stopping(draining: &mut Draining) {
    if draining.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Serves HTTP/1 or HTTP/2 (told apart by the preface) on one connection,
/// within `limits`, until the client leaves, a deadline closes it, or the
/// server stops (`draining`: the request in flight is answered first).
pub async fn serve_http<S>(io: S, app: Router, limits: ConnectionLimits, mut draining: Draining) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let app = activity.clone().track(app);
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    let io = TokioIo::new(QuietBytes::new(io, limits.idle));
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => return served.map_err(|e| anyhow::anyhow!("{e}")),
        () = activity.quiet_too_long(limits.header, limits.idle) => {}
        () = stopping(&mut draining) => {
            // A close after the response in flight (HTTP/1), a GOAWAY
            // (HTTP/2); the accept loop bounds how long it may take.
            connection.as_mut().graceful_shutdown();
            return connection.await.map_err(|e| anyhow::anyhow!("{e}"));
        }
    }
    // Quiet too long: a GOAWAY (HTTP/2) or a close after the response in
    // flight (HTTP/1); a client that keeps the connection anyway gets one
    // more header deadline, then is dropped.
    connection.as_mut().graceful_shutdown();
    match tokio::time::timeout(limits.header, connection).await {
        Ok(served) => served.map_err(|e| anyhow::anyhow!("{e}")),
        Err(_) => anyhow::bail!("closed: no request for too long, and the client would not leave"),
    }
}
