"""Planning: a checked description, its subnets reserved and every address assigned.

`make_plan` takes what the builder collected and returns a `Plan`, a frozen
value the constructor consumes. Everything that can be wrong with a
description is found here, before the first kernel object exists; a plan
that comes back can be built (unless the kernel or the engine refuses).
The only side effect is the subnet reservation, which `Plan.release`
undoes if the build never happens.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import InterfaceNameError, InvalidAddressError, InvalidTopologyError
from ..nodes.host import host
from .addresses import (
    check_clear_of_host,
    check_segment_subnet,
    check_segment_subnet6,
    host_networks,
    parse_subnet,
    parse_subnet6,
    require_ipv6,
    usable_hosts6,
)
from .names import check_names
from .spec import (
    HOST,
    AnyNetwork,
    Expectation,
    ImpairmentSpec,
    Network,
    Network6,
    NodeSpec,
    Role,
    RouteSpec,
    SegmentKind,
    SegmentSpec,
)
from .subnets import prefixlen_for, release, reserve


@dataclass(frozen=True)
class PlannedEnd:
    """One end of a segment, its address decided; `ifname` None means "choose one"."""

    node: str
    ifname: str | None
    ip: str
    ip6: str | None = None


@dataclass(frozen=True)
class PlannedSegment:
    """A switch, link or guest-only NIC with its subnet and every end's address."""

    name: str
    kind: SegmentKind
    subnet: Network
    ends: tuple[PlannedEnd, ...]
    stub_kind: str | None = None
    nat_router: str | None = None
    real_uplink: bool = False
    subnet6: Network6 | None = None


@dataclass(frozen=True)
class Plan:
    """Everything the constructor needs, checked and addressed."""

    label: str
    nodes: tuple[NodeSpec, ...]
    segments: tuple[PlannedSegment, ...]
    routes: tuple[RouteSpec, ...] = ()
    expectations: tuple[Expectation, ...] = ()
    reserved: tuple[AnyNetwork, ...] = ()
    explicit_ifnames: Mapping[str, frozenset[str]] = field(default_factory=dict)
    ipv6: bool = False
    impairments: tuple[ImpairmentSpec, ...] = ()

    def role(self, name: str) -> Role:
        return next(n.role for n in self.nodes if n.name == name)

    def release(self) -> None:
        """Give the reserved subnets back (the plan will not be built)."""
        release(self.reserved)


def make_plan(
    label: str,
    owner: str,
    nodes: Mapping[str, NodeSpec],
    segments: Sequence[SegmentSpec],
    routes: Sequence[RouteSpec] = (),
    expectations: Sequence[Expectation] = (),
    ipv6: bool = False,
    impairments: Sequence[ImpairmentSpec] = (),
) -> Plan:
    """Check everything, reserve subnets, and assign every address.

    With `ipv6`, every segment also gets an IPv6 subnet: the one given, or
    a /64 reserved like the IPv4 subnets (in the same locked transaction).
    """
    explicit_ifnames = check_description(segments, nodes, ipv6)
    taken = host().netlink.existing(set(explicit_ifnames.get(HOST, ())))
    if taken:
        raise InterfaceNameError(
            f"interface {sorted(taken)[0]!r} already exists in the host's namespace: "
            "pick another host-side name, or leave it out and pytest-netns will choose "
            "a free one"
        )
    explicit_host: list[AnyNetwork] = [s.subnet for s in segments
                                       if s.subnet is not None and s.touches_host]
    explicit6 = [s.subnet6 for s in segments if s.subnet6 is not None] if ipv6 else []
    host_nets = host_networks(ipv6)  # read once: checks and allocation both use it
    # every explicit IPv6 subnet, not only those that reach the host: the host
    # routes all of IPv6 somewhere (its default route), and a topology /64 equal
    # to one of its own would be one nobody can tell apart from the host's
    for net in [*explicit_host, *explicit6]:
        check_clear_of_host(net, host_nets)
    auto = [s for s in segments if s.subnet is None]
    auto6 = [s for s in segments if s.subnet6 is None] if ipv6 else []
    explicit_host += [s.subnet6 for s in segments if s.subnet6 is not None and s.touches_host]
    chosen = reserve(
        [prefixlen_for(len(s.endpoints)) for s in auto],
        owner=owner,
        explicit=explicit_host,
        avoid=[n for s in segments if not s.touches_host
               for n in (s.subnet, s.subnet6) if n is not None],
        prefixlens6=[64] * len(auto6),
        host=host_nets,
    )
    reserved = (*chosen, *explicit_host)
    try:
        chosen4 = [n for n in chosen if isinstance(n, ipaddress.IPv4Network)]
        chosen6 = [n for n in chosen if isinstance(n, ipaddress.IPv6Network)]
        planned = assign(segments, nodes,
                         dict(zip((s.name for s in auto), chosen4, strict=True)),
                         dict(zip((s.name for s in auto6), chosen6, strict=True)))
    except BaseException:
        release(reserved)
        raise
    return Plan(label, tuple(nodes.values()), planned, tuple(routes), tuple(expectations),
                reserved, explicit_ifnames, ipv6, tuple(impairments))


