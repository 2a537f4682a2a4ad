//! The policy shelf end to end: conditional requests against real `serve`
//! members, revalidation counted, early refresh spread over 1,000 members,
//! a 0.1 and a 0.2 policy side by side, and hostile policies refused.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::util::{
    BIN, INCUS_FIXTURE, Nodecache, build_policy, http_get, recorded_node, recorded_server, spawn_serve,
    stderr, write_cache_entry_at,
};

/// A cluster file of `members` (name, url) and policy settings, and a cache.
struct Setup {
    dir: tempfile::TempDir,
    cluster: PathBuf,
}

impl Setup {
    fn new(members: &[(String, String)], policy: &[(&str, &str)]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("deadline = \"60s\"\n[policy]\n");
        for (key, value) in policy {
            text.push_str(&format!("{key} = \"{value}\"\n"));
        }
        for (name, url) in members {
            text.push_str(&format!("[[member]]\nname = \"{name}\"\nurl = \"{url}\"\n"));
        }
        let cluster = dir.path().join("cluster.toml");
        std::fs::write(&cluster, text).unwrap();
        Setup { dir, cluster }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn command(&self) -> Nodecache {
        Nodecache::new().cache_dir(&self.cache()).cluster(&self.cluster)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().output(args)
    }

    fn json(&self, args: &[&str]) -> Value {
        self.command().json(args)
    }

    /// [`Setup::json`], its wall clock stopped at `at_s`.
    fn json_at(&self, at_s: u64, args: &[&str]) -> Value {
        self.command().frozen_at(at_s).json(args)
    }
}

fn sources(report: &Value) -> Vec<String> {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["source"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn serve_answers_conditional_requests_with_a_hardware_tag() {
    let dir = tempfile::tempdir().unwrap();
    // This machine, probed: the tag is its fingerprint, a 304 needs no probe.
    let probing = spawn_serve(Some(dir.path()), &["--insecure-http"]);
    let first = http_get(&probing.url, "/1.0/resources", &[]);
    let tag = first.header("etag").expect("an ETag").to_string();
    assert_eq!((first.status, tag.len()), (200, 34), "{tag}");
    let again = http_get(
        &probing.url,
        "/1.0/resources",
        &[&format!("If-None-Match: {tag}")],
    );
    assert_eq!((again.status, again.body.as_str()), (304, ""));
    assert_eq!(again.header("etag"), Some(tag.as_str()));
    let other = http_get(&probing.url, "/1.0/resources", &["If-None-Match: \"0000\""]);
    assert_eq!(other.status, 200);

    // A recorded node: a changed file is a changed tag.
    let (recorded, file) = recorded_server(dir.path(), "rec", &["fpu", "sse2"]);
    let tag = http_get(&recorded.url, "/1.0/resources", &[])
        .header("etag")
        .unwrap()
        .to_string();
    assert_eq!(
        http_get(
            &recorded.url,
            "/1.0/resources",
            &[&format!("If-None-Match: W/{tag}")]
        )
        .status,
        304
    );
    recorded_node(dir.path(), "rec", "x86_64", &["fpu", "sse2", "avx"]);
    assert_eq!(file, dir.path().join("rec.json"));
    let changed = http_get(
        &recorded.url,
        "/1.0/resources",
        &[&format!("If-None-Match: {tag}")],
    );
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(tag.as_str()));
    assert!(changed.body.contains("\"avx\""));
}

#[test]
fn revalidate_gets_304s_while_hardware_is_unchanged_and_sees_a_change_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _file) = recorded_server(dir.path(), "m1", &["fpu", "sse2"]);
    let setup = Setup::new(
        &[("m1".into(), server.url.clone())],
        &[("revalidate-after", "0s")],
    );
    let args = ["--policy", "revalidate", "cpu-flags", "--format", "json"];
    assert_eq!(sources(&setup.json(&args)), ["remote"]);
    let mut revalidated = 0;
    for _ in 0..5 {
        let report = setup.json(&args);
        revalidated += sources(&report).iter().filter(|s| *s == "revalidated").count();
        assert_eq!(report["nodes"][0]["age_seconds"], 0);
    }
    assert_eq!(revalidated, 5, "every run after the first was answered 304");
    // A microcode update or hot-plug: the member's document changes.
    recorded_node(dir.path(), "m1", "x86_64", &["fpu", "sse2", "avx2"]);
    let report = setup.json(&args);
    assert_eq!(sources(&report), ["remote"]);
    assert_eq!(report["flags"], json!(["avx2", "fpu", "sse2"]));
    assert_eq!(sources(&setup.json(&args)), ["revalidated"]);
}

