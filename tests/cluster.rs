//! Cluster tests with real processes on loopback: several `nodecache serve`
//! members serving recorded CPUs, and misbehaving peers.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::util::{BIN, Nodecache, Server, recorded_node, spawn_serve, stderr};

struct Cluster {
    dir: tempfile::TempDir,
    servers: Vec<(String, Option<Server>)>,
    extra: String,
}

impl Cluster {
    fn file(&self) -> PathBuf {
        // Far beyond what a loaded machine needs: members that fail here
        // fail by what they send, never by the clock.
        let mut text = format!("deadline = \"60s\"\n{}\n", self.extra);
        for (name, server) in &self.servers {
            let url = server
                .as_ref()
                .map_or(crate::util::dead_url().to_string(), |s| s.url.clone());
            text.push_str(&format!("[[member]]\nname = \"{name}\"\nurl = \"{url}\"\n"));
        }
        let path = self.dir.path().join("cluster.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run(&self, args: &[&str]) -> Output {
        with(&self.dir.path().join("cache"), &self.file()).output(args)
    }

    fn json(&self, args: &[&str]) -> Value {
        with(&self.dir.path().join("cache"), &self.file()).json(args)
    }
}

/// `nodecache --cache-dir CACHE --cluster CLUSTER`.
fn with(cache: &Path, cluster: &Path) -> Nodecache {
    Nodecache::new().cache_dir(cache).cluster(cluster)
}

/// `nodecache --state-dir STATE trust add CERT`, which must succeed.
pub(crate) fn trust(state: &Path, cert: &Path) {
    let trusted = Command::new(BIN)
        .arg("--state-dir")
        .arg(state)
        .arg("trust")
        .arg("add")
        .arg(cert)
        .output()
        .unwrap();
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
}

/// Real per-core flag lines of different generations and vendors (sources:
/// tests/fixtures/cpuinfo/README.md).
pub(crate) const HASWELL: &str = include_str!("fixtures/cpuinfo/intel-xeon-e5-2680v3-haswell.flags");
const SKYLAKE: &str = include_str!("fixtures/cpuinfo/intel-xeon-gold-6132-skylake.flags");
const NAPLES: &str = include_str!("fixtures/cpuinfo/amd-epyc-7301-naples.flags");
const GENOA: &str = include_str!("fixtures/cpuinfo/amd-epyc-9654-genoa.flags");
const GRAVITON: &str = include_str!("fixtures/cpuinfo/arm-neoverse-n1-graviton2.flags");

pub(crate) fn split(line: &'static str) -> Vec<&'static str> {
    line.split_whitespace().collect()
}

fn five_node_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let nodes = [
        ("skylake", "x86_64", SKYLAKE),
        ("zen1", "x86_64", NAPLES),
        ("zen4", "x86_64", GENOA),
        ("haswell", "x86_64", HASWELL),
        ("graviton", "aarch64", GRAVITON),
    ];
    let servers = nodes
        .iter()
        .map(|(name, arch, flags)| {
            let file = recorded_node(dir.path(), name, arch, &split(flags));
            let server = spawn_serve(
                None,
                &["--insecure-http", "--resources-file", file.to_str().unwrap()],
            );
            (name.to_string(), Some(server))
        })
        .collect();
    Cluster {
        dir,
        servers,
        extra: String::new(),
    }
}

fn expected_common() -> Vec<String> {
    let sets = [SKYLAKE, NAPLES, GENOA, HASWELL]
        .map(|s| split(s).into_iter().map(str::to_string).collect::<BTreeSet<_>>());
    let first = sets[0].clone();
    sets.iter()
        .fold(first, |acc, s| acc.intersection(s).cloned().collect())
        .into_iter()
        .collect()
}

fn node<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap()
}

