"""Built segments: what exists on each switch, link or guest-only NIC.

A `Segment` is a broadcast domain after the build, with the names and
addresses the kernel now holds, for tests, reports and diagrams to read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from .spec import HOST, Network, Network6, SegmentKind


class Member(NamedTuple):
    """A node on a segment: its name, its interface there and its address there."""

    node: str
    ifname: str
    ip: str


@dataclass(frozen=True)
class Segment:
    """A built switch, link or guest-only NIC: its subnet and who sits on it."""

    name: str
    kind: SegmentKind
    subnet: Network
    members: tuple[Member, ...]
    detail: str = ""  # the link kind of a stub, the bridge of a switch
    subnet6: Network6 | None = None  # on an IPv6 topology
    ip6s: Mapping[str, str] = field(default_factory=dict)  # node -> its IPv6 address here

    def member(self, node: str) -> Member:
        for member in self.members:
            if member.node == node:
                return member
        raise KeyError(node)

    def ip_of(self, node: str) -> str:
        """`node`'s address on this segment (`"host"` for the host's end)."""
        return self.member(node).ip

    def ip6_of(self, node: str) -> str | None:
        """`node`'s IPv6 address on this segment (None on a topology without IPv6)."""
        self.member(node)  # KeyError for a node that is not on it
        return self.ip6s.get(node)

    def ifname_of(self, node: str) -> str:
        return self.member(node).ifname

    @property
    def touches_host(self) -> bool:
        return any(m.node == HOST for m in self.members)

    def names(self) -> list[str]:
        return [m.node for m in self.members]
