//! The first hour (issue 22): what a new operator meets, held to what the
//! docs promise — errors that say what to do, trust with names, the
//! cluster's status, a node's source and age, trust on first use, and the
//! README's three-node walkthrough run as written.

use crate::util::{Nodecache, openssl_fingerprint, proc_cpuinfo_common_flags, stderr};

/// toml's caret diagram reaches the terminal as toml drew it: one line per
/// line, the caret under the column of the bad value (it was joined onto
/// one line, the caret pointing nowhere). The oracle is the file itself:
/// the caret's column in the diagram is the bad token's in its line.
#[test]
fn a_toml_error_keeps_its_caret_under_the_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.toml");
    let source_line = "deadline = 5s";
    std::fs::write(&file, format!("local = \"a\"\n{source_line}\n")).unwrap();
    let output = Nodecache::new().cluster(&file).output(&["cpu-flags"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    let lines: Vec<&str> = text.lines().collect();
    let quoted = lines
        .iter()
        .position(|line| line.ends_with(source_line))
        .unwrap_or_else(|| panic!("the bad line is not quoted on a line of its own:\n{text}"));
    let caret_line = lines[quoted + 1];
    let caret = caret_line
        .find('^')
        .unwrap_or_else(|| panic!("no caret below the line:\n{text}"));
    let token = lines[quoted].len() - source_line.len() + source_line.find("5s").unwrap();
    assert_eq!(caret, token, "the caret is not under `5s`:\n{text}");
    assert!(text.contains("cluster.toml"), "the file is not named:\n{text}");
}

/// The README's blocks between its walkthrough markers, in order.
fn walkthrough_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("<!-- walkthrough:")
        .expect("README.md has the walkthrough's start marker");
    let end = readme
        .find("<!-- /walkthrough -->")
        .expect("README.md has the walkthrough's end marker");
    let mut blocks = Vec::new();
    let mut rest = &readme[start..end];
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("\n```").expect("a closed sh block");
        blocks.push(body[..close].to_string());
        rest = &body[close + 4..];
    }
    blocks
}

