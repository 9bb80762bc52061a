"""A picture of a test's network: Graphviz DOT, Mermaid, and SVG where `dot` exists.

The diagram answers "what did the network look like, and what could reach
what" at a glance: nodes with their addresses, routers, switches and links
with their subnets, impaired links labelled with what they do ("40 ms, 1 %
loss", orange) and cut links in red, partitions as red crossed lines between
their groups, and, drawn over them, the pairs the test probed (green:
reachable, red: not). The picture is computed once (`Diagram`) and written
in two languages: DOT (always written: it needs nothing installed and diffs
well; rendered to SVG where Graphviz is) and Mermaid (which GitHub and most
Markdown viewers draw as they are).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..topology.spec import HOST, Role, SegmentKind

if TYPE_CHECKING:
    from ..labs.labfile import LabSpec
    from ..probes.matrix import ReachabilityMatrix
    from ..probes.result import ProbeResult
    from ..topology.segments import Member, Segment
    from ..topology.topology import Topology

HOST_ID = "host"


@dataclass(frozen=True)
class Reach:
    """One observed pair: `src` could (or could not) reach `dst` with `what`."""

    src: str  # diagram node ids
    dst: str
    ok: bool
    what: str


@dataclass(frozen=True)
class Box:
    """One thing drawn: a node, switch, guest-only NIC, the host, or an outside address."""

    id: str
    lines: tuple[str, ...]
    shape: str  # "node", "router", "switch", "stub", "host", "other"
    cluster: int | None = None


@dataclass(frozen=True)
class Edge:
    """A link (`style` "link", "impaired", "down" or "stub"), a partition between two groups
    ("cut", or "cut1" for one way, from `src`'s group), or an observed pair ("ok", "fail")."""

    src: str
    dst: str
    label: str
    style: str


@dataclass
class Diagram:
    """What to draw, in no particular drawing language."""

    clusters: list[str] = field(default_factory=list)  # one label per topology
    boxes: list[Box] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)


def node_id(index: int, name: str) -> str:
    return HOST_ID if name == HOST else f"t{index}:{name}"


class _Resolver:
    """Maps what probes name (a Node, "host", a node name, an address) to diagram ids."""

    def __init__(self, topologies: list[Topology]) -> None:
        self.by_name: dict[str, str] = {}
        self.by_address: dict[str, str] = {}
        for i, topo in enumerate(topologies):
            for name in topo.nodes:
                self.by_name.setdefault(name, node_id(i, name))
            for seg in topo.segments.values():
                for member in seg.members:
                    self.by_address.setdefault(member.ip, node_id(i, member.node))
                for node, ip6 in seg.ip6s.items():
                    self.by_address.setdefault(ip6, node_id(i, node))
        self.unknown: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        if value == HOST:
            return HOST_ID
        if value in self.by_address:
            return self.by_address[value]
        if value in self.by_name:
            return self.by_name[value]
        # an address no topology of the test owns: drawn on its own
        return self.unknown.setdefault(value, f"other:{value}")


def reach_edges(
    topologies: list[Topology], probes: Iterable[ProbeResult],
    matrices: Iterable[ReachabilityMatrix],
) -> tuple[list[Reach], dict[str, str]]:
    """The pairs the test observed (latest result per pair and protocol).

    Returns the edges, and the ids of endpoints that belong to no topology.
    """
    resolve = _Resolver(topologies)
    edges: dict[tuple[str, str, str], Reach] = {}
    for probe in probes:
        src, dst = resolve(probe.src), resolve(probe.dst)
        edges[(src, dst, probe.service)] = Reach(src, dst, probe.ok,
                                                 f"{probe.service} {probe.state}")
    for matrix in matrices:
        for (a, b), result in matrix.results.items():
            src, dst = resolve(a), resolve(b)
            if not any(k[0] == src and k[1] == dst for k in edges):
                edges[(src, dst, "matrix")] = Reach(src, dst, result.ok, "matrix")
    return list(edges.values()), {v: k for k, v in resolve.unknown.items()}


