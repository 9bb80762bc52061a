"""Describing a topology and its probes in aligned text, for failure reports.

When a networked test fails the first question is what the network looked
like, so the report shows every node's interfaces, addresses and routes as
the kernel holds them at that moment (or, for a topology already closed,
what was built), the switches and routers, every fault the test injected
(impaired and cut links, partitions), and every probe with its outcome.
"""

from __future__ import annotations

import shlex
import socket
import time
from typing import TYPE_CHECKING

from ..kernel.rtnl import RT_TABLE_MAIN, RTN_UNICAST, RouteInfo
from ..topology.spec import HOST, Role, SegmentKind

if TYPE_CHECKING:
    from ..nodes.base import Node
    from ..probes.result import ProbeResult
    from ..topology.topology import Topology

MAX_PROBE_LINES = 40
MAX_OUTPUT_LINES = 10  # of each spawned process's output


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
    if topo.fault_state is not None:
        direction = topo.fault_state.sinks().get((node, ifname))
        if direction:
            return f"sink of impaired {direction} (to its forwarder)"
    for seg in topo.segments.values():
        mine = [m for m in seg.members if m.node == node and m.ifname == ifname]
        if not mine:
            continue
        if seg.kind == SegmentKind.SWITCH:
            return f"{seg.name} (switch)"
        if seg.kind == SegmentKind.STUB:
            return f"{seg.name} (guest-only {seg.detail})"
        others = [f"{m.node}:{m.ifname}" for m in seg.members if m.node != node]
        return f"{seg.name} to {', '.join(others)}"
    return "-"


def node_kind(topo: Topology, name: str, node: Node) -> str:
    """How a report names what a node is: its role, or the backend that made it."""
    role = topo.roles.get(name, Role.NODE)
    if role != Role.NODE:
        return str(role)
    if node.container is not None:
        return f"container {str(getattr(node.container, 'short_id', ''))[:12]}".strip()
    return "netns"


def _format_route(route: RouteInfo, names: dict[int, str]) -> str:
    dst = "default" if route.is_default else route.dst
    via = f" via {route.gateway}" if route.gateway else ""
    dev = f" dev {names.get(route.oif, route.oif)}" if route.oif else ""
    return f"{dst}{via}{dev}"


def _live_rows(topo: Topology, name: str, node: Node) -> list[list[str]]:
    """The node as the kernel sees it now: interfaces, addresses, state, routes."""
    kind = node_kind(topo, name, node)
    try:
        links = node.netlink.links()
        addrs = node.netlink.addresses()
        routes = node.netlink.routes()
        if any(i.ip6 for i in node.interfaces):
            routes += node.netlink.routes(socket.AF_INET6)
    except Exception as exc:  # the namespace may be gone (closed early, or broken)
        return [[name, kind, "-", f"(cannot read: {type(exc).__name__}: {exc})"]]
    names = {ln.index: ln.ifname for ln in links}
    by_index: dict[int, list[str]] = {}
    for a in addrs:
        if not a.address.startswith("fe80:"):  # link-local: every interface has one
            by_index.setdefault(a.index, []).append(f"{a.address}/{a.prefixlen}")
    rows: list[list[str]] = []
    for ln in links:
        if ln.ifname == "lo":
            continue
        ifname = ln.ifname
        address = ",".join(by_index.get(ln.index, [])) or "-"
        state = "up" if ln.up else "DOWN"
        first = not rows
        rows.append([name if first else "", kind if first else "", ifname, address, state,
                     _segment_note(topo, name, ifname)])
    if not rows:
        rows.append([name, kind, "-", "(no interface besides lo)", "", ""])
    table = [r for r in routes if r.table == RT_TABLE_MAIN and r.type == RTN_UNICAST
             and not r.dst.startswith("fe80:")]
    if table:
        text = "; ".join(_format_route(r, names) for r in table)
        rows.append(["", "", "routes", text])
    else:
        rows.append(["", "", "routes", "(none)"])
    return rows


def _static_rows(topo: Topology, name: str, node: Node) -> list[list[str]]:
    """What the topology built, for a topology that is no longer up."""
    kind = node_kind(topo, name, node)
    rows = []
    for i, iface in enumerate(node.interfaces):
        addresses = [f"{iface.ip}/{iface.prefixlen}"] if iface.ip else []
        if iface.ip6:
            addresses.append(f"{iface.ip6}/{iface.prefixlen6}")
        rows.append([name if i == 0 else "", kind if i == 0 else "", iface.ifname,
                     ",".join(addresses) or "-", "closed",
                     _segment_note(topo, name, iface.ifname)])
    return rows or [[name, kind, "-", "-", "closed", ""]]


