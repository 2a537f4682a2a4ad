"""A nodecache cache policy in Python, against contract 0.2.0.

The same decisions as the default policy: a cache entry younger than
`max-age` (default 24 h) is used; otherwise the node is probed (this
machine) or fetched (a member) and the entry rewritten; when that fails, an
entry younger than `stale-max-age` (default 7 d) is served as stale. The
common flags are those every core of every included node has.

Build (see plugin/README.md):
    componentize-py -d ../../wit/v0.2.0 -w cache-policy componentize app -o policy.wasm
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports import types as t

UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(key: str, default: str) -> int:
    text = (host.config(key) or default).strip()
    number = text.rstrip("smhd")
    unit = text[len(number):] or "s"
    if unit not in UNITS_MS or not number.replace(".", "", 1).isdigit():
        raise Err(t.PolicyError_BadConfig(f"{key} = {text!r}: expected a duration like 90s, 15m, 24h or 7d"))
    return int(float(number) * UNITS_MS[unit])


def refresh(node: t.Member) -> t.NodeResources:
    document = host.probe_local() if node.local else host.fetch_remote(node)
    try:
        host.cache_write(node.name, document)
    except Err as error:
        host.log(t.LogLevel.WARN, f"{node.name}: could not write the cache ({error.value})")
    source = t.Source.LOCAL if node.local else t.Source.REMOTE
    return t.NodeResources(document.body, source, 0, None)


class Policy(exports.Policy):
    def describe(self) -> t.PolicyInfo:
        return t.PolicyInfo("python-example", "0.1.0", [
            t.Parameter("max-age", "24h", "a cache entry younger than this is used without asking the node"),
            t.Parameter("stale-max-age", "7d", "when a refresh fails, an entry younger than this is served as stale"),
        ])

    def get_node_resources(self, node: t.Member) -> t.NodeResources:
        max_age = duration_ms("max-age", "24h")
        stale_max_age = duration_ms("stale-max-age", "7d")
        try:
            entry = host.cache_read(node.name)
        except Err:
            entry = None  # a corrupt or unreadable entry is a miss
        if entry is not None and entry.age_ms < max_age:
            return t.NodeResources(entry.document, t.Source.CACHE, entry.age_ms, None)
        try:
            return refresh(node)
        except Err as error:
            if entry is not None and entry.age_ms < stale_max_age:
                return t.NodeResources(entry.document, t.Source.STALE, entry.age_ms, error.value)
            raise Err(t.PolicyError_Unavailable(error.value))

    def cluster_cpu_flags(self, reports, architecture: str) -> t.ClusterFlags:
        common = None
        nodes = []
        for report in reports:
            outcome = report.outcome
            if isinstance(outcome, Err):
                verdict = t.NodeVerdict_NoData(str(outcome.value))
            else:
                node = outcome.value
                groups = [g for g in node.cpu.core_groups if g.cores > 0]
                if node.cpu.architecture != architecture:
                    verdict = t.NodeVerdict_ExcludedArch(node.cpu.architecture)
                elif not groups:
                    verdict = t.NodeVerdict_NoData("reports no CPU cores")
                elif any(not g.flags.split() for g in groups):
                    verdict = t.NodeVerdict_NoData("reports no CPU flags for some cores")
                else:
                    for group in groups:
                        flags = set(group.flags.split())  # one space-separated string per group
                        common = flags if common is None else common & flags
                    verdict = t.NodeVerdict_Included()
            nodes.append(t.NodeOutcome(report.name, verdict))
        return t.ClusterFlags(architecture, sorted(common or []), nodes)
