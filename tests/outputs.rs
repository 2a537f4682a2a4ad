//! What operators paste, checked by the real tools: QEMU takes the `qemu`
//! output, libvirt the `libvirt` output, for this machine and for clusters of
//! real CPUs (tests/fixtures/cpuinfo); and nothing Incus's exact-name rule
//! keeps is lost, while the features it drops are kept.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::util::{BIN, Nodecache, recorded_node, resources_of, stderr, write_cache_entry};

/// A cluster whose members' entries are in the cache (their URLs are dead:
/// a refetch would fail the run).
pub(crate) struct Recorded {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) cluster: PathBuf,
    /// With [`Recorded::frozen`]: the wall-clock second every run sees.
    clock: Option<u64>,
}

impl Recorded {
    fn new(nodes: &[(&str, &str)]) -> Recorded {
        Recorded::grouped(
            &nodes
                .iter()
                .map(|&(name, cpu)| (name, cpu, ""))
                .collect::<Vec<_>>(),
        )
    }

    /// Members with `groups = [GROUP]` (none where GROUP is empty).
    fn grouped(nodes: &[(&str, &str, &str)]) -> Recorded {
        let dir = tempfile::tempdir().unwrap();
        let documents: Vec<(&str, String, &str)> = nodes
            .iter()
            .map(|&(name, fixture, group)| {
                let flags = fixture_flags(fixture);
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                let file = recorded_node(dir.path(), name, "x86_64", &flags);
                set_vendor(&file, fixture);
                (name, resources_of(&file), group)
            })
            .collect();
        Recorded::of_documents(dir, &documents)
    }

    /// Members with these documents and groups, cached in `dir`.
    pub(crate) fn of_documents(dir: tempfile::TempDir, nodes: &[(&str, String, &str)]) -> Recorded {
        let mut text = String::from("deadline = \"60s\"\n");
        for (name, document, group) in nodes {
            write_cache_entry(&dir.path().join("cache"), name, document, None, 0);
            text.push_str(&format!(
                "[[member]]\nname = \"{name}\"\nurl = \"{}\"\n",
                crate::util::dead_url()
            ));
            if !group.is_empty() {
                text.push_str(&format!("groups = [\"{group}\"]\n"));
            }
        }
        let cluster = dir.path().join("cluster.toml");
        std::fs::write(&cluster, text).unwrap();
        Recorded {
            dir,
            cluster,
            clock: None,
        }
    }

    /// Every run, CLI and `serve`, sees the same stopped wall clock (a
    /// second after the entries were written), so each node's age is the
    /// same wherever it is computed.
    fn frozen(mut self) -> Recorded {
        self.clock = Some(crate::util::now_s() + 1);
        self
    }

    /// nodecache with this cluster's cache and cluster file (and clock).
    fn command(&self) -> Nodecache {
        let command = Nodecache::new()
            .cache_dir(&self.dir.path().join("cache"))
            .cluster(&self.cluster);
        match self.clock {
            Some(at_s) => command.frozen_at(at_s),
            None => command,
        }
    }

    /// `serve` over plain HTTP on loopback for this cluster, with these
    /// environment variables.
    pub(crate) fn serve(&self, env: &[(&str, &Path)]) -> crate::util::Server {
        let mut command = self.command();
        for (name, value) in env {
            command = command.env(name, value);
        }
        command.serve(&["--insecure-http"])
    }

    /// Runs nodecache on the cluster, whatever it answers.
    pub(crate) fn output(&self, args: &[&str]) -> Output {
        self.command().output(args)
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = self.output(args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        output
    }

    pub(crate) fn text(&self, args: &[&str]) -> String {
        String::from_utf8(self.run(args).stdout).unwrap()
    }
}

/// The CPU vendor a recorded real CPU's document says (the fixtures are
/// named by vendor).
fn set_vendor(file: &Path, fixture: &str) {
    let mut document: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let vendor = if fixture.starts_with("intel-") {
        "GenuineIntel"
    } else {
        "AuthenticAMD"
    };
    document["metadata"]["cpu"]["sockets"][0]["vendor"] = json!(vendor);
    std::fs::write(file, serde_json::to_vec(&document).unwrap()).unwrap();
}

/// One field of every node in a `cpu-flags --format json` report, in order.
fn node_field<'a>(report: &'a Value, field: &str) -> Vec<&'a str> {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node[field].as_str().unwrap())
        .collect()
}

fn fixture_flags(name: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/cpuinfo/{name}.flags"));
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .flat_map(str::split_whitespace)
        .map(str::to_string)
        .collect()
}

