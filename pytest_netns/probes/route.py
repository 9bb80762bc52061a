"""The kernel's route to a destination, asked cheaply from inside a namespace.

Every probe first asks its source namespace which route a packet would take,
for two reasons: a destination with no route is a verdict on its own ("no
route", known at once, nothing to wait for), and the egress guard must know
the outgoing interface before anything is sent. This sends one RTM_GETROUTE
(encoded by `kernel.rtnl`) on a netlink socket that was opened inside the
namespace and stays open: a round trip of a few tens of microseconds,
answered by the same FIB lookup `ip route get` uses.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
from dataclasses import dataclass

from ..kernel.rtnl import (
    F_REQUEST,
    RTM_GETROUTE,
    RTM_NEWROUTE,
    RouteAnswer,
    RtnlError,
    decode_route_answer,
    message,
    open_socket,
    read_answer,
    route_get_body,
)

# what the kernel's refusal means, in words a test author understands
_NO_ROUTE_WHY = {
    errno.ENETUNREACH: "no route",
    errno.EHOSTUNREACH: "an unreachable route",
    errno.EACCES: "a prohibit route",
    errno.EINVAL: "a blackhole route",
}

Route = RouteAnswer


@dataclass(frozen=True)
class NoRoute:
    """The kernel refused to route `dst`; `why` says which kind of refusal."""

    dst: str
    errno: int

    @property
    def why(self) -> str:
        return _NO_ROUTE_WHY.get(self.errno, os.strerror(self.errno))


class RouteLookup:
    """RTM_GETROUTE on a netlink socket bound to the namespace it was opened in.

    Construct it inside the namespace; afterwards any thread may call
    `get()` (a lock keeps request and answer paired).
    """

    def __init__(self) -> None:
        self._sock = open_socket()
        self._sock.settimeout(5.0)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def get(self, dst: str) -> Route | NoRoute:
        """The route the kernel would use for `dst` (an IPv4 or IPv6 address string)."""
        body = route_get_body(dst)
        with self._lock:
            seq = next(self._seq)
            self._sock.send(message(RTM_GETROUTE, F_REQUEST, seq, body))
            try:
                answer = read_answer(self._sock, seq, single=True)
            except RtnlError as exc:
                if exc.code in _NO_ROUTE_WHY:
                    return NoRoute(dst, exc.code)
                raise OSError(exc.code, f"route lookup for {dst}: {os.strerror(exc.code)}") \
                    from None
        for kind, reply in answer:
            if kind == RTM_NEWROUTE:
                return decode_route_answer(reply, dst)
        raise OSError(errno.EIO, f"route lookup for {dst}: the kernel sent no route")

    def close(self) -> None:
        self._sock.close()