#[test]
fn five_members_intersect_exactly_and_the_second_run_is_cached() {
    let cluster = five_node_cluster();
    let report = cluster.json(&["cpu-flags", "--format", "json"]);
    assert_eq!(report["flags"], json!(expected_common()));
    assert_eq!(report["partial"], false);
    assert_eq!(node(&report, "zen4")["source"], "remote");
    assert_eq!(node(&report, "graviton")["source"], "excluded");
    assert_eq!(node(&report, "graviton")["arch"], "aarch64");
    let again = cluster.json(&["cpu-flags", "--format", "json"]);
    assert_eq!(node(&again, "zen4")["source"], "cache");
    assert_eq!(again["flags"], report["flags"]);
    let all = cluster.json(&["resources", "--all"]);
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["skylake", "zen1", "zen4", "haswell", "graviton"]);
    assert_eq!(all[4]["resources"]["cpu"]["architecture"], "aarch64");
    assert_eq!(all[0]["source"], "cache");
    let arm = cluster.json(&["cpu-flags", "--format", "json", "--arch", "aarch64"]);
    let mut graviton = split(GRAVITON);
    graviton.sort_unstable();
    assert_eq!(arm["flags"], json!(graviton));
}

#[test]
fn a_dead_member_is_served_stale_then_fails_the_run() {
    let mut cluster = five_node_cluster();
    cluster.json(&["cpu-flags", "--format", "json"]);
    cluster.servers[3].1 = None; // haswell dies
    let report = cluster.json(&["--set", "max-age=0", "cpu-flags", "--format", "json"]);
    let haswell = node(&report, "haswell");
    assert_eq!(haswell["source"], "stale");
    assert!(
        haswell["error"].as_str().unwrap().contains("unreachable"),
        "{haswell}"
    );
    assert_eq!(report["flags"], json!(expected_common()));

    std::fs::remove_file(cluster.dir.path().join("cache/resources/haswell.json")).unwrap();
    let output = cluster.run(&["cpu-flags"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("haswell"));
    let partial = cluster.json(&["cpu-flags", "--format", "json", "--allow-partial"]);
    assert_eq!(partial["partial"], true);
    assert_eq!(node(&partial, "haswell")["source"], "error");
    assert!(
        partial["flags"].as_array().unwrap().contains(&json!("rdseed")),
        "without haswell, rdseed is common"
    );
}

/// A TCP peer that answers every connection with `response` (or never, when None).
fn misbehaving_peer(response: Option<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let response = response.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer);
                match response {
                    Some(bytes) => {
                        let _ = stream.write_all(&bytes);
                    }
                    // Holds the connection until the client gives up.
                    None => while stream.read(&mut buffer).is_ok_and(|n| n > 0) {},
                }
            });
        }
    });
    format!("http://{address}")
}

/// A member that accepts and never answers is cut at the cluster's
/// deadline. Alone in its cluster, so the 1 s deadline races nothing.
#[test]
fn a_silent_member_times_out_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.toml");
    let url = misbehaving_peer(None);
    std::fs::write(
        &file,
        format!("deadline = \"1s\"\n[[member]]\nname = \"silent\"\nurl = \"{url}\"\n"),
    )
    .unwrap();
    // With no node answering, even a partial set is refused: it would be
    // empty, and a script would read that as "no flag is safe" (it exited 0).
    let output = with(&dir.path().join("cache"), &file).output(&["cpu-flags", "--allow-partial"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("silent") && message.contains("timed out") && message.contains("no node has data"),
        "{message}"
    );
}

#[test]
fn misbehaving_members_are_reported_for_that_member_only() {
    let mut cluster = five_node_cluster();
    let garbage = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nnot json!!!!".to_vec();
    let mut huge = b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 1 << 20));
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nLocation: {}/1.0/resources\r\nContent-Length: 0\r\n\r\n",
        crate::util::dead_url()
    )
    .into_bytes();
    let peers = [
        ("garbage", Some(garbage)),
        ("huge", Some(huge)),
        ("redirect", Some(redirect)),
    ];
    let mut extra_members = String::new();
    for (name, response) in peers {
        let url = misbehaving_peer(response);
        extra_members.push_str(&format!("[[member]]\nname = \"{name}\"\nurl = \"{url}\"\n"));
    }
    cluster.servers.truncate(4);
    let file = cluster.file();
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&extra_members);
    std::fs::write(&file, text).unwrap();
    let output = Command::new(BIN)
        .arg("--cache-dir")
        .arg(cluster.dir.path().join("cache"))
        .arg("--cluster")
        .arg(&file)
        .args(["cpu-flags", "--format", "json", "--allow-partial"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        node(&report, "garbage")["error"]
            .as_str()
            .unwrap()
            .contains("bad response"),
        "{report}"
    );
    assert!(
        node(&report, "huge")["error"].as_str().unwrap().contains("cap"),
        "{report}"
    );
    let redirected = node(&report, "redirect")["error"].as_str().unwrap();
    assert!(
        redirected.contains("remote error") && redirected.contains("302"),
        "{report}"
    );
    assert_eq!(node(&report, "zen1")["source"], "remote");
    assert_eq!(report["flags"], json!(expected_common()));
}