/// "Three nodes in ten minutes", run as the README writes it: its sh
/// blocks, in order, in one bash with `set -euo pipefail`, in a fresh
/// home, with the built nodecache first on PATH. Every command must
/// succeed, and the answers are held to oracles nodecache did not write:
/// the flags reach the real Incus client equal to what /proc/cpuinfo says
/// every CPU has (the three nodes are this machine), toml reads the pins
/// back from the cluster file, and curl got an answer.
#[test]
fn the_readme_walkthrough_runs_as_written() {
    use std::os::unix::process::CommandExt;
    let blocks = walkthrough_blocks();
    assert_eq!(blocks.len(), 8, "the walkthrough has eight steps: {blocks:#?}");
    let mut script = String::from("set -euo pipefail\n");
    for (step, block) in blocks.iter().enumerate() {
        script.push_str(&format!("echo '@@ step {}'\n{block}\n", step + 1));
    }
    let home = tempfile::tempdir().unwrap();
    let bin_dir = std::path::Path::new(crate::util::BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("PATH", path)
        .env_remove("NODECACHE_CLUSTER")
        .env_remove("NODECACHE_POLICY")
        .env_remove("XDG_STATE_HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("INCUS_CONF")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // Its own process group: whatever happens, the servers it starts
        // are stopped with it.
        .process_group(0)
        .spawn()
        .expect("bash");
    let group = child.id();
    let _bounded = crate::util::kill_after(group, std::time::Duration::from_secs(600));
    let output = child.wait_with_output().unwrap();
    let _ = std::process::Command::new("kill")
        .arg("--")
        .arg(format!("-{group}"))
        .status();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "the walkthrough failed:\n{stdout}\n{}",
        stderr(&output)
    );
    let step = |n: usize| -> &str {
        let from = stdout.find(&format!("@@ step {n}\n")).unwrap() + format!("@@ step {n}\n").len();
        let to = stdout[from..].find("@@ step ").map_or(stdout.len(), |i| from + i);
        &stdout[from..to]
    };
    let three = home.path().join("three");
    // Step 2: node-b trusts node-a by name.
    assert!(step(2).contains(" as node-a"), "{stdout}");
    // Step 4: both pinned, and the cluster file says so to toml.
    assert!(
        step(4).contains("pinned node-b") && step(4).contains("pinned node-c"),
        "{stdout}"
    );
    let file: toml::Value =
        toml::from_str(&std::fs::read_to_string(three.join("cluster.toml")).unwrap()).unwrap();
    let members = file["member"].as_array().unwrap();
    assert_eq!(members[1]["server-cert"].as_str(), Some("pinned/node-b.crt"));
    assert_eq!(members[2]["server-cert"].as_str(), Some("pinned/node-c.crt"));
    assert_eq!(
        std::fs::read(three.join("pinned/node-b.crt")).unwrap(),
        std::fs::read(three.join("node-b.crt")).unwrap(),
        "the pinned certificate is the one node-b's identity printed"
    );
    // Step 5: every member answered.
    let status: Vec<Vec<&str>> = step(5)
        .lines()
        .filter(|line| line.starts_with("node-"))
        .map(|line| line.split_whitespace().take(2).collect())
        .filter(|row: &Vec<&str>| row.len() == 2 && ["local", "online"].contains(&row[1]))
        .collect();
    assert_eq!(
        status.len(),
        3,
        "cluster status shows three reachable members:\n{}",
        step(5)
    );
    // Step 6: curl got a QEMU -cpu value.
    assert!(step(6).trim_end().ends_with(",enforce"), "{}", step(6));
    // Step 7: the Incus client read the node's resources and the cluster's flags.
    assert!(step(7).contains("Architecture: x86_64"), "{}", step(7));
    let json_start = step(7).rfind("\n{").map(|i| i + 1).unwrap_or(0);
    let answer: serde_json::Value = serde_json::from_str(step(7)[json_start..].trim())
        .unwrap_or_else(|e| panic!("incus query printed no JSON ({e}):\n{}", step(7)));
    let flags: std::collections::BTreeSet<String> = answer["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert_eq!(flags, proc_cpuinfo_common_flags());
}

/// A served member: its state directory (identity made, the client
/// trusted when `trusting` is given) and its `serve` with a recorded document.
fn member(
    dir: &std::path::Path,
    name: &str,
    trusting: Option<&std::path::Path>,
) -> (crate::util::Server, std::path::PathBuf) {
    let state = dir.join(format!("state-{name}"));
    let (cert, _) = crate::cluster::make_identity(&state);
    if let Some(client) = trusting {
        crate::cluster::trust(&state, client);
    }
    let file = crate::util::recorded_node(dir, name, "x86_64", &["fpu", "sse2"]);
    let server = crate::util::spawn_serve(Some(&state), &["--resources-file", file.to_str().unwrap()]);
    (server, cert)
}

/// Trust on first use: the member's fingerprint (as openssl computes it)
/// is shown; without a terminal nothing is pinned unless confirmed; a
/// wrong fingerprint pins nothing; the right one pins it into the cluster
/// file, keeping the operator's comments. Later, another certificate at
/// the member's address is refused, by the fetch (naming the pin and the
/// key) and by a second accept-certificate, however confirmed.
#[test]
fn a_member_is_trusted_on_first_use_and_a_changed_certificate_refused() {
    let dir = tempfile::tempdir().unwrap();
    // The cluster file names the client's certificate and key by their
    // paths relative to it (client/server.crt, client/server.key).
    let (client_cert, _) = crate::cluster::make_identity(&dir.path().join("client"));
    let (b, b_cert) = member(dir.path(), "b", Some(&client_cert));
    let (stranger, _) = member(dir.path(), "stranger", Some(&client_cert));
    let b_fingerprint = openssl_fingerprint(&b_cert);
    let file = dir.path().join("cluster.toml");
    let cache = dir.path().join("cache");
    let cluster_text = |url: &str| {
        format!(
            "# the operator's words\n[tls]\nclient-cert = \"client/server.crt\"\nclient-key = \"client/server.key\"\n\n\
             [[member]]\nname = \"b\"   # rack 2\nurl = \"{url}\"\n"
        )
    };
    std::fs::write(&file, cluster_text(&b.url)).unwrap();
    let accept = |args: &[&str]| {
        Nodecache::new()
            .cache_dir(&cache)
            .cluster(&file)
            .output(&[&["cluster", "accept-certificate", "b"][..], args].concat())
    };
    // Unpinned: the fetch says what to run.
    let flags = Nodecache::new()
        .cache_dir(&cache)
        .cluster(&file)
        .output(&["cpu-flags"]);
    assert_eq!(flags.status.code(), Some(3), "{}", stderr(&flags));
    assert!(
        stderr(&flags).contains("nodecache cluster accept-certificate b"),
        "{}",
        stderr(&flags)
    );
    // No terminal, no confirmation: shown, not pinned.
    let unconfirmed = accept(&[]);
    assert_eq!(unconfirmed.status.code(), Some(2), "{}", stderr(&unconfirmed));
    assert!(
        stderr(&unconfirmed).contains(&b_fingerprint),
        "{}",
        stderr(&unconfirmed)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), cluster_text(&b.url));
    // The wrong fingerprint: nothing pinned.
    let wrong = accept(&["--fingerprint", &"0".repeat(64)]);
    assert_eq!(wrong.status.code(), Some(1), "{}", stderr(&wrong));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), cluster_text(&b.url));
    // The right one, as openssl spells it (colons, upper case).
    let colons: String = b_fingerprint
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let pinned = accept(&["--fingerprint", &colons]);
    assert!(pinned.status.success(), "{}", stderr(&pinned));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("# the operator's words\n") && text.contains("# rack 2"),
        "{text}"
    );
    let read: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(read["member"][0]["server-cert"].as_str(), Some("pinned/b.crt"));
    assert_eq!(
        openssl_fingerprint(&dir.path().join("pinned/b.crt")),
        b_fingerprint
    );
    let answer = Nodecache::new()
        .cache_dir(&cache)
        .cluster(&file)
        .json(&["cpu-flags", "--format", "json"]);
    assert_eq!(answer["nodes"][0]["source"], "remote", "{answer}");
    // Another certificate answers at b's address.
    std::fs::write(&file, text.replace(&b.url, &stranger.url)).unwrap();
    let changed = Nodecache::new()
        .cache_dir(&cache)
        .cluster(&file)
        .output(&["--refresh", "cpu-flags"]);
    assert_eq!(changed.status.code(), Some(3), "{}", stderr(&changed));
    let error = stderr(&changed);
    assert!(error.contains("is not pinned for b"), "{error}");
    assert!(
        error.contains("its server-cert = ") && error.contains("pinned/b.crt"),
        "{error}"
    );
    let before = std::fs::read(&file).unwrap();
    let refused = accept(&["--yes"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("refused"), "{}", stderr(&refused));
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "a refused change writes nothing"
    );
}

