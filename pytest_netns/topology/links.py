"""Links as objects: one class per kind, each creating and removing itself.

Every link a topology has is one of these:

- `NodeLink`: a veth between two nodes;
- `SwitchPort`: a veth between a node and a port of a switch's bridge;
- `HostLink`: a veth between a node and the host's root namespace;
- `NatUplink`: a host link whose router end masquerades what it forwards;
- `GuestNic`: an interface with nothing at the other end (dummy, ifb, or a
  veth whose peer is parked in a namespace of its own).

A link knows its ends (`End`: node, interface, address), how to create
itself, how to take itself apart at teardown, and where a capture sees all
of its traffic. Teardown is cheap by design: a link inside namespaces we
own goes with them (deleting a namespace makes the kernel reap its links),
so only the ends we cannot leave to the kernel (the host's end, an
interface put into an attached container) are taken out of service at
once and deleted later by the janitor.
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..errors import UnsupportedKindError
from ..kernel.janitor import Janitor
from ..kernel.nat import enable_masquerade
from ..kernel.netns import create_named_netns
from ..nodes.base import Interface, Node
from ..nodes.host import host
from ..nodes.namespace import NamespaceNode
from .spec import HOST, Role

if TYPE_CHECKING:
    from ..kernel.uplink import UplinkChanges
    from .topology import Topology

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class End:
    """One end of a link: a node (a switch, or "host"), its interface, its address."""

    node: str
    ifname: str
    ip: str | None  # None for a switch's port, which carries no address
    ip6: str | None = None


@dataclass(frozen=True)
class TapPoint:
    """Where a capture sees every frame of a link once: an interface, and which directions."""

    segment: str
    node: str  # the node whose namespace holds the interface
    ifname: str
    ingress_only: bool


class Link(ABC):
    """One link of a topology; subclasses say how each kind is made and unmade."""

    kind: ClassVar[str]

    def __init__(self, segment: str, prefixlen: int, ends: tuple[End, ...],
                 prefixlen6: int | None = None) -> None:
        self.segment = segment
        self.prefixlen = prefixlen
        self.prefixlen6 = prefixlen6
        self.ends = ends

    @abstractmethod
    def create(self, topo: Topology) -> None:
        """Make the link and configure its ends; record each end as it comes to exist."""

    def teardown(self, topo: Topology, janitor: Janitor) -> None:
        """Take out of service what the kernel will not reap with our namespaces.

        Interfaces put into a node we do not own (an attached container) are
        emptied, set down and renamed now, so their names and addresses are
        free for the next test, and deleted by the janitor.
        """
        for end in self.ends:
            node = topo.nodes.get(end.node)
            if node is not None and not node.owned and self._recorded(node, end):
                self._retire(node, end, topo, janitor)

    def tap(self) -> TapPoint:
        """Where a capture sees every frame of this link exactly once."""
        end = next(e for e in self.ends if e.node != HOST)
        return TapPoint(self.segment, end.node, end.ifname, False)

    def connects(self, a: str, b: str) -> bool:
        names = [e.node for e in self.ends]
        return len(names) == 2 and {a, b} == set(names) and a != b

    def end(self, node: str) -> End:
        return next(e for e in self.ends if e.node == node)

    # -- shared steps -----------------------------------------------------------

    def _record(self, topo: Topology, node: Node, end: End) -> None:
        """Note an interface once it exists: teardown handles what is noted, and must
        never touch a same-named interface an attached container already had."""
        node.interfaces.append(self._interface(topo, end, self.kind))

    def _interface(self, topo: Topology, end: End, kind: str) -> Interface:
        return Interface(end.ifname, end.ip, self.prefixlen, self.segment, kind,
                         topo.network_id(self.segment), end.ip6,
                         self.prefixlen6 if end.ip6 else None)

    def _recorded(self, node: Node, end: End) -> bool:
        return any(i.ifname == end.ifname and i.segment == self.segment for i in node.interfaces)

    def _addresses(self, end: End) -> list[tuple[str, int]]:
        found = [(end.ip, self.prefixlen)] if end.ip else []
        if end.ip6 and self.prefixlen6 is not None:
            found.append((end.ip6, self.prefixlen6))
        return found

    @staticmethod
    def _tag(topo: Topology, node: Node) -> str | None:
        """Links put into a namespace we do not own carry our alias, so sweeps find them."""
        return None if node.owned else topo.session.alias

    def _retire(self, node: Node, end: End, topo: Topology, janitor: Janitor) -> None:
        index = node.netlink.retire(end.ifname, topo.session.ifname("x"), self._addresses(end))
        if index is not None:
            janitor.defer(functools.partial(node.netlink.delete_link, index))

    def __repr__(self) -> str:
        ends = " <-> ".join(f"{e.node}:{e.ifname}" for e in self.ends)
        return f"<{type(self).__name__} {self.segment} {ends}>"


class NodeLink(Link):
    """A veth between two nodes (containers, namespaces, routers)."""

    kind = "veth"

    def create(self, topo: Topology) -> None:
        a, b = self.ends
        node, peer = topo.nodes[a.node], topo.nodes[b.node]
        node.netlink.add_veth(a.ifname, b.ifname, peer.netns_fd(), alias=self._tag(topo, node))
        self._record(topo, node, a)
        self._record(topo, peer, b)
        # the peer first: bringing it up turns both carriers on, and configuring
        # the creator's end afterwards applies that change on its side at once
        peer.netlink.configure(b.ifname, self._addresses(b), self._tag(topo, peer))
        node.netlink.configure(a.ifname, self._addresses(a))


class SwitchPort(Link):
    """A veth from a node to a port of a switch's bridge; the port carries no address."""

    kind = "veth"

    def __init__(self, segment: str, prefixlen: int, member: End, port: End,
                 bridge: int, prefixlen6: int | None = None) -> None:
        super().__init__(segment, prefixlen, (member, port), prefixlen6)
        self.bridge = bridge

    def create(self, topo: Topology) -> None:
        member, port = self.ends
        switch, node = topo.nodes[port.node], topo.nodes[member.node]
        switch.netlink.add_veth(port.ifname, member.ifname, node.netns_fd(), master=self.bridge)
        self._record(topo, node, member)
        node.netlink.configure(member.ifname, self._addresses(member), self._tag(topo, node))
        switch.netlink.activate(port.ifname)  # its carrier came on with the node's end

    def tap(self) -> TapPoint:
        """The bridge port, ingress only: every frame enters the bridge through one port."""
        port = self.ends[1]
        return TapPoint(self.segment, port.node, port.ifname, True)


