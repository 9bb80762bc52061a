"""Probe sockets that live inside each node's namespace, and one reader for all.

scapy's own send/receive functions consult its global `conf` (routes,
interfaces), which describes the namespace scapy was imported in and is
wrong everywhere else. So scapy here only builds and parses packets; the
sockets are opened on the node's namespace thread (a socket keeps the
namespace it was created in for its whole life) and then used from any
thread:

- one raw ICMP socket per node sends echo requests and receives every ICMP
  message that reaches the namespace: echo replies and the errors that quote
  our TCP and UDP probes;
- one raw TCP socket per node sends SYNs and receives SYN/ACKs and RSTs
  (a BPF filter drops everything else in the kernel); the source port is
  reserved by a bound, non-listening TCP socket, so nothing else in the
  namespace uses it, and the kernel answers the SYN/ACK with a RST;
- UDP probes use ordinary bound UDP sockets, pooled.

IPv6 has the same three, opened on the first IPv6 probe: a raw ICMPv6
socket (echo requests, and the ICMPv6 errors quoting our probes), a raw TCP
socket and pooled UDP sockets. An IPv6 raw socket hands over the packet
without its IP header (the peer comes with `recvfrom`), and the kernel
computes the checksums (ICMPv6 always, TCP with IPV6_CHECKSUM), so IPv6
probes are built and parsed with `struct` alone.

Sockets are opened once per node and reused, so a probe costs a few packets
and no thread hop. A single receiver thread waits on all of them (epoll) and
hands each answer to the probe whose key it matches: ICMP id, or TCP/UDP
ports, plus the peer address, so concurrent probes never take each other's
answers. The sockets pin their namespace, so they are closed when the node
is released (`Node.on_release`).
"""

from __future__ import annotations

import ctypes
import functools
import ipaddress
import itertools
import random
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable
from typing import TypeVar

from ..errors import EgressError, NetnsError
from ..kernel.rtnl import family_of
from ..nodes.base import Node
from .receiver import RECEIVER, Batch, Key, Pending, Scapy
from .result import PAYLOAD, SILENT
from .route import NoRoute, Route, RouteLookup

SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1  # at level IPPROTO_ICMPV6
IPV6_CHECKSUM = 7  # at level IPPROTO_IPV6: the kernel fills in the checksum at this offset
SO_ATTACH_FILTER = 26
# ICMP types the raw socket keeps: echo reply, destination unreachable, time exceeded
_ICMP_KEEP = (0, 3, 11)
# ICMPv6 types kept: destination unreachable, packet too big, time exceeded, echo reply
_ICMP6_KEEP = (1, 2, 3, 129)
# classic BPF over the IP packet: keep TCP segments with RST, or with SYN and ACK
_TCP_BPF = (
    (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf)       x = IP header length
    (0x50, 0, 0, 13),  # ldb [x+13]             TCP flags
    (0x45, 2, 0, 0x04),  # jset #RST -> accept
    (0x54, 0, 0, 0x12),  # and #(SYN|ACK)
    (0x15, 0, 1, 0x12),  # jeq #(SYN|ACK) -> accept, else drop
    (0x06, 0, 0, 0x40000),  # accept
    (0x06, 0, 0, 0),  # drop
)
# the same over an IPv6 raw socket, which sees the TCP segment without its IP header
_TCP6_BPF = (
    (0x30, 0, 0, 13),  # ldb [13]               TCP flags
    (0x45, 2, 0, 0x04),  # jset #RST -> accept
    (0x54, 0, 0, 0x12),  # and #(SYN|ACK)
    (0x15, 0, 1, 0x12),  # jeq #(SYN|ACK) -> accept, else drop
    (0x06, 0, 0, 0x40000),  # accept
    (0x06, 0, 0, 0),  # drop
)
POOL_BATCH = 8
POOL_MAX = 64

