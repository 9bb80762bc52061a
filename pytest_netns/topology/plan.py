"""Planning: a checked description, its subnets reserved and every address assigned.

`make_plan` takes what the builder collected and returns a `Plan`, a frozen
value the constructor consumes. Everything that can be wrong with a
description is found here, before the first kernel object exists; a plan
that comes back can be built (unless the kernel or the engine refuses).
The only side effect is the subnet reservation, which `Plan.release`
undoes if the build never happens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import InterfaceNameError, InvalidAddressError, InvalidTopologyError
from ..nodes.host import host
from .addresses import check_clear_of_host, check_segment_subnet, host_networks, parse_subnet
from .spec import (
    HOST,
    EndpointSpec,
    Expectation,
    ImpairmentSpec,
    Network,
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


@dataclass(frozen=True)
class Plan:
    """Everything the constructor needs, checked and addressed."""

    label: str
    nodes: tuple[NodeSpec, ...]
    segments: tuple[PlannedSegment, ...]
    routes: tuple[RouteSpec, ...] = ()
    expectations: tuple[Expectation, ...] = ()
    reserved: tuple[Network, ...] = ()
    explicit_ifnames: Mapping[str, frozenset[str]] = field(default_factory=dict)
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
    impairments: Sequence[ImpairmentSpec] = (),
) -> Plan:
    """Check everything, reserve subnets, and assign every address."""
    explicit_ifnames = check_description(segments)
    taken = host().netlink.existing(set(explicit_ifnames.get(HOST, ())))
    if taken:
        raise InterfaceNameError(
            f"interface {sorted(taken)[0]!r} already exists in the host's namespace: "
            "pick another host-side name, or leave it out and pytest-netns will choose "
            "a free one"
        )
    explicit_host = [s.subnet for s in segments if s.subnet is not None and s.touches_host]
    if explicit_host:
        host_nets = host_networks()
        for net in explicit_host:
            check_clear_of_host(net, host_nets)
    auto = [s for s in segments if s.subnet is None]
    chosen = reserve(
        [prefixlen_for(len(s.endpoints)) for s in auto],
        owner=owner,
        explicit=explicit_host,
        avoid=[s.subnet for s in segments if s.subnet is not None and not s.touches_host],
    )
    reserved = (*chosen, *explicit_host)
    try:
        planned = assign(segments, nodes, dict(zip((s.name for s in auto), chosen, strict=True)))
    except BaseException:
        release(reserved)
        raise
    return Plan(label, tuple(nodes.values()), planned, tuple(routes), tuple(expectations),
                reserved, explicit_ifnames, tuple(impairments))


def check_description(segments: Sequence[SegmentSpec]) -> dict[str, frozenset[str]]:
    """Everything that can be checked without the kernel; return the explicit ifnames."""
    explicit_ifnames = _check_ifnames(segments)
    for seg in segments:
        if not seg.endpoints:
            raise InvalidTopologyError(f"switch {seg.name!r} has no members: connect a node")
        if seg.kind != SegmentKind.STUB and seg.subnet is not None:
            check_segment_subnet(seg.subnet, seg.touches_host)
            parse_subnet(seg.subnet, hosts_needed=len(seg.endpoints))
    _check_disjoint(segments)
    return explicit_ifnames


def assign(segments: Sequence[SegmentSpec], nodes: Mapping[str, NodeSpec],
           subnets: Mapping[str, Network]) -> tuple[PlannedSegment, ...]:
    """Every end's address; `subnets` holds those chosen for segments that had none."""
    return tuple(_address(seg, seg.subnet if seg.subnet is not None else subnets[seg.name], nodes)
                 for seg in segments)


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
    seen: dict[str, list[tuple[Network, str]]] = {}
    for seg in segments:
        if seg.subnet is None:
            continue
        for member in dict.fromkeys(e.node for e in seg.endpoints):
            for other, other_seg in seen.get(member, []):
                if seg.subnet.overlaps(other):
                    raise InvalidAddressError(
                        f"subnets {other} ({other_seg}) and {seg.subnet} ({seg.name}) "
                        f"overlap, and both reach {member!r}, which could not tell them "
                        "apart: pick disjoint subnets, or leave one out"
                    )
            seen.setdefault(member, []).append((seg.subnet, seg.name))


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

    def gateway_first(e: EndpointSpec) -> int:
        # routers and the host take the first free addresses (gateway-style .1)
        return 0 if e.node == HOST or nodes[e.node].role == Role.ROUTER else 1

    free = (h for h in net.hosts() if h not in taken)
    ips: dict[int, str] = {}
    for i in sorted(range(len(seg.endpoints)), key=lambda i: gateway_first(seg.endpoints[i])):
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
