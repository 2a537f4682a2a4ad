//! `nodecache serve`: this node's `GET /1.0` and `GET /1.0/resources`, in
//! Incus's envelopes, over HTTPS (TLS 1.3) with client certificates checked
//! against the trust store. Plain HTTP only when asked, on loopback.
//!
//! Given a cluster file, it also answers for the whole cluster through its
//! policy (`cluster::service`): `GET /1.0/cluster/cpu-flags[?arch=…&allow-partial=1]`
//! (and the CLI's outputs: `&format=qemu|libvirt|incus|proxmox|nova|kubevirt|nfd|list`,
//! `&baseline=…`, `&level=1`, `&explain=1`, `&group=…`) and `GET /1.0/cluster/resources/{node}`. Its policy is swapped live
//! (`runtime::slot`); `GET /1.0` says which one is active.
//!
//! `/1.0/resources` carries an `ETag`: this machine's hardware fingerprint
//! (see `fingerprint`), or the digest of a recorded document. A request whose
//! `If-None-Match` holds the current tag gets `304 Not Modified` without the
//! hardware being probed, so a revalidating client costs a few /proc reads.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::api::envelope::Envelope;
use crate::cluster::service::{ApiError, ClusterApi};
use crate::node_name::NodeName;
use crate::outputs::output::{FlagsFormat, FlagsOutput, Rendered};
use crate::query::{Asker, FlagsRequest, QueryError};
use crate::runtime::slot::PolicySlot;
use crate::server::access_log;
use crate::server::listen::{ConnectionLimits, Draining, accept_loop, serve_http};
use crate::server::metrics::{self, Metrics};
use crate::server::resources_source::ResourcesSource;
use crate::server::trust::TrustStore;

#[derive(Clone)]
struct AppState {
    source: ResourcesSource,
    server_name: String,
    policy: Arc<PolicySlot>,
    cluster: Option<Arc<ClusterApi>>,
    metrics: Arc<Metrics>,
}

/// What `serve` answers with: this node's resources, its policy, and, with a
/// cluster file, the cluster.
pub struct Service {
    pub source: ResourcesSource,
    pub policy: Arc<PolicySlot>,
    pub cluster: Option<Arc<ClusterApi>>,
    /// `--metrics-listen`: a loopback listener answering `GET /metrics`
    /// alone, in plain HTTP, for a scraper on this machine.
    pub metrics_listener: Option<TcpListener>,
}

pub struct TlsSetup {
    pub config: Arc<rustls::ServerConfig>,
    pub trust: TrustStore,
}

/// How long a TLS handshake may take.
const HANDSHAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

fn router(state: AppState) -> Router {
    Router::new()
        .route("/1.0", get(server_info))
        .route("/1.0/resources", get(resources))
        .route("/1.0/cluster/cpu-flags", get(cluster_cpu_flags))
        .route("/1.0/cluster/resources/{node}", get(cluster_resources))
        .route("/metrics", get(metrics_text))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        // Incus's envelope for a method a path does not take, too (was
        // axum's empty plain-text 405).
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: nodecache answers GET",
            )
        })
        .with_state(state)
}

/// `--metrics-listen`'s routes: the metrics, and nothing else.
fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found: this address serves /metrics") })
        .with_state(state)
}

/// `GET /metrics`: the Prometheus text format (`server::metrics`).
async fn metrics_text(State(state): State<AppState>) -> Response {
    let text = state.metrics.render(&state.policy, state.cluster.as_ref()).await;
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(Envelope::<()>::error(status.as_u16(), message))).into_response()
}

/// The resources API extensions `/1.0/resources` implements, by Incus's
/// names: what an Incus client checks before it asks (`incus info
/// --resources` needs `resources_v2`). Only sections the document really
/// has are named.
pub const API_EXTENSIONS: &[&str] = &[
    "resources",
    "resources_cpu_socket",
    "resources_gpu",
    "resources_numa",
    "resources_v2",
    "resources_infiniband",
    "resources_cpu_threads_numa",
    "resources_cpu_core_die",
    "resources_usb_pci",
    "resources_system",
    "resources_disk_sata",
    "resources_network_firmware",
    "resources_disk_id",
    "resources_pci_iommu",
    "resources_gpu_mdev",
    "resources_network_usb",
    "resources_disk_address",
    "resources_gpu_usb",
    "resources_pci_vpd",
    "resources_load",
    "resources_cpu_flags",
    "resources_cpu_address_sizes",
    // nodecache's own: the document's `nodecache_hypervisor` section.
    "resources_nodecache_hypervisor",
    // nodecache's own: each socket's `nodecache_microcode`.
    "resources_nodecache_microcode",
];

