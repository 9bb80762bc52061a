"""What one test's network looked like and did, told when the test fails.

When a networked test fails the first question is what the network looked
like, so the failure report answers it without a rerun: every topology of the
test with each node's interfaces, addresses and routes as the kernel holds
them at that moment, the switches and routers, every probe the test sent
with its outcome, and any reachability matrix it computed. Next to it go a
diagram and, if asked for, a pcap of every link.

`TestRecord` collects this for one test (the plugin makes one per test that
uses topologies); the module-level `SESSION` sums it up for the terminal
summary.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .capture import LinkCapture, TopologyCapture
    from .nodes import Node
    from .session import Session
    from .topology import Topology

CAPTURE_MODES = ("off", "on-failure", "always")
MAIN_TABLE = 254
RTN_UNICAST = 1
MAX_PROBE_LINES = 40


def artifact_dir(root: str, nodeid: str) -> str:
    """`<root>/<test id>`, the id made safe for a file name (and unique when cut short)."""
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", nodeid).strip("_") or "test"
    if len(name) > 120:
        import hashlib

        name = f"{name[:110]}-{hashlib.sha1(nodeid.encode()).hexdigest()[:8]}"
    return os.path.join(root, name)


def _rel(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


# -- describing a topology -------------------------------------------------


def _align(rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Pad columns to a common width; the last cell of a short row is free text."""
    ncols = max(len(r) for r in rows)
    widths = [0] * ncols
    for row in rows:
        fixed = row if len(row) == ncols else row[:-1]
        for i, cell in enumerate(fixed):
            widths[i] = max(widths[i], len(cell))
    out = []
    for row in rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(row)]
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def _segment_note(topo: Topology, node: str, ifname: str) -> str:
    """What an interface is attached to, in a few words."""
    for seg in topo.segments.values():
        mine = [m for m in seg.members if m[0] == node and m[1] == ifname]
        if not mine:
            continue
        if seg.kind == "switch":
            return f"{seg.name} (switch)"
        if seg.kind == "stub":
            return f"{seg.name} (guest-only {seg.detail})"
        others = [f"{m[0]}:{m[1]}" for m in seg.members if m[0] != node]
        return f"{seg.name} to {', '.join(others)}"
    return "-"


def _node_kind(topo: Topology, name: str, node: Node) -> str:
    role = topo.roles.get(name, "node")
    if role != "node":
        return role
    if node.container is not None:
        return f"container {str(getattr(node.container, 'short_id', ''))[:12]}".strip()
    return "netns"


def _format_route(route: dict[str, Any], names: dict[int, str]) -> str:
    dst = "default" if route["dst"] == "0.0.0.0/0" else route["dst"]
    via = f" via {route['gateway']}" if route.get("gateway") else ""
    dev = f" dev {names.get(route.get('oif') or -1, route.get('oif'))}" if route.get("oif") else ""
    return f"{dst}{via}{dev}"


def _live_rows(topo: Topology, name: str, node: Node) -> list[list[str]]:
    """The node as the kernel sees it now: interfaces, addresses, state, routes."""
    kind = _node_kind(topo, name, node)
    try:
        links = node.netlink.links()
        addrs = node.netlink.addresses()
        routes = node.netlink.routes()
    except Exception as exc:  # the namespace may be gone (closed early, or broken)
        return [[name, kind, "-", f"(cannot read: {type(exc).__name__}: {exc})"]]
    names = {int(ln["index"]): str(ln["ifname"]) for ln in links}
    by_index: dict[int, list[str]] = {}
    for index, address, prefixlen in addrs:
        by_index.setdefault(index, []).append(f"{address}/{prefixlen}")
    rows: list[list[str]] = []
    for ln in links:
        if ln["ifname"] == "lo":
            continue
        ifname = str(ln["ifname"])
        address = ",".join(by_index.get(int(ln["index"]), [])) or "-"
        state = "up" if ln["up"] else "DOWN"
        first = not rows
        rows.append([name if first else "", kind if first else "", ifname, address, state,
                     _segment_note(topo, name, ifname)])
    if not rows:
        rows.append([name, kind, "-", "(no interface besides lo)", "", ""])
    table = [r for r in routes if r.get("table") == MAIN_TABLE and r.get("type") == RTN_UNICAST]
    if table:
        text = "; ".join(_format_route(r, names) for r in table)
        rows.append(["", "", "routes", text])
    else:
        rows.append(["", "", "routes", "(none)"])
    return rows