def build(topologies: list[Topology], reach: list[Reach], unknown: dict[str, str]) -> Diagram:
    """One cluster per topology, the host shared, probed pairs on top."""
    out = Diagram()
    host_lines: list[str] = []
    for i, topo in enumerate(topologies):
        out.clusters.append(f"{topo.label} ({'closed' if topo.closed else 'up'})")
        for name, role in topo.roles.items():
            if role == Role.HIDDEN:
                continue
            if role == Role.SWITCH:
                seg = topo.segments.get(name)
                lines: tuple[str, ...] = (name, "switch", *(_subnets(seg) if seg else ()))
            else:
                node = topo.nodes[name]
                kind = "container" if node.kind == "container" else "netns"
                lines = (f"{name} ({role}, {kind})", *_addresses(topo, name))
            out.boxes.append(Box(node_id(i, name), lines, str(role), i))
        for seg in topo.segments.values():
            members = [m for m in seg.members
                       if m.node == HOST or topo.roles.get(m.node) != Role.HIDDEN]
            if seg.kind == SegmentKind.SWITCH:
                out.edges += [_link_edge(topo, i, m.node, seg.name, m.ifname) for m in members]
            elif seg.kind == SegmentKind.STUB:
                for m in members:
                    stub = f"t{i}:{seg.name}"
                    out.boxes.append(Box(stub, (f"{seg.name}: guest-only {seg.detail}",
                                                *_member_lines(seg, m)), "stub"))
                    out.edges.append(Edge(node_id(i, m.node), stub, "", "stub"))
            elif len(members) == 2:
                out.edges.append(_link_edge(topo, i, members[0].node, members[1].node,
                                            "\n".join((seg.name, *_subnets(seg)))))
            host_lines += [line for m in members if m.node == HOST
                           for line in _member_lines(seg, m)]
        out.edges += _partition_edges(topo, i)
    if host_lines:
        out.boxes.append(Box(HOST_ID, ("host (root netns)", *host_lines), "host"))
    out.boxes += [Box(ident, (f"{text} (not in a topology)",), "other")
                  for ident, text in unknown.items()]
    out.edges += [Edge(r.src, r.dst, f"{r.what} {'ok' if r.ok else 'FAIL'}",
                       "ok" if r.ok else "fail") for r in reach]
    return out


def from_lab(spec: LabSpec) -> Diagram:
    """A lab file as declared, before it is built: what `pytest-netns graph` draws for a
    lab that is not up. Addresses and subnets chosen at build time say "auto"."""
    out = Diagram(clusters=[f"{spec.name} (not up)"])
    pinned: dict[str, list[str]] = {name: [] for name in spec.nodes}
    for link in spec.links:
        for name, address in link.ip.items():
            if name in pinned:
                pinned[name].append(f"{link.iface.get(name, '')} {address}".strip())
    for node in spec.nodes.values():
        what = ("attached container" if node.attach else node.kind if node.kind == "router"
                else node.backend or (spec.backend if spec.backend != "auto" else None)
                or "node")
        out.boxes.append(Box(node_id(0, node.name), (f"{node.name} ({what})",
                                                     *pinned[node.name]),
                             "router" if node.kind == "router" else "node", 0))
    for switch in spec.switches.values():
        out.boxes.append(Box(node_id(0, switch.name),
                             (switch.name, "switch", switch.subnet or "subnet auto"), "switch", 0))
    for link in spec.links:
        impair = "; ".join(", ".join(f"{k} {v}" for k, v in i.items()) for i in link.impair)
        if len(link.endpoints) == 1:
            (name,) = link.endpoints
            stub = f"t0:stub{link.entry}"
            out.boxes.append(Box(stub, (f"guest-only {link.kind or 'NIC'}",
                                        link.ip.get(name, "172.16.0.10/24")), "stub"))
            out.edges.append(Edge(node_id(0, name), stub, "", "stub"))
            continue
        a, b = link.endpoints
        label = "" if a in spec.switches or b in spec.switches else link.subnet or "subnet auto"
        label = "\n".join(t for t in (label, impair) if t)
        out.edges.append(Edge(node_id(0, a), node_id(0, b), label, "link"))
    for node in spec.nodes.values():
        if node.nat is not None:
            out.edges.append(Edge(node_id(0, node.name), HOST_ID,
                                  f"NAT upstream\n{node.nat.subnet or 'subnet auto'}", "link"))
    if spec.host_links() or any(n.nat for n in spec.nodes.values()):
        out.boxes.append(Box(HOST_ID, ("host (root netns)",), "host"))
    return out