#[test]
fn revalidate_against_a_member_without_etags_compares_fingerprints() {
    // A bare HTTP server that never sends an ETag, as Incus does not for resources.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in listener.incoming().flatten() {
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let body = INCUS_FIXTURE;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let setup = Setup::new(&[("incus-like".into(), url)], &[("revalidate-after", "0s")]);
    let args = ["--policy", "revalidate", "cpu-flags", "--format", "json"];
    assert_eq!(sources(&setup.json(&args)), ["remote"]);
    assert_eq!(sources(&setup.json(&args)), ["revalidated"]);
}

/// 1,000 members written in one run: with early refresh, how many a run
/// refreshes depends on their age as XFetch predicts, and a seeded run
/// repeats exactly. Each run's wall clock is stopped (libfaketime), so the
/// ages are exact, however long a loaded machine takes between runs.
#[test]
fn early_refresh_spreads_refreshes_over_1000_members_and_repeats_with_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let file = recorded_node(dir.path(), "any", "x86_64", &["fpu", "sse2"]);
    // One server stands in for 1,000 members, so this one client may hold
    // as many connections as the run asks at once (384), not one member's share.
    let server = spawn_serve(
        None,
        &[
            "--insecure-http",
            "--resources-file",
            file.to_str().unwrap(),
            "--max-connections-per-client",
            "1000",
        ],
    );
    let document = crate::util::resources_of(&file);
    let members: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("n{i:04}"), server.url.clone()))
        .collect();
    let setup = Setup::new(&members, &[("max-age", "1000s")]);
    let frozen = crate::util::now_s();
    let refreshed_at = |age_s: u64, seed: &str| -> BTreeSet<String> {
        for (name, _) in &members {
            write_cache_entry_at(&setup.cache(), name, &document, None, (frozen - age_s) * 1000);
        }
        let report = setup.json_at(
            frozen,
            &[
                "--policy",
                "early-refresh",
                "--random-seed",
                seed,
                "cpu-flags",
                "--format",
                "json",
            ],
        );
        report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|node| node["source"] == "remote")
            .map(|node| node["name"].as_str().unwrap().to_string())
            .collect()
    };
    // XFetch (Vattani et al., VLDB 2015) with delta = max-age / 10 = 100 s
    // and beta 1: P(refresh) = exp(-(1000 - age) / 100). Expected counts of
    // 1,000: 7, 50, 135, 368, 607; each range is about ±4.5 binomial
    // standard deviations.
    let mut spread = Vec::new();
    for (age, low, high) in [
        (500, 0, 20),
        (700, 20, 80),
        (800, 90, 185),
        (900, 300, 435),
        (950, 535, 680),
    ] {
        let count = refreshed_at(age, "42").len();
        spread.push((age, count));
        assert!(
            (low..=high).contains(&count),
            "age {age} s: {count} of 1000 refreshed"
        );
    }
    println!("early-refresh, 1000 members, max-age 1000 s, seed 42: (age s, refreshed) {spread:?}");
    // The same seed draws the same numbers for the same nodes at the same
    // age: the same nodes, exactly. Another seed draws others.
    let first = refreshed_at(800, "42");
    assert_eq!(first, refreshed_at(800, "42"), "a seeded run repeats");
    let other = refreshed_at(800, "7");
    assert!(
        first.difference(&other).count() > 50 && other.difference(&first).count() > 50,
        "another seed, other nodes"
    );
}

