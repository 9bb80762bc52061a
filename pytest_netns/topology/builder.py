"""One builder for every topology: describe it as data, then build it.

Mininet's lesson: a topology is a description (nodes, switches, links,
routers, NAT) and building it is a separate step. Here the description is
validated completely, and its subnets reserved, before the first kernel
object exists; the build then either finishes or removes everything it made
before the error propagates. The four seed fixtures are short recipes on this
class, so there is one code path to trust, not five.
"""

from __future__ import annotations

import ipaddress
import time
from typing import TYPE_CHECKING, Any

from .addressing import (
    Network,
    check_assignable,
    check_clear_of_host,
    check_ifname,
    check_segment_subnet,
    host_networks,
    parse_ip,
    parse_subnet,
    release,
    reserve,
)
from .construction import Construction
from .errors import (
    InterfaceNameError,
    InvalidAddressError,
    InvalidTopologyError,
    UnsupportedKindError,
)
from .namespaces import require_privileges
from .nodes import host
from .segments import HOST, EndpointSpec, NodeSpec, SegmentSpec
from .session import Session, current_session

if TYPE_CHECKING:
    from .topology import Topology

BACKENDS = ("docker", "namespace")


class TopologyBuilder(Construction):
    """Describe nodes, switches, links, routers and NAT, then `build()`.

    >>> t = make_topology()
    >>> a, b = t.node("a"), t.node("b")
    >>> sw = t.switch("lan")
    >>> t.connect(a, sw); t.connect(b, sw)
    >>> net = t.build()
    >>> net["a"].ip
    """

    HOST = HOST

    def __init__(
        self,
        backend: str = "namespace",
        image: str | None = None,
        command: list[str] | str | None = None,
        session: Session | None = None,
        verify: bool = True,
        label: str = "topology",
    ) -> None:
        if backend not in BACKENDS:
            raise InvalidTopologyError(f"unknown backend {backend!r}: expected one of {BACKENDS}")
        self.backend = backend
        self.image = image
        self.command = command
        require_privileges()  # one clear error before any file or namespace is made
        self.session = session or current_session()
        self.verify = verify
        self.label = label
        self._nodes: dict[str, NodeSpec] = {}
        self._segments: dict[str, SegmentSpec] = {}
        self._routes: list[tuple[str, str, str]] = []
        self._expect: list[tuple[str, str, str]] = []  # (src, dst node, segment)
        self._built = False
        self._explicit_ifnames: dict[str, set[str]] = {}

    # -- description ------------------------------------------------------

    def _add_node(self, spec: NodeSpec) -> str:
        if not isinstance(spec.name, str) or not spec.name or spec.name == HOST:
            raise InvalidTopologyError(
                f"invalid node name {spec.name!r}: expected a non-empty string other than 'host'"
            )
        if spec.name in self._nodes or spec.name in self._segments:
            raise InvalidTopologyError(f"name {spec.name!r} is used twice in this topology")
        self._nodes[spec.name] = spec
        return spec.name

    def node(
        self,
        name: str,
        *,
        image: str | None = None,
        command: list[str] | str | None = None,
        backend: str | None = None,
        **run_kwargs: Any,
    ) -> str:
        """A node: a container on the Docker backend, a bare namespace otherwise."""
        chosen = backend or self.backend
        if chosen not in BACKENDS:
            raise InvalidTopologyError(f"unknown backend {chosen!r}: expected one of {BACKENDS}")
        return self._add_node(
            NodeSpec(name, "node", chosen, image or self.image, command or self.command,
                      run_kwargs=run_kwargs)
        )

    def attach(self, container: object, name: str | None = None) -> str:
        """An already running container (docker SDK, id/name, or testcontainers).

        It is never stopped or removed; only the interfaces put into it are.
        """
        from .containers import resolve_container

        ctr = resolve_container(container)
        return self._add_node(NodeSpec(name or str(ctr.name), "node", "docker", attach=ctr))

    def router(self, name: str) -> str:
        """A namespace that forwards between the segments it is connected to."""
        return self._add_node(NodeSpec(name, "router", "namespace"))

    def switch(self, name: str | None = None, subnet: str | Network | None = None) -> str:
        """A learning bridge in a namespace of its own (clear of the host's firewall)."""
        name = name or f"sw{len(self._segments)}"
        if name in self._nodes or name in self._segments or name == HOST:
            raise InvalidTopologyError(f"name {name!r} is used twice in this topology")
        net = parse_subnet(subnet, hosts_needed=1) if subnet is not None else None
        self._segments[name] = SegmentSpec(name, "switch", net)
        self._nodes[name] = NodeSpec(name, "switch", "namespace")
        return name

    def connect(
        self,
        a: str,
        b: str,
        *,
        subnet: str | Network | None = None,
        ip: str | None = None,
        peer_ip: str | None = None,
        iface: str | None = None,
        peer_iface: str | None = None,
    ) -> str:
        """Connect node `a` to a switch, another node, or `HOST`; return the segment name.

        `ip`/`iface` are `a`'s end; `peer_ip`/`peer_iface` the other end's (not
        for a switch, whose ports carry no address).
        """
        if a == HOST:
            a, b, ip, peer_ip, iface, peer_iface = b, a, peer_ip, ip, peer_iface, iface
        self._need_node(a, "connect")
        end_a = EndpointSpec(a, _ifname_or_none(iface), _ip_or_none(ip))
        if b in self._segments and self._segments[b].kind == "switch":
            if peer_ip or peer_iface:
                raise InvalidTopologyError(
                    f"a switch port carries no address or name: drop peer_ip/peer_iface when "
                    f"connecting {a!r} to switch {b!r}"
                )
            seg = self._segments[b]
            if subnet is not None:
                net = parse_subnet(subnet, hosts_needed=1)
                if seg.subnet is not None and seg.subnet != net:
                    raise InvalidAddressError(
                        f"switch {b!r} already has subnet {seg.subnet}, not {net}"
                    )
                seg.subnet = net
            seg.endpoints.append(end_a)
            return b
        if b != HOST:
            self._need_node(b, "connect")
        if a == b:
            raise InvalidTopologyError(f"cannot connect node {a!r} to itself")
        name = f"link{len(self._segments)}"
        link_net = parse_subnet(subnet) if subnet is not None else None
        end_b = EndpointSpec(b, _ifname_or_none(peer_iface), _ip_or_none(peer_ip))
        self._segments[name] = SegmentSpec(name, "link", link_net, [end_a, end_b])
        return name

    def stub(
        self,
        node: str,
        *,
        ip: str = "172.16.0.10",
        prefixlen: int = 24,
        iface: str = "eth1",
        kind: str | None = None,
    ) -> str:
        """A guest-only NIC in `node`: an address, and nothing at the other end.

        `kind` is "dummy" (the seed's), "ifb", "veth" (peer parked in a private
        namespace) or None for the best this kernel has.
        """
        self._need_node(node, "stub")
        if kind not in (None, "dummy", "ifb", "veth"):
            raise UnsupportedKindError(
                f"unknown guest-only interface kind {kind!r}: expected 'dummy', 'ifb', 'veth' "
                "or None (the best this kernel supports)"
            )
        addr = parse_ip(ip)
        check_assignable(addr)
        if type(prefixlen) is not int or not 1 <= prefixlen <= 32:
            raise InvalidAddressError(f"invalid prefix length {prefixlen!r}: expected 1 to 32")
        net = ipaddress.IPv4Network(f"{addr}/{prefixlen}", strict=False)
        if prefixlen <= 30 and addr in (net.network_address, net.broadcast_address):
            raise InvalidAddressError(
                f"address {addr} is the {'network' if addr == net.network_address else 'broadcast'}"
                f" address of {net}: pick a host address in {net[1]}-{net[-2]}"
            )
        name = f"stub{len(self._segments)}"
        self._segments[name] = SegmentSpec(
            name, "stub", net, [EndpointSpec(node, check_ifname(iface), addr)], stub_kind=kind
        )
        return name

    def nat(
        self,
        router: str,
        *,
        upstream_subnet: str | Network | None = None,
        real_uplink: bool = False,
    ) -> str:
        """Masquerade what `router` forwards towards a new upstream link to the host.

        The upstream side is a veth in the root namespace that this topology
        creates, so the test process can bind the upstream address and serve
        on it. The router gets no route off the machine unless `real_uplink`
        is set: that explicit opt-in changes the host as `uplink.py` documents
        and restores it when the topology closes.
        """
        self._need_node(router, "nat")
        if self._nodes[router].role != "router":
            raise InvalidTopologyError(f"NAT needs a router, and {router!r} is not one")
        seg_name = self.connect(router, HOST, subnet=upstream_subnet)
        self._segments[seg_name].nat_router = router
        self._segments[seg_name].real_uplink = bool(real_uplink)
        return seg_name

    def route(self, node: str, dst: str, via: str) -> None:
        """An extra static route in `node` (a default one is added automatically)."""
        self._need_node(node, "route")
        net = parse_subnet(dst, hosts_needed=0) if dst != "default" else None
        check_assignable(parse_ip(via, "gateway"), "gateway")
        self._routes.append((node, str(net) if net else "0.0.0.0/0", via))

    def expect(self, src: str, dst: str, segment: str) -> None:
        """After building, prove that `src` reaches `dst`'s address on `segment`."""
        self._expect.append((src, dst, segment))

    def _need_node(self, name: str, what: str) -> None:
        if name not in self._nodes or self._nodes[name].role == "switch":
            known = sorted(n for n, s in self._nodes.items() if s.role != "switch")
            raise InvalidTopologyError(
                f"{what}: unknown node {name!r}; this topology has nodes {known}"
            )

    # -- planning ---------------------------------------------------------

    def _plan(self) -> tuple[list[Network], dict[str, Network], dict[tuple[str, int], str]]:
        """Check everything, reserve subnets, and assign every address and name.

        Returns the reserved subnets, each segment's subnet, and the address
        of each (segment, endpoint position).
        """
        self._check_ifnames()
        for seg in self._segments.values():
            if seg.kind != "stub" and seg.subnet is not None:
                check_segment_subnet(seg.subnet, seg.touches_host)
        self._check_disjoint()
        auto = [s for s in self._segments.values() if s.subnet is None]
        explicit_host = [s.subnet for s in self._segments.values()
                         if s.subnet is not None and s.touches_host]
        if explicit_host:
            host_nets = host_networks()
            for net in explicit_host:
                assert net is not None
                check_clear_of_host(net, host_nets)
        for seg in self._segments.values():
            if not seg.endpoints:
                raise InvalidTopologyError(f"switch {seg.name!r} has no members: connect a node")
            if seg.subnet is not None:
                parse_subnet(seg.subnet, hosts_needed=len(seg.endpoints))
        reserved = reserve(
            len(auto),
            owner=f"{self.session.id}:{self.label}",
            explicit=[n for n in explicit_host if n is not None],
            avoid=[s.subnet for s in self._segments.values()
                   if s.subnet is not None and not s.touches_host],
        )
        try:
            subnets: dict[str, Network] = {}
            it = iter(reserved)
            for seg in self._segments.values():
                subnets[seg.name] = seg.subnet if seg.subnet is not None else next(it)
            addresses = {}
            for seg in self._segments.values():
                addresses.update(self._assign(seg, subnets[seg.name]))
        except BaseException:
            release(reserved + [n for n in explicit_host if n is not None])
            raise
        return reserved + [n for n in explicit_host if n is not None], subnets, addresses

    def _check_disjoint(self) -> None:
        """Explicit subnets that meet in one node (or the host) must not overlap:
        that node could not tell which interface an address is behind."""
        seen: dict[str, list[tuple[Network, str]]] = {}
        for seg in self._segments.values():
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

    def _check_ifnames(self) -> None:
        """Explicit interface names: one per node, and none the host already has."""
        explicit: dict[str, set[str]] = {}
        for seg in self._segments.values():
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
        if explicit.get(HOST):
            taken = explicit[HOST] & {str(ln["ifname"]) for ln in host().netlink.links()}
            if taken:
                raise InterfaceNameError(
                    f"interface {sorted(taken)[0]!r} already exists in the host's namespace: "
                    "pick another host-side name, or leave it out and pytest-netns will choose "
                    "a free one"
                )
        self._explicit_ifnames = explicit

    def _assign(self, seg: SegmentSpec, net: Network) -> dict[tuple[str, int], str]:
        taken = set()
        for e in seg.endpoints:
            if e.ip is None:
                continue
            if seg.kind != "stub" and (e.ip not in net or e.ip in (net.network_address,
                                                                   net.broadcast_address)):
                raise InvalidAddressError(
                    f"address {e.ip} of {e.node!r} is not a host address of {seg.name}'s "
                    f"subnet {net}: pick one in {net[1]}-{net[-2]}"
                )
            if e.ip in taken:
                raise InvalidAddressError(f"address {e.ip} is given twice on {seg.name} ({net})")
            taken.add(e.ip)
        # routers and the host take the first free addresses (gateway-style .1)
        order = sorted(
            range(len(seg.endpoints)),
            key=lambda i: 0 if seg.endpoints[i].node == HOST
            or self._nodes[seg.endpoints[i].node].role == "router" else 1,
        )
        free = (h for h in net.hosts() if h not in taken)
        out = {}
        for i in order:
            e = seg.endpoints[i]
            if e.ip is None:
                e_ip = next(free, None)
                if e_ip is None:
                    raise InvalidAddressError(
                        f"subnet {net} of {seg.name} has no free address left"
                    )
                out[(seg.name, i)] = str(e_ip)
            else:
                out[(seg.name, i)] = str(e.ip)
        return out

    # -- building ---------------------------------------------------------

    def build(self) -> Topology:
        """Create everything; on any failure remove what was made, then re-raise."""
        from .topology import Topology

        if self._built:
            raise InvalidTopologyError("this builder was already built; make a new one")
        self._built = True
        started = time.perf_counter()
        reserved, subnets, addresses = self._plan()
        topo = Topology(self.label, self.session, reserved)
        try:
            self._create_nodes(topo)
            self._create_segments(topo, subnets, addresses)
            self._create_routes(topo)
            topo.build_seconds = time.perf_counter() - started
            if self.verify:
                self._verify(topo)
        except BaseException:
            topo.close()
            raise
        return topo


def _ip_or_none(value: str | None) -> ipaddress.IPv4Address | None:
    if value is None:
        return None
    text = str(value).strip()
    if "/" in text:  # "10.0.0.2/24" is fine; the segment's subnet decides the prefix
        try:
            ipaddress.IPv4Interface(text)
        except ValueError:
            raise InvalidAddressError(
                f"invalid address {value!r}: expected an IPv4 address such as '10.0.0.2', "
                "optionally with a prefix length such as '10.0.0.2/24'"
            ) from None
    addr = parse_ip(text.split("/")[0])
    check_assignable(addr)
    return addr


def _ifname_or_none(value: str | None) -> str | None:
    return None if value is None else check_ifname(value)