def check_description(segments: Sequence[SegmentSpec], nodes: Mapping[str, NodeSpec] | None = None,
                      ipv6: bool = False) -> dict[str, frozenset[str]]:
    """Everything that can be checked without the kernel; return the explicit ifnames."""
    if ipv6:
        require_ipv6()
    else:
        _check_no_ipv6(segments)
    if nodes is not None:
        check_names(nodes)
    explicit_ifnames = _check_ifnames(segments)
    for seg in segments:
        if not seg.endpoints:
            raise InvalidTopologyError(f"switch {seg.name!r} has no members: connect a node")
        if seg.kind != SegmentKind.STUB and seg.subnet is not None:
            check_segment_subnet(seg.subnet, seg.touches_host)
            parse_subnet(seg.subnet, hosts_needed=len(seg.endpoints))
        if seg.subnet6 is not None:
            check_segment_subnet6(seg.subnet6, seg.touches_host)
            parse_subnet6(seg.subnet6, hosts_needed=len(seg.endpoints))
    _check_disjoint(segments)
    return explicit_ifnames


def _check_no_ipv6(segments: Sequence[SegmentSpec]) -> None:
    """IPv6 addresses or subnets on a topology made without ipv6=True: say how to ask."""
    for seg in segments:
        given = [f"subnet6={seg.subnet6}"] if seg.subnet6 is not None else []
        given += [f"ip6={e.ip6} for {e.node!r}" for e in seg.endpoints if e.ip6 is not None]
        if given:
            raise InvalidTopologyError(
                f"{given[0]} (on {seg.name}) is an IPv6 setting, but this topology was made "
                "without IPv6: pass ipv6=True (to make_topology, the factory or the builder)"
            )


def assign(segments: Sequence[SegmentSpec], nodes: Mapping[str, NodeSpec],
           subnets: Mapping[str, Network],
           subnets6: Mapping[str, Network6] | None = None) -> tuple[PlannedSegment, ...]:
    """Every end's address; `subnets` (and `subnets6`, with IPv6) hold those chosen for
    segments that had none."""
    out = []
    for seg in segments:
        planned = _address(seg, seg.subnet if seg.subnet is not None else subnets[seg.name],
                           nodes)
        net6 = seg.subnet6 if seg.subnet6 is not None else (subnets6 or {}).get(seg.name)
        if net6 is not None:
            ips6 = _address6(seg, net6, nodes)
            planned = PlannedSegment(
                planned.name, planned.kind, planned.subnet,
                tuple(PlannedEnd(e.node, e.ifname, e.ip, ip6)
                      for e, ip6 in zip(planned.ends, ips6, strict=True)),
                planned.stub_kind, planned.nat_router, planned.real_uplink, net6)
        out.append(planned)
    return tuple(out)


def _check_ifnames(segments: Sequence[SegmentSpec]) -> dict[str, frozenset[str]]:
    """Explicit interface names: one per node."""
    explicit: dict[str, set[str]] = {}
    for seg in segments:
        for e in seg.endpoints:
            if e.ifname is None:
                continue
            names = explicit.setdefault(e.node, set())
            if e.ifname in names:
                raise InterfaceNameError(
                    f"interface name {e.ifname!r} is given twice for {e.node!r} in this "
                    "topology: give each of its interfaces its own name, or leave iface out"
                )
            names.add(e.ifname)
    return {node: frozenset(names) for node, names in explicit.items()}


