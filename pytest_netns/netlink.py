"""A thin, one-call-per-operation layer over pyroute2, inside one namespace.

pyroute2 0.9 keeps its netlink socket per thread, so an `IPRoute` used from
another thread silently opens a new socket in *that* thread's namespace. Every
call here therefore runs on the namespace's own `NetnsThread`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .errors import NotPermittedError, TopologyBuildError, UnsupportedKindError
from .namespaces import NetnsThread

T = TypeVar("T")

_GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH)


class Netlink:
    """Link, address, route and sysctl operations inside one namespace."""

    def __init__(self, thread: NetnsThread) -> None:
        self.thread = thread
        self._ipr: IPRoute | None = None

    # -- plumbing ---------------------------------------------------------

    def _ip(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def _do(self, what: str, fn: Callable[[IPRoute], T]) -> T:
        def run() -> T:
            try:
                return fn(self._ip())
            except NetlinkError as exc:
                if exc.code == errno.EPERM:
                    raise NotPermittedError(
                        f"{what} in {self.thread.label} was refused: pytest-netns needs "
                        "root or CAP_NET_ADMIN"
                    ) from None
                if exc.code == errno.EOPNOTSUPP:
                    raise UnsupportedKindError(f"{what}: the kernel does not support it") from None
                raise TopologyBuildError(
                    f"{what} in {self.thread.label} failed: {os.strerror(exc.code)} "
                    f"(errno {exc.code})"
                ) from exc

        return self.thread.call(run)

    def close(self) -> None:
        """Close the netlink socket; it holds a reference to the namespace."""

        def run() -> None:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None

        self.thread.call(run)

    # -- links ------------------------------------------------------------

    def index(self, ifname: str) -> int:
        """The ifindex of `ifname`; TopologyBuildError if it does not exist."""
        found = self._do(f"look up {ifname}", lambda ip: ip.link_lookup(ifname=ifname))
        if not found:
            raise TopologyBuildError(f"interface {ifname!r} not found in {self.thread.label}")
        return int(found[0])

    def add_veth(
        self,
        ifname: str,
        peer: str,
        peer_netns_fd: int | None = None,
        alias: str | None = None,
        master: int | None = None,
    ) -> int:
        """Create a veth, up, whose peer is born inside `peer_netns_fd` already (and down)."""
        peer_spec: dict[str, Any] = {"ifname": peer}
        if peer_netns_fd is not None:
            peer_spec["net_ns_fd"] = peer_netns_fd
        spec: dict[str, Any] = {"ifname": ifname, "kind": "veth", "peer": peer_spec}
        if master is not None:
            spec["master"] = master
        return self._add(f"create veth {ifname}<->{peer}", spec, alias)

    def add_bridge(self, ifname: str, alias: str | None = None) -> int:
        """A plain learning bridge, up, with STP off so ports forward at once."""
        spec = {"ifname": ifname, "kind": "bridge", "br_stp_state": 0, "br_forward_delay": 0}
        return self._add(f"create bridge {ifname}", spec, alias)

    def add_simple(self, ifname: str, kind: str, alias: str | None = None) -> int:
        """A link with no peer and no options (dummy, ifb), up."""
        return self._add(f"create {kind} link {ifname}", {"ifname": ifname, "kind": kind}, alias)

    def _add(self, what: str, spec: dict[str, Any], alias: str | None) -> int:
        ifname = spec["ifname"]

        def run(ip: IPRoute) -> int:
            ip.link("add", **spec)
            idx = int(ip.link_lookup(ifname=ifname)[0])
            up: dict[str, Any] = {"index": idx, "state": "up"}
            if alias:
                up["IFLA_IFALIAS"] = alias
            ip.link("set", **up)
            return idx

        return self._do(what, run)

    def move(self, index: int, netns_fd: int, ifname: str | None = None) -> None:
        """Move a link into another namespace, optionally renaming it."""
        spec: dict[str, Any] = {"index": index, "net_ns_fd": netns_fd}
        if ifname:
            spec["ifname"] = ifname
        self._do(f"move link {index}", lambda ip: ip.link("set", **spec))

    def configure(
        self, ifname: str, address: str | None, prefixlen: int, alias: str | None = None
    ) -> int:
        """Bring `ifname` up, tag it and give it an address, in one thread hop."""

        def run(ip: IPRoute) -> int:
            found = ip.link_lookup(ifname=ifname)
            if not found:
                raise TopologyBuildError(f"interface {ifname!r} not found in {self.thread.label}")
            idx = int(found[0])
            spec: dict[str, Any] = {"index": idx, "state": "up"}
            if alias:
                spec["IFLA_IFALIAS"] = alias
            ip.link("set", **spec)
            if address:
                ip.addr("add", index=idx, address=address, prefixlen=prefixlen)
            return idx

        return self._do(f"configure {ifname} with {address}/{prefixlen}", run)

    def set_up(self, *indexes: int) -> None:
        def run(ip: IPRoute) -> None:
            for idx in indexes:
                ip.link("set", index=idx, state="up")

        self._do(f"bring up links {indexes}", run)

    def set_master(self, index: int, master: int) -> None:
        self._do(f"enslave link {index}", lambda ip: ip.link("set", index=index, master=master))

    def delete_link(self, index_or_name: int | str) -> None:
        """Delete a link; "already gone" is not an error."""

        def run(ip: IPRoute) -> None:
            try:
                if isinstance(index_or_name, str):
                    found = ip.link_lookup(ifname=index_or_name)
                    if not found:
                        return
                    ip.link("del", index=found[0])
                else:
                    ip.link("del", index=index_or_name)
            except NetlinkError as exc:
                if exc.code not in _GONE:
                    raise

        self._do(f"delete link {index_or_name}", run)

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

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        self._do(
            f"add address {address}/{prefixlen}",
            lambda ip: ip.addr("add", index=index, address=address, prefixlen=prefixlen),
        )

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

    def route_get(self, dst: str) -> dict[str, Any] | None:
        """The route the kernel would use for `dst`, or None when there is none."""

        def run(ip: IPRoute) -> dict[str, Any] | None:
            try:
                msg = ip.route("get", dst=dst)[0]
            except NetlinkError as exc:
                if exc.code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                    return None
                raise
            return {"oif": msg.get_attr("RTA_OIF"), "gateway": msg.get_attr("RTA_GATEWAY")}

        return self._do(f"look up route to {dst}", run)

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
