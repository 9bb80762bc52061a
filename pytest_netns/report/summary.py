"""The session's tally, for the terminal summary: topologies, probes, faults, captures, failures.

Every test's record adds to `SESSION`; `summary_lines` turns it, with the
topology registry's costs and the probe count, into the lines pytest prints
at the end (the controller of an xdist run prints every worker's).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field


@dataclass
class SessionLog:
    failed_tests: list[str] = field(default_factory=list)  # artifact directories
    pcaps: int = 0
    frames: int = 0
    drops: int = 0
    capture_seconds: float = 0.0  # spent opening and closing capture sockets
    kept: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)


SESSION = SessionLog()


def summary_lines() -> list[str]:
    """Topologies built, probes sent, build and teardown time, artifacts, kept topologies."""
    registry = sys.modules.get("pytest_netns.topology.registry")
    if registry is None:
        return []
    stats = registry.STATS
    kept = registry.kept_topologies()
    built = int(stats["topologies"]) + len(kept)
    build = float(stats["build_seconds"]) + sum(t.build_seconds for t in kept)
    probes_mod = sys.modules.get("pytest_netns.probes.engine")
    probe_stats = getattr(probes_mod, "PROBE_STATS", None) or {}
    probes = probe_stats.get("probes")
    if not built and not probes:
        return []
    line = (f"{built} topolog{'y' if built == 1 else 'ies'} built in {build:.2f} s, torn down in "
            f"{float(stats['teardown_seconds']):.2f} s")
    if probes is not None:
        line += f"; {probes} probe{'' if probes == 1 else 's'} sent"
    lines = [line]
    shared = int(stats.get("shared", 0))
    if shared:
        tests = int(stats.get("shared_tests", 0))
        lines.append(f"{shared} of them shared (netns_factory), by {tests} "
                     f"test{'' if tests == 1 else 's'}")
    faults = _fault_line()
    if faults:
        lines.append(faults)
    if SESSION.pcaps:
        lines.append(
            f"captured {SESSION.frames} frames into {SESSION.pcaps} pcaps "
            f"({SESSION.capture_seconds * 1000:.0f} ms opening/closing taps"
            + (f", {SESSION.drops} frames dropped by the kernel" if SESSION.drops else "") + ")"
        )
    if SESSION.failed_tests:
        n = len(SESSION.failed_tests)
        root = os.path.dirname(SESSION.failed_tests[0])
        lines.append(f"network reports of {n} failed test{'' if n == 1 else 's'} in "
                     f"{relative(root)}/")
    for nodeid, label, commands in SESSION.kept:
        lines.append(f"kept {label} of {nodeid} for debugging; enter its nodes with:")
        lines += [f"  {name}: {cmd}" for name, cmd in commands]
    if SESSION.kept:
        lines.append("remove kept topologies with: pytest-netns cleanup")
    return lines




def _fault_line() -> str | None:
    """"faults: 3 impairments, 1 cut, 1 partition (1 forwarder process)", when there were any."""
    module = sys.modules.get("pytest_netns.topology.faults")
    stats: dict[str, int] = getattr(module, "FAULT_STATS", None) or {}
    names = {"impairments": ("impairment", "impairments"), "cuts": ("link cut", "link cuts"),
             "flaps": ("flap", "flaps"), "partitions": ("partition", "partitions")}
    parts = [f"{stats[key]} {one if stats[key] == 1 else many}"
             for key, (one, many) in names.items() if stats.get(key)]
    if not parts:
        return None
    forwarders = stats.get("forwarders", 0)
    extra = (f" ({forwarders} forwarder process{'es' if forwarders != 1 else ''})"
             if forwarders else "")
    return f"faults injected: {', '.join(parts)}{extra}"


def relative(path: str) -> str:
    """`path` relative to the working directory, unless that climbs out of it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel
