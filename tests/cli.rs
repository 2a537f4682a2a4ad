//! End-to-end tests of the `nodecache` binary with the real embedded policy
//! component, the real probe and a real cache directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::{BIN, Nodecache, policy_file, proc_cpuinfo_common_flags, stderr};

/// Which /proc/cpuinfo names are CPUID bits and which Linux defines itself,
/// as measured from Linux 6.1's cpufeatures.h and scattered.c (its header
/// says how): an oracle this project's own table is not.
const KERNEL_NAMES: &str = include_str!("fixtures/flag-name-map.tsv");

/// The names KERNEL_NAMES files under a kind `wanted` accepts: `cpuid` (a
/// bit of a CPUID leaf word), `cpuid-scattered` (a bit scattered.c picks
/// from another leaf; the CPUID probe does not read those), or
/// `linux-defined(word N)`.
fn kernel_names(wanted: impl Fn(&str) -> bool) -> BTreeSet<&'static str> {
    KERNEL_NAMES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut fields = l.split('\t');
            let (name, kind) = (fields.next()?, fields.next()?);
            wanted(kind).then_some(name)
        })
        .collect()
}

struct Run {
    cache: tempfile::TempDir,
}

impl Run {
    fn new() -> Run {
        Run {
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self) -> Nodecache {
        Nodecache::new().cache_dir(self.cache.path())
    }

    fn nodecache(&self, args: &[&str]) -> Output {
        self.command().output(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.command().text(args)
    }

    fn json(&self, args: &[&str]) -> Value {
        self.command().json(args)
    }

    fn entry_path(&self, node: &str) -> PathBuf {
        self.cache.path().join("resources").join(format!("{node}.json"))
    }
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_string).collect()
}

#[test]
fn one_node_cpu_flags_equal_the_kernels_flags() {
    let run = Run::new();
    let flags = lines(&run.ok(&["cpu-flags"]));
    assert_eq!(flags, proc_cpuinfo_common_flags());
}

#[test]
fn the_list_is_sorted_one_flag_per_line() {
    let run = Run::new();
    let text = run.ok(&["cpu-flags", "--format", "list"]);
    let listed: Vec<&str> = text.lines().collect();
    assert!(
        listed
            .iter()
            .all(|flag| !flag.is_empty() && !flag.contains(char::is_whitespace)),
        "{text:?}"
    );
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(listed, sorted);
    let expected = proc_cpuinfo_common_flags();
    assert_eq!(listed, expected.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn the_cpuid_probe_sees_every_cpuid_based_kernel_flag() {
    let run = Run::new();
    // CPUID bits by the kernel's own tables (its word-mapped leaves).
    let cpuid_names = kernel_names(|kind| kind == "cpuid");
    let from_cpuid = lines(&run.ok(&["probe", "--source", "cpuid"]));
    let missing: Vec<_> = proc_cpuinfo_common_flags()
        .into_iter()
        .filter(|flag| cpuid_names.contains(flag.as_str()) && !from_cpuid.contains(flag))
        .collect();
    assert!(missing.is_empty(), "CPUID probe misses kernel flags {missing:?}");
}

/// x86_64 only (the kernel-only flags it checks are x86's), compiled only
/// there, so it cannot pass by skipping.
#[cfg(target_arch = "x86_64")]
#[test]
fn probe_both_lists_the_kernels_own_flags() {
    let run = Run::new();
    let text = run.ok(&["probe", "--source", "both"]);
    assert!(text.contains("# CPUID reports, the kernel hides"));
    let kernel_only: BTreeSet<String> = text
        .split("# the kernel reports, no CPUID bit names")
        .nth(1)
        .expect("the kernel-only section")
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    // The flags /proc/cpuinfo shows that Linux defines itself (constant_tsc,
    // rep_good, ... on x86) are listed as the kernel's own; those the
    // kernel's tables call CPUID bits are not. (A name newer than Linux 6.1
    // is in neither list and judged by neither assertion.)
    let proc_flags = proc_cpuinfo_common_flags();
    let linux_defined = kernel_names(|kind| kind.starts_with("linux-defined"));
    let cpuid_names = kernel_names(|kind| kind == "cpuid");
    let expected: BTreeSet<String> = proc_flags
        .iter()
        .filter(|flag| linux_defined.contains(flag.as_str()))
        .cloned()
        .collect();
    assert!(!expected.is_empty(), "no Linux-defined flag in /proc/cpuinfo");
    assert!(
        expected.is_subset(&kernel_only),
        "missing {:?}",
        expected.difference(&kernel_only).collect::<Vec<_>>()
    );
    let misfiled: Vec<&String> = kernel_only
        .iter()
        .filter(|flag| cpuid_names.contains(flag.as_str()))
        .collect();
    assert!(
        misfiled.is_empty(),
        "CPUID bits listed as the kernel's own: {misfiled:?}"
    );
    assert!(!kernel_only.is_empty(), "{text}");
}

#[test]
fn the_second_call_is_served_from_the_cache() {
    let run = Run::new();
    let first = run.json(&["cpu-flags", "--format", "json"]);
    assert_eq!(first["nodes"][0]["source"], "local");
    assert_eq!(first["nodes"][0]["age_seconds"], 0);
    assert_eq!(first["arch"], std::env::consts::ARCH);
    let second = run.json(&["cpu-flags", "--format", "json"]);
    assert_eq!(second["nodes"][0]["source"], "cache");
    assert_eq!(second["nodes"][0]["error"], Value::Null);
    assert_eq!(first["flags"], second["flags"]);
}

#[test]
fn max_age_from_the_command_line_forces_a_refresh() {
    let run = Run::new();
    run.ok(&["cpu-flags"]);
    let refreshed = run.json(&["--set", "max-age=0", "cpu-flags", "--format", "json"]);
    assert_eq!(refreshed["nodes"][0]["source"], "local");
}

#[test]
fn a_corrupted_cache_entry_is_refetched_without_error() {
    let run = Run::new();
    let first = run.json(&["cpu-flags", "--format", "json"]);
    let node = first["nodes"][0]["name"].as_str().unwrap().to_string();
    let entry = run.entry_path(&node);
    let good = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &good[..good.len() / 2]).unwrap();
    let again = run.json(&["cpu-flags", "--format", "json"]);
    assert_eq!(again["nodes"][0]["source"], "local");
    assert_eq!(again["flags"], first["flags"]);
    let repaired = run.json(&["cpu-flags", "--format", "json"]);
    assert_eq!(repaired["nodes"][0]["source"], "cache");
}

/// An entry that is whole, fresh and JSON but not a resources document
/// (written by hand, or by an older nodecache that cached any JSON) is a
/// miss: both commands refetch instead of failing until it expires.
#[test]
fn a_fresh_entry_that_is_not_a_resources_document_is_a_miss() {
    let run = Run::new();
    let first = run.json(&["cpu-flags", "--format", "json"]);
    let node = first["nodes"][0]["name"].as_str().unwrap().to_string();
    crate::util::write_legacy_cache_entry(run.cache.path(), &node, "{\"hello\":1}", None, 0);
    let resources = run.json(&["resources"]);
    assert_eq!(resources["cpu"]["architecture"], std::env::consts::ARCH);
    crate::util::write_legacy_cache_entry(run.cache.path(), &node, "{\"hello\":1}", None, 0);
    let again = run.json(&["cpu-flags", "--format", "json"]);
    assert_eq!(again["nodes"][0]["source"], "local");
    assert_eq!(again["flags"], first["flags"]);
}

#[test]
fn resources_print_an_incus_document() {
    let run = Run::new();
    let document = run.json(&["resources"]);
    assert_eq!(document["cpu"]["architecture"], std::env::consts::ARCH);
    let cores = document["cpu"]["sockets"][0]["cores"].as_array().unwrap();
    assert!(cores[0]["flags"].as_array().unwrap().len() > 10);
    assert!(document["memory"]["total"].as_u64().unwrap() > 0);
}

#[test]
fn hostile_node_names_are_rejected_before_touching_a_path() {
    let run = Run::new();
    for name in [
        "../../etc/passwd",
        "a/b",
        ".hidden",
        "-x",
        "",
        &"n".repeat(64),
        "name with space",
    ] {
        let output = run.nodecache(&["resources", "--", name]);
        assert_eq!(output.status.code(), Some(2), "{name:?}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("invalid node name"),
            "{name:?}: {}",
            stderr(&output)
        );
    }
    assert!(!run.cache.path().join("resources").exists());
}

#[test]
fn an_unknown_member_is_named_in_the_error() {
    let run = Run::new();
    let output = run.nodecache(&["resources", "no-such-node"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("\"no-such-node\" is not a member"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn policy_check_describes_a_file_or_an_embedded_policy() {
    let run = Run::new();
    let file = policy_file("default");
    let text = run.ok(&["policy", "check", file.to_str().unwrap()]);
    assert!(text.contains("policy: default"), "{text}");
    assert!(text.contains("contract: nodecache:policy@0.2.0"), "{text}");
    assert!(text.contains("max-age (default 24h)"), "{text}");
    let text = run.ok(&["policy", "check", "pinned"]);
    assert!(
        text.contains("policy: pinned") && text.contains("contract: nodecache:policy@0.1.0"),
        "{text}"
    );
    let output = run.nodecache(&["policy", "check", "no-such-policy"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no embedded policy is named \"no-such-policy\""),
        "{}",
        stderr(&output)
    );
}

#[test]
fn policy_list_shows_the_shelf_with_contracts() {
    let text = Run::new().ok(&["policy", "list"]);
    for name in ["default", "revalidate", "early-refresh", "always-fresh", "pinned"] {
        assert!(text.contains(&format!("policy: {name} ")), "{name}: {text}");
    }
    assert_eq!(
        text.matches("contract: nodecache:policy@0.2.0").count(),
        4,
        "{text}"
    );
    assert_eq!(
        text.matches("contract: nodecache:policy@0.1.0").count(),
        1,
        "{text}"
    );
    assert!(text.contains("revalidate-after (default 5m)"), "{text}");
}

#[test]
fn policy_check_rejects_files_that_are_not_components() {
    let run = Run::new();
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 3] = [
        ("text.wasm", b"hello, not wasm", "not a WebAssembly file"),
        (
            "core.wasm",
            b"\0asm\x01\0\0\0",
            "core WebAssembly module, not a component",
        ),
        ("torn.wasm", b"\0asm\x0d\0\x01\0\x07", "not a valid component"),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let output = run.nodecache(&["policy", "check", path.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1), "{name}");
        let message = stderr(&output);
        assert!(
            message.contains(expected) && message.contains(name),
            "{name}: {message}"
        );
        assert_eq!(message.trim().lines().count(), 1, "one line: {message}");
    }
}

#[test]
fn an_explicit_policy_file_is_used() {
    let run = Run::new();
    // An entry two days old: the default policy refreshes it, pinned keeps it.
    let report = run.json(&["cpu-flags", "--format", "json"]);
    let node = report["nodes"][0]["name"].as_str().unwrap().to_string();
    let document = run.ok(&["resources"]);
    // Fetched two days before a stopped clock: the run sees exactly 172,800 s.
    let frozen = crate::util::now_s();
    crate::util::write_cache_entry_at(
        run.cache.path(),
        &node,
        &document,
        None,
        (frozen - 2 * 86_400) * 1000,
    );
    let pinned = policy_file("pinned");
    let output =
        crate::util::freeze_clock(Command::new(BIN).arg("--cache-dir").arg(run.cache.path()), frozen)
            .args([
                "--policy",
                pinned.to_str().unwrap(),
                "cpu-flags",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["nodes"][0]["source"], "cache");
    assert_eq!(report["nodes"][0]["age_seconds"], 2 * 86_400);
    let flags = crate::util::flags_of(&report);
    assert_eq!(flags, proc_cpuinfo_common_flags());
    let report = run.json(&["cpu-flags", "--format", "json"]);
    assert_eq!(report["nodes"][0]["source"], "local");
    let output = run.nodecache(&["--policy", "/nonexistent/policy.wasm", "cpu-flags"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("/nonexistent/policy.wasm"));
}

#[test]
fn usage_errors_exit_2_and_every_command_has_help() {
    let run = Run::new();
    assert_eq!(
        run.nodecache(&["cpu-flags", "--format", "yaml"]).status.code(),
        Some(2)
    );
    assert_eq!(run.nodecache(&["no-such-command"]).status.code(), Some(2));
    for command in [
        &["--help"][..],
        &["resources", "--help"],
        &["cpu-flags", "--help"],
        &["probe", "--help"],
        &["policy", "check", "--help"],
    ] {
        assert!(run.nodecache(command).status.success(), "{command:?}");
    }
}

#[test]
fn compiled_policies_are_kept_privately_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let run = Run::new();
    let first = run.nodecache(&["-vv", "cpu-flags"]);
    assert!(stderr(&first).contains("obtained=Compiled"), "{}", stderr(&first));
    let compiled = run.cache.path().join("compiled");
    let artifacts: Vec<_> = std::fs::read_dir(&compiled)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&compiled), mode(&artifacts[0])), (0o700, 0o600));
    let second = run.nodecache(&["-vv", "cpu-flags"]);
    assert!(stderr(&second).contains("obtained=Cached"), "{}", stderr(&second));
    // Another policy is another artifact.
    run.ok(&["--policy", "pinned", "cpu-flags"]);
    assert_eq!(std::fs::read_dir(&compiled).unwrap().count(), 2);
    // A directory others may write is refused, with the reason; the policy is compiled anyway.
    std::fs::set_permissions(&compiled, std::fs::Permissions::from_mode(0o770)).unwrap();
    let refused = run.nodecache(&["cpu-flags"]);
    assert!(refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains("not keeping compiled policies") && message.contains("writable by group or others"),
        "{message}"
    );
    assert_eq!(
        lines(&String::from_utf8(refused.stdout).unwrap()),
        proc_cpuinfo_common_flags()
    );
}

/// Batch systems and some containers cap address space (`ulimit -v`). A
/// one-node run fits its instance pool under 64 GiB; under 1 GiB the pool
/// cannot be reserved and instances are made on demand, and the run still
/// answers, the same.
#[test]
fn runs_under_an_address_space_limit() {
    let run = Run::new();
    let expected = run.ok(&["cpu-flags"]);
    for (limit, pooled) in [(64u64 << 30, true), (1 << 30, false)] {
        let output = Command::new("prlimit")
            .arg(format!("--as={limit}"))
            .arg(BIN)
            .arg("--cache-dir")
            .arg(run.cache.path())
            .args(["-v", "--set", "max-age=0", "cpu-flags"])
            .output()
            .expect("prlimit (util-linux)");
        let log = stderr(&output);
        assert!(output.status.success(), "under {limit} bytes: {log}");
        assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);
        assert_eq!(!log.contains("no instance pool"), pooled, "{log}");
    }
}

/// Forty first runs of `identity` at once make one identity between them:
/// every run succeeds and shows the same fingerprint.
#[test]
fn concurrent_first_runs_make_one_identity() {
    let state = tempfile::tempdir().unwrap();
    let runs: Vec<std::process::Child> = (0..40)
        .map(|_| {
            Command::new(BIN)
                .arg("--state-dir")
                .arg(state.path())
                .arg("identity")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut fingerprints = BTreeSet::new();
    for run in runs {
        let output = run.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let text = String::from_utf8(output.stdout).unwrap();
        let fingerprint = text
            .lines()
            .find_map(|l| l.strip_prefix("fingerprint: "))
            .unwrap();
        fingerprints.insert(fingerprint.to_string());
    }
    assert_eq!(fingerprints.len(), 1, "{fingerprints:?}");
}

/// A setting the policy refuses is the operator's usage error (exit 2, as
/// the README says), from every command that runs the policy.
#[test]
fn a_setting_the_policy_refuses_is_a_usage_error() {
    let run = Run::new();
    for command in [
        &["cpu-flags"][..],
        &["resources"],
        &["resources", "--all"],
        &["can-run", "--flags", "sse2"],
    ] {
        let mut args = vec!["--set", "max-age=bogus"];
        args.extend_from_slice(command);
        let output = run.nodecache(&args);
        assert_eq!(output.status.code(), Some(2), "{command:?}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("max-age = \"bogus\""),
            "{command:?}: {}",
            stderr(&output)
        );
    }
    let output = run.nodecache(&["--set", "novalue", "cpu-flags"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("expected KEY=VALUE"),
        "{}",
        stderr(&output)
    );
}

/// A setting the policy does not declare (`max_age` for `max-age`) was
/// ignored and the default used; now each command, a cluster file's
/// `[policy]` table and `serve` refuse it, naming the keys the policy knows.
#[test]
fn a_setting_the_policy_does_not_know_is_refused_naming_the_ones_it_does() {
    let run = Run::new();
    let default = ("default", "(it knows: max-age, stale-max-age)");
    // serve's own default policy is revalidate.
    let revalidate = (
        "revalidate",
        "(it knows: revalidate-after, max-age, stale-max-age)",
    );
    for (command, (policy, known)) in [
        (&["cpu-flags"][..], default),
        (&["resources"], default),
        (&["resources", "--all"], default),
        (&["can-run", "--flags", "sse2"], default),
        (
            &["serve", "--insecure-http", "--listen", "127.0.0.1:0"],
            revalidate,
        ),
    ] {
        let mut args = vec!["--set", "max_age=5m"];
        args.extend_from_slice(command);
        let output = run.nodecache(&args);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{command:?}: {message}");
        assert!(
            message.contains(&format!("setting \"max_age\" is not a parameter of {policy}"))
                && message.contains(known),
            "{command:?}: {message}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(
        &cluster,
        "local = \"me\"\n[[member]]\nname = \"me\"\n[policy]\nmax-age = \"1h\"\nstale_max_age = \"1d\"\n",
    )
    .unwrap();
    let output = run.nodecache(&["--cluster", cluster.to_str().unwrap(), "cpu-flags"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("\"stale_max_age\""),
        "{}",
        stderr(&output)
    );
    let revalidate = run.nodecache(&[
        "--policy",
        "revalidate",
        "--set",
        "max-age=5m",
        "--set",
        "revalidate_after=1m",
        "cpu-flags",
    ]);
    assert!(
        stderr(&revalidate).contains("(it knows: revalidate-after, max-age, stale-max-age)"),
        "{}",
        stderr(&revalidate)
    );
}

/// Every file an operator names is read with a bound: `/dev/zero` in its
/// place is an error naming the file, soon, not gigabytes read.
#[test]
fn operator_files_are_read_with_a_bound() {
    let run = Run::new();
    let state = tempfile::tempdir().unwrap();
    let cases: [&[&str]; 5] = [
        &["--cluster", "/dev/zero", "cpu-flags"],
        &["--policy", "/dev/zero", "cpu-flags"],
        &[
            "serve",
            "--insecure-http",
            "--listen",
            "127.0.0.1:0",
            "--resources-file",
            "/dev/zero",
        ],
        &["trust", "add", "/dev/zero"],
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/dev/zero",
            "--tls-key",
            "/dev/zero",
        ],
    ];
    for args in cases {
        let mut full = vec!["--state-dir", state.path().to_str().unwrap()];
        full.extend_from_slice(args);
        let output = run.nodecache(&full);
        assert!(!output.status.success(), "{args:?}");
        // Every file goes through one reader: a device is refused before a
        // byte is read (the read-once files were read to their bound).
        let says = "/dev/zero: is a device, not a regular file";
        assert!(stderr(&output).contains(says), "{args:?}: {}", stderr(&output));
    }
    // A pipe is welcome where a file is read once, and bounded: `yes` never ends.
    let mut endless = Command::new("yes")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let output = Command::new(BIN)
        .args(["--cluster", "/dev/stdin", "cpu-flags"])
        .stdin(endless.stdout.take().unwrap())
        .output()
        .unwrap();
    let _ = endless.kill();
    let _ = endless.wait();
    assert!(
        stderr(&output).contains("cluster file /dev/stdin: larger than"),
        "{}",
        stderr(&output)
    );
}

/// Large inputs cost what they need, and errors quote a bounded part of
/// them: a 7 MB cluster file took 269 MB to parse and is now refused by
/// its size unread (2 MiB holds 25,000 members); an error listing 20,000
/// groups names 20 and counts the rest.
#[test]
fn large_inputs_are_bounded_and_errors_quote_a_bounded_part() {
    let run = Run::new();
    let dir = tempfile::tempdir().unwrap();
    let member = |i: usize| {
        format!("[[member]]\nname = \"n{i:06}\"\nurl = \"https://10.0.0.1:8443\"\ngroups = [\"g{i:06}\"]\n")
    };
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, (0..60_000).map(member).collect::<String>()).unwrap();
    assert!(std::fs::metadata(&huge).unwrap().len() > 2 << 20);
    let output = run.nodecache(&["--cluster", huge.to_str().unwrap(), "cpu-flags"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("larger than 2097152 bytes"),
        "{}",
        stderr(&output)
    );
    let many = dir.path().join("many.toml");
    std::fs::write(&many, (0..20_000).map(member).collect::<String>()).unwrap();
    let output = run.nodecache(&[
        "--cluster",
        many.to_str().unwrap(),
        "cpu-flags",
        "--group",
        "nosuch",
    ]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(message.contains("g000019, … and 19980 more"), "{message}");
    assert!(message.len() < 1000, "{} bytes of error", message.len());
}

/// A full disk loses nothing: the answer still comes from what was just
/// fetched, the failed write is a warning naming the entry and the reason,
/// the entry already there is kept byte for byte, and no temporary file is
/// left. The disk is a 128 KiB tmpfs in a private mount namespace
/// (`unshare -rm`: no root needed), filled before the second run.
#[test]
fn a_full_disk_keeps_the_entry_and_the_answer() {
    let disk = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let script = r#"
set -e
mount -t tmpfs -o size=128k tmpfs "$1"
"$0" --cache-dir "$1/c" cpu-flags --format list > "$2/first" 2>/dev/null
cp "$1"/c/resources/*.json "$2/entry-before"
dd if=/dev/zero of="$1/fill" bs=4k 2>/dev/null || true
"$0" --cache-dir "$1/c" --set max-age=0s cpu-flags --format list > "$2/second" 2> "$2/warnings"
cp "$1"/c/resources/*.json "$2/entry-after"
ls -A "$1/c/resources" > "$2/listing"
"#;
    let status = Command::new("unshare")
        .args(["-rm", "sh", "-c", script, BIN])
        .arg(disk.path())
        .arg(out.path())
        .status()
        .expect("run unshare");
    assert!(status.success(), "the full-disk script failed ({status})");
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap();
    assert!(!read("first").is_empty());
    assert_eq!(read("second"), read("first"));
    let warnings = read("warnings");
    assert!(
        warnings.contains("could not write the cache") && warnings.contains("No space left on device"),
        "{warnings}"
    );
    assert_eq!(read("entry-after"), read("entry-before"));
    assert_eq!(read("listing").lines().count(), 1, "{}", read("listing"));
}

/// The completion scripts ask nodecache itself: bash (its script sourced,
/// its function called as bash calls it) completes a subcommand, an
/// option, and the group and member names of the cluster file the words
/// name; fish (its script sourced, `complete -C`) completes member names
/// from `NODECACHE_CLUSTER`; zsh parses its script. `man` renders every
/// page, each naming what it documents.
#[test]
fn completions_and_man_pages_are_generated_from_the_options() {
    let script = Command::new(BIN).args(["completions", "bash"]).output().unwrap();
    assert!(script.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nodecache.bash");
    std::fs::write(&file, &script.stdout).unwrap();
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(
        &cluster,
        "[[member]]\nname = \"alpha\"\nurl = \"https://10.0.0.1:8443\"\ngroups = [\"rack-1\", \"gen3\"]\n\
         [[member]]\nname = \"beta\"\nurl = \"https://10.0.0.2:8443\"\ngroups = [\"rack-2\"]\n",
    )
    .unwrap();
    // The scripts run `nodecache` from PATH, as an installed one would.
    let path = format!(
        "{}:{}",
        Path::new(BIN).parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let complete = |words: &str| {
        let shell = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMP_TYPE=9; \
             _clap_complete_nodecache nodecache \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let out = Command::new("bash")
            .args(["-c", &shell])
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let words = |text: String| -> Vec<String> { text.lines().map(str::to_string).collect() };
    assert!(words(complete("nodecache cpu")).contains(&"cpu-flags".to_string()));
    assert!(words(complete("nodecache cpu-flags --app")).contains(&"--apply".to_string()));
    let cluster_arg = cluster.display().to_string();
    assert_eq!(
        words(complete(&format!(
            "nodecache --cluster {cluster_arg} cpu-flags --group ''"
        ))),
        ["gen3", "rack-1", "rack-2"]
    );
    assert_eq!(
        words(complete(&format!(
            "nodecache --cluster {cluster_arg} can-run --from ''"
        ))),
        ["alpha", "beta"]
    );
    let fish_script = dir.path().join("nodecache.fish");
    let fish = Command::new(BIN).args(["completions", "fish"]).output().unwrap();
    std::fs::write(&fish_script, &fish.stdout).unwrap();
    let fished = Command::new("fish")
        .arg("-c")
        .arg(format!(
            "source {}; complete -C 'nodecache resources '",
            fish_script.display()
        ))
        .env("PATH", &path)
        .env("NODECACHE_CLUSTER", &cluster)
        .output()
        .expect("fish (scripts/test installs it)");
    let offered = String::from_utf8_lossy(&fished.stdout);
    assert!(
        offered.lines().any(|l| l == "alpha") && offered.lines().any(|l| l == "beta"),
        "fish: {offered}{}",
        stderr(&fished)
    );
    let zsh_script = dir.path().join("_nodecache");
    let zsh = Command::new(BIN).args(["completions", "zsh"]).output().unwrap();
    std::fs::write(&zsh_script, &zsh.stdout).unwrap();
    let parsed = Command::new("zsh")
        .arg("-n")
        .arg(&zsh_script)
        .output()
        .expect("zsh");
    assert!(parsed.status.success(), "zsh: {}", stderr(&parsed));
    for (page, names) in [
        (None, "nodecache"),
        (Some("cpu-flags"), "nodecache-cpu-flags"),
        (Some("serve"), "nodecache-serve"),
        (Some("cluster-file"), "nodecache-cluster-file"),
    ] {
        let roff = Command::new(BIN).arg("manpage").args(page).output().unwrap();
        assert!(roff.status.success());
        let path = dir.path().join("page.1");
        std::fs::write(&path, &roff.stdout).unwrap();
        let shown = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.status.success() && text.contains(names), "{names}: {text}");
        let sections: &[&str] = match page {
            Some("cluster-file") => &["KEYS", "EXAMPLE"],
            _ => &["EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES"],
        };
        for section in sections {
            assert!(
                text.lines().any(|line| line == *section),
                "{names} has no {section}: {text}"
            );
        }
    }
    // The page's example is a cluster file nodecache reads: its member is
    // unreachable (exit 3), not a usage error (exit 2).
    let page = Command::new(BIN)
        .args(["manpage", "cluster-file"])
        .output()
        .unwrap();
    let roff = String::from_utf8(page.stdout).unwrap();
    let example = roff.split(".nf\n").nth(1).unwrap().split(".fi\n").next().unwrap();
    let example_file = dir.path().join("example.toml");
    std::fs::write(&example_file, example.replace("\\-", "-")).unwrap();
    let read = Command::new(BIN)
        .arg("--cluster")
        .arg(&example_file)
        .args([
            "--cache-dir",
            dir.path().join("cache").to_str().unwrap(),
            "cpu-flags",
        ])
        .output()
        .unwrap();
    assert_ne!(read.status.code(), Some(2), "{}", stderr(&read));
    // --help ends with the same examples and exit statuses.
    let help = Command::new(BIN).args(["cpu-flags", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Examples:\n") && help.contains("Exit status:\n  0  success"),
        "{help}"
    );
    let unknown = Command::new(BIN).args(["manpage", "nope"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("no subcommand \"nope\""));
}