def _check_disjoint(segments: Sequence[SegmentSpec]) -> None:
    """Explicit subnets that meet in one node (or the host) must not overlap:
    that node could not tell which interface an address is behind."""
    seen: dict[str, list[tuple[AnyNetwork, str]]] = {}
    for seg in segments:
        for net in (seg.subnet, seg.subnet6):
            if net is None:
                continue
            for member in dict.fromkeys(e.node for e in seg.endpoints):
                for other, other_seg in seen.get(member, []):
                    if net.overlaps(other):
                        raise InvalidAddressError(
                            f"subnets {other} ({other_seg}) and {net} ({seg.name}) "
                            f"overlap, and both reach {member!r}, which could not tell them "
                            "apart: pick disjoint subnets, or leave one out"
                        )
                seen.setdefault(member, []).append((net, seg.name))


def _gateway_first(seg: SegmentSpec, nodes: Mapping[str, NodeSpec]) -> list[int]:
    """End indexes in the order addresses are handed out: routers and the host first,
    so they take the gateway-style first address (.1, ::1)."""
    def rank(i: int) -> int:
        node = seg.endpoints[i].node
        return 0 if node == HOST or nodes[node].role == Role.ROUTER else 1

    return sorted(range(len(seg.endpoints)), key=rank)


def _address6(seg: SegmentSpec, net: Network6,
              nodes: Mapping[str, NodeSpec]) -> list[str]:
    """Every end's IPv6 address in `net`, in end order; explicit ones are checked first."""
    taken: set[ipaddress.IPv6Address] = set()
    for e in seg.endpoints:
        if e.ip6 is None:
            continue
        if e.ip6 not in net or (e.ip6 == net.network_address and usable_hosts6(net)
                                < net.num_addresses):
            first = net.network_address + 1
            raise InvalidAddressError(
                f"IPv6 address {e.ip6} of {e.node!r} is not a host address of {seg.name}'s "
                f"subnet {net}: pick one from {first} on"
            )
        if e.ip6 in taken:
            raise InvalidAddressError(f"IPv6 address {e.ip6} is given twice on {seg.name} "
                                      f"({net})")
        taken.add(e.ip6)
    free = (h for h in net.hosts() if h not in taken)
    ips: dict[int, str] = {}
    for i in _gateway_first(seg, nodes):
        e = seg.endpoints[i]
        if e.ip6 is not None:
            ips[i] = str(e.ip6)
            continue
        chosen = next(free, None)
        if chosen is None:
            raise InvalidAddressError(f"IPv6 subnet {net} of {seg.name} has no free address "
                                      "left")
        ips[i] = str(chosen)
    return [ips[i] for i in range(len(seg.endpoints))]


def _address(seg: SegmentSpec, net: Network, nodes: Mapping[str, NodeSpec]) -> PlannedSegment:
    """Give every end of `seg` an address in `net`; explicit ones are checked first."""
    taken = set()
    for e in seg.endpoints:
        if e.ip is None:
            continue
        if seg.kind != SegmentKind.STUB and (
            e.ip not in net or e.ip in (net.network_address, net.broadcast_address)
        ):
            raise InvalidAddressError(
                f"address {e.ip} of {e.node!r} is not a host address of {seg.name}'s "
                f"subnet {net}: pick one in {net[1]}-{net[-2]}"
            )
        if e.ip in taken:
            raise InvalidAddressError(f"address {e.ip} is given twice on {seg.name} ({net})")
        taken.add(e.ip)

    free = (h for h in net.hosts() if h not in taken)
    ips: dict[int, str] = {}
    for i in _gateway_first(seg, nodes):
        e = seg.endpoints[i]
        if e.ip is not None:
            ips[i] = str(e.ip)
            continue
        chosen = next(free, None)
        if chosen is None:
            raise InvalidAddressError(f"subnet {net} of {seg.name} has no free address left")
        ips[i] = str(chosen)
    ends = tuple(PlannedEnd(e.node, e.ifname, ips[i]) for i, e in enumerate(seg.endpoints))
    return PlannedSegment(seg.name, seg.kind, net, ends, seg.stub_kind, seg.nat_router,
                          seg.real_uplink)
