"""A built topology: its nodes and segments, and how to take it down.

Teardown goes in reverse order of building and prefers the cheap, complete
operation: deleting a namespace or removing a container makes the kernel reap
every link inside it. Only what lives outside namespaces we own (host-side
veths, interfaces put into an attached container) is deleted link by link,
and that slow work is deferred to the janitor, which the session drains once
at the end.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .addressing import Network, release
from .janitor import janitor
from .nodes import ContainerNode, NamespaceNode, Node
from .session import Session

if TYPE_CHECKING:
    from .segments import Segment
    from .uplink import UplinkChanges

# what every topology in this process built, for the terminal summary
STATS = {"topologies": 0, "build_seconds": 0.0, "teardown_seconds": 0.0}
_LIVE: list[Topology] = []
_LIVE_LOCK = threading.Lock()


class Topology:
    """Nodes (by name), segments (by name) and a `close()` that is idempotent."""

    def __init__(self, label: str, session: Session, reserved: list[Network]) -> None:
        self.label = label
        self.session = session
        self.nodes: dict[str, Node] = {}
        self.roles: dict[str, str] = {}
        self.segments: dict[str, Segment] = {}
        self.host_links: list[str] = []
        self.nat_tool: str | None = None
        self.uplink: UplinkChanges | None = None  # the opt-in real uplink's host changes
        self.build_seconds = 0.0
        self.teardown_seconds = 0.0
        self._reserved = reserved
        self._order: list[Node] = []
        self._closed = False
        self._lock = threading.Lock()
        # kept alive for debugging (--netns-keep): never closed by this process
        self.kept = False
        self._close_hooks: list[Callable[[], object]] = []
        with _LIVE_LOCK:
            _LIVE.append(self)

    def add_node(self, node: Node, role: str) -> None:
        self.nodes[node.name] = node
        self.roles[node.name] = role
        self._order.append(node)

    def __getitem__(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(
                f"no node {name!r} in {self.label}; it has {sorted(self.members())}"
            ) from None

    def members(self) -> list[str]:
        """Names of the user-visible nodes (not switches or parked stub peers)."""
        return [n for n, r in self.roles.items() if r in ("node", "router")]

    @property
    def closed(self) -> bool:
        return self._closed

    def on_close(self, hook: Callable[[], object]) -> None:
        """Run `hook` first thing in `close()` (captures must let go of the namespaces)."""
        self._close_hooks.append(hook)

    def close(self) -> None:
        """Remove everything this topology created. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for hook in self._close_hooks:
            hook()
        started = time.perf_counter()
        try:
            self._teardown()
        finally:
            self.teardown_seconds = time.perf_counter() - started
            STATS["topologies"] += 1
            STATS["build_seconds"] += self.build_seconds
            STATS["teardown_seconds"] += self.teardown_seconds
            with _LIVE_LOCK:
                if self in _LIVE:
                    _LIVE.remove(self)

    def _teardown(self) -> None:
        errors: list[BaseException] = []
        if self.uplink is not None:
            from .uplink import restore

            restore(self.uplink)
            self.uplink = None
        owned_containers: list[ContainerNode] = []
        retired: list[tuple[ContainerNode, list[int]]] = []
        # Interfaces we put into namespaces we do not own must go explicitly.
        # They are taken out of service now (down, renamed, so their names
        # are free for the next test) and deleted by the janitor.
        for node in reversed(self._order):
            if isinstance(node, ContainerNode) and not node.owned:
                indexes: list[int] = []
                for iface in reversed(node.interfaces):
                    try:
                        idx = node.netlink.retire(iface.ifname, self.session.ifname("x"),
                                                  iface.ip, iface.prefixlen)
                        if idx is not None:
                            indexes.append(idx)
                    except BaseException as exc:
                        errors.append(exc)
                retired.append((node, indexes))
        for node in reversed(self._order):
            try:
                if isinstance(node, NamespaceNode):
                    node.remove()
                elif isinstance(node, ContainerNode) and node.owned:
                    owned_containers.append(node)
            except BaseException as exc:
                errors.append(exc)
        if owned_containers:
            from .containers import remove_nodes

            janitor().defer(lambda: remove_nodes(owned_containers))
        for ifname in self.host_links:
            # their peers may live in a namespace that is already being reaped;
            # deleting is still needed when the peer sits in an attached container
            janitor().delete_host_link(ifname)
        for node, indexes in retired:
            # usually gone already: deleting the host end took its peer along
            janitor().defer(functools.partial(_delete_retired, node, indexes))
        # the subnets are free again once their links are gone
        janitor().defer(functools.partial(release, self._reserved))
        if errors:
            raise errors[0]

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "up"
        return f"<Topology {self.label} {state} nodes={self.members()}>"


def _delete_retired(node: ContainerNode, indexes: list[int]) -> None:
    """Delete the links `retire()` took out of service, then let go of the namespace."""
    try:
        for idx in indexes:
            node.netlink.delete_link(idx)
    finally:
        node.release()


def live_topologies() -> list[Topology]:
    """Topologies built in this process, not yet closed, and not kept for debugging."""
    with _LIVE_LOCK:
        return [t for t in _LIVE if not t.kept]


def kept_topologies() -> list[Topology]:
    """Topologies left up on purpose (--netns-keep); they outlive the process."""
    with _LIVE_LOCK:
        return [t for t in _LIVE if t.kept]
