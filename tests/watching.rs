//! Watching a cluster: `nodecache check`, held to the monitoring plugin
//! conventions it follows (Nagios plugin guidelines, "Plugin Return Codes":
//! 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; one line of output, performance
//! data after a `|`).

use crate::util::{
    Nodecache, dead_url, record_hardware, recorded_server, resources_of, stderr, write_cache_entry,
};

/// Each state from a cluster that is in it: every member answering (OK), a
/// member served from an entry it could not refresh (WARNING, named), a
/// member with no data (CRITICAL, named), and a cluster file nodecache
/// cannot read (UNKNOWN); the line is the only output, on stdout.
#[test]
fn check_exits_with_the_monitoring_state_and_says_why_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (a, a_file) = recorded_server(dir.path(), "a", &["fpu", "sse2"]);
    let cluster = |name: &str, members: &[(&str, &str)]| {
        let path = dir.path().join(name);
        let text: String = members
            .iter()
            .map(|(name, url)| format!("[[member]]\nname = \"{name}\"\nurl = \"{url}\"\n"))
            .collect();
        std::fs::write(&path, text).unwrap();
        path
    };
    let cache = dir.path().join("cache");
    let check = |file: &std::path::Path| {
        let output = Nodecache::new()
            .cluster(file)
            .cache_dir(&cache)
            .output(&["check"]);
        let stdout = String::from_utf8(output.stdout.clone()).unwrap();
        assert_eq!(stdout.lines().count(), 1, "one line: {stdout}{}", stderr(&output));
        assert!(stderr(&output).is_empty(), "nothing else: {}", stderr(&output));
        (output.status.code(), stdout)
    };
    let (code, line) = check(&cluster("ok.toml", &[("a", &a.url)]));
    assert_eq!(code, Some(0), "{line}");
    assert!(
        line.starts_with("NODECACHE OK - cluster: 1 node answers"),
        "{line}"
    );
    assert!(
        line.contains(" | nodes=1 no_data=0 stale=0 failing=0 flags=2"),
        "{line}"
    );

    // b's entry is two days old (past the default's 24 h, within its 7 d
    // of stale service) and b does not answer: served stale.
    write_cache_entry(&cache, "b", &resources_of(&a_file), None, 2 * 86_400_000);
    let (code, line) = check(&cluster("stale.toml", &[("a", &a.url), ("b", dead_url())]));
    assert_eq!(code, Some(1), "{line}");
    assert!(
        line.starts_with("NODECACHE WARNING - cluster: stale: b;"),
        "{line}"
    );

    let (code, line) = check(&cluster("none.toml", &[("a", &a.url), ("c", dead_url())]));
    assert_eq!(code, Some(2), "{line}");
    assert!(
        line.starts_with("NODECACHE CRITICAL - cluster: no data for c;"),
        "{line}"
    );

    let (code, line) = check(&dir.path().join("missing.toml"));
    assert_eq!(code, Some(3), "{line}");
    assert!(
        line.starts_with("NODECACHE UNKNOWN - cluster: cannot check: "),
        "{line}"
    );

    // Its help says the same, not the other commands' exit statuses.
    let help = Nodecache::new().text(&["check", "--help"]);
    assert!(
        help.contains("  1  WARNING: ") && help.contains("  2  CRITICAL: "),
        "{help}"
    );
}

/// The `ETag` a member's `serve` sends for `/1.0/resources`: the hardware
/// fingerprint its history records must name.
fn etag_of(url: &str) -> String {
    let response = crate::util::http_get(url, "/1.0/resources", &[]);
    response
        .header("etag")
        .expect("an ETag")
        .trim_matches('"')
        .to_string()
}

