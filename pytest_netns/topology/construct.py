"""Construction: turning a `Plan` into kernel objects, in order.

Nodes first (namespaces, started or attached containers), then links
(bridges, veths, guest-only NICs, NAT), then routes, then every node's
names; then the plan's expectations are proved with probes, and last the
links described as impaired are impaired (so verification is neither
slowed nor lost to them). Any failure propagates to the builder, which
closes the topology, removing whatever exists by then.

IPv6 is on in a node only on an IPv6 topology, on both backends: Docker
disables it in every container, and namespaces follow suit (no link-local
addresses, router solicitations or MLD reports in a topology that did not
ask for IPv6). An IPv6 topology enables it in every node before the first
interface exists, accepts no router advertisements anywhere (nothing here
sends any: nodes on a router's segment get an explicit default route via
the router), and its addresses skip duplicate address detection, so they
work the moment `build()` returns.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from ..errors import InterfaceNameError
from ..kernel.netlink import Netlink
from ..kernel.netns import Netns, create_named_netns_async
from ..nodes.base import Node
from ..nodes.images import DEFAULT_COMMAND, DEFAULT_IMAGE
from ..nodes.namespace import NamespaceNode
from . import names
from .addresses import IPV6_SYSCTLS
from .links import End, GuestNic, HostLink, Link, NatUplink, NodeLink, SwitchPort
from .plan import Plan, PlannedSegment
from .segments import Member, Segment
from .spec import HOST, NodeSpec, Role, SegmentKind

if TYPE_CHECKING:
    from .topology import Topology

log = logging.getLogger(__name__)

IPV6_OFF = {"net.ipv6.conf.all.disable_ipv6": "1"}  # "all" sets "default" too
# "all" enables every interface there is and sets "default" for the ones to come;
# accept_ra and accept_dad are read per interface, copied from "default" when one is
# created. Without DAD a link-local address is usable at once too: a router resolves
# the next hop of a forwarded packet from its link-local address, and sends nothing
# while that address is tentative (the first second of a link's life).
IPV6_ON = {"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.default.accept_ra": "0",
           "net.ipv6.conf.default.accept_dad": "0"}


@functools.cache
def kernel_has_ipv6() -> bool:
    """False on a kernel booted with ipv6.disable=1: no IPv6 sysctl to write at all."""
    return os.path.isdir(IPV6_SYSCTLS)


#: how long a build waits for IPv6 addresses to leave their tentative state
TENTATIVE_WAIT = 2.0

#: ports a switch makes in one batch (three worker hops a batch)
PORTS_AT_ONCE = 64


class _Namespaces:
    """The namespace nodes of a build, made in the background and added in order.

    `ready(name)` waits until that node is in the topology (a name that is
    no namespace node of this build is ready at once); `finish()` waits for
    all; after an error, `abandon()` stops what has not started and adds
    whatever was made, so that the topology's teardown removes it.
    """

    def __init__(self, topo: Topology, specs: list[NodeSpec], ipv6: bool) -> None:
        self.topo = topo
        self.specs = specs
        self.index = {spec.name: i for i, spec in enumerate(specs)}
        names = [topo.session.netns_name(spec.role.value) for spec in specs]
        sysctls = {name: _sysctls(spec.role, ipv6) for name, spec in zip(names, specs,
                                                                         strict=True)}
        self.futures = create_named_netns_async(
            names, lambda name, handle: Netlink(handle).prepare(sysctls[name])) if specs else []
        self.added = 0

    def ready(self, name: str) -> None:
        i = self.index.get(name)
        while i is not None and self.added <= i:
            self._add(self.futures[self.added].result())

    def finish(self) -> None:
        while self.added < len(self.futures):
            self._add(self.futures[self.added].result())

    def abandon(self) -> None:
        for future in self.futures[self.added:]:
            future.cancel()
        for future in self.futures[self.added:]:
            if not future.cancelled() and future.exception() is None:
                self._add(future.result())
            else:
                self.added += 1

    def _add(self, handle: Netns) -> None:
        spec = self.specs[self.added]
        self.added += 1
        # a namespace node honours `environment`, as docker's containers.run() does
        node = NamespaceNode(spec.name, handle, environment=spec.run_kwargs.get("environment"))
        self.topo.add_node(node, spec.role)
        if spec.role == Role.NODE and spec.command and spec.command != DEFAULT_COMMAND:
            # the namespace backend's stand-in for a container's main process; it is
            # one of node.processes, so its output shows in a failure report
            node.spawn(spec.command)


def _sysctls(role: Role, ipv6: bool) -> dict[str, str]:
    """A new namespace's sysctls, written in the worker hop that creates it.

    Switches forward IPv6 frames without an IPv6 stack of their own.
    """
    on = ipv6 and role.visible
    sysctls = dict(IPV6_ON if on else IPV6_OFF if kernel_has_ipv6() else {})
    if role == Role.ROUTER:
        sysctls["net.ipv4.ip_forward"] = "1"
        if on:
            sysctls["net.ipv6.conf.all.forwarding"] = "1"
    return sysctls


def random_mac() -> str:
    """A locally administered unicast MAC (46 random bits: collisions are not a concern)."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


