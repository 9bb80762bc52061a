"""Raw rtnetlink: every request pytest-netns makes, without pyroute2's overhead.

pyroute2 0.9 runs an asyncio event loop for every request and parses every
attribute of every reply: about 0.2-0.25 ms per request on the machines this
was measured on, 0.4 ms to open an `IPRoute`, and about 100 ms to import.
A topology build makes several requests per node, so those costs would
dominate small topologies. The requests here (create, change and delete
links; add and remove addresses; add routes; look a route up; dump links,
addresses and routes) are a fixed handful, encoded with `struct` and sent on
a plain NETLINK_ROUTE socket: about 20 microseconds each, plus the kernel's
own time. Traffic control (`tc.py`) encodes its qdiscs and filters with the
same helpers and sends them on the same socket. Refusals raise `RtnlError`,
which carries the errno in `code` just as pyroute2's `NetlinkError` does.

The encoders are pure functions (`*_body`), so a unit test can compare
their bytes with pyroute2's encoding of the same request, without root.

A socket belongs to the namespace of the thread that created it, so create
an `Rtnl` on the namespace's thread.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

# linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h, linux/veth.h
HDR = struct.Struct("=LHHLL")  # struct nlmsghdr
RTMSG = struct.Struct("=BBBBBBBBI")  # struct rtmsg
IFINFO = struct.Struct("=BxHiII")  # struct ifinfomsg
IFADDR = struct.Struct("=BBBBI")  # struct ifaddrmsg
NLMSG_ERROR, NLMSG_DONE = 2, 3
F_REQUEST, F_ACK, F_EXCL, F_CREATE, F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
F_REPLACE = 0x100
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
F_REPLACE = 0x100
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO = 1, 3, 4, 10, 18
IFLA_IFALIAS, IFLA_NET_NS_FD, IFLA_GSO_MAX_SEGS = 20, 28, 40
IFLA_NUM_TX_QUEUES, IFLA_NUM_RX_QUEUES = 31, 32
NDMSG = struct.Struct("=BxxxiHBB")  # struct ndmsg
NDA_DST, NDA_LLADDR = 1, 2
NUD_REACHABLE, NUD_STALE = 0x02, 0x04
NTF_MASTER = 0x04
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFLA_BR_FORWARD_DELAY, IFLA_BR_STP_STATE, IFLA_BR_MCAST_SNOOPING = 1, 5, 23
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_NODAD = 0x02
IFA_F_TENTATIVE = 0x40
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 7, 15
RT_TABLE_MAIN = 254
RTPROT_BOOT, RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 3, 0, 253
RTN_UNICAST, RTN_LOCAL = 1, 2
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000


class RtnlError(Exception):
    """The kernel refused a request; `code` is the errno (as in pyroute2's NetlinkError)."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(code, message or os.strerror(code))
        self.code = code


# -- encoding -------------------------------------------------------------------


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def text(value: str) -> bytes:
    """A NUL-terminated string payload (what pyroute2 and iproute2 send)."""
    return value.encode() + b"\0"


def u16(value: int) -> bytes:
    return struct.pack("=H", value)


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def u64(value: int) -> bytes:
    return struct.pack("=Q", value)


def ifinfo(index: int = 0, up: bool | None = None) -> bytes:
    """struct ifinfomsg; `up` True/False sets IFF_UP, None leaves the flags alone."""
    flags = IFF_UP if up else 0
    change = 0 if up is None else IFF_UP
    return IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change)


