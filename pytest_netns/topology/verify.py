"""Proving a topology right after it is built: every segment, and what `expect()` asked for.

What is checked, by default, for every topology:

- a link between two nodes: one echo from one end to the other (the reply
  travels the other way, so one probe proves both directions);
- a link to the host: one echo from the host to the node;
- every check is an echo to each address family the segment has;
- a switch: one echo from its first member to each other member, a star
  rather than every pair. The bridge is a plain learning bridge of ours (no
  VLANs, no port isolation, no firewall in its namespace), so if every
  member reaches the hub, every member reaches every other through the same
  bridge: n-1 probes prove what n(n-1) would, and they cost about one
  round trip in all, because they are sent together;
- a guest-only NIC: nothing (it reaches nothing, by design);

plus every `expect(src, dst, segment)` of the description (routed paths
and NAT included). All probes are sent at once and a silent one is repeated
(the first packet after a link comes up may be lost), so verification costs
about one round trip, not one per check.

No probe waits for address resolution: the builder chose every MAC, so
before probing it tells each source where its destination is and each
destination where the source is (STALE neighbour entries, what an ARP
exchange leaves behind; the kernel confirms them later as it would have),
and tells each switch's bridge which port each checked member is behind
(what learning leaves after a member's first frame; without it every probe
to a silent member is flooded to every port).
The kernel's neighbour table is one table for every namespace of the host,
limited to `net.ipv4.neigh.default.gc_thresh3` entries (1024 by default)
beyond which every namespace on the machine stops resolving addresses. So
the entries are capped: a verification adds at most LEARN_LIMIT of them at a
time; a larger one goes in rounds, each removing its entries before the
next (only a verification that fits in one round leaves its entries, the
same ones its probes would have left). The probes then create no entries
at all, where a star over a thousand members resolved by ARP would create
two thousand and overflow the table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import VerificationError
from ..kernel.netns import Netns, call_each
from ..nodes.host import host
from .spec import HOST, SegmentKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..nodes.base import Node
    from ..probes.result import ProbeResult
    from .plan import Plan
    from .topology import Topology

#: neighbour entries one verification adds at a time (see the module docstring)
LEARN_LIMIT = 256
#: windows a silent check gets (the first packet after a link comes up may be lost)
ATTEMPTS = 3
TIMEOUT = 1.0


@dataclass(frozen=True)
class Check:
    """`src` must reach `dst`'s address on `segment`."""

    src: str
    dst: str
    segment: str
    explicit: bool = False  # asked for with expect(), not a segment's default


def default_checks(topo: Topology) -> list[Check]:
    """What every segment needs proved (see the module docstring)."""
    checks = []
    for seg in topo.segments.values():
        names = seg.names()
        if seg.kind == SegmentKind.STUB or len(names) < 2:
            continue
        if HOST in names:
            other = next(n for n in names if n != HOST)
            checks.append(Check(HOST, other, seg.name))
            continue
        hub, *rest = names
        checks += [Check(hub, member, seg.name) for member in rest]
    return checks


def checks_for(plan: Plan, topo: Topology) -> list[Check]:
    """The plan's expectations, then every segment's default checks that they do not cover."""
    explicit = [Check(e.src, e.dst, e.segment, True) for e in plan.expectations]
    covered = {(c.segment, frozenset((c.src, c.dst))) for c in explicit}
    return explicit + [c for c in default_checks(topo)
                       if (c.segment, frozenset((c.src, c.dst))) not in covered]