/// Who is asking, as the TLS guard found it; absent in plain-HTTP mode,
/// where there are no clients to tell apart.
#[derive(Debug, Clone)]
enum Client {
    /// Trusted; the SHA-256 fingerprint of its certificate.
    Trusted(String),
    /// No certificate, or one not in the trust store: `GET /1.0` only.
    Untrusted,
}

async fn server_info(State(state): State<AppState>, client: Option<axum::Extension<Client>>) -> Response {
    let fingerprint = match client.map(|axum::Extension(client)| client) {
        // As Incus answers a client it does not trust: enough to start the
        // trust flow (`incus remote add`), nothing about the machine.
        Some(Client::Untrusted) => {
            return Json(Envelope::sync(json!({
                "config": {},
                "api_extensions": API_EXTENSIONS,
                "api_status": "stable",
                "api_version": "1.0",
                "auth": "untrusted",
                "public": false,
                "auth_methods": ["tls"],
            })))
            .into_response();
        }
        Some(Client::Trusted(fingerprint)) => fingerprint,
        None => String::new(),
    };
    Json(Envelope::sync(json!({
        "config": {},
        "api_extensions": API_EXTENSIONS,
        "api_status": "stable",
        "api_version": "1.0",
        "auth": "trusted",
        "public": false,
        "auth_methods": ["tls"],
        "auth_user_name": fingerprint,
        "auth_user_method": "tls",
        "environment": {
            "server": "nodecache",
            "server_version": env!("CARGO_PKG_VERSION"),
            "server_name": state.server_name,
            "architectures": [std::env::consts::ARCH],
            "policy": state.policy.status(),
            "cluster": state.cluster.is_some(),
        },
    })))
    .into_response()
}

async fn resources(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let current = state.source.current(|tag| matches_tag(&headers, tag)).await;
    match current {
        Ok(tagged) if matches_tag(&headers, &tagged.tag) => not_modified(&tagged.tag),
        Ok(tagged) => with_tag(raw_envelope(&tagged.document), &tagged.tag),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("probe failed: {e}")),
    }
}

/// `/1.0/cluster/cpu-flags`'s parameters; any other is refused (400), so
/// a typo is never silently ignored.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FlagsQuery {
    arch: Option<String>,
    #[serde(rename = "allow-partial")]
    allow_partial: Option<String>,
    /// As the CLI's `--format`: json (default, in the Incus envelope), or
    /// list, qemu, libvirt, incus, proxmox, nova, kubevirt, nfd (plain text).
    format: Option<FlagsFormat>,
    baseline: Option<String>,
    explain: Option<String>,
    level: Option<String>,
    #[serde(rename = "require-hypervisor")]
    require_hypervisor: Option<String>,
    #[serde(rename = "drop-fragile")]
    drop_fragile: Option<String>,
    #[serde(rename = "model-name")]
    model_name: Option<String>,
    /// As the CLI's `--group`: the members of this group alone.
    group: Option<String>,
}

/// A query switch: absent, `1`/`true` or `0`/`false`; anything else is
/// the request's error, naming the parameter.
fn switch(name: &str, value: &Option<String>) -> Result<bool, String> {
    match value.as_deref() {
        None | Some("0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(other) => Err(format!(
            "{name}={} is not a switch (1, true, 0 or false)",
            crate::format::for_terminal(other, 64)
        )),
    }
}

impl FlagsQuery {
    /// The request, or what is wrong with it (a 400).
    fn checked(&self) -> Result<FlagsRequest, QueryError> {
        let bad = QueryError::BadRequest;
        let output = FlagsOutput {
            format: self.format.unwrap_or(FlagsFormat::Json),
            baseline: self.baseline.clone(),
            level: switch("level", &self.level).map_err(bad)?,
            explain: switch("explain", &self.explain).map_err(bad)?,
            require_hypervisor: switch("require-hypervisor", &self.require_hypervisor).map_err(bad)?,
            drop_fragile: switch("drop-fragile", &self.drop_fragile).map_err(bad)?,
            model_name: self.model_name.clone(),
            this_node: None,
            nfd_valid_for: crate::outputs::output::NFD_VALID_FOR,
        };
        let allow_partial = switch("allow-partial", &self.allow_partial).map_err(bad)?;
        FlagsRequest::new(self.arch.clone(), allow_partial, output, Asker::Http)
    }
}

fn no_cluster() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "this server answers for itself only: start it with --cluster FILE",
    )
}

