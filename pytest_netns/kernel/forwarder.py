"""The impairment forwarder: a process that delays, drops, duplicates, corrupts and reorders frames.

Kernels without netem cannot hold a packet for a while, so the frames of an
impaired direction x -> y are taken off x's interface (`x_if`) by a tc
filter (mirred egress redirect to a "sink" veth whose peer lives in this
process's private namespace), read here with AF_PACKET, and written back on
`x_if` at their due time with a socket mark that the steal filter lets
through. On the way back they pass x_if's root qdisc (tbf, for rate) and
x_if's capture taps, then cross the veth to y as if nothing had happened.

Run as `python -S -m pytest_netns.kernel.forwarder --control-fd N
--parent-pid P --tag SESSION`; it imports only the standard library (and
none of its slow-to-import modules), so it is ready in ~40 ms.

Why a process of its own: the test's threads hold the GIL for
milliseconds at a time, which would show up as jitter. One single-threaded
loop here waits in select() until the next frame is due, so it uses no CPU
when idle, and it runs as SCHED_FIFO 1 where allowed (see `_realtime`).

Segmentation offload. Turning tso/gso/tx-checksum offload off on the
sender (ethtool) was tried and does not help: the kernel forces GSO on TCP
sockets (`sk_setup_caps`) and segments only in `validate_xmit_skb`, after
tc, so the steal filter still sees 64 KiB super-packets (measured: with all
four offloads off, 99.7 % of stolen TCP frames were over 1500 bytes, max
65,160). One "lost packet" would be ~45 segments. So this process splits
TCP GSO packets itself whenever a per-packet chance (loss, duplicate,
corrupt, reorder) is configured (`segment_tcp`), for connections opened
before the impairment too and for traffic a bridge or router forwards; a
delay alone keeps them whole (2.5 Gbit/s instead of ~1 Gbit/s). Checksums
the kernel would fill in later are completed here before a frame is
corrupted, so the receiver detects the damage.

Life cycle: the process sets PR_SET_PDEATHSIG (SIGKILL) and exits at once if
its parent is already gone. The signal follows the *thread* that started it,
so start it from a thread that lives as long as the session. Its private
namespace (and so the sink veth pairs) dies with it. It leads a session of
its own, so its owner's process ledger can name it as a process tree (by
its pid and start time, in its private namespace) for the crash sweep; its
name is `netns-fwd` and its command line carries `--tag SESSION`.

Control protocol: JSON requests over an AF_UNIX SOCK_SEQPACKET pair, one
reply per request, `{"ok": true, ...}` or `{"ok": false, "error": "..."}`.
`add_path` carries the descriptor of x's namespace (SCM_RIGHTS), in which
the re-injecting socket is opened. `check` sends one unmarked frame of
ethertype 0x88B5 (local experimental) out of `x_if` and answers once the
steal filter has brought it here (it is then discarded, never delivered):
proof that the impaired direction really passes through this process.
"""

from __future__ import annotations

import array
import ctypes
import fcntl
import functools
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ImpairmentError

if TYPE_CHECKING:
    import subprocess

SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_VNET_HDR = 15
ETH_P_ALL = 0x0003
VNET_HDR = struct.Struct("=BBHHHH")  # struct virtio_net_hdr
VNET_F_NEEDS_CSUM = 1
VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_ECN = 1, 4, 0x80
ETH_HLEN = 14
_TCP_FIN, _TCP_PSH, _TCP_CWR = 0x01, 0x08, 0x80
CLONE_NEWNET = 0x40000000
PR_SET_NAME, PR_SET_PDEATHSIG, PR_SET_TIMERSLACK = 15, 1, 29
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
RTM_DELLINK = 17
MAX_FRAME = 65536 + VNET_HDR.size
RECV_BATCH = 256
PROCESS_NAME = "netns-fwd"
MODULE = "pytest_netns.kernel.forwarder"
DEFAULT_MARK = 0x4E4E5446
"""The skb mark of re-injected frames ("NNTF"); the steal filter lets it pass."""
CHECK_ETHERTYPE = b"\x88\xb5"
CHECK_MAC = b"\x02\x00\x00\x4e\x4e\x01"


