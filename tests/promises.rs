//! What the README promises and no other test checked, each against a tool
//! this project did not write: openssl for TLS and fingerprints, glibc's
//! dynamic loader for the x86-64 level, the kernel for flags.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::util::{BIN, Nodecache, recorded_node, spawn_serve, stderr, write_cache_entry};

fn openssl(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl (package openssl)");
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// "HTTPS with TLS 1.3; on first start it makes a self-signed ECDSA P-384
/// certificate": openssl offered only TLS 1.2 is refused, TLS 1.3 is
/// served, and openssl reads the certificate's key as P-384.
#[test]
fn serve_speaks_tls_1_3_only_with_a_p384_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let file = recorded_node(dir.path(), "n", "x86_64", &["fpu"]);
    let state = dir.path().join("state");
    let server = spawn_serve(Some(&state), &["--resources-file", file.to_str().unwrap()]);
    let address = server.url.trim_start_matches("https://");
    let old = openssl(&["s_client", "-tls1_2", "-connect", address], b"");
    assert!(!old.status.success(), "TLS 1.2 was served");
    let new = openssl(&["s_client", "-tls1_3", "-connect", address], b"");
    let said = String::from_utf8_lossy(&new.stdout);
    assert!(new.status.success() && said.contains("TLSv1.3"), "{said}");
    let cert = openssl(
        &[
            "x509",
            "-noout",
            "-text",
            "-in",
            state.join("server.crt").to_str().unwrap(),
        ],
        b"",
    );
    let text = String::from_utf8_lossy(&cert.stdout);
    assert!(
        text.contains("id-ecPublicKey") && text.contains("NIST CURVE: P-384"),
        "{text}"
    );
}

/// `trust list` shows what `trust add` added: the name given, and the
/// subject, SHA-256 fingerprint and expiry openssl reads from the
/// certificate; a second add says it is already trusted and writes
/// nothing; a name that is not one is refused (exit 2).
#[test]
fn trust_list_shows_each_certificate_as_openssl_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run = |args: &[&str]| {
        let output = Command::new(BIN)
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    // Another node's identity, made by nodecache in its own state
    // directory and handed over as `identity --pem` prints it.
    let cert = dir.path().join("node-b.crt");
    let made = Command::new(BIN)
        .arg("--state-dir")
        .arg(dir.path().join("other"))
        .args(["identity", "--pem"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    std::fs::write(&cert, &made.stdout).unwrap();
    let added = run(&["trust", "add", cert.to_str().unwrap(), "--name", "node-b"]);
    let read = openssl(
        &[
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-subject",
            "-enddate",
            "-dateopt",
            "iso_8601",
            "-nameopt",
            "RFC2253",
            "-in",
            cert.to_str().unwrap(),
        ],
        b"",
    );
    let read = String::from_utf8_lossy(&read.stdout).to_string();
    let field = |key: &str| {
        read.lines()
            .find_map(|line| line.strip_prefix(key))
            .unwrap_or_else(|| panic!("openssl printed no {key}: {read}"))
            .to_string()
    };
    let fingerprint = field("sha256 Fingerprint=").replace(':', "").to_ascii_lowercase();
    let subject = field("subject=");
    let expires = field("notAfter=")[..10].to_string();
    assert_eq!(added, format!("added {fingerprint} as node-b\n"));
    let list = run(&["trust", "list"]);
    let rows: Vec<Vec<&str>> = list.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "SUBJECT", "FINGERPRINT", "EXPIRES"], "{list}");
    assert_eq!(
        rows[1],
        ["node-b", subject.as_str(), &fingerprint, &expires],
        "{list}"
    );
    let json: serde_json::Value = serde_json::from_str(&run(&["trust", "list", "--format", "json"])).unwrap();
    assert_eq!(json[0]["fingerprint"], fingerprint.as_str());
    assert_eq!(json[0]["subject"], subject.as_str());
    // Adding it again writes nothing and says so (it once said "added" again).
    let again = run(&["trust", "add", cert.to_str().unwrap()]);
    assert_eq!(again, format!("already trusted {fingerprint}\n"));
    assert_eq!(run(&["trust", "list"]), list);
    let bad = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .args(["trust", "add", cert.to_str().unwrap(), "--name", "two words"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("is not a certificate name"),
        "{}",
        stderr(&bad)
    );
}

/// The cluster file may come from `NODECACHE_CLUSTER` instead of `--cluster`.
#[test]
fn the_cluster_file_may_be_named_by_nodecache_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut text = String::from("deadline = \"60s\"\n");
    for (name, flags) in [("a", ["fpu", "sse2", "avx"]), ("b", ["fpu", "sse2", "aes"])] {
        let file = recorded_node(dir.path(), name, "x86_64", &flags);
        write_cache_entry(&cache, name, &crate::util::resources_of(&file), None, 0);
        text.push_str(&format!(
            "[[member]]\nname = \"{name}\"\nurl = \"{}\"\n",
            crate::util::dead_url()
        ));
    }
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(&cluster, text).unwrap();
    let output = Command::new(BIN)
        .env("NODECACHE_CLUSTER", &cluster)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("cpu-flags")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "fpu\nsse2\n");
}

