"""The description of a topology: what to create, before anything exists.

The builder turns user calls into these specs; the planner checks them,
reserves subnets and assigns every address (`plan.Plan`); the constructor
creates what the plan says.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

Network = ipaddress.IPv4Network
Network6 = ipaddress.IPv6Network
AnyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: the root namespace, as an end of a link ("host" in the API)
HOST = "host"


class Role(str, Enum):
    """What a node is for; the string is what reports show."""

    NODE = "node"  # a container or namespace the test uses
    ROUTER = "router"  # a namespace that forwards between its segments
    SWITCH = "switch"  # a namespace holding one bridge
    HIDDEN = "hidden"  # a namespace that parks the far end of a guest-only veth

    def __str__(self) -> str:
        return self.value

    @property
    def visible(self) -> bool:
        """Nodes a user addresses by name (not switches or parking namespaces)."""
        return self in (Role.NODE, Role.ROUTER)


class SegmentKind(str, Enum):
    """A broadcast domain: a switch, a point-to-point link, or a guest-only NIC."""

    SWITCH = "switch"
    LINK = "link"
    STUB = "stub"

    def __str__(self) -> str:
        return self.value


@dataclass
class NodeSpec:
    """A node to create or attach: a container, a namespace, a router or a switch."""

    name: str
    role: Role
    backend: str
    image: str | None = None
    command: list[str] | str | None = None
    attach: Any = None  # a docker SDK Container to attach instead of starting one
    run_kwargs: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # more names the other nodes resolve to it


@dataclass
class EndpointSpec:
    """One end of a segment: a node, and optionally its interface name and address."""

    node: str
    ifname: str | None
    ip: ipaddress.IPv4Address | None
    ip6: ipaddress.IPv6Address | None = None


@dataclass
class SegmentSpec:
    """A switch, link or guest-only NIC to create, before addresses are assigned."""

    name: str
    kind: SegmentKind
    subnet: Network | None
    endpoints: list[EndpointSpec] = field(default_factory=list)
    stub_kind: str | None = None
    nat_router: str | None = None
    real_uplink: bool = False
    subnet6: Network6 | None = None

    @property
    def touches_host(self) -> bool:
        return any(e.node == HOST for e in self.endpoints)


@dataclass(frozen=True)
class RouteSpec:
    """An extra static route in a node: `dst` (a CIDR, IPv4 or IPv6) via `via`."""

    node: str
    dst: str
    via: str


@dataclass(frozen=True)
class ImpairmentSpec:
    """Once built (and verified), impair the link between `a` and `b` with `values`
    (`Link.impair`'s keyword arguments, already checked)."""

    a: str
    b: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Expectation:
    """After building, `src` must reach `dst`'s address on `segment`."""

    src: str
    dst: str
    segment: str