class PathConfig(NamedTuple):
    """What to do to the frames of one direction; probabilities are fractions 0..1.

    A NamedTuple rather than a dataclass: `dataclasses` imports `inspect`,
    which alone would add ~10 ms to the forwarder's start.
    """

    delay: float = 0.0
    jitter: float = 0.0
    distribution: str = "uniform"
    loss: float = 0.0
    duplicate: float = 0.0
    corrupt: float = 0.0
    reorder: float = 0.0

    @property
    def per_packet(self) -> bool:
        """Whether frames meet per-packet chances (then GSO super-packets are split first)."""
        return bool(self.loss or self.duplicate or self.corrupt or self.reorder)

    def due_in(self, rng: random.Random) -> float:
        """Seconds to hold one frame: the delay plus one jitter sample, never negative."""
        if not self.jitter:
            return self.delay
        if self.distribution == "normal":
            return max(0.0, rng.gauss(self.delay, self.jitter))
        return max(0.0, self.delay + rng.uniform(-self.jitter, self.jitter))


class ForwarderError(ImpairmentError):
    """The forwarder refused a request, did not answer, or is gone."""


# ---- the process --------------------------------------------------------------------------

@functools.cache
def _libc() -> ctypes.CDLL:
    """libc, loaded on first use: importing this module makes no system call."""
    return ctypes.CDLL(None, use_errno=True)