/// `cluster status` tells each member's state apart: this machine, a
/// member that answers and trusts us, one that answers but does not, and
/// one that does not answer; with its source and when its hardware was
/// first seen (the stopped clock's time, kept by a `--refresh` later that
/// finds the same hardware). `resources --format json|table` show a
/// node's source and age, and `--refresh` asks a node whose entry is fresh.
#[test]
fn cluster_status_and_resources_say_where_each_nodes_data_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let (client_cert, _) = crate::cluster::make_identity(&dir.path().join("client"));
    let (b, b_cert) = member(dir.path(), "b", Some(&client_cert));
    let (c, c_cert) = member(dir.path(), "c", None);
    let file = dir.path().join("cluster.toml");
    std::fs::write(
        &file,
        format!(
            "local = \"a\"\ndeadline = \"30s\"\n[tls]\nclient-cert = \"client/server.crt\"\nclient-key = \"client/server.key\"\n\
             [[member]]\nname = \"a\"\n\
             [[member]]\nname = \"b\"\nurl = \"{}\"\nserver-cert = \"{}\"\ngroups = [\"rack-1\"]\n\
             [[member]]\nname = \"c\"\nurl = \"{}\"\nserver-cert = \"{}\"\n\
             [[member]]\nname = \"d\"\nurl = \"{}\"\n",
            b.url,
            b_cert.display(),
            c.url,
            c_cert.display(),
            crate::util::dead_url()
        ),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let first_s = crate::util::now_s() - 3600;
    let status = |at_s: u64, refresh: bool| {
        let args: &[&str] = if refresh {
            &["--refresh", "cluster", "status", "--format", "json"]
        } else {
            &["cluster", "status", "--format", "json"]
        };
        Nodecache::new()
            .cluster(&file)
            .cache_dir(&cache)
            .frozen_at(at_s)
            .json(args)
    };
    let row = |status: &serde_json::Value, name: &str| {
        status
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {status}"))
            .clone()
    };
    let first = status(first_s, false);
    assert_eq!(row(&first, "a")["reachable"], "local");
    assert_eq!(row(&first, "b")["reachable"], "online");
    assert_eq!(row(&first, "b")["source"], "remote");
    assert_eq!(row(&first, "b")["groups"], serde_json::json!(["rack-1"]));
    assert_eq!(row(&first, "b")["hardware_changed_at"], first_s);
    assert_eq!(row(&first, "c")["reachable"], "untrusted");
    assert_eq!(row(&first, "c")["source"], "error");
    assert_eq!(row(&first, "d")["reachable"], "unreachable");
    assert!(
        row(&first, "d")["error"]
            .as_str()
            .unwrap()
            .contains(crate::util::dead_url()),
        "{first}"
    );
    let later = status(first_s + 600, true);
    assert_eq!(row(&later, "b")["source"], "remote");
    assert_eq!(row(&later, "b")["age_seconds"], 0);
    assert_eq!(
        row(&later, "b")["hardware_changed_at"],
        first_s,
        "the same hardware: {later}"
    );
    let table = Nodecache::new()
        .cluster(&file)
        .cache_dir(&cache)
        .text(&["cluster", "status"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "REACHABLE",
            "SOURCE",
            "DATA AGE",
            "HARDWARE CHANGED",
            "GROUPS",
            "ERROR"
        ]
    );

    // resources: a fresh entry is the cache's; --refresh asks b again.
    let resources = |at_s: u64, args: &[&str]| {
        Nodecache::new()
            .cluster(&file)
            .cache_dir(&cache)
            .frozen_at(at_s)
            .json(args)
    };
    let cached = resources(first_s + 660, &["resources", "b", "--format", "json"]);
    assert_eq!(cached["source"], "cache");
    assert_eq!(cached["age_seconds"], 60);
    assert_eq!(cached["resources"]["cpu"]["architecture"], "x86_64");
    let refreshed = resources(
        first_s + 660,
        &["--refresh", "resources", "b", "--format", "json"],
    );
    assert_eq!(refreshed["source"], "remote");
    assert_eq!(refreshed["age_seconds"], 0);
    let table =
        Nodecache::new()
            .cluster(&file)
            .cache_dir(&cache)
            .text(&["resources", "--all", "--format", "table"]);
    let b_line = table
        .lines()
        .find(|line| line.starts_with("b "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(b_line.split_whitespace().nth(1) == Some("cache"), "{table}");
    let c_line = table
        .lines()
        .find(|line| line.starts_with("c "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(c_line.contains("403"), "{table}");
}

/// The first fenced block of `lang` after `heading` in plugin/README.md.
fn plugin_readme_block(after: &str, lang: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin/README.md")).unwrap();
    let from = readme
        .find(after)
        .unwrap_or_else(|| panic!("plugin/README.md has no {after:?}"));
    let open = format!("```{lang}\n");
    let start = readme[from..].find(&open).unwrap() + from + open.len();
    let end = readme[start..].find("\n```").unwrap() + start;
    readme[start..end].to_string()
}

/// plugin/README.md's "A policy in Rust, step by step", done as a policy
/// author would, outside the nodecache tree: `cargo new`, its Cargo.toml
/// and src/lib.rs as written (the SDK's path filled in; the workspace's
/// lock copied, so no newer crate is fetched), then its commands: the
/// unit test natively, the component, the unit test as WebAssembly with the
/// runner the README names, `policy check`, and a run with `--policy`.
#[test]
fn the_plugin_readme_policy_builds_tests_and_loads_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cargo = || {
        let mut command = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"));
        command
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("RUSTFLAGS");
        command
    };
    let ok = |what: &str, output: std::process::Output| -> String {
        assert!(
            output.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    ok(
        "cargo new",
        cargo()
            .args(["new", "--lib", "my-policy"])
            .current_dir(dir.path())
            .output()
            .unwrap(),
    );
    let krate = dir.path().join("my-policy");
    let manifest =
        plugin_readme_block("`Cargo.toml`:", "toml").replace("/path/to/nodecache", root.to_str().unwrap());
    std::fs::write(krate.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(
        krate.join("src/lib.rs"),
        plugin_readme_block("`src/lib.rs`, a complete policy", "rust"),
    )
    .unwrap();
    std::fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let native = ok(
        "cargo test",
        cargo().arg("test").current_dir(&krate).output().unwrap(),
    );
    assert!(
        native.contains("test tests::an_old_entry_is_refetched ... ok"),
        "{native}"
    );
    ok(
        "cargo build --release --target wasm32-wasip2",
        cargo()
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .current_dir(&krate)
            .output()
            .unwrap(),
    );
    let runner = std::path::Path::new(crate::util::BIN).with_file_name("nodecache-wasm-test-runner");
    let as_wasm = ok(
        "cargo test --target wasm32-wasip2",
        cargo()
            .args(["test", "--target", "wasm32-wasip2"])
            .env("CARGO_TARGET_WASM32_WASIP2_RUNNER", &runner)
            .current_dir(&krate)
            .output()
            .unwrap(),
    );
    assert!(
        as_wasm.contains("test tests::an_old_entry_is_refetched ... ok"),
        "{as_wasm}"
    );
    let component = krate.join("target/wasm32-wasip2/release/my_policy.wasm");
    let checked = Nodecache::new().cache_dir(&dir.path().join("cache")).text(&[
        "policy",
        "check",
        component.to_str().unwrap(),
    ]);
    assert!(
        checked.contains("policy: hourly") && checked.contains("max-age (default 1h)"),
        "{checked}"
    );
    let flags = Nodecache::new().cache_dir(&dir.path().join("cache")).text(&[
        "--policy",
        component.to_str().unwrap(),
        "cpu-flags",
    ]);
    let flags: std::collections::BTreeSet<String> = flags.lines().map(str::to_string).collect();
    assert_eq!(flags, proc_cpuinfo_common_flags());
}