// Real CPUs' flag lines; tests/fixtures/cpuinfo/README.md says where each came from.
const K10: &str = "amd-opteron-6136-k10";
const WESTMERE: &str = "intel-xeon-e5620-westmere";
const IVY_BRIDGE: &str = "intel-xeon-e5-2650v2-ivybridge";
const HASWELL: &str = "intel-xeon-e5-2680v3-haswell";
const SKYLAKE: &str = "intel-xeon-gold-6132-skylake";
const CASCADE_LAKE: &str = "intel-xeon-platinum-8260m-cascadelake";
const SAPPHIRE_RAPIDS: &str = "intel-xeon-platinum-8480-sapphirerapids";
const ZEN3: &str = "amd-ryzen-9-5950x-zen3";
const NAPLES: &str = "amd-epyc-7301-naples";
const GENOA: &str = "amd-epyc-9654-genoa";
const GENOA_GUEST: &str = "amd-epyc-genoa-kvm-guest";
const X86_CPUS: [&str; 11] = [
    K10,
    WESTMERE,
    IVY_BRIDGE,
    HASWELL,
    SKYLAKE,
    CASCADE_LAKE,
    SAPPHIRE_RAPIDS,
    NAPLES,
    ZEN3,
    GENOA,
    GENOA_GUEST,
];

/// QMP over stdio to a QEMU under TCG with `args`.
fn qmp(args: &[&str], commands: &[Value]) -> (Vec<Value>, String, bool) {
    crate::util::qmp("tcg", args, commands)
}

/// QEMU starts a q35 machine with `-cpu <cpu>` under TCG, naming no
/// unknown property (`enforce=off,check=off`: TCG is not the hypervisor
/// the features are checked against; tests/hypervisor.rs starts them
/// under KVM).
fn assert_qemu_accepts(cpu: &str) {
    let (_, errors, ok) = qmp(
        &["-machine", "q35", "-cpu", &format!("{cpu},enforce=off,check=off")],
        &[],
    );
    assert!(
        ok && !errors.contains("not found"),
        "QEMU refused -cpu {cpu}: {errors}"
    );
}

#[test]
fn qemu_accepts_the_qemu_output_for_this_machine_and_for_real_cpus() {
    let here = Command::new(BIN)
        .args([
            "--cache-dir",
            tempfile::tempdir().unwrap().path().to_str().unwrap(),
        ])
        .args(["cpu-flags", "--format", "qemu"])
        .output()
        .unwrap();
    assert!(here.status.success(), "{}", stderr(&here));
    let here = String::from_utf8(here.stdout).unwrap();
    assert!(here.starts_with("kvm64,"), "{here}");
    assert_qemu_accepts(here.trim());
    for cpu in X86_CPUS {
        let cpu_flags = Recorded::new(&[(cpu, cpu)]).text(&["cpu-flags", "--format", "qemu"]);
        assert_qemu_accepts(cpu_flags.trim());
    }
    let mixed = Recorded::new(&[("haswell", HASWELL), ("skylake", SKYLAKE), ("naples", NAPLES)]);
    let common = mixed.text(&["cpu-flags", "--format", "qemu"]);
    assert_qemu_accepts(common.trim());
    // The Intel/AMD common set keeps AVX2 and AES and loses AVX-512.
    let features: BTreeSet<&str> = common.trim().split(',').collect();
    assert!(features.contains("avx2") && features.contains("aes"), "{common}");
    assert!(!features.contains("avx512f"), "{common}");
}

/// QEMU's full expansion of the `kvm64` model: each property and its value.
fn kvm64_properties() -> serde_json::Map<String, Value> {
    let (answers, errors, _) = qmp(
        &["-machine", "none"],
        &[json!({"execute": "query-cpu-model-expansion",
                 "arguments": {"type": "full", "model": {"name": "kvm64"}}})],
    );
    answers[0]["model"]["props"]
        .as_object()
        .unwrap_or_else(|| panic!("{errors}"))
        .clone()
}

