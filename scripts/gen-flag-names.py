#!/usr/bin/env python3
"""Derive nodecache's one table of x86 flag names: every CPUID bit Linux
names, and the name QEMU and libvirt give it, all from the real sources,
joined on the CPUID bit:
- Linux: the kernel's arch/x86/include/asm/cpufeatures.h (Debian ships it in
  linux-headers-*-common; the newest installed one, or --cpufeatures PATH).
  Words the kernel fills from a single CPUID register are kept; Linux-defined
  and scattered words (3, 7, 8, 11, 20, 21) are not plain CPUID registers and
  their flags are taken from /proc/cpuinfo at probe time instead.
- QEMU: every boolean property of its `kvm64` CPU is switched, one QEMU per
  property (`-cpu kvm64,NAME=on`, or `=off` for what kvm64 already has), and
  the CPUID bit that changes in the CPU's `feature-words` (or, for what TCG
  cannot do, `filtered-features`) is that property's. Aliases (`sse3` for
  `pni`, `xd` for `nx`) change the same bit; the canonical name is the one
  QEMU's own model expansion lists.
- libvirt: its cpu_map (`x86_features.xml`), which names each feature by its
  CPUID input and register mask.

Usage: gen-flag-names.py [--cpufeatures PATH] > host/src/machine/x86_flag_names.tsv
       gen-flag-names.py [--cpufeatures PATH] --check host/src/machine/x86_flag_names.tsv
(`--check` derives the table again from the installed kernel headers, QEMU
and libvirt and exits 1 on any row that differs; a bit the kept table leaves
unnamed and a newer tool names, or a bit a newer kernel adds, is reported,
not an error.)
"""
import concurrent.futures
import glob
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QEMU = "qemu-system-x86_64"
LIBVIRT_FEATURES = "/usr/share/libvirt/cpu_map/x86_features.xml"
REGISTERS = ("eax", "ebx", "ecx", "edx")


# word -> (leaf, subleaf, register), as the header's section comments state.
WORDS = {
    0: (0x00000001, 0, "edx"),
    1: (0x80000001, 0, "edx"),
    2: (0x80860001, 0, "edx"),
    4: (0x00000001, 0, "ecx"),
    5: (0xC0000001, 0, "edx"),
    6: (0x80000001, 0, "ecx"),
    9: (0x00000007, 0, "ebx"),
    10: (0x0000000D, 1, "eax"),
    12: (0x00000007, 1, "eax"),
    13: (0x80000008, 0, "ebx"),
    14: (0x00000006, 0, "eax"),
    15: (0x8000000A, 0, "edx"),
    16: (0x00000007, 0, "ecx"),
    17: (0x80000007, 0, "ebx"),
    18: (0x00000007, 0, "edx"),
    19: (0x8000001F, 0, "eax"),
}

DEFINE = re.compile(
    r'^#define X86_FEATURE_(\w+)\s+\(\s*(\d+)\s*\*\s*32\s*\+\s*(\d+)\s*\)\s*(?:/\*\s*(.*?)\s*\*/)?'
)


def rows(header_path):
    with open(header_path) as header:
        for line in header:
            match = DEFINE.match(line)
            if not match:
                continue
            macro, word, bit, comment = match.group(1), int(match.group(2)), int(match.group(3)), match.group(4) or ""
            if word not in WORDS:
                continue
            quoted = re.match(r'^"([^"]*)"', comment)
            name = quoted.group(1) if quoted else macro.lower()
            if not name:  # "" means the kernel hides it from /proc/cpuinfo
                continue
            leaf, subleaf, register = WORDS[word]
            yield name, leaf, subleaf, register, bit


def newest_cpufeatures():
    found = glob.glob("/usr/src/linux-headers-*-common/arch/x86/include/asm/cpufeatures.h")
    if not found:
        sys.exit("no cpufeatures.h: apt-get install linux-headers-<version>-common, or give --cpufeatures PATH")
    version = lambda path: [int(n) for n in re.findall(r"\d+", path.split("linux-headers-")[1].split("/")[0])]
    return max(found, key=version)


CPUFEATURES = None


def linux_bits():
    """(Linux name, (leaf, subleaf, register, bit)) for every named CPUID bit."""
    return [(name, (leaf, subleaf, register, bit)) for name, leaf, subleaf, register, bit in rows(CPUFEATURES)]


def qmp(args, commands):
    """Runs QEMU with `args`, sends `commands`, returns their answers."""
    script = [{"execute": "qmp_capabilities"}] + commands + [{"execute": "quit"}]
    text = "\n".join(json.dumps(c) for c in script) + "\n"
    out = subprocess.run([QEMU, "-nodefaults", "-display", "none", "-S", "-accel", "tcg", *args, "-qmp", "stdio"],
                         input=text, capture_output=True, text=True, timeout=60)
    answers = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    answers = [a for a in answers if "return" in a or "error" in a]
    if any("error" in a for a in answers):
        raise RuntimeError(f"QEMU {args}: {answers}")
    return [a["return"] for a in answers[1:-1]]


def cpuid_bits_set(cpu_option):
    """Every (leaf, subleaf, register, bit) set in the CPU's feature words or
    filtered out by TCG, for `-cpu cpu_option`."""
    path = "/machine/unattached/device[0]"
    words, filtered = qmp(["-machine", "q35", "-cpu", cpu_option], [
        {"execute": "qom-get", "arguments": {"path": path, "property": "feature-words"}},
        {"execute": "qom-get", "arguments": {"path": path, "property": "filtered-features"}},
    ])
    bits = set()
    for word in words + filtered:
        key = (word["cpuid-input-eax"], word.get("cpuid-input-ecx", 0), word["cpuid-register"].lower())
        for bit in range(32):
            if word["features"] >> bit & 1:
                bits.add((*key, bit))
    return bits


