//! `serve --nfd-features-file`: this machine's Kubernetes Node Feature
//! Discovery feature file, held to NFD's documented rules for `features.d`
//! (NFD documentation, "Customization guide", section "Feature files",
//! v0.16): one `<name>[=<value>]` per line, a name in a namespace (here a
//! subdomain of `feature.node.kubernetes.io`, which NFD allows without
//! configuration) and a value that is a Kubernetes label value; `#` lines
//! are comments but `# +expiry-time=<RFC 3339>` a directive; a file over
//! 64 KiB is not read; a file whose name starts with a dot is ignored, so
//! writers write a dotfile and rename it.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::util::{BIN, LoggedServe, Nodecache, record_hardware, recorded_server};

const NAMESPACE: &str = "nodecache.feature.node.kubernetes.io";

/// A Kubernetes label value (and name part): at most 63 characters of
/// `[A-Za-z0-9_.-]`, alphanumeric at both ends; a value may be empty.
fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// The labels of a feature file, checked against the rules above.
fn read_feature_file(text: &str) -> Vec<(String, String)> {
    assert!(text.len() <= 64 * 1024, "NFD reads at most 64 KiB");
    assert!(text.ends_with('\n'), "whole lines: {text:?}");
    let mut labels = Vec::new();
    let mut expiry = None;
    for line in text.lines() {
        if let Some(directive) = line.strip_prefix("# +") {
            let (key, value) = directive.split_once('=').expect("a directive is key=value");
            assert_eq!(key, "expiry-time", "{line}");
            expiry = Some(value.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        let (namespace, name) = name.split_once('/').expect("a namespaced name");
        assert_eq!(namespace, NAMESPACE, "{line}");
        assert!(is_label_value(name) && !name.is_empty(), "a label name: {line}");
        assert!(is_label_value(value), "a label value: {line}");
        labels.push((name.to_string(), value.to_string()));
    }
    let expiry = expiry.expect("an expiry-time directive before the labels");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // RFC 3339, checked by GNU date: in the future.
    let date = Command::new("date")
        .args(["-u", "-d", &expiry, "+%s"])
        .output()
        .unwrap();
    assert!(date.status.success(), "not a time: {expiry}");
    let at: u64 = String::from_utf8(date.stdout).unwrap().trim().parse().unwrap();
    assert!(at > now, "expiry {expiry} is past");
    labels
}

#[test]
fn serve_keeps_this_machines_nfd_feature_file_whole_and_rewrites_it_only_on_change() {
    let dir = tempfile::tempdir().unwrap();
    // x86-64-v1's flags (the psABI's list) and no more: the cluster's level.
    let v1 = [
        "cmov", "cx8", "fpu", "fxsr", "lm", "mmx", "syscall", "sse", "sse2",
    ];
    let (a, a_file) = recorded_server(dir.path(), "a", &v1);
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(
        &cluster,
        format!(
            "local = \"me\"\n[policy]\nrevalidate-after = \"1ms\"\n\n[[member]]\nname = \"me\"\ngroups = [\"rack-a\"]\n\n[[member]]\nname = \"a\"\nurl = \"{}\"\n",
            a.url
        ),
    )
    .unwrap();
    let features = dir.path().join("features.d");
    std::fs::create_dir(&features).unwrap();
    let file = features.join("nodecache");
    let cache = dir.path().join("cache");
    let mut command = Command::new(BIN);
    command
        .arg("-vv")
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--cluster")
        .arg(&cluster)
        .args([
            "serve",
            "--insecure-http",
            "--listen",
            "127.0.0.1:0",
            "--nfd-interval",
            "100ms",
        ])
        .arg("--nfd-features-file")
        .arg(&file);
    let mut serve = LoggedServe::start(command);
    let rewritten = |line: &str| line.contains("NFD feature file rewritten");
    serve.wait_for("the first NFD file", rewritten);
    let first = std::fs::read_to_string(&file).unwrap();
    let labels = read_feature_file(&first);
    let value = |labels: &[(String, String)], name: &str| {
        labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    };
    assert_eq!(
        value(&labels, "cluster.level").as_deref(),
        Some("x86-64-v1"),
        "{first}"
    );
    assert_eq!(value(&labels, "group.rack-a").as_deref(), Some("true"), "{first}");
    assert!(value(&labels, "level").is_some(), "{first}");
    let inode = std::fs::metadata(&file).unwrap().ino();

    // A reader all along never sees a part of a file.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, reads, file) = (stop.clone(), reads.clone(), file.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&file).unwrap();
                assert!(
                    text.ends_with('\n') && text.contains("cluster.model="),
                    "a part: {text:?}"
                );
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // Unchanged answers, three times: the file stays (the same inode).
    for _ in 0..3 {
        serve.wait_for("an unchanged answer", |line| {
            line.contains("NFD feature file unchanged")
        });
    }
    assert_eq!(
        std::fs::metadata(&file).unwrap().ino(),
        inode,
        "rewritten without a change"
    );

    // a loses sse2: the cluster has no x86-64 level any more; the file is replaced.
    let fewer: Vec<&str> = v1.iter().copied().filter(|f| *f != "sse2").collect();
    record_hardware(&a_file, &fewer, "0x2");
    serve.wait_for("the changed NFD file", rewritten);
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_ne!(
        std::fs::metadata(&file).unwrap().ino(),
        inode,
        "a new file, renamed over"
    );
    let second = std::fs::read_to_string(&file).unwrap();
    let labels = read_feature_file(&second);
    assert_eq!(
        value(&labels, "cluster.level").as_deref(),
        Some("none"),
        "{second}"
    );
    // No dotfile left behind.
    let names: Vec<String> = std::fs::read_dir(&features)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["nodecache"]);
    // The CLI gives the same labels.
    let cli = Nodecache::new()
        .cluster(&cluster)
        .cache_dir(&cache)
        .env("NODECACHE_POLICY", "revalidate")
        .text(&["cpu-flags", "--format", "nfd"]);
    assert_eq!(read_feature_file(&cli), labels);
    serve.stop();
}