/// A client certificate and key: another node's identity.
pub(crate) fn make_identity(dir: &Path) -> (PathBuf, PathBuf) {
    let output = Command::new(BIN)
        .arg("--state-dir")
        .arg(dir)
        .arg("identity")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("fingerprint: "), "{text}");
    (dir.join("server.crt"), dir.join("server.key"))
}

#[test]
fn a_bad_cluster_file_names_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad-cluster.toml");
    std::fs::write(
        &file,
        "local = \"a\"\n[[member]]\nname = \"a\"\n[[member]]\nname = \"b\"\nurl = \"http://10.9.9.9:1\"\n",
    )
    .unwrap();
    let output = Command::new(BIN)
        .arg("--cluster")
        .arg(&file)
        .arg("cpu-flags")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("bad-cluster.toml") && message.contains("line 6") && message.contains("member.url"),
        "{message}"
    );
    assert_eq!(message.trim().lines().count(), 1, "{message}");
}

#[test]
fn members_sharing_one_cluster_certificate_trust_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_identity(&dir.path().join("cluster-identity"));
    let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut members = String::new();
    let mut servers = Vec::new();
    for (name, flags) in [("a", SKYLAKE), ("b", NAPLES)] {
        let state = dir.path().join(format!("state-{name}"));
        trust(&state, &cert);
        let file = recorded_node(dir.path(), name, "x86_64", &split(flags));
        let args = [
            "--tls-cert",
            cert_arg,
            "--tls-key",
            key_arg,
            "--resources-file",
            file.to_str().unwrap(),
        ];
        let server = spawn_serve(Some(&state), &args);
        members.push_str(&format!(
            "[[member]]\nname = \"{name}\"\nurl = \"{}\"\n",
            server.url
        ));
        servers.push(server);
    }
    let cluster_file = dir.path().join("cluster.toml");
    let tls = format!(
        "[tls]\nclient-cert = \"{cert_arg}\"\nclient-key = \"{key_arg}\"\nserver-certs = [\"{cert_arg}\"]\n"
    );
    std::fs::write(&cluster_file, format!("{tls}{members}")).unwrap();
    let report = with(&dir.path().join("cache"), &cluster_file).json(&["cpu-flags", "--format", "json"]);
    assert_eq!(node(&report, "a")["source"], "remote");
    assert_eq!(node(&report, "b")["source"], "remote");
    assert!(report["flags"].as_array().unwrap().contains(&json!("avx2")));
    assert!(
        !report["flags"].as_array().unwrap().contains(&json!("avx512f")),
        "Naples has no AVX-512"
    );
}