def _static_rows(topo: Topology, name: str, node: Node) -> list[list[str]]:
    """What the topology built, for a topology that is no longer up."""
    kind = _node_kind(topo, name, node)
    rows = []
    for i, iface in enumerate(node.interfaces):
        rows.append([name if i == 0 else "", kind if i == 0 else "", iface.ifname,
                     f"{iface.ip}/{iface.prefixlen}" if iface.ip else "-", "closed",
                     _segment_note(topo, name, iface.ifname)])
    return rows or [[name, kind, "-", "-", "closed", ""]]


def describe_topology(topo: Topology) -> list[str]:
    """An aligned table of the topology's nodes, routers, switches and host links."""
    state = "closed before the failure" if topo.closed else "up"
    if topo.kept:
        state = "kept"
    head = f"topology {topo.label} ({state}; {len(topo.members())} nodes, built in "
    head += f"{topo.build_seconds * 1000:.0f} ms)"
    rows: list[list[str]] = [["NODE", "KIND", "IFACE", "ADDRESS", "STATE", "LINK"]]
    order = sorted(
        (n for n, r in topo.roles.items() if r in ("node", "router")),
        key=lambda n: (topo.roles[n] != "node", list(topo.nodes).index(n)),
    )
    for name in order:
        node = topo.nodes[name]
        rows += _static_rows(topo, name, node) if topo.closed else _live_rows(topo, name, node)
        if topo.roles[name] == "router" and topo.nat_tool:
            rows.append(["", "", "nat", f"masquerades its upstream link ({topo.nat_tool})"])
    for seg in topo.segments.values():
        if seg.kind == "switch":
            ports = " ".join(f"{m}:{i}={ip}" for m, i, ip in seg.members)
            rows.append([seg.name, "switch", seg.detail or "br0", str(seg.subnet), "",
                         f"ports {ports}"])
    for seg in topo.segments.values():
        for member, ifname, ip in seg.members:
            if member == "host":
                peers = [f"{m}:{i}" for m, i, _ in seg.members if m != "host"]
                rows.append(["host", "root netns", ifname, f"{ip}/{seg.subnet.prefixlen}", "",
                             f"{seg.name} to {', '.join(peers)}"])
    return [head, *_align(rows)]


def enter_commands(topo: Topology) -> list[tuple[str, str]]:
    """How to get a shell in each node, switch and router of `topo`."""
    out = []
    for name, role in topo.roles.items():
        if role == "hidden":
            continue
        node = topo.nodes[name]
        if node.container is not None:
            ctr = node.container
            ident = str(getattr(ctr, "short_id", "") or getattr(ctr, "id", ""))
            out.append((name, f"docker exec -it {ident} sh"))
        else:
            out.append((name, f"nsenter --net={node.netns}"))
    return out


def _probe_line(probe: object) -> str:
    ok = getattr(probe, "ok", None)
    mark = "ok  " if ok else "FAIL" if ok is not None else "    "
    return f"{mark}  {probe}"


def describe_probes(probes: list[object]) -> list[str]:
    if not probes:
        return ["probes: none sent during the test"]
    lines = [f"probes ({len(probes)} sent, {sum(1 for p in probes if not getattr(p, 'ok', True))} "
             "failed)"]
    shown = probes
    if len(probes) > MAX_PROBE_LINES:
        failed = [p for p in probes if not getattr(p, "ok", True)]
        shown = failed[-MAX_PROBE_LINES:]
        lines.append(f"  ({len(probes) - len(shown)} more not shown; every failed one is)")
    lines += ["  " + _probe_line(p) for p in shown]
    return lines


# -- the session's tally, for the terminal summary -------------------------


@dataclass
class SessionLog:
    failed_tests: list[str] = field(default_factory=list)  # artifact directories
    pcaps: int = 0
    frames: int = 0
    drops: int = 0
    capture_seconds: float = 0.0  # spent opening and closing capture sockets
    kept: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)