class Constructor:
    """Creates what one plan describes, into one topology."""

    def __init__(self, plan: Plan, topo: Topology) -> None:
        self.plan = plan
        self.topo = topo

    def build(self) -> None:
        self._create_nodes()
        try:
            for seg in self.plan.segments:
                self._create_segment(seg)
            self._namespaces.finish()
        except BaseException:
            self._namespaces.abandon()
            raise
        self._create_routes()
        self._publish_names()
        if self.plan.ipv6:
            self._wait_for_ipv6_addresses()

    def _wait_for_ipv6_addresses(self) -> None:
        """Return only once no address of a node is tentative.

        Without DAD (see IPV6_ON) the kernel still clears a new address's
        tentative flag from a work queue, and a link-local address appears
        only when the link's carrier is seen; on a busy machine either can lag
        the build by a few milliseconds, and a tentative address sends nothing.
        """
        deadline = time.monotonic() + TENTATIVE_WAIT
        for node in self.topo.nodes.values():
            while any(a.tentative for a in node.netlink.addresses(socket.AF_INET6)):
                if time.monotonic() > deadline:
                    log.warning("IPv6 addresses of %s still tentative after %.1f s",
                                node.name, TENTATIVE_WAIT)
                    return
                time.sleep(0.001)

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
        # namespaces are made in the background while containers start and links are made
        self._namespaces = _Namespaces(self.topo, [
            s for s in specs if s.attach is None and s.backend == "namespace"], self.plan.ipv6)
        if containers:
            try:
                self._start_containers(containers)
            except BaseException:
                self._namespaces.abandon()
                raise

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
                if self.plan.ipv6:
                    node.netlink.sysctls(IPV6_ON)  # Docker disables IPv6 in every container

    def _attach(self, spec: NodeSpec) -> None:
        from ..nodes.container import attach_container

        node = attach_container(spec.attach, spec.name, self.topo.session)
        self.topo.add_node(node, spec.role)
        if self.plan.ipv6:
            self._enable_ipv6_attached(node)
        clash = node.netlink.existing(set(self.plan.explicit_ifnames.get(spec.name, ())))
        if clash:
            raise InterfaceNameError(
                f"interface {sorted(clash)[0]!r} already exists in attached container "
                f"{node.name!r}: pick another iface, or leave it out and pytest-netns will "
                "choose a free name"
            )

    def _enable_ipv6_attached(self, node: Node) -> None:
        """IPv6 on in a container we do not own; what it had is restored when we let go.

        Only "all" and "default" are put back: "all" reaches every interface,
        and ours are gone by then (taken out of service at close).
        """
        keys = list(IPV6_ON)
        before = {key: node.netlink.sysctl(key) for key in keys}
        if before == IPV6_ON:
            return
        node.netlink.sysctls(IPV6_ON)
        self.topo.on_teardown(lambda: node.netlink.sysctls(before))

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

    def _end(self, node: str, ifname: str | None, ip: str, ip6: str | None) -> End:
        self._namespaces.ready(node)
        return End(node, ifname or self._next_ifname(self.topo.nodes[node]), ip, ip6,
                   mac=random_mac())

    def _create_segment(self, seg: PlannedSegment) -> None:
        topo, prefixlen = self.topo, seg.subnet.prefixlen
        prefixlen6 = seg.subnet6.prefixlen if seg.subnet6 is not None else None
        links: list[Link] = []
        detail = "veth"
        if seg.kind == SegmentKind.SWITCH:
            detail = "br0"
            self._namespaces.ready(seg.name)
            bridge = topo.nodes[seg.name].netlink.add_bridge(detail)
            # in chunks: the first ports are made while later members' namespaces are
            for first in range(0, len(seg.ends), PORTS_AT_ONCE):
                ports = [SwitchPort(seg.name, prefixlen, self._end(e.node, e.ifname, e.ip, e.ip6),
                                    End(seg.name, f"p{port}", None), bridge, prefixlen6)
                         for port, e in enumerate(seg.ends[first:first + PORTS_AT_ONCE],
                                                  first)]
                for port_link in ports:  # handed over first: teardown covers a half-made one
                    topo.add_link(port_link)
                SwitchPort.create_all(ports, topo)
                links += ports
        elif seg.kind == SegmentKind.STUB:
            (e,) = seg.ends
            assert e.ifname is not None
            self._namespaces.ready(e.node)
            stub = GuestNic(seg.name, prefixlen, End(e.node, e.ifname, e.ip, e.ip6),
                            seg.stub_kind, prefixlen6)
            links.append(self._add(stub))
            detail = stub.chosen
        else:
            e0, e1 = seg.ends
            a = self._end(e0.node, e0.ifname, e0.ip, e0.ip6)
            if e1.node == HOST:
                made_up = e1.ifname is None
                b = End(HOST, e1.ifname or topo.session.ifname("h"), e1.ip, e1.ip6)
                link: Link = (NatUplink(seg.name, prefixlen, (a, b), str(seg.subnet),
                                        seg.real_uplink, prefixlen6, made_up) if seg.nat_router
                              else HostLink(seg.name, prefixlen, (a, b), prefixlen6, made_up))
            else:
                link = NodeLink(seg.name, prefixlen,
                                (a, self._end(e1.node, e1.ifname, e1.ip, e1.ip6)), prefixlen6)
            links.append(self._add(link))
        ends = [e for link in links for e in link.ends if e.ip is not None]
        topo.segments[seg.name] = Segment(
            seg.name, seg.kind, seg.subnet, tuple(Member(e.node, e.ifname, e.ip or "")
                                                  for e in ends),
            detail, seg.subnet6, {e.node: e.ip6 for e in ends if e.ip6})

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
        # node -> its router's addresses on the first segment they share
        gateways: dict[str, tuple[str, str | None]] = {}
        for seg in topo.segments.values():
            router = next((m for m in seg.members if m.node in routers), None)
            if router is not None:
                for member in seg.members:
                    gateways.setdefault(member.node, (router.ip, seg.ip6_of(router.node)))
        for spec in self.plan.nodes:
            if spec.role != Role.NODE or spec.name not in gateways:
                continue
            gateway, gateway6 = gateways[spec.name]
            node = topo.nodes[spec.name]
            node.netlink.add_route("0.0.0.0/0", gateway=gateway)
            node.routes.append(("default", gateway))
            if gateway6:
                node.netlink.add_route("::/0", gateway=gateway6)
                node.routes.append(("default", gateway6))
        for route in self.plan.routes:
            node = topo.nodes[route.node]
            node.netlink.add_route(route.dst, gateway=route.via)
            node.routes.append((route.dst, route.via))

    # -- names ------------------------------------------------------------------

    def _publish_names(self) -> None:
        """Every visible node resolves the others: containers get their /etc/hosts
        written now, namespace nodes when they first start a process."""
        topo = self.topo
        topo.aliases = {s.name: s.aliases for s in self.plan.nodes if s.aliases}
        for name in topo.members():
            node = topo.nodes[name]
            node.update_names(names.edit_for(topo, node))
            topo.named.append(node)

    # -- verification -----------------------------------------------------------

    @staticmethod
    def verify(plan: Plan, topo: Topology) -> None:
        """Prove every segment and the plan's expectations (see `verify.py`)."""
        from .verify import verify

        verify(plan, topo)


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
