//! `nodecache serve`: this node's `GET /1.0` and `GET /1.0/resources`, in
//! Incus's envelopes, over HTTPS (TLS 1.3) with client certificates checked
//! against the trust store. Plain HTTP only when asked, on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::api::Resources;
use crate::api::envelope::{Envelope, unwrap_resources};
use crate::node_name::NodeName;
use crate::probe;
use crate::trust::TrustStore;

/// Where `/1.0/resources` comes from.
#[derive(Clone)]
pub enum ResourcesSource {
    /// Probe this machine on every request.
    Probe,
    /// A recorded document (for recorded or simulated nodes).
    Recorded(Arc<Resources>),
}

impl ResourcesSource {
    pub fn from_file(path: &PathBuf) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let resources = unwrap_resources(&bytes).with_context(|| format!("{}", path.display()))?;
        Ok(ResourcesSource::Recorded(Arc::new(resources)))
    }
}

#[derive(Clone)]
struct AppState {
    source: ResourcesSource,
    server_name: String,
}

pub struct TlsSetup {
    pub config: Arc<rustls::ServerConfig>,
    pub trust: TrustStore,
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/1.0", get(server_info))
        .route("/1.0/resources", get(resources))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .with_state(state)
}

/// What a connection whose client certificate is not trusted gets, whatever it asks.
fn untrusted_router() -> Router {
    Router::new().fallback(|| async { error(StatusCode::FORBIDDEN, "not authorized") })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(Envelope::<()>::error(status.as_u16(), message))).into_response()
}

async fn server_info(State(state): State<AppState>) -> Response {
    Json(Envelope::sync(json!({
        "api_extensions": ["resources", "resources_cpu_flags"],
        "api_status": "stable",
        "api_version": "1.0",
        "auth": "trusted",
        "environment": {
            "server": "nodecache",
            "server_version": env!("CARGO_PKG_VERSION"),
            "server_name": state.server_name,
            "architectures": [std::env::consts::ARCH],
        },
    })))
    .into_response()
}

async fn resources(State(state): State<AppState>) -> Response {
    match state.source {
        ResourcesSource::Recorded(resources) => Json(Envelope::sync(&*resources)).into_response(),
        ResourcesSource::Probe => {
            let probed = tokio::task::spawn_blocking(probe::probe_resources).await;
            match probed
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                Ok(resources) => Json(Envelope::sync(resources)).into_response(),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("probe failed: {e}")),
            }
        }
    }
}

/// Serves until the process is stopped. `tls: None` is plain HTTP and only
/// allowed on a loopback address.
pub async fn serve(listener: TcpListener, source: ResourcesSource, tls: Option<TlsSetup>) -> Result<()> {
    let local = listener.local_addr().context("listener address")?;
    let state = AppState {
        source,
        server_name: NodeName::of_this_machine().to_string(),
    };
    let app = router(state);
    match tls {
        None => {
            if !local.ip().is_loopback() {
                bail!("plain HTTP is only allowed on a loopback address, not {local}");
            }
            tracing::info!("serving plain HTTP on {local}");
            axum::serve(listener, app).await.context("HTTP server")
        }
        Some(tls) => serve_tls(listener, app, tls).await,
    }
}

async fn serve_tls(listener: TcpListener, app: Router, tls: TlsSetup) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let trust = Arc::new(tls.trust);
    tracing::info!("serving HTTPS on {}", listener.local_addr()?);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                continue;
            }
        };
        let (acceptor, app, trust) = (acceptor.clone(), app.clone(), trust.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, peer, acceptor, app, &trust).await {
                tracing::debug!("{peer}: {e:#}");
            }
        });
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    trust: &TrustStore,
) -> Result<()> {
    let tls_stream = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream))
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake")?;
    let trusted = match tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
    {
        Some(cert) => trust.contains(cert.as_ref()),
        None => false,
    };
    tracing::debug!(%peer, trusted, "connection");
    // Trust is decided once per connection: an untrusted one reaches no handler.
    let app = if trusted { app } else { untrusted_router() };
    let service = hyper_util::service::TowerToHyperService::new(app);
    hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(hyper_util::rt::TokioIo::new(tls_stream), service)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}