def qemu_names():
    """CPUID bit -> QEMU property name, learned from QEMU."""
    (props,) = qmp(["-machine", "none"], [
        {"execute": "device-list-properties", "arguments": {"typename": "kvm64-x86_64-cpu"}}])
    (full,) = qmp(["-machine", "none"], [
        {"execute": "query-cpu-model-expansion", "arguments": {"type": "full", "model": {"name": "kvm64"}}}])
    (static,) = qmp(["-machine", "none"], [
        {"execute": "query-cpu-model-expansion", "arguments": {"type": "static", "model": {"name": "kvm64"}}}])
    kvm64 = full["model"]["props"]
    canonical = set(static["model"]["props"])  # a static expansion names no aliases
    candidates = sorted(p["name"] for p in props if p.get("type") == "bool"
                        and not re.match(r"(vmx-|hv-|kvm|x-|check$|enforce$|pmu$|l3-cache|legacy-cache|"
                                         r"full-cpuid|host-|migratable|tcg-cpuid|fill-mtrr|cpuid-0xb|"
                                         r"vmware-cpuid|lbr-fmt|start-powered|realized|hotplug|"
                                         r"kvm-|lmce|topoext-|xen-)", p["name"]))
    base = cpuid_bits_set("kvm64")
    linux_by_bit = {bit: name for name, bit in linux_bits()}

    def probe(name):
        on = kvm64.get(name) is True
        return name, cpuid_bits_set(f"kvm64,{name}={'off' if on else 'on'}") ^ base

    names = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for name, changed in pool.map(probe, candidates):
            if name not in canonical:
                continue
            if len(changed) > 1:
                # A property that brings others along (xsave sets its leaf-0xD
                # words too) is the bit Linux calls by the same name.
                changed = {b for b in changed if linux_by_bit.get(b, "").replace("_", "-") == name}
            if len(changed) == 1:
                names[changed.pop()] = name
    return names


def libvirt_names():
    """CPUID bit -> libvirt feature name, from libvirt's cpu_map."""
    names = {}
    for feature in ET.parse(LIBVIRT_FEATURES).getroot().iter("feature"):
        cpuid = feature.find("cpuid")
        if cpuid is None:
            continue
        leaf = int(cpuid.get("eax_in"), 16)
        subleaf = int(cpuid.get("ecx_in", "0"), 16)
        for register in REGISTERS:
            mask = int(cpuid.get(register, "0"), 16)
            if mask and mask & (mask - 1) == 0:
                names.setdefault((leaf, subleaf, register, mask.bit_length() - 1), feature.get("name"))
    return names


def table():
    qemu, libvirt = qemu_names(), libvirt_names()
    qemu_version = qmp(["-machine", "none"], [{"execute": "query-version"}])[0]["qemu"]
    virsh = subprocess.run(["virsh", "--version"], capture_output=True, text=True).stdout.strip()
    lines = ["# linux_name\tleaf\tsubleaf\tregister\tbit\tqemu_name\tlibvirt_name",
             "# generated by scripts/gen-flag-names.py from "
             f"{CPUFEATURES.split('/usr/src/')[-1]}, QEMU "
             f"{qemu_version['major']}.{qemu_version['minor']}.{qemu_version['micro']} "
             f"and libvirt {virsh} ('-': the tool has no name for the bit)"]
    for name, (leaf, subleaf, register, bit) in linux_bits():
        key = (leaf, subleaf, register, bit)
        lines.append(f"{name}\t0x{leaf:08x}\t{subleaf}\t{register}\t{bit}\t"
                     f"{qemu.get(key, '-')}\t{libvirt.get(key, '-')}")
    return lines


def main():
    global CPUFEATURES
    args = sys.argv[1:]
    if args[:1] == ["--cpufeatures"] and len(args) >= 2:
        CPUFEATURES, args = args[1], args[2:]
    else:
        CPUFEATURES = newest_cpufeatures()
    derived = table()
    if len(args) == 2 and args[0] == "--check":
        kept = [l.split("\t") for l in open(args[1]).read().splitlines() if not l.startswith("#")]
        fresh = {row[0]: row for row in (l.split("\t") for l in derived if not l.startswith("#"))}
        conflicts, newer = [], []
        for row in kept:
            now = fresh.get(row[0])
            for column in (5, 6):
                if now is None or row[:5] != now[:5]:
                    conflicts.append(f"{row[0]}: kept {row}, derived {now}")
                    break
                if row[column] != now[column]:
                    (newer if row[column] == "-" else conflicts).append(
                        f"{row[0]}: kept {row[column]!r}, the installed tool says {now[column]!r}")
        added = sorted(set(fresh) - {row[0] for row in kept})
        for name in added:
            newer.append(f"{name}: not kept; {CPUFEATURES} names it")
        for line in newer:
            print(f"named by a newer tool (fine): {line}")
        for line in conflicts:
            print(f"CONFLICT: {line}")
        if conflicts:
            sys.exit(1)
        print(f"{len(kept)} rows agree with {CPUFEATURES}, the installed QEMU and libvirt")
        return
    print("\n".join(derived))


if __name__ == "__main__":
    main()
