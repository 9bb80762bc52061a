"""Faults: how accurate the impairments are, what they cost, and that unused they cost nothing.

Every figure is taken through the library as a test uses it (`Link.impair`,
`Topology.partition`), on two namespace nodes joined by one veth, and read
with plain sockets in those namespaces and the kernel's counters:

- one-way delay: the sender writes CLOCK_REALTIME into each datagram, the
  receiver takes the kernel's arrival stamp (SO_TIMESTAMPNS); both
  namespaces share the clock;
- loss: datagrams counted at the receiver's IP layer (Ip InReceives), so a
  receiving socket that overflows under load cannot add to the losses;
- rate and throughput: bytes a TCP socket received over a timed window,
  after a warm-up;
- costs: wall time of the calls; the forwarder's CPU from /proc.

"No cost when unused" builds the same namespace bridged_pair with this
tree and with the newest tree without faults (`main` while faults are on a
branch of it, else the last commit before they were merged), in two
processes asked to build in turns, one build at a time.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .context import Context
from .harness import Row, Sample, fmt_s

PORT = 5401
SO_TIMESTAMPNS = 35
CLK_TCK = os.sysconf("SC_CLK_TCK")
GROUP = "faults"


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


@contextmanager
def _pair(ctx: Context) -> Iterator[Any]:
    """Two namespace nodes on one veth (ARP resolved), as a topology of the library."""
    from pytest_netns.topology.builder import TopologyBuilder

    t = TopologyBuilder(backend="namespace", session=ctx.session, label="faults-bench")
    t.node("a")
    t.node("b")
    t.connect("a", "b")
    net = t.build()
    try:
        yield net
    finally:
        net.close()


def _ip(net: Any, name: str) -> str:
    return str(net.ip_of(name, next(iter(net.segments))))


def _udp(node: Any, bind: tuple[str, int] | None = None) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        if bind:
            sock.bind(bind)
        return sock

    return node.call(make)  # type: ignore[no-any-return]


def _snmp(node: Any, proto: str, field: str) -> int:
    def read() -> str:
        with open("/proc/thread-self/net/snmp") as f:
            return f.read()

    rows = [line.split() for line in node.call(read).splitlines()]
    names, values = [row for row in rows if row[0] == f"{proto}:"]
    return int(values[names.index(field)])


def _one_way(net: Any, count: int, interval: float) -> list[float]:
    """One-way delays (ms) of `count` datagrams a -> b sent `interval` apart."""
    b_ip = _ip(net, "b")
    rx = _udp(net["b"], (b_ip, PORT))
    rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    tx = _udp(net["a"])
    delays: list[float] = []
    done = threading.Event()

    def receive() -> None:
        rx.settimeout(0.5)
        while True:
            try:
                data, anc, _, _ = rx.recvmsg(256, socket.CMSG_SPACE(16))
            except TimeoutError:
                if done.is_set():
                    return
                continue
            sec, nsec = struct.unpack("=qq", anc[0][2][:16])
            delays.append((sec * 10**9 + nsec - struct.unpack_from("=q", data)[0]) / 1e6)

    reader = threading.Thread(target=receive)
    reader.start()
    started = time.monotonic()
    for i in range(count):
        pause = started + i * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        tx.sendto(struct.pack("=q", time.time_ns()) + bytes(50), (b_ip, PORT))
    done.set()
    reader.join()
    rx.close()
    tx.close()
    return delays


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def _goodput(net: Any, seconds: float, port: int) -> float:
    """Bits per second a -> b over one TCP connection, counted after a 0.5 s warm-up."""
    b_ip = _ip(net, "b")
    listener = net["b"].call(socket.socket)
    listener.bind((b_ip, port))
    listener.listen()
    client = net["a"].call(socket.socket)
    client.connect((b_ip, port))
    server, _ = listener.accept()
    stop = threading.Event()

    def send() -> None:
        chunk = bytes(1 << 16)
        try:
            while not stop.is_set():
                client.send(chunk)
        except OSError:
            pass

    sender = threading.Thread(target=send)
    sender.start()
    try:
        warm = time.monotonic() + 0.5
        while time.monotonic() < warm:
            server.recv(1 << 20)
        total, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            total += len(server.recv(1 << 20))
        return total * 8 / (time.monotonic() - started)
    finally:
        stop.set()
        # a send blocked on a full window wakes on shutdown, not on close from this thread
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)
        sender.join()
        client.close()
        server.close()
        listener.close()


def _send_udp(net: Any, b_ip: str, pps: int, seconds: float) -> str:
    """`pps` datagrams a second for `seconds` from a to b; say who sent them.

    iperf (2.x, where installed) keeps the rate that a Python loop on a
    loaded 2-core machine cannot; otherwise this process sends.
    """
    if shutil.which("iperf"):
        server = net["b"].spawn(["iperf", "-s", "-u", "-B", b_ip, "-p", str(PORT)])
        try:
            time.sleep(0.3)
            net["a"].exec(["iperf", "-u", "-c", b_ip, "-p", str(PORT), "-b", f"{pps}pps",
                           "-l", "64", "-t", f"{seconds:g}"], timeout=seconds + 30)
        finally:
            server.stop()
        return "sent by iperf"
    tx = _udp(net["a"])
    started, total = time.monotonic(), int(pps * seconds)
    for i in range(total):
        if i % 64 == 0:
            pause = started + i / pps - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        tx.sendto(bytes(64), (b_ip, PORT))
    tx.close()
    return f"sent from Python at {total / (time.monotonic() - started):,.0f} pps"


def _carried(net: Any, b_ip: str, pps: int, seconds: float) -> tuple[int, int, str]:
    """(datagrams that arrived at b's IP layer, that left a's, who sent them)."""
    before = _snmp(net["b"], "Ip", "InReceives")
    sent_before = _snmp(net["a"], "Ip", "OutRequests")
    sender = _send_udp(net, b_ip, pps, seconds)
    time.sleep(0.2)
    return (_snmp(net["b"], "Ip", "InReceives") - before,
            _snmp(net["a"], "Ip", "OutRequests") - sent_before, sender)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _row(what: str, ours: str, target: str = "", met: bool | None = None,
         note: str = "") -> Row:
    return Row(GROUP, what, ours, "", None, target, met, note)


# -- accuracy ---------------------------------------------------------------------------


def accuracy(ctx: Context) -> None:
    """Delay, jitter, loss and rate against what was asked for."""
    quick = ctx.rounds < 21
    with _pair(ctx) as net:
        link = net.link("a", "b")
        link.impair(delay="10ms", direction="a->b")
        n = 3000 if quick else 10_000
        delays = _one_way(net, n, 0.001)
        median, p99 = statistics.median(delays) - 10, _percentile(delays, 0.99) - 10
        ctx.add(_row("delay 10 ms one way at 1 kpps: median error", f"{median:+.3f} ms",
                     "<= 0.5 ms", abs(median) <= 0.5,
                     f"{len(delays)} of {n} datagrams, one-way, kernel receive stamps; "
                     f"{_load()}"))
        ctx.add(_row("delay 10 ms one way at 1 kpps: p99 error", f"{p99:+.3f} ms", "<= 2 ms",
                     abs(p99) <= 2, f"max {max(delays) - 10:+.2f} ms"))
        link.impair(delay="50ms", jitter="10ms", direction="a->b")
        delays = _one_way(net, 2000 if quick else 5000, 0.001)
        sigma, theory = statistics.pstdev(delays), 10 / math.sqrt(3)
        ctx.add(_row("jitter 50 +- 10 ms uniform: sigma vs theory",
                     f"{sigma:.2f} ms ({theory:.2f})", "within 10 %",
                     abs(sigma / theory - 1) <= 0.1,
                     f"range {min(delays):.1f}-{max(delays):.1f} ms; {_load()}"))
        for loss in (1, 10, 30):
            link.impair(loss=loss, direction="a->b")
            total = 10_000
            b_ip = _ip(net, "b")
            rx, tx = _udp(net["b"], (b_ip, PORT)), _udp(net["a"])
            before = _snmp(net["b"], "Ip", "InReceives")
            started = time.monotonic()
            for i in range(total):
                pause = started + i * 0.0002 - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                tx.sendto(bytes(64), (b_ip, PORT))
            time.sleep(0.3)
            lost = total - (_snmp(net["b"], "Ip", "InReceives") - before)
            rx.close()
            tx.close()
            p = loss / 100
            half = 2.576 * math.sqrt(total * p * (1 - p))
            ctx.add(_row(f"loss {loss} % over 10,000 datagrams", f"{lost} lost",
                         f"{total * p - half:.0f}-{total * p + half:.0f} (binomial 99 %)",
                         total * p - half <= lost <= total * p + half,
                         f"counted at b's IP layer; {_load()}"))
        for rate in (10**6, 10**7, 10**8):
            link.impair(rate=rate, direction="a->b")
            ratios = [_goodput(net, 2.0 if quick else 4.0, PORT + i) / rate for i in range(3)]
            ratio = statistics.median(ratios)
            ctx.add(_row(f"rate {rate // 10**6} Mbit/s: TCP goodput / rate", f"{ratio:.1%}",
                         "90-100 %", 0.9 <= ratio <= 1.0,
                         f"3 runs {', '.join(f'{r:.1%}' for r in ratios)}; {_load()}"))


def throughput(ctx: Context) -> None:
    """What a delayed link carries, the forwarder's CPU, and its idle cost."""
    quick = ctx.rounds < 21
    with _pair(ctx) as net:
        link = net.link("a", "b")
        link.impair(delay="10ms", direction="a->b")
        pid = net.fault_state.forwarder_pid
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        time.sleep(3 if quick else 10)
        idle = 100 * (_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        ctx.add(_row("forwarder CPU when idle (10 ms delay set, no traffic)", f"{idle:.2f} %",
                     "0 %", idle < 0.5, _load()))
        b_ip = _ip(net, "b")
        offered, seconds = 50_000, 2.0
        drops_before = net.fault_state._forwarder.stats()["link0:a->b"]["sink_drops"]
        cpu0, started = _cpu_seconds(pid), time.monotonic()
        arrived, sent, sender = _carried(net, b_ip, offered, seconds)
        cpu = 100 * (_cpu_seconds(pid) - cpu0) / (time.monotonic() - started)
        drops = net.fault_state._forwarder.stats()["link0:a->b"]["sink_drops"] - drops_before
        link.clear()
        plain, plain_sent, _ = _carried(net, b_ip, offered, seconds)
        link.impair(delay="10ms", direction="a->b")
        pps = arrived / seconds
        ctx.add(Row(GROUP, "10 ms delay: UDP packets/s carried (50 kpps offered) vs the same "
                    "sender on the unimpaired link", f"{pps:,.0f}", f"{plain / seconds:,.0f}",
                    plain / max(arrived, 1), ">= 50,000", pps >= 0.99 * offered,
                    f"{sender}, which got {sent / seconds:,.0f} pps out through the delay "
                    f"({plain_sent / seconds:,.0f} without); {arrived} of {sent} arrived at "
                    f"b's IP layer, {drops} dropped at the forwarder's socket; forwarder CPU "
                    f"{cpu:.0f} % of a core; {_load()}"))
        gbit = statistics.median(_goodput(net, 3.0, PORT + 10 + i) / 1e9 for i in range(3))
        ctx.add(_row("10 ms delay: TCP goodput, one connection", f"{gbit:.2f} Gbit/s",
                     ">= 1 Gbit/s", gbit >= 1.0, _load()))
        link.impair(delay="10ms", loss=0.01, direction="a->b")
        split = _goodput(net, 3.0, PORT + 20) / 1e9
        ctx.add(_row("10 ms delay + 0.01 % loss: TCP goodput (GSO split in the forwarder)",
                     f"{split:.2f} Gbit/s", note=f"per-packet chances split TCP super-packets "
                     f"into MSS segments in Python; {_load()}"))


def costs(ctx: Context) -> None:
    """impair()/clear() once the link exists, the first impair, partitions, TCP after a heal."""
    rounds = max(ctx.rounds, 10)
    firsts = Sample()
    for _ in range(3 if ctx.rounds < 21 else 5):
        with _pair(ctx) as net:
            started = time.perf_counter()
            net.link("a", "b").impair(delay="10ms")
            firsts.times.append(time.perf_counter() - started)
    ctx.add(_row("first impair() of a topology (starts its forwarder)", fmt_s(firsts.median),
                 note=f"spread {firsts.spread}: Python start-up of the forwarder, capability "
                 f"check once per process; {_load()}"))
    with _pair(ctx) as net:
        link = net.link("a", "b")
        link.impair(delay="1ms")
        link.clear()
        impairs, changes, clears = Sample(), Sample(), Sample()
        for _ in range(rounds * 3):
            t0 = time.perf_counter()
            link.impair(delay="10ms", loss=1)
            t1 = time.perf_counter()
            link.impair(delay="20ms", jitter="5ms")
            t2 = time.perf_counter()
            link.clear()
            t3 = time.perf_counter()
            impairs.times.append(t1 - t0)
            changes.times.append(t2 - t1)
            clears.times.append(t3 - t2)
        ctx.add(_row("impair() both directions, forwarder running", fmt_s(impairs.median),
                     "<= 10 ms", impairs.median <= 0.01,
                     f"spread {impairs.spread}; each change is checked (a frame through the "
                     f"steal path); {_load()}"))
        ctx.add(_row("impair() changing a live impairment", fmt_s(changes.median), "<= 10 ms",
                     changes.median <= 0.01, f"spread {changes.spread}"))
        ctx.add(_row("clear() both directions", fmt_s(clears.median), "<= 10 ms",
                     clears.median <= 0.01, f"spread {clears.spread}"))
        _partition_rows(ctx, net, rounds)
        _tcp_after_heal(ctx, net)


_SENDER = r"""
import socket, struct, sys, time
dst, port, seconds, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
started, i, log = time.monotonic(), 0, []
while time.monotonic() - started < seconds:
    now = time.time_ns()
    sock.sendto(struct.pack("=Iq", i, now), (dst, port))
    log.append(f"{i} {now}")
    i += 1
    pause = started + i * interval - time.monotonic()
    if pause > 0:
        time.sleep(pause)
print("\n".join(log))
"""


def _partition_rows(ctx: Context, net: Any, rounds: int) -> None:
    """Call times; then a 5 kpps stream from a process of its own (so it shares no GIL with
    the calls) shows when the cut and the heal took effect, by the datagrams' send stamps."""
    applies, heals = Sample(), Sample()
    for _ in range(rounds * 2):
        t0 = time.perf_counter()
        part = net.partition(["a"], ["b"])
        t1 = time.perf_counter()
        part.heal()
        applies.times.append(t1 - t0)
        heals.times.append(time.perf_counter() - t1)
    b_ip = _ip(net, "b")
    leaked = lost = 0
    first_after = []
    for _ in range(min(rounds, 10)):
        rx = _udp(net["b"], (b_ip, PORT))
        rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sender = net["a"].call(subprocess.Popen, [sys.executable, "-c", _SENDER, b_ip,
                                                  str(PORT), "0.5", "0.0002"],
                               stdout=subprocess.PIPE, text=True)
        time.sleep(0.15)
        part = net.partition(["a"], ["b"])
        cut = time.time_ns()
        time.sleep(0.1)
        healing = time.time_ns()
        part.heal()
        healed = time.time_ns()
        sent = dict(tuple(map(int, line.split())) for line in sender.communicate()[0].split("\n")
                    if line)
        rx.settimeout(0.3)
        arrived: dict[int, int] = {}
        while True:
            try:
                data, anc, _, _ = rx.recvmsg(64, socket.CMSG_SPACE(16))
            except TimeoutError:
                break
            sec, nsec = struct.unpack("=qq", anc[0][2][:16])
            arrived[struct.unpack_from("=Iq", data)[0]] = sec * 10**9 + nsec
        rx.close()
        leaked += sum(1 for seq in arrived if cut < sent[seq] < healing)
        after = sorted(seq for seq, at in sent.items() if at >= healed)
        lost += sum(1 for seq in after if seq not in arrived)
        if after and after[0] in arrived:
            first_after.append((arrived[after[0]] - sent[after[0]]) / 1e6)
    ctx.add(_row("partition(): call (2 interfaces, filters read back)", fmt_s(applies.median),
                 "<= 5 ms", applies.median <= 0.005 and leaked == 0,
                 f"spread {applies.spread}; of a 5 kpps stream from another process, "
                 f"datagrams sent after it returned that still arrived: {leaked} "
                 f"({min(rounds, 10)} runs); {_load()}"))
    ctx.add(_row("heal(): call; datagrams sent after it returned, lost", f"{fmt_s(heals.median)}"
                 f"; {lost} lost", "<= 5 ms; 0 lost", heals.median <= 0.005 and lost == 0,
                 f"spread {heals.spread}; the first one sent after heal() returned took "
                 f"{statistics.median(first_after) if first_after else float('nan'):.2f} ms "
                 "(median) to arrive"))


def _tcp_after_heal(ctx: Context, net: Any) -> None:
    """Seconds until an established TCP connection carries data again after a heal."""
    b_ip = _ip(net, "b")
    for outage in (1.0, 5.0) if ctx.rounds < 21 else (1.0, 5.0, 10.0):
        listener = net["b"].call(socket.socket)
        listener.bind((b_ip, PORT + 30))
        listener.listen()
        client = net["a"].call(socket.socket)
        client.connect((b_ip, PORT + 30))
        server, _ = listener.accept()
        server.settimeout(60)
        part = net.partition(["a"], ["b"])
        client.sendall(b"x" * 1000)  # sent into the cut: TCP retransmits with backoff
        time.sleep(outage)
        part.heal()
        healed = time.monotonic()
        server.recv(1000)
        resumed = time.monotonic() - healed
        for sock in (client, server, listener):
            sock.close()
        ctx.add(_row(f"TCP resumes after a {outage:g} s partition heals",
                     f"{resumed:.2f} s after heal()",
                     note="at TCP's next retransmission (exponential backoff from ~0.2 s), "
                     f"not at once; documented in the README; {_load()}"))


# -- no cost when unused ---------------------------------------------------------------------

_WORKER = r"""
import sys, time
from pytest_netns.lifecycle.hooks import finish_session, start_session
from pytest_netns.kernel.janitor import janitor
from pytest_netns.topology import recipes
from pytest_netns.topology.builder import TopologyBuilder
session = start_session()
try:
    for line in sys.stdin:
        if line.strip() != "build":
            break
        started = time.perf_counter()
        recipes.bridged_pair(TopologyBuilder(backend="namespace", verify=False)).close()
        took = time.perf_counter() - started
        janitor().drain()
        print(took, flush=True)
finally:
    finish_session(session)
"""


class _Worker:
    """A process that builds and closes a bridged_pair each time it is asked to."""

    def __init__(self, root: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd="/",
                                     env={**os.environ, "PYTHONPATH": root})

    def build(self) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("build\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(60)


def _git(root: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                          check=False)


def _before_faults(root: str) -> str | None:
    """The newest commit like this tree but without faults: `main` while faults live on a
    branch of it, else the last commit of the first-parent line before they came."""
    def has_faults(rev: str) -> bool:
        return _git(root, "cat-file", "-e", f"{rev}:pytest_netns/topology/faults.py"
                    ).returncode == 0

    if (_git(root, "rev-parse", "--verify", "-q", "main").returncode == 0
            and _git(root, "merge-base", "--is-ancestor", "main", "HEAD").returncode == 0
            and not has_faults("main")):
        return "main"
    for rev in _git(root, "rev-list", "--first-parent", "HEAD").stdout.split():
        if not has_faults(rev):
            return rev[:10]
    return None


def _tree_before_faults(root: str, into: str) -> str | None:
    """Extract the package as it was before faults into `into`; say which commit it is."""
    rev = _before_faults(root)
    if rev is None:
        return None
    archive = subprocess.run(["git", "-C", root, "archive", rev, "pytest_netns"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", into], input=archive.stdout, check=True)
    return rev


def no_cost(ctx: Context) -> None:
    """bridged_pair on namespaces, build+close: this tree vs the tree before faults."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory(prefix="fl-before-faults-") as before:
        commit = _tree_before_faults(root, before)
        if commit is None:
            ctx.add(_row("unimpaired bridged_pair build+close vs before faults", "skipped",
                         note="no git history with topology/faults.py here"))
            return
        samples = {"ours": Sample(), "before": Sample()}
        # Two identical workers differed by ~10 % on this machine (an A/A run showed it),
        # as did whoever built first in a round: so fresh workers per block, and the
        # order alternates round by round.
        for _block in range(4):
            workers = {"ours": _Worker(root), "before": _Worker(before)}
            try:
                for i in range(3 + ctx.rounds * 2):
                    for name in ("ours", "before") if i % 2 else ("before", "ours"):
                        took = workers[name].build()
                        if i >= 3:
                            samples[name].times.append(took)
            finally:
                for worker in workers.values():
                    worker.close()
        ours, theirs = samples["ours"], samples["before"]
        ratio = ours.median / theirs.median
        ctx.add(Row(GROUP, f"unimpaired bridged_pair (namespaces) build+close vs the tree "
                    f"before faults ({commit})", fmt_s(ours.median), fmt_s(theirs.median),
                    theirs.median / ours.median, "ours <= 1.1 x before", ratio <= 1.1,
                    f"median of {len(ours.times)} builds each, one by one in two processes "
                    f"(fresh ones four times), who goes first alternating; ours {ours.spread}, "
                    f"before {theirs.spread}; {_load()}"))
