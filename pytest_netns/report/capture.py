"""Packet capture on every link of a topology, in-process, one pcap per link.

No tcpdump: a packet socket (AF_PACKET, ETH_P_ALL) opened *inside* a
namespace keeps seeing that namespace's interfaces for its whole life, so the
sockets are created on each node's namespace thread and then read from one
ordinary thread per topology. The kernel timestamps every frame
(SO_TIMESTAMP), so the pcap shows when a frame was on the wire, not when the
reader got round to it.

Each frame is recorded exactly once per link:

- a point-to-point link (veth) and a guest-only NIC are captured at one end,
  in both directions (the end that is not the host, so the root namespace is
  never tapped);
- a switch is captured on its bridge ports, ingress only
  (PACKET_IGNORE_OUTGOING): every frame enters the bridge through exactly one
  port, while it may leave through several.

The sockets hold references to the namespaces, so a capture must stop before
its topology is torn down; `start_capture` registers that with the topology.
"""

from __future__ import annotations

import functools
import os
import select
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import NetnsError
from ..kernel.janitor import janitor
from ..topology.links import Link, TapPoint
from .pcap import SNAPLEN, PcapWriter

if TYPE_CHECKING:
    from ..nodes.base import Node
    from ..topology.topology import Topology

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
SO_TIMESTAMP = 29  # SCM_TIMESTAMP has the same value; socket has no constant for it
SO_RCVBUFFORCE = 33
# room for bursts (a TCP transfer over a veth hands over 64 KiB GSO frames)
RCVBUF = 8 * 1024 * 1024
_TIMEVAL = struct.Struct("qq")
_STATS = struct.Struct("II")


def tap_points(topo: Topology) -> list[TapPoint]:
    """The interfaces that see every frame of every link of `topo` exactly once."""
    return [link.tap() for link in topo.links]