fn api_error(failure: ApiError) -> Response {
    match failure {
        ApiError::UnknownNode(why) => error(StatusCode::NOT_FOUND, &why),
        ApiError::NoData(why) => error(StatusCode::SERVICE_UNAVAILABLE, &why),
        ApiError::Policy(why) => error(StatusCode::INTERNAL_SERVER_ERROR, &why),
        ApiError::TimedOut(why) => error(StatusCode::GATEWAY_TIMEOUT, &why),
    }
}

/// The cluster's common flags, answered as `nodecache cpu-flags` answers
/// (`crate::query`): JSON in Incus's envelope, the other formats as text.
async fn cluster_cpu_flags(
    State(state): State<AppState>,
    query: Result<Query<FlagsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(cluster) = state.cluster else {
        return no_cluster();
    };
    let (mut request, group) = match query {
        Ok(Query(query)) => match query.checked() {
            Ok(request) => (request, query.group),
            Err(why) => return query_error(why),
        },
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                &crate::format::for_terminal(&rejection.body_text(), 300),
            );
        }
    };
    request.output.this_node = cluster.this_node();
    let report = match cluster.cpu_flags(&request.arch, group.as_deref()).await {
        Ok(report) => report,
        Err(failure) => return api_error(failure),
    };
    // Each node's source, for the access log.
    let sources = access_log::NodeSources(
        report
            .nodes
            .iter()
            .map(|node| format!("{}={}", node.name, node.source))
            .collect::<Vec<_>>()
            .join(" "),
    );
    // The hypervisor forms ask QEMU for the baseline's flags, off the async threads.
    let mut response = match tokio::task::spawn_blocking(move || request.answer(report)).await {
        Ok(Ok(answer)) => match answer.body {
            Rendered::Json(value) => Json(Envelope::sync(value)).into_response(),
            Rendered::Text(text) => text.into_response(),
        },
        Ok(Err(why)) => query_error(why),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("rendering failed: {e}"),
        ),
    };
    response.extensions_mut().insert(sources);
    response
}