class HostLink(Link):
    """A veth between a node and the host's root namespace."""

    kind = "veth"

    def create(self, topo: Topology) -> None:
        end, host_end = self.ends
        node = topo.nodes[end.node]
        host().netlink.add_veth(host_end.ifname, end.ifname, node.netns_fd(),
                                alias=topo.session.alias)
        topo.add_host_interface(self._interface(topo, host_end, self.kind))
        self._record(topo, node, end)
        host().netlink.configure(host_end.ifname, self._addresses(host_end),
                                 sysctls=self._host_sysctls(host_end))
        node.netlink.configure(end.ifname, self._addresses(end), self._tag(topo, node))
        host().netlink.activate(host_end.ifname)  # its carrier came on with the node's end

    @staticmethod
    def _host_sysctls(host_end: End) -> dict[str, str]:
        """With IPv6, for our own interface only, before its carrier comes on: it takes
        no router advertisements, skips DAD (see construct.IPV6_ON), and has IPv6 even
        where the host's default is to disable it."""
        if not host_end.ip6:
            return {}
        conf = f"net/ipv6/conf/{host_end.ifname}"
        return {f"{conf}/accept_ra": "0", f"{conf}/accept_dad": "0",
                f"{conf}/keep_addr_on_down": "0", f"{conf}/disable_ipv6": "0"}

    def teardown(self, topo: Topology, janitor: Janitor) -> None:
        """Free the host end's name and route now; the janitor deletes it later.

        Deleting a veth waits ~20 ms for the kernel; taking its address
        away and renaming it does not, and a fixed subnet or host-side name
        can then be used again by the very next topology.
        """
        super().teardown(topo, janitor)
        host_end = self.ends[1]
        if not self._recorded(host(), host_end):
            return
        addresses = self._addresses(host_end)
        if not _host_keeps_ipv6_on_down():  # setting it down removes its IPv6 addresses
            addresses = [a for a in addresses if ":" not in a[0]]
        index = host().netlink.retire(host_end.ifname, topo.session.ifname("x"), addresses)
        if index is not None:
            janitor.delete_host_link(index)