SESSION = SessionLog()


def mark_kept(session: Session, objects: list[str]) -> None:
    """Tell sweeps and the crash watchdog to leave this session's objects alone."""
    from .reaper import mark_kept as mark

    mark(session, objects)


def summary_lines() -> list[str]:
    """Topologies built, probes sent, build and teardown time, artifacts, kept topologies."""
    topology = sys.modules.get("pytest_netns.topology")
    if topology is None:
        return []
    stats = topology.STATS
    kept = topology.kept_topologies()
    built = int(stats["topologies"]) + len(kept)
    build = float(stats["build_seconds"]) + sum(t.build_seconds for t in kept)
    probes_mod = sys.modules.get("pytest_netns.probes")
    probe_stats = getattr(probes_mod, "PROBE_STATS", None) or {}
    probes = probe_stats.get("probes")
    if not built and not probes:
        return []
    line = (f"{built} topolog{'y' if built == 1 else 'ies'} built in {build:.2f} s, torn down in "
            f"{float(stats['teardown_seconds']):.2f} s")
    if probes is not None:
        line += f"; {probes} probe{'' if probes == 1 else 's'} sent"
    lines = [line]
    if SESSION.pcaps:
        lines.append(
            f"captured {SESSION.frames} frames into {SESSION.pcaps} pcaps "
            f"({SESSION.capture_seconds * 1000:.0f} ms opening/closing taps"
            + (f", {SESSION.drops} frames dropped by the kernel" if SESSION.drops else "") + ")"
        )
    if SESSION.failed_tests:
        n = len(SESSION.failed_tests)
        root = os.path.dirname(SESSION.failed_tests[0])
        lines.append(f"network reports of {n} failed test{'' if n == 1 else 's'} in {_rel(root)}/")
    for nodeid, label, commands in SESSION.kept:
        lines.append(f"kept {label} of {nodeid} for debugging; enter its nodes with:")
        lines += [f"  {name}: {cmd}" for name, cmd in commands]
    if SESSION.kept:
        lines.append("remove kept topologies with: pytest-netns cleanup")
    return lines


# -- one test --------------------------------------------------------------


