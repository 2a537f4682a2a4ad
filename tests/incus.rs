//! A real Incus daemon as a peer: our client reads its `/1.0/resources` over
//! HTTPS with a trusted client certificate, `cpu-flags` works over a cluster
//! mixing Incus and nodecache servers, and our probe agrees with Incus's.
//!
//! Needs `incusd` (Debian's incus-base, installed by .ci/run) and root. The
//! daemon runs in a private INCUS_DIR and is stopped when the test ends.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use crate::util::{BIN, INCUS_FIXTURE, Nodecache, http_get, http_get_json, spawn_serve, tls_table};

pub(crate) const INCUSD: &str = "/usr/libexec/incus/incusd";

/// The Incus these tests were measured against: the leaves only one side has
/// (`ONE_SIDED`, `VOLATILE`) and the `--apply` answer are its. Another
/// version fails here, by name, rather than somewhere in a comparison.
pub(crate) const INCUS_VERSION: &str = "6.0.4";

/// An incusd with its own state directory, stopped on drop.
struct Incus {
    dir: PathBuf,
    daemon: Child,
}

impl Incus {
    fn start(dir: &Path) -> Incus {
        assert!(
            Path::new(INCUSD).exists(),
            "{INCUSD} is missing: install incus-base from bookworm-backports (see .ci/run)"
        );
        let version = Command::new(INCUSD).arg("--version").output().unwrap();
        let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
        assert_eq!(
            version, INCUS_VERSION,
            "these tests were measured against Incus {INCUS_VERSION} (incus-base from \
             bookworm-backports); this machine has {version}: measure ONE_SIDED, VOLATILE \
             and the --apply answer again"
        );
        std::fs::create_dir_all(dir).unwrap();
        let daemon = Command::new(INCUSD)
            .args(["--group", "incus-admin", "--logfile"])
            .arg(dir.join("incusd.log"))
            .env("INCUS_DIR", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start incusd");
        let incus = Incus {
            dir: dir.to_path_buf(),
            daemon,
        };
        let ready = Command::new(INCUSD)
            .args(["waitready", "--timeout=60"])
            .env("INCUS_DIR", dir)
            .status()
            .unwrap();
        assert!(ready.success(), "incusd did not become ready");
        incus
    }

    fn client(&self, args: &[&str]) {
        self.output(args, None);
    }

    /// What `incus ARGS` prints, given `input` on its standard input.
    fn output(&self, args: &[&str], input: Option<&str>) -> String {
        let output = self.attempt(args, input);
        assert!(
            output.status.success(),
            "incus {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// `incus ARGS`, given `input` on its standard input, as it ended.
    fn attempt(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut child = Command::new("incus")
            .args(args)
            .env("INCUS_DIR", &self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, input.unwrap_or("").as_bytes()).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    /// Makes the daemon answer HTTPS on a free port of 127.0.0.1; returns the
    /// port. Incus cannot bind port 0 and say which port it got, so a port
    /// the kernel just gave out is offered; Incus binds it as the setting is
    /// applied, and if another process took it meanwhile ("address already
    /// in use") another port is tried.
    fn listen_https(&self) -> u16 {
        for _ in 0..10 {
            let port = free_port();
            let address = format!("127.0.0.1:{port}");
            let set = self.attempt(&["config", "set", "core.https_address", &address], None);
            let error = String::from_utf8_lossy(&set.stderr);
            if set.status.success() {
                return port;
            }
            assert!(
                error.contains("address already in use"),
                "incus config set: {error}"
            );
        }
        panic!("ten free ports were taken before Incus could bind them")
    }

    /// A nodecache identity made in `state_dir`, its certificate trusted by
    /// this Incus; returns the certificate's path (its key beside it).
    fn trust_new_client(&self, state_dir: &Path) -> PathBuf {
        let made = Command::new(BIN)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("identity")
            .output()
            .unwrap();
        assert!(made.status.success());
        let certificate = state_dir.join("server.crt");
        self.client(&[
            "config",
            "trust",
            "add-certificate",
            certificate.to_str().unwrap(),
            "--name",
            "nodecache",
        ]);
        certificate
    }

    /// Stops the daemon now (SIGTERM, then reaped).
    fn stop(&mut self) {
        if !matches!(self.daemon.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.daemon.id().to_string())
            .status();
        let _ = self.daemon.wait();
    }
}

impl Drop for Incus {
    fn drop(&mut self) {
        // SIGTERM lets incusd shut down cleanly.
        self.stop();
    }
}

fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A port the kernel gives out on `address`, released for a daemon to bind.
/// On 127.0.0.2 nothing else in this suite binds or connects from, so the
/// port stays free for the member that joins there.
fn free_port_on(address: &str) -> u16 {
    TcpListener::bind((address, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nodecache(dir: &Path, cluster: &Path, args: &[&str]) -> Output {
    Nodecache::new()
        .cache_dir(&dir.join("cache"))
        .cluster(cluster)
        .output(args)
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Leaves that may differ between two reads of the same machine a moment
/// apart, by path prefix, and why.
const VOLATILE: &[(&str, &str)] = &[
    ("/load/", "load averages move between the two reads"),
    ("/memory/used", "memory in use moves between the two reads"),
    (
        "/memory/nodes/*/used",
        "memory in use moves between the two reads",
    ),
];

/// Leaves only one side has, by path prefix, and why.
const ONE_SIDED: &[(&str, &str)] = &[
    (
        "/nodecache_hypervisor/",
        "nodecache's extension (resources_nodecache_hypervisor): what the node's KVM can give a guest",
    ),
    (
        "/cpu/sockets/*/address_sizes/",
        "nodecache adds the physical and virtual address widths (a guest's \
         phys-bits must fit every host); Incus 6.0.4 predates the field",
    ),
    (
        "/cpu/sockets/*/nodecache_microcode",
        "nodecache's extension (resources_nodecache_microcode): the microcode \
         revision, so a history can name an update that took features away",
    ),
];

/// The whole `api.Resources` document of this machine as Incus and as
/// nodecache write it: every leaf path, equal, except those listed above
/// with their reason. Prints the leaf counts.
pub(crate) fn compare_leaf_by_leaf(theirs: &Value, ours: &Value) {
    let (their_leaves, our_leaves) = (leaves(theirs), leaves(ours));
    let listed = |path: &str, list: &[(&str, &str)]| {
        list.iter().any(|(prefix, _)| {
            let pattern: Vec<&str> = prefix.split('/').collect();
            let parts: Vec<&str> = path.split('/').collect();
            parts.len() >= pattern.len()
                && pattern.iter().zip(&parts).enumerate().all(|(i, (want, have))| {
                    *want == "*" || want == have || (i == pattern.len() - 1 && want.is_empty())
                })
        })
    };
    let mut unexplained = Vec::new();
    let mut equal = 0;
    for (path, value) in &their_leaves {
        match our_leaves.get(path) {
            Some(ours) if ours == value => equal += 1,
            Some(_) if listed(path, VOLATILE) => {}
            None if listed(path, ONE_SIDED) => {}
            other => unexplained.push(format!("{path}: Incus {value}, nodecache {other:?}")),
        }
    }
    for path in our_leaves.keys() {
        if !their_leaves.contains_key(path) && !listed(path, ONE_SIDED) {
            unexplained.push(format!("{path}: only nodecache has it"));
        }
    }
    eprintln!(
        "whole document: Incus {} leaves, nodecache {}, {equal} equal",
        their_leaves.len(),
        our_leaves.len()
    );
    assert!(
        unexplained.is_empty(),
        "unexplained differences:\n{}",
        unexplained.join("\n")
    );
}

/// Every leaf of a JSON tree by its path (`/cpu/sockets/0/name`); an empty
/// object or array is a leaf too.
fn leaves(value: &Value) -> std::collections::BTreeMap<String, Value> {
    fn walk(value: &Value, path: String, out: &mut std::collections::BTreeMap<String, Value>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    walk(child, format!("{path}/{key}"), out);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, format!("{path}/{i}"), out);
                }
            }
            leaf => {
                out.insert(path, leaf.clone());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(value, String::new(), &mut out);
    out
}

fn flag_set(core: &Value) -> BTreeSet<String> {
    core["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

/// A real Incus as one member beside a recorded older node and this
/// machine: Incus's document read as our own, the common set over all
/// three, every member revalidated, and Incus's own refusal passed on.
#[test]
fn a_real_incus_is_a_peer() {
    let peer = IncusPeer::start();
    let ours = peer.incus_resources_agree_with_our_probe();
    let report = peer.cpu_flags_spans_incus_nodecache_and_this_machine(&ours);
    peer.every_member_revalidates(&report);
    peer.a_stranger_gets_incus_own_refusal();
}

/// A real Incus, a `serve` of a recorded older node, and a cluster file
/// naming them and this machine.
/// Fields drop in order: the servers stop before their directory goes.
struct IncusPeer {
    older: crate::util::Server,
    incus: Incus,
    port: u16,
    /// The older node's document: this machine's fixture without AVX-512.
    recorded: Value,
    cluster: PathBuf,
    dir: tempfile::TempDir,
}

impl IncusPeer {
    fn start() -> IncusPeer {
        let dir = tempfile::tempdir().unwrap();
        let incus = Incus::start(&dir.path().join("incus"));
        let port = incus.listen_https();
        let client_cert = incus.trust_new_client(&dir.path().join("identity"));
        // A recorded older node that lacks some of this machine's flags.
        let mut recorded: Value = serde_json::from_str(INCUS_FIXTURE).unwrap();
        for core in recorded["metadata"]["cpu"]["sockets"][0]["cores"]
            .as_array_mut()
            .unwrap()
        {
            let flags: Vec<Value> = core["flags"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| !f.as_str().unwrap().starts_with("avx512"))
                .cloned()
                .collect();
            core["flags"] = Value::Array(flags);
        }
        let recorded_file = dir.path().join("older.json");
        std::fs::write(&recorded_file, serde_json::to_vec(&recorded).unwrap()).unwrap();
        let older = spawn_serve(
            None,
            &[
                "--insecure-http",
                "--resources-file",
                recorded_file.to_str().unwrap(),
            ],
        );
        let cluster = dir.path().join("cluster.toml");
        let peer = IncusPeer {
            dir,
            incus,
            port,
            recorded,
            older,
            cluster,
        };
        peer.write_cluster(&client_cert);
        peer
    }

    /// The cluster file, with `client` as the identity nodecache presents.
    fn write_cluster(&self, client: &Path) {
        std::fs::write(
            &self.cluster,
            format!(
                "local = \"me\"\ndeadline = \"10s\"\n{}\
                 [[member]]\nname = \"me\"\n[[member]]\nname = \"incus\"\nurl = \"https://127.0.0.1:{}\"\n\
                 [[member]]\nname = \"older\"\nurl = \"{}\"\n",
                tls_table(
                    client,
                    &client.with_extension("key"),
                    &self.incus.dir.join("server.crt")
                ),
                self.port,
                self.older.url
            ),
        )
        .unwrap();
    }

    fn json(&self, args: &[&str]) -> Value {
        json_of(&nodecache(self.dir.path(), &self.cluster, args))
    }

    /// Our client reads Incus's resources, and they agree with our own
    /// probe, core by core and flag by flag. Returns our document.
    fn incus_resources_agree_with_our_probe(&self) -> Value {
        let theirs = self.json(&["resources", "incus"]);
        let ours = self.json(&["resources", "me"]);
        compare_leaf_by_leaf(&theirs, &ours);
        assert_eq!(theirs["cpu"]["architecture"], ours["cpu"]["architecture"]);
        assert_eq!(theirs["cpu"]["total"], ours["cpu"]["total"]);
        let (their_sockets, our_sockets) = (
            theirs["cpu"]["sockets"].as_array().unwrap(),
            ours["cpu"]["sockets"].as_array().unwrap(),
        );
        assert_eq!(their_sockets.len(), our_sockets.len(), "socket count");
        for (their, our) in their_sockets.iter().zip(our_sockets) {
            for field in ["socket", "name", "vendor", "cache"] {
                assert_eq!(their[field], our[field], "socket {field}");
            }
            let (their_cores, our_cores) = (
                their["cores"].as_array().unwrap(),
                our["cores"].as_array().unwrap(),
            );
            assert_eq!(their_cores.len(), our_cores.len(), "core count");
            for (their_core, our_core) in their_cores.iter().zip(our_cores) {
                assert_eq!(their_core["core"], our_core["core"]);
                assert_eq!(their_core["die"], our_core["die"]);
                assert_eq!(
                    their_core["threads"], our_core["threads"],
                    "threads of core {}",
                    our_core["core"]
                );
                // The same flags in the same (kernel) order.
                assert_eq!(
                    their_core["flags"], our_core["flags"],
                    "flags of core {}",
                    our_core["core"]
                );
            }
        }
        assert_eq!(theirs["memory"]["total"], ours["memory"]["total"], "memory total");
        assert_eq!(
            theirs["memory"]["nodes"].as_array().map(Vec::len),
            ours["memory"]["nodes"].as_array().map(Vec::len)
        );
        ours
    }

    /// The common set over Incus, the older nodecache node and this
    /// machine: what every core of the three has, AVX-512 not among it.
    fn cpu_flags_spans_incus_nodecache_and_this_machine(&self, ours: &Value) -> Value {
        let report = self.json(&["cpu-flags", "--format", "json"]);
        let sources: Vec<&str> = report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["source"].as_str().unwrap())
            .collect();
        assert_eq!(
            sources,
            ["cache", "cache", "remote"],
            "me and incus were cached by `resources`"
        );
        let flags = crate::util::flags_of(&report);
        let mut expected = flag_set(&ours["cpu"]["sockets"][0]["cores"][0]);
        for core in self.recorded["metadata"]["cpu"]["sockets"][0]["cores"]
            .as_array()
            .unwrap()
        {
            expected = expected.intersection(&flag_set(core)).cloned().collect();
        }
        assert_eq!(flags, expected);
        assert!(!flags.iter().any(|f| f.starts_with("avx512")));
        report
    }

    /// Revalidation: every entry above was written with its validator.
    /// This machine is checked by fingerprint, nodecache serve answers 304,
    /// and Incus, which sends no ETag, is fetched and compared by
    /// fingerprint.
    fn every_member_revalidates(&self, report: &Value) {
        let revalidated = self.json(&[
            "--policy",
            "revalidate",
            "--set",
            "revalidate-after=0s",
            "cpu-flags",
            "--format",
            "json",
        ]);
        let sources: Vec<&str> = revalidated["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["source"].as_str().unwrap())
            .collect();
        assert_eq!(sources, ["revalidated", "revalidated", "revalidated"]);
        assert_eq!(revalidated["flags"], report["flags"]);
    }

    /// An untrusted client certificate: Incus's own refusal is passed on.
    fn a_stranger_gets_incus_own_refusal(&self) {
        let stranger = self.dir.path().join("stranger");
        assert!(
            Command::new(BIN)
                .arg("--state-dir")
                .arg(&stranger)
                .arg("identity")
                .status()
                .unwrap()
                .success()
        );
        self.write_cluster(&stranger.join("server.crt"));
        std::fs::remove_dir_all(self.dir.path().join("cache")).unwrap();
        let denied = self.json(&["cpu-flags", "--format", "json", "--allow-partial"]);
        let incus_node = &denied["nodes"][1];
        assert_eq!(incus_node["source"], "error");
        // Incus's error envelope, not the status line nodecache falls back on
        // for a body that is no envelope ("HTTP 403 ...").
        let error = incus_node["error"].as_str().unwrap();
        assert!(
            error.starts_with("remote error: ") && error.contains(": 403 ") && !error.contains("HTTP 403"),
            "{incus_node}"
        );
        println!("Incus refused the stranger: {error}");
    }
}

/// The real Incus client against `serve`: a client nodecache trusts adds it
/// as a remote and reads its resources with `incus query` and `incus info
/// --resources` (which needs `resources_v2` among the API extensions); a
/// client it does not trust is answered as Incus answers one, 200 with
/// `"auth": "untrusted"` on `/1.0` (the client then asks for a trust
/// token) and 403 everywhere else.
#[test]
fn a_real_incus_client_reads_resources_from_serve() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let server = spawn_serve(Some(&state), &[]);
    let incus = |conf: &Path, args: &[&str]| {
        Command::new("incus")
            .args(args)
            .env("INCUS_CONF", conf)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let (trusted, stranger) = (dir.path().join("trusted"), dir.path().join("stranger"));
    for conf in [&trusted, &stranger] {
        std::fs::create_dir_all(conf).unwrap();
        let generated = incus(conf, &["remote", "generate-certificate"]);
        assert!(generated.status.success(), "{generated:?}");
    }
    let added = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .args(["trust", "add"])
        .arg(trusted.join("client.crt"))
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");

    let remote = ["remote", "add", "nc", &server.url, "--accept-certificate"];
    let ok = |output: Output| {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    ok(incus(&trusted, &remote));
    let queried: Value = serde_json::from_str(&ok(incus(&trusted, &["query", "nc:/1.0/resources"]))).unwrap();
    let ours = json_of(&nodecache_resources(&dir.path().join("cache")));
    assert_eq!(queried["cpu"]["sockets"], ours["cpu"]["sockets"]);
    let info = ok(incus(&trusted, &["info", "--resources", "nc:"]));
    for line in ["CPU:", "Architecture: x86_64", "Memory:", "Total:"] {
        assert!(info.contains(line), "{line:?} not in:\n{info}");
    }
    let server_info: Value = serde_json::from_str(&ok(incus(&trusted, &["query", "nc:/1.0"]))).unwrap();
    assert_eq!(server_info["auth"], "trusted");

    // No certificate at all: Incus's untrusted answer, nothing about the
    // machine; the resources stay closed.
    let curl = |path: &str| {
        let output = Command::new("curl")
            .args(["-s", "--cacert"])
            .arg(state.join("server.crt"))
            .arg(format!("{}{path}", server.url))
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let anonymous = curl("/1.0");
    assert_eq!(anonymous["status_code"], 200);
    assert_eq!(anonymous["metadata"]["auth"], "untrusted");
    assert_eq!(anonymous["metadata"]["auth_methods"], serde_json::json!(["tls"]));
    assert!(anonymous["metadata"].get("environment").is_none(), "{anonymous}");
    assert_eq!(curl("/1.0/resources")["error_code"], 403);

    // The stranger: Incus's untrusted answer starts the trust flow...
    let untrusted = incus(&stranger, &remote);
    assert!(!untrusted.status.success());
    let said = String::from_utf8_lossy(&untrusted.stdout) + String::from_utf8_lossy(&untrusted.stderr);
    assert!(said.contains("Trust token for nc"), "{said}");
    // ... and a token nodecache does not issue is refused.
    let mut with_token = remote.to_vec();
    with_token.extend(["--token", "not-a-token"]);
    let refused = incus(&stranger, &with_token);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not authorized"),
        "{refused:?}"
    );
}

/// `nodecache resources` on this machine, freshly probed.
fn nodecache_resources(cache: &Path) -> Output {
    Nodecache::new()
        .cache_dir(cache)
        .output(&["--set", "max-age=0s", "resources"])
}

/// A real two-member Incus cluster on loopback (node1 on 127.0.0.1, node2
/// joined on 127.0.0.2): nodecache takes its members from Incus, asks each
/// Incus server for its resources, narrows to an Incus cluster group, and
/// lists a member Incus reports offline as offline, without data.
#[test]
fn members_come_from_a_real_incus_cluster() {
    let mut cluster = IncusCluster::start();
    cluster.members_are_the_ones_incus_lists();
    cluster.incus_groups_are_nodecache_groups();
    cluster.apply_changes_nothing_on_an_incus_without_group_cpu_keys();
    let server = cluster.serve();
    cluster.serve_reads_the_member_list_per_request(&server);
    cluster.stop_node2_until_incus_marks_it_offline();
    cluster.an_offline_member_has_no_data(&server);
}

/// A real two-member Incus cluster on loopback (node2 also in group
/// `gen9`), a client it trusts, and a cluster file naming only Incus.
/// Fields drop in order: the daemons stop (node2 first, as it joined
/// last) before their directory goes.
struct IncusCluster {
    node2: Incus,
    node1: Incus,
    cluster: PathBuf,
    dir: tempfile::TempDir,
}

/// Each node of a report, by name and source.
fn names_and_sources(report: &Value) -> Vec<(String, String)> {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

impl IncusCluster {
    fn start() -> IncusCluster {
        let dir = tempfile::tempdir().unwrap();
        let node1 = Incus::start(&dir.path().join("node1"));
        let port1 = node1.listen_https();
        node1.client(&["cluster", "enable", "node1"]);
        node1.client(&["config", "set", "cluster.offline_threshold", "11"]);
        let token = node1.output(&["cluster", "add", "node2"], None);
        let token = token.lines().last().unwrap().trim().to_string();
        let node2 = Incus::start(&dir.path().join("node2"));
        let port2 = free_port_on("127.0.0.2");
        node2.output(
            &["admin", "init", "--preseed"],
            Some(&format!(
                "cluster:\n  enabled: true\n  server_name: node2\n  server_address: 127.0.0.2:{port2}\n  cluster_token: {token}\n"
            )),
        );
        node1.client(&["cluster", "group", "create", "gen9"]);
        node1.client(&["cluster", "group", "assign", "node2", "default,gen9"]);

        let identity = dir.path().join("identity");
        let client_cert = node1.trust_new_client(&identity);
        let cluster = dir.path().join("cluster.toml");
        std::fs::write(
            &cluster,
            format!(
                "incus = \"https://127.0.0.1:{port1}\"\ndeadline = \"10s\"\n{}",
                tls_table(
                    &client_cert,
                    &identity.join("server.key"),
                    &node1.dir.join("cluster.crt")
                ),
            ),
        )
        .unwrap();
        IncusCluster {
            dir,
            node1,
            node2,
            cluster,
        }
    }

    /// Both Incus servers are asked, at the URLs Incus gives.
    fn members_are_the_ones_incus_lists(&self) {
        let report = json_of(&nodecache(
            self.dir.path(),
            &self.cluster,
            &["cpu-flags", "--format", "json"],
        ));
        assert_eq!(
            names_and_sources(&report),
            [
                ("node1".to_string(), "remote".to_string()),
                ("node2".to_string(), "remote".to_string())
            ],
            "both Incus servers asked at the URLs Incus gives"
        );
        assert!(!report["flags"].as_array().unwrap().is_empty());
    }

    /// Incus's cluster group is a nodecache group.
    fn incus_groups_are_nodecache_groups(&self) {
        let gen9 = json_of(&nodecache(
            self.dir.path(),
            &self.cluster,
            &["cpu-flags", "--group", "gen9", "--format", "json"],
        ));
        let gen9_names: Vec<String> = names_and_sources(&gen9)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            gen9_names,
            ["node2"],
            "Incus's cluster group as a nodecache group"
        );
    }

    /// Incus 6.0.4 has no per-group configuration: --apply says so, prints
    /// the keys, and changes nothing.
    fn apply_changes_nothing_on_an_incus_without_group_cpu_keys(&self) {
        let apply = nodecache(
            self.dir.path(),
            &self.cluster,
            &[
                "cpu-flags",
                "--format",
                "incus",
                "--group",
                "gen9",
                "--apply",
                "--yes",
            ],
        );
        let (stdout, stderr) = (
            String::from_utf8_lossy(&apply.stdout),
            String::from_utf8_lossy(&apply.stderr),
        );
        // Exactly 1 (a runtime refusal, README "Exit status"), not 2 or 3.
        assert_eq!(apply.status.code(), Some(1), "{stdout}{stderr}");
        assert!(stdout.contains("instances.vm.cpu.x86_64.flags="), "{stdout}");
        assert!(
            stderr.contains("clustering_groups_vm_cpu_definition") && stderr.contains("nothing was changed"),
            "{stderr}"
        );
        let group = self.node1.output(&["cluster", "group", "show", "gen9"], None);
        assert!(!group.contains("instances.vm.cpu"), "{group}");
    }

    /// serve, given the same cluster file.
    fn serve(&self) -> crate::util::Server {
        Nodecache::new()
            .cache_dir(&self.dir.path().join("serve-cache"))
            .cluster(&self.cluster)
            .serve(&["--insecure-http"])
    }

    /// serve reads Incus's member list per request.
    fn serve_reads_the_member_list_per_request(&self, server: &crate::util::Server) {
        let served = http_get_json(&server.url, "/1.0/cluster/cpu-flags");
        assert_eq!(
            served["metadata"]["nodes"].as_array().unwrap().len(),
            2,
            "{served}"
        );
    }

    /// node2 stops, and Incus marks it offline.
    fn stop_node2_until_incus_marks_it_offline(&mut self) {
        self.node2.stop();
        let started = std::time::Instant::now();
        loop {
            let member = self.node1.output(&["query", "/1.0/cluster/members/node2"], None);
            let status: Value = serde_json::from_str(&member).unwrap();
            if status["status"] == "Offline" {
                break;
            }
            assert!(
                started.elapsed().as_secs() < 90,
                "Incus never marked node2 offline: {member}"
            );
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }

    /// An offline member has no data: the CLI refuses without it, or
    /// answers partially naming it; serve answers 503 naming it.
    fn an_offline_member_has_no_data(&self, server: &crate::util::Server) {
        let fresh = ["--set", "max-age=0s"];
        let refused = nodecache(
            self.dir.path(),
            &self.cluster,
            &["cpu-flags", "--format", "json", fresh[0], fresh[1]],
        );
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "no answer without node2's data");
        assert!(stderr.contains("node2") && stderr.contains("offline"), "{stderr}");
        let partial = json_of(&nodecache(
            self.dir.path(),
            &self.cluster,
            &[
                "cpu-flags",
                "--format",
                "json",
                "--allow-partial",
                fresh[0],
                fresh[1],
            ],
        ));
        let answer = http_get(&server.url, "/1.0/cluster/cpu-flags", &[]);
        assert_eq!(answer.status, 503, "serve saw node2 go offline: {}", answer.body);
        assert!(
            answer.body.contains("node2") && answer.body.contains("Incus reports it Offline"),
            "{}",
            answer.body
        );
        let answer = http_get(&server.url, "/1.0/cluster/resources/node2", &[]);
        assert_eq!(
            answer.status, 503,
            "node2's resources while offline: {}",
            answer.body
        );
        assert!(
            answer.body.contains("node2 is offline") && answer.body.contains("Incus reports it Offline"),
            "{}",
            answer.body
        );
        let node2_entry = &partial["nodes"][1];
        assert_eq!(node2_entry["name"], "node2");
        assert!(
            node2_entry["error"]
                .as_str()
                .unwrap_or("")
                .contains("Incus reports it Offline"),
            "{node2_entry}"
        );
    }
}