def _checked(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _setns(fd: int) -> None:
    _checked(_libc().setns(fd, CLONE_NEWNET), "setns")


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def internet_checksum(data: bytes | bytearray) -> int:
    """RFC 1071 checksum, complemented, as a packet carries it."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    return ~_fold(int(sum(struct.unpack(f"!{len(data) // 2}H", data)))) & 0xFFFF


def corrupt_frame(vnet: bytes, frame: bytes, rng: random.Random) -> tuple[bytes, bytes]:
    """Flip one random bit after the Ethernet header, with checksums settled first.

    A frame whose checksum the kernel would fill in later (NEEDS_CSUM) gets
    it computed here, so the damage is detectable at the receiver, as with
    netem. The Ethernet header is spared so the frame still reaches y.
    """
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack(vnet)
    data = bytearray(frame)
    if flags & VNET_F_NEEDS_CSUM:
        # The field holds the pseudo-header sum; the sum from csum_start on completes it.
        struct.pack_into(
            "!H", data, csum_start + csum_offset, internet_checksum(data[csum_start:]) or 0xFFFF
        )
        flags &= ~VNET_F_NEEDS_CSUM
    if len(data) > ETH_HLEN:
        bit = rng.randrange((len(data) - ETH_HLEN) * 8)
        data[ETH_HLEN + bit // 8] ^= 1 << (bit % 8)
    return VNET_HDR.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset), bytes(data)


def segment_tcp(vnet: bytes, frame: bytes) -> list[bytes]:
    """Split a TCP GSO super-packet into the MSS-sized packets the wire would carry.

    Local TCP hands the egress hook 64 KiB super-packets whatever the
    device's offload settings (the kernel forces GSO for TCP sockets and
    segments only after tc), so one "lost packet" would be ~45 segments.
    Each segment gets its IP length (and IPv4 id and header checksum), its
    sequence number and flags; its TCP checksum is left for the kernel to
    finish (NEEDS_CSUM with the pseudo-header sum in place), as GSO does.
    Returns vnet header + frame for each segment; other frames unchanged.
    """
    _flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack(vnet)
    kind = gso_type & ~VNET_GSO_ECN
    if kind not in (VNET_GSO_TCPV4, VNET_GSO_TCPV6) or not gso_size:
        return [vnet + frame]
    tcp_len = (frame[csum_start + 12] >> 4) * 4
    headers, payload = frame[: csum_start + tcp_len], frame[csum_start + tcp_len :]
    (seq,) = struct.unpack_from("!I", frame, csum_start + 4)
    tcp_flags = frame[csum_start + 13]
    out_vnet = VNET_HDR.pack(VNET_F_NEEDS_CSUM, 0, 0, 0, csum_start, csum_offset)
    ip = ETH_HLEN
    if kind == VNET_GSO_TCPV4:
        (ip_id,) = struct.unpack_from("!H", frame, ip + 4)
        addresses = frame[ip + 12 : ip + 20]
    else:
        addresses = frame[ip + 8 : ip + 40]
    address_sum = (
        int(sum(struct.unpack(f"!{len(addresses) // 2}H", addresses))) + socket.IPPROTO_TCP
    )
    chunks = range(0, len(payload), gso_size)
    segments = []
    for n, offset in enumerate(chunks):
        chunk = payload[offset : offset + gso_size]
        seg = bytearray(headers)
        l4_len = tcp_len + len(chunk)
        if kind == VNET_GSO_TCPV4:
            struct.pack_into("!HH", seg, ip + 2, csum_start - ip + l4_len, (ip_id + n) & 0xFFFF)
            struct.pack_into("!H", seg, ip + 10, 0)
            ip_header = bytes(seg[ip:csum_start])
            struct.pack_into("!H", seg, ip + 10, internet_checksum(ip_header))
        else:
            struct.pack_into("!H", seg, ip + 4, csum_start - ip - 40 + l4_len)
        struct.pack_into("!I", seg, csum_start + 4, (seq + offset) & 0xFFFFFFFF)
        seg_flags = tcp_flags
        if n:
            seg_flags &= ~_TCP_CWR
        if n < len(chunks) - 1:
            seg_flags &= ~(_TCP_FIN | _TCP_PSH)
        seg[csum_start + 13] = seg_flags
        struct.pack_into("!H", seg, csum_start + csum_offset, _fold(address_sum + l4_len))
        segments.append(out_vnet + bytes(seg) + chunk)
    return segments


class _Path:
    """One impaired direction: frames read from `sink`, written to `out`.

    `probe` sends `check` frames on the same interface as `out`, but unmarked,
    so the steal filter takes them.
    """

    def __init__(self, name: str, sink: socket.socket, out: socket.socket,
                 probe: socket.socket, sink_index: int, config: PathConfig) -> None:
        self.name = name
        self.sink = sink
        self.out = out
        self.probe = probe
        self.sink_index = sink_index
        self.config = config
        self.inflight = 0
        self.closed = False
        self.counts = {"received": 0, "sent": 0, "lost": 0, "duplicated": 0, "corrupted": 0,
                       "reordered": 0, "send_errors": 0, "sink_drops": 0}  # fmt: skip

    def stats(self) -> dict[str, int]:
        if not self.closed:
            raw = self.sink.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            self.counts["sink_drops"] += struct.unpack("=II", raw)[1]
        return dict(self.counts, queued=self.inflight)

    def release(self) -> None:
        """Once removed and empty, close the re-injecting sockets (in the background)."""
        if self.closed and self.inflight == 0:
            _background(self.out.close, self.probe.close)


class Forwarder:
    """The single-threaded loop: control requests, frames in, frames out when due."""

    def __init__(self, control: socket.socket, seed: int | None = None,
                 detached: bool = False) -> None:
        self.control: socket.socket | None = control
        #: outlives whoever started it (a lab's): once its control channel closes, it goes
        #: on as configured until it is killed
        self.detached = detached
        self.own_netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.paths: dict[str, _Path] = {}
        self.by_sink: dict[socket.socket, _Path] = {}
        self.heap: list[tuple[float, int, _Path, bytes]] = []
        self.seq = 0
        self.rng = random.Random(seed)
        self.running = True
        # the one `check` in flight: (its frame, the path, when to give up, when sent)
        self.check: tuple[bytes, _Path, float, float] | None = None

    def run(self) -> None:
        while self.running:
            timeout = None
            if self.heap:
                timeout = max(0.0, self.heap[0][0] - time.monotonic())
            if self.check is not None:
                left = max(0.0, self.check[2] - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            readers = [*([self.control] if self.control else []),
                       *(p.sink for p in self.paths.values())]
            if not readers:
                return  # detached, and nothing left to forward
            ready, _, _ = select.select(readers, [], [], timeout)
            for sock in ready:
                if sock is self.control:
                    self._control()
                else:
                    path = self.by_sink.get(sock)
                    if path is not None:  # not removed by a request earlier in this batch
                        self._receive(path)
            self._send_due()
            if self.check is not None and time.monotonic() >= self.check[2]:
                name = self.check[1].name
                self.check = None
                self._reply({"ok": False, "error": f"the check frame sent out of path {name}'s "
                             "interface never reached the forwarder: the steal filter is not "
                             "taking that direction's frames"})

    def _receive(self, path: _Path) -> None:
        now = time.monotonic()
        config, rng = path.config, self.rng
        for _ in range(RECV_BATCH):
            try:
                packet = path.sink.recv(MAX_FRAME)
            except BlockingIOError:
                return
            if self.check is not None and packet[VNET_HDR.size:] == self.check[0]:
                took = time.monotonic() - self.check[3]
                self.check = None
                self._reply({"ok": True, "seconds": took})
                continue
            if not config.per_packet:
                path.counts["received"] += 1
                self._hold(path, now + config.due_in(rng), packet)
                continue
            vnet = packet[: VNET_HDR.size]
            for segment in segment_tcp(vnet, packet[VNET_HDR.size :]) if vnet[1] else [packet]:
                path.counts["received"] += 1
                self._per_packet(path, now, segment)

    def _per_packet(self, path: _Path, now: float, packet: bytes) -> None:
        """netem's order: lose, duplicate, corrupt, then send early (reorder) or delay."""
        config, rng = path.config, self.rng
        if config.loss and rng.random() < config.loss:
            path.counts["lost"] += 1
            return
        copies = 1
        if config.duplicate and rng.random() < config.duplicate:
            copies = 2
            path.counts["duplicated"] += 1
        for _copy in range(copies):
            data = packet
            if config.corrupt and rng.random() < config.corrupt:
                vnet, frame = corrupt_frame(packet[: VNET_HDR.size], packet[VNET_HDR.size :], rng)
                data = vnet + frame
                path.counts["corrupted"] += 1
            if config.reorder and rng.random() < config.reorder:
                due = now
                path.counts["reordered"] += 1
            else:
                due = now + config.due_in(rng)
            self._hold(path, due, data)

    def _hold(self, path: _Path, due: float, data: bytes) -> None:
        self.seq += 1
        path.inflight += 1
        heapq.heappush(self.heap, (due, self.seq, path, data))

    def _send_due(self) -> None:
        now = time.monotonic()
        heap = self.heap
        while heap and heap[0][0] <= now:
            _due, _seq, path, data = heapq.heappop(heap)
            path.inflight -= 1
            try:
                path.out.send(data)
                path.counts["sent"] += 1
            except OSError:
                path.counts["send_errors"] += 1
            path.release()

    # -- control --

    def _control(self) -> None:
        fds = array.array("i")
        assert self.control is not None
        try:
            data, ancdata, _flags, _addr = self.control.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
        except ConnectionResetError:
            data = b""
        if not data and self.detached:
            self.control.close()
            self.control = None
            return
        if not data:
            self.running = False
            return
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        reply: dict[str, Any] | None
        try:
            request = json.loads(data)
            if request["op"] == "check":
                self._start_check(request)
                reply = None  # answered when the frame arrives, or the time is up
            else:
                reply = {"ok": True, **self._handle(request, list(fds))}
        except Exception as exc:  # every failure goes back to the client as text
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        if reply is not None:
            self._reply(reply)

    def _reply(self, reply: dict[str, Any]) -> None:
        if self.control is not None:
            self.control.send(json.dumps(reply).encode())

    def _start_check(self, request: dict[str, Any]) -> None:
        path = self.paths[request["path"]]
        frame = CHECK_MAC + CHECK_MAC + CHECK_ETHERTYPE + b"pytest-netns check"
        frame += self.rng.randbytes(8) + bytes(18)  # 60 bytes: Ethernet's minimum
        now = time.monotonic()
        self.check = (frame, path, now + float(request.get("timeout", 1.0)), now)
        path.probe.send(frame)

    def _handle(self, request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        op = request["op"]
        if op == "add_path":
            self._add_path(request, fds)
            return {}
        if op == "configure":
            self.paths[request["path"]].config = PathConfig(**request["config"])
            return {}
        if op == "remove_path":
            self._remove_path(request["path"])
            return {}
        if op == "stats":
            return {"paths": {name: p.stats() for name, p in self.paths.items()}}
        if op == "stop":
            self.running = False
            return {}
        raise ValueError(f"unknown op {op!r}")

    def _add_path(self, request: dict[str, Any], fds: list[int]) -> None:
        name = request["path"]
        if name in self.paths:
            raise ValueError(f"path {name!r} exists")
        if len(fds) != 1:
            raise ValueError("add_path needs exactly one namespace descriptor")
        sink_name = request["sink"]
        _set_up(sink_name)
        # Protocol 0 first, the real one at bind: re-binding a socket that is already
        # hooked in waits for an RCU grace period (synchronize_net).
        sink = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        sink.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sink.bind((sink_name, ETH_P_ALL))  # CPython applies htons here
        sink.setblocking(False)
        _setns(fds[0])
        try:
            _silence(request["x_sink"])
            out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            out.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            out.setsockopt(
                socket.SOL_SOCKET, socket.SO_MARK, int(request.get("mark", DEFAULT_MARK))
            )
            out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            out.bind((request["out"], 0))
            probe = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            probe.bind((request["out"], 0))
        finally:
            _setns(self.own_netns)
        path = _Path(name, sink, out, probe, socket.if_nametoindex(sink_name),
                     PathConfig(**request["config"]))
        self.paths[name] = path
        self.by_sink[sink] = path

    def _remove_path(self, name: str) -> None:
        """Stop reading; frames in flight still leave at their due time; delete the sink pair."""
        path = self.paths.pop(name)
        del self.by_sink[path.sink]
        path.stats()
        path.closed = True
        path.release()
        _background(path.sink.close, lambda: _delete_link(path.sink_index))


def _silence(ifname: str) -> None:
    """Switch IPv6 off on x's end of the sink pair (call from inside x's namespace).

    Whatever x itself sends out of its sink end reaches this process and
    would be re-injected on x_if: even with no address at all (addrgenmode
    none), the kernel sent MLD reports from it. Without IPv6 it sends
    nothing (it has no IPv4 address). Done here because this process is
    inside x's namespace anyway, before the end is brought up.
    """
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
            f.write("1")
    except FileNotFoundError:  # no IPv6 in this kernel
        pass


def _set_up(ifname: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack("16sH", ifname.encode(), 0).ljust(40, b"\0")
        flags = struct.unpack_from("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, ifreq))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(
                sock,
                SIOCSIFFLAGS,
                struct.pack("16sH", ifname.encode(), flags | IFF_UP).ljust(40, b"\0"),
            )


def _background(*steps: Callable[[], object]) -> None:
    """Run `steps` on a thread of their own.

    Closing a packet socket and deleting a veth each wait for an RCU grace
    period (10-50 ms here): never in the loop, whose other paths have frames due.
    """
    threading.Thread(target=lambda: [step() for step in steps], daemon=True).start()


def _delete_link(ifindex: int) -> None:
    """Delete a veth pair by the index of its end in this namespace.

    The send returns once the kernel is done; the reply is not read.
    """
    body = struct.pack("=BxHiII", 0, 0, ifindex, 0, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.send(struct.pack("=LHHLL", 16 + len(body), RTM_DELLINK, 1, 1, 0) + body)


def _isolate(parent_pid: int) -> None:
    """Die with the parent (unless `parent_pid` is 0: detached), take a private namespace."""
    if parent_pid:
        _checked(_libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
        if os.getppid() != parent_pid:
            sys.exit(0)
    _libc().prctl(PR_SET_NAME, PROCESS_NAME.encode(), 0, 0, 0)
    _libc().prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    _checked(_libc().unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    for conf in ("all", "default"):
        with open(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "w") as f:
            f.write("1")


def _realtime() -> bool:
    """Take the lowest real-time priority (SCHED_FIFO 1), if allowed.

    netem releases packets from a timer in softirq context, ahead of every
    process. An ordinary process loses that race on a busy machine: at load 8
    on 2 cores, 10 ms delay had p99 15-17 ms as SCHED_OTHER and 10.3-10.5 ms
    as SCHED_FIFO 1. The kernel's RT throttling (95 % of each second by
    default) keeps a flooded forwarder from starving the machine.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    """`--control-fd N --parent-pid P --tag SESSION [--seed S]` (argparse: ~10 ms to import)."""
    args = sys.argv[1:] if argv is None else argv
    options = dict(zip(args[::2], args[1::2], strict=False))
    if len(args) % 2 or not {"--control-fd", "--parent-pid", "--tag"} <= options.keys():
        sys.exit(f"usage: python -m {MODULE} --control-fd N --parent-pid PID --tag SESSION "
                 "[--seed N]")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for pytest, which ends us
    parent = int(options["--parent-pid"])
    _isolate(parent)
    control = socket.socket(fileno=int(options["--control-fd"]))
    realtime = _realtime()
    control.send(json.dumps({"ok": True, "pid": os.getpid(), "realtime": realtime}).encode())
    seed = options.get("--seed")
    Forwarder(control, int(seed) if seed is not None else None, detached=not parent).run()


# ---- the client ---------------------------------------------------------------------------


class ForwarderClient:
    """Start, configure and stop one forwarder process.

    Requests from several threads take turns (the process answers one at a
    time anyway). A request that goes unanswered ends the process: a late
    answer would otherwise be read as the answer to the next request.
    """

    def __init__(self, proc: subprocess.Popen[bytes], control: socket.socket) -> None:
        self.proc = proc
        self._control = control
        self._turn = threading.Lock()
        self.realtime = False
        """Whether it runs as SCHED_FIFO (not without CAP_SYS_NICE: timing suffers under load)."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def start(cls, tag: str, *, run_on: Callable[[Callable[[], Any]], Any] | None = None,
              seed: int | None = None, timeout: float = 10.0,
              detached: bool = False) -> ForwarderClient:
        """Start a forwarder; returns once it has its namespace and listens.

        `run_on(fn)` runs fn on the thread the process is forked from: give
        one that lives as long as the session, since the process dies with
        that thread (PR_SET_PDEATHSIG). `detached` forwarders do not die with
        this process (for labs left up by the command line): their recorded
        pid is how a sweep or `down` ends them.
        """
        import subprocess  # only the owner needs it; the forwarder starts faster without

        ours, theirs = socket.socketpair(socket.AF_UNIX,
                                         socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        parent = "0" if detached else str(os.getpid())
        argv = [sys.executable, "-S", "-m", MODULE, "--control-fd", str(theirs.fileno()),
                "--parent-pid", parent, "--tag", tag]
        if seed is not None:
            argv += ["--seed", str(seed)]
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {"PYTHONPATH": root, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

        # a detached forwarder must not hold its starter's output open (a caller that
        # reads that to its end would wait for the forwarder's end)
        quiet = subprocess.DEVNULL if detached else None

        def fork() -> subprocess.Popen[bytes]:
            return subprocess.Popen(argv, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                    stdout=quiet, stderr=quiet, cwd="/", env=env,
                                    start_new_session=True)

        try:
            proc = fork() if run_on is None else run_on(fork)
        finally:
            theirs.close()
        client = cls(proc, ours)
        ours.settimeout(timeout)
        try:
            client.realtime = bool(client._reply("start").get("realtime"))
        except BaseException:
            client.kill()
            raise
        return client

    def netns_path(self) -> str:
        """The forwarder's private namespace, where the sink peers must go."""
        return f"/proc/{self.pid}/ns/net"

    def add_path(self, path: str, sink: str, x_sink: str, out: str, netns_fd: int,
                 config: PathConfig, mark: int = DEFAULT_MARK) -> None:
        """Read `sink` (here), write to `out` (in `netns_fd`'s namespace, where `x_sink` is).

        `x_sink` is the other end of the sink pair, still down; it is
        silenced before the caller brings it up.
        """
        self._request({"op": "add_path", "path": path, "sink": sink, "x_sink": x_sink,
                       "out": out, "mark": mark, "config": config._asdict()}, [netns_fd])

    def configure(self, path: str, config: PathConfig) -> None:
        self._request({"op": "configure", "path": path, "config": config._asdict()})

    def check(self, path: str, timeout: float = 1.0) -> float:
        """Send a frame out of the path's interface, unmarked; seconds until it arrived here.

        ForwarderError when it does not arrive within `timeout`.
        """
        return float(self._request({"op": "check", "path": path, "timeout": timeout})["seconds"])

    def remove_path(self, path: str) -> None:
        """Remove a path; a forwarder that is gone took its paths (and sinks) with it."""
        if self.alive:
            self._request({"op": "remove_path", "path": path})

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stats(self) -> dict[str, dict[str, int]]:
        paths: dict[str, dict[str, int]] = self._request({"op": "stats"})["paths"]
        return paths

    def kill(self) -> None:
        """End the process now (its namespace and sink pairs go with it) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._control.close()

    def _request(self, request: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        data = json.dumps(request).encode()
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        with self._turn:
            try:
                self._control.sendmsg([data], ancillary)
            except OSError as exc:
                raise ForwarderError(
                    f"forwarder {self.pid} is gone ({exc}); request {request['op']!r} not sent"
                ) from exc
            return self._reply(str(request["op"]))

    def _reply(self, op: str) -> dict[str, Any]:
        try:
            data = self._control.recv(1 << 20)
        except OSError as exc:
            self.proc.kill()
            raise ForwarderError(f"forwarder {self.pid} did not answer {op!r} ({exc}); "
                                 "it was ended") from exc
        if not data:
            raise ForwarderError(f"forwarder {self.pid} exited (status {self.proc.poll()})")
        reply: dict[str, Any] = json.loads(data)
        if not reply.get("ok"):
            raise ForwarderError(f"forwarder {self.pid} refused {op!r}: {reply.get('error')}")
        return reply


if __name__ == "__main__":
    main()
