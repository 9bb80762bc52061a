"""ethtool requests on a link, as ioctls from the namespace's own thread.

No `ethtool` binary is needed: the requests are a few bytes handed to the
SIOCETHTOOL ioctl on any socket opened in the link's namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import socket
import struct

from .netns import stay_resource

SIOCETHTOOL = 0x8946
ETHTOOL_GLINK = 0x0A


def sync_link_state(ifname: str) -> None:
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
    sock = stay_resource("ioctl socket", _ioctl_socket, socket.socket.close)
    with contextlib.suppress(OSError):
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)


def _ioctl_socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
