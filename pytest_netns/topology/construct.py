"""Turning a checked, addressed topology description into kernel objects.

The builder (builder.py) validates a description and reserves its subnets;
this half creates what it describes, in order: nodes (namespaces, started
or attached containers), then segments (bridges, veths, guest-only NICs,
NAT), then routes, and finally proves the expected paths with probes. Any
failure propagates to `TopologyBuilder.build`, which removes what exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .addressing import Network
from .errors import InterfaceNameError, UnsupportedKindError, VerificationError
from .images import DEFAULT_COMMAND
from .namespaces import create_named_netns
from .nat import enable_masquerade
from .nodes import Interface, NamespaceNode, Node, host
from .segments import HOST, NodeSpec, Segment, SegmentSpec
from .session import Session

if TYPE_CHECKING:
    from .topology import Topology


class Construction:
    """The creating half of `TopologyBuilder` (a mixin over its description)."""

    session: Session
    label: str
    _nodes: dict[str, NodeSpec]
    _segments: dict[str, SegmentSpec]
    _routes: list[tuple[str, str, str]]
    _expect: list[tuple[str, str, str]]
    _explicit_ifnames: dict[str, set[str]]

    def _create_nodes(self, topo: Topology) -> None:
        containers = [s for s in self._nodes.values()
                      if s.role == "node" and s.backend == "docker" and s.attach is None]
        if containers:
            self._check_images(containers)
        for spec in self._nodes.values():
            if spec.attach is not None:  # first: attaching creates nothing, and is checked
                self._attach(topo, spec)
        for spec in self._nodes.values():
            if spec.attach is None and spec.backend == "namespace":
                path, thread = create_named_netns(self.session.netns_name(spec.role))
                node = NamespaceNode(spec.name, path, thread)
                topo.add_node(node, spec.role)
                node.netlink.set_up(1)  # lo
                if spec.role == "node" and spec.command and spec.command != DEFAULT_COMMAND:
                    # the namespace backend's stand-in for a container's main process
                    node.spawn(list(spec.command) if not isinstance(spec.command, str)
                               else [spec.command])
                if spec.role == "router":
                    node.netlink.sysctl("net.ipv4.ip_forward", "1")
        if containers:
            from .containers import start_containers

            groups: dict[tuple[str, str], list[NodeSpec]] = {}
            for s in containers:
                key = (s.image or "", repr(s.command) + repr(sorted(s.run_kwargs.items())))
                groups.setdefault(key, []).append(s)
            for group in groups.values():
                first = group[0]
                image = first.image
                if image is None:
                    from .images import DEFAULT_IMAGE

                    image = DEFAULT_IMAGE
                nodes = start_containers(
                    self.session, [s.name for s in group], image, first.command,
                    **first.run_kwargs,
                )
                for n in nodes:
                    topo.add_node(n, "node")

    def _check_images(self, specs: list[NodeSpec]) -> None:
        """The engine answers and every image is here (or is ours to build), before
        the first namespace exists; images are never pulled."""
        from .containers import docker_client
        from .images import DEFAULT_IMAGE, ensure_image

        client = docker_client()
        for image in dict.fromkeys(s.image or DEFAULT_IMAGE for s in specs):
            ensure_image(client, image)

    def _attach(self, topo: Topology, spec: NodeSpec) -> None:
        from .containers import attach_container

        node = attach_container(spec.attach, spec.name)
        topo.add_node(node, spec.role)
        clash = node.netlink.existing(self._explicit_ifnames.get(spec.name, set()))
        if clash:
            raise InterfaceNameError(
                f"interface {sorted(clash)[0]!r} already exists in attached container "
                f"{node.name!r}: pick another iface, or leave it out and pytest-netns will "
                "choose a free name"
            )

    def _next_ifname(self, node: Node) -> str:
        """The first free ethN, skipping names asked for explicitly and, in a
        container we do not own, the interfaces it already has."""
        used = {i.ifname for i in node.interfaces} | self._explicit_ifnames.get(node.name, set())
        if not getattr(node, "owned", True):
            used |= {str(ln["ifname"]) for ln in node.netlink.links()}
        n = 1
        while f"eth{n}" in used:
            n += 1
        return f"eth{n}"

    def _create_segments(
        self, topo: Topology, subnets: dict[str, Network], addresses: dict[tuple[str, int], str]
    ) -> None:
        for seg in self._segments.values():
            net = subnets[seg.name]
            ips = [addresses[(seg.name, i)] for i in range(len(seg.endpoints))]
            if seg.kind == "switch":
                members, detail = self._build_switch(topo, seg, net, ips), "br0"
            elif seg.kind == "stub":
                members, detail = self._build_stub(topo, seg, net)
            else:
                members, detail = self._build_link(topo, seg, net, ips), "veth"
            topo.segments[seg.name] = Segment(seg.name, seg.kind, net, tuple(members), detail)
            if seg.nat_router:
                router = topo.nodes[seg.nat_router]
                built = topo.segments[seg.name]
                out_if = built.ifname_of(seg.nat_router)
                topo.nat_tool = enable_masquerade(router.thread, self.session.nft_table, out_if)
                if seg.real_uplink:
                    from . import uplink

                    topo.uplink = uplink.install(
                        self.session.id, built.ifname_of(HOST), str(built.subnet)
                    )
                    gateway = built.ip_of(HOST)
                    router.netlink.add_route("0.0.0.0/0", gateway=gateway)
                    router.routes.append(("default", gateway))

    def _tag(self, node: Node) -> str | None:
        """Links put into a namespace we do not own carry our alias, so sweeps find them."""
        return None if getattr(node, "owned", True) else self.session.alias

    @staticmethod
    def _record(node: Node, ifname: str, seg: str, ip: str, prefixlen: int) -> None:
        """Note an interface once it exists: teardown deletes what is noted, and must
        never delete a same-named interface that an attached container already had."""
        node.interfaces.append(Interface(ifname, ip, prefixlen, seg, "veth"))

    def _build_switch(
        self, topo: Topology, seg: SegmentSpec, net: Network, ips: list[str]
    ) -> list[tuple[str, str, str]]:
        sw = topo.nodes[seg.name]
        bridge = sw.netlink.add_bridge("br0")
        members = []
        for port, (e, ip) in enumerate(zip(seg.endpoints, ips, strict=True)):
            node = topo.nodes[e.node]
            ifname = e.ifname or self._next_ifname(node)
            sw.netlink.add_veth(f"p{port}", ifname, node.netns_fd(), master=bridge)
            self._record(node, ifname, seg.name, ip, net.prefixlen)
            node.netlink.configure(ifname, ip, net.prefixlen, self._tag(node))
            sw.netlink.activate(f"p{port}")  # its carrier came on with the node's end
            members.append((node.name, ifname, ip))
        return members

    def _build_link(
        self, topo: Topology, seg: SegmentSpec, net: Network, ips: list[str]
    ) -> list[tuple[str, str, str]]:
        e0, e1 = seg.endpoints
        node = topo.nodes[e0.node]
        if0 = e0.ifname or self._next_ifname(node)
        if e1.node == HOST:
            host_if = e1.ifname or self.session.ifname("h")
            host().netlink.add_veth(host_if, if0, node.netns_fd(), alias=self.session.alias)
            topo.host_links.append(host_if)
            self._record(node, if0, seg.name, ips[0], net.prefixlen)
            host().netlink.configure(host_if, ips[1], net.prefixlen)
            node.netlink.configure(if0, ips[0], net.prefixlen, self._tag(node))
            host().netlink.activate(host_if)  # its carrier came on with the node's end
            return [(node.name, if0, ips[0]), (HOST, host_if, ips[1])]
        peer = topo.nodes[e1.node]
        if1 = e1.ifname or self._next_ifname(peer)
        node.netlink.add_veth(if0, if1, peer.netns_fd(), alias=self._tag(node))
        self._record(node, if0, seg.name, ips[0], net.prefixlen)
        self._record(peer, if1, seg.name, ips[1], net.prefixlen)
        # the peer first: bringing it up turns both carriers on, and configuring
        # the creator's end afterwards applies that change on its side at once
        peer.netlink.configure(if1, ips[1], net.prefixlen, self._tag(peer))
        node.netlink.configure(if0, ips[0], net.prefixlen)
        return [(node.name, if0, ips[0]), (peer.name, if1, ips[1])]

    def _build_stub(
        self, topo: Topology, seg: SegmentSpec, net: Network
    ) -> tuple[list[tuple[str, str, str]], str]:
        (e,) = seg.endpoints
        assert e.ip is not None and e.ifname is not None
        node = topo.nodes[e.node]
        kind = self._create_stub(topo, node, e.ifname, seg.stub_kind)
        node.interfaces.append(Interface(e.ifname, str(e.ip), net.prefixlen, seg.name, kind))
        node.netlink.configure(e.ifname, str(e.ip), net.prefixlen, self._tag(node))
        return [(node.name, e.ifname, str(e.ip))], kind

    def _create_stub(self, topo: Topology, node: Node, ifname: str, kind: str | None) -> str:
        """The guest-only NIC: dummy where the kernel has it, else ifb, else veth."""
        candidates = [kind] if kind else ["dummy", "ifb", "veth"]
        for cand in candidates:
            try:
                if cand == "veth":
                    path, thread = create_named_netns(self.session.netns_name("stubpeer"))
                    parked = NamespaceNode(f"{node.name}-stub-peer", path, thread)
                    topo.add_node(parked, "hidden")
                    parked.netlink.add_veth("peer0", ifname, node.netns_fd())
                else:
                    node.netlink.add_simple(ifname, cand)
                return cand
            except UnsupportedKindError:
                if kind:
                    raise UnsupportedKindError(
                        f"kind={kind!r} was asked for, but this kernel has no {kind} driver "
                        f"(`ip link add x type {kind}` fails); leave kind unset to use the best "
                        "available guest-only interface (ifb or veth)"
                    ) from None
        raise UnsupportedKindError("no guest-only interface kind works on this kernel")

    def _create_routes(self, topo: Topology) -> None:
        routers = {n for n, s in self._nodes.items() if s.role == "router"}
        for name, spec in self._nodes.items():
            if spec.role != "node":
                continue
            node = topo.nodes[name]
            for seg in topo.segments.values():
                names = [m[0] for m in seg.members]
                if name not in names:
                    continue
                gw = next((ip for m, _, ip in seg.members if m in routers), None)
                if gw:
                    node.netlink.add_route("0.0.0.0/0", gateway=gw)
                    node.routes.append(("default", gw))
                    break
        for name, dst, via in self._routes:
            node = topo.nodes[name]
            node.netlink.add_route(dst, gateway=via)
            node.routes.append((dst, via))

    def _verify(self, topo: Topology) -> None:
        if not self._expect:
            return
        from .probes import ping

        for src, dst, seg in self._expect:
            src_node = host() if src == HOST else topo.nodes[src]
            dst_ip = topo.segments[seg].ip_of(dst)
            result = None
            for _ in range(3):
                result = ping(src_node, dst_ip, timeout=1.0)
                if result.ok:
                    break
            if result is None or not result.ok:
                raise VerificationError(
                    f"{self.label}: {src} cannot reach {dst} ({dst_ip}) over {seg} right after "
                    f"building it ({result}). Something on this host blocks the path; run "
                    "`pytest-netns doctor`, or pass verify=False to skip this check"
                )
