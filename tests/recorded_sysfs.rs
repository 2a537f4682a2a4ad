//! What this test machine lacks (a GPU, USB devices, an SR-IOV card, an
//! InfiniBand card, an NVMe disk, a second NUMA node), with the real
//! Incus as the oracle: each recorded tree of tests/fixtures/sysfs is
//! grafted onto copies of this machine's /sys/class, /sys/bus and
//! /sys/devices/system/{node,cpu} in private mount and network namespaces
//! (`unshare -m -n`), a real `incusd` and `nodecache`
//! both read it there, and their documents must agree leaf by leaf, as the
//! whole-document comparison of tests/incus.rs does for this machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::incus::{INCUS_VERSION, INCUSD, compare_leaf_by_leaf};
use crate::util::BIN;

/// The directories a tree is grafted onto: a copy of each, with the tree's
/// entries added, is mounted over it in the run's namespace.
const GRAFTED: [(&str, &str); 4] = [
    ("class", "/sys/class"),
    ("bus", "/sys/bus"),
    ("node", "/sys/devices/system/node"),
    ("cpu", "/sys/devices/system/cpu"),
];

/// What a tree asks of the namespace run: the leaves Incus must show, and
/// the network interfaces to create (bridges, in the run's own network
/// namespace: Incus asks the kernel about a card's interfaces by name, and
/// fails the whole document when one does not exist).
struct Tree {
    expected: Vec<(String, Value)>,
    netdevs: Vec<String>,
}

/// A tree's entries written under `root` (its `class/` and `bus/` over
/// copies of this machine's; `class/net` keeps only `lo`, the one interface
/// the run's private network namespace has).
fn materialize(tree: &str, root: &Path) -> Tree {
    for (top, real) in GRAFTED {
        std::fs::create_dir_all(root.join(top)).unwrap();
        // Links and attributes as they are; write-only attributes fail to
        // copy and are left out (neither reader opens them).
        let _ = Command::new("cp")
            .arg("-a")
            .arg(format!("{real}/."))
            .arg(root.join(top))
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
    }
    for entry in std::fs::read_dir(root.join("class/net")).unwrap().flatten() {
        if entry.file_name() != "lo" {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let (mut expected, mut netdevs) = (Vec::new(), Vec::new());
    for (number, line) in tree.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        let (path, value) = rest.split_once(' ').unwrap_or((rest, ""));
        let at = |path: &str| {
            assert!(
                ["class/", "bus/", "node/", "cpu/", "dev/"]
                    .iter()
                    .any(|top| path.starts_with(top)),
                "line {}: {path} is outside class/, bus/, node/, cpu/ and dev/",
                number + 1
            );
            root.join(path)
        };
        match kind {
            "expect" => expected.push((path.to_string(), serde_json::from_str(value).unwrap())),
            "netdev" => netdevs.push(path.to_string()),
            "dir" => std::fs::create_dir_all(at(path)).unwrap(),
            "remove" => {
                let path = at(path);
                match std::fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path).unwrap(),
                    Ok(_) => std::fs::remove_file(&path).unwrap(),
                    Err(e) => panic!("line {}: {}: {e}", number + 1, path.display()),
                }
            }
            "file" => {
                let file = at(path);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, format!("{}\n", value.replace("\\n", "\n"))).unwrap();
            }
            "link" => {
                let link = at(path);
                std::fs::create_dir_all(link.parent().unwrap()).unwrap();
                let target = match value.strip_prefix('@') {
                    Some(inside) => root.join(inside),
                    None => PathBuf::from(value),
                };
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(target, &link).unwrap();
            }
            other => panic!("line {}: unknown entry {other:?}", number + 1),
        }
    }
    assert!(!expected.is_empty(), "a tree must say what Incus should see");
    Tree { expected, netdevs }
}

/// In private mount and network namespaces: the tree over /sys/class and
/// /sys/bus and its interfaces created, then incusd (a private INCUS_DIR)
/// and nodecache asked for this machine's resources. Returns (Incus's
/// document, nodecache's).
fn both_documents(root: &Path, netdevs: &[String]) -> (Value, Value) {
    let version = Command::new(INCUSD).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), INCUS_VERSION);
    let interfaces: String = netdevs
        .iter()
        .map(|name| format!("ip link add {name} type bridge\n"))
        .collect();
    let mounts: String = GRAFTED
        .iter()
        .map(|(top, real)| format!("mount --bind {}/{top} {real}\n", root.display()))
        .collect();
    let script = format!(
        r#"set -eu
ip link set lo up
{interfaces}{mounts}export INCUS_DIR={root}/incus
mkdir -p "$INCUS_DIR"
{incusd} --group root --logfile "$INCUS_DIR/incusd.log" </dev/null >/dev/null 2>&1 &
daemon=$!
trap 'kill -TERM $daemon; wait $daemon || true' EXIT
{incusd} waitready --timeout=60
curl -s --unix-socket "$INCUS_DIR/unix.socket" http://incus/1.0/resources >{root}/incus.json
{bin} --cache-dir {root}/cache resources >{root}/nodecache.json 2>{root}/nodecache.err
"#,
        root = root.display(),
        incusd = INCUSD,
        bin = BIN,
    );
    let output = Command::new("unshare")
        .args([
            "--mount",
            "--net",
            "--propagation",
            "private",
            "bash",
            "-c",
            &script,
        ])
        .output()
        .expect("unshare (util-linux)");
    let said = |file: &str| std::fs::read_to_string(root.join(file)).unwrap_or_default();
    assert!(
        output.status.success(),
        "the namespace run failed: {}\nnodecache: {}\nincusd: {}",
        String::from_utf8_lossy(&output.stderr),
        said("nodecache.err"),
        said("incus/incusd.log")
    );
    let read = |file: &str| -> Value {
        serde_json::from_slice(&std::fs::read(root.join(file)).unwrap())
            .unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let envelope = read("incus.json");
    assert_eq!(envelope["type"], "sync", "Incus: {envelope}");
    (envelope["metadata"].clone(), read("nodecache.json"))
}

fn tree(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/sysfs")
        .join(format!("{name}.tree"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Each recorded tree: Incus sees what the tree says it should, and
/// nodecache's whole document equals Incus's.
#[test]
fn incus_and_nodecache_agree_on_recorded_device_trees() {
    for name in [
        "intel-igpu",
        "usb-keyboard-and-storage",
        "sriov-nic",
        "infiniband-card",
        "nvme-disk",
        "two-numa-nodes",
    ] {
        let root = tempfile::tempdir().unwrap();
        let tree = materialize(&tree(name), root.path());
        let (theirs, ours) = both_documents(root.path(), &tree.netdevs);
        for (pointer, value) in &tree.expected {
            let section = pointer.split('/').nth(1).unwrap_or_default();
            assert_eq!(
                theirs.pointer(pointer),
                Some(value),
                "{name}: Incus did not see the tree ({pointer}); its {section}: {}",
                theirs[section]
            );
        }
        eprintln!("{name}:");
        compare_leaf_by_leaf(&theirs, &ours);
    }
}
