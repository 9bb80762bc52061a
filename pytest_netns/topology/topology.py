"""A built topology: its nodes, segments and links, and how to take it down.

Teardown goes in reverse order of building and prefers the cheap, complete
operation: deleting a namespace or removing a container makes the kernel
reap every link inside it. Each link takes apart only what the kernel will
not reap with our namespaces (the host's end, interfaces in an attached
container), and each node removes itself; the slow parts of both are
deferred to the janitor, which the session drains once at the end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import InvalidTopologyError
from ..kernel.janitor import janitor
from ..kernel.netns import remove_named_netns_all
from ..nodes.base import Interface, Node
from ..nodes.host import host
from ..ownership import Session
from . import names, registry
from .links import Link
from .segments import Segment
from .spec import AnyNetwork, Role
from .subnets import release

if TYPE_CHECKING:
    from .faults import Partition, TopologyFaults

log = logging.getLogger(__name__)


class Topology:
    """Nodes (by name), segments (by name), links, and a `close()` that is idempotent.

    A context manager: `with builder.build() as net: ...` closes it on exit.
    """

    def __init__(self, label: str, session: Session, reserved: Sequence[AnyNetwork]) -> None:
        self.label = label
        self.session = session
        self.uid = f"{session.id}.{session.next_number()}"
        self.nodes: dict[str, Node] = {}
        self.roles: dict[str, Role] = {}
        self.segments: dict[str, Segment] = {}
        self.links: list[Link] = []
        self.host_interfaces: list[Interface] = []
        #: node name -> its extra names (`aliases=`)
        self.aliases: dict[str, tuple[str, ...]] = {}
        #: nodes whose hosts file carries this topology's names
        self.named: list[Node] = []
        #: a topology shared by several tests (`netns_factory`), not one test's own
        self.scoped = False
        #: how many tests ran while it was up (shared topologies)
        self.tests_seen = 0
        self.build_seconds = 0.0
        self.teardown_seconds = 0.0
        #: kept alive for debugging (--netns-keep): never closed by this process
        self.kept = False
        self._reserved = list(reserved)
        self._order: list[Node] = []
        self._closed = False
        self._lock = threading.Lock()
        self._close_hooks: list[Callable[[], object]] = []
        #: faults (impairments, cuts, partitions), made on the first one
        self.fault_state: TopologyFaults | None = None
        self._teardown_hooks: list[Callable[[], object]] = []
        registry.register(self)

    # -- building -----------------------------------------------------------------

    def add_node(self, node: Node, role: Role) -> None:
        self.nodes[node.name] = node
        self.roles[node.name] = role
        self._order.append(node)

    def add_link(self, link: Link) -> None:
        link.topology = self
        self.links.append(link)

    def add_host_interface(self, iface: Interface) -> None:
        """The host's end of one of our links: probes from "host" may leave through it."""
        self.host_interfaces.append(iface)
        host().add_interfaces([iface])

    def on_teardown(self, hook: Callable[[], object]) -> None:
        """Run `hook` at teardown, after the links, before the nodes are let go of
        (what was changed in attached nodes is put back)."""
        self._teardown_hooks.append(hook)

    def network_id(self, segment: str) -> str:
        """An id for one of our segments that no other topology's segment has."""
        return f"{self.uid}/{segment}"

    # -- reading ------------------------------------------------------------------

    def __getitem__(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(
                f"no node {name!r} in {self.label}; it has {sorted(self.members())}"
            ) from None

    def members(self) -> list[str]:
        """Names of the user-visible nodes (not switches or parked stub peers)."""
        return [n for n, r in self.roles.items() if r.visible]

    def aliases_of(self, name: str) -> tuple[str, ...]:
        return self.aliases.get(name, ())

    def node_named(self, name: str) -> Node:
        """The visible node called `name`, or with `name` among its aliases (any case)."""
        wanted = name.lower() if isinstance(name, str) else name
        for member in self.members():
            if wanted in (member.lower(), *(a.lower() for a in self.aliases_of(member))):
                return self.nodes[member]
        known = [f"{m} ({', '.join(self.aliases_of(m))})" if self.aliases_of(m) else m
                 for m in self.members()]
        raise InvalidTopologyError(
            f"no node named {name!r} in {self.label}: its nodes are {', '.join(known)}"
        )

    def resolve(self, name: str, family: int = 4) -> str:
        """The address the test process should use for the node called `name` (or with
        that alias): its end of a link to the host if it has one, else its first
        address. `family=6` for its IPv6 address."""
        if family not in (4, 6):
            raise InvalidTopologyError(f"invalid family {family!r}: expected 4 or 6")
        node = self.node_named(name)
        address = node.address_for(host(), family)
        if address is None:
            raise InvalidTopologyError(
                f"node {node.name!r} of {self.label} has no IPv{family} address"
                + (": build the topology with ipv6=True" if family == 6 else "")
            )
        return address

    def link(self, x: Node | str, y: Node | str) -> Link:
        """The link between two adjacent things: two nodes, a node and a switch, or
        a node and "host"."""
        a, b = _name(x), _name(y)
        for link in self.links:
            if link.connects(a, b):
                return link
        pairs = [f"{ln.ends[0].node}-{ln.ends[1].node}" for ln in self.links
                 if len(ln.ends) == 2]
        raise InvalidTopologyError(
            f"{self.label} has no link between {a!r} and {b!r} (unknown, or not adjacent); "
            f"its links join {', '.join(pairs) or 'nothing'}"
        )

    @property
    def faults(self) -> TopologyFaults:
        """The topology's faults: made on first use, so a topology never impaired pays nothing."""
        with self._lock:
            if self.fault_state is None:
                from .faults import TopologyFaults

                self.fault_state = TopologyFaults(self)
            return self.fault_state

    def partition(self, *groups: Sequence[Node | str] | Node | str,
                  oneway: bool = False) -> Partition:
        """Drop traffic between groups of nodes (lists of nodes or names; "host" is one).

        Traffic inside a group is untouched; with `oneway=True` only what the
        first group sends to the others is dropped (ARP and neighbour
        discovery still pass, so the other way works). Several partitions may
        be active at once. `heal()` it, or use it as a context manager.
        """
        return self.faults.partition(groups, oneway)

    def ip_of(self, node: Node | str, segment: str) -> str:
        """`node`'s address on one of the topology's segments."""
        return self.segments[segment].ip_of(_name(node))

    @property
    def nat_tool(self) -> str | None:
        """Which firewall tool masquerades in a router ("nftables"/"iptables"), if any."""
        return next((t for t in (getattr(link, "nat_tool", None) for link in self.links) if t),
                    None)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- closing ------------------------------------------------------------------

    def on_close(self, hook: Callable[[], object]) -> None:
        """Run `hook` first thing in `close()` (captures must let go of the namespaces)."""
        self._close_hooks.append(hook)

    def forget_close_hook(self, hook: Callable[[], object]) -> None:
        """No longer run `hook` at close (a capture of a shared topology that stopped)."""
        if hook in self._close_hooks:
            self._close_hooks.remove(hook)

    def close(self) -> None:
        """Remove everything this topology created. Safe to call twice.

        A topology kept for debugging (--netns-keep) stays up: this process
        never closes it; `pytest-netns cleanup` removes it later.
        """
        with self._lock:
            if self._closed or self.kept:
                return
            self._closed = True
        for node in self._order:
            node.mark_closed(f"its topology {self.label} was closed")
        for hook in self._close_hooks:
            hook()
        started = time.perf_counter()
        try:
            self._teardown()
        finally:
            self.teardown_seconds = time.perf_counter() - started
            registry.closed(self)
            log.debug("closed %s in %.1f ms", self.label, self.teardown_seconds * 1000)

    def _teardown(self) -> None:
        errors: list[BaseException] = []
        work = janitor()
        if self.fault_state is not None:  # the forwarder and flapping timers end first
            try:
                self.fault_state.close()
            except BaseException as exc:
                errors.append(exc)
        for node in self.named:
            # an attached container keeps what it had, not our names (if it is still there)
            if not node.owned and node.running:
                try:
                    node.update_names(names.edit_removing(self))
                except BaseException as exc:
                    errors.append(exc)
        for link in reversed(self.links):
            try:
                link.teardown(self, work)
            except BaseException as exc:
                errors.append(exc)
        for hook in reversed(self._teardown_hooks):
            try:
                hook()
            except BaseException as exc:
                errors.append(exc)
        host().remove_interfaces(self.host_interfaces)
        namespaces: list[str] = []
        for node in reversed(self._order):
            try:
                node.remove(work.defer, namespaces.append)
            except BaseException as exc:
                errors.append(exc)
        try:
            remove_named_netns_all(namespaces)
        except BaseException as exc:
            errors.append(exc)
        # free again at once: no host route is left (the host ends were retired), and
        # what stays in our namespaces until the janitor removes them routes nothing here
        release(self._reserved)
        if errors:
            raise errors[0]

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "up"
        return f"<Topology {self.label} {state} nodes={self.members()}>"


def _name(x: Node | str) -> str:
    return x.name if isinstance(x, Node) else str(x)

