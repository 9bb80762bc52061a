"""A thin, one-call-per-operation netlink layer, inside one namespace.

pyroute2 0.9 keeps its netlink socket per thread, so an `IPRoute` used from
another thread silently opens a new socket in *that* thread's namespace. Every
call here therefore runs on the namespace's own `NetnsThread`.

The requests a build makes (create, change and delete links, add addresses)
go through `rtnl.Rtnl`, a raw socket ~10x cheaper per request than pyroute2;
reads and routes use pyroute2, which is imported (~100 ms) and opened only
when one is needed, never when the plugin loads.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import NotPermittedError, TopologyBuildError, UnsupportedKindError
from .namespaces import NetnsThread
from .rtnl import Rtnl, RtnlError, bridge_data, veth_peer

if TYPE_CHECKING:
    from pyroute2 import IPRoute

T = TypeVar("T")

_GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH)

def _netlink_errno(exc: BaseException) -> int | None:
    """The errno of a refused netlink request (ours or pyroute2's), else None.

    pyroute2's exception class is looked up only if pyroute2 was imported:
    if it was not, none of its exceptions can be in flight.
    """
    if isinstance(exc, RtnlError):
        return exc.code
    exceptions = sys.modules.get("pyroute2.netlink.exceptions")
    if exceptions is not None and isinstance(exc, exceptions.NetlinkError):
        return int(exc.code)
    return None


SIOCETHTOOL = 0x8946
ETHTOOL_GLINK = 0x0A


def _sync_link_state(ifname: str) -> None:
    """Make the kernel act on a pending carrier change of `ifname` now.

    The kernel applies carrier changes (and with them the device's real
    qdisc) from its linkwatch worker, which may wait up to a second when the
    event is not "urgent". A veth whose ifindex equals its peer's (`eth1` =
    index 2 in two fresh namespaces) is such a case, and until then it drops
    what it is given: 3-5% of first pings after a build were lost that way.
    ETHTOOL_GLINK runs the pending event for that one device at once. Call it
    on the namespace's thread; kinds without ethtool support are skipped.
    """
    value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_GLINK, 0))
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)) + b"\0" * 16
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, \
            contextlib.suppress(OSError):
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)


def _index_of(ifname: str) -> int | None:
    """The ifindex of `ifname` in the calling thread's namespace, or None.

    An ioctl on a socket the call opens in the calling thread's namespace:
    microseconds, where pyroute2's `link_lookup` dumps every link (~0.7 ms).
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
        self._ipr: IPRoute | None = None
        self._rtnl: Rtnl | None = None

    # -- plumbing ---------------------------------------------------------

    def _ip(self) -> IPRoute:
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        return self._ipr

    def _raw(self) -> Rtnl:
        if self._rtnl is None:
            self._rtnl = Rtnl()
        return self._rtnl

    def _do(self, what: str, fn: Callable[[IPRoute], T]) -> T:
        """Run fn with pyroute2 on the namespace's thread, mapping netlink errors."""
        return self._guarded(what, lambda: fn(self._ip()))

    def _do_raw(self, what: str, fn: Callable[[Rtnl], T]) -> T:
        """Run fn with the raw socket on the namespace's thread, mapping netlink errors."""
        return self._guarded(what, lambda: fn(self._raw()))

    def _guarded(self, what: str, fn: Callable[[], T]) -> T:
        def run() -> T:
            try:
                return fn()
            except Exception as exc:
                code = _netlink_errno(exc)
                if code is None:
                    raise
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

        return self.thread.call(run)

    def close(self) -> None:
        """Close the netlink socket; it holds a reference to the namespace."""

        def run() -> None:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None
            if self._rtnl is not None:
                self._rtnl.close()
                self._rtnl = None

        self.thread.call(run)

    # -- links ------------------------------------------------------------

    def index(self, ifname: str) -> int:
        """The ifindex of `ifname`; TopologyBuildError if it does not exist."""
        found = self.thread.call(_index_of, ifname)
        if found is None:
            raise TopologyBuildError(f"interface {ifname!r} not found in {self.thread.label}")
        return found

    def existing(self, ifnames: set[str]) -> set[str]:
        """Which of `ifnames` exist in the namespace (one ioctl each, no dump)."""
        if not ifnames:
            return set()
        return self.thread.call(lambda: {n for n in ifnames if _index_of(n) is not None})

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
            idx = _index_of(ifname)
            if idx is None:
                raise TopologyBuildError(f"{what}: {ifname!r} vanished right after creation")
            if alias:
                rt.set_link(idx, alias=alias)
            return idx

        return self._do_raw(what, run)

    def configure(
        self, ifname: str, address: str | None, prefixlen: int, alias: str | None = None
    ) -> int:
        """Bring `ifname` up, tag it and give it an address, in one thread hop."""

        def run(rt: Rtnl) -> int:
            idx = _index_of(ifname)
            if idx is None:
                raise TopologyBuildError(f"interface {ifname!r} not found in {self.thread.label}")
            rt.set_link(idx, up=True, alias=alias or None)
            if address:
                self._add_address(rt, idx, address, prefixlen)
            _sync_link_state(ifname)
            return idx

        return self._do_raw(f"configure {ifname} with {address}/{prefixlen}", run)

    def activate(self, ifname: str) -> None:
        """Apply a pending carrier change now (see `_sync_link_state`)."""
        self.thread.call(_sync_link_state, ifname)

    def set_up(self, *indexes: int) -> None:
        def run(rt: Rtnl) -> None:
            for idx in indexes:
                rt.set_link(idx, up=True)

        self._do_raw(f"bring up links {indexes}", run)

    def delete_link(self, index_or_name: int | str) -> None:
        """Delete a link; "already gone" is not an error."""

        def run(rt: Rtnl) -> None:
            try:
                if isinstance(index_or_name, str):
                    found = _index_of(index_or_name)
                    if found is None:
                        return
                    rt.delete_link(found)
                else:
                    rt.delete_link(index_or_name)
            except RtnlError as exc:
                if exc.code not in _GONE:
                    raise

        self._do_raw(f"delete link {index_or_name}", run)

    def retire(self, ifname: str, tombstone: str, address: str | None = None,
               prefixlen: int = 32) -> int | None:
        """Take `ifname` out of service now (address removed, down, renamed); return its index.

        Deleting a veth blocks ~20 ms while the kernel waits for an RCU grace
        period; removing its address, renaming it and setting it down do
        not. Nothing routes to it any more, its name is free again at once (a
        container attached to the next test can get a new `eth1`), and the
        caller deletes the index later, off the test's path. None when there
        is no such link.
        """

        def run(rt: Rtnl) -> int | None:
            idx = _index_of(ifname)
            if idx is None:
                return None
            if address and ":" not in address:
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
            return idx

        return self._do_raw(f"retire link {ifname}", run)

    def links(self) -> list[dict[str, Any]]:
        """Every link as a plain dict: name, index, kind, alias, state, master."""

        def run(ip: IPRoute) -> list[dict[str, Any]]:
            out = []
            for msg in ip.get_links():
                info = msg.get_attr("IFLA_LINKINFO")
                out.append(
                    {
                        "ifname": msg.get_attr("IFLA_IFNAME"),
                        "index": msg["index"],
                        "kind": info.get_attr("IFLA_INFO_KIND") if info else None,
                        "alias": msg.get_attr("IFLA_IFALIAS"),
                        "up": bool(msg["flags"] & 1),
                        "master": msg.get_attr("IFLA_MASTER"),
                        "address": msg.get_attr("IFLA_ADDRESS"),
                    }
                )
            return out

        return self._do("list links", run)

    # -- addresses and routes ---------------------------------------------

    def _add_address(self, rt: Rtnl, index: int, address: str, prefixlen: int) -> None:
        """IPv4 on the raw socket; anything else (IPv6) through pyroute2. On the thread."""
        if ":" in address:
            self._ip().addr("add", index=index, address=address, prefixlen=prefixlen)
        else:
            rt.add_address(index, address, prefixlen)

    def addresses(self) -> list[tuple[int, str, int]]:
        """(ifindex, address, prefixlen) of every IPv4 address."""

        def run(ip: IPRoute) -> list[tuple[int, str, int]]:
            return [
                (m["index"], m.get_attr("IFA_ADDRESS"), m["prefixlen"])
                for m in ip.get_addr(family=2)
            ]

        return self._do("list addresses", run)

    def add_route(self, dst: str, gateway: str | None = None, oif: int | None = None) -> None:
        spec: dict[str, Any] = {"dst": dst}
        if gateway:
            spec["gateway"] = gateway
        if oif is not None:
            spec["oif"] = oif
        self._do(f"add route {dst}", lambda ip: ip.route("add", **spec))

    def routes(self) -> list[dict[str, Any]]:
        """IPv4 routes of every table: dst (CIDR), gateway, oif, table."""

        def run(ip: IPRoute) -> list[dict[str, Any]]:
            out = []
            for m in ip.route("dump", family=2):
                dst = m.get_attr("RTA_DST") or "0.0.0.0"
                out.append(
                    {
                        "dst": f"{dst}/{m['dst_len']}",
                        "gateway": m.get_attr("RTA_GATEWAY"),
                        "oif": m.get_attr("RTA_OIF"),
                        "table": m.get_attr("RTA_TABLE") or m["table"],
                        "type": m["type"],
                    }
                )
            return out

        return self._do("list routes", run)

    # -- sysctls ----------------------------------------------------------

    def sysctl(self, name: str, value: str | None = None) -> str:
        """Read (and optionally write) a per-namespace sysctl such as net.ipv4.ip_forward.

        /proc/sys/net resolves against the namespace of the thread that opens
        it, so this changes only this namespace.
        """
        path = "/proc/sys/" + name.replace(".", "/")

        def run() -> str:
            if value is not None:
                with open(path, "w") as f:
                    f.write(value)
            with open(path) as f:
                return f.read().strip()

        return self.thread.call(run)
