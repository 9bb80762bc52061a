"""Reachability probes sent from inside any node, and assertions built on them.

Users need to know what can and cannot talk to what, quickly and
truthfully, without installing tools into their images: a node whose image
has nothing but /bin/busybox is as probeable as any other. Packets are built
and parsed with scapy's inet layers (imported on first use, never at plugin
load) and sent through sockets opened inside the source's namespace
(`probe_sockets`); before anything is sent, the source's route to the
destination is looked up and a route that leaves through an interface no
topology created (the host's eth0, docker0, ...) raises EgressError.

`src` is a Node or "host" (the namespace pytest runs in); `dst` is an IP
address (IPv4 or IPv6), a Node (its address on a segment it shares with
`src`, else its `.ip`), or "host" (the host's address on a link it shares
with `src`). `family=6` probes a Node (or "host") at its IPv6 address
instead: ICMPv6 echo, TCP and UDP over IPv6, with the same egress guard.

Answers are told apart (see `ProbeResult.state`): "no-route" is decided in
the source before anything is sent; an ICMP error names the hop that sent
it; silence is only called silence after resends within the window. Routers
and hosts rate-limit the ICMP errors they send (net.ipv4.icmp_ratelimit,
per namespace), so a burst of probes that each draw an error can meet
silence after the first few; set that sysctl to 0 in a router you own when a
test needs every error.
"""

from __future__ import annotations

import time
from dataclasses import replace
from itertools import groupby

from .engine import (
    PROBE_STATS,
    Destination,
    Source,
    check_attempts,
    describe,
    notify,
    observers,
    probe_one,
    retry_window,
)
from .matrix import ReachabilityMatrix, reachability_matrix
from .result import PAYLOAD, ProbeResult
from .series import PingStats, ping_series

__all__ = [
    "PROBE_STATS",
    "PingStats",
    "ProbeResult",
    "ReachabilityMatrix",
    "assert_reachable",
    "assert_unreachable",
    "observers",
    "ping",
    "ping_stats",
    "probe",
    "probe_tcp",
    "probe_udp",
    "reachability_matrix",
]


def ping(src: Source, dst: Destination, timeout: float = 1.0, *,
         family: int | None = None) -> ProbeResult:
    """ICMP (ICMPv6) echo from `src` to `dst`: state reply, no-route, unreachable or timeout."""
    return probe_one(src, dst, "icmp", None, timeout, family=family)


def ping_stats(src: Source, dst: Destination, count: int = 10, interval: float = 0.01,
               timeout: float = 1.0, *, family: int | None = None) -> PingStats:
    """`count` ICMP (ICMPv6) echoes from `src` to `dst`, `interval` seconds apart, each
    waited for `timeout` seconds: `sent`, `received`, `loss` (percent) and
    `rtt_min/avg/max/mdev` (milliseconds, None when nothing came back), as `ping -c -i -W`
    reports them.
    """
    return ping_series(src, dst, count, interval, timeout, family)


def probe_tcp(src: Source, dst: Destination, port: int, timeout: float = 1.0, *,
              family: int | None = None) -> ProbeResult:
    """A TCP SYN: open (SYN/ACK), closed (RST), filtered (silence), no-route or unreachable."""
    return probe_one(src, dst, "tcp", port, timeout, family=family)


def wait_for_tcp(
    src: Source, dst: Destination, port: int, timeout: float = 10.0, interval: float = 0.05,
    *, family: int | None = None,
) -> ProbeResult:
    """Probe until `port` answers open, or `timeout` passes; return the last result.

    A server just started in a node (`node.spawn(...)`) needs a moment before
    it listens, and until then a probe truthfully says `closed`. This waits for
    that moment instead of a fixed sleep. The failure report shows the wait as
    one probe whose detail sums up the tries ("closed x37 in 1.9 s, then open").
    """
    started = time.monotonic()
    deadline = started + timeout
    states: list[str] = []
    while True:
        result = probe_one(src, dst, "tcp", port, min(1.0, timeout), family=family,
                           notify_observers=False)
        states.append(result.state)
        if result.ok or time.monotonic() + interval > deadline:
            break
        time.sleep(interval)
    if len(states) > 1:
        tries = fold_states(states[:-1]) + f", then {result.state}" if result.ok else (
            fold_states(states))
        result = replace(result, detail=(
            f"{result.detail}; waited {time.monotonic() - started:.1f} s: {tries}"))
    notify(result)
    return result


def fold_states(states: list[str]) -> str:
    """Runs of equal states, counted: ["closed"]*37 + ["filtered"] -> "closed x37, filtered"."""
    runs = [(state, len(list(group))) for state, group in groupby(states)]
    return ", ".join(state if count == 1 else f"{state} x{count}" for state, count in runs)


def probe_udp(
    src: Source, dst: Destination, port: int, timeout: float = 1.0, payload: bytes = PAYLOAD,
    *, family: int | None = None,
) -> ProbeResult:
    """A UDP datagram: open (a reply), closed (ICMP port unreachable from the
    destination), open|filtered (silence), no-route or unreachable."""
    return probe_one(src, dst, "udp", port, timeout, payload, family=family)


def probe(
    src: Source, dst: Destination, port: int | None = None, proto: str | None = None,
    timeout: float = 1.0, *, family: int | None = None,
) -> ProbeResult:
    """Any of the three: ICMP without a port, TCP with one, unless `proto` says otherwise."""
    return probe_one(src, dst, proto, port, timeout, family=family)


def _what(src: Source, result: ProbeResult) -> str:
    return f"{describe(src)} -> {result.target} over {result.service}"


def assert_reachable(
    src: Source,
    dst: Destination,
    port: int | None = None,
    proto: str | None = None,
    timeout: float = 1.0,
    attempts: int = 2,
    *,
    family: int | None = None,
) -> ProbeResult:
    """Assert that `src` reaches `dst` (echo reply, or an open port); return the result.

    A failed probe is repeated (`attempts` in all) before the verdict is final:
    the first packets after a link comes up may be lost, and the kernel resends
    a lost ARP request only after a second, so a repeat waits at least that long.
    """
    __tracebackhide__ = True
    check_attempts(attempts)
    result = probe_one(src, dst, proto, port, timeout, family=family)
    tries = 1
    while not result.ok and tries < attempts:
        result = probe_one(src, dst, proto, port, retry_window(timeout), family=family)
        tries += 1
    if not result.ok:
        raise AssertionError(
            f"expected {_what(src, result)} to be reachable, but observed {result.state}: "
            f"{result.detail} ({tries} attempt(s))"
        )
    return result


def assert_unreachable(
    src: Source,
    dst: Destination,
    port: int | None = None,
    proto: str | None = None,
    timeout: float = 1.0,
    attempts: int = 2,
    *,
    family: int | None = None,
) -> ProbeResult:
    """Assert that `src` does not reach `dst`; return the result (which says why not).

    No route, an ICMP error or a RST are final at once. Silence is probed
    again (`attempts` windows in all), because a packet lost right after a
    link came up looks exactly like isolation. For UDP, silence
    ("open|filtered") counts as unreachable: no answer came back.
    """
    __tracebackhide__ = True
    result = probe_one(src, dst, proto, port, timeout, attempts=attempts, family=family)
    if result.ok:
        rtt = f" in {result.rtt_ms:.2f} ms" if result.rtt_ms is not None else ""
        raise AssertionError(
            f"expected {_what(src, result)} to be unreachable, but observed {result.state}"
            f"{rtt}: {result.detail}"
        )
    return result