class TestRecord:
    """The topologies, probes, matrices and captures of one test."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self, nodeid: str, capture: str = "off", artifacts: str = ".netns-artifacts"
    ) -> None:
        if capture not in CAPTURE_MODES:
            from .errors import NetnsError

            raise NetnsError(f"unknown capture mode {capture!r}: expected one of {CAPTURE_MODES}")
        self.nodeid = nodeid
        self.capture = capture
        self.directory = artifact_dir(artifacts, nodeid)
        self.topologies: list[Topology] = []
        self.probes: list[object] = []
        self.matrices: list[object] = []
        self.captures: list[TopologyCapture] = []
        self.links: list[LinkCapture] = []
        self.svg_path: str | None = None
        self.failed = False
        self._building = 0
        self._fresh = False
        self._subscribed: list[Any] | None = None

    def _prepare_directory(self) -> None:
        """Empty this test's folder once, so nothing from an earlier run is mistaken for ours."""
        if not self._fresh:
            shutil.rmtree(self.directory, ignore_errors=True)
            os.makedirs(self.directory, exist_ok=True)
            self._fresh = True

    # -- collecting -------------------------------------------------------

    def add_topology(self, topo: Topology) -> None:
        """A topology of this test; its capture (if on) starts now, before it carries traffic."""
        self.topologies.append(topo)
        if self.capture == "off":
            return
        from .capture import start_capture

        self._prepare_directory()
        labels = [t.label for t in self.topologies]
        prefix = topo.label if labels.count(topo.label) == 1 else f"{topo.label}{len(labels)}"
        started = time.perf_counter()
        self.captures.append(start_capture(topo, self.directory, prefix))
        SESSION.capture_seconds += time.perf_counter() - started

    @contextmanager
    def building(self) -> Iterator[None]:
        """Probes sent while a topology verifies itself are not the test's own."""
        self._building += 1
        try:
            yield
        finally:
            self._building -= 1

    def observe(self, obj: object) -> None:
        """Observer for pytest_netns.probes: every probe result and reachability matrix."""
        if self._building:
            return
        if callable(getattr(obj, "reachable", None)) and hasattr(obj, "nodes"):
            self.matrices.append(obj)
        else:
            self.probes.append(obj)

    def subscribe(self) -> None:
        try:
            from . import probes
        except ImportError:
            return
        observers = getattr(probes, "observers", None)
        if isinstance(observers, list):
            observers.append(self.observe)
            self._subscribed = observers

    def unsubscribe(self) -> None:
        if self._subscribed is not None:
            with suppress(ValueError):
                self._subscribed.remove(self.observe)
            self._subscribed = None

    # -- at failure -------------------------------------------------------

    def failure_section(self, keep: bool = False) -> str:
        """The report section; also writes the diagram next to the captures."""
        self.failed = True
        lines: list[str] = []
        for topo in self.topologies:
            lines += describe_topology(topo)
            lines.append("")
        lines += describe_probes(self.probes)
        for matrix in self.matrices:
            lines += ["", "reachability matrix"]
            lines += ["  " + ln for ln in str(matrix).splitlines()]
        lines.append("")
        lines += self._write_diagram()
        if self.captures:
            names = ", ".join(os.path.basename(c) for cap in self.captures for c in cap.paths)
            lines.append(f"  pcaps (complete once the test is torn down): {names}")
        if keep:
            lines.append("kept for debugging (--netns-keep); enter with:")
            for topo in self.topologies:
                if not topo.closed:
                    lines += [f"  {name}: {cmd}" for name, cmd in enter_commands(topo)]
        if self.directory not in SESSION.failed_tests:
            SESSION.failed_tests.append(self.directory)
        return "\n".join(lines).rstrip() + "\n"

    def _write_diagram(self) -> list[str]:
        from .diagram import reach_edges, render_svg, to_dot

        self._prepare_directory()
        edges, unknown = reach_edges(self.topologies, self.probes, self.matrices)
        dot_path = os.path.join(self.directory, "network.dot")
        with open(dot_path, "w") as f:
            f.write(to_dot(self.topologies, edges, unknown))
        files = [os.path.basename(dot_path)]
        try:
            self.svg_path = render_svg(dot_path, os.path.join(self.directory, "network.svg"))
        except Exception as exc:
            return [f"artifacts in {_rel(self.directory)}/: network.dot (no SVG: {exc})"]
        if self.svg_path:
            files.append(os.path.basename(self.svg_path))
        return [f"artifacts in {_rel(self.directory)}/: {', '.join(files)}"]

    def svg_base64(self) -> str | None:
        """The diagram for pytest-html's report, which takes images base64-encoded."""
        if not self.svg_path:
            return None
        with open(self.svg_path, "rb") as f:
            return base64.b64encode(f.read()).decode()

    # -- at the end of the test --------------------------------------------

    def stop_captures(self) -> None:
        started = time.perf_counter()
        for cap in self.captures:
            self.links += [ln for ln in cap.stop() if ln not in self.links]
        SESSION.capture_seconds += time.perf_counter() - started

    def finish(self, failed: bool) -> None:
        """After teardown: keep the captures of a failed test (or all), drop the rest."""
        self.stop_captures()
        self.failed = self.failed or failed
        if self.capture == "on-failure" and not self.failed:
            for link in self.links:
                with suppress(FileNotFoundError):
                    os.unlink(link.path)
            with suppress(OSError):
                os.rmdir(self.directory)
        elif self.links:
            SESSION.pcaps += len(self.links)
            SESSION.frames += sum(link.frames for link in self.links)
            SESSION.drops += sum(link.drops for link in self.links)
        self.captures = []

    def keep(self, session: Session) -> None:
        """Leave this test's topologies up after the process exits, for debugging."""
        kept = [t for t in self.topologies if not t.closed]
        objects = [f"{t.label}/{name}: {cmd}" for t in kept for name, cmd in enter_commands(t)]
        mark_kept(session, objects)
        for topo in kept:
            topo.kept = True
            SESSION.kept.append((self.nodeid, topo.label, enter_commands(topo)))
        self.finish(True)
