"""Raw rtnetlink: the few requests on the build path, without pyroute2's overhead.

pyroute2 0.9 runs an asyncio event loop for every request and parses every
attribute of every reply: about 0.25 ms per request on the machines this
was measured on, and 0.4 ms to open an `IPRoute`. A topology build makes
several requests per node, so those costs dominate small topologies. The
requests here (create a link, change a link, add an address, delete a
link, dump prefixes) are a fixed handful, encoded with `struct` and sent
on a plain NETLINK_ROUTE socket: about 20 microseconds each, plus the
kernel's own time. Refusals raise `RtnlError`, which carries the errno in
`code` just as pyroute2's `NetlinkError` does. Nothing here imports
pyroute2, whose import alone costs ~100 ms of pytest's start.

A socket belongs to the namespace of the thread that created it, so create
an `Rtnl` on the namespace's thread.
"""

from __future__ import annotations

import os
import socket
import struct

# linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/veth.h
HDR = struct.Struct("=LHHLL")  # struct nlmsghdr
RTMSG = struct.Struct("=BBBBBBBBI")  # struct rtmsg
NLMSG_ERROR = 2
_NLMSG_DONE = 3
_F_REQUEST, _F_ACK, _F_EXCL, _F_CREATE, _F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR = 16, 17, 20, 21
RTM_GETLINK, RTM_GETADDR, RTM_NEWROUTE, RTM_GETROUTE = 18, 22, 24, 26
IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_NET_NS_FD = 3, 10, 18, 20, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFLA_BR_FORWARD_DELAY, IFLA_BR_STP_STATE = 1, 5
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC = 1, 4, 5, 7
RTN_LOCAL = 2
IFF_UP = 0x1


class RtnlError(Exception):
    """The kernel refused a request; `code` is the errno (as in pyroute2's NetlinkError)."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(code, message or os.strerror(code))
        self.code = code


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def text(value: str) -> bytes:
    """A NUL-terminated string payload (what pyroute2 and iproute2 send)."""
    return value.encode() + b"\0"


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def ifinfo(index: int = 0, up: bool | None = None) -> bytes:
    """struct ifinfomsg; `up` True/False sets IFF_UP, None leaves the flags alone."""
    flags = IFF_UP if up else 0
    change = 0 if up is None else IFF_UP
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


class Rtnl:
    """A raw NETLINK_ROUTE socket in the creating thread's namespace."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def request(self, msg_type: int, body: bytes, create: bool = False) -> None:
        """Send one request and wait for its acknowledgement; RtnlError on failure."""
        self._seq += 1
        flags = _F_REQUEST | _F_ACK | (_F_CREATE | _F_EXCL if create else 0)
        self._sock.send(HDR.pack(16 + len(body), msg_type, flags, self._seq, 0) + body)
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _, seq, _ = HDR.unpack_from(data, offset)
                if kind == NLMSG_ERROR and seq == self._seq:
                    code = -struct.unpack_from("=i", data, offset + 16)[0]
                    if code:
                        raise RtnlError(code)
                    return
                offset += (length + 3) & ~3

    # -- the requests the build path makes ----------------------------------

    def add_link(self, ifname: str, kind: str, data: bytes = b"",
                 master: int | None = None) -> None:
        """Create a link, up; `data` is its kind's IFLA_INFO_DATA."""
        info = attr(IFLA_INFO_KIND, text(kind)) + (attr(IFLA_INFO_DATA, data) if data else b"")
        body = ifinfo(up=True) + attr(IFLA_IFNAME, text(ifname))
        if master is not None:
            body += attr(IFLA_MASTER, u32(master))
        self.request(RTM_NEWLINK, body + attr(IFLA_LINKINFO, info), create=True)

    def set_link(self, index: int, up: bool | None = None, ifname: str | None = None,
                 alias: str | None = None, master: int | None = None,
                 netns_fd: int | None = None) -> None:
        """Change a link: state, name, alias, master, namespace (all in one request)."""
        body = ifinfo(index, up)
        if ifname is not None:
            body += attr(IFLA_IFNAME, text(ifname))
        if alias is not None:
            body += attr(IFLA_IFALIAS, text(alias))
        if master is not None:
            body += attr(IFLA_MASTER, u32(master))
        if netns_fd is not None:
            body += attr(IFLA_NET_NS_FD, u32(netns_fd))
        self.request(RTM_NEWLINK, body)

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        """An IPv4 address (local and peer address alike, as `ip addr add` does)."""
        self.request(RTM_NEWADDR, _ifaddr(index, address, prefixlen), create=True)

    def delete_address(self, index: int, address: str, prefixlen: int) -> None:
        self.request(RTM_DELADDR, _ifaddr(index, address, prefixlen))

    def delete_link(self, index: int) -> None:
        self.request(RTM_DELLINK, ifinfo(index))


