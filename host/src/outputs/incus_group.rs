//! `cpu-flags --format incus --group G --apply`: the CPU definition found
//! for group G's members set on the Incus cluster group G (the cluster
//! file's `incus = "…"`), so Incus's per-group CPU definitions follow the
//! hardware. The change is shown first and made only with `--yes`.
//!
//! Per-group configuration arrived after Incus 6.0 (API extension
//! `clustering_groups_vm_cpu_definition`): a server without it is told
//! apart from its `GET /1.0` and nothing is sent to it.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::envelope::Envelope;
use crate::cluster_file::{ClusterFile, is_group_name};
use crate::net::remote::{body_within, cluster_client, error_chain};

/// The API extension a server needs for CPU keys on cluster groups.
pub const EXTENSION: &str = "clustering_groups_vm_cpu_definition";

/// The writable part of an Incus cluster group (`PUT` takes it whole).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ClusterGroup {
    #[serde(default)]
    description: String,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

/// What applying would change: each key's current value (absent: unset)
/// and the new one, for keys that differ.
pub type Changes = Vec<(String, Option<String>, String)>;

pub fn changes(current: &BTreeMap<String, String>, wanted: &BTreeMap<String, String>) -> Changes {
    wanted
        .iter()
        .filter(|(key, value)| current.get(*key) != Some(*value))
        .map(|(key, value)| (key.clone(), current.get(key).cloned(), value.clone()))
        .collect()
}

/// The change as an operator reads it, one key per line.
pub fn describe(group: &str, changes: &Changes) -> String {
    if changes.is_empty() {
        return format!("Incus cluster group {group} already has these keys\n");
    }
    let mut text = format!("Incus cluster group {group}:\n");
    for (key, old, new) in changes {
        text.push_str(&format!(
            "  {key}: {} -> {new}\n",
            old.as_deref().unwrap_or("(unset)")
        ));
    }
    text
}

/// A group name that is one URL path segment (not `.` or `..`).
fn check_group(group: &str) -> Result<()> {
    if !is_group_name(group) || group.bytes().all(|b| b == b'.') {
        bail!("{group:?} is not an Incus cluster group name");
    }
    Ok(())
}

/// Shows, and with `yes` makes, the change of group `group`'s keys
/// (within the cluster file's deadline). Returns the text to show.
pub async fn apply(
    membership: &ClusterFile,
    group: &str,
    keys: &BTreeMap<String, String>,
    yes: bool,
) -> Result<String> {
    check_group(group)?;
    tokio::time::timeout(membership.deadline, apply_within(membership, group, keys, yes))
        .await
        .map_err(|_| {
            anyhow!(
                "Incus did not answer within {:.1} s",
                membership.deadline.as_secs_f64()
            )
        })?
}

async fn apply_within(
    membership: &ClusterFile,
    group: &str,
    wanted: &BTreeMap<String, String>,
    yes: bool,
) -> Result<String> {
    let base = membership.incus.as_deref().ok_or_else(|| {
        anyhow!("--apply sets keys on an Incus cluster: the cluster file needs incus = \"https://…\"")
    })?;
    let client = cluster_client(membership).context("the cluster file's [tls], for incus")?;
    let cap = membership.max_response_bytes;
    let server: Value = get(&client, &format!("{base}/1.0"), cap).await?.0;
    let extensions = server["api_extensions"].as_array().cloned().unwrap_or_default();
    if !extensions.iter().any(|e| e == EXTENSION) {
        let version = server["environment"]["server_version"]
            .as_str()
            .unwrap_or("unknown version");
        bail!(
            "{base} (Incus {version}) has no per-group CPU configuration: it lacks the API extension \
             {EXTENSION} (added after Incus 6.0); nothing was changed. The keys above can be set on \
             the instances or profiles of group {group} instead, or on the group after an upgrade"
        );
    }
    let url = format!("{base}/1.0/cluster/groups/{group}");
    let (body, etag) = get(&client, &url, cap).await?;
    let mut current: ClusterGroup =
        serde_json::from_value(body).map_err(|e| anyhow!("{url}: not a cluster group: {e}"))?;
    let changes = changes(&current.config, wanted);
    let mut shown = describe(group, &changes);
    if changes.is_empty() {
        return Ok(shown);
    }
    if !yes {
        shown.push_str("not applied: run again with --yes to set these keys\n");
        return Ok(shown);
    }
    current.config.extend(wanted.clone());
    let mut request = client
        .put(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&current)?);
    if let Some(etag) = etag {
        // Refused if the group changed since it was read.
        request = request.header(reqwest::header::IF_MATCH, etag);
    }
    let (status, _, answer) = incus_answer(request, &url, cap).await?;
    if !status.is_success() || answer.kind == "error" {
        bail!(
            "{url}: Incus refused the change: {} {}",
            answer.error_code,
            answer.error
        );
    }
    shown.push_str("applied\n");
    Ok(shown)
}