@functools.cache
def _host_keeps_ipv6_on_down() -> bool:
    """Whether the host keeps IPv6 addresses on links set down (keep_addr_on_down in
    "all" wins over ours, which we set to 0)."""
    try:
        return host().netlink.sysctl("net.ipv6.conf.all.keep_addr_on_down") not in ("0", "-1")
    except OSError:  # no IPv6 in this kernel
        return False


class NatUplink(HostLink):
    """A host link from a router that masquerades what it forwards upstream.

    With `real_uplink` the router also gets a route off the machine through
    the host, which changes the host as `kernel/uplink.py` documents (and is
    undone at teardown).
    """

    def __init__(self, segment: str, prefixlen: int, ends: tuple[End, ...], subnet: str,
                 real_uplink: bool, prefixlen6: int | None = None) -> None:
        super().__init__(segment, prefixlen, ends, prefixlen6)
        self.subnet = subnet
        self.real_uplink = real_uplink
        self.uplink: UplinkChanges | None = None
        self.nat_tool: str | None = None

    def create(self, topo: Topology) -> None:
        super().create(topo)
        end, host_end = self.ends
        router = topo.nodes[end.node]
        self.nat_tool = enable_masquerade(router.run_tool, topo.session.nft_table, end.ifname,
                                          ipv6=end.ip6 is not None)
        if self.real_uplink:
            from ..kernel import uplink

            self.uplink = uplink.install(topo.session.id, host_end.ifname, self.subnet)
            assert host_end.ip is not None
            router.netlink.add_route("0.0.0.0/0", gateway=host_end.ip)
            router.routes.append(("default", host_end.ip))

    def teardown(self, topo: Topology, janitor: Janitor) -> None:
        if self.uplink is not None:
            from ..kernel.uplink import restore

            restore(self.uplink)
            self.uplink = None
        super().teardown(topo, janitor)


class GuestNic(Link):
    """A guest-only NIC: an address, and nothing at the other end.

    The article's recipe uses a `dummy` interface; where the kernel has no
    dummy driver, an `ifb`, and failing that a veth whose peer is parked in
    a namespace of its own. `chosen` says which was made.
    """

    kind = "stub"
    CANDIDATES = ("dummy", "ifb", "veth")

    def __init__(self, segment: str, prefixlen: int, end: End, wanted: str | None,
                 prefixlen6: int | None = None) -> None:
        super().__init__(segment, prefixlen, (end,), prefixlen6)
        self.wanted = wanted
        self.chosen = ""

    def create(self, topo: Topology) -> None:
        (end,) = self.ends
        node = topo.nodes[end.node]
        self.chosen = self._create(topo, node, end.ifname)
        node.interfaces.append(self._interface(topo, end, self.chosen))
        node.netlink.configure(end.ifname, self._addresses(end), self._tag(topo, node))

    def _create(self, topo: Topology, node: Node, ifname: str) -> str:
        for cand in [self.wanted] if self.wanted else self.CANDIDATES:
            try:
                if cand == "veth":
                    path, thread = create_named_netns(topo.session.netns_name("stubpeer"))
                    parked = NamespaceNode(f"{node.name}-stub-peer", path, thread)
                    topo.add_node(parked, Role.HIDDEN)
                    parked.netlink.add_veth("peer0", ifname, node.netns_fd())
                else:
                    node.netlink.add_simple(ifname, cand)
                return cand
            except UnsupportedKindError:
                if self.wanted:
                    raise UnsupportedKindError(
                        f"kind={self.wanted!r} was asked for, but this kernel has no "
                        f"{self.wanted} driver (`ip link add x type {self.wanted}` fails); "
                        "leave kind unset to use the best available guest-only interface "
                        "(ifb or veth)"
                    ) from None
        raise UnsupportedKindError("no guest-only interface kind works on this kernel")
