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
of its traffic. Every link with two ends can also misbehave on demand:
`impair()` (delay, jitter, loss, rate, duplicate, corrupt, reorder, per
direction), `down()`/`up()` and `flapping()`, which `faults.py` maps onto
the kernel's mechanisms. Teardown is cheap by design: a link inside namespaces we
own goes with them (deleting a namespace makes the kernel reap its links),
so only the ends we cannot leave to the kernel (the host's end, an
interface put into an attached container) are taken out of service at
once and deleted later by the janitor.
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InvalidImpairmentError, UnsupportedKindError
from ..kernel.janitor import Janitor
from ..kernel.nat import enable_masquerade
from ..kernel.netlink import Veth
from ..kernel.netns import call_each, create_named_netns
from ..nodes.base import Interface, Node
from ..nodes.host import host
from ..nodes.namespace import NamespaceNode
from .spec import HOST, Role

if TYPE_CHECKING:
    from ..kernel.uplink import UplinkChanges
    from .faults import Flapping, LinkFaults
    from .topology import Topology

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class End:
    """One end of a link: a node (a switch, or "host"), its interface, its address, its MAC."""

    node: str
    ifname: str
    ip: str | None  # None for a switch's port, which carries no address
    ip6: str | None = None
    mac: str | None = None  # chosen by the builder, so neighbours can be told in advance


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
        self.topology: Topology | None = None  # set when the topology adopts it

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

    # -- faults (topology/faults.py) ------------------------------------------------

    @property
    def directions(self) -> tuple[str, ...]:
        """The two directions of the link, as `impair(direction=...)` names them."""
        if len(self.ends) != 2:
            return ()
        a, b = self.ends
        return (f"{a.node}->{b.node}", f"{b.node}->{a.node}")

    def _faults(self) -> LinkFaults:
        if len(self.ends) != 2 or self.topology is None:
            raise InvalidImpairmentError(
                f"{self!r} has no other end to impair, cut or flap (a guest-only NIC); "
                "impair a link between two things of the topology")
        return self.topology.faults.for_link(self)

    def impair(self, *, delay: float | str | None = None, jitter: float | str | None = None,
               loss: float | str | None = None, rate: int | str | None = None,
               duplicate: float | str | None = None, corrupt: float | str | None = None,
               reorder: float | str | None = None, distribution: str = "uniform",
               direction: str = "both") -> None:
        """Make the link misbehave, replacing what the named direction(s) had before.

        Times are seconds or strings ("50ms", "1.5s", "200us"), percentages
        0-100, rates bit/s or strings ("10mbit", "500kbit", "1gbit").
        `jitter` varies the delay (uniformly within +-jitter, or with
        `distribution="normal"`, with that standard deviation); `reorder`
        sends that share of packets at once, ahead of the delayed ones.
        `direction` is "both" or "x->y" with the two ends' names (`directions`).
        Each change is checked once made; bad values raise before anything
        changes.
        """
        self._faults().impair(direction, delay=delay, jitter=jitter, loss=loss, rate=rate,
                              duplicate=duplicate, corrupt=corrupt, reorder=reorder,
                              distribution=distribution)

    @contextmanager
    def impaired(self, *, delay: float | str | None = None, jitter: float | str | None = None,
                 loss: float | str | None = None, rate: int | str | None = None,
                 duplicate: float | str | None = None, corrupt: float | str | None = None,
                 reorder: float | str | None = None, distribution: str = "uniform",
                 direction: str = "both") -> Iterator[Link]:
        """`impair(...)` for the `with` block; afterwards the link is as it was."""
        with self._faults().impaired(direction, delay=delay, jitter=jitter, loss=loss,
                                     rate=rate, duplicate=duplicate, corrupt=corrupt,
                                     reorder=reorder, distribution=distribution):
            yield self

    def clear(self) -> None:
        """Remove every impairment (both directions); frames already delayed still arrive."""
        if self.topology is not None and self.topology.fault_state is not None:
            self._faults().clear()

    @property
    def impairment(self) -> dict[str, dict[str, Any]]:
        """What is set now, per direction: `{"a->b": {"delay": 0.04, "loss": 1.0}}`.

        Times in seconds, percentages 0-100, rate in bit/s; only directions
        that are impaired appear, so an unimpaired link gives `{}`.
        """
        if self.topology is None or self.topology.fault_state is None or len(self.ends) != 2:
            return {}
        return {name: imp.as_dict() for name, imp in self._faults().current().items()}

    def down(self) -> None:
        """Cut the link: both ends drop everything they receive (ARP too) until `up()`.

        Routes and addresses stay, nothing queued is delivered later, and
        senders see no error: as with a pulled cable, only silence.
        """
        self._faults().down()

    def up(self) -> None:
        """End a cut (idempotent)."""
        if self.topology is not None and self.topology.fault_state is not None:
            self._faults().up()

    @property
    def is_up(self) -> bool:
        if self.topology is None or self.topology.fault_state is None or len(self.ends) != 2:
            return True
        return self._faults().is_up

    @contextmanager
    def flapping(self, period: float | str = 1.0,
                 down_for: float | str | None = None) -> Iterator[Flapping]:
        """Down for `down_for` (default: half the period) in every `period`, during the block.

        Yields the `Flapping`, whose `flaps` counts the cuts so far; the link
        is up again when the block ends.
        """
        with self._faults().flapping(period, down_for) as flap:
            yield flap

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
        node.netlink.add_veth(a.ifname, b.ifname, peer.handle, alias=self._tag(topo, node),
                              mac=a.mac, peer_mac=b.mac)
        self._record(topo, node, a)
        self._record(topo, peer, b)
        # the peer first: bringing it up turns both carriers on, and configuring
        # the creator's end afterwards applies that change on its side at once
        peer.netlink.configure(b.ifname, self._addresses(b), self._tag(topo, peer))
        node.netlink.configure(a.ifname, self._addresses(a))