def _open_tap(ifname: str, ingress_only: bool) -> socket.socket:
    """A packet socket bound to `ifname`; must run on the namespace's thread.

    The socket is created listening to no protocol and bound with ETH_P_ALL:
    binding a socket that already listens makes the kernel wait for an RCU
    grace period (~10 ms), this way it does not.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        if ingress_only:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((ifname, ETH_P_ALL))  # Python applies htons itself
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class _Tap:
    point: TapPoint
    sock: socket.socket
    writer: PcapWriter
    drops: int = 0
    shared: bool = False  # its pcap has other taps: frames are merged in time order


@dataclass
class LinkCapture:
    """The pcap of one link, as the report needs it."""

    topology: str
    segment: str
    path: str
    frames: int = 0
    drops: int = 0
    interfaces: list[str] = field(default_factory=list)


class TopologyCapture:
    """Captures every link of one topology into `<directory>/<prefix>-<link>.pcap`."""

    def __init__(self, topo: Topology, directory: str, prefix: str | None = None) -> None:
        self.topology = topo
        self.directory = directory
        self.prefix = prefix or topo.label
        self.links: dict[str, LinkCapture] = {}
        self._taps: list[_Tap] = []
        self._writers: dict[str, PcapWriter] = {}
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._stopping = False
        self._lock = threading.Lock()

    # -- life cycle -------------------------------------------------------

    def start(self) -> TopologyCapture:
        """Open every tap (synchronously: traffic sent after this returns is captured)."""
        os.makedirs(self.directory, exist_ok=True)
        try:
            for point in tap_points(self.topology):
                self._add_tap(point)
        except BaseException:
            self._close_all()
            raise
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(
            target=self._run, name=f"netns-capture:{self.prefix}", daemon=True
        )
        self._thread.start()
        return self

    def _add_tap(self, point: TapPoint) -> None:
        node: Node = self.topology.nodes[point.node]
        try:
            sock = node.call(_open_tap, point.ifname, point.ingress_only)
        except OSError as exc:
            raise NetnsError(
                f"cannot capture link {point.segment} of {self.topology.label} on "
                f"{point.node}:{point.ifname}: {exc}"
            ) from exc
        writer = self._writers.get(point.segment)
        if writer is None:
            path = os.path.join(self.directory, f"{self.prefix}-{point.segment}.pcap")
            writer = self._writers[point.segment] = PcapWriter(path)
            self.links[point.segment] = LinkCapture(self.topology.label, point.segment, path)
        self.links[point.segment].interfaces.append(f"{point.node}:{point.ifname}")
        tap = _Tap(point, sock, writer)
        for other in self._taps:
            if other.writer is writer:
                other.shared = tap.shared = True
        self._taps.append(tap)

    def stop(self) -> list[LinkCapture]:
        """Record what the kernel already queued, close the files; safe to call twice."""
        with self._lock:
            if self._stopping:
                return list(self.links.values())
            self._stopping = True
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join()
        self._close_all()
        return list(self.links.values())

    def _close_all(self) -> None:
        for tap in self._taps:
            tap.drops += _read_drops(tap.sock)
            self.links[tap.point.segment].drops += tap.drops
        if self._taps:
            # closing a packet socket waits for an RCU grace period (~10 ms):
            # let the janitor do that, off the test's path
            janitor().defer(functools.partial(_close_sockets, [t.sock for t in self._taps]))
        for segment, writer in self._writers.items():
            self.links[segment].frames = writer.frames
            writer.close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        self._taps = []

    @property
    def paths(self) -> list[str]:
        return [link.path for link in self.links.values()]

    # -- the reader thread ------------------------------------------------

    def _run(self) -> None:
        buf = bytearray(SNAPLEN)
        view = memoryview(buf)
        with selectors.DefaultSelector() as sel:
            sel.register(self._wake_r, selectors.EVENT_READ, None)
            for tap in self._taps:
                sel.register(tap.sock, selectors.EVENT_READ, tap)
            # Ports of one switch share a pcap. A frame can become readable on
            # one port after a later-stamped frame was read on another, so
            # shared frames wait MERGE_WINDOW before being written in order.
            merged: list[_Frame] = []
            while not self._stopping:
                for key, _ in sel.select(timeout=MERGE_WINDOW):
                    if key.data is not None:
                        _drain(key.data, buf, view, merged)
                merged = _write_merged(merged, time.time() - MERGE_WINDOW)
            # the kernel queued these before stop() was called: keep them
            for tap in self._taps:
                _drain(tap, buf, view, merged)
            _write_merged(merged, float("inf"))


_Frame = tuple[int, int, bytes, int, PcapWriter]
MERGE_WINDOW = 0.05  # seconds a shared frame waits for earlier-stamped ones


def _write_merged(frames: list[_Frame], until: float) -> list[_Frame]:
    """Write, in time order, the frames stamped before `until`; return the rest."""
    frames.sort(key=lambda f: (f[0], f[1]))
    cut = 0
    for sec, usec, data, n, writer in frames:
        if sec + usec / 1e6 >= until:
            break
        writer.write(sec, usec, data, n)
        cut += 1
    return frames[cut:]


def _close_sockets(socks: list[socket.socket]) -> None:
    """Close packet sockets concurrently, so their grace periods overlap."""
    threads = [threading.Thread(target=s.close, name="netns-capture-close") for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _frames(sock: socket.socket, buf: bytearray,
            view: memoryview) -> Iterator[tuple[int, int, int, memoryview, int]]:
    """Every frame queued on a packet socket: (packet type, sec, usec, frame, wire length).

    The frame is a view of `buf`, valid until the next one is read.
    """
    while True:
        try:
            n, anc, _, addr = sock.recvmsg_into([buf], 64, socket.MSG_TRUNC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the interface went away under us: nothing more to read
            return
        sec = usec = -1
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(data) >= 16:
                sec, usec = _TIMEVAL.unpack_from(data)
        if sec < 0:
            now = time.time()
            sec, usec = int(now), int(now % 1 * 1e6)
        yield addr[2], sec, usec, view[: min(n, len(buf))], n


def _drain(tap: _Tap, buf: bytearray, view: memoryview, merged: list[_Frame]) -> None:
    """Move every queued frame of one tap into its pcap (or `merged`, if it shares one)."""
    for pkttype, sec, usec, frame, n in _frames(tap.sock, buf, view):
        if tap.point.ingress_only and pkttype == PACKET_OUTGOING:
            continue
        if tap.shared:
            merged.append((sec, usec, bytes(frame), n, tap.writer))
        else:
            tap.writer.write(sec, usec, frame, n)


def _read_drops(sock: socket.socket) -> int:
    """Frames the kernel dropped because the reader fell behind (PACKET_STATISTICS)."""
    try:
        _, drops = _STATS.unpack(sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size))
    except OSError:
        return 0
    return int(drops)


def start_capture(topo: Topology, directory: str, prefix: str | None = None) -> TopologyCapture:
    """Capture every link of `topo` until it stops or the topology closes."""
    cap = TopologyCapture(topo, directory, prefix).start()
    topo.on_close(cap.stop)
    return cap


class LinkTap:
    """Every frame of one link, both directions, as it happens (`pytest-netns capture`).

    The tap is the link's own (`Link.tap`), but a switch port is read in both
    directions here: only this one link is captured, so nothing is seen twice.
    """

    def __init__(self, topo: Topology, link: Link) -> None:
        self.point = link.tap()
        self.where = f"{self.point.node}:{self.point.ifname}"
        node = topo.nodes[self.point.node]
        try:
            self._sock = node.call(_open_tap, self.point.ifname, False)
        except OSError as exc:
            raise NetnsError(f"cannot capture {link.segment} of {topo.label} on "
                             f"{self.where}: {exc}") from exc
        self._buf = bytearray(SNAPLEN)
        self._view = memoryview(self._buf)

    def frames(self, timeout: float) -> Iterator[tuple[int, int, memoryview, int]]:
        """The frames that arrive within `timeout` seconds: (sec, usec, frame, wire length)."""
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if ready:
            for _, sec, usec, frame, n in _frames(self._sock, self._buf, self._view):
                yield sec, usec, frame, n

    @property
    def drops(self) -> int:
        return _read_drops(self._sock)

    def close(self) -> None:
        self._sock.close()