def verify(plan: Plan, topo: Topology) -> None:
    """Prove the topology with probes; VerificationError naming every check that failed."""
    checks = checks_for(plan, topo)
    if not checks:
        return
    failed: list[tuple[Check, str, ProbeResult]] = []
    _teach_bridges(topo, checks)
    rounds = _rounds(checks, topo)
    for batch, entries in rounds:
        _learn(topo, entries)
        try:
            failed += _probe(batch, topo)
        finally:
            if len(rounds) > 1:  # a single round leaves what its probes would have left
                _forget(topo, entries)
    if failed:
        shown = "; ".join(f"{c.src} cannot reach {c.dst} ({ip}) over {c.segment} ({r})"
                          for c, ip, r in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        raise VerificationError(
            f"{topo.label}: {shown}{more}, right after building it. Something on this "
            "host blocks the path; run `pytest-netns doctor`, or pass verify=False to skip "
            "this check"
        )


def _node(topo: Topology, name: str) -> Node:
    return host() if name == HOST else topo.nodes[name]


def _probe(checks: Sequence[Check], topo: Topology) -> list[tuple[Check, str, ProbeResult]]:
    from ..probes.engine import Spec, run

    specs, of = [], []
    for check in checks:
        # as a probe to a node does: a container that exited since its start still
        # answers at its address (its namespace is pinned), so ask the node itself
        _node(topo, check.dst).check_open("probe")
        seg = topo.segments[check.segment]
        for dst_ip in (seg.ip_of(check.dst), seg.ip6_of(check.dst)):  # each family it has
            if dst_ip:
                specs.append(Spec(_node(topo, check.src), dst_ip, check.dst, "icmp", None))
                of.append(check)
    results = run(specs, TIMEOUT, attempts=ATTEMPTS)
    return [(c, s.dst, r) for c, s, r in zip(of, specs, results, strict=True) if not r.ok]


# -- telling neighbours in advance ------------------------------------------------

_Entry = tuple[str, str, str, str]  # node, its interface, the neighbour's address and MAC


def _entries(check: Check, topo: Topology, macs: dict[tuple[str, str], str]) -> list[_Entry]:
    """The two entries that let `check` go without address resolution (none for routed
    paths, the host, or an end whose MAC the builder did not choose)."""
    if HOST in (check.src, check.dst):
        return []
    seg = topo.segments[check.segment]
    try:
        src, dst = seg.member(check.src), seg.member(check.dst)
    except KeyError:
        return []
    src_mac, dst_mac = macs.get((src.node, src.ifname)), macs.get((dst.node, dst.ifname))
    if src_mac is None or dst_mac is None:
        return []
    entries = [(src.node, src.ifname, dst.ip, dst_mac), (dst.node, dst.ifname, src.ip, src_mac)]
    src6, dst6 = seg.ip6_of(src.node), seg.ip6_of(dst.node)
    if src6 and dst6:  # and what neighbour discovery would have left
        entries += [(src.node, src.ifname, dst6, dst_mac), (dst.node, dst.ifname, src6, src_mac)]
    return entries


def _rounds(checks: list[Check], topo: Topology) -> list[tuple[list[Check], list[_Entry]]]:
    """The checks in rounds of at most LEARN_LIMIT neighbour entries, with those entries."""
    macs = {(e.node, e.ifname): e.mac for link in topo.links for e in link.ends if e.mac}
    rounds: list[tuple[list[Check], list[_Entry]]] = [([], [])]
    for check in checks:
        mine = _entries(check, topo, macs)
        if len(rounds[-1][1]) + len(mine) > LEARN_LIMIT and rounds[-1][0]:
            rounds.append(([], []))
        rounds[-1][0].append(check)
        rounds[-1][1].extend(mine)
    return rounds


def _teach_bridges(topo: Topology, checks: list[Check]) -> None:
    """Tell each switch's bridge which port the checked members' MACs are behind.

    A member that has sent nothing yet is unknown to the bridge, so a probe to
    it is flooded to every port: a star over n members would deliver n² frames
    (seconds at a thousand members). These are the dynamic entries the
    members' first frames would have left.
    """
    from .links import SwitchPort

    on: dict[tuple[str, str], tuple[str, str, str]] = {}  # member end -> switch, port, MAC
    for link in topo.links:
        if isinstance(link, SwitchPort) and link.ends[0].mac:
            member, port = link.ends
            assert member.mac is not None
            on[(member.node, member.ifname)] = (port.node, port.ifname, member.mac)
    stations: dict[str, dict[str, str]] = {}  # switch -> {port: MAC}
    for check in checks:
        seg = topo.segments[check.segment]
        if seg.kind != SegmentKind.SWITCH:
            continue
        for name in (check.src, check.dst):
            with contextlib.suppress(KeyError):
                found = on.get((name, seg.ifname_of(name)))
                if found is not None:
                    stations.setdefault(found[0], {})[found[1]] = found[2]
    call_each([(topo.nodes[switch].handle,
                topo.nodes[switch].netlink.teaching_bridge(list(ports.items())))
               for switch, ports in stations.items()])


def _grouped(entries: list[_Entry]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    grouped: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for node, ifname, ip, mac in entries:
        grouped.setdefault((node, ifname), []).append((ip, mac))
    return grouped


def _learn(topo: Topology, entries: list[_Entry]) -> None:
    work: list[tuple[Netns, Callable[[], None]]] = []
    for (name, ifname), pairs in _grouped(entries).items():
        node = topo.nodes[name]
        work.append((node.handle, node.netlink.learning(ifname, pairs)))
    call_each(work)


def _forget(topo: Topology, entries: list[_Entry]) -> None:
    work: list[tuple[Netns, Callable[[], None]]] = []
    for (name, ifname), pairs in _grouped(entries).items():
        node = topo.nodes[name]
        work.append((node.handle, node.netlink.forgetting(ifname, [ip for ip, _ in pairs])))
    call_each(work)
