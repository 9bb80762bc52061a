"""A thin, one-call-per-operation netlink layer, inside one namespace.

A netlink socket belongs to the namespace of the thread that opened it, so
every call here runs on a pool worker inside the namespace (`Netns.call`)
and uses a raw `rtnl.Rtnl` socket opened there for the worker's stay
(`stay_resource`): links, addresses, routes and dumps alike, one stack for
everything a build does, and no socket kept per namespace between batches
of work. Each operation is logged at debug level on the `pytest_netns`
logger, so `--log-level=DEBUG` shows what was created and removed.

Calls made from a job that already runs on a worker (`netns.call_each`,
`netns.on_a_worker`) run inline: a step that touches every node of a large
topology costs one thread hand-over, not one per node.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import NotPermittedError, TopologyBuildError, UnsupportedKindError
from . import sysctl
from .ethtool import sync_link_state
from .netns import Netns, stay_resource
from .rtnl import AddressInfo, LinkInfo, RouteInfo, Rtnl, RtnlError, bridge_data, veth_peer

T = TypeVar("T")
log = logging.getLogger(__name__)

GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH)


def index_of(ifname: str) -> int | None:
    """The ifindex of `ifname` in the calling thread's namespace, or None.

    An ioctl on a socket the call opens in the calling thread's namespace:
    microseconds, where a dump of every link costs a round trip per link.
    Call it inside the namespace.
    """
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        return None


def _rtnl() -> Rtnl:
    """The calling thread's netlink socket for its stay in the current namespace."""
    return stay_resource("rtnl", Rtnl, Rtnl.close)


@dataclass(frozen=True)
class Veth:
    """A veth to create: this end, its peer (born in `peer_netns`, down) and options."""

    ifname: str
    peer: str
    peer_netns: Netns | None = None
    peer_mac: str | None = None
    alias: str | None = None
    master: int | None = None
    mac: str | None = None