#[test]
fn a_0_1_and_a_0_2_policy_both_load_and_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = recorded_server(dir.path(), "a", &["fpu", "sse2", "avx"]);
    let (b, _) = recorded_server(dir.path(), "b", &["fpu", "sse2"]);
    let members = [("a".to_string(), a.url.clone()), ("b".to_string(), b.url.clone())];
    let pinned = Setup::new(&members, &[]).json(&["--policy", "pinned", "cpu-flags", "--format", "json"]);
    let default = Setup::new(&members, &[]).json(&["cpu-flags", "--format", "json"]);
    assert_eq!(pinned["flags"], json!(["fpu", "sse2"]));
    assert_eq!(pinned["flags"], default["flags"]);
    assert_eq!(sources(&pinned), ["remote", "remote"]);
}

/// Host work is counted too: a policy probing this machine in a loop gets
/// 100 probes, then refusals, and its instruction budget ends it in
/// seconds, not at the call's 120 s deadline.
#[test]
fn a_policy_looping_on_host_calls_is_stopped_by_the_call_budget() {
    let hostile = build_policy("hostile");
    let cache = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let output = Command::new(BIN)
        .arg("--cache-dir")
        .arg(cache.path())
        .args([
            "--policy",
            hostile.to_str().unwrap(),
            "--set",
            "hostile=probe-loop",
            "cpu-flags",
        ])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let message = stderr(&output);
    // The node's call broke: that node has no data (exit 3), named with the cause.
    assert_eq!(output.status.code(), Some(3), "{message}");
    assert!(
        message.contains("policy failed") && message.contains("instruction budget"),
        "{message}"
    );
    // In the host's words: the node's own call failed, nothing it sent was
    // a "bad response" (the policy's rephrasing read so).
    assert!(!message.contains("bad response"), "{message}");
    assert!(elapsed < std::time::Duration::from_secs(60), "took {elapsed:?}");
    println!("probe-loop policy stopped after {elapsed:?}");
}