_UNREACH = {
    0: "net unreachable",
    1: "host unreachable",
    2: "protocol unreachable",
    3: "port unreachable",
    4: "fragmentation needed",
    5: "source route failed",
    6: "destination network unknown",
    7: "destination host unknown",
    9: "network administratively prohibited",
    10: "host administratively prohibited",
    11: "network unreachable for TOS",
    12: "host unreachable for TOS",
    13: "communication administratively prohibited",
}
_UNREACH6 = {
    0: "no route to destination",
    1: "communication administratively prohibited",
    2: "beyond scope of source address",
    3: "address unreachable",
    4: "port unreachable",
    5: "source address failed ingress/egress policy",
    6: "reject route to destination",
}
_ICMP6_ERRORS = {2: "packet too big", 3: "time exceeded (hop limit ran out: a routing loop?)"}

# -- sockets inside one namespace -------------------------------------------


def _open_icmp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         socket.IPPROTO_ICMP)
    keep = 0
    for t in _ICMP_KEEP:
        keep |= 1 << t
    sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", ~keep & 0xFFFFFFFF))
    sock.setblocking(False)
    return sock


def _open_icmp6() -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         socket.IPPROTO_ICMPV6)
    block = [0xFFFFFFFF] * 8  # a set bit blocks that type
    for t in _ICMP6_KEEP:
        block[t >> 5] &= ~(1 << (t & 31))
    sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *block))
    sock.setblocking(False)
    return sock


