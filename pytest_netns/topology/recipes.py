"""The four topologies of the article ("Advanced Docker networking"), as recipes on the builder.

Each returns a small frozen object with the addresses and names a test
needs (nobody should have to parse `ip` output) and a `close()` that tears it
down early; the fixture closes whatever is still up when the test ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidAddressError
from ..nodes.base import Node
from .addresses import check_ifname, parse_ip, parse_prefixlen, parse_subnet
from .builder import TopologyBuilder
from .links import Link
from .spec import HOST
from .topology import Topology

if TYPE_CHECKING:
    from typing_extensions import Self


@dataclass(frozen=True)
class _Built:
    topology: Topology = field(repr=False)

    def close(self) -> None:
        """Tear this topology down now (idempotent)."""
        self.topology.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class IsolatedContainer(_Built):
    """A node whose only NIC besides `lo` is a guest-only one, with no route out."""

    node: Node
    iface: str
    ip: str
    prefixlen: int
    kind: str


@dataclass(frozen=True)
class HostOnlyLink(_Built):
    """A veth between the host's root namespace and the node's `iface`."""

    node: Node
    iface: str
    node_ip: str
    host_ip: str
    host_iface: str
    prefixlen: int
    subnet: str

    @property
    def link(self) -> Link:
        """The veth between the node and the host."""
        return self.topology.link(self.node, HOST)


@dataclass(frozen=True)
class BridgedPair(_Built):
    """Two nodes on a bridge of their own, in a switch namespace."""

    a: Node
    b: Node
    a_ip: str
    b_ip: str
    subnet: str
    prefixlen: int
    switch_netns: str


@dataclass(frozen=True)
class NatUplink(_Built):
    """A node behind a masquerading router whose upstream is a host-side link."""

    node: Node
    node_ip: str
    public_ip: str
    upstream_ip: str
    upstream_iface: str
    router: Node
    subnet: str
    upstream_subnet: str

    @property
    def link(self) -> Link:
        """The veth between the node and its router."""
        return self.topology.link(self.node, self.router)


def _start(builder: TopologyBuilder, name: str, node: Any, **kw: Any) -> str:
    """A new node, or the given running container attached as one."""
    if node is not None:
        return builder.attach(node, name=None)
    return builder.node(name, **kw)


def isolated_container(
    builder: TopologyBuilder,
    *,
    ip: str = "172.16.0.10",
    prefixlen: int = 24,
    iface: str = "eth1",
    kind: str | None = None,
    container: Any = None,
) -> IsolatedContainer:
    """The article's first scenario: a guest-only NIC, 172.16.0.10/24 on eth1."""
    if "/" in str(ip):
        net = parse_subnet(ip, hosts_needed=0)
        ip, prefixlen = str(ip).split("/")[0], net.prefixlen
    parse_ip(ip)
    prefixlen = parse_prefixlen(prefixlen)
    check_ifname(iface)
    name = _start(builder, "isolated", container)
    builder.stub(name, ip=str(ip), prefixlen=prefixlen, iface=iface, kind=kind)
    topo = builder.build()
    node = topo[name]
    nic = node.interface(iface)
    return IsolatedContainer(topo, node, iface, str(nic.ip), nic.prefixlen, nic.kind)


def host_only_link(
    builder: TopologyBuilder,
    *,
    subnet: str | None = None,
    iface: str = "eth1",
    host_iface: str | None = None,
    node_ip: str | None = None,
    host_ip: str | None = None,
    container: Any = None,
) -> HostOnlyLink:
    """The article's second scenario: the host and the node on a private veth."""
    name = _start(builder, "node", container)
    seg = builder.connect(
        name, HOST, subnet=subnet, iface=iface, peer_iface=host_iface, ip=node_ip, peer_ip=host_ip
    )
    topo = builder.build()
    s = topo.segments[seg]
    return HostOnlyLink(
        topo, topo[name], s.ifname_of(name), s.ip_of(name), s.ip_of(HOST), s.ifname_of(HOST),
        s.subnet.prefixlen, str(s.subnet),
    )


def bridged_pair(
    builder: TopologyBuilder,
    *,
    subnet: str | None = None,
    a_ip: str | None = None,
    b_ip: str | None = None,
    iface: str = "eth1",
) -> BridgedPair:
    """The article's bridge scenario, with the bridge in a switch namespace of its own.

    On a host whose Docker set FORWARD DROP with br_netfilter on, a bridge in
    the root namespace drops the pair's traffic; the switch namespace has an
    empty firewall, so the pair talks and the host's rules stay untouched.
    """
    if subnet is not None:
        parse_subnet(subnet, hosts_needed=2)
    a, b = builder.node("a"), builder.node("b")
    sw = builder.switch("switch", subnet=subnet)
    builder.connect(a, sw, ip=a_ip, iface=iface)
    builder.connect(b, sw, ip=b_ip, iface=iface)
    topo = builder.build()
    s = topo.segments[sw]
    return BridgedPair(
        topo, topo[a], topo[b], s.ip_of(a), s.ip_of(b), str(s.subnet), s.subnet.prefixlen,
        topo[sw].netns if sw in topo.nodes else "",
    )


def nat_uplink(
    builder: TopologyBuilder,
    *,
    subnet: str | None = None,
    upstream_subnet: str | None = None,
    node_ip: str | None = None,
    iface: str = "eth1",
    container: Any = None,
    real_uplink: bool = False,
) -> NatUplink:
    """The article's "Internet access", with an upstream the fixture builds itself.

    `real_uplink=True` is the explicit opt-in to route the router beyond this
    machine through the host's default route; see `kernel/uplink.py` for exactly
    what that changes on the host (all of it is restored on close).
    """
    if (subnet is not None and upstream_subnet is not None
            and parse_subnet(subnet).overlaps(parse_subnet(upstream_subnet))):
        raise InvalidAddressError(
            f"subnet {subnet!r} and upstream_subnet {upstream_subnet!r} overlap: the "
            "router cannot route between them; pick two disjoint subnets"
        )
    name = _start(builder, "node", container)
    router = builder.router("router")
    inside = builder.connect(name, router, subnet=subnet, ip=node_ip, iface=iface)
    upstream = builder.nat(router, upstream_subnet=upstream_subnet, real_uplink=real_uplink)
    builder.expect(name, HOST, upstream)
    topo = builder.build()
    ins, up = topo.segments[inside], topo.segments[upstream]
    return NatUplink(
        topo, topo[name], ins.ip_of(name), up.ip_of(router), up.ip_of(HOST), up.ifname_of(HOST),
        topo[router], str(ins.subnet), str(up.subnet),
    )
