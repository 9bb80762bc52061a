"""The four topologies of the article ("Advanced Docker networking"), as recipes on the builder.

Each returns a small frozen object with the addresses and names a test
needs (nobody should have to parse `ip` output) and a `close()` that tears it
down early; the fixture closes whatever is still up when the test ends.
On a builder made with `ipv6=True`, every address attribute has an `*_ip6`
twin (`a_ip6`, `node_ip6`, `upstream_ip6`, ...) and every `subnet` a
`subnet6`; without it those are None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidAddressError
from ..nodes.base import Node
from .addresses import check_ifname, parse_ip, parse_prefixlen, parse_subnet, parse_subnet6
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
    ip6: str | None = None
    prefixlen6: int | None = None


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
    node_ip6: str | None = None
    host_ip6: str | None = None
    subnet6: str | None = None

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
    a_ip6: str | None = None
    b_ip6: str | None = None
    subnet6: str | None = None


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
    node_ip6: str | None = None
    public_ip6: str | None = None
    upstream_ip6: str | None = None
    subnet6: str | None = None
    upstream_subnet6: str | None = None

    @property
    def link(self) -> Link:
        """The veth between the node and its router."""
        return self.topology.link(self.node, self.router)


def _start(builder: TopologyBuilder, name: str, node: Any, **kw: Any) -> str:
    """A new node, or the given running container attached as one."""
    if node is not None:
        return builder.attach(node, name=None)
    return builder.node(name, **kw)


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def isolated_container(
    builder: TopologyBuilder,
    *,
    ip: str = "172.16.0.10",
    prefixlen: int = 24,
    iface: str = "eth1",
    kind: str | None = None,
    container: Any = None,
    ip6: str | None = None,
    prefixlen6: int = 64,
) -> IsolatedContainer:
    """The article's first scenario: a guest-only NIC, 172.16.0.10/24 on eth1 (and, with
    IPv6, `ip6`/`prefixlen6` or an address of a free /64)."""
    if "/" in str(ip):
        net = parse_subnet(ip, hosts_needed=0)
        ip, prefixlen = str(ip).split("/")[0], net.prefixlen
    parse_ip(ip)
    prefixlen = parse_prefixlen(prefixlen)
    if ip6 is not None and "/" in str(ip6):
        prefixlen6 = parse_subnet6(ip6, hosts_needed=0).prefixlen
    check_ifname(iface)
    name = _start(builder, "isolated", container)
    builder.stub(name, ip=str(ip), prefixlen=prefixlen, iface=iface, kind=kind, ip6=ip6,
                 prefixlen6=prefixlen6)
    topo = builder.build()
    node = topo[name]
    nic = node.interface(iface)
    return IsolatedContainer(topo, node, iface, str(nic.ip), nic.prefixlen, nic.kind, nic.ip6,
                             nic.prefixlen6)


def host_only_link(
    builder: TopologyBuilder,
    *,
    subnet: str | None = None,
    iface: str = "eth1",
    host_iface: str | None = None,
    node_ip: str | None = None,
    host_ip: str | None = None,
    container: Any = None,
    subnet6: str | None = None,
    node_ip6: str | None = None,
    host_ip6: str | None = None,
) -> HostOnlyLink:
    """The article's second scenario: the host and the node on a private veth."""
    name = _start(builder, "node", container)
    seg = builder.connect(
        name, HOST, subnet=subnet, iface=iface, peer_iface=host_iface, ip=node_ip, peer_ip=host_ip,
        subnet6=subnet6, ip6=node_ip6, peer_ip6=host_ip6,
    )
    builder.expect(HOST, name, seg)
    builder.expect(name, HOST, seg)
    topo = builder.build()
    s = topo.segments[seg]
    return HostOnlyLink(
        topo, topo[name], s.ifname_of(name), s.ip_of(name), s.ip_of(HOST), s.ifname_of(HOST),
        s.subnet.prefixlen, str(s.subnet), s.ip6_of(name), s.ip6_of(HOST), _str(s.subnet6),
    )


def bridged_pair(
    builder: TopologyBuilder,
    *,
    subnet: str | None = None,
    a_ip: str | None = None,
    b_ip: str | None = None,
    iface: str = "eth1",
    subnet6: str | None = None,
    a_ip6: str | None = None,
    b_ip6: str | None = None,
) -> BridgedPair:
    """The article's bridge scenario, with the bridge in a switch namespace of its own.

    On a host whose Docker set FORWARD DROP with br_netfilter on, a bridge in
    the root namespace drops the pair's traffic; the switch namespace has an
    empty firewall, so the pair talks and the host's rules stay untouched.
    """
    if subnet is not None:
        parse_subnet(subnet, hosts_needed=2)
    if subnet6 is not None:
        parse_subnet6(subnet6, hosts_needed=2)
    a, b = builder.node("a"), builder.node("b")
    sw = builder.switch("switch", subnet=subnet, subnet6=subnet6)
    builder.connect(a, sw, ip=a_ip, iface=iface, ip6=a_ip6)
    builder.connect(b, sw, ip=b_ip, iface=iface, ip6=b_ip6)
    builder.expect(a, b, sw)
    builder.expect(b, a, sw)
    topo = builder.build()
    s = topo.segments[sw]
    return BridgedPair(
        topo, topo[a], topo[b], s.ip_of(a), s.ip_of(b), str(s.subnet), s.subnet.prefixlen,
        topo[sw].netns if sw in topo.nodes else "", s.ip6_of(a), s.ip6_of(b), _str(s.subnet6),
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
    subnet6: str | None = None,
    upstream_subnet6: str | None = None,
    node_ip6: str | None = None,
) -> NatUplink:
    """The article's "Internet access", with an upstream the fixture builds itself.

    `real_uplink=True` is the explicit opt-in to route the router beyond this
    machine through the host's default route; see `kernel/uplink.py` for exactly
    what that changes on the host (all of it is restored on close). It covers
    IPv4 only: with IPv6, the router masquerades IPv6 to the upstream link
    the fixture builds, and routes no IPv6 beyond it.
    """
    for inner, outer, parse in ((subnet, upstream_subnet, parse_subnet),
                                (subnet6, upstream_subnet6, parse_subnet6)):
        if inner is not None and outer is not None and parse(inner).overlaps(parse(outer)):
            raise InvalidAddressError(
                f"subnet {inner!r} and upstream subnet {outer!r} overlap: the router cannot "
                "route between them; pick two disjoint subnets"
            )
    name = _start(builder, "node", container)
    router = builder.router("router")
    inside = builder.connect(name, router, subnet=subnet, ip=node_ip, iface=iface,
                             subnet6=subnet6, ip6=node_ip6)
    upstream = builder.nat(router, upstream_subnet=upstream_subnet, real_uplink=real_uplink,
                           upstream_subnet6=upstream_subnet6)
    builder.expect(name, HOST, upstream)
    topo = builder.build()
    ins, up = topo.segments[inside], topo.segments[upstream]
    return NatUplink(
        topo, topo[name], ins.ip_of(name), up.ip_of(router), up.ip_of(HOST), up.ifname_of(HOST),
        topo[router], str(ins.subnet), str(up.subnet), ins.ip6_of(name), up.ip6_of(router),
        up.ip6_of(HOST), _str(ins.subnet6), _str(up.subnet6),
    )