def _ifaddr(index: int, address: str, prefixlen: int) -> bytes:
    packed = socket.inet_aton(address)
    body = struct.pack("=BBBBI", socket.AF_INET, prefixlen, 0, 0, index)
    return body + attr(IFA_ADDRESS, packed) + attr(IFA_LOCAL, packed)


def veth_peer(ifname: str, netns_fd: int | None = None) -> bytes:
    """IFLA_INFO_DATA of a veth: its peer's name, and the namespace it is born in."""
    peer = ifinfo() + attr(IFLA_IFNAME, text(ifname))
    if netns_fd is not None:
        peer += attr(IFLA_NET_NS_FD, u32(netns_fd))
    return attr(VETH_INFO_PEER, peer)


def bridge_data(forward_delay: int = 0, stp_state: int = 0) -> bytes:
    """IFLA_INFO_DATA of a bridge."""
    return attr(IFLA_BR_FORWARD_DELAY, u32(forward_delay)) + attr(IFLA_BR_STP_STATE,
                                                                  u32(stp_state))


def ipv4_prefixes() -> list[tuple[str, int]]:
    """(address, prefixlen) of every IPv4 route (all tables, default excluded) and address.

    Subnet allocation checks these on every build. pyroute2 parses every
    attribute of every message (~1.7 ms for a small host); this dump reads
    only the destination and prefix length (~0.03 ms). It runs in the
    calling thread's namespace.
    """
    out: list[tuple[str, int]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0) as sock:
        # struct rtmsg (12 bytes) and struct ifaddrmsg (8 bytes), family AF_INET
        for seq, (msg_type, request, wanted) in enumerate(
            ((RTM_GETROUTE, RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0),
              RTA_DST),
             (RTM_GETADDR, struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0), IFA_ADDRESS)),
            start=1,
        ):
            sock.send(HDR.pack(16 + len(request), msg_type, _F_REQUEST | _F_DUMP, seq, 0)
                      + request)
            for body in _dump_replies(sock):
                prefixlen = body[1]  # rtmsg.rtm_dst_len, ifaddrmsg.ifa_prefixlen
                if msg_type == RTM_GETROUTE and prefixlen == 0:
                    continue
                address = _find_attr(body, len(request), wanted)
                if address is not None and len(address) == 4:
                    out.append((socket.inet_ntoa(address), prefixlen))
    return out


def link_aliases() -> list[tuple[str, str]]:
    """(ifname, alias) of every link in the calling thread's namespace ("" when untagged).

    The end-of-session wait polls this until our links are gone; pyroute2
    would add ~20 MB of peak memory (and ~100 ms of import) just for that.
    """
    out: list[tuple[str, str]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0) as sock:
        request = ifinfo()
        sock.send(HDR.pack(16 + len(request), RTM_GETLINK, _F_REQUEST | _F_DUMP, 1, 0)
                  + request)
        for body in _dump_replies(sock):
            name = _find_attr(body, len(request), IFLA_IFNAME)
            alias = _find_attr(body, len(request), IFLA_IFALIAS)
            out.append((_c_string(name), _c_string(alias)))
    return out


def _c_string(payload: bytes | None) -> str:
    return "" if payload is None else payload.split(b"\0", 1)[0].decode(errors="replace")


def _dump_replies(sock: socket.socket) -> list[bytes]:
    """The message bodies of one dump, until NLMSG_DONE."""
    bodies: list[bytes] = []
    while True:
        data = sock.recv(65536)
        if not data:
            return bodies
        offset = 0
        while offset + 16 <= len(data):
            length, msg_type, _, _, _ = HDR.unpack_from(data, offset)
            if msg_type == _NLMSG_DONE:
                return bodies
            if msg_type == NLMSG_ERROR:
                code = -struct.unpack_from("=i", data, offset + 16)[0]
                if code:
                    raise RtnlError(code, f"netlink dump: {os.strerror(code)}")
            else:
                bodies.append(data[offset + 16 : offset + length])
            offset += (length + 3) & ~3


def parse_attrs(body: bytes, offset: int) -> dict[int, bytes]:
    """{kind: payload} of the rtattrs in `body` from `offset` on."""
    found: dict[int, bytes] = {}
    while offset + 4 <= len(body):
        length, kind = struct.unpack_from("=HH", body, offset)
        if length < 4:
            break
        found.setdefault(kind, body[offset + 4 : offset + length])
        offset += (length + 3) & ~3
    return found


def _find_attr(body: bytes, offset: int, wanted: int) -> bytes | None:
    """The payload of attribute `wanted` among the rtattrs from `offset`, or None."""
    return parse_attrs(body, offset).get(wanted)
