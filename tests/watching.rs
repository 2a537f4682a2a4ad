//! Watching a cluster: `nodecache check`, held to the monitoring plugin
//! conventions it follows (Nagios plugin guidelines, "Plugin Return Codes":
//! 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; one line of output, performance
//! data after a `|`).

use crate::util::{Nodecache, dead_url, recorded_server, resources_of, stderr, write_cache_entry};

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
