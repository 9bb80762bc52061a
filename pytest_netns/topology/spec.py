"""The data a topology is described and built with.

The builder turns user calls into these specs (what to create), and the
construction step turns them into `Segment`s (what was created, with the
names and addresses the kernel now holds).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from .addressing import Network

HOST = "host"


@dataclass
class NodeSpec:
    """A node to create or attach: a container, a namespace, a router or a switch."""

    name: str
    role: str
    backend: str
    image: str | None = None
    command: list[str] | str | None = None
    attach: object = None
    run_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class EndpointSpec:
    """One end of a segment: a node, and optionally its interface name and address."""

    node: str
    ifname: str | None
    ip: ipaddress.IPv4Address | None


@dataclass
class SegmentSpec:
    """A switch, link or guest-only NIC to create, before addresses are assigned."""

    name: str
    kind: str  # "switch", "link" or "stub"
    subnet: Network | None
    endpoints: list[EndpointSpec] = field(default_factory=list)
    stub_kind: str | None = None
    nat_router: str | None = None
    real_uplink: bool = False

    @property
    def touches_host(self) -> bool:
        return any(e.node == HOST for e in self.endpoints)


@dataclass(frozen=True)
class Segment:
    """A built switch, link or guest-only NIC: its subnet and who sits on it."""

    name: str
    kind: str
    subnet: Network
    members: tuple[tuple[str, str, str], ...]  # (node, ifname, ip)
    detail: str = ""  # the link kind of a stub, the bridge of a switch

    def ip_of(self, node: str) -> str:
        for member, _, ip in self.members:
            if member == node:
                return ip
        raise KeyError(node)

    def ifname_of(self, node: str) -> str:
        for member, ifname, _ in self.members:
            if member == node:
                return ifname
        raise KeyError(node)