#[test]
fn hostile_policies_are_refused_naming_the_policy() {
    let hostile = build_policy("hostile");
    let policy = hostile.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = recorded_server(dir.path(), "a", &["fpu", "sse2"]);
    let (b, _) = recorded_server(dir.path(), "b", &["fpu", "sse2"]);
    let members = [("a".to_string(), a.url.clone()), ("b".to_string(), b.url.clone())];
    let cases = [
        ("drop-verdicts", 1, "returned no verdict for node \"a\""),
        ("duplicate-verdict", 1, "returned two verdicts for node \"a\""),
        ("invent-flag", 1, "returned flag \"made-up-flag\""),
        (
            "bad-document",
            3,
            "it answered with a document it was not lent in this call",
        ),
        // A newcomer's mistakes, written against the SDK: both were printed
        // as given (`fake_flag` as a flag common to the cluster).
        (
            "add-flag",
            3,
            "it answered with a document it was not lent in this call",
        ),
        (
            "mislabel",
            3,
            "it called the document `cache` with an age of 999999000 ms, but it came from a fetch now",
        ),
        (
            "write-other",
            3,
            "not granted: cache-write for node \"someone-else\": this call is lent node \"a\" only",
        ),
    ];
    for (mode, code, expected) in cases {
        let setup = Setup::new(&members, &[("hostile", mode)]);
        let output = setup.run(&["--policy", policy, "cpu-flags"]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{mode}: {message}");
        assert!(message.contains(expected), "{mode}: {message}");
        if code == 1 || expected.starts_with("it ") {
            assert!(message.contains(&format!("policy {policy}")), "{mode}: {message}");
        }
        assert!(!message.contains("fake_flag"), "{mode}: {message}");
        assert!(!setup.cache().join("resources/someone-else.json").exists());
    }
    // Text a policy writes reaches the terminal only through the sanitiser.
    let setup = Setup::new(&members, &[("hostile", "terminal")]);
    let output = setup.run(&["--policy", policy, "cpu-flags"]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{message}");
    assert!(
        !message.contains('\u{1b}') && !message.contains('\u{7}'),
        "{message:?}"
    );
    assert!(
        message.contains("?[2Jcleared") && message.contains("?]0;owned?retitled"),
        "{message}"
    );
    // The same component behaves when asked to: the refusals were its doing.
    let setup = Setup::new(&members, &[("hostile", "none")]);
    assert_eq!(
        setup.json(&["--policy", policy, "cpu-flags", "--format", "json"])["flags"],
        json!(["fpu", "sse2"])
    );
}

/// The sandbox's promises, tested from inside a component: no file, no
/// directory, no socket (a listener on loopback sees no connection), no
/// environment, and a clock that does not move.
#[test]
fn a_policy_cannot_leave_its_sandbox() {
    let hostile = build_policy("hostile");
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = recorded_server(dir.path(), "a", &["fpu", "sse2"]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let members = [("a".to_string(), a.url.clone())];
    let setup = Setup::new(&members, &[("hostile", "escape"), ("escape-port", &port)]);
    let output = setup.run(&["--policy", hostile.to_str().unwrap(), "cpu-flags"]);
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    let found = log
        .lines()
        .find_map(|line| line.split("sandbox: ").nth(1))
        .unwrap_or_else(|| panic!("{log}"));
    // What the component reports is checked against the host: the file and
    // the directory exist here, so "not found" inside means no capability
    // reaches them (WASI's errno 44, ENOENT, for a path outside every
    // preopened directory: the sandbox preopens none); the socket gets
    // WASI's EACCES (errno 2) from a context that allows no TCP; and the
    // exact errors, not any error, count as denied.
    assert!(
        std::path::Path::new("/etc/hostname").is_file(),
        "the host has /etc/hostname"
    );
    for held in [
        "file denied (No such file or directory (os error 44))",
        "dir denied (No such file or directory (os error 44))",
        "socket denied (Permission denied (os error 2))",
        "environment 0 variables",
        "clock stopped",
    ] {
        assert!(found.contains(held), "{held}: {found}");
    }
    assert!(!found.contains("REACHED"), "{found}");
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the policy connected to the host"
    );
    println!("sandbox: {found}");
}

/// The wasm test runner passes a passing wasm test and fails a failing one
/// (both ignored in the hostile crate, run here by name), so a green
/// `cargo test --target wasm32-wasip2` means the policies' tests passed;
/// and the failing one shows its assertion message without `--nocapture`
/// (it showed only a trap: libtest's captured output dies with the abort).
#[test]
fn the_wasm_test_runner_fails_a_failing_wasm_test() {
    let run = |name: &str| {
        crate::util::policy_cargo(&["test", "--release", "--target", "wasm32-wasip2", "-p"])
            .arg("nodecache-policy-hostile")
            .args(["--", "--ignored", "--exact", name])
            .output()
            .expect("run cargo")
    };
    let passed = run("tests::a_deliberately_passing_test");
    assert!(passed.status.success(), "{}", stderr(&passed));
    assert!(String::from_utf8_lossy(&passed.stdout).contains("1 passed"));
    let failed = run("tests::a_deliberately_failing_test");
    let output = format!("{}{}", String::from_utf8_lossy(&failed.stdout), stderr(&failed));
    assert!(!failed.status.success(), "{output}");
    // A panic aborts a wasm32 test binary (no unwinding): the runner
    // reports the trap and fails, with the test's own message.
    assert!(
        output.contains("a deliberate failure") && output.contains("stopped on a trap"),
        "{output}"
    );
}

/// A policy written in Python (componentize-py, installed by scripts/test)
/// against the same WIT builds, loads with `--policy`, and answers as the
/// default policy does.
#[test]
fn a_python_policy_builds_loads_and_agrees_with_the_default() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("python-example.wasm");
    let built = Command::new("componentize-py")
        .arg("-d")
        .arg(root.join("wit/v0.2.0"))
        .args(["-w", "cache-policy", "componentize", "app", "-o"])
        .arg(&component)
        .current_dir(root.join("plugin/python-example"))
        .output()
        .expect("componentize-py is missing: pip install componentize-py==0.25.1 (scripts/test does)");
    assert!(built.status.success(), "{}", stderr(&built));
    let policy = component.to_str().unwrap();

    let (a, _) = recorded_server(dir.path(), "a", &["fpu", "sse2", "avx"]);
    let (b, _) = recorded_server(dir.path(), "b", &["fpu", "sse2", "aes"]);
    let members = [("a".to_string(), a.url.clone()), ("b".to_string(), b.url.clone())];
    let setup = Setup::new(&members, &[]);
    let check = setup.run(&["policy", "check", policy]);
    assert!(check.status.success(), "{}", stderr(&check));
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("policy: python-example") && text.contains("@0.2.0"),
        "{text}"
    );

    let python = setup.json(&["--policy", policy, "cpu-flags", "--format", "json"]);
    assert_eq!(sources(&python), ["remote", "remote"]);
    // The Python policy's cache entries are the host's format: the default reads them.
    let default = setup.json(&["cpu-flags", "--format", "json"]);
    assert_eq!(sources(&default), ["cache", "cache"]);
    assert_eq!(python["flags"], json!(["fpu", "sse2"]));
    assert_eq!(python["flags"], default["flags"]);
    let cached = setup.json(&["--policy", policy, "cpu-flags", "--format", "json"]);
    assert_eq!(sources(&cached), ["cache", "cache"]);
}