/// This machine's x86-64 level (README: "x86-64-v4" style, from the common
/// flags) is the highest glibc's dynamic loader says this CPU supports.
#[cfg(target_arch = "x86_64")]
#[test]
fn this_machines_level_is_the_one_glibc_finds() {
    let loader = Command::new("/lib64/ld-linux-x86-64.so.2")
        .arg("--help")
        .output()
        .expect("glibc's dynamic loader");
    let text = String::from_utf8_lossy(&loader.stdout);
    let glibc = text
        .lines()
        .filter(|line| line.contains("(supported"))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|level| level.starts_with("x86-64-v"))
        .max()
        .unwrap_or("x86-64-v1")
        .to_string();
    let cache = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .arg("--cache-dir")
        .arg(cache.path())
        .args(["cpu-flags", "--format", "json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["level"], glibc.as_str(), "glibc: {text}");
}

/// `probe --source kernel` lists the flags every CPU of /proc/cpuinfo has.
#[test]
fn probe_source_kernel_lists_the_kernels_common_flags() {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let mut sets = text
        .lines()
        .filter(|line| line.starts_with("flags") || line.starts_with("Features"))
        .map(|line| {
            line.split_once(':')
                .unwrap()
                .1
                .split_whitespace()
                .map(str::to_string)
                .collect::<BTreeSet<_>>()
        });
    let first = sets.next().expect("/proc/cpuinfo lists flags");
    let kernel = sets.fold(first, |common, set| common.intersection(&set).cloned().collect());
    let output = Command::new(BIN)
        .args(["probe", "--source", "kernel"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let listed: BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(listed, kernel);
}

/// `GET /1.0` shows the active policy under `environment.policy`: its
/// version is the crate's (the workspace's `Cargo.toml`), its contract the
/// WIT package it was built against (`wit/v0.2.0`), its origin the file it
/// was loaded from.
#[test]
fn get_1_0_names_the_active_policy_by_version_contract_and_origin() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let version = manifest
        .split("[workspace.package]")
        .nth(1)
        .and_then(|table| table.lines().find_map(|line| line.strip_prefix("version = ")))
        .expect("the workspace's version")
        .trim_matches('"')
        .to_string();
    let wit = std::fs::read_to_string(root.join("wit/v0.2.0/policy.wit")).unwrap();
    let contract = wit
        .lines()
        .find_map(|line| line.strip_prefix("package "))
        .expect("the WIT package line")
        .trim_end_matches(';')
        .to_string();
    let policy = crate::util::policy_file("default");
    let dir = tempfile::tempdir().unwrap();
    let file = recorded_node(dir.path(), "n", "x86_64", &["fpu"]);
    let server = crate::util::spawn_serve_with(
        &["--policy", policy.to_str().unwrap()],
        &["--insecure-http", "--resources-file", file.to_str().unwrap()],
    );
    let info = crate::util::http_get_json(&server.url, "/1.0");
    let active = &info["metadata"]["environment"]["policy"];
    assert_eq!(active["name"], "default", "{active}");
    assert_eq!(active["version"], version.as_str(), "{active}");
    assert_eq!(active["contract"], contract.as_str(), "{active}");
    assert_eq!(active["origin"], policy.to_str().unwrap(), "{active}");
}

/// "A client that sends the current tag gets `304 Not Modified` without the
/// hardware being probed": a `serve` started fresh, whose first request
/// carries the tag another `serve` of this machine gave, answers 304, and
/// its log (read to the end, `-vv`) holds no probe.
#[test]
fn a_304_is_answered_without_probing() {
    let first = spawn_serve(None, &["--insecure-http"]);
    let tag = crate::util::http_get(&first.url, "/1.0/resources", &[])
        .header("etag")
        .expect("an ETag")
        .to_string();
    drop(first);
    let (mut child, lines, url, _home) = crate::util::spawn_serve_logging();
    let watchdog = crate::util::kill_after(child.id(), std::time::Duration::from_secs(120));
    let answer = crate::util::http_get(&url, "/1.0/resources", &[&format!("If-None-Match: {tag}")]);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(watchdog);
    assert_eq!(answer.status, 304, "{}", answer.body);
    let probes = lines
        .map_while(Result::ok)
        .filter(|line| line.contains("probed this machine's resources"))
        .count();
    assert_eq!(probes, 0, "a conditional request probed");
}

/// `GET /1.0/cluster/cpu-flags?level=1` (README: "as the CLI's options")
/// names each node's x86-64 level and the cluster's. Recorded real CPUs,
/// whose levels are their psABI levels as recorded with their sources in
/// tests/fixtures/cpuinfo/README.md: Haswell-EP v3, Skylake-SP v4, K10 v1.
#[test]
fn serve_answers_level_1_with_each_nodes_psabi_level() {
    let dir = tempfile::tempdir().unwrap();
    let cpus = [
        (
            "haswell",
            include_str!("fixtures/cpuinfo/intel-xeon-e5-2680v3-haswell.flags"),
            "x86-64-v3",
        ),
        (
            "skylake",
            include_str!("fixtures/cpuinfo/intel-xeon-gold-6132-skylake.flags"),
            "x86-64-v4",
        ),
        (
            "k10",
            include_str!("fixtures/cpuinfo/amd-opteron-6136-k10.flags"),
            "x86-64-v1",
        ),
    ];
    let mut servers = Vec::new();
    let mut text = String::from("deadline = \"60s\"\n");
    for (name, flags, _) in cpus {
        let flags: Vec<&str> = flags.split_whitespace().collect();
        let file = recorded_node(dir.path(), name, "x86_64", &flags);
        let server = spawn_serve(
            None,
            &["--insecure-http", "--resources-file", file.to_str().unwrap()],
        );
        text.push_str(&format!(
            "[[member]]\nname = \"{name}\"\nurl = \"{}\"\n",
            server.url
        ));
        servers.push(server);
    }
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(&cluster, text).unwrap();
    let server = Nodecache::new()
        .cache_dir(&dir.path().join("cache"))
        .cluster(&cluster)
        .serve(&["--insecure-http"]);
    let answer = crate::util::http_get(&server.url, "/1.0/cluster/cpu-flags?format=list&level=1", &[]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let lines: BTreeSet<&str> = answer.body.lines().collect();
    for (name, _, level) in cpus {
        assert!(
            lines.contains(format!("{name} {level}").as_str()),
            "{}",
            answer.body
        );
    }
    assert!(lines.contains("cluster x86-64-v1"), "{}", answer.body);
}

/// "A TLS handshake has 10 s": a client that connects and sends nothing is
/// disconnected, no sooner than 10 s (a lower bound, which a slow machine
/// only makes later; the read is bounded at 60 s so a regression fails).
#[test]
fn a_silent_tls_client_is_dropped_after_the_10_second_handshake_limit() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_serve(Some(dir.path()), &[]);
    let address = server.url.trim_start_matches("https://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let connected = std::time::Instant::now();
    let mut buffer = [0u8; 64];
    let read = stream.read(&mut buffer);
    let waited = connected.elapsed();
    assert!(
        matches!(read, Ok(0))
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the connection was not closed within 60 s: {read:?}"
    );
    assert!(
        waited >= std::time::Duration::from_secs(10),
        "closed after {waited:?}"
    );
}

/// "bash, zsh and fish completions": each generated script loaded by the
/// real shell, which asks the installed nodecache (first on PATH). fish
/// completes `nodecache cpu-f` to `cpu-flags` (`complete -C`); zsh's
/// compinit registers `_nodecache` for `nodecache`.
#[test]
fn the_zsh_and_fish_completions_load_in_the_real_shells() {
    let dir = tempfile::tempdir().unwrap();
    let script = |shell: &str, file: &str| {
        let output = Command::new(BIN).args(["completions", shell]).output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let path = dir.path().join(file);
        std::fs::write(&path, output.stdout).unwrap();
        path
    };
    let fish = script("fish", "nodecache.fish");
    let path = format!(
        "{}:{}",
        Path::new(BIN).parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let completed = Command::new("fish")
        .env("PATH", &path)
        .arg("--no-config")
        .arg("-c")
        .arg(format!(
            "source {}; complete -C 'nodecache cpu-f'",
            fish.display()
        ))
        .output()
        .expect("fish (package fish)");
    assert!(completed.status.success(), "{}", stderr(&completed));
    let words: Vec<String> = String::from_utf8_lossy(&completed.stdout)
        .lines()
        .map(|line| line.split('\t').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(words, ["cpu-flags"], "fish completed: {words:?}");

    script("zsh", "_nodecache");
    let registered = Command::new("zsh")
        .args(["-f", "-c"])
        .arg(format!(
            "fpath=({} $fpath); autoload -U compinit; compinit -u -D; print -r -- ${{_comps[nodecache]}}",
            dir.path().display()
        ))
        .output()
        .expect("zsh (package zsh)");
    assert!(registered.status.success(), "{}", stderr(&registered));
    assert_eq!(String::from_utf8_lossy(&registered.stdout).trim(), "_nodecache");
}
