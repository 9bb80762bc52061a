"""A picture of a test's network: Graphviz DOT source, and SVG when `dot` exists.

The diagram answers "what did the network look like, and what could reach
what" at a glance: nodes with their addresses, routers, switches and links
with their subnets, and, drawn over them, the pairs the test probed (green:
reachable, red: not). The DOT source is always written because it needs
nothing installed and diffs well; the SVG is rendered only where Graphviz is.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .topology import Topology

HOST_ID = "host"
_SHAPES = {"node": "box", "router": "octagon", "switch": "ellipse"}


@dataclass(frozen=True)
class Reach:
    """One observed pair: `src` could (or could not) reach `dst` with `what`."""

    src: str  # DOT node ids
    dst: str
    ok: bool
    what: str


def node_id(index: int, name: str) -> str:
    return HOST_ID if name == "host" else f"t{index}:{name}"


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class _Resolver:
    """Maps what probes name (a Node, "host", a node name, an address) to DOT ids."""

    def __init__(self, topologies: list[Topology]) -> None:
        self.by_object: dict[int, str] = {}
        self.by_name: dict[str, str] = {}
        self.by_address: dict[str, str] = {}
        for i, topo in enumerate(topologies):
            for name, node in topo.nodes.items():
                self.by_object[id(node)] = node_id(i, name)
                self.by_name.setdefault(name, node_id(i, name))
            for seg in topo.segments.values():
                for member, _, ip in seg.members:
                    self.by_address.setdefault(ip, node_id(i, member))
        self.unknown: dict[str, str] = {}

    def __call__(self, value: object) -> str:
        if id(value) in self.by_object:
            return self.by_object[id(value)]
        text = str(getattr(value, "name", value))
        if text == "host":
            return HOST_ID
        if text in self.by_address:
            return self.by_address[text]
        if text in self.by_name:
            return self.by_name[text]
        # an address no topology of the test owns: drawn on its own
        return self.unknown.setdefault(text, f"other:{text}")


def reach_edges(
    topologies: list[Topology], probes: Iterable[object], matrices: Iterable[object]
) -> tuple[list[Reach], dict[str, str]]:
    """The pairs the test observed (latest result per pair and protocol).

    Returns the edges, and the ids of endpoints that belong to no topology.
    """
    resolve = _Resolver(topologies)
    edges: dict[tuple[str, str, str], Reach] = {}
    for probe in probes:
        src, dst = resolve(getattr(probe, "src", "?")), resolve(getattr(probe, "dst", "?"))
        proto = str(getattr(probe, "proto", "probe"))
        port = getattr(probe, "port", None)
        what = f"{proto}/{port}" if port else proto
        state = getattr(probe, "state", None)
        label = f"{what} {state}" if state else what
        edges[(src, dst, what)] = Reach(src, dst, bool(getattr(probe, "ok", False)), label)
    for matrix in matrices:
        nodes = list(getattr(matrix, "nodes", []))
        for a in nodes:
            for b in nodes:
                if a is b or a == b:
                    continue
                src, dst = resolve(a), resolve(b)
                if any(k[0] == src and k[1] == dst for k in edges):
                    continue
                try:
                    ok = bool(matrix.reachable(a, b))  # type: ignore[attr-defined]
                except Exception:
                    continue
                edges[(src, dst, "matrix")] = Reach(src, dst, ok, "matrix")
    return list(edges.values()), {v: k for k, v in resolve.unknown.items()}


def _addresses(topo: Topology, name: str) -> list[str]:
    lines = []
    for seg in topo.segments.values():
        for member, ifname, ip in seg.members:
            if member == name:
                lines.append(f"{ifname} {ip}/{seg.subnet.prefixlen}")
    return lines


def to_dot(topologies: list[Topology], reach: list[Reach], unknown: dict[str, str]) -> str:
    """DOT source: one cluster per topology, the host shared, probed pairs on top."""
    out = [
        "digraph network {",
        '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, compound=true];',
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9, dir=none];',
    ]
    host_lines: list[str] = []
    for i, topo in enumerate(topologies):
        state = "closed" if topo.closed else "up"
        out.append(f"  subgraph cluster_{i} {{")
        out.append(f"    label={_q(f'{topo.label} ({state})')}; style=rounded; color=grey50;")
        for name, role in topo.roles.items():
            if role == "hidden":
                continue
            if role == "switch":
                seg = topo.segments.get(name)
                subnet = f"\n{seg.subnet}" if seg else ""
                label = f"{name}\nswitch{subnet}"
            else:
                node = topo.nodes[name]
                kind = "container" if node.container is not None else "netns"
                label = "\n".join([f"{name} ({role}, {kind})", *_addresses(topo, name)])
            out.append(f"    {_q(node_id(i, name))} [label={_q(label)}, shape={_SHAPES[role]}];")
        out.append("  }")
        for seg in topo.segments.values():
            members = [m for m in seg.members if m[0] == "host" or topo.roles.get(m[0]) != "hidden"]
            if seg.kind == "switch":
                for member, ifname, _ in members:
                    out.append(
                        f"  {_q(node_id(i, member))} -> {_q(node_id(i, seg.name))} "
                        f"[label={_q(ifname)}];"
                    )
            elif seg.kind == "stub":
                for member, ifname, ip in members:
                    stub = f"t{i}:{seg.name}"
                    text = (f"{seg.name}: guest-only {seg.detail}\n"
                            f"{ifname} {ip}/{seg.subnet.prefixlen}")
                    out.append(f"  {_q(stub)} [label={_q(text)}, shape=note, fontsize=9];")
                    out.append(f"  {_q(node_id(i, member))} -> {_q(stub)} [style=dotted];")
            elif len(members) == 2:
                (a, _, _), (b, _, _) = members
                label = f"{seg.name}\n{seg.subnet}"
                out.append(f"  {_q(node_id(i, a))} -> {_q(node_id(i, b))} [label={_q(label)}];")
            for member, ifname, ip in members:
                if member == "host":
                    host_lines.append(f"{ifname} {ip}/{seg.subnet.prefixlen}")
    if host_lines:
        label = "\n".join(["host (root netns)", *host_lines])
        out.append(
            f"  {_q(HOST_ID)} [label={_q(label)}, shape=box, style=filled, fillcolor=grey92];"
        )
    for ident, text in unknown.items():
        out.append(f"  {_q(ident)} [label={_q(text + ' (not in a topology)')}, shape=plaintext];")
    for r in reach:
        color = "darkgreen" if r.ok else "red3"
        mark = "ok" if r.ok else "FAIL"
        out.append(
            f"  {_q(r.src)} -> {_q(r.dst)} [label={_q(f'{r.what} {mark}')}, color={color}, "
            f"fontcolor={color}, style=dashed, dir=forward, constraint=false];"
        )
    out.append("}")
    return "\n".join(out) + "\n"


def render_svg(dot_path: str, svg_path: str) -> str | None:
    """Render with Graphviz `dot`; None when it is not installed. Errors name `dot`'s output."""
    exe = shutil.which("dot")
    if exe is None:
        return None
    done = subprocess.run(
        [exe, "-Tsvg", dot_path, "-o", svg_path],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dot -Tsvg {dot_path} failed: {done.stdout.decode(errors='replace')}")
    return svg_path