def _open_tcp(family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.IPPROTO_TCP)
    program = _TCP6_BPF if family == socket.AF_INET6 else _TCP_BPF
    code = b"".join(struct.pack("HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(code)
    prog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, 16)  # TCP's checksum field
    sock.setblocking(False)
    return sock


def _bound(kind: int, count: int, family: int = socket.AF_INET) -> list[socket.socket]:
    """`count` sockets bound to free ports (UDP to probe with, TCP to reserve a port)."""
    out = []
    for _ in range(count):
        sock = socket.socket(family, kind | socket.SOCK_CLOEXEC)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        sock.setblocking(False)
        out.append(sock)
    return out


def _peer6(address: str) -> str:
    """An IPv6 peer address as the probe keys spell it (RFC 5952, no zone)."""
    return str(ipaddress.IPv6Address(address.split("%", 1)[0]))


def _source_for(dst: str) -> str:
    """The source address the kernel picks for `dst` (run on the namespace thread)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((dst, 9))
        return str(sock.getsockname()[0])


T = TypeVar("T")
_IDENTS = itertools.count(random.randrange(1, 0xFFFF))


class Prober:
    """The probe sockets of one node, opened inside its namespace once and reused."""

    def __init__(self, node: Node) -> None:
        self.name = node.name
        self._node = weakref.ref(node)  # the node's registry entry must not keep it alive
        self._lock = threading.Lock()
        self._pending: dict[Key, Pending] = {}
        self._ifnames: dict[int, str] = {}
        self._allowed_seen: frozenset[str] = frozenset()
        # per address family: pooled UDP sockets, port-reserving TCP sockets, raw TCP
        self._udp_pool: dict[int, list[socket.socket]] = {socket.AF_INET: [],
                                                          socket.AF_INET6: []}
        self._port_pool: dict[int, list[socket.socket]] = {socket.AF_INET: [],
                                                           socket.AF_INET6: []}
        self._tcp: dict[int, socket.socket] = {}
        self._icmp6: socket.socket | None = None
        self._closed = False
        self._routes = node.call(RouteLookup)
        self._icmp = node.call(_open_icmp)
        RECEIVER.register(self._icmp, self._on_icmp)

    def node(self) -> Node:
        node = self._node()
        if node is None:
            raise NetnsError(f"node {self.name!r} is gone")
        return node

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run fn inside the node's namespace (where sockets must be opened)."""
        return self.node().call(fn, *args)

    # -- the egress guard ---------------------------------------------------

    def allowed_ifnames(self) -> frozenset[str]:
        """Interfaces a topology created here (plus lo): the only ones probes may use."""
        return self.node().egress_ifnames()

    def route(self, dst: str) -> Route | NoRoute:
        """The route to `dst`, or EgressError when it leaves through a foreign interface."""
        found = self._routes.get(dst)
        if isinstance(found, NoRoute):
            return found
        allowed = self.allowed_ifnames()
        ifname = self._ifname(found.oif, allowed)
        if ifname not in allowed:
            via = f" via {found.gateway}" if found.gateway else ""
            raise EgressError(
                f"refusing to probe {dst} from {self.name}: the route leaves through "
                f"{ifname!r}{via}, an interface that no pytest-netns topology created, so the "
                f"probe could leave this machine; nothing was sent. Probe addresses inside "
                f"your topology (interfaces a topology made here: {sorted(allowed)})"
            )
        return found

    def _ifname(self, oif: int, allowed: frozenset[str]) -> str:
        with self._lock:
            if allowed != self._allowed_seen:  # links came or went: indexes may be stale
                self._ifnames.clear()
                self._allowed_seen = allowed
            name = self._ifnames.get(oif)
        if name is None:
            try:
                name = str(self.call(socket.if_indextoname, oif))
            except OSError:
                name = f"ifindex {oif}"
            with self._lock:
                self._ifnames[oif] = name
        return name

    # -- starting probes ----------------------------------------------------

    def _register(self, pending: Pending, make_key: Callable[[], Key]) -> None:
        with self._lock:
            if self._closed:
                raise NetnsError(f"node {self.name!r} was released while probing from it")
            key = make_key()
            while key in self._pending:
                key = make_key()
            pending.key = key
            self._pending[key] = pending

    def forget(self, pending: Pending) -> None:
        with self._lock:
            if pending.key is not None and self._pending.get(pending.key) is pending:
                del self._pending[pending.key]

    def _lookup(self, key: Key) -> Pending | None:
        with self._lock:
            return self._pending.get(key)

    def start_icmp(self, dst: str, batch: Batch) -> Pending:
        pending = Pending(self, "icmp", dst, None, None, batch)
        self._register(pending, lambda: ("icmp", dst, next(_IDENTS) % 0xFFFF + 1))
        assert pending.key is not None
        ident = pending.key[2]
        if family_of(dst) == socket.AF_INET6:
            try:
                icmp6 = self._icmp6_socket()
            except BaseException:
                pending.finish(0)
                raise

            def send6(p: Pending) -> None:
                # type 128 (echo request); the kernel fills in the checksum
                packet = struct.pack("!BBHHH", 128, 0, 0, ident, len(p.sends) + 1) + PAYLOAD
                p.sends.append(time.perf_counter())
                icmp6.sendto(packet, (dst, 0))

            pending.sender = send6
            return pending
        inet = Scapy.get()
        icmp = self._icmp

        def send(p: Pending) -> None:
            packet = bytes(inet.ICMP(type=8, id=ident, seq=len(p.sends) + 1)
                           / inet.Raw(PAYLOAD))
            p.sends.append(time.perf_counter())
            icmp.sendto(packet, (dst, 0))

        pending.sender = send
        return pending

    def start_tcp(self, route: Route, port: int, batch: Batch) -> Pending:
        dst = route.dst
        family = family_of(dst)
        pending = Pending(self, "tcp", dst, port, None, batch)
        pool = self._port_pool[family]
        reserved = self._take(pool, socket.SOCK_STREAM, family)
        sport = int(reserved.getsockname()[1])
        pending.cleanup = lambda: self._give(pool, reserved)
        try:
            self._register(pending, lambda: ("tcp", dst, port, sport))
            isn = random.randrange(1, 0xFFFFFFFF)
            pending.isn = isn
            if family == socket.AF_INET6:  # the kernel computes the checksum (IPV6_CHECKSUM)
                segment = struct.pack("!HHIIBBHHH", sport, port, isn, 0, 5 << 4, 0x02, 64240,
                                      0, 0)
            else:
                src = route.src or self.call(_source_for, dst)
                inet = Scapy.get()
                segment = bytes(inet.IP(src=src, dst=dst)
                                / inet.TCP(sport=sport, dport=port, flags="S", seq=isn,
                                           window=64240))[20:]
            raw = self._tcp_socket(family)
        except BaseException:
            pending.finish(0)
            raise

        def send(p: Pending) -> None:
            p.sends.append(time.perf_counter())
            raw.sendto(segment, (dst, 0))

        pending.sender = send
        return pending

    def start_udp(self, dst: str, port: int, payload: bytes, batch: Batch) -> Pending:
        pending = Pending(self, "udp", dst, port, None, batch)
        pool = self._udp_pool[family_of(dst)]
        sock = self._take(pool, socket.SOCK_DGRAM, family_of(dst))
        sport = int(sock.getsockname()[1])

        reading = threading.Lock()  # held while the receiver reads this socket

        def cleanup() -> None:
            with reading:  # after this, no late read can take the next probe's reply
                pending.closed = True
                RECEIVER.unregister(sock)
            self._give(pool, sock)

        pending.cleanup = cleanup
        try:
            self._register(pending, lambda: ("udp", dst, port, sport))
            RECEIVER.register(sock, lambda s: self._on_udp(s, pending, reading))
        except BaseException:
            pending.finish(0)
            raise

        def send(p: Pending) -> None:
            p.sends.append(time.perf_counter())
            sock.sendto(payload, (dst, port))

        pending.sender = send
        return pending

    # -- pools --------------------------------------------------------------

    def _take(self, pool: list[socket.socket], kind: int,
              family: int = socket.AF_INET) -> socket.socket:
        with self._lock:
            if self._closed:
                raise NetnsError(f"node {self.name!r} was released while probing from it")
            if pool:
                return pool.pop()
        fresh = self.call(_bound, kind, POOL_BATCH, family)
        with self._lock:
            if not self._closed:
                pool.extend(fresh[1:])
                return fresh[0]
        for sock in fresh:  # released meanwhile: keep nothing that pins the namespace
            sock.close()
        raise NetnsError(f"node {self.name!r} was released while probing from it")

    def _give(self, pool: list[socket.socket], sock: socket.socket) -> None:
        if sock.type == socket.SOCK_DGRAM:
            _drain(sock)
        with self._lock:
            if not self._closed and len(pool) < POOL_MAX:
                pool.append(sock)
                return
        sock.close()

    def _tcp_socket(self, family: int = socket.AF_INET) -> socket.socket:
        handler = self._on_tcp6 if family == socket.AF_INET6 else self._on_tcp
        return self._lazy(lambda: self._tcp.get(family), lambda s: self._tcp.update({family: s}),
                          functools.partial(_open_tcp, family), handler)

    def _icmp6_socket(self) -> socket.socket:
        return self._lazy(lambda: self._icmp6, lambda s: setattr(self, "_icmp6", s),
                          _open_icmp6, self._on_icmp6)

    def _lazy(self, get: Callable[[], socket.socket | None],
              keep: Callable[[socket.socket], object], open_it: Callable[[], socket.socket],
              handler: Callable[[socket.socket], None]) -> socket.socket:
        """A socket opened on first use (inside the namespace), kept and read from then on."""
        with self._lock:
            raw = get()
        if raw is None:
            raw = self.call(open_it)
            with self._lock:
                if get() is None and not self._closed:
                    keep(raw)
                    RECEIVER.register(raw, handler)
                    return raw
                raw.close()
                kept = get()
                if kept is None:
                    raise NetnsError(f"node {self.name!r} was released while probing")
                raw = kept
        return raw

    # -- answers (on the receiver thread) -------------------------------------

    def _on_icmp(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                return
            self._icmp_packet(data)

    def _icmp_packet(self, data: bytes) -> None:
        if len(data) < 28:
            return
        ihl = (data[0] & 0x0F) * 4
        kind = data[ihl]
        peer = socket.inet_ntoa(data[12:16])
        if kind == 0:
            ident = int.from_bytes(data[ihl + 4 : ihl + 6], "big")
            pending = self._lookup(("icmp", peer, ident))
            if pending is None:
                return  # someone else's echo reply: not worth parsing
            echo = Scapy.get().IP(data)[1]
            seq = int(echo.seq)
            if bytes(echo.payload) != PAYLOAD or not 1 <= seq <= len(pending.sends):
                return
            pending.resolve("reply", f"echo reply from {peer}, seq {seq}",
                            sent_at=pending.sends[seq - 1])
            return
        inet = Scapy.get()
        packet = inet.IP(data)
        quoted = packet.getlayer(inet.IPerror)
        if quoted is None:
            return
        inner = quoted.payload
        if quoted.proto == 1 and isinstance(inner, inet.ICMPerror):
            key: Key = ("icmp", quoted.dst, int(inner.id))
        elif quoted.proto == 6 and isinstance(inner, inet.TCPerror):
            key = ("tcp", quoted.dst, int(inner.dport), int(inner.sport))
        elif quoted.proto == 17 and isinstance(inner, inet.UDPerror):
            key = ("udp", quoted.dst, int(inner.dport), int(inner.sport))
        else:
            return
        pending = self._lookup(key)
        if pending is None:
            return
        icmp = packet[inet.ICMP]
        if kind == 11:
            what = "time exceeded (TTL ran out: a routing loop?)"
        else:
            what = _UNREACH.get(int(icmp.code), f"unreachable, code {icmp.code}")
        state = "unreachable"
        if pending.proto == "udp" and kind == 3 and icmp.code == 3:
            if peer == quoted.dst:
                state = "closed"
            else:
                what += " (sent by a hop on the path, not by the destination)"
        pending.resolve(state, f"ICMP {what} from {peer}")

    def _on_icmp6(self, sock: socket.socket) -> None:
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                return
            if len(data) >= 8:
                self._icmp6_packet(data, _peer6(addr[0]))

    def _icmp6_packet(self, data: bytes, peer: str) -> None:
        """An ICMPv6 message (no IP header): an echo reply, or an error quoting a probe."""
        kind, code = data[0], data[1]
        if kind == 129:
            ident, seq = struct.unpack_from("!HH", data, 4)
            pending = self._lookup(("icmp", peer, ident))
            if (pending is None or data[8:] != PAYLOAD or not 1 <= seq <= len(pending.sends)):
                return
            pending.resolve("reply", f"echo reply from {peer}, seq {seq}",
                            sent_at=pending.sends[seq - 1])
            return
        # an error: the invoking packet's IPv6 header is quoted from offset 8
        if len(data) < 8 + 40 + 8:
            return
        next_header = data[8 + 6]
        quoted_dst = socket.inet_ntop(socket.AF_INET6, data[8 + 24 : 8 + 40])
        inner = 8 + 40
        if next_header == 58 and data[inner] == 128:
            key: Key = ("icmp", quoted_dst, struct.unpack_from("!H", data, inner + 4)[0])
        elif next_header in (6, 17):
            sport, dport = struct.unpack_from("!HH", data, inner)
            key = ("tcp" if next_header == 6 else "udp", quoted_dst, dport, sport)
        else:
            return
        pending = self._lookup(key)
        if pending is None:
            return
        if kind == 1:
            what = _UNREACH6.get(code, f"unreachable, code {code}")
        else:
            what = _ICMP6_ERRORS.get(kind, f"error type {kind}, code {code}")
        state = "unreachable"
        if pending.proto == "udp" and kind == 1 and code == 4:
            if peer == quoted_dst:
                state = "closed"
            else:
                what += " (sent by a hop on the path, not by the destination)"
        pending.resolve(state, f"ICMPv6 {what} from {peer}")

    def _on_tcp6(self, sock: socket.socket) -> None:
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                return
            if len(data) < 20:
                continue
            peer = _peer6(addr[0])
            their, ours, _seq, ack = struct.unpack_from("!HHII", data)
            pending = self._lookup(("tcp", peer, their, ours))
            if pending is None or ack != (pending.isn + 1) & 0xFFFFFFFF:
                continue  # not ours, or an answer to an earlier probe that used this port
            flags = data[13]
            if flags & 0x04:
                pending.resolve("closed", f"RST from {peer}")
            elif flags & 0x12 == 0x12:
                pending.resolve("open", f"SYN/ACK from {peer}")

    def _on_tcp(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                return
            if len(data) < 40:
                continue
            ihl = (data[0] & 0x0F) * 4
            peer = socket.inet_ntoa(data[12:16])
            their, ours = struct.unpack_from("!HH", data, ihl)
            pending = self._lookup(("tcp", peer, their, ours))
            if pending is None:
                continue
            segment = Scapy.get().IP(data)[1]
            if int(segment.ack) != (pending.isn + 1) & 0xFFFFFFFF:
                continue  # an answer to an earlier probe that used this port
            flags = int(segment.flags)
            if flags & 0x04:
                pending.resolve("closed", f"RST from {peer}")
            elif flags & 0x12 == 0x12:
                pending.resolve("open", f"SYN/ACK from {peer}")

    def _on_udp(self, sock: socket.socket, pending: Pending, reading: threading.Lock) -> None:
        with reading:
            while not pending.closed:
                try:
                    data, addr = sock.recvfrom(65535)
                except BlockingIOError:
                    return
                except ConnectionError:
                    continue  # ICMP errors are read, with their sender, on the raw socket
                peer = _peer6(addr[0]) if len(addr) == 4 else addr[0]
                if (peer, addr[1]) == (pending.dst, pending.port):
                    shown = f"[{peer}]" if len(addr) == 4 else peer
                    pending.resolve("open", f"{len(data)}-byte reply from {shown}:{addr[1]}")

    # -- lifetime -------------------------------------------------------------

    def close(self) -> None:
        """Close every socket (they pin the namespace); answer what is still waiting."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiting = list(self._pending.values())
            socks = [self._icmp, *self._tcp.values()]
            if self._icmp6 is not None:
                socks.append(self._icmp6)
            for pools in (self._udp_pool, self._port_pool):
                for pool in pools.values():
                    socks += pool
                    pool.clear()
            self._tcp.clear()
        for pending in waiting:
            pending.resolve(SILENT[pending.proto],
                            f"node {self.name!r} was released while the probe waited")
        for sock in socks:
            RECEIVER.unregister(sock)
            sock.close()
        self._routes.close()


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(65535)
        except BlockingIOError:
            return
        except OSError:
            continue


# -- one prober per node ------------------------------------------------------

_PROBERS: weakref.WeakKeyDictionary[Node, Prober] = weakref.WeakKeyDictionary()
_PROBERS_LOCK = threading.Lock()


def prober_for(node: Node) -> Prober:
    """The node's prober, opened on first use."""
    with _PROBERS_LOCK:
        prober = _PROBERS.get(node)
        if prober is not None:
            return prober
        node.check_open("probe from")
        prober = Prober(node)
        _PROBERS[node] = prober
    weakref.finalize(node, prober.close)
    node.on_release(functools.partial(release_prober, node))
    return prober


def release_prober(node: Node) -> None:
    """Close the node's probe sockets, so they do not keep its namespace alive."""
    with _PROBERS_LOCK:
        prober = _PROBERS.pop(node, None)
    if prober is not None:
        prober.close()


def open_probers() -> list[str]:
    """Names of the nodes whose probe sockets are open (for tests and reports)."""
    with _PROBERS_LOCK:
        return [p.name for p in _PROBERS.values()]

