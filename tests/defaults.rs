//! The defaults the README states, each checked where it takes effect:
//! the directories (against the XDG Base Directory Specification's
//! fallbacks), the cluster file's `deadline` and `max-response-bytes`, and
//! the default policy's `max-age` and `stale-max-age`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::{
    BIN, Nodecache, freeze_clock, now_s, recorded_node, resources_of, stderr, write_cache_entry_at,
};

/// `nodecache ARGS` with HOME set to `home` and the XDG variables as given
/// (unset when `None`), nothing else of the runner's environment deciding
/// where files go.
fn with_home(home: &Path, xdg: &[(&str, Option<&Path>)], args: &[&str]) -> Output {
    let mut command = Nodecache::new().env("HOME", home);
    for (name, value) in xdg {
        command = match value {
            Some(value) => command.env(name, value),
            None => command.env_removed(name),
        };
    }
    command.output(args)
}

/// The one `*.json` entry under `dir/resources`, or a failure naming the dir.
fn one_entry_in(dir: &Path) -> std::path::PathBuf {
    let entries: Vec<_> = std::fs::read_dir(dir.join("resources"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join("resources").display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

/// "`--cache-dir` (default `$XDG_CACHE_HOME/nodecache`, else
/// `~/.cache/nodecache`)" and "the state directory, `$XDG_STATE_HOME/nodecache`
/// or `~/.local/state/nodecache`": the XDG Base Directory Specification's
/// variables, and its fallbacks under HOME when they are unset.
#[test]
fn the_default_directories_follow_the_xdg_base_directory_specification() {
    let home = tempfile::tempdir().unwrap();
    let unset: [(&str, Option<&Path>); 2] = [("XDG_CACHE_HOME", None), ("XDG_STATE_HOME", None)];
    let probed = with_home(home.path(), &unset, &["cpu-flags"]);
    assert!(probed.status.success(), "{}", stderr(&probed));
    one_entry_in(&home.path().join(".cache/nodecache"));
    assert!(home.path().join(".cache/nodecache/compiled").is_dir());
    let identity = with_home(home.path(), &unset, &["identity"]);
    assert!(identity.status.success(), "{}", stderr(&identity));
    assert!(home.path().join(".local/state/nodecache/server.crt").is_file());

    let xdg = tempfile::tempdir().unwrap();
    let (cache, state) = (xdg.path().join("cache"), xdg.path().join("state"));
    let set = [
        ("XDG_CACHE_HOME", Some(cache.as_path())),
        ("XDG_STATE_HOME", Some(state.as_path())),
    ];
    let other_home = tempfile::tempdir().unwrap();
    assert!(
        with_home(other_home.path(), &set, &["cpu-flags"])
            .status
            .success()
    );
    one_entry_in(&cache.join("nodecache"));
    assert!(with_home(other_home.path(), &set, &["identity"]).status.success());
    assert!(state.join("nodecache/server.crt").is_file());
    // Nothing went under HOME when the variables were set.
    assert_eq!(std::fs::read_dir(other_home.path()).unwrap().count(), 0);
}

/// A loopback peer that answers every request with `body` (its length as
/// Content-Length), or never answers when `body` is None.
fn peer(body: Option<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer);
                match body {
                    Some(body) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(&body);
                    }
                    None => while stream.read(&mut buffer).is_ok_and(|n| n > 0) {},
                }
            });
        }
    });
    format!("http://{address}")
}

/// `nodecache --cache-dir … --cluster FILE cpu-flags --format json` over a
/// cluster file of `settings` and one member `m` at `url`.
fn one_member_run(dir: &Path, settings: &str, url: &str) -> Output {
    std::fs::create_dir_all(dir).unwrap();
    let cluster = dir.join("cluster.toml");
    std::fs::write(
        &cluster,
        format!("{settings}[[member]]\nname = \"m\"\nurl = \"{url}\"\n"),
    )
    .unwrap();
    Command::new(BIN)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--cluster")
        .arg(&cluster)
        .args(["cpu-flags", "--format", "json"])
        .output()
        .unwrap()
}

/// "deadline = "5s" # per-node fetch deadline (default 10s)": a member that
/// never answers, in a cluster file without `deadline`, is given up on at
/// 10 s, and the error says so.
#[test]
fn the_default_deadline_is_10_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let output = one_member_run(dir.path(), "", &peer(None));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("did not answer within 10.0 s"),
        "{}",
        stderr(&output)
    );
}

/// "max-response-bytes = 16777216 # larger answers are refused (default
/// 16 MiB)": an answer of exactly 16 MiB is taken, one byte more is refused,
/// with no `max-response-bytes` in the cluster file. (The padding is JSON
/// whitespace after the envelope, so both are valid documents.)
#[test]
fn the_default_response_cap_is_16_mib_exactly() {
    const CAP: usize = 16 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let file = recorded_node(dir.path(), "m", "x86_64", &["fpu", "sse2"]);
    let envelope = std::fs::read(&file).unwrap();
    let padded = |size: usize| {
        let mut body = envelope.clone();
        body.resize(size, b' ');
        body
    };
    let taken = one_member_run(&dir.path().join("at"), "", &peer(Some(padded(CAP))));
    assert!(taken.status.success(), "{}", stderr(&taken));
    let report: Value = serde_json::from_slice(&taken.stdout).unwrap();
    assert_eq!(report["nodes"][0]["source"], "remote", "{report}");
    let refused = one_member_run(&dir.path().join("over"), "", &peer(Some(padded(CAP + 1))));
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("exceeds the 16777216-byte cap"),
        "{}",
        stderr(&refused)
    );
}

/// The default policy: "entries younger than `max-age` (24h) are used; a
/// failed refresh serves the entry up to `stale-max-age` (7d), marked
/// stale". With the member down and the clock stopped (libfaketime), an
/// entry a second either side of each limit.
#[test]
fn the_default_policy_keeps_24_hours_and_serves_stale_up_to_7_days() {
    let dir = tempfile::tempdir().unwrap();
    let file = recorded_node(dir.path(), "m", "x86_64", &["fpu", "sse2"]);
    let document = resources_of(&file);
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(
        &cluster,
        format!(
            "[[member]]\nname = \"m\"\nurl = \"{}\"\n",
            crate::util::dead_url()
        ),
    )
    .unwrap();
    let frozen = now_s();
    let source_at_age = |age_s: u64| -> (Option<i32>, String) {
        let cache = tempfile::tempdir().unwrap();
        write_cache_entry_at(cache.path(), "m", &document, None, (frozen - age_s) * 1000);
        let output = freeze_clock(
            Command::new(BIN)
                .arg("--cache-dir")
                .arg(cache.path())
                .arg("--cluster")
                .arg(&cluster),
            frozen,
        )
        .args(["cpu-flags", "--format", "json"])
        .output()
        .unwrap();
        let source = serde_json::from_slice::<Value>(&output.stdout)
            .map(|report| report["nodes"][0]["source"].as_str().unwrap_or("").to_string())
            .unwrap_or_else(|_| stderr(&output));
        (output.status.code(), source)
    };
    const DAY: u64 = 86_400;
    assert_eq!(source_at_age(DAY - 1), (Some(0), "cache".to_string()));
    assert_eq!(source_at_age(DAY + 1), (Some(0), "stale".to_string()));
    assert_eq!(source_at_age(7 * DAY - 1), (Some(0), "stale".to_string()));
    let (code, message) = source_at_age(7 * DAY + 1);
    assert_eq!(code, Some(3), "{message}");
    assert!(message.contains("no data for 1 of 1 nodes"), "{message}");
}