class SwitchPort(Link):
    """A veth from a node to a port of a switch's bridge; the port carries no address.

    Ports are made in batches (`create_all`). A switch has no IPv6 of its own
    (its ports only bridge frames), and a member of a topology without IPv6
    has none either (`construct.IPV6_OFF`): what every member would send by
    itself when its link comes up (duplicate address detection, MLD
    reports, router solicitations) is flooded to every other member, n²
    packets for n members, and at a few hundred members the kernel spent
    most of the build delivering them.
    """

    kind = "veth"

    def __init__(self, segment: str, prefixlen: int, member: End, port: End,
                 bridge: int, prefixlen6: int | None = None) -> None:
        super().__init__(segment, prefixlen, (member, port), prefixlen6)
        self.bridge = bridge

    def create(self, topo: Topology) -> None:
        self.create_all([self], topo)

    @classmethod
    def create_all(cls, ports: Sequence[SwitchPort], topo: Topology) -> None:
        """Make the ports of one switch in three worker hops, however many there are.

        The veths are created in the switch's namespace, every member's end
        is then configured by one worker entering each member in turn, and
        the switch's carriers are applied last. A member we do not own (an
        attached container) gets its port on its own, so that each
        interface put into it is recorded only once it exists.
        """
        if not ports:
            return
        switch = topo.nodes[ports[0].ends[1].node]
        batch = [p for p in ports if topo.nodes[p.ends[0].node].owned]
        for port in ports:
            if port not in batch:
                port._create_veths(topo, switch, [port])
                port._configure(topo, [port])
        if batch:
            cls._create_veths(topo, switch, batch)
            cls._configure(topo, batch)

    @staticmethod
    def _create_veths(topo: Topology, switch: Node, ports: Sequence[SwitchPort]) -> None:
        switch.netlink.add_veths([
            Veth(p.ends[1].ifname, p.ends[0].ifname, topo.nodes[p.ends[0].node].handle,
                 p.ends[0].mac, master=p.bridge) for p in ports])
        for p in ports:
            p._record(topo, topo.nodes[p.ends[0].node], p.ends[0])

    @staticmethod
    def _configure(topo: Topology, ports: Sequence[SwitchPort]) -> None:
        work = []
        for p in ports:
            member, node = p.ends[0], topo.nodes[p.ends[0].node]
            work.append((node.handle, node.netlink.configuring(
                member.ifname, p._addresses(member), p._tag(topo, node))))
        call_each(work)
        # the ports' carriers came on with the members' ends
        topo.nodes[ports[0].ends[1].node].netlink.activate(*(p.ends[1].ifname for p in ports))

    def tap(self) -> TapPoint:
        """The bridge port, ingress only: every frame enters the bridge through one port."""
        port = self.ends[1]
        return TapPoint(self.segment, port.node, port.ifname, True)


class HostLink(Link):
    """A veth between a node and the host's root namespace."""

    kind = "veth"

    def __init__(self, segment: str, prefixlen: int, ends: tuple[End, ...],
                 prefixlen6: int | None = None, made_up_name: bool = False) -> None:
        super().__init__(segment, prefixlen, ends, prefixlen6)
        #: the host end's name is one the session made up (unique): nobody asks for it again
        self.made_up_name = made_up_name

    def create(self, topo: Topology) -> None:
        end, host_end = self.ends
        node = topo.nodes[end.node]
        host().netlink.add_veth(host_end.ifname, end.ifname, node.handle,
                                alias=topo.session.alias, peer_mac=end.mac)
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
        can then be used again by the very next topology. A name the
        session made up is never asked for again: it is kept (renaming is
        the dear step), and the link only loses its addresses and goes down.
        """
        super().teardown(topo, janitor)
        host_end = self.ends[1]
        if not self._recorded(host(), host_end):
            return
        addresses = self._addresses(host_end)
        if not _host_keeps_ipv6_on_down():  # setting it down removes its IPv6 addresses
            addresses = [a for a in addresses if ":" not in a[0]]
        tombstone = None if self.made_up_name else topo.session.ifname("x")
        index = host().netlink.retire(host_end.ifname, tombstone, addresses)
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
                 real_uplink: bool, prefixlen6: int | None = None,
                 made_up_name: bool = False) -> None:
        super().__init__(segment, prefixlen, ends, prefixlen6, made_up_name)
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
                    handle = create_named_netns(topo.session.netns_name("stubpeer"))
                    parked = NamespaceNode(f"{node.name}-stub-peer", handle)
                    topo.add_node(parked, Role.HIDDEN)
                    parked.netlink.add_veth("peer0", ifname, node.handle)
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
