"""Construction: turning a `Plan` into kernel objects, in order.

Nodes first (namespaces, started or attached containers), then links
(bridges, veths, guest-only NICs, NAT), then routes; then the plan's
expectations are proved with probes, and last the links described as
impaired are impaired (so verification is not slowed or lost to them). Any failure propagates to the
builder, which closes the topology, removing whatever exists by then.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import InterfaceNameError, VerificationError
from ..kernel.netns import create_named_netns
from ..nodes.base import Node
from ..nodes.host import host
from ..nodes.images import DEFAULT_COMMAND, DEFAULT_IMAGE
from ..nodes.namespace import NamespaceNode
from .links import End, GuestNic, HostLink, Link, NatUplink, NodeLink, SwitchPort
from .plan import Plan, PlannedSegment
from .segments import Member, Segment
from .spec import HOST, NodeSpec, Role, SegmentKind

if TYPE_CHECKING:
    from .topology import Topology

log = logging.getLogger(__name__)


class Constructor:
    """Creates what one plan describes, into one topology."""

    def __init__(self, plan: Plan, topo: Topology) -> None:
        self.plan = plan
        self.topo = topo

    def build(self) -> None:
        self._create_nodes()
        for seg in self.plan.segments:
            self._create_segment(seg)
        self._create_routes()

    # -- nodes ------------------------------------------------------------------

    def _create_nodes(self) -> None:
        specs = self.plan.nodes
        containers = [s for s in specs
                      if s.role == Role.NODE and s.backend == "docker" and s.attach is None]
        if containers:
            _check_images(containers)
        for spec in specs:
            if spec.attach is not None:  # first: attaching creates nothing, and is checked
                self._attach(spec)
        for spec in specs:
            if spec.attach is None and spec.backend == "namespace":
                self._create_namespace(spec)
        if containers:
            self._start_containers(containers)

    def _create_namespace(self, spec: NodeSpec) -> None:
        path, thread = create_named_netns(self.topo.session.netns_name(spec.role.value))
        node = NamespaceNode(spec.name, path, thread)
        self.topo.add_node(node, spec.role)
        node.netlink.set_up(1)  # lo
        if spec.role == Role.NODE and spec.command and spec.command != DEFAULT_COMMAND:
            # the namespace backend's stand-in for a container's main process
            node.spawn(spec.command)
        if spec.role == Role.ROUTER:
            node.netlink.sysctl("net.ipv4.ip_forward", "1")

    def _start_containers(self, specs: list[NodeSpec]) -> None:
        from ..nodes.container import start_containers

        groups: dict[tuple[str, str], list[NodeSpec]] = {}
        for s in specs:
            key = (s.image or "", repr(s.command) + repr(sorted(s.run_kwargs.items())))
            groups.setdefault(key, []).append(s)
        for group in groups.values():
            first = group[0]
            nodes = start_containers(
                self.topo.session, [s.name for s in group], first.image or DEFAULT_IMAGE,
                first.command, **first.run_kwargs,
            )
            for node in nodes:
                self.topo.add_node(node, Role.NODE)

    def _attach(self, spec: NodeSpec) -> None:
        from ..nodes.container import attach_container

        node = attach_container(spec.attach, spec.name)
        self.topo.add_node(node, spec.role)
        clash = node.netlink.existing(set(self.plan.explicit_ifnames.get(spec.name, ())))
        if clash:
            raise InterfaceNameError(
                f"interface {sorted(clash)[0]!r} already exists in attached container "
                f"{node.name!r}: pick another iface, or leave it out and pytest-netns will "
                "choose a free name"
            )

    # -- links ------------------------------------------------------------------

    def _next_ifname(self, node: Node) -> str:
        """The first free ethN, skipping names asked for explicitly and, in a
        container we do not own, the interfaces it already has."""
        used = {i.ifname for i in node.interfaces} | self.plan.explicit_ifnames.get(node.name,
                                                                                  frozenset())
        if not node.owned:
            used |= {link.ifname for link in node.netlink.links()}
        n = 1
        while f"eth{n}" in used:
            n += 1
        return f"eth{n}"

    def _end(self, node: str, ifname: str | None, ip: str) -> End:
        return End(node, ifname or self._next_ifname(self.topo.nodes[node]), ip)

    def _create_segment(self, seg: PlannedSegment) -> None:
        topo, prefixlen = self.topo, seg.subnet.prefixlen
        links: list[Link] = []
        detail = "veth"
        if seg.kind == SegmentKind.SWITCH:
            detail = "br0"
            bridge = topo.nodes[seg.name].netlink.add_bridge(detail)
            for port, e in enumerate(seg.ends):
                links.append(self._add(SwitchPort(seg.name, prefixlen, self._end(e.node, e.ifname,
                                                                                  e.ip),
                                                  End(seg.name, f"p{port}", None), bridge)))
        elif seg.kind == SegmentKind.STUB:
            (e,) = seg.ends
            assert e.ifname is not None
            stub = GuestNic(seg.name, prefixlen, End(e.node, e.ifname, e.ip), seg.stub_kind)
            links.append(self._add(stub))
            detail = stub.chosen
        else:
            e0, e1 = seg.ends
            a = self._end(e0.node, e0.ifname, e0.ip)
            if e1.node == HOST:
                b = End(HOST, e1.ifname or topo.session.ifname("h"), e1.ip)
                link: Link = (NatUplink(seg.name, prefixlen, (a, b), str(seg.subnet),
                                        seg.real_uplink) if seg.nat_router
                              else HostLink(seg.name, prefixlen, (a, b)))
            else:
                link = NodeLink(seg.name, prefixlen, (a, self._end(e1.node, e1.ifname, e1.ip)))
            links.append(self._add(link))
        members = tuple(Member(e.node, e.ifname, e.ip or "")
                        for link in links for e in link.ends if e.ip is not None)
        topo.segments[seg.name] = Segment(seg.name, seg.kind, seg.subnet, members, detail)

    def _add(self, link: Link) -> Link:
        """Hand the link to the topology first, so teardown covers a half-made one."""
        self.topo.add_link(link)
        link.create(self.topo)
        return link

    # -- routes -----------------------------------------------------------------

    def _create_routes(self) -> None:
        """Nodes on a router's segment route via it; then the plan's extra routes."""
        topo = self.topo
        routers = {n.name for n in self.plan.nodes if n.role == Role.ROUTER}
        for spec in self.plan.nodes:
            if spec.role != Role.NODE:
                continue
            for seg in topo.segments.values():
                names = seg.names()
                gateway = next((m.ip for m in seg.members if m.node in routers), None)
                if spec.name in names and gateway:
                    node = topo.nodes[spec.name]
                    node.netlink.add_route("0.0.0.0/0", gateway=gateway)
                    node.routes.append(("default", gateway))
                    break
        for route in self.plan.routes:
            node = topo.nodes[route.node]
            node.netlink.add_route(route.dst, gateway=route.via)
            node.routes.append((route.dst, route.via))

    # -- verification -----------------------------------------------------------

    @staticmethod
    def verify(plan: Plan, topo: Topology) -> None:
        """Prove the plan's expectations with probes; VerificationError if one fails."""
        from ..probes.api import ping

        for want in plan.expectations:
            src_node = host() if want.src == HOST else topo.nodes[want.src]
            dst_ip = topo.segments[want.segment].ip_of(want.dst)
            result = None
            for _ in range(3):
                result = ping(src_node, dst_ip, timeout=1.0)
                if result.ok:
                    break
            if result is None or not result.ok:
                raise VerificationError(
                    f"{topo.label}: {want.src} cannot reach {want.dst} ({dst_ip}) over "
                    f"{want.segment} right after building it ({result}). Something on this "
                    "host blocks the path; run `pytest-netns doctor`, or pass verify=False "
                    "to skip this check"
                )


def impair(plan: Plan, topo: Topology) -> None:
    """Impair the links the description asked for (`connect(..., impair=...)`)."""
    for spec in plan.impairments:
        topo.link(spec.a, spec.b).impair(**spec.values)


def _check_images(specs: list[NodeSpec]) -> None:
    """The engine answers and every image is here (or is ours to build), before
    the first namespace exists; images are never pulled."""
    from ..nodes.engine import docker_client
    from ..nodes.images import ensure_image

    client = docker_client()
    for image in dict.fromkeys(s.image or DEFAULT_IMAGE for s in specs):
        ensure_image(client, image)