def _link_edge(topo: Topology, index: int, a: str, b: str, label: str) -> Edge:
    """A link, labelled with what its faults do now, and styled by them."""
    style, src, dst = "link", node_id(index, a), node_id(index, b)
    state = topo.fault_state
    link = next((ln for ln in topo.links if ln.connects(a, b)), None)
    faults = state.existing(link) if state is not None and link is not None else None
    if faults is not None:
        summary = faults.summary()
        if summary:
            label = f"{label}\n{summary}" if label else summary
            style = "impaired" if faults.is_up else "down"
    return Edge(src, dst, label, style)


def _partition_edges(topo: Topology, index: int) -> list[Edge]:
    """One crossed line per pair of groups of each active partition, between their first
    members (from the first group only, for a one-way partition)."""
    state = topo.fault_state
    if state is None:
        return []
    edges = []
    for part in state.active_partitions():
        firsts = [node_id(index, group[0]) for group in part.groups]
        pairs = ([(firsts[0], f) for f in firsts[1:]] if part.oneway
                 else [(a, b) for n, a in enumerate(firsts) for b in firsts[n + 1:]])
        label = f"partition {part.describe()}"
        edges += [Edge(a, b, label, "cut1" if part.oneway else "cut") for a, b in pairs]
    return edges


def _addresses(topo: Topology, name: str) -> list[str]:
    return [line for seg in topo.segments.values() for m in seg.members if m.node == name
            for line in _member_lines(seg, m)]


def _subnets(seg: Segment) -> tuple[str, ...]:
    return tuple(str(n) for n in (seg.subnet, seg.subnet6) if n is not None)


def _member_lines(seg: Segment, m: Member) -> list[str]:
    """`eth1 10.64.0.2/24`, and on an IPv6 segment `eth1 fd6e:...::2/64` below it."""
    lines = [f"{m.ifname} {m.ip}/{seg.subnet.prefixlen}"]
    ip6 = seg.ip6s.get(m.node)
    if ip6 and seg.subnet6 is not None:
        lines.append(f"{m.ifname} {ip6}/{seg.subnet6.prefixlen}")
    return lines


# -- DOT ---------------------------------------------------------------------------

_DOT_SHAPES = {"node": "box", "router": "octagon", "switch": "ellipse", "stub": "note",
               "host": "box", "other": "plaintext"}