def describe_topology(topo: Topology) -> list[str]:
    """An aligned table of the topology's nodes, routers, switches and host links."""
    state = "closed before the failure" if topo.closed else "up"
    if topo.kept:
        state = "kept"
    if topo.scoped:
        state = f"shared with other tests (netns_factory), {state}"
    head = f"topology {topo.label} ({state}; {len(topo.members())} nodes, built in "
    head += f"{topo.build_seconds * 1000:.0f} ms)"
    rows: list[list[str]] = [["NODE", "KIND", "IFACE", "ADDRESS", "STATE", "LINK"]]
    order = sorted(topo.members(),
                   key=lambda n: (topo.roles[n] != Role.NODE, list(topo.nodes).index(n)))
    for name in order:
        node = topo.nodes[name]
        rows += _static_rows(topo, name, node) if topo.closed else _live_rows(topo, name, node)
        if topo.roles[name] == Role.ROUTER and topo.nat_tool:
            rows.append(["", "", "nat", f"masquerades its upstream link ({topo.nat_tool})"])
    for seg in topo.segments.values():
        if seg.kind == SegmentKind.SWITCH:
            ports = " ".join(f"{m.node}:{m.ifname}={m.ip}" for m in seg.members)
            subnets = ",".join(str(n) for n in (seg.subnet, seg.subnet6) if n is not None)
            rows.append([seg.name, "switch", seg.detail or "br0", subnets, "",
                         f"ports {ports}"])
    for seg in topo.segments.values():
        for member in seg.members:
            if member.node == HOST:
                peers = [f"{m.node}:{m.ifname}" for m in seg.members if m.node != HOST]
                address = f"{member.ip}/{seg.subnet.prefixlen}"
                ip6 = seg.ip6_of(member.node)
                if ip6 and seg.subnet6 is not None:
                    address += f",{ip6}/{seg.subnet6.prefixlen}"
                rows.append(["host", "root netns", member.ifname, address, "",
                             f"{seg.name} to {', '.join(peers)}"])
    return [head, *_align(rows)]


def enter_commands(topo: Topology) -> list[tuple[str, str]]:
    """How to get a shell in each node, switch and router of `topo`."""
    out = []
    for name, role in topo.roles.items():
        if role == Role.HIDDEN:
            continue
        node = topo.nodes[name]
        if node.container is not None:
            ctr = node.container
            ident = str(getattr(ctr, "short_id", "") or getattr(ctr, "id", ""))
            out.append((name, f"docker exec -it {ident} sh"))
        else:
            out.append((name, f"nsenter --net={node.netns}"))
    return out


def describe_processes(topo: Topology) -> list[str]:
    """The processes the test spawned in the topology's nodes: state and last output lines.

    A server that died, or never listened, usually says why in its output.
    """
    lines: list[str] = []
    for name in topo.members():
        for process in topo.nodes[name].processes:
            code = process.returncode
            state = "running" if code is None else f"exited with status {code}"
            lines.append(f"  {name}: `{shlex.join(process.argv)}` (pid {process.pid}) {state}")
            output = process.output().rstrip("\n").splitlines()
            if not output:
                lines.append("      (no output)")
                continue
            if len(output) > MAX_OUTPUT_LINES or process.output_buffer.dropped:
                lines.append(f"      ... (last {min(len(output), MAX_OUTPUT_LINES)} lines)")
            lines += ["      " + line for line in output[-MAX_OUTPUT_LINES:]]
    return [f"processes started in {topo.label}", *lines] if lines else []


def _probe_line(probe: ProbeResult) -> str:
    return f"{'ok  ' if probe.ok else 'FAIL'}  {probe}"


def describe_probes(probes: list[ProbeResult]) -> list[str]:
    if not probes:
        return ["probes: none sent during the test"]
    lines = [f"probes ({len(probes)} sent, {sum(1 for p in probes if not p.ok)} failed)"]
    shown = probes
    if len(probes) > MAX_PROBE_LINES:
        failed = [p for p in probes if not p.ok]
        shown = failed[-MAX_PROBE_LINES:]
        lines.append(f"  ({len(probes) - len(shown)} more not shown; every failed one is)")
    lines += ["  " + _probe_line(p) for p in shown]
    return lines




def describe_faults(topo: Topology) -> list[str]:
    """What the test did to the network's behaviour: what is in effect now, and when.

    Nothing when the topology never had a fault. Each impaired or cut link
    gets a line per direction, each partition one line; then the changes in
    the order they happened, timed from the topology's first fault.
    """
    state = topo.fault_state
    if state is None:
        return []
    rows: list[list[str]] = [["LINK", "ENDS", "NOW"]]
    for link in topo.links:
        faults = state.existing(link)
        if faults is None:
            continue
        ends = f"{link.ends[0].node}<->{link.ends[1].node}"
        for i, line in enumerate(faults.describe()):
            rows.append([link.segment if i == 0 else "", ends if i == 0 else "", line])
    for part in state.active_partitions():
        rows.append(["partition", part.describe(),
                     f"active for {time.monotonic() - part.since:.2f} s"])
    lines = [f"faults of {topo.label}"]
    if len(rows) > 1:
        lines += _align(rows)
    else:
        lines.append("  none in effect now")
    forwarder = state.forwarder_state()
    if forwarder:
        lines.append(f"  {forwarder}")
    if state.log:
        lines.append("  changes (seconds after the first):")
        first = state.log[0].at
        lines += [f"    +{event.at - first:7.3f}  {event.text}" for event in state.log]
    return lines