def family_of(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def packed(address: str) -> bytes:
    return socket.inet_pton(family_of(address), address)


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def one_queue() -> bytes:
    """One transmit and one receive queue, asked for at creation.

    A veth is otherwise born with a queue per possible CPU and cut down to
    one right after registration, and that cut waits for an RCU grace
    period (`synchronize_net`) while holding the rtnl lock: a good part of
    a veth's creation time, and every other netlink user waits with it.
    """
    return attr(IFLA_NUM_TX_QUEUES, u32(1)) + attr(IFLA_NUM_RX_QUEUES, u32(1))


def veth_peer(ifname: str, netns_fd: int | None = None, mac: str | None = None,
              single_queue: bool = False, mtu: int | None = None) -> bytes:
    """IFLA_INFO_DATA of a veth: its peer's name, MAC, MTU, queues and the namespace it is
    born in."""
    peer = ifinfo() + attr(IFLA_IFNAME, text(ifname))
    if mac is not None:
        peer += attr(IFLA_ADDRESS, mac_bytes(mac))
    if mtu is not None:
        peer += attr(IFLA_MTU, u32(mtu))
    if single_queue:
        peer += one_queue()
    if netns_fd is not None:
        peer += attr(IFLA_NET_NS_FD, u32(netns_fd))
    return attr(VETH_INFO_PEER, peer)


def bridge_data(forward_delay: int = 0, stp_state: int = 0,
                mcast_snooping: bool | None = None) -> bytes:
    """IFLA_INFO_DATA of a bridge (multicast snooping left to the kernel when None)."""
    data = attr(IFLA_BR_FORWARD_DELAY, u32(forward_delay)) + attr(IFLA_BR_STP_STATE,
                                                                  u32(stp_state))
    if mcast_snooping is not None:
        data += attr(IFLA_BR_MCAST_SNOOPING, bytes([int(mcast_snooping)]))
    return data


def new_link_body(ifname: str, kind: str, data: bytes = b"", master: int | None = None,
                  up: bool = True, mtu: int | None = None, single_queue: bool = False,
                  mac: str | None = None) -> bytes:
    """RTM_NEWLINK creating a link (up unless `up` is False); `data` is its kind's
    IFLA_INFO_DATA. The kernel ignores IFLA_IFALIAS at creation: set it afterwards."""
    info = attr(IFLA_INFO_KIND, text(kind)) + (attr(IFLA_INFO_DATA, data) if data else b"")
    body = (ifinfo(up=True) if up else ifinfo()) + attr(IFLA_IFNAME, text(ifname))
    if mac is not None:
        body += attr(IFLA_ADDRESS, mac_bytes(mac))
    if mtu is not None:
        body += attr(IFLA_MTU, u32(mtu))
    if single_queue:
        body += one_queue()
    if master is not None:
        body += attr(IFLA_MASTER, u32(master))
    return body + attr(IFLA_LINKINFO, info)


def neighbour_body(index: int, address: str, mac: str | None = None,
                   state: int = NUD_STALE) -> bytes:
    """RTM_NEWNEIGH/RTM_DELNEIGH: `address` is at `mac` on link `index`.

    A STALE entry is what a finished ARP exchange leaves behind: the first
    packet goes out at once, and the kernel confirms the entry with a
    unicast probe later, exactly as it would have.
    """
    body = NDMSG.pack(family_of(address), index, state, 0, 0) + attr(NDA_DST, packed(address))
    if mac is not None:
        body += attr(NDA_LLADDR, mac_bytes(mac))
    return body


def fdb_body(port: int, mac: str) -> bytes:
    """RTM_NEWNEIGH for a bridge's forwarding database: `mac` is behind `port`.

    A dynamic entry of the bridge itself (`bridge fdb add MAC dev PORT master
    dynamic`): what learning leaves after the station's first frame, and it
    ages out the same way.
    """
    return NDMSG.pack(socket.AF_BRIDGE, port, NUD_REACHABLE, NTF_MASTER, 0) + attr(
        NDA_LLADDR, mac_bytes(mac))


def set_link_body(index: int, up: bool | None = None, ifname: str | None = None,
                  alias: str | None = None, master: int | None = None,
                  netns_fd: int | None = None, gso_max_segs: int | None = None) -> bytes:
    """RTM_NEWLINK changing a link: state, name, alias, master, namespace, and how
    many segments one GSO packet it sends may carry."""
    body = ifinfo(index, up)
    if ifname is not None:
        body += attr(IFLA_IFNAME, text(ifname))
    if alias is not None:
        body += attr(IFLA_IFALIAS, text(alias))
    if master is not None:
        body += attr(IFLA_MASTER, u32(master))
    if netns_fd is not None:
        body += attr(IFLA_NET_NS_FD, u32(netns_fd))
    if gso_max_segs is not None:
        body += attr(IFLA_GSO_MAX_SEGS, u32(gso_max_segs))
    return body


def address_body(index: int, address: str, prefixlen: int, nodad: bool = False) -> bytes:
    """RTM_NEWADDR/RTM_DELADDR: local and peer address alike, as `ip addr add` sends.

    IPv6 addresses carry only IFA_ADDRESS (as iproute2 sends them); `nodad`
    skips duplicate address detection, so an IPv6 address works at once
    instead of about a second later.
    """
    family = family_of(address)
    raw = packed(address)
    body = IFADDR.pack(family, prefixlen, 0, 0, index) + attr(IFA_ADDRESS, raw)
    if family == socket.AF_INET:
        body += attr(IFA_LOCAL, raw)
    if nodad:
        body += attr(IFA_FLAGS, u32(IFA_F_NODAD))
    return body


def route_body(dst: str, gateway: str | None = None, oif: int | None = None) -> bytes:
    """RTM_NEWROUTE for a unicast route in the main table ("default" or a CIDR)."""
    family = family_of(gateway or dst)
    if dst in ("default", "0.0.0.0/0", "::/0"):
        net = None
        dst_len = 0
    else:
        net = ipaddress.ip_network(dst, strict=False)
        dst_len = net.prefixlen
    scope = RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK
    body = RTMSG.pack(family, dst_len, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0)
    if net is not None:
        body += attr(RTA_DST, net.network_address.packed)
    if gateway:
        body += attr(RTA_GATEWAY, packed(gateway))
    if oif is not None:
        body += attr(RTA_OIF, u32(oif))
    return body


def route_get_body(dst: str) -> bytes:
    """RTM_GETROUTE for one destination: which route would the kernel use?"""
    family = family_of(dst)
    width = 32 if family == socket.AF_INET else 128
    return RTMSG.pack(family, width, 0, 0, 0, 0, 0, 0, 0) + attr(RTA_DST, packed(dst))


def message(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    return HDR.pack(HDR.size + len(body), msg_type, flags, seq, 0) + body


# -- decoding -------------------------------------------------------------------


def parse_attrs(body: bytes, offset: int) -> dict[int, bytes]:
    """{kind: payload} of the rtattrs in `body` from `offset` on (nested flag masked)."""
    found: dict[int, bytes] = {}
    while offset + 4 <= len(body):
        length, kind = struct.unpack_from("=HH", body, offset)
        if length < 4:
            break
        found.setdefault(kind & 0x3FFF, body[offset + 4 : offset + length])
        offset += (length + 3) & ~3
    return found


def c_string(payload: bytes | None) -> str:
    return "" if payload is None else payload.split(b"\0", 1)[0].decode(errors="replace")


def _u32(payload: bytes | None) -> int | None:
    return None if payload is None or len(payload) < 4 else int(struct.unpack_from("=I",
                                                                                   payload)[0])


def _address(family: int, payload: bytes | None) -> str | None:
    return None if payload is None else socket.inet_ntop(family, payload)


@dataclass(frozen=True)
class LinkInfo:
    """One link as a dump reports it."""

    index: int
    ifname: str
    kind: str | None
    alias: str
    up: bool
    master: int | None
    mac: str
    lower_up: bool = False  # carrier: a veth has it once both ends are up
    gso_max_segs: int | None = None


@dataclass(frozen=True)
class AddressInfo:
    """One address as a dump reports it."""

    index: int
    address: str
    prefixlen: int
    family: int
    tentative: bool = False  # IPv6: not usable yet (duplicate address detection pending)


@dataclass(frozen=True)
class RouteInfo:
    """One route as a dump reports it; `dst` is a CIDR ("0.0.0.0/0" for a default)."""

    dst: str
    gateway: str | None
    oif: int | None
    table: int
    type: int
    family: int

    @property
    def is_default(self) -> bool:
        return self.dst.endswith("/0")


@dataclass(frozen=True)
class RouteAnswer:
    """Where the kernel would send a packet for `dst` (an RTM_GETROUTE answer)."""

    dst: str
    oif: int
    src: str | None  # the source address the kernel would pick
    gateway: str | None
    local: bool  # dst is an address of this namespace itself


def decode_link(body: bytes) -> LinkInfo:
    _family, _type, index, flags, _change = IFINFO.unpack_from(body)
    attrs = parse_attrs(body, IFINFO.size)
    info = parse_attrs(attrs[IFLA_LINKINFO], 0) if IFLA_LINKINFO in attrs else {}
    mac = attrs.get(IFLA_ADDRESS, b"")
    return LinkInfo(index, c_string(attrs.get(IFLA_IFNAME)),
                    c_string(info.get(IFLA_INFO_KIND)) or None, c_string(attrs.get(IFLA_IFALIAS)),
                    bool(flags & IFF_UP), _u32(attrs.get(IFLA_MASTER)),
                    ":".join(f"{b:02x}" for b in mac), bool(flags & IFF_LOWER_UP),
                    _u32(attrs.get(IFLA_GSO_MAX_SEGS)))


def decode_address(body: bytes) -> AddressInfo | None:
    family, prefixlen, flags, _scope, index = IFADDR.unpack_from(body)
    attrs = parse_attrs(body, IFADDR.size)
    address = _address(family, attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS))
    return None if address is None else AddressInfo(index, address, prefixlen, family,
                                                     bool(flags & IFA_F_TENTATIVE))


def decode_route(body: bytes) -> RouteInfo:
    family, dst_len, _src_len, _tos, table, _proto, _scope, rtype, _flags = RTMSG.unpack_from(body)
    attrs = parse_attrs(body, RTMSG.size)
    zero = "0.0.0.0" if family == socket.AF_INET else "::"
    dst = _address(family, attrs.get(RTA_DST)) or zero
    return RouteInfo(f"{dst}/{dst_len}", _address(family, attrs.get(RTA_GATEWAY)),
                     _u32(attrs.get(RTA_OIF)), _u32(attrs.get(RTA_TABLE)) or table, rtype, family)


def decode_route_answer(body: bytes, dst: str) -> RouteAnswer:
    family = body[0]
    attrs = parse_attrs(body, RTMSG.size)
    return RouteAnswer(dst, _u32(attrs.get(RTA_OIF)) or 0,
                       _address(family, attrs.get(RTA_PREFSRC)),
                       _address(family, attrs.get(RTA_GATEWAY)), body[7] == RTN_LOCAL)


# -- the socket -----------------------------------------------------------------


def open_socket() -> socket.socket:
    """A NETLINK_ROUTE socket in the calling thread's namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    sock.bind((0, 0))
    return sock


def read_answer(sock: socket.socket, seq: int, single: bool = False) -> list[tuple[int, bytes]]:
    """(type, body) of every message answering `seq`, until its ack, error or NLMSG_DONE.

    `single`: the request asked for no acknowledgement (a route lookup), so
    the first answer is the whole answer. Messages with another sequence
    number (a stale answer to an abandoned request) are skipped. A refusal
    raises RtnlError.
    """
    out: list[tuple[int, bytes]] = []
    while True:
        data = sock.recv(1 << 16)
        offset = 0
        while offset + HDR.size <= len(data):
            length, kind, _flags, msg_seq, _pid = HDR.unpack_from(data, offset)
            if length < HDR.size:
                return out
            body = data[offset + HDR.size : offset + length]
            offset += (length + 3) & ~3
            if msg_seq != seq:
                continue
            if kind == NLMSG_DONE:
                return out
            if kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", body)[0]
                if code:
                    raise RtnlError(code)
                return out
            out.append((kind, body))
            if single:
                return out


class Rtnl:
    """A raw NETLINK_ROUTE socket in the creating thread's namespace."""

    def __init__(self) -> None:
        self._sock = open_socket()
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def _send(self, msg_type: int, flags: int, body: bytes,
              single: bool = False) -> list[tuple[int, bytes]]:
        self._seq += 1
        self._sock.send(message(msg_type, flags, self._seq, body))
        return read_answer(self._sock, self._seq, single)

    def request(self, msg_type: int, body: bytes, create: bool = False,
                replace: bool = False) -> None:
        """Send one request and wait for its acknowledgement; RtnlError on failure.

        `create` makes a new object (refused if it exists); `replace` makes it
        or replaces the one that exists, atomically (tc's `replace`).
        """
        flags = F_REQUEST | F_ACK
        if create:
            flags |= F_CREATE | F_EXCL
        elif replace:
            flags |= F_CREATE | F_REPLACE
        self._send(msg_type, flags, body)

    def dump(self, msg_type: int, body: bytes) -> list[bytes]:
        """The bodies of every message of one dump."""
        return [b for _, b in self._send(msg_type, F_REQUEST | F_DUMP, body)]

    # -- changes ---------------------------------------------------------------

    def add_link(self, ifname: str, kind: str, data: bytes = b"",
                 master: int | None = None, single_queue: bool = False,
                 mac: str | None = None) -> None:
        self.request(RTM_NEWLINK, new_link_body(ifname, kind, data, master,
                                                single_queue=single_queue, mac=mac),
                     create=True)

    def set_neighbour(self, index: int, address: str, mac: str) -> None:
        """Add or replace a neighbour entry (STALE: as if ARP had just answered)."""
        self._send(RTM_NEWNEIGH, F_REQUEST | F_ACK | F_CREATE | F_REPLACE,
                   neighbour_body(index, address, mac))

    def delete_neighbour(self, index: int, address: str) -> None:
        self.request(RTM_DELNEIGH, neighbour_body(index, address, state=0))

    def set_fdb(self, port: int, mac: str) -> None:
        """Tell a bridge which port `mac` is behind (add or replace)."""
        self._send(RTM_NEWNEIGH, F_REQUEST | F_ACK | F_CREATE | F_REPLACE, fdb_body(port, mac))

    def set_link(self, index: int, up: bool | None = None, ifname: str | None = None,
                 alias: str | None = None, master: int | None = None,
                 netns_fd: int | None = None, gso_max_segs: int | None = None) -> None:
        self.request(RTM_NEWLINK, set_link_body(index, up, ifname, alias, master, netns_fd,
                                                gso_max_segs))

    def delete_link(self, index: int) -> None:
        self.request(RTM_DELLINK, ifinfo(index))

    def add_address(self, index: int, address: str, prefixlen: int, nodad: bool = False) -> None:
        self.request(RTM_NEWADDR, address_body(index, address, prefixlen, nodad), create=True)

    def delete_address(self, index: int, address: str, prefixlen: int) -> None:
        self.request(RTM_DELADDR, address_body(index, address, prefixlen))

    def add_route(self, dst: str, gateway: str | None = None, oif: int | None = None) -> None:
        self.request(RTM_NEWROUTE, route_body(dst, gateway, oif), create=True)

    # -- reads -----------------------------------------------------------------

    def get_route(self, dst: str) -> RouteAnswer:
        """The route the kernel would use for `dst`; RtnlError when it has none."""
        for kind, body in self._send(RTM_GETROUTE, F_REQUEST, route_get_body(dst), single=True):
            if kind == RTM_NEWROUTE:
                return decode_route_answer(body, dst)
        raise RtnlError(0, f"no answer to a route lookup for {dst}")

    def links(self) -> list[LinkInfo]:
        return [decode_link(b) for b in self.dump(RTM_GETLINK, ifinfo())]

    def link(self, index: int) -> LinkInfo:
        """One link by index (RtnlError ENODEV when there is none)."""
        for kind, body in self._send(RTM_GETLINK, F_REQUEST, ifinfo(index), single=True):
            if kind == RTM_NEWLINK:
                return decode_link(body)
        raise RtnlError(0, f"no answer to a link lookup for index {index}")

    def addresses(self, family: int = socket.AF_UNSPEC) -> list[AddressInfo]:
        found = (decode_address(b) for b in self.dump(RTM_GETADDR,
                                                       IFADDR.pack(family, 0, 0, 0, 0)))
        return [a for a in found if a is not None]

    def routes(self, family: int = socket.AF_INET) -> list[RouteInfo]:
        return [decode_route(b) for b in
                self.dump(RTM_GETROUTE, RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0))]


