"""A thin, one-call-per-operation netlink layer, inside one namespace.

A netlink socket belongs to the namespace of the thread that opened it, so
every call here runs on the namespace's own `NetnsThread` and uses a raw
`rtnl.Rtnl` socket opened there: links, addresses, routes and dumps alike,
one stack for everything a build does. Each operation is logged at debug
level on the `pytest_netns` logger, so `--log-level=DEBUG` shows what was
created and removed.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import TypeVar

from ..errors import NotPermittedError, TopologyBuildError, UnsupportedKindError
from . import sysctl
from .ethtool import sync_link_state
from .netns import NetnsThread
from .rtnl import AddressInfo, LinkInfo, RouteInfo, Rtnl, RtnlError, bridge_data, veth_peer

T = TypeVar("T")
log = logging.getLogger(__name__)

GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH)


def index_of(ifname: str) -> int | None:
    """The ifindex of `ifname` in the calling thread's namespace, or None.

    An ioctl on a socket the call opens in the calling thread's namespace:
    microseconds, where a dump of every link costs a round trip per link.
    Call it on the namespace's thread.
    """
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        return None


class Netlink:
    """Link, address, route and sysctl operations inside one namespace."""

    def __init__(self, thread: NetnsThread) -> None:
        self.thread = thread
        self._rtnl: Rtnl | None = None

    # -- plumbing ---------------------------------------------------------

    def _raw(self) -> Rtnl:
        if self._rtnl is None:
            self._rtnl = Rtnl()
        return self._rtnl

    def _do(self, what: str, fn: Callable[[Rtnl], T]) -> T:
        """Run fn on the namespace's thread with its socket, mapping refusals to our errors."""

        def run() -> T:
            try:
                return fn(self._raw())
            except RtnlError as exc:
                code = exc.code
                if code == errno.EPERM:
                    raise NotPermittedError(
                        f"{what} in {self.thread.label} was refused: pytest-netns needs "
                        "root or CAP_NET_ADMIN"
                    ) from None
                if code == errno.EOPNOTSUPP:
                    raise UnsupportedKindError(f"{what}: the kernel does not support it") from None
                raise TopologyBuildError(
                    f"{what} in {self.thread.label} failed: {os.strerror(code)} (errno {code})"
                ) from exc

        log.debug("%s: %s", self.thread.label, what)
        return self.thread.call(run)

    def with_socket(self, fn: Callable[[Rtnl], T]) -> T:
        """Run fn with this namespace's socket on its thread; refusals stay RtnlError.

        For callers that map the kernel's refusals to their own errors
        (traffic control, in `impairment` and `drops`).
        """
        return self.thread.call(lambda: fn(self._raw()))

    def close(self) -> None:
        """Close the netlink socket; it holds a reference to the namespace."""

        def run() -> None:
            if self._rtnl is not None:
                self._rtnl.close()
                self._rtnl = None

        self.thread.call(run)

    # -- links ------------------------------------------------------------

    def index(self, ifname: str) -> int:
        """The ifindex of `ifname`; TopologyBuildError if it does not exist."""
        found = self.thread.call(index_of, ifname)
        if found is None:
            raise TopologyBuildError(f"interface {ifname!r} not found in {self.thread.label}")
        return found

    def existing(self, ifnames: set[str]) -> set[str]:
        """Which of `ifnames` exist in the namespace (one ioctl each, no dump)."""
        if not ifnames:
            return set()
        return self.thread.call(lambda: {n for n in ifnames if index_of(n) is not None})

    def add_veth(
        self,
        ifname: str,
        peer: str,
        peer_netns_fd: int | None = None,
        alias: str | None = None,
        master: int | None = None,
    ) -> int:
        """Create a veth, up, whose peer is born inside `peer_netns_fd` already (and down)."""
        return self._add(f"create veth {ifname}<->{peer}", ifname, "veth",
                         veth_peer(peer, peer_netns_fd), alias, master)

    def add_bridge(self, ifname: str, alias: str | None = None) -> int:
        """A plain learning bridge, up, with STP off so ports forward at once."""
        return self._add(f"create bridge {ifname}", ifname, "bridge",
                         bridge_data(forward_delay=0, stp_state=0), alias)

    def add_simple(self, ifname: str, kind: str, alias: str | None = None) -> int:
        """A link with no peer and no options (dummy, ifb), up."""
        return self._add(f"create {kind} link {ifname}", ifname, kind, b"", alias)

    def _add(self, what: str, ifname: str, kind: str, data: bytes, alias: str | None,
             master: int | None = None) -> int:
        def run(rt: Rtnl) -> int:
            # born up (the kernel applies ifi_flags at creation); the alias
            # cannot be given at creation, so it costs a second request
            rt.add_link(ifname, kind, data, master)
            idx = index_of(ifname)
            if idx is None:
                raise TopologyBuildError(f"{what}: {ifname!r} vanished right after creation")
            if alias:
                rt.set_link(idx, alias=alias)
            return idx

        return self._do(what, run)

    def configure(
        self,
        ifname: str,
        addresses: list[tuple[str, int]],
        alias: str | None = None,
        sysctls: dict[str, str] | None = None,
    ) -> int:
        """Bring `ifname` up, tag it and give it its addresses, in one thread hop
        (after writing `sysctls`, if any).

        IPv6 addresses skip duplicate address detection: the topology chose
        them, and DAD would hold them back for about a second.
        """

        def run(rt: Rtnl) -> int:
            idx = index_of(ifname)
            if idx is None:
                raise TopologyBuildError(f"interface {ifname!r} not found in {self.thread.label}")
            for name, value in (sysctls or {}).items():
                sysctl.write(name, value)
            rt.set_link(idx, up=True, alias=alias or None)
            for address, prefixlen in addresses:
                rt.add_address(idx, address, prefixlen, nodad=":" in address)
            sync_link_state(ifname)
            return idx

        shown = ", ".join(f"{a}/{p}" for a, p in addresses) or "no address"
        return self._do(f"configure {ifname} with {shown}", run)

    def activate(self, ifname: str) -> None:
        """Apply a pending carrier change now (see `ethtool.sync_link_state`)."""
        self.thread.call(sync_link_state, ifname)

    def set_state(self, ifname: str, up: bool) -> None:
        """Set a link administratively up or down."""

        def run(rt: Rtnl) -> None:
            idx = index_of(ifname)
            if idx is None:
                raise TopologyBuildError(f"interface {ifname!r} not found in {self.thread.label}")
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

    def retire(self, ifname: str, tombstone: str,
               addresses: list[tuple[str, int]] | None = None) -> int | None:
        """Take `ifname` out of service now (addresses removed, down, renamed); return its index.

        Deleting a veth blocks ~20 ms while the kernel waits for an RCU grace
        period; removing its addresses, renaming it and setting it down do
        not. Nothing routes to it any more, its name is free again at once
        (the next test can create a link of the same name), and the caller
        deletes the index later, off the test's path. None when there is no
        such link.
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

    # -- addresses and routes ---------------------------------------------

    def addresses(self, family: int = socket.AF_UNSPEC) -> list[AddressInfo]:
        """Every address of the namespace (IPv4 and IPv6 unless `family` says which)."""
        return self._do("list addresses", lambda rt: rt.addresses(family))

    def add_route(self, dst: str, gateway: str | None = None, oif: int | None = None) -> None:
        self._do(f"add route {dst} via {gateway}", lambda rt: rt.add_route(dst, gateway, oif))

    def routes(self, family: int = socket.AF_INET) -> list[RouteInfo]:
        """Routes of every table of one family."""
        return self._do("list routes", lambda rt: rt.routes(family))

    # -- sysctls ----------------------------------------------------------

    def sysctls(self, values: dict[str, str]) -> None:
        """Write several sysctls of this namespace, in order, in one thread hop."""

        def run() -> None:
            for name, value in values.items():
                sysctl.write(name, value)

        if values:
            log.debug("%s: sysctls %s", self.thread.label, values)
            self.thread.call(run)

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
            log.debug("%s: sysctl %s=%s", self.thread.label, name, value)
        return self.thread.call(run)