/// Incus keeps a /proc flag when its exact name is a boolean property `kvm64`
/// leaves off. Computed here, from this machine's /proc and this QEMU
/// (x86_64 only, compiled only there: it cannot pass by skipping).
#[cfg(target_arch = "x86_64")]
#[test]
fn nothing_incus_keeps_is_lost_and_what_it_drops_is_kept() {
    let proc_flags: BTreeSet<String> = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("flags"))
        .map(|rest| {
            rest.trim_start_matches([' ', '\t', ':'])
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    assert!(!proc_flags.is_empty(), "/proc/cpuinfo has no flags line");
    let props = kvm64_properties();
    let incus_keeps: BTreeSet<&str> = proc_flags
        .iter()
        .map(String::as_str)
        .filter(|flag| props.get(*flag).and_then(Value::as_bool) == Some(false))
        .collect();
    let report: Value = serde_json::from_slice(
        &Command::new(BIN)
            .args([
                "--cache-dir",
                tempfile::tempdir().unwrap().path().to_str().unwrap(),
            ])
            .args(["cpu-flags", "--format", "json", "--baseline", "kvm64"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let ours: BTreeSet<&str> = report["guest_cpu"]["qemu_features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    // Same spelling, different bit (Linux's ibrs, stibp, ssbd, ibpb are
    // synthesised): Incus's rule keeps those by mistake; we cannot lose them.
    let synthesised: BTreeSet<&str> = report["kernel_synthesised"]
        .as_array()
        .map(|a| a.iter().map(|f| f.as_str().unwrap()).collect())
        .unwrap_or_default();
    // Spelling aside (`sse4_1` is QEMU's alias of `sse4.1`): the same name.
    let same = |a: &str, b: &str| a.replace(['-', '.', '_'], "") == b.replace(['-', '.', '_'], "");
    // The qemu output is what this node's KVM can give a guest: QEMU's own
    // expansion of `host` under KVM says which flags that is. A flag Incus
    // keeps that KVM cannot give is left out on purpose (a guest asking for
    // it would not start, or start without it).
    let (host, errors, _) = crate::hypervisor::qemu_kvm(
        &["-machine", "none"],
        &[json!({"execute": "query-cpu-model-expansion",
                 "arguments": {"type": "full", "model": {"name": "host", "props": {"migratable": true}}}})],
    );
    let host_props = host[0]["model"]["props"]
        .as_object()
        .unwrap_or_else(|| panic!("QEMU under KVM did not expand host: {errors}"));
    let kvm_gives = |flag: &str| {
        host_props
            .iter()
            .any(|(prop, on)| on.as_bool() == Some(true) && same(prop, flag))
    };
    let lost: Vec<&&str> = incus_keeps
        .iter()
        .filter(|flag| !synthesised.contains(**flag) && kvm_gives(flag))
        .filter(|flag| !ours.iter().any(|q| same(q, flag)))
        .collect();
    assert!(
        lost.is_empty(),
        "Incus keeps these, this node's KVM gives them, and we lost them: {lost:?}"
    );
    let dropped_by_incus: Vec<&&str> = ours
        .iter()
        .filter(|q| !incus_keeps.iter().any(|k| same(k, q)))
        .collect();
    println!(
        "on this machine: {} /proc flags; Incus's exact-name rule keeps {}; our qemu output has {} features, \
         {} of them real features Incus drops: {dropped_by_incus:?}",
        proc_flags.len(),
        incus_keeps.len(),
        ours.len(),
        dropped_by_incus.len()
    );
    for name in ["sha-ni", "avx512vnni", "avx-vnni", "tsc-deadline", "avx512-bf16"] {
        let linux = match name {
            "sha-ni" => "sha_ni",
            "avx512vnni" => "avx512_vnni",
            "avx-vnni" => "avx_vnni",
            "tsc-deadline" => "tsc_deadline_timer",
            _ => "avx512_bf16",
        };
        if proc_flags.contains(linux) && kvm_gives(name) {
            assert!(
                ours.contains(name),
                "{linux} is on this CPU and {name} not in {ours:?}"
            );
        }
    }
}

/// The same features Incus drops (Linux and QEMU spell them differently, so
/// its exact-name rule misses them), over recorded real CPUs rather than
/// whichever this machine is: for every CPU whose /proc line has one, the
/// `--baseline kvm64` output keeps it under QEMU's name. Each pair must be
/// met by some recorded CPU, so the check cannot pass by meeting none.
/// (The names: `tests/fixtures/flag-name-map.tsv`, measured from Linux and
/// QEMU; that QEMU has each property is asked of the installed QEMU.)
#[test]
fn what_incus_drops_is_kept_for_recorded_real_cpus() {
    const PAIRS: [(&str, &str); 5] = [
        ("sha_ni", "sha-ni"),
        ("avx512_vnni", "avx512vnni"),
        ("avx_vnni", "avx-vnni"),
        ("tsc_deadline_timer", "tsc-deadline"),
        ("avx512_bf16", "avx512-bf16"),
    ];
    let props = kvm64_properties();
    for (_, qemu) in PAIRS {
        assert!(props.contains_key(qemu), "QEMU has no property {qemu}");
    }
    let mut met = BTreeSet::new();
    for fixture in [
        "intel-xeon-platinum-8480-sapphirerapids",
        "intel-xeon-platinum-8260m-cascadelake",
        "amd-epyc-9654-genoa",
        "amd-ryzen-9-5950x-zen3",
    ] {
        let flags = fixture_flags(fixture);
        let recorded = Recorded::new(&[("n", fixture)]);
        let report: Value = serde_json::from_slice(
            &recorded
                .run(&["cpu-flags", "--format", "json", "--baseline", "kvm64"])
                .stdout,
        )
        .unwrap();
        let ours: BTreeSet<&str> = report["guest_cpu"]["qemu_features"]
            .as_array()
            .unwrap_or_else(|| panic!("{fixture}: {report}"))
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        for (linux, qemu) in PAIRS {
            if flags.contains(linux) {
                met.insert(linux);
                assert!(
                    ours.contains(qemu),
                    "{fixture} has {linux}; {qemu} is not in {ours:?}"
                );
            }
        }
    }
    let unmet: Vec<&str> = PAIRS
        .iter()
        .map(|(linux, _)| *linux)
        .filter(|l| !met.contains(l))
        .collect();
    assert!(unmet.is_empty(), "no recorded CPU has {unmet:?}");
}

/// `<cpu>` as libvirt's `cpu-baseline` takes a host: the architecture, a
/// model and plain features.
fn as_host_cpu(guest_xml: &str) -> String {
    guest_xml
        .lines()
        .filter(|line| !line.contains("policy='disable'"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            " mode='custom' match='exact' check='full'>",
            ">\n  <arch>x86_64</arch>",
        )
        .replace("<model fallback='forbid'>", "<model>")
        .replace(" policy='require'", "")
}

fn virsh_baseline(xml: &str) -> BTreeSet<String> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), xml).unwrap();
    let output = Command::new("virsh")
        .args(["-c", "test:///default", "cpu-baseline", "--features"])
        .arg(file.path())
        .output()
        .expect("virsh (scripts/test installs libvirt-clients)");
    assert!(
        output.status.success(),
        "libvirt refused:\n{xml}\n{}",
        stderr(&output)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split("name='").nth(1))
        .filter_map(|rest| rest.split('\'').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn libvirt_accepts_the_libvirt_output_and_its_own_baseline_agrees() {
    let mixed = Recorded::new(&[("haswell", HASWELL), ("skylake", SKYLAKE), ("naples", NAPLES)]);
    let ours = mixed.text(&["cpu-flags", "--format", "libvirt"]);
    assert!(
        ours.starts_with("<cpu mode='custom' match='exact' check='full'>"),
        "{ours}"
    );
    let our_features: BTreeSet<String> = ours
        .lines()
        .filter_map(|line| line.split("name='").nth(1))
        .filter_map(|rest| rest.split('\'').next())
        .map(str::to_string)
        .collect();
    // libvirt takes every name, and the baseline of our one CPU is that CPU.
    let accepted = virsh_baseline(&as_host_cpu(&ours));
    assert!(
        our_features.is_subset(&accepted),
        "{our_features:?} vs {accepted:?}"
    );
    // libvirt's own baseline of the three nodes, each written vendor-free as
    // kvm64 plus all its features in libvirt's names, is our common set.
    let mut hosts = String::new();
    for cpu in [HASWELL, SKYLAKE, NAPLES] {
        let single = Recorded::new(&[(cpu, cpu)]).text(&["cpu-flags", "--format", "libvirt"]);
        hosts.push_str(&as_host_cpu(&single));
    }
    let theirs = virsh_baseline(&hosts);
    let kvm64_only: BTreeSet<String> = virsh_baseline(&as_host_cpu(
        "<cpu mode='custom' match='exact' check='full'>\n  <model fallback='forbid'>kvm64</model>\n</cpu>\n",
    ));
    let theirs: BTreeSet<String> = theirs.union(&kvm64_only).cloned().collect();
    let ours_with_model: BTreeSet<String> = our_features.union(&kvm64_only).cloned().collect();
    assert_eq!(ours_with_model, theirs);
}

#[test]
fn explain_names_the_node_that_holds_the_cluster_back() {
    let mixed = Recorded::new(&[("haswell", HASWELL), ("skylake", SKYLAKE)]);
    let report: Value =
        serde_json::from_str(&mixed.text(&["cpu-flags", "--format", "json", "--explain"])).unwrap();
    assert_eq!(report["level"], "x86-64-v3");
    let levels: Vec<&str> = node_field(&report, "level");
    assert_eq!(levels, ["x86-64-v3", "x86-64-v4"]);
    let avx512f = report["explain"]["differing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["flag"] == "avx512f")
        .unwrap();
    assert_eq!(avx512f["lacking"], json!(["haswell"]));
    let haswell = &report["explain"]["nodes"][0];
    assert_eq!(haswell["name"], "haswell");
    assert_eq!(haswell["level_without"], "x86-64-v4");
    assert!(
        haswell["holds_back"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "avx512bw")
    );
    let table = mixed.text(&["cpu-flags", "--explain"]);
    assert!(
        table.contains("nodes lacking it") && table.contains("haswell"),
        "{table}"
    );
    // The node table says what each column counts, and the haswell row
    // reads: own level v3, the cluster's v4 were it to leave.
    let header = table
        .lines()
        .find(|line| line.starts_with("node "))
        .unwrap_or_else(|| panic!("{table}"));
    for column in [
        "own level",
        "lacks alone",
        "cluster level without it",
        "features only this node lacks",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let haswell_row: Vec<&str> = table
        .lines()
        .find(|line| line.starts_with("haswell "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        (haswell_row[1], haswell_row[3]),
        ("x86-64-v3", "x86-64-v4"),
        "{table}"
    );
    assert!(table.contains("(own level: "), "the legend: {table}");
    let levels = mixed.text(&["cpu-flags", "--level"]);
    assert_eq!(
        levels,
        "cluster x86-64-v3\nhaswell x86-64-v3\nskylake x86-64-v4\n"
    );
    let incus = mixed.text(&["cpu-flags", "--format", "incus"]);
    assert!(
        incus.starts_with("instances.vm.cpu.x86_64.baseline=kvm64\ninstances.vm.cpu.x86_64.flags="),
        "{incus}"
    );
}

/// The one flag table agrees with the kernel's cpufeatures.h, the
/// installed QEMU and libvirt (the generator asks them again: one QEMU per
/// CPU property, about 15 s).
#[test]
fn the_name_table_agrees_with_the_installed_qemu_and_libvirt() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("python3")
        .arg(root.join("scripts/gen-flag-names.py"))
        .arg("--check")
        .arg(root.join("host/src/machine/x86_flag_names.tsv"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    println!("{text}");
    let unnamed = Command::new("python3")
        .arg(root.join("scripts/gen-hypervisor-names.py"))
        .arg("--check")
        .arg(root.join("host/src/machine/x86_unnamed_by_linux.tsv"))
        .output()
        .unwrap();
    assert!(unnamed.status.success(), "{}", stderr(&unnamed));
}

/// The CLI and `serve` answer one question through one path
/// (`crate::query`): for every format and switch, the same bytes (JSON:
/// the CLI's document is the envelope's metadata, value for value).
#[test]
fn serve_gives_every_format_the_cli_gives() {
    let mixed = Recorded::new(&[("haswell", HASWELL), ("naples", NAPLES)]).frozen();
    let server = mixed.serve(&[]);
    let questions: &[(&[&str], &str)] = &[
        (&["--format", "list"], "format=list"),
        (&["--format", "qemu"], "format=qemu"),
        (&["--format", "libvirt"], "format=libvirt"),
        (&["--format", "incus"], "format=incus"),
        (&["--format", "proxmox"], "format=proxmox"),
        (
            &[
                "--format",
                "proxmox",
                "--model-name",
                "rack-a",
                "--baseline",
                "auto",
            ],
            "format=proxmox&model-name=rack-a&baseline=auto",
        ),
        (
            &["--format", "qemu", "--baseline", "auto"],
            "format=qemu&baseline=auto",
        ),
        (
            &["--format", "incus", "--drop-fragile"],
            "format=incus&drop-fragile=1",
        ),
        (&["--level"], "format=list&level=1"),
        (&["--explain"], "format=list&explain=1"),
        (
            &["--explain", "--baseline", "kvm64"],
            "format=list&explain=1&baseline=kvm64",
        ),
        (&["--format", "json"], ""),
        (&["--format", "json", "--level"], "level=1"),
        (
            &["--format", "json", "--explain", "--baseline", "auto"],
            "explain=1&baseline=auto",
        ),
        (&["--format", "json", "--arch", "aarch64"], "arch=aarch64"),
    ];
    for (options, query) in questions {
        let mut args = vec!["cpu-flags"];
        args.extend_from_slice(options);
        let cli = mixed.text(&args);
        let served = crate::util::http_get(&server.url, &format!("/1.0/cluster/cpu-flags?{query}"), &[]);
        assert_eq!(served.status, 200, "{query}: {}", served.body);
        if options.contains(&"json") {
            let envelope: Value = serde_json::from_str(&served.body).unwrap();
            let cli: Value = serde_json::from_str(&cli).unwrap();
            assert_eq!(envelope["metadata"], cli, "{query}");
        } else {
            assert_eq!(served.body, cli, "{query}");
        }
    }
    let served = crate::util::http_get(
        &server.url,
        "/1.0/cluster/cpu-flags?explain=1&baseline=kvm64",
        &[],
    );
    let envelope: Value = serde_json::from_str(&served.body).unwrap();
    assert_eq!(envelope["metadata"]["level"], "x86-64-v3");
    assert!(
        envelope["metadata"]["explain"]["differing"]
            .as_array()
            .unwrap()
            .len()
            > 5
    );
    assert_eq!(envelope["metadata"]["guest_cpu"]["baseline"], "kvm64");
    // Refusals agree too: the same words, as a 400 and as exit 2.
    for (options, query) in [
        (&["--format", "qemu", "--level"][..], "format=qemu&level=1"),
        (&["--arch", "x86 64"][..], "arch=x86%2064"),
    ] {
        let mut args = vec!["cpu-flags"];
        args.extend_from_slice(options);
        let cli = mixed.output(&args);
        assert_eq!(cli.status.code(), Some(2), "{options:?}: {}", stderr(&cli));
        let served = crate::util::http_get(&server.url, &format!("/1.0/cluster/cpu-flags?{query}"), &[]);
        assert_eq!(served.status, 400, "{query}: {}", served.body);
        let error = serde_json::from_str::<Value>(&served.body).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            stderr(&cli).contains(&error),
            "{query}: {error} / {}",
            stderr(&cli)
        );
    }
    let refused = crate::util::http_get(&server.url, "/1.0/cluster/cpu-flags?format=bogus", &[]);
    assert_eq!(refused.status, 400, "{}", refused.body);
}

/// `--apply` takes the Incus keys from the answer as values, never from
/// the printed text: with `--level` or `--explain` (tables, no keys) it is
/// refused as a usage error before any member or Incus is asked. (It once
/// printed the table, found no keys in it, and told the operator the group
/// "already has these keys".)
#[test]
fn apply_with_a_table_is_refused_before_incus_is_asked() {
    let incus = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    incus.set_nonblocking(true).unwrap();
    let recorded = Recorded::grouped(&[("haswell", HASWELL, "rack")]);
    let written = std::fs::read_to_string(&recorded.cluster).unwrap();
    let address = incus.local_addr().unwrap();
    std::fs::write(
        &recorded.cluster,
        format!("incus = \"https://{address}\"\n{written}"),
    )
    .unwrap();
    for table in ["--level", "--explain"] {
        let output = recorded.output(&[
            "cpu-flags",
            "--format",
            "incus",
            "--group",
            "rack",
            "--apply",
            table,
        ]);
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{table}: {said}");
        assert!(
            said.contains("--explain and --level print tables"),
            "{table}: {said}"
        );
        assert!(!said.contains("already has these keys"), "{table}: {said}");
        assert!(output.stdout.is_empty(), "{table}: printed {:?}", output.stdout);
    }
    // A connection attempt would wait in the backlog: none was made.
    let asked = incus.accept();
    assert!(
        matches!(&asked, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "Incus was asked: {asked:?}"
    );
}

#[test]
fn baseline_auto_picks_a_model_of_the_clusters_vendor_that_qemu_and_libvirt_take() {
    // Which model is closest is checked against libvirt's own choice in
    // tests/hypervisor.rs; here every pick is of the nodes' vendor (mixed
    // vendors fall back to kvm64), and QEMU and libvirt take what is printed.
    let cases: [(&[&str], bool); 12] = [
        (&[K10], true),
        (&[WESTMERE], true),
        (&[HASWELL], true),
        (&[SKYLAKE], true),
        (&[SAPPHIRE_RAPIDS], true),
        (&[NAPLES], true),
        (&[ZEN3], true),
        (&[GENOA], true),
        (&[WESTMERE, HASWELL], true),
        (&[SKYLAKE, CASCADE_LAKE], true),
        (&[SKYLAKE, NAPLES], false),
        (&[HASWELL, SKYLAKE, NAPLES], false),
    ];
    let amd_model = |model: &str| {
        ["EPYC", "Opteron", "phenom", "athlon"]
            .iter()
            .any(|p| model.starts_with(p))
    };
    for (cpus, one_vendor) in cases {
        let nodes: Vec<(&str, &str)> = cpus.iter().map(|cpu| (*cpu, *cpu)).collect();
        let cluster = Recorded::new(&nodes);
        let report: Value =
            serde_json::from_str(&cluster.text(&["cpu-flags", "--format", "json", "--baseline", "auto"]))
                .unwrap();
        let model = report["guest_cpu"]["baseline"].as_str().unwrap().to_string();
        println!(
            "--baseline auto for {cpus:?}: {model}, turning off {}",
            report["guest_cpu"]["qemu_disabled"]
        );
        if one_vendor {
            assert_ne!(model, "kvm64", "{cpus:?}");
            assert_eq!(
                amd_model(&model),
                cpus[0].starts_with("amd-"),
                "{cpus:?}: {model}"
            );
        } else {
            assert_eq!(model, "kvm64", "{cpus:?}");
        }
        let qemu = cluster.text(&["cpu-flags", "--format", "qemu", "--baseline", "auto"]);
        assert!(qemu.starts_with(&format!("{model},")), "{qemu}");
        assert_qemu_accepts(qemu.trim());
        let libvirt = cluster.text(&["cpu-flags", "--format", "libvirt", "--baseline", "auto"]);
        assert!(
            libvirt.contains(&format!("<model fallback='forbid'>{model}</model>")),
            "{libvirt}"
        );
        virsh_baseline(&as_host_cpu(&libvirt));
    }
}

#[test]
fn can_run_and_groups_answer_over_a_recorded_mixed_cluster() {
    let cluster = Recorded::grouped(&[
        ("old", HASWELL, "gen1"),
        ("new", SKYLAKE, "gen2"),
        ("amd", NAPLES, "gen2"),
    ]);
    let placement: Value = serde_json::from_str(&cluster.text(&[
        "can-run",
        "--flags",
        "avx2,avx512f,sse4.2",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(placement["required"], json!(["avx2", "avx512f", "sse4_2"]));
    assert_eq!(placement["can_run"], json!(["new"]));
    let lacking: Vec<(String, Value)> = placement["cannot_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap().to_string(), n["lacks"].clone()))
        .collect();
    assert_eq!(
        lacking,
        [
            ("old".to_string(), json!(["avx512f"])),
            ("amd".to_string(), json!(["avx512f"]))
        ]
    );
    // A guest with the Haswell's host CPU runs on the Skylake, not on the EPYC
    // (it lacks Intel-only bits such as ds_cpl).
    let from_old = cluster.text(&["can-run", "--from", "old"]);
    // Members are listed in cluster-file order.
    assert!(
        from_old.starts_with("needs ") && from_old.contains("can run: old, new"),
        "{from_old}"
    );
    assert!(from_old.contains("cannot: amd lacks"), "{from_old}");
    // `can-run --group` asks only the group's members.
    let in_gen2 = cluster.text(&["can-run", "--from", "new", "--group", "gen2"]);
    assert!(!in_gen2.contains("old"), "{in_gen2}");
    assert!(in_gen2.contains("new") && in_gen2.contains("amd"), "{in_gen2}");
    // A member outside the group is told apart from a name no member has.
    let outside = cluster.output(&["can-run", "--from", "old", "--group", "gen2"]);
    assert_eq!(outside.status.code(), Some(2), "{}", stderr(&outside));
    assert!(
        stderr(&outside).contains("\"old\" is a member, but not of group gen2 (its members: new, amd)"),
        "{}",
        stderr(&outside)
    );
    let stranger = cluster.output(&["can-run", "--from", "zz", "--group", "gen2"]);
    assert_eq!(stranger.status.code(), Some(2), "{}", stderr(&stranger));
    assert!(
        stderr(&stranger).contains("\"zz\" is not a member"),
        "{}",
        stderr(&stranger)
    );
    // One group's flags: gen2 is Skylake and EPYC, without the Haswell.
    let gen2: Value =
        serde_json::from_str(&cluster.text(&["cpu-flags", "--group", "gen2", "--format", "json"])).unwrap();
    let names: Vec<&str> = node_field(&gen2, "name");
    assert_eq!(names, ["new", "amd"]);
    // The answer names its group, as JSON and as --level.
    assert_eq!(gen2["group"], "gen2");
    assert!(
        cluster
            .text(&["cpu-flags", "--format", "json"])
            .find("\"group\"")
            .is_none()
    );
    let levels = cluster.text(&["cpu-flags", "--group", "gen2", "--level"]);
    assert!(levels.starts_with("group gen2 x86-64-v3\n"), "{levels}");
    // A node served from an entry it could not refresh is marked stale (the
    // members' URLs are dead: with max-age 0 every entry is stale).
    let stale = cluster.text(&["cpu-flags", "--group", "gen2", "--level", "--set", "max-age=0s"]);
    let lines: Vec<&str> = stale.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{stale}");
    assert!(
        lines
            .iter()
            .all(|line| line.contains(" (stale, ") && line.ends_with(" old)")),
        "{stale}"
    );
    let explained = cluster.text(&["cpu-flags", "--group", "gen2", "--explain", "--set", "max-age=0s"]);
    assert!(
        explained.contains("served from entries their nodes could not refresh: new (stale, "),
        "{explained}"
    );
    let unknown = Command::new(BIN)
        .arg("--cluster")
        .arg(&cluster.cluster)
        .args(["cpu-flags", "--group", "gen9"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("no member is in group \"gen9\" (groups known: gen1, gen2)"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn serve_asks_qemu_once_per_binary_and_refuses_unknown_models_without_it() {
    // The real QEMU behind a wrapper that counts its runs.
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let wrapper = dir.path().join("qemu");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho run >> '{}'\nexec qemu-system-x86_64 \"$@\"\n",
            runs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let count = || std::fs::read_to_string(&runs).map_or(0, |text| text.lines().count());
    let cluster = Recorded::new(&[("haswell", HASWELL)]);
    let server = cluster.serve(&[("NODECACHE_QEMU", &wrapper)]);
    // 30 requests at once, each naming a model that does not exist, and 5
    // asking for kvm64.
    let url = server.url.clone();
    let answers: Vec<(String, crate::util::HttpResponse)> = std::thread::scope(|scope| {
        let asks: Vec<_> = (0..35)
            .map(|i| {
                let url = url.clone();
                scope.spawn(move || {
                    let model = if i < 30 {
                        format!("nope{i}")
                    } else {
                        "kvm64".to_string()
                    };
                    let path = format!("/1.0/cluster/cpu-flags?format=qemu&baseline={model}");
                    (model, crate::util::http_get(&url, &path, &[]))
                })
            })
            .collect();
        asks.into_iter().map(|ask| ask.join().unwrap()).collect()
    });
    for (model, answer) in &answers {
        if model == "kvm64" {
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert!(answer.body.starts_with("kvm64,"), "{}", answer.body);
        } else {
            assert_eq!(answer.status, 400, "{model}: {}", answer.body);
            assert!(
                answer.body.contains(&format!("has no CPU model \\\"{model}\\\"")),
                "{}",
                answer.body
            );
        }
    }
    // kvm64 expanded once; at most one unknown name tried before QEMU's
    // list was learned, and the list itself.
    let after_burst = count();
    assert!(
        (1..=3).contains(&after_burst),
        "{after_burst} QEMU runs for 35 requests"
    );
    for i in 0..10 {
        let answer = crate::util::http_get(
            &url,
            &format!("/1.0/cluster/cpu-flags?format=qemu&baseline=again{i}"),
            &[],
        );
        assert_eq!(answer.status, 400, "{}", answer.body);
    }
    assert_eq!(count(), after_burst, "an unknown model started QEMU again");
}

/// `--group` and `group=` answer alike in every format, the platforms'
/// among them: the same bytes from the CLI and `serve` (the NFD file is
/// this machine's, which no recorded cluster has).
#[test]
fn serve_answers_for_a_group_in_every_format_as_the_cli_does() {
    let cluster = Recorded::grouped(&[
        ("old", WESTMERE, "gen1"),
        ("mid", HASWELL, "gen2"),
        ("new", SKYLAKE, "gen2"),
    ])
    .frozen();
    let server = cluster.serve(&[]);
    for format in ["list", "qemu", "libvirt", "incus", "proxmox", "nova", "kubevirt"] {
        let cli = cluster.text(&["cpu-flags", "--group", "gen2", "--format", format]);
        let path = format!("/1.0/cluster/cpu-flags?group=gen2&format={format}");
        let served = crate::util::http_get(&server.url, &path, &[]);
        assert_eq!(served.status, 200, "{format}: {}", served.body);
        assert_eq!(served.body, cli, "{format}");
    }
    let proxmox = cluster.text(&["cpu-flags", "--group", "gen2", "--format", "proxmox"]);
    assert!(proxmox.contains("cpu-model: nodecache-gen2\n"), "{proxmox}");
    let served = crate::util::http_get(&server.url, "/1.0/cluster/cpu-flags?group=gen2&format=json", &[]);
    let envelope: Value = serde_json::from_str(&served.body).unwrap();
    assert_eq!(envelope["metadata"]["group"], "gen2");
    let nodes: Vec<&str> = envelope["metadata"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["name"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["mid", "new"]);
    // A group no member is in: not found, naming the groups there are.
    let missing = crate::util::http_get(&server.url, "/1.0/cluster/cpu-flags?group=gen9", &[]);
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(
        missing
            .body
            .contains("no member is in group \\\"gen9\\\" (groups known: gen1, gen2)"),
        "{}",
        missing.body
    );
}

/// Found in the second hardening pass: parameters and options that were
/// accepted without a word. Each is refused now (400 in Incus's envelope,
/// exit 2), naming it.
#[test]
fn nothing_passed_is_silently_ignored() {
    let cluster = Recorded::new(&[("haswell", HASWELL)]);
    let server = cluster.serve(&[]);
    for (query, says) in [
        ("bogus=1", "unknown field `bogus`"),
        ("allow-partial=maybe", "allow-partial=maybe is not a switch"),
        ("arch=x86%1b64", "is not an architecture name"),
        ("format=qemu&explain=1", "--explain and --level print tables"),
        (
            "format=libvirt&arch=aarch64",
            "describe x86_64 guests, not aarch64",
        ),
        (
            "format=qemu&model-name=a",
            "--model-name names a Proxmox custom model",
        ),
        ("format=proxmox&model-name=a%20b", "--model-name \"a b\": 1-40 of"),
    ] {
        let answer = crate::util::http_get(&server.url, &format!("/1.0/cluster/cpu-flags?{query}"), &[]);
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        let envelope: Value =
            serde_json::from_str(&answer.body).unwrap_or_else(|_| panic!("{query}: {}", answer.body));
        assert_eq!(envelope["type"], "error", "{query}");
        assert!(
            envelope["error"].as_str().unwrap().contains(says),
            "{query}: {}",
            answer.body
        );
        assert!(!answer.body.contains('\u{1b}'), "{query}");
    }
    for args in [
        &["cpu-flags", "--explain", "--format", "qemu"][..],
        &["cpu-flags", "--arch", "x86\u{1b}[31m"],
        &["can-run", "--flags", "sse2", "--format", "qemu"],
        &["can-run", "--flags", "sse2,bogusflag"],
        &["cpu-flags", "--arch", "aarch64", "--format", "qemu"],
        &["can-run", "--flags", "sse2,ev\u{1b}[2Jil"],
    ] {
        let output = cluster.output(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(!stderr(&output).contains('\u{1b}'), "{args:?}");
    }
    let typo = cluster.output(&["can-run", "--flags", "sse2,bogusflag"]);
    assert!(
        stderr(&typo).contains("\"bogusflag\" is not a CPU flag Linux, QEMU or any node knows")
            || stderr(&typo).contains("bogusflag is not a CPU flag Linux, QEMU or any node knows"),
        "{}",
        stderr(&typo)
    );
    for cap in ["0", "2305843009213693952"] {
        let output = Command::new(BIN)
            .args(["serve", "--insecure-http", "--max-connections", cap])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{cap}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("is not a number of connections"),
            "{}",
            stderr(&output)
        );
    }
}
