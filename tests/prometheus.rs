//! `serve`'s `/metrics`, read by a real Prometheus (Debian's `prometheus`,
//! which `scripts/test` installs) with the README's scrape job and alert
//! rules: Prometheus scrapes over mutual TLS with its own client
//! certificate, its HTTP API gives the values back, `promtool` checks the
//! exposition and the rules, and a baseline that shrinks fires the
//! README's alert.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::util::{Nodecache, kill_after, record_hardware, recorded_server, stderr};

/// The YAML block of the README between `<!-- NAME -->` and `<!-- /NAME -->`.
fn readme_block(name: &str) -> String {
    let readme = include_str!("../README.md");
    let start = readme
        .find(&format!("<!-- {name} -->"))
        .unwrap_or_else(|| panic!("the README has no <!-- {name} --> block"));
    let end = readme[start..].find(&format!("<!-- /{name} -->")).unwrap() + start;
    let block = &readme[start..end];
    let body = block.split_once("```yaml\n").unwrap().1;
    body.split_once("```").unwrap().0.to_string()
}

/// A Prometheus server, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _bounded: crate::util::KillAfter,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &Path, config: &Path) -> Prometheus {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian's prometheus package; scripts/test installs it)");
        let bounded = kill_after(child.id(), std::time::Duration::from_secs(300));
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _bounded: bounded,
        }
    }

    /// `GET /api/v1/PATH` through curl: the `data` of a success, or `None`
    /// while Prometheus does not answer yet.
    fn api(&self, path: &str) -> Option<Value> {
        // `query?query=PROMQL`: the PromQL is URL-encoded by curl.
        let (path, query) = match path.split_once("?query=") {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        let mut curl = Command::new("curl");
        curl.args(["--silent", "--fail", "--globoff", "--get"])
            .arg(format!("{}/api/v1/{path}", self.url));
        if let Some(query) = query {
            curl.arg("--data-urlencode").arg(format!("query={query}"));
        }
        let output = curl.output().expect("curl");
        let answer: Value = serde_json::from_slice(&output.stdout).ok()?;
        (answer["status"] == "success").then(|| answer["data"].clone())
    }

    /// Asks `path` until `ready` accepts the answer: Prometheus scrapes and
    /// evaluates on its own schedule (every second here), so the test waits
    /// for the event, a bounded number of times.
    fn wait_for(&self, path: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..240 {
            if let Some(data) = self.api(path).filter(|data| ready(data)) {
                return data;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        panic!("Prometheus never showed {what}: {:?}", self.api(path));
    }

    /// The series of an instant query, as (labels, value).
    fn query(&self, query: &str, what: &str, series: usize) -> Vec<(Value, f64)> {
        let data = self.wait_for(&format!("query?query={query}"), what, |data| {
            data["result"].as_array().is_some_and(|r| r.len() == series)
        });
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|one| {
                (
                    one["metric"].clone(),
                    one["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }
}

/// A client certificate made by openssl, as an operator makes Prometheus's.
fn openssl_client_certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("prometheus.crt"), dir.join("prometheus.key"));
    let output = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args(["-days", "2", "-subj", "/CN=prometheus", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(output.status.success(), "{}", stderr(&output));
    (cert, key)
}

#[test]
fn a_real_prometheus_scrapes_serve_over_mutual_tls_and_the_readme_alert_fires() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc/prometheus/nodecache");
    std::fs::create_dir_all(&etc).unwrap();
    let state = dir.path().join("node-a-state");
    let served = Nodecache::new()
        .env("NODECACHE_STATE_DIR", &state)
        .text(&["identity", "--pem"]);
    std::fs::write(etc.join("node-a.crt"), served).unwrap();
    openssl_client_certificate(&etc);
    Nodecache::new().env("NODECACHE_STATE_DIR", &state).text(&[
        "trust",
        "add",
        etc.join("prometheus.crt").to_str().unwrap(),
        "--name",
        "prometheus",
    ]);

    // Two recorded members; b's hardware changes later.
    let flags = ["avx", "fpu", "hle", "rtm", "sse2"];
    let (a, _) = recorded_server(dir.path(), "a", &flags);
    let (b, b_file) = recorded_server(dir.path(), "b", &flags);
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(
        &cluster,
        format!(
            "[policy]\nrevalidate-after = \"1ms\"\n\n[[member]]\nname = \"a\"\nurl = \"{}\"\ngroups = [\"fast\"]\n\n[[member]]\nname = \"b\"\nurl = \"{}\"\n",
            a.url, b.url
        ),
    )
    .unwrap();
    let mut command = Command::new(crate::util::BIN);
    command
        .arg("--state-dir")
        .arg(&state)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg("--cluster")
        .arg(&cluster)
        .args(["serve", "--listen", "127.0.0.1:0"]);
    let serve = crate::util::LoggedServe::start(command);

    // The README's job and rules, with this test's paths and address.
    let job = readme_block("scrape-job")
        .replace("/etc/prometheus/nodecache/", &format!("{}/", etc.display()))
        .replace("node-a.example:8443", &serve.address);
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, readme_block("alert-rules")).unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n{job}",
            rules.display()
        ),
    )
    .unwrap();
    let check = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        stderr(&check)
    );
    let check = Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check config: {}",
        stderr(&check)
    );

    let prometheus = Prometheus::start(dir.path(), &config);
    let up = prometheus.query("up", "the target up", 1);
    assert_eq!(
        up[0].1,
        1.0,
        "{up:?}: {}",
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap()
    );
    // Each node, the cluster and its group, the policy, the requests.
    // (A node's source label moves from remote to revalidated between
    // scrapes: counted by node, never two series of one node.)
    let failing = prometheus.query("nodecache_node_failing", "each node", 2);
    let nodes: Vec<&str> = failing
        .iter()
        .map(|(labels, _)| labels["node"].as_str().unwrap())
        .collect();
    assert!(nodes.contains(&"a") && nodes.contains(&"b"), "{failing:?}");
    assert!(failing.iter().all(|(_, value)| *value == 0.0), "{failing:?}");
    let sources = prometheus.query("count by (node) (nodecache_node_source)", "each node's source", 2);
    assert!(sources.iter().all(|(_, count)| *count == 1.0), "{sources:?}");
    let baseline = prometheus.query("nodecache_baseline_flags", "the baselines", 2);
    for (labels, value) in &baseline {
        assert_eq!(*value, flags.len() as f64, "{labels}");
    }
    let scopes: Vec<&str> = baseline
        .iter()
        .map(|(labels, _)| labels["scope"].as_str().unwrap())
        .collect();
    assert!(
        scopes.contains(&"cluster") && scopes.contains(&"group fast"),
        "{scopes:?}"
    );
    let policy = prometheus.query("nodecache_policy_info", "the policy", 1);
    assert_eq!(policy[0].0["name"], "revalidate");
    let scrapes = prometheus.query(
        "nodecache_http_requests_total{endpoint=\"/metrics\",status=\"200\"}",
        "its own scrapes counted",
        1,
    );
    assert!(scrapes[0].1 >= 1.0);
    prometheus.query(
        "nodecache_http_request_duration_seconds_count",
        "the latency histogram",
        1,
    );
    prometheus.query("nodecache_connections_open", "open connections", 1);

    // promtool checks the exposition itself, as curl reads it over mTLS.
    let exposition = Command::new("curl")
        .args(["--silent", "--fail", "--cacert"])
        .arg(etc.join("node-a.crt"))
        .arg("--cert")
        .arg(etc.join("prometheus.crt"))
        .arg("--key")
        .arg(etc.join("prometheus.key"))
        .arg(format!("https://{}/metrics", serve.address))
        .output()
        .unwrap();
    assert!(exposition.status.success(), "{}", stderr(&exposition));
    let checked = crate::util::output_with_stdin(
        Command::new("promtool").args(["check", "metrics"]),
        &exposition.stdout,
    );
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        stderr(&checked)
    );

    // b loses hle and rtm: the next scrape's baseline shrinks, and the
    // README's alert fires in Prometheus.
    record_hardware(&b_file, &["avx", "fpu", "sse2"], "0xf0");
    // (Waiting is the assertion: it fails unless the alert fires.)
    prometheus.wait_for("alerts", "NodecacheBaselineShrank firing", |data| {
        data["alerts"].as_array().is_some_and(|alerts| {
            alerts.iter().any(|alert| {
                alert["labels"]["alertname"] == "NodecacheBaselineShrank"
                    && alert["labels"]["scope"] == "cluster"
                    && alert["state"] == "firing"
            })
        })
    });
    let changed = prometheus.query(
        "nodecache_baseline_flags{scope=\"cluster\"}",
        "the cluster's baseline",
        1,
    );
    assert_eq!(changed[0].1, 3.0);
    serve.stop();
}