/// `policy check` called only `describe`: a compiled test binary of a policy
/// crate (a program that also carries the export) and a policy whose
/// answers the host refuses both passed. Now it makes one real call, with
/// the host's checks, and refuses a component that exports more than a
/// policy does.
#[test]
fn policy_check_makes_a_real_call_and_refuses_what_is_not_a_policy() {
    let hostile = build_policy("hostile");
    let check = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    let good = check(&["policy", "check", "default"]);
    assert!(good.status.success(), "{}", stderr(&good));
    assert!(
        String::from_utf8_lossy(&good.stdout)
            .contains("test call: this machine with an empty cache answered from local"),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );
    let refused = check(&[
        "--set",
        "hostile=add-flag",
        "policy",
        "check",
        hostile.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("the test call") && stderr(&refused).contains("not lent"),
        "{}",
        stderr(&refused)
    );
    let built = crate::util::policy_cargo(&["test", "--release", "--target", "wasm32-wasip2", "--no-run"])
        .args(["-p", "nodecache-policy-hostile", "--message-format", "json"])
        .output()
        .expect("run cargo");
    assert!(built.status.success(), "{}", stderr(&built));
    let test_binary = String::from_utf8_lossy(&built.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|message| message["executable"].as_str().map(str::to_string))
        .expect("cargo names the test binary");
    let program = check(&["policy", "check", &test_binary]);
    assert_eq!(program.status.code(), Some(1), "{}", stderr(&program));
    assert!(
        stderr(&program).contains("exports wasi:cli/run")
            && stderr(&program).contains("a compiled test binary"),
        "{}",
        stderr(&program)
    );
}

/// plugin/README.md's second example, built from the repository and loaded
/// with `--policy`: this machine is probed on every run, a member is asked
/// once an hour and served stale up to two days when it cannot be asked,
/// then has no data. The clock is faketime's.
#[test]
fn the_second_example_policy_probes_here_caches_members_an_hour_and_serves_stale_two_days() {
    let policy = build_policy("local-fresh");
    let dir = tempfile::tempdir().unwrap();
    let (b, _) = recorded_server(dir.path(), "b", &["fpu", "sse2"]);
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(
        &cluster,
        format!(
            "local = \"here\"\n[[member]]\nname = \"here\"\n[[member]]\nname = \"b\"\nurl = \"{}\"\n",
            b.url
        ),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let start = crate::util::now_s();
    let run = |at_s: u64| {
        let output = crate::util::Nodecache::new()
            .cluster(&cluster)
            .cache_dir(&cache)
            .frozen_at(at_s)
            .output(&[
                "--policy",
                policy.to_str().unwrap(),
                "cpu-flags",
                "--format",
                "json",
                "--allow-partial",
            ]);
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    assert_eq!(sources(&run(start)), ["local", "remote"]);
    assert_eq!(sources(&run(start + 3599)), ["local", "cache"]);
    drop(b);
    assert_eq!(sources(&run(start + 3600)), ["local", "stale"]);
    assert_eq!(sources(&run(start + 2 * 86_400 - 1)), ["local", "stale"]);
    assert_eq!(sources(&run(start + 2 * 86_400)), ["local", "error"]);
}