/// An Incus GET's metadata and `ETag`.
async fn get(client: &reqwest::Client, url: &str, cap: u64) -> Result<(Value, Option<String>)> {
    let (_, etag, envelope) = incus_answer(client.get(url), url, cap).await?;
    if envelope.kind == "error" {
        bail!("{url}: {} {}", envelope.error_code, envelope.error);
    }
    Ok((envelope.metadata.unwrap_or(Value::Null), etag))
}

/// Sends `request` and reads Incus's answer: its status, `ETag` and
/// envelope, the body capped at `cap` bytes.
async fn incus_answer(
    request: reqwest::RequestBuilder,
    url: &str,
    cap: u64,
) -> Result<(reqwest::StatusCode, Option<String>, Envelope<Value>)> {
    let response = request
        .send()
        .await
        .map_err(|e| anyhow!("{url}: {}", error_chain(&e)))?;
    let status = response.status();
    let etag = response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let envelope = serde_json::from_slice(&body_within(response, url, cap).await?)
        .map_err(|e| anyhow!("{url}: not an Incus answer: {e}"))?;
    Ok((status, etag, envelope))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_keys_that_differ_are_changed() {
        let wanted = keys(&[
            ("instances.vm.cpu.x86_64.baseline", "kvm64"),
            ("instances.vm.cpu.x86_64.flags", "avx,avx2"),
        ]);
        let current: BTreeMap<String, String> = [
            (
                "instances.vm.cpu.x86_64.baseline".to_string(),
                "kvm64".to_string(),
            ),
            ("user.owner".to_string(), "ops".to_string()),
        ]
        .into();
        let changes = changes(&current, &wanted);
        assert_eq!(
            changes,
            [(
                "instances.vm.cpu.x86_64.flags".to_string(),
                None,
                "avx,avx2".to_string()
            )]
        );
        assert_eq!(
            describe("gen9", &changes),
            "Incus cluster group gen9:\n  instances.vm.cpu.x86_64.flags: (unset) -> avx,avx2\n"
        );
    }

    #[test]
    fn group_names_are_one_path_segment() {
        for bad in ["", "..", ".", "a/b", "a b", "a?b"] {
            assert!(check_group(bad).is_err(), "{bad:?}");
        }
        check_group("gen9.rack-a_1").unwrap();
    }

    /// Against a stand-in for an Incus with per-group configuration: the
    /// 6.0.4 packaged here lacks it (tests/incus.rs shows the refusal), so
    /// the path that sets keys is run over real HTTPS on loopback against
    /// a server answering as Incus's cluster group API does, ETag included.
    mod against_a_later_incus {
        use super::super::*;
        use axum::http::{HeaderMap, StatusCode, header};
        use axum::routing::get as route_get;
        use axum::{Json, Router, extract::State};
        use serde_json::json;
        use std::sync::{Arc, Mutex};

        #[derive(Default)]
        struct Group {
            config: BTreeMap<String, String>,
            version: u32,
            /// Someone else edits the group between our read and our write.
            edited_behind_our_back: bool,
        }
        type Shared = Arc<Mutex<Group>>;

        fn etag(version: u32) -> String {
            format!("\"group-{version}\"")
        }

        async fn server_info() -> Json<Value> {
            Json(json!({"type": "sync", "metadata": {"api_extensions": [EXTENSION],
                "environment": {"server_version": "6.19"}}}))
        }

        async fn read_group(State(group): State<Shared>) -> (HeaderMap, Json<Value>) {
            let mut group = group.lock().unwrap();
            let answer = json!({"type": "sync", "metadata": {"name": "gen9",
                "description": "ninth generation", "members": ["node2"], "config": group.config}});
            let mut headers = HeaderMap::new();
            headers.insert(header::ETAG, etag(group.version).parse().unwrap());
            if group.edited_behind_our_back {
                group.version += 1;
            }
            (headers, Json(answer))
        }

        async fn write_group(
            State(group): State<Shared>,
            headers: HeaderMap,
            Json(body): Json<Value>,
        ) -> (StatusCode, Json<Value>) {
            let mut group = group.lock().unwrap();
            if headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) != Some(&etag(group.version)) {
                let refusal = json!({"type": "error", "error_code": 412, "error": "ETag doesn't match"});
                return (StatusCode::PRECONDITION_FAILED, Json(refusal));
            }
            assert_eq!(
                body["members"],
                json!(["node2"]),
                "the rest of the group is sent back"
            );
            group.config = serde_json::from_value(body["config"].clone()).unwrap();
            group.version += 1;
            (StatusCode::OK, Json(json!({"type": "sync", "metadata": {}})))
        }

        /// The stand-in on a loopback port, and a cluster file pinning its certificate.
        async fn later_incus(group: Shared, dir: &std::path::Path) -> ClusterFile {
            let (cert, key) = crate::net::identity::generate_certificate().unwrap();
            let (cert_path, key_path) = (dir.join("incus.crt"), dir.join("incus.key"));
            std::fs::write(&cert_path, cert).unwrap();
            std::fs::write(&key_path, key).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(
                crate::net::tls::server_config(&cert_path, &key_path).unwrap(),
            );
            let app = Router::new()
                .route("/1.0", route_get(server_info))
                .route("/1.0/cluster/groups/gen9", route_get(read_group).put(write_group))
                .with_state(group);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (acceptor, app) = (acceptor.clone(), app.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(stream).await else {
                            return;
                        };
                        let service = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                    });
                }
            });
            let mut membership = ClusterFile::this_machine();
            membership.incus = Some(format!("https://{address}"));
            membership.tls.server_certs = vec![cert_path];
            membership
        }

        const KEYS: &[(&str, &str)] = &[
            ("instances.vm.cpu.x86_64.baseline", "x86-64-v2"),
            ("instances.vm.cpu.x86_64.flags", "avx,avx2"),
        ];

        #[tokio::test]
        async fn keys_are_shown_then_set_with_yes_keeping_the_rest_of_the_group() {
            let dir = tempfile::tempdir().unwrap();
            let group: Shared = Arc::default();
            group
                .lock()
                .unwrap()
                .config
                .insert("user.owner".into(), "ops".into());
            let membership = later_incus(group.clone(), dir.path()).await;

            let shown = apply(&membership, "gen9", &super::keys(KEYS), false)
                .await
                .unwrap();
            assert!(
                shown.contains("instances.vm.cpu.x86_64.flags: (unset) -> avx,avx2"),
                "{shown}"
            );
            assert!(shown.contains("run again with --yes"), "{shown}");
            assert_eq!(
                group.lock().unwrap().version,
                0,
                "nothing is written without --yes"
            );

            let applied = apply(&membership, "gen9", &super::keys(KEYS), true)
                .await
                .unwrap();
            assert!(applied.ends_with("applied\n"), "{applied}");
            let config = group.lock().unwrap().config.clone();
            assert_eq!(config["instances.vm.cpu.x86_64.baseline"], "x86-64-v2");
            assert_eq!(config["instances.vm.cpu.x86_64.flags"], "avx,avx2");
            assert_eq!(config["user.owner"], "ops", "other keys are kept");

            let again = apply(&membership, "gen9", &super::keys(KEYS), true)
                .await
                .unwrap();
            assert_eq!(again, "Incus cluster group gen9 already has these keys\n");
        }

        #[tokio::test]
        async fn a_group_edited_meanwhile_is_not_overwritten() {
            let dir = tempfile::tempdir().unwrap();
            let group: Shared = Arc::default();
            group.lock().unwrap().edited_behind_our_back = true;
            let membership = later_incus(group.clone(), dir.path()).await;
            let error = format!(
                "{:#}",
                apply(&membership, "gen9", &super::keys(KEYS), true)
                    .await
                    .unwrap_err()
            );
            assert!(
                error.contains("Incus refused the change") && error.contains("412"),
                "{error}"
            );
            assert!(group.lock().unwrap().config.is_empty(), "the edit is kept");
        }
    }
}