/// A member that answers with a 15.9 MB document (500,000 cores): the entry
/// is stored as received (not re-serialised, so not larger), the next run
/// reads it back, and the dead member beside it fails alone.
#[test]
fn a_huge_member_answer_is_stored_as_received_and_fails_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut envelope: Value = serde_json::from_str(crate::util::INCUS_FIXTURE).unwrap();
    let cores: Vec<Value> = (0..500_000)
        .map(|i| json!({"core": i, "flags": ["fpu"]}))
        .collect();
    envelope["metadata"]["cpu"]["sockets"][0]["cores"] = json!(cores);
    let file = dir.path().join("huge.json");
    std::fs::write(&file, serde_json::to_vec(&envelope).unwrap()).unwrap();
    let wire_bytes = envelope["metadata"].to_string().len() as u64;
    assert!(wire_bytes > 12 << 20 && wire_bytes < 16 << 20, "{wire_bytes}");
    let server = spawn_serve(
        None,
        &["--insecure-http", "--resources-file", file.to_str().unwrap()],
    );
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(
        &cluster,
        format!(
            "deadline = \"30s\"\n[[member]]\nname = \"big\"\nurl = \"{}\"\n[[member]]\nname = \"dead\"\nurl = \"{}\"\n",
            server.url,
            crate::util::dead_url()
        ),
    )
    .unwrap();
    let run = || -> Value {
        let output = Command::new(BIN)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .arg("--cluster")
            .arg(&cluster)
            .args(["cpu-flags", "--allow-partial", "--format", "json"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let first = run();
    assert_eq!(first["flags"], json!(["fpu"]));
    assert_eq!(first["nodes"][0]["source"], "remote");
    assert_eq!(first["nodes"][1]["source"], "error");
    let entry_bytes = std::fs::metadata(dir.path().join("cache/resources/big.json"))
        .unwrap()
        .len();
    assert!(
        entry_bytes < wire_bytes + 4096,
        "entry {entry_bytes} bytes for {wire_bytes} on the wire"
    );
    let second = run();
    assert_eq!(second["nodes"][0]["source"], "cache");
    assert_eq!(second["flags"], json!(["fpu"]));
    println!("a {wire_bytes}-byte answer: a {entry_bytes}-byte entry, read back");
}

/// `server-cert` pins a member to its own certificate: a server holding
/// another member's (pinned) certificate cannot answer as it, and a
/// certificate pinned nowhere is refused too.
#[test]
fn each_member_is_pinned_to_its_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (client_cert, client_key) = make_identity(&dir.path().join("client"));
    let mut servers = Vec::new();
    for (name, flags) in [("a", SKYLAKE), ("b", NAPLES), ("stranger", HASWELL)] {
        let state = dir.path().join(format!("state-{name}"));
        let (cert, key) = make_identity(&state);
        trust(&state, &client_cert);
        let file = recorded_node(dir.path(), name, "x86_64", &split(flags));
        let server = spawn_serve(
            Some(&state),
            &[
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
                "--resources-file",
                file.to_str().unwrap(),
            ],
        );
        servers.push((server, cert));
    }
    let tls = format!(
        "[tls]\nclient-cert = \"{}\"\nclient-key = \"{}\"\n",
        client_cert.display(),
        client_key.display()
    );
    let run = |urls: [&str; 2]| -> Value {
        let mut text = tls.clone();
        for ((name, url), (_, cert)) in ["a", "b"].iter().zip(urls).zip(&servers) {
            text.push_str(&format!(
                "[[member]]\nname = \"{name}\"\nurl = \"{url}\"\nserver-cert = \"{}\"\n",
                cert.display()
            ));
        }
        let file = dir.path().join("cluster.toml");
        std::fs::write(&file, text).unwrap();
        with(tempfile::tempdir().unwrap().path(), &file).json(&[
            "cpu-flags",
            "--format",
            "json",
            "--allow-partial",
        ])
    };
    let (a, b, stranger) = (&servers[0].0.url, &servers[1].0.url, &servers[2].0.url);
    let right = run([a, b]);
    assert_eq!(node(&right, "a")["source"], "remote");
    assert_eq!(node(&right, "b")["source"], "remote");
    // a's server, holding a pinned certificate, answers at b's address.
    let swapped = run([a, a]);
    assert_eq!(node(&swapped, "a")["source"], "remote");
    // The error says what is pinned (b's server-cert, by the key and file
    // the cluster file names) and how to pin another.
    let b_cert = servers[1].1.display().to_string();
    let error = node(&swapped, "b")["error"].as_str().unwrap();
    assert!(error.contains("is not pinned for b"), "{swapped}");
    assert!(
        error.contains(&format!("its server-cert = {b_cert}")),
        "{swapped}"
    );
    assert!(
        error.contains("nodecache cluster accept-certificate b"),
        "{swapped}"
    );
    // A server whose certificate is pinned for no member.
    let unknown = run([a, stranger]);
    let error = node(&unknown, "b")["error"].as_str().unwrap();
    assert!(error.contains("is not pinned for b"), "{unknown}");
}