/// A question without an answer, as its HTTP status: a node the policy
/// failed for is the server's fault (500, as a failed intersection is);
/// one that could not be reached or read is unavailable (503).
fn query_error(why: QueryError) -> Response {
    match why {
        QueryError::BadRequest(why) => error(StatusCode::BAD_REQUEST, &why),
        QueryError::NoData {
            message,
            policy_failures: 0,
        } => error(StatusCode::SERVICE_UNAVAILABLE, &message),
        QueryError::NoData { message, .. } => error(StatusCode::INTERNAL_SERVER_ERROR, &message),
        QueryError::Failed(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}

/// A member's resources document, through the policy and the cache.
async fn cluster_resources(State(state): State<AppState>, UrlPath(node): UrlPath<String>) -> Response {
    let Some(cluster) = state.cluster else {
        return no_cluster();
    };
    match cluster.resources(&node).await {
        Ok(resources) => raw_envelope(&resources.document),
        Err(failure) => api_error(failure),
    }
}

/// Whether `If-None-Match` lists `tag` (strong or weak) or is `*`.
fn matches_tag(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|candidate| candidate.trim())
        .any(|candidate| {
            candidate == "*"
                || candidate
                    .strip_prefix("W/")
                    .unwrap_or(candidate)
                    .trim_matches('"')
                    == tag
        })
}

fn not_modified(tag: &str) -> Response {
    with_tag(StatusCode::NOT_MODIFIED.into_response(), tag)
}

fn with_tag(mut response: Response, tag: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{tag}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// Incus's sync envelope around a document kept as text (never re-serialised).
fn raw_envelope(document: &str) -> Response {
    match serde_json::value::RawValue::from_string(document.to_string()) {
        Ok(raw) => Json(Envelope::sync(raw)).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("bad document: {e}")),
    }
}

/// Serves until `stop` completes, within `limits` whatever the mode, then
/// finishes the requests in flight (see `listen`). `tls: None` is plain
/// HTTP and only allowed on a loopback address.
pub async fn serve(
    listener: TcpListener,
    service: Service,
    tls: Option<TlsSetup>,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let local = listener.local_addr().context("listener address")?;
    let metrics = Arc::new(Metrics::new());
    let state = AppState {
        source: service.source,
        server_name: NodeName::of_this_machine().to_string(),
        policy: service.policy,
        cluster: service.cluster,
        metrics: metrics.clone(),
    };
    // One stop for every listener.
    let stop = futures::FutureExt::shared(stop);
    let side_app = metrics_router(state.clone());
    let side = async {
        match service.metrics_listener {
            // `--metrics-listen`: `/metrics` alone, within the same limits.
            Some(listener) => {
                plain_http(
                    listener,
                    side_app,
                    limits,
                    &metrics,
                    stop.clone(),
                    "metrics-listener",
                )
                .await
            }
            None => Ok(()),
        }
    };
    let app = router(state);
    let main = async {
        match tls {
            None => plain_http(listener, app, limits, &metrics, stop.clone(), "insecure-http").await,
            Some(tls) => {
                tracing::info!("serving HTTPS on {local}");
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
                let trust = Arc::new(tls.trust);
                let counted = metrics.clone();
                accept_loop(
                    listener,
                    limits,
                    metrics.clone(),
                    stop.clone(),
                    move |stream, peer, draining| {
                        let connection = TlsConnection {
                            acceptor: acceptor.clone(),
                            app: app.clone(),
                            trust: trust.clone(),
                            metrics: counted.clone(),
                            limits,
                            draining,
                        };
                        connection.serve(stream, peer)
                    },
                )
                .await
            }
        }
    };
    futures::try_join!(main, side)?;
    Ok(())
}

/// A plain-HTTP listener's loop, on a loopback address only: each request
/// logged and counted as `client` (plain HTTP tells no clients apart).
async fn plain_http(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: &Arc<Metrics>,
    stop: impl Future<Output = ()>,
    client: &'static str,
) -> Result<()> {
    let local = listener.local_addr().context("listener address")?;
    if !local.ip().is_loopback() {
        bail!("plain HTTP is only allowed on a loopback address, not {local}");
    }
    tracing::info!("serving plain HTTP on {local} ({client})");
    let counted = metrics.clone();
    accept_loop(
        listener,
        limits,
        metrics.clone(),
        stop,
        move |stream, peer, draining| {
            let counted = counted.clone();
            let logged = app.clone().layer(axum::middleware::from_fn(move |request, next| {
                access_log::logged(counted.clone(), client.to_string(), peer, request, next)
            }));
            serve_http(stream, logged, limits, draining)
        },
    )
    .await
}

/// What one TLS connection is served with.
struct TlsConnection {
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    trust: Arc<TrustStore>,
    metrics: Arc<Metrics>,
    limits: ConnectionLimits,
    draining: Draining,
}

impl TlsConnection {
    async fn serve(self, stream: tokio::net::TcpStream, peer: SocketAddr) -> Result<()> {
        let TlsConnection {
            acceptor,
            app,
            trust,
            metrics,
            limits,
            draining,
        } = self;
        let tls_stream = tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(stream))
            .await
            .context("TLS handshake timed out")?
            .context("TLS handshake")?;
        // Trust is decided for every request, not once per connection: a client
        // removed with `trust remove` is refused on its next request, even on a
        // connection kept alive. An untrusted request reaches no handler but
        // `GET /1.0`, which answers it as Incus does ("auth": "untrusted").
        let certificate: Option<Arc<Vec<u8>>> = tls_stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|cert| Arc::new(cert.as_ref().to_vec()));
        tracing::debug!(%peer, client_certificate = certificate.is_some(), "connection");
        // Its fingerprint, for `GET /1.0`'s `auth_user_name`, and its name in
        // the trust store, for the access log: once per connection.
        let fingerprint = certificate.as_deref().map(|cert| crate::digest::sha256_hex(cert));
        let name = fingerprint
            .as_deref()
            .and_then(|fingerprint| trust.name_of(fingerprint));
        let guard = move |mut request: axum::extract::Request, next: axum::middleware::Next| {
            let client = match (certificate.as_deref(), &fingerprint) {
                (Some(cert), Some(fingerprint)) if trust.contains(cert) => {
                    Client::Trusted(fingerprint.clone())
                }
                _ => Client::Untrusted,
            };
            // Who asked, for the access log: the trust store's name for
            // the certificate, else its fingerprint's first 16 digits.
            let who = match (&client, &fingerprint) {
                (Client::Trusted(fingerprint), _) => {
                    name.clone().unwrap_or_else(|| fingerprint[..16].to_string())
                }
                (Client::Untrusted, Some(fingerprint)) => format!("untrusted {}", &fingerprint[..16]),
                (Client::Untrusted, None) => "no certificate".to_string(),
            };
            let allowed = matches!(client, Client::Trusted(_))
                || (request.method() == axum::http::Method::GET && request.uri().path() == "/1.0");
            request.extensions_mut().insert(client);
            let entry = access_log::Entry::begin(metrics.clone(), who, peer, &request);
            async move {
                let response = match allowed {
                    true => next.run(request).await,
                    false => error(StatusCode::FORBIDDEN, "not authorized"),
                };
                entry.finish(&response);
                response
            }
        };
        serve_http(
            tls_stream,
            app.layer(axum::middleware::from_fn(guard)),
            limits,
            draining,
        )
        .await
    }
}