class Netlink:
    """Link, address, route, neighbour and sysctl operations inside one namespace."""

    def __init__(self, netns: Netns) -> None:
        self.netns = netns

    # -- plumbing ---------------------------------------------------------

    def job(self, what: str, fn: Callable[[Rtnl], T]) -> Callable[[], T]:
        """fn as work for inside the namespace, with its socket, mapping refusals to our errors.

        Run it with `self.netns.call`, or hand many to `netns.call_each`.
        """

        def run() -> T:
            try:
                return fn(_rtnl())
            except RtnlError as exc:
                code = exc.code
                if code == errno.EPERM:
                    raise NotPermittedError(
                        f"{what} in {self.netns.label} was refused: pytest-netns needs "
                        "root or CAP_NET_ADMIN"
                    ) from None
                if code == errno.EOPNOTSUPP:
                    raise UnsupportedKindError(f"{what}: the kernel does not support it") from None
                raise TopologyBuildError(
                    f"{what} in {self.netns.label} failed: {os.strerror(code)} (errno {code})"
                ) from exc

        log.debug("%s: %s", self.netns.label, what)
        return run

    def _do(self, what: str, fn: Callable[[Rtnl], T]) -> T:
        return self.netns.call(self.job(what, fn))

    def with_socket(self, fn: Callable[[Rtnl], T]) -> T:
        """Run fn inside the namespace with its netlink socket; refusals stay RtnlError.

        For callers that map the kernel's refusals to their own errors
        (traffic control, in `impairment` and `drops`).
        """
        return self.netns.call(lambda: fn(_rtnl()))

    # -- links ------------------------------------------------------------

    def index(self, ifname: str) -> int:
        """The ifindex of `ifname`; TopologyBuildError if it does not exist."""
        found = self.netns.call(index_of, ifname)
        if found is None:
            raise TopologyBuildError(f"interface {ifname!r} not found in {self.netns.label}")
        return found

    def existing(self, ifnames: set[str]) -> set[str]:
        """Which of `ifnames` exist in the namespace (one ioctl each, no dump)."""
        if not ifnames:
            return set()
        return self.netns.call(lambda: {n for n in ifnames if index_of(n) is not None})

    def add_veth(
        self,
        ifname: str,
        peer: str,
        peer_netns: Netns | None = None,
        alias: str | None = None,
        master: int | None = None,
        peer_mac: str | None = None,
        mac: str | None = None,
    ) -> None:
        """Create a veth, up, whose peer is born inside `peer_netns` already (and down)."""
        self.add_veths([Veth(ifname, peer, peer_netns, peer_mac, alias, master, mac)])

    def add_veths(self, veths: list[Veth]) -> None:
        """Create several veths from this namespace in one hop."""
        if not veths:
            return
        shown = ", ".join(f"{v.ifname}<->{v.peer}" for v in veths[:3])
        more = f" and {len(veths) - 3} more" if len(veths) > 3 else ""

        def run(rt: Rtnl) -> None:
            for v in veths:
                self._create_veth(rt, v)

        self._do(f"create veth {shown}{more}", run)

    def _create_veth(self, rt: Rtnl, v: Veth) -> None:
        if v.peer_netns is None:
            data = veth_peer(v.peer, None, v.peer_mac, single_queue=True)
            self._created(rt, v.ifname, "veth", data, v.alias, v.master, v.mac, index=False)
            return
        with v.peer_netns.descriptor() as fd:
            data = veth_peer(v.peer, fd, v.peer_mac, single_queue=True)
            self._created(rt, v.ifname, "veth", data, v.alias, v.master, v.mac, index=False)

    def add_bridge(self, ifname: str, alias: str | None = None) -> int:
        """A plain learning bridge, up: STP off, so ports forward at once; multicast
        snooping off, so every multicast frame reaches every port.

        Without a multicast querier (and a topology has none) a snooping bridge
        floods multicast anyway, so snooping changes nothing a member sees; but
        it re-arms per-port timers on every port each time one joins, which made
        adding the n-th port cost O(n) (at a thousand ports, most of a port's
        creation time).
        """
        return self._do(f"create bridge {ifname}", lambda rt: self._created(
            rt, ifname, "bridge", bridge_data(forward_delay=0, stp_state=0,
                                              mcast_snooping=False), alias))

    def add_simple(self, ifname: str, kind: str, alias: str | None = None) -> int:
        """A link with no peer and no options (dummy, ifb), up."""
        return self._do(f"create {kind} link {ifname}",
                        lambda rt: self._created(rt, ifname, kind, b"", alias))

    def _created(self, rt: Rtnl, ifname: str, kind: str, data: bytes, alias: str | None,
                 master: int | None = None, mac: str | None = None,
                 index: bool = True) -> int:
        """Create the link; its index (looked up only when asked for or to tag it), else 0."""
        # born up (the kernel applies ifi_flags at creation); the alias
        # cannot be given at creation, so it costs a second request
        rt.add_link(ifname, kind, data, master, single_queue=kind == "veth", mac=mac)
        if not (index or alias):
            return 0
        idx = index_of(ifname)
        if idx is None:
            raise TopologyBuildError(f"create {kind} {ifname}: it vanished right after creation")
        if alias:
            rt.set_link(idx, alias=alias)
        return idx

    def configure(
        self,
        ifname: str,
        addresses: list[tuple[str, int]],
        alias: str | None = None,
        sysctls: dict[str, str] | None = None,
    ) -> int:
        """Bring `ifname` up, tag it and give it its addresses, in one thread hop
        (after writing `sysctls`, if any).

        See `configuring`; this runs it at once.
        """
        return self.netns.call(self.configuring(ifname, addresses, alias, sysctls))

    def configuring(
        self,
        ifname: str,
        addresses: list[tuple[str, int]],
        alias: str | None = None,
        sysctls: dict[str, str] | None = None,
    ) -> Callable[[], int]:
        """The work of `configure`, to run inside the namespace (alone or in a batch).

        IPv6 addresses skip duplicate address detection: the topology chose
        them, and DAD would hold them back for about a second.
        """

        def run(rt: Rtnl) -> int:
            idx = index_of(ifname)
            if idx is None:
                raise TopologyBuildError(
                    f"interface {ifname!r} not found in {self.netns.label}")
            for name, value in (sysctls or {}).items():
                sysctl.write(name, value)
            rt.set_link(idx, up=True, alias=alias or None)
            for address, prefixlen in addresses:
                rt.add_address(idx, address, prefixlen, nodad=":" in address)
            sync_link_state(ifname)
            return idx

        shown = ", ".join(f"{a}/{p}" for a, p in addresses) or "no address"
        return self.job(f"configure {ifname} with {shown}", run)

    def activate(self, *ifnames: str) -> None:
        """Apply pending carrier changes now (see `ethtool.sync_link_state`)."""

        def run() -> None:
            for ifname in ifnames:
                sync_link_state(ifname)

        self.netns.call(run)

    def set_state(self, ifname: str, up: bool) -> None:
        """Set a link administratively up or down."""

        def run(rt: Rtnl) -> None:
            idx = index_of(ifname)
            if idx is None:
                raise TopologyBuildError(
                    f"interface {ifname!r} not found in {self.netns.label}")
            rt.set_link(idx, up=up)

        self._do(f"set {ifname} {'up' if up else 'down'}", run)

    def set_up(self, *indexes: int) -> None:
        def run(rt: Rtnl) -> None:
            for idx in indexes:
                rt.set_link(idx, up=True)

        self._do(f"bring up links {indexes}", run)

    def delete_link(self, index_or_name: int | str) -> None:
        """Delete a link; "already gone" is not an error."""

        def run(rt: Rtnl) -> None:
            found = index_of(index_or_name) if isinstance(index_or_name, str) else index_or_name
            if found is None:
                return
            try:
                rt.delete_link(found)
            except RtnlError as exc:
                if exc.code not in GONE:
                    raise

        self._do(f"delete link {index_or_name}", run)

    def retire(self, ifname: str, tombstone: str | None,
               addresses: list[tuple[str, int]] | None = None) -> int | None:
        """Take `ifname` out of service now (addresses removed, down, renamed); return its index.

        Deleting a veth blocks ~20 ms while the kernel waits for an RCU grace
        period; removing its addresses, renaming it and setting it down do
        not. Nothing routes to it any more, its name is free again at once
        (the next test can create a link of the same name), and the caller
        deletes the index later, off the test's path. None when there is no
        such link.

        Without a `tombstone` it keeps its name: for a link whose name nobody
        will ask for again. Renaming is the dear step in the host's namespace
        (about 0.2-1 ms there, where daemons answer every change of a name;
        setting the link down 0.1-0.25 ms).
        """

        def run(rt: Rtnl) -> int | None:
            idx = index_of(ifname)
            if idx is None:
                return None
            try:
                for address, prefixlen in addresses or []:
                    try:
                        rt.delete_address(idx, address, prefixlen)
                    except RtnlError as exc:
                        if exc.code != errno.EADDRNOTAVAIL:
                            raise
                if tombstone is None:
                    rt.set_link(idx, up=False)
                    return idx
                try:
                    rt.set_link(idx, up=False, ifname=tombstone)
                except RtnlError as exc:
                    if exc.code != errno.EBUSY:
                        raise
                    # older kernels refuse to rename a link that is still up
                    rt.set_link(idx, up=False)
                    rt.set_link(idx, ifname=tombstone)
            except RtnlError as exc:
                if exc.code in GONE:  # its peer's namespace went, and took it along
                    return None
                raise
            return idx

        return self._do(f"retire link {ifname} as {tombstone}", run)

    def links(self) -> list[LinkInfo]:
        """Every link: name, index, kind, alias, state, master."""
        return self._do("list links", lambda rt: rt.links())

    # -- addresses, routes and neighbours -----------------------------------

    def addresses(self, family: int = socket.AF_UNSPEC) -> list[AddressInfo]:
        """Every address of the namespace (IPv4 and IPv6 unless `family` says which)."""
        return self._do("list addresses", lambda rt: rt.addresses(family))

    def add_route(self, dst: str, gateway: str | None = None, oif: int | None = None) -> None:
        self._do(f"add route {dst} via {gateway}", lambda rt: rt.add_route(dst, gateway, oif))

    def routes(self, family: int = socket.AF_INET) -> list[RouteInfo]:
        """Routes of every table of one family."""
        return self._do("list routes", lambda rt: rt.routes(family))

    def learning(self, ifname: str, neighbours: list[tuple[str, str]]) -> Callable[[], None]:
        """Work that tells the namespace where `neighbours` ((address, MAC)) are, on `ifname`.

        The entries are STALE, what an ARP (or neighbour discovery) exchange
        leaves behind: the first packet to them goes out at once instead of
        waiting for a resolution, and the kernel confirms each entry later
        with a unicast probe, as it would have anyway.
        """

        def run(rt: Rtnl) -> None:
            idx = index_of(ifname)
            if idx is None:
                raise TopologyBuildError(
                    f"interface {ifname!r} not found in {self.netns.label}")
            for address, mac in neighbours:
                rt.set_neighbour(idx, address, mac)

        return self.job(f"learn {len(neighbours)} neighbour(s) on {ifname}", run)

    def teaching_bridge(self, ports: list[tuple[str, str]]) -> Callable[[], None]:
        """Work that tells this namespace's bridge which port ((port, MAC)) each MAC is behind.

        Dynamic entries, what learning leaves after a station's first frame:
        a frame to a station that has sent nothing yet is otherwise flooded to
        every port, and a probe to each of n silent members floods n² frames.
        """

        def run(rt: Rtnl) -> None:
            for port, mac in ports:
                idx = index_of(port)
                if idx is None:
                    raise TopologyBuildError(
                        f"bridge port {port!r} not found in {self.netns.label}")
                rt.set_fdb(idx, mac)

        return self.job(f"teach the bridge {len(ports)} station(s)", run)

    def forgetting(self, ifname: str, addresses: list[str]) -> Callable[[], None]:
        """Work that removes the neighbour entries of `addresses` on `ifname` (gone is fine)."""

        def run(rt: Rtnl) -> None:
            idx = index_of(ifname)
            if idx is None:
                return
            for address in addresses:
                try:
                    rt.delete_neighbour(idx, address)
                except RtnlError as exc:
                    if exc.code not in GONE:
                        raise

        return self.job(f"forget {len(addresses)} neighbour(s) on {ifname}", run)

    # -- sysctls ----------------------------------------------------------

    def sysctls(self, values: dict[str, str]) -> None:
        """Write several sysctls of this namespace, in order, in one thread hop."""

        def run() -> None:
            for name, value in values.items():
                sysctl.write(name, value)

        if values:
            log.debug("%s: sysctls %s", self.netns.label, values)
            self.netns.call(run)

    def prepare(self, values: dict[str, str]) -> None:
        """A new namespace's first step: `lo` up, then `values` (sysctls), in one hop."""

        def run(rt: Rtnl) -> None:
            rt.set_link(1, up=True)
            for name, value in values.items():
                sysctl.write(name, value)

        self._do(f"bring lo up, set {values or 'no sysctl'}", run)

    def sysctl(self, name: str, value: str | None = None) -> str:
        """Read (and optionally write) a sysctl of this namespace only."""

        def run() -> str:
            if value is not None:
                sysctl.write(name, value)
            return sysctl.read(name)

        if value is not None:
            log.debug("%s: sysctl %s=%s", self.netns.label, name, value)
        return self.netns.call(run)