def host_prefixes(family: int = socket.AF_INET) -> list[tuple[str, int]]:
    """(address, prefixlen) of every route (all tables, defaults excluded) and address,
    of one family, or of IPv4 and IPv6 alike with AF_UNSPEC (one dump of each kind).

    Subnet allocation checks these on every build; it runs in the calling
    thread's namespace and decodes only what it needs.
    """
    wanted = (socket.AF_INET, socket.AF_INET6) if family == socket.AF_UNSPEC else (family,)
    rt = Rtnl()
    try:
        # an AF_UNSPEC dump also holds other families' tables (multicast routing): skip them
        routes = [decode_route(b) for b in rt.dump(RTM_GETROUTE, RTMSG.pack(
            family, 0, 0, 0, 0, 0, 0, 0, 0)) if b[0] in wanted]
        addresses = [(a.address, a.prefixlen) for a in rt.addresses(family)
                     if a.family in wanted]
    finally:
        rt.close()
    return [(r.dst.split("/")[0], int(r.dst.split("/")[1])) for r in routes
            if not r.is_default] + addresses


def link_aliases() -> list[tuple[str, str]]:
    """(ifname, alias) of every link in the calling thread's namespace ("" when untagged)."""
    rt = Rtnl()
    try:
        return [(link.ifname, link.alias) for link in rt.links()]
    finally:
        rt.close()
