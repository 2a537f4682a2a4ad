//! What a guest can really get, under this machine's real `/dev/kvm`: the
//! node's hypervisor set against the installed QEMU (`host`, migratable,
//! `-accel kvm`) and libvirt (`hypervisor-cpu-baseline --migratable` of its
//! domcapabilities); the VM outputs started by QEMU under KVM with
//! `enforce` and accepted by `virsh hypervisor-cpu-compare`; recorded
//! clusters of real hosts' host-model CPUs from libvirt's own test data
//! (tests/fixtures/domaincaps/README.md) against libvirt's baseline; and a
//! node whose KVM is out of reach. With no usable `/dev/kvm`, QEMU or
//! libvirt, these tests fail saying so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::outputs::Recorded;
use crate::util::{BIN, INCUS_FIXTURE, Nodecache, stderr};

/// Fails, saying why, unless this machine's KVM can be opened.
fn require_kvm() {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        panic!("these tests need a usable /dev/kvm (run as root on a machine with KVM): /dev/kvm: {e}");
    }
}

/// libvirt's QEMU driver, started as scripts/test starts it when it is not
/// running; fails saying so when it cannot be reached.
fn virsh(args: &[&str]) -> Output {
    let run = || {
        Command::new("virsh")
            .args(["-c", "qemu:///system"])
            .args(args)
            .output()
            .expect("virsh (scripts/test installs libvirt-clients)")
    };
    let first = run();
    if first.status.success() || !stderr(&first).contains("Failed to connect") {
        return first;
    }
    let started = Command::new("libvirtd").arg("-d").status();
    assert!(
        started.is_ok_and(|s| s.success()),
        "libvirtd is not running and `libvirtd -d` failed (scripts/test installs libvirt-daemon-driver-qemu)"
    );
    // libvirtd -d returns once it has forked; its socket follows shortly.
    for _ in 0..100 {
        let again = run();
        if !stderr(&again).contains("Failed to connect") {
            return again;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("libvirtd started but qemu:///system never answered");
}

fn virsh_ok(args: &[&str]) -> String {
    let output = virsh(args);
    assert!(output.status.success(), "virsh {args:?}: {}", stderr(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// The names the installed tools give each bit Linux names, joined on the
/// bit (the repository's table, generated from QEMU, libvirt and the
/// kernel's cpufeatures.h), and the feature-MSR bits, which libvirt's own
/// cpu_map names for QEMU and libvirt alike.
struct Names {
    by_qemu: BTreeMap<String, String>,
    by_libvirt: BTreeMap<String, String>,
}

impl Names {
    fn load() -> Names {
        let table = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("src/machine/x86_flag_names.tsv"),
        )
        .unwrap();
        let mut names = Names {
            by_qemu: BTreeMap::new(),
            by_libvirt: BTreeMap::new(),
        };
        for row in table.lines().filter(|line| !line.starts_with('#')) {
            let fields: Vec<&str> = row.split('\t').collect();
            if fields[5] != "-" {
                names.by_qemu.insert(fields[5].into(), fields[0].into());
            }
            if fields[6] != "-" {
                names.by_libvirt.insert(fields[6].into(), fields[0].into());
            }
        }
        let unnamed = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("src/machine/x86_unnamed_by_linux.tsv"),
        )
        .unwrap();
        for name in unnamed
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|row| row.split('\t').next())
        {
            names.by_qemu.insert(name.into(), name.into());
            names.by_libvirt.insert(name.into(), name.into());
        }
        let features = std::fs::read_to_string("/usr/share/libvirt/cpu_map/x86_features.xml")
            .expect("libvirt's cpu_map (scripts/test installs libvirt-daemon-driver-qemu)");
        let mut current = None;
        for line in features.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("<feature name='") {
                current = name.split('\'').next().map(str::to_string);
            } else if line.starts_with("<msr index='0x000000cf'")
                || line.starts_with("<msr index='0x0000010a'")
            {
                let name = current.clone().unwrap();
                names.by_qemu.insert(name.clone(), name.clone());
                names.by_libvirt.insert(name.clone(), name);
            }
        }
        names
    }

    /// QEMU's property as nodecache names it (QEMU's expansion lists its
    /// `_` spellings and old aliases beside the canonical `-` name).
    fn of_qemu(&self, prop: &str) -> Option<&String> {
        self.by_qemu
            .get(prop)
            .or_else(|| self.by_qemu.get(&prop.replace('_', "-")))
    }
}

/// QMP over stdio to a QEMU under KVM with `args`.
pub(crate) fn qemu_kvm(args: &[&str], commands: &[Value]) -> (Vec<Value>, String, bool) {
    crate::util::qmp("kvm", args, commands)
}

/// QEMU starts a q35 guest under KVM with exactly this `-cpu`, and says
/// nothing about a feature the host lacks.
fn qemu_starts(cpu: &str) -> Result<(), String> {
    let (_, errors, ok) = qemu_kvm(&["-machine", "q35", "-cpu", cpu], &[]);
    if ok && !errors.contains("doesn't support") && !errors.contains("not found") {
        Ok(())
    } else {
        Err(format!("QEMU under KVM refused -cpu {cpu}: {errors}"))
    }
}

fn nodecache_text(args: &[&str]) -> String {
    Nodecache::new().text(args)
}

/// This machine's hypervisor set, as `probe --source hypervisor` prints it.
fn our_set() -> BTreeSet<String> {
    nodecache_text(&["probe", "--source", "hypervisor"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The bits QEMU's own `host` expansion offers that nodecache leaves out
/// must each be refused by QEMU itself when a guest asks for it alone:
/// a KVM that reports a feature-MSR bit its vCPUs then refuse (PVM does)
/// makes QEMU abort starting any guest that has the bit.
fn assert_qemu_refuses_each(extra: &BTreeSet<String>, names: &Names) {
    qemu_starts("base,enforce").unwrap();
    for flag in extra {
        let prop = names
            .by_qemu
            .iter()
            .find(|(_, linux)| *linux == flag)
            .map(|(prop, _)| prop.clone())
            .unwrap();
        // Feature-MSR bits need the CPUID bit that announces the MSR.
        let msr_bit = prop.ends_with("-no") || prop == "rsba" || prop == "fb-clear" || prop == "tsx-ctrl";
        let cpu = if msr_bit {
            format!("base,arch-capabilities=on,{prop}=on,enforce")
        } else {
            format!("base,{prop}=on,enforce")
        };
        assert!(
            qemu_starts(&cpu).is_err(),
            "QEMU's host expansion offers {prop}, nodecache leaves it out, yet QEMU starts -cpu {cpu}"
        );
    }
}

#[test]
fn this_nodes_hypervisor_set_is_what_qemu_and_libvirt_say_it_can_give() {
    require_kvm();
    let names = Names::load();
    let ours = our_set();
    assert!(ours.contains("fpu") && ours.contains("hypervisor"), "{ours:?}");
    // QEMU: the migratable expansion of `host` under KVM.
    let (answers, errors, _) = qemu_kvm(
        &["-machine", "none"],
        &[json!({"execute": "query-cpu-model-expansion",
                 "arguments": {"type": "full", "model": {"name": "host", "props": {"migratable": true}}}})],
    );
    let props = answers
        .first()
        .and_then(|answer| answer["model"]["props"].as_object())
        .unwrap_or_else(|| panic!("QEMU under KVM did not expand host: {errors}"));
    let qemu: BTreeSet<String> = props
        .iter()
        .filter(|(_, on)| on.as_bool() == Some(true))
        .filter_map(|(prop, _)| names.of_qemu(prop).cloned())
        .collect();
    let missing: Vec<&String> = ours.difference(&qemu).collect();
    assert!(
        missing.is_empty(),
        "nodecache claims what QEMU's host lacks: {missing:?}"
    );
    let extra: BTreeSet<String> = qemu.difference(&ours).cloned().collect();
    println!(
        "QEMU's host: {} bits nodecache names, {} of them left out as refused: {extra:?}",
        qemu.len(),
        extra.len()
    );
    assert_qemu_refuses_each(&extra, &names);
    // libvirt: the migratable baseline of this host's domcapabilities.
    let dir = tempfile::tempdir().unwrap();
    let domcaps = dir.path().join("domcaps.xml");
    std::fs::write(
        &domcaps,
        virsh_ok(&[
            "domcapabilities",
            "--virttype",
            "kvm",
            "--arch",
            "x86_64",
            "--machine",
            "q35",
        ]),
    )
    .unwrap();
    let baseline = virsh_ok(&[
        "hypervisor-cpu-baseline",
        domcaps.to_str().unwrap(),
        "--features",
        "--migratable",
    ]);
    let libvirt = required_features(&baseline, &names);
    let missing: Vec<&String> = ours.difference(&libvirt).collect();
    assert!(
        missing.is_empty(),
        "nodecache claims what libvirt's baseline lacks: {missing:?}"
    );
    let extra: BTreeSet<String> = libvirt.difference(&ours).cloned().collect();
    println!(
        "libvirt's baseline: {} bits nodecache names; left out: {extra:?}",
        libvirt.len()
    );
    assert_qemu_refuses_each(&extra, &names);
}

/// The features a libvirt `<cpu>` requires (an expanded one lists them all),
/// in nodecache's names; those nodecache cannot name are left out.
fn required_features(xml: &str, names: &Names) -> BTreeSet<String> {
    libvirt_required(xml)
        .iter()
        .filter_map(|name| names.by_libvirt.get(name).cloned())
        .collect()
}

/// The features a libvirt `<cpu>` requires, by libvirt's names.
fn libvirt_required(xml: &str) -> BTreeSet<String> {
    xml.lines()
        .filter_map(|line| line.trim().strip_prefix("<feature policy='require' name='"))
        .filter_map(|rest| rest.split('\'').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn qemu_under_kvm_starts_the_qemu_output_and_libvirt_accepts_the_libvirt_one() {
    require_kvm();
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().to_str().unwrap();
    for baseline in ["kvm64", "auto"] {
        let cpu = nodecache_text(&[
            "--cache-dir",
            cache,
            "cpu-flags",
            "--format",
            "qemu",
            "--baseline",
            baseline,
        ]);
        let cpu = cpu.trim();
        assert!(cpu.ends_with(",enforce"), "{cpu}");
        qemu_starts(cpu).unwrap();
        let xml = nodecache_text(&[
            "--cache-dir",
            cache,
            "cpu-flags",
            "--format",
            "libvirt",
            "--baseline",
            baseline,
        ]);
        assert!(xml.contains("check='full'"), "{xml}");
        assert_libvirt_accepts(&xml, &format!("libvirt on {baseline}"));
    }
    // The CPUs' own flags as a VM CPU: what nodecache promised before, and
    // what this machine's KVM refuses (here, where the two differ).
    let host_flags = nodecache_text(&["--cache-dir", cache, "probe", "--source", "kernel"]);
    let ours = our_set();
    if host_flags.lines().any(|flag| flag == "avx2") && !ours.contains("avx2") {
        assert!(qemu_starts("kvm64,avx2,enforce").is_err());
    }
}

/// A node document from the Incus fixture with these host flags, CPU
/// vendor and hypervisor set.
fn node_document(vendor: &str, flags: &BTreeSet<String>, hypervisor: Value) -> String {
    let mut document: Value = serde_json::from_str(INCUS_FIXTURE).unwrap();
    let metadata = &mut document["metadata"];
    metadata["cpu"]["sockets"][0]["vendor"] = json!(vendor);
    for core in metadata["cpu"]["sockets"][0]["cores"].as_array_mut().unwrap() {
        core["flags"] = json!(flags);
    }
    metadata["nodecache_hypervisor"] = hypervisor;
    metadata.to_string()
}

const RECORDED: [(&str, &str, &str); 4] = [
    ("skylake", "intel-skylake-client-qemu-4.2.0", "GenuineIntel"),
    ("rome-a", "amd-epyc-rome-qemu-6.2.0", "AuthenticAMD"),
    ("rome-b", "amd-epyc-rome-qemu-8.2.0", "AuthenticAMD"),
    ("rome-c", "amd-epyc-rome-qemu-10.0.0", "AuthenticAMD"),
];

/// libvirt's baseline of these host CPUs, expanded, as its test driver
/// computes it: from libvirt's cpu_map alone, no local hypervisor in the way.
fn offline_baseline(cpus: &[PathBuf]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cpus.xml");
    let text: String = cpus
        .iter()
        .map(|cpu| std::fs::read_to_string(cpu).unwrap())
        .collect();
    std::fs::write(&file, text).unwrap();
    let output = Command::new("virsh")
        .args(["-c", "test:///default", "cpu-baseline", "--features"])
        .arg(&file)
        .output()
        .expect("virsh (scripts/test installs libvirt-clients)");
    assert!(output.status.success(), "libvirt's baseline: {}", stderr(&output));
    String::from_utf8(output.stdout).unwrap()
}

fn cluster_of(documents: &[(&str, String)]) -> Recorded {
    let nodes: Vec<(&str, String, &str)> = documents
        .iter()
        .map(|(name, document)| (*name, document.clone(), ""))
        .collect();
    Recorded::of_documents(tempfile::tempdir().unwrap(), &nodes)
}

/// The report of `cpu-flags` with these arguments, as JSON.
fn json_report(cluster: &Recorded, args: &[&str]) -> Value {
    serde_json::from_str(&cluster.text(args)).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/domaincaps/{name}.xml"))
}

#[test]
fn recorded_clusters_get_the_common_set_libvirt_computes_from_their_host_models() {
    let names = Names::load();
    // Each recorded host's set: libvirt's own expansion of its host-model
    // CPU (the test driver's, which no local hypervisor filters), in the
    // names nodecache knows.
    let sets: Vec<BTreeSet<String>> = RECORDED
        .iter()
        .map(|(_, file, _)| required_features(&offline_baseline(&[fixture(file)]), &names))
        .collect();
    let documents: Vec<(&str, String)> = RECORDED
        .iter()
        .zip(&sets)
        .map(|((name, _, vendor), set)| {
            (
                *name,
                node_document(vendor, set, json!({"accelerator": "kvm", "flags": set})),
            )
        })
        .collect();
    // Three AMD hosts: libvirt's baseline of their host-model CPUs.
    let amd: Vec<PathBuf> = RECORDED[1..].iter().map(|(_, file, _)| fixture(file)).collect();
    let libvirt = offline_baseline(&amd);
    let libvirt_common = required_features(&libvirt, &names);
    let cluster = cluster_of(&documents[1..]);
    let report = json_report(&cluster, &["cpu-flags", "--format", "json", "--baseline", "auto"]);
    let ours: BTreeSet<String> = serde_json::from_value(report["guest_flags"].clone()).unwrap();
    assert_eq!(ours, libvirt_common, "the common set libvirt's baseline computes");
    let libvirt_model = libvirt
        .lines()
        .find_map(|line| line.trim().strip_prefix("<model fallback='forbid'>"))
        .and_then(|rest| rest.strip_suffix("</model>"))
        .unwrap();
    let model = report["guest_cpu"]["baseline"].as_str().unwrap();
    println!("libvirt's baseline model {libvirt_model}, nodecache's {model}");
    assert_eq!(
        model.rsplit_once("-v").map_or(model, |(family, _)| family),
        libvirt_model,
        "the named model libvirt picks"
    );
    let node_kinds: Vec<&str> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["hypervisor"].as_str().unwrap())
        .collect();
    assert_eq!(node_kinds, ["kvm", "kvm", "kvm"]);
    // All four: libvirt refuses to mix vendors; nodecache warns, naming
    // the nodes of each, and its common set is still the intersection.
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.xml");
    let cpus: String = RECORDED
        .iter()
        .map(|(_, file, _)| std::fs::read_to_string(fixture(file)).unwrap())
        .collect();
    std::fs::write(&all, cpus).unwrap();
    let refused = Command::new("virsh")
        .args(["-c", "test:///default", "cpu-baseline"])
        .arg(&all)
        .output()
        .unwrap();
    assert!(
        stderr(&refused).contains("CPU vendors do not match"),
        "{}",
        stderr(&refused)
    );
    let mixed = cluster_of(&documents);
    let output = mixed.output(&["cpu-flags", "--format", "qemu", "--baseline", "auto"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let warned = stderr(&output);
    assert!(
        warned.contains("AuthenticAMD: rome-a, rome-b, rome-c; GenuineIntel: skylake"),
        "{warned}"
    );
    assert!(warned.contains("kvm64, because no named model"), "{warned}");
    let report = json_report(&mixed, &["cpu-flags", "--format", "json"]);
    let ours: BTreeSet<String> = serde_json::from_value(report["guest_flags"].clone()).unwrap();
    let intersection = sets[1..].iter().fold(sets[0].clone(), |acc, set| {
        acc.intersection(set).cloned().collect()
    });
    assert_eq!(ours, intersection);
    assert_eq!(report["vendors"]["GenuineIntel"], json!(["skylake"]));
}

#[test]
fn a_node_whose_kvm_is_out_of_reach_says_why_and_its_host_flags_stand_in_visibly() {
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().to_str().unwrap();
    // /dev hidden behind an empty tmpfs in a private mount namespace.
    let hidden = |args: &[&str]| {
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount -t tmpfs tmpfs /dev && exec "$0" "$@""#)
            .arg(BIN)
            .args(["--cache-dir", cache])
            .args(args)
            .output()
            .expect("unshare (util-linux)")
    };
    let resources = hidden(&["resources", "--set", "max-age=0s"]);
    assert!(resources.status.success(), "{}", stderr(&resources));
    let document: Value = serde_json::from_slice(&resources.stdout).unwrap();
    let set = &document["nodecache_hypervisor"];
    assert_eq!(set["flags"], Value::Null, "{set}");
    assert!(
        set["unavailable"]
            .as_str()
            .unwrap()
            .starts_with("/dev/kvm: No such file or directory"),
        "{set}"
    );
    let report: Value =
        serde_json::from_slice(&hidden(&["cpu-flags", "--format", "json", "--set", "max-age=0s"]).stdout)
            .unwrap();
    let node = &report["nodes"][0];
    assert_eq!(node["hypervisor"], "stand-in", "{report}");
    assert!(
        node["hypervisor_unavailable"]
            .as_str()
            .unwrap()
            .contains("/dev/kvm")
    );
    assert_eq!(report["hypervisor_stand_ins"], json!([node["name"]]));
    let qemu = hidden(&["cpu-flags", "--format", "qemu", "--set", "max-age=0s"]);
    assert!(qemu.status.success(), "{}", stderr(&qemu));
    let name = node["name"].as_str().unwrap();
    assert!(
        stderr(&qemu).contains(&format!(
            "host flags stand in for what these nodes' hypervisors can give a guest: {name} (/dev/kvm"
        )),
        "{}",
        stderr(&qemu)
    );
    let refused = hidden(&[
        "cpu-flags",
        "--format",
        "qemu",
        "--require-hypervisor",
        "--set",
        "max-age=0s",
    ]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(&format!("no hypervisor set for {name}")),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn serve_carries_the_guest_cpu_its_stand_ins_fragile_features_and_vendors() {
    // Two recorded nodes: one whose hypervisor gives hle and rtm (fragile),
    // and a plain Incus member without a hypervisor set (its host flags
    // stand in).
    let flags = |names: &[&str]| -> BTreeSet<String> { names.iter().map(|n| n.to_string()).collect() };
    let guest = flags(&["fpu", "sse2", "avx2", "hle", "rtm", "hypervisor"]);
    let with_set = node_document(
        "GenuineIntel",
        &guest,
        json!({"accelerator": "kvm", "flags": guest}),
    );
    let mut plain: Value = serde_json::from_str(&node_document(
        "GenuineIntel",
        &flags(&["fpu", "sse2", "avx2", "hle", "rtm", "constant_tsc"]),
        Value::Null,
    ))
    .unwrap();
    plain.as_object_mut().unwrap().remove("nodecache_hypervisor");
    let cluster = cluster_of(&[("kvm-node", with_set), ("incus-node", plain.to_string())]);
    let server = cluster.serve(&[]);
    let info = crate::util::http_get_json(&server.url, "/1.0");
    assert!(
        info["metadata"]["api_extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("resources_nodecache_hypervisor")),
        "{info}"
    );
    let report = crate::util::http_get_json(&server.url, "/1.0/cluster/cpu-flags");
    let report = &report["metadata"];
    assert_eq!(report["hypervisor_stand_ins"], json!(["incus-node"]));
    assert_eq!(report["nodes"][1]["hypervisor"], "stand-in");
    assert_eq!(
        report["vendors"],
        json!({"GenuineIntel": ["kvm-node", "incus-node"]})
    );
    assert!(
        report["fragile"]["hle"].as_str().unwrap().contains("TSX"),
        "{report}"
    );
    let qemu = |query: &str| {
        crate::util::http_get(
            &server.url,
            &format!("/1.0/cluster/cpu-flags?format=qemu{query}"),
            &[],
        )
    };
    let kept = qemu("");
    assert_eq!(kept.status, 200, "{}", kept.body);
    assert!(
        kept.body.contains(",hle,") && kept.body.trim().ends_with(",enforce"),
        "{}",
        kept.body
    );
    assert_eq!(kept.body, cluster.text(&["cpu-flags", "--format", "qemu"]));
    let dropped = qemu("&drop-fragile=1");
    assert!(
        !dropped.body.contains("hle") && !dropped.body.contains("rtm"),
        "{}",
        dropped.body
    );
    assert_eq!(
        dropped.body,
        cluster.text(&["cpu-flags", "--format", "qemu", "--drop-fragile"])
    );
    let refused = qemu("&require-hypervisor=1");
    assert_ne!(refused.status, 200, "{}", refused.body);
    assert!(
        refused.body.contains("no hypervisor set for incus-node"),
        "{}",
        refused.body
    );
}

/// One `cpu-models.conf` section, read by the rules of Proxmox VE's manual
/// page cpu-models.conf(5) (Proxmox VE 8; the wiki's "Manual:
/// cpu-models.conf", revision of 22 June 2023): `#` and blank lines are
/// ignored; a section starts `cpu-model: <name>` (no `custom-` prefix);
/// its options are indented by one TAB or several spaces, option and value
/// separated by one space; the options are flags (`+FLAG[;-FLAG…]`),
/// hidden, hv-vendor-id, phys-bits (8-64 or host) and reported-model.
fn read_proxmox_section(text: &str) -> (String, std::collections::BTreeMap<String, String>) {
    let mut name = None;
    let mut options = std::collections::BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix("cpu-model: ") {
            assert!(name.is_none(), "one section: {text}");
            assert!(!header.starts_with("custom-"), "{header}");
            name = Some(header.to_string());
            continue;
        }
        let body = line
            .strip_prefix('\t')
            .or_else(|| line.strip_prefix("  ").map(str::trim_start))
            .unwrap_or_else(|| panic!("an option line must be indented: {line:?}"));
        let (key, value) = body
            .split_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        assert!(
            !value.starts_with(' '),
            "one space between option and value: {line:?}"
        );
        assert!(
            ["flags", "hidden", "hv-vendor-id", "phys-bits", "reported-model"].contains(&key),
            "not a cpu-models.conf option: {key}"
        );
        assert!(
            options.insert(key.to_string(), value.to_string()).is_none(),
            "{key} twice"
        );
    }
    if let Some(flags) = options.get("flags") {
        for flag in flags.split(';') {
            let (sign, name) = flag.split_at(1);
            assert!(sign == "+" || sign == "-", "{flag}");
            assert!(
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                "{flag}"
            );
        }
    }
    if let Some(bits) = options.get("phys-bits") {
        assert!(
            bits == "host" || (8..=64).contains(&bits.parse::<u32>().unwrap()),
            "{bits}"
        );
    }
    (name.expect("a cpu-model: header"), options)
}

/// The fewest physical address bits /proc/cpuinfo gives a CPU of this machine.
fn proc_physical_bits() -> u32 {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .lines()
        .filter_map(|line| {
            line.strip_prefix("address sizes")?
                .split(':')
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .min()
        .expect("address sizes in /proc/cpuinfo")
}

#[test]
fn the_proxmox_section_reads_as_its_manual_says_and_its_cpu_starts_under_kvm() {
    require_kvm();
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().to_str().unwrap();
    let known_models = std::process::Command::new("qemu-system-x86_64")
        .args(["-cpu", "help"])
        .output()
        .unwrap();
    let known_models = String::from_utf8(known_models.stdout).unwrap();
    for baseline in ["kvm64", "auto"] {
        let text = nodecache_text(&[
            "--cache-dir",
            cache,
            "cpu-flags",
            "--format",
            "proxmox",
            "--baseline",
            baseline,
            "--model-name",
            "rack-a",
        ]);
        let (name, options) = read_proxmox_section(&text);
        assert_eq!(name, "rack-a");
        assert!(text.contains("--cpu custom-rack-a"), "{text}");
        assert_eq!(
            options["phys-bits"],
            proc_physical_bits().to_string(),
            "the kernel's address sizes"
        );
        let model = &options["reported-model"];
        assert!(
            known_models
                .lines()
                .any(|line| line.split_whitespace().next() == Some(model.as_str())),
            "QEMU defines {model}"
        );
        // As Proxmox passes it: the model, each flag as +name/-name, phys-bits.
        let mut cpu = vec![model.clone()];
        if let Some(flags) = options.get("flags") {
            cpu.extend(flags.split(';').map(str::to_string));
        }
        cpu.push(format!("phys-bits={}", options["phys-bits"]));
        cpu.push("enforce".into());
        qemu_starts(&cpu.join(",")).unwrap();
    }
}

/// `--format kubevirt`'s YAML, parsed by PyYAML (`python3-yaml`) into JSON.
fn parse_yaml(text: &str) -> Value {
    // Debian's python3, where python3-yaml is (PATH may lead to a venv first).
    // (scripts/test installs python3-yaml.)
    let output = crate::util::output_with_stdin(
        Command::new("/usr/bin/python3").args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ]),
        text.as_bytes(),
    );
    assert!(output.status.success(), "PyYAML: {}\n{text}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The `<cpu>` KubeVirt's virt-launcher gives libvirt for a VM's
/// `spec.domain.cpu`: mode custom, the model, each feature with its policy.
fn virt_launcher_cpu(cpu: &Value) -> String {
    let features: Vec<(&str, &str)> = cpu["features"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|feature| {
            (
                feature["policy"].as_str().unwrap(),
                feature["name"].as_str().unwrap(),
            )
        })
        .collect();
    custom_cpu(cpu["model"].as_str().unwrap(), &features)
}

/// A libvirt `<cpu mode='custom'>` of `model` with these (policy, name)
/// features.
fn custom_cpu(model: &str, features: &[(&str, &str)]) -> String {
    let mut xml = format!("<cpu mode='custom' match='exact'>\n  <model fallback='forbid'>{model}</model>\n");
    for (policy, name) in features {
        xml.push_str(&format!("  <feature policy='{policy}' name='{name}'/>\n"));
    }
    xml.push_str("</cpu>\n");
    xml
}

/// libvirt's `hypervisor-cpu-compare` on this machine's KVM takes `xml`
/// (the host gives all of it: identical or a superset).
fn assert_libvirt_accepts(xml: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cpu.xml");
    std::fs::write(&file, xml).unwrap();
    let compared = virsh_ok(&[
        "hypervisor-cpu-compare",
        "--virttype",
        "kvm",
        file.to_str().unwrap(),
    ]);
    assert!(
        compared.contains("identical") || compared.contains("superset"),
        "{what}: {compared}\n{xml}"
    );
}

/// The features libvirt's cpu_map gives `model` (libvirt's names), as its
/// offline test driver expands it.
fn libvirt_model_features(model: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.xml");
    std::fs::write(
        &file,
        format!("<cpu>\n  <arch>x86_64</arch>\n  <model>{model}</model>\n</cpu>\n"),
    )
    .unwrap();
    let output = Command::new("virsh")
        .args(["-c", "test:///default", "cpu-baseline", "--features"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "libvirt expanding {model}: {}",
        stderr(&output)
    );
    libvirt_required(&String::from_utf8(output.stdout).unwrap())
}

/// On this machine: KubeVirt's rule (a model only where libvirt's
/// domcapabilities calls it usable) decides. If libvirt calls no model of
/// this CPU's vendor usable, nodecache refuses, saying why; otherwise its
/// model is one libvirt calls usable, and libvirt accepts the CPU
/// virt-launcher would make of the YAML for this hypervisor.
#[test]
fn the_kubevirt_cpu_is_one_libvirt_calls_usable_and_accepts() {
    require_kvm();
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().to_str().unwrap();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let vendor = if cpuinfo.contains("AuthenticAMD") {
        "AMD"
    } else {
        "Intel"
    };
    let caps = virsh_ok(&["domcapabilities", "--virttype", "kvm"]);
    let usable: BTreeSet<String> = caps
        .lines()
        .filter(|line| line.contains("<model usable='yes'") && line.contains(&format!("vendor='{vendor}'")))
        .filter_map(|line| line.split('>').nth(1)?.split('<').next().map(str::to_string))
        .collect();
    let output = Nodecache::new().output(&["--cache-dir", cache, "cpu-flags", "--format", "kubevirt"]);
    if usable.is_empty() {
        assert_eq!(
            output.status.code(),
            Some(1),
            "libvirt calls no {vendor} model usable here"
        );
        let said = stderr(&output);
        assert!(
            said.contains("is usable on every node") && said.contains("lacks"),
            "{said}"
        );
        println!("libvirt calls no {vendor} model usable here; nodecache refused: {said}");
        return;
    }
    assert!(output.status.success(), "{}", stderr(&output));
    let yaml = parse_yaml(&String::from_utf8(output.stdout).unwrap());
    let spec = &yaml["spec"]["template"]["spec"];
    let cpu = &spec["domain"]["cpu"];
    let model = cpu["model"].as_str().unwrap();
    assert!(usable.contains(model), "{model} is not usable here: {usable:?}");
    assert_eq!(
        spec["nodeSelector"][format!("cpu-model.node.kubevirt.io/{model}")],
        "true"
    );
    assert_libvirt_accepts(&virt_launcher_cpu(cpu), "virt-launcher's CPU");
}

/// Three recorded EPYC-Rome hosts of three QEMU generations: the KubeVirt
/// model is one every host can run whole by libvirt's own data (the
/// model's features in libvirt's cpu_map, within each host's host-model
/// CPU: what makes libvirt call it usable there), never kvm64.
#[test]
fn a_recorded_three_generation_cluster_gets_a_kubevirt_model_every_node_runs() {
    let names = Names::load();
    let hosts: Vec<BTreeSet<String>> = RECORDED[1..]
        .iter()
        .map(|(_, file, _)| libvirt_required(&offline_baseline(&[fixture(file)])))
        .collect();
    let documents: Vec<(&str, String)> = RECORDED[1..]
        .iter()
        .map(|(name, file, vendor)| {
            let set = required_features(&offline_baseline(&[fixture(file)]), &names);
            (
                *name,
                node_document(vendor, &set, json!({"accelerator": "kvm", "flags": set})),
            )
        })
        .collect();
    let cluster = cluster_of(&documents);
    let yaml = parse_yaml(&cluster.text(&["cpu-flags", "--format", "kubevirt"]));
    let cpu = &yaml["spec"]["template"]["spec"]["domain"]["cpu"];
    let model = cpu["model"].as_str().unwrap();
    assert!(!["kvm64", "qemu64"].contains(&model));
    let needs = libvirt_model_features(model);
    for (host, (name, _, _)) in hosts.iter().zip(&RECORDED[1..]) {
        let missing: Vec<&String> = needs.difference(host).collect();
        assert!(
            missing.is_empty(),
            "{model} is not usable on {name}: it lacks {missing:?}"
        );
    }
    let disabled: Vec<&Value> = cpu["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|feature| feature["policy"] == "disable")
        .collect();
    assert!(
        disabled.is_empty(),
        "a usable model needs nothing disabled: {disabled:?}"
    );
    println!("three EPYC-Rome generations: KubeVirt model {model}");
}

/// Loads a `nova.conf` fragment with Nova's own `[libvirt]` option
/// definitions (Nova 26.2.2's `nova/conf/libvirt.py`, the release Debian 12
/// packages, from the source `scripts/test` fetches) through Debian's
/// oslo.config, and reads Nova's CPU trait mapping (`CPU_TRAITS_MAPPING`
/// in `nova/virt/libvirt/utils.py`): what Nova itself makes of it.
fn nova_reads(fragment: &Path) -> Value {
    let sdist = std::env::var("NODECACHE_NOVA_SDIST")
        .expect("NODECACHE_NOVA_SDIST: Nova's source tarball (scripts/test fetches nova 26.2.2 from PyPI)");
    const SCRIPT: &str = r#"
import importlib.util, json, os, re, sys, tarfile, tempfile, types
from oslo_config import cfg
sdist, fragment = sys.argv[1], sys.argv[2]
work = tempfile.mkdtemp()
with tarfile.open(sdist) as tar:
    root = tar.getnames()[0].split('/')[0]
    for name in ('nova/conf/paths.py', 'nova/conf/libvirt.py', 'nova/virt/libvirt/utils.py'):
        tar.extract(root + '/' + name, work)
base = os.path.join(work, root)
for package in ('nova', 'nova.conf'):
    module = types.ModuleType(package)
    module.__path__ = []
    sys.modules[package] = module
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(base, path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
sys.modules['nova.conf'].paths = load('nova.conf.paths', 'nova/conf/paths.py')
libvirt = load('nova.conf.libvirt', 'nova/conf/libvirt.py')
conf = cfg.ConfigOpts()
libvirt.register_opts(conf)
conf(args=[], default_config_files=[fragment])
mapping = open(os.path.join(base, 'nova/virt/libvirt/utils.py')).read()
traits = dict(re.findall(r"'([\w.\-]+)': os_traits\.(HW_CPU_X86_\w+),", mapping))
print(json.dumps({'cpu_mode': conf.libvirt.cpu_mode, 'cpu_models': conf.libvirt.cpu_models,
                  'cpu_model_extra_flags': conf.libvirt.cpu_model_extra_flags, 'traits': traits}))
"#;
    let output = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT, &sdist])
        .arg(fragment)
        .output()
        .expect("Debian's python3 with oslo.config (scripts/test installs python3-oslo.config)");
    assert!(output.status.success(), "Nova's options: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The Nova fragment as Nova reads it: its options round-trip through
/// Nova's own definitions, libvirt accepts each listed model with its extra
/// flags on this machine's KVM, and the flavor trait is the one Nova
/// reports for a feature libvirt's cpu_map gives the newest model.
#[test]
fn the_nova_fragment_is_read_by_novas_options_and_each_model_is_accepted() {
    require_kvm();
    let cache = tempfile::tempdir().unwrap();
    let text = nodecache_text(&[
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "cpu-flags",
        "--format",
        "nova",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let fragment = dir.path().join("nova.conf");
    std::fs::write(&fragment, &text).unwrap();
    let nova = nova_reads(&fragment);
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{key} = ")))
            .map(str::to_string)
    };
    assert_eq!(nova["cpu_mode"], "custom");
    let models: Vec<String> = value("cpu_models")
        .unwrap()
        .split(", ")
        .map(str::to_string)
        .collect();
    assert_eq!(nova["cpu_models"], json!(models), "{text}");
    let extra: Vec<String> = value("cpu_model_extra_flags")
        .map(|flags| flags.split(", ").map(str::to_string).collect())
        .unwrap_or_default();
    assert_eq!(nova["cpu_model_extra_flags"], json!(extra), "{text}");
    // Nova's spelling: `-flag` disables, `+flag` or a bare flag requires.
    let features: Vec<(&str, &str)> = extra
        .iter()
        .map(|flag| match flag.split_at(1) {
            ("-", name) => ("disable", name),
            ("+", name) => ("require", name),
            _ => ("require", flag.as_str()),
        })
        .collect();
    for model in &models {
        assert_libvirt_accepts(&custom_cpu(model, &features), model);
    }
    let comment = text
        .lines()
        .find(|line| line.contains("trait:HW_CPU_X86_"))
        .expect("the flavor trait");
    let trait_name = comment.split("trait:").nth(1).unwrap().split('=').next().unwrap();
    let feature = comment.rsplit('(').next().unwrap().trim_end_matches(')');
    assert_eq!(nova["traits"][feature], trait_name, "Nova's trait for {feature}");
    let newest = models.last().unwrap();
    assert!(
        libvirt_model_features(newest).contains(feature),
        "{newest} has {feature} by libvirt's cpu_map"
    );
}
