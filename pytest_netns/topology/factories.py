"""What the `make_*` fixtures are, as types a test can annotate.

Each factory fixture returns a callable; these Protocols state its keyword
arguments and what it returns, so that `def test_x(make_bridged_pair:
BridgedPairFactory)` is checked by mypy and completed by an editor. They
describe calls only; the plugin provides the objects. `netns_factory`'s
methods take the same arguments.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from .builder import TopologyBuilder
from .recipes import BridgedPair, HostOnlyLink, IsolatedContainer, NatUplink
from .topology import Topology


class TopologyFactory(Protocol):
    """`make_topology(...)`: a new builder; what it builds is closed when the test ends."""

    def __call__(self, *, backend: str | None = None, image: str | None = None,
                 command: list[str] | str | None = None, verify: bool = True,
                 label: str = "topology", ipv6: bool = False) -> TopologyBuilder: ...


class IsolatedContainerFactory(Protocol):
    def __call__(self, *, image: str | None = None, command: list[str] | str | None = None,
                 backend: str | None = None, verify: bool = True, ipv6: bool = False,
                 ip: str = "172.16.0.10", prefixlen: int = 24, iface: str = "eth1",
                 kind: str | None = None, container: Any = None, ip6: str | None = None,
                 prefixlen6: int = 64) -> IsolatedContainer: ...


class HostOnlyLinkFactory(Protocol):
    def __call__(self, *, image: str | None = None, command: list[str] | str | None = None,
                 backend: str | None = None, verify: bool = True, ipv6: bool = False,
                 subnet: str | None = None, iface: str = "eth1", host_iface: str | None = None,
                 node_ip: str | None = None, host_ip: str | None = None,
                 container: Any = None, subnet6: str | None = None,
                 node_ip6: str | None = None, host_ip6: str | None = None) -> HostOnlyLink: ...


class BridgedPairFactory(Protocol):
    def __call__(self, *, image: str | None = None, command: list[str] | str | None = None,
                 backend: str | None = None, verify: bool = True, ipv6: bool = False,
                 subnet: str | None = None, a_ip: str | None = None, b_ip: str | None = None,
                 iface: str = "eth1", subnet6: str | None = None, a_ip6: str | None = None,
                 b_ip6: str | None = None) -> BridgedPair: ...


class NatUplinkFactory(Protocol):
    def __call__(self, *, image: str | None = None, command: list[str] | str | None = None,
                 backend: str | None = None, verify: bool = True, ipv6: bool = False,
                 subnet: str | None = None, upstream_subnet: str | None = None,
                 node_ip: str | None = None, iface: str = "eth1", container: Any = None,
                 real_uplink: bool = False, subnet6: str | None = None,
                 upstream_subnet6: str | None = None,
                 node_ip6: str | None = None) -> NatUplink: ...


class LabFactory(Protocol):
    """`make_lab(path)`: the lab file's topology, its `expect:` proved (AssertionError
    listing the cells that differ); closed when the test ends."""

    def __call__(self, path: str | os.PathLike[str], *, backend: str | None = None,
                 image: str | None = None, verify: bool = True,
                 check: bool = True) -> Topology: ...