/// A member's microcode update takes `hle` and `rtm` from every core (its
/// recorded document rewritten, as `serve --resources-file` reads it
/// again): the next revalidating `cpu-flags` names the lost flags and the
/// node, `history` shows the change with its diff and the fingerprints
/// the member sent, `check` warns with the same line, and an unchanged
/// run records nothing more.
#[test]
fn a_microcode_update_that_takes_tsx_is_recorded_named_and_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let before = ["avx", "fpu", "hle", "rtm", "sse2"];
    let (a, _) = recorded_server(dir.path(), "a", &before);
    let (b, b_file) = recorded_server(dir.path(), "b", &before);
    record_hardware(&b_file, &before, "0xde");
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(
        &cluster,
        format!(
            "[policy]\nrevalidate-after = \"1ms\"\n\n[[member]]\nname = \"a\"\nurl = \"{}\"\n\n[[member]]\nname = \"b\"\nurl = \"{}\"\n",
            a.url, b.url
        ),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let run = |args: &[&str]| {
        Nodecache::new()
            .cluster(&cluster)
            .cache_dir(&cache)
            .env("NODECACHE_POLICY", "revalidate")
            .output(args)
    };
    let cpu_flags = || {
        let output = run(&["cpu-flags", "--format", "json"]);
        assert!(output.status.success(), "{}", stderr(&output));
        let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        (answer, stderr(&output))
    };
    let (first, said) = cpu_flags();
    assert_eq!(first["flags"], serde_json::json!(before), "{said}");
    assert!(first.get("changes").is_none(), "{first}");
    let old_tag = etag_of(&b.url);

    let after = ["avx", "fpu", "sse2"];
    record_hardware(&b_file, &after, "0xf0");
    let new_tag = etag_of(&b.url);
    assert_ne!(old_tag, new_tag);
    let (second, said) = cpu_flags();
    assert_eq!(second["flags"], serde_json::json!(after));
    let change = &second["changes"][0];
    assert_eq!(change["lost"], serde_json::json!(["hle", "rtm"]), "{second}");
    assert_eq!(
        change["because"],
        serde_json::json!([{"node": "b", "why": "microcode 0xde → 0xf0"}])
    );
    let line = change["message"].as_str().unwrap();
    assert!(
        line.starts_with("the cluster lost hle, rtm since ")
            && line.ends_with(" UTC: b (microcode 0xde → 0xf0)"),
        "{line}"
    );
    assert!(said.contains(line), "stderr names it too: {said}");

    let history = Nodecache::new()
        .cache_dir(&cache)
        .json(&["history", "b", "--format", "json"]);
    let records = history.as_array().unwrap();
    assert_eq!(records.len(), 1, "{history}");
    let record = &records[0];
    assert_eq!(record["seen"], "fetch");
    assert_eq!(
        (
            record["old_fingerprint"].as_str(),
            record["new_fingerprint"].as_str()
        ),
        (Some(old_tag.as_str()), Some(new_tag.as_str()))
    );
    let diff = &record["diff"];
    assert_eq!(
        diff["microcode"],
        serde_json::json!({"old": "0xde", "new": "0xf0"})
    );
    let cores = resources_of(&b_file).matches("\"core\":").count();
    assert_eq!(
        diff["flags"],
        serde_json::json!([{"cores": {"old": cores, "new": cores}, "removed": ["hle", "rtm"]}])
    );
    assert!(
        diff.get("cpus").is_none() && diff.get("devices_added").is_none(),
        "{diff}"
    );
    let table = Nodecache::new().cache_dir(&cache).text(&["history", "--all"]);
    assert!(
        table.contains("fetch") && table.contains("microcode 0xde → 0xf0; lost hle, rtm"),
        "{table}"
    );
    assert!(!table.contains(" a "), "a never changed: {table}");

    let output = run(&["check"]);
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stdout}{}", stderr(&output));
    assert!(
        stdout.starts_with(&format!("NODECACHE WARNING - cluster: baseline shrank: {line};")),
        "{stdout}"
    );
    let output = run(&["check", "--since", "2999-01-01"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    // Unchanged: no record, no change named.
    let (third, said) = cpu_flags();
    assert!(third.get("changes").is_none(), "{third}");
    assert!(!said.contains("lost"), "{said}");
    let history = Nodecache::new()
        .cache_dir(&cache)
        .json(&["history", "b", "--format", "json"]);
    assert_eq!(history.as_array().unwrap().len(), 1);
}

/// A damaged, a truncated and an oversized history are each set aside (kept,
/// renamed) with one warning when the next change is recorded, and the
/// answer is what the members' documents say.
#[test]
fn a_damaged_history_is_set_aside_and_the_answer_stands() {
    let dir = tempfile::tempdir().unwrap();
    let (b, b_file) = recorded_server(dir.path(), "b", &["fpu", "sse2"]);
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(
        &cluster,
        format!("[[member]]\nname = \"b\"\nurl = \"{}\"\n", b.url),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let cpu_flags = || {
        let output = Nodecache::new()
            .cluster(&cluster)
            .cache_dir(&cache)
            .output(&["--refresh", "cpu-flags"]);
        assert!(output.status.success(), "{}", stderr(&output));
        (String::from_utf8(output.stdout.clone()).unwrap(), stderr(&output))
    };
    cpu_flags();
    let history = cache.join("history");
    std::fs::create_dir_all(&history).unwrap();
    let damages: [(&str, Vec<u8>); 3] = [
        ("damaged", b"\x00\x01 not json".to_vec()),
        (
            "truncated",
            br#"{"format":"nodecache-history/1","node":"b","records":[{"at_ms":1,"#.to_vec(),
        ),
        ("oversized", vec![b' '; 300 << 10]),
    ];
    for (round, (kind, bytes)) in damages.iter().enumerate() {
        std::fs::write(history.join("b.json"), bytes).unwrap();
        let flags: Vec<String> = ["fpu", "sse2"]
            .iter()
            .map(|f| f.to_string())
            .chain(std::iter::once(format!("x{round}")))
            .collect();
        let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
        record_hardware(&b_file, &refs, "0x1");
        let (answer, said) = cpu_flags();
        let mut expected = refs.clone();
        expected.sort();
        assert_eq!(
            answer.split_whitespace().collect::<Vec<_>>(),
            expected,
            "{kind}: {said}"
        );
        assert_eq!(
            said.matches("damaged hardware history").count(),
            1,
            "{kind}: {said}"
        );
        let aside: Vec<_> = std::fs::read_dir(&history)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".damaged-") && std::fs::read(p).unwrap() == *bytes)
            .collect();
        assert_eq!(aside.len(), 1, "{kind}: kept whole, renamed");
        let records = Nodecache::new()
            .cache_dir(&cache)
            .json(&["history", "b", "--format", "json"]);
        assert_eq!(
            records.as_array().unwrap().len(),
            1,
            "{kind}: a new history: {records}"
        );
    }
}