_DOT_EXTRA = {"stub": ", fontsize=9", "host": ", style=filled, fillcolor=grey92"}
_DOT_EDGES = {
    "link": "",
    "impaired": "color=darkorange, fontcolor=darkorange3, penwidth=2",
    "down": "color=red3, fontcolor=red3, style=dashed, penwidth=2",
    "cut": "color=red3, fontcolor=red3, style=bold, dir=both, arrowhead=tee, arrowtail=tee, "
           "constraint=false",
    "cut1": "color=red3, fontcolor=red3, style=bold, dir=forward, arrowhead=tee, "
            "constraint=false",
    "stub": "style=dotted",
    "ok": "color=darkgreen, fontcolor=darkgreen, style=dashed, dir=forward, constraint=false",
    "fail": "color=red3, fontcolor=red3, style=dashed, dir=forward, constraint=false",
}


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_dot(d: Diagram) -> str:
    out = [
        "digraph network {",
        '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, compound=true];',
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9, dir=none];',
    ]
    for i, label in enumerate(d.clusters):
        out.append(f"  subgraph cluster_{i} {{")
        out.append(f"    label={_q(label)}; style=rounded; color=grey50;")
        out += [f"    {_box_dot(b)}" for b in d.boxes if b.cluster == i]
        out.append("  }")
    out += [f"  {_box_dot(b)}" for b in d.boxes if b.cluster is None]
    for e in d.edges:
        attrs = ", ".join(a for a in (f"label={_q(e.label)}" if e.label else "",
                                      _DOT_EDGES[e.style]) if a)
        out.append(f"  {_q(e.src)} -> {_q(e.dst)}{f' [{attrs}]' if attrs else ''};")
    out.append("}")
    return "\n".join(out) + "\n"


def _box_dot(b: Box) -> str:
    return (f"{_q(b.id)} [label={_q(chr(10).join(b.lines))}, shape={_DOT_SHAPES[b.shape]}"
            f"{_DOT_EXTRA.get(b.shape, '')}];")


def to_dot(topologies: list[Topology], reach: list[Reach], unknown: dict[str, str]) -> str:
    """DOT source: one cluster per topology, the host shared, probed pairs on top."""
    return render_dot(build(topologies, reach, unknown))


# -- Mermaid -----------------------------------------------------------------------

_MERMAID_SHAPES = {"node": ("[", "]"), "router": ("{{", "}}"), "switch": ("([", "])"),
                   "stub": ("[/", "/]"), "host": ("[[", "]]"), "other": (">", "]")}
_MERMAID_EDGES = {"link": "---", "impaired": "===", "down": "-.-", "cut": "x--x", "cut1": "--x",
                  "stub": "-.-", "ok": "-.->", "fail": "-.-x"}
_RED = "stroke:#cf222e,color:#cf222e"
_MERMAID_COLORS = {"ok": "stroke:#1a7f37,color:#1a7f37", "fail": _RED, "down": _RED,
                   "cut": _RED, "cut1": _RED, "impaired": "stroke:#bc4c00,color:#bc4c00"}


def _mid(ident: str) -> str:
    """A Mermaid node id: letters, digits and underscores only."""
    return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", ident)


def _mtext(text: str) -> str:
    return ('"' + text.replace('"', "#quot;").replace("|", "#124;").replace("\n", "<br/>")
            + '"')


def render_mermaid(d: Diagram) -> str:
    out = ["flowchart LR"]
    for i, label in enumerate(d.clusters):
        out.append(f"  subgraph c{i}[{_mtext(label)}]")
        out += [f"    {_box_mermaid(b)}" for b in d.boxes if b.cluster == i]
        out.append("  end")
    out += [f"  {_box_mermaid(b)}" for b in d.boxes if b.cluster is None]
    colored = []
    for n, e in enumerate(d.edges):
        arrow = _MERMAID_EDGES[e.style]
        label = f"|{_mtext(e.label)}|" if e.label else ""
        out.append(f"  {_mid(e.src)} {arrow}{label} {_mid(e.dst)}")
        if e.style in _MERMAID_COLORS:
            colored.append(f"  linkStyle {n} {_MERMAID_COLORS[e.style]}")
    out += colored
    return "\n".join(out) + "\n"


def _box_mermaid(b: Box) -> str:
    left, right = _MERMAID_SHAPES[b.shape]
    return f"{_mid(b.id)}{left}{_mtext(chr(10).join(b.lines))}{right}"


def to_mermaid(topologies: list[Topology], reach: list[Reach], unknown: dict[str, str]) -> str:
    """Mermaid flowchart source of the same picture as `to_dot`."""
    return render_mermaid(build(topologies, reach, unknown))


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
