"""A series of echo requests (ICMP or ICMPv6) and their statistics, as `ping -c N -i I -W T`
reports them.

Each echo is one probe of the engine (its own ICMP id, one packet, no
resend): sent on schedule from inside the source's namespace, after the
same egress check as every probe, and answered on the shared receiver
thread, which stamps the reply as it reads it. An echo whose reply comes
later than `timeout` after it was sent counts as lost, as with ping's `-W`.
Users measure impaired links with it: loss in percent and the RTT's
minimum, mean, maximum and mean deviation in milliseconds.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

from ..errors import InvalidProbeError
from .engine import (
    PROBE_STATS,
    Destination,
    Source,
    Spec,
    _start,
    check_family,
    check_timeout,
    notify,
    source_node,
    target,
)


@dataclass(frozen=True)
class PingStats:
    """What a series of echoes saw; times in milliseconds, None when nothing came back."""

    src: str
    dst: str
    sent: int
    received: int
    loss: float  # percent of the echoes sent
    rtt_min: float | None
    rtt_avg: float | None
    rtt_max: float | None
    rtt_mdev: float | None  # mean deviation, as ping computes it
    rtts: tuple[float, ...] = ()  # of the echoes answered, in the order they were sent
    dst_name: str = ""

    def __str__(self) -> str:
        to = f"{self.dst_name} ({self.dst})" if self.dst_name else self.dst
        line = (f"{self.src} -> {to}: {self.sent} sent, {self.received} received, "
                f"{self.loss:g} % loss")
        if self.rtt_min is not None:
            line += (f", rtt min/avg/max/mdev = {self.rtt_min:.3f}/{self.rtt_avg:.3f}/"
                     f"{self.rtt_max:.3f}/{self.rtt_mdev:.3f} ms")
        return line


def _check(count: object, interval: object) -> tuple[int, float]:
    if type(count) is not int or not 1 <= count <= 100_000:
        raise InvalidProbeError(f"invalid count {count!r}: expected an integer from 1 to 100000")
    if (isinstance(interval, bool) or not isinstance(interval, int | float)
            or not math.isfinite(interval) or not 0 <= interval <= 60):
        raise InvalidProbeError(
            f"invalid interval {interval!r}: expected seconds between echoes, 0 to 60")
    return count, float(interval)


def ping_series(src: Source, dst: Destination, count: int = 10, interval: float = 0.01,
                timeout: float = 1.0, family: int | None = None) -> PingStats:
    """Send `count` echoes `interval` seconds apart; wait `timeout` for each reply."""
    node = source_node(src)
    count, interval = _check(count, interval)
    seconds = check_timeout(timeout)
    address, name = target(dst, node, check_family(family))
    spec = Spec(node, address, name, "icmp", None)
    from .receiver import Batch, Pending

    batch = Batch()
    pendings: list[Pending] = []
    try:
        started = time.perf_counter()
        for i in range(count):
            pause = started + i * interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            pending = _start(spec, batch)
            pendings.append(pending)
            pending.send()
        deadline = time.perf_counter() + seconds
        while not batch.event.is_set():
            left = deadline - time.perf_counter()
            if left <= 0 or batch.event.wait(left):
                break
    finally:
        for pending in pendings:
            pending.finish(seconds)
    PROBE_STATS["probes"] += count
    rtts = tuple(p.rtt_ms for p in pendings
                 if p.state == "reply" and p.rtt_ms is not None and p.rtt_ms <= seconds * 1000)
    stats = PingStats(
        node.name, address, count, len(rtts), 100.0 * (count - len(rtts)) / count,
        min(rtts) if rtts else None, statistics.fmean(rtts) if rtts else None,
        max(rtts) if rtts else None, statistics.pstdev(rtts) if rtts else None, rtts, name)
    notify(stats)
    return stats
