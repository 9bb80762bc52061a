"""Running probes: resolve both ends, start them together, wait one window.

Every probe, single or part of a matrix, goes through `run()`: all routes are
checked (and the egress guard applied) before the first packet leaves, then
every probe is sent at once and the answers are awaited together, with a few
resends inside the window (the first packet after a link comes up may meet
an ARP or bridge-learning delay). So a matrix of N² probes costs about one
timeout window, not N² of them.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import InvalidAddressError, InvalidTopologyError, NetnsError
from .nodes import HostNode, Node, host
from .probe_result import PROTOS, ProbeResult

if TYPE_CHECKING:  # the socket layer loads on the first probe, not with the plugin
    from .probe_receiver import Batch, Pending

# every ProbeResult and ReachabilityMatrix is handed to each of these
observers: list[Callable[[object], None]] = []
PROBE_STATS = {"probes": 0}
SENDS_PER_WINDOW = 4  # the first packet plus up to three resends
# A later attempt waits at least this long: the kernel resends an unanswered ARP
# request after net.ipv4.neigh.*.retrans_time_ms (1 s by default), so a shorter
# retry could not outlast the loss of the first ARP request on a new link.
RETRY_WINDOW = 1.2
DEFAULT_PAYLOAD = b"pytest-netns"


def notify(observed: object) -> None:
    for observer in list(observers):
        observer(observed)


@dataclass(frozen=True)
class Spec:
    """One probe to run: a source node, a destination, and what to send."""

    src: Node
    dst: str
    dst_name: str
    proto: str
    port: int | None
    payload: bytes = DEFAULT_PAYLOAD


def source_node(src: object) -> Node:
    """A Node from a Node or "host"; a clear error for anything else."""
    if isinstance(src, str) and src == "host":
        return host()
    if isinstance(src, Node):
        if src.released:
            raise NetnsError(
                f"cannot probe from node {src.name!r}: it was released (its topology is "
                "closed); probe from a node of a topology that is still up"
            )
        return src
    raise InvalidTopologyError(
        f"invalid probe source {src!r}: expected a Node (e.g. pair.a) or the string 'host'"
    )


def target(dst: object, src: Node) -> tuple[str, str]:
    """(address, node name or "") for a destination: an address, a Node, or "host"."""
    if isinstance(dst, HostNode) or (isinstance(dst, str) and dst == "host"):
        return _host_address_near(src), "host"
    if isinstance(dst, Node):
        if dst.ip is None:
            raise InvalidAddressError(
                f"node {dst.name!r} has no address on its topology, so it cannot be a probe "
                "destination; probe one of its interface addresses instead"
            )
        return dst.ip, dst.name
    if isinstance(dst, str | ipaddress.IPv4Address):
        address = _parse_ip(dst)
        return address, ""
    raise InvalidAddressError(
        f"invalid probe destination {dst!r}: expected an IPv4 address string, a Node, or 'host'"
    )


def _parse_ip(value: object) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value).strip()))
    except ValueError:
        raise InvalidAddressError(
            f"invalid probe destination {value!r}: expected an IPv4 address such as "
            "'10.64.0.2', a Node, or 'host'"
        ) from None


def _host_address_near(src: Node) -> str:
    """The host's address on a segment that `src` shares with it."""
    from .segments import HOST
    from .topology import live_topologies

    if isinstance(src, HostNode):
        raise InvalidAddressError("the host cannot be both source and destination of a probe")
    for topo in live_topologies():
        if not any(n is src for n in topo.nodes.values()):
            continue
        for seg in topo.segments.values():
            names = {m[0] for m in seg.members}
            if src.name in names and HOST in names:
                return seg.ip_of(HOST)
    raise InvalidAddressError(
        f"node {src.name!r} shares no link with the host, so 'host' names no address for it; "
        "pass the host address to probe explicitly"
    )


def check_proto(proto: object, port: object) -> tuple[str, int | None]:
    """The protocol (default: icmp without a port, tcp with one) and a valid port."""
    if proto is None:
        proto = "icmp" if port is None else "tcp"
    if proto not in PROTOS:
        raise InvalidTopologyError(f"invalid probe protocol {proto!r}: expected one of {PROTOS}")
    if proto == "icmp":
        if port is not None:
            raise InvalidAddressError(f"ICMP has no ports, but port={port!r} was given")
        return "icmp", None
    if type(port) is not int or not 1 <= port <= 65535:
        raise InvalidAddressError(
            f"invalid {proto} port {port!r}: expected an integer from 1 to 65535"
        )
    return str(proto), port


def check_timeout(timeout: object) -> float:
    if (isinstance(timeout, bool) or not isinstance(timeout, int | float)
            or not 0 < timeout <= 3600):
        raise InvalidTopologyError(
            f"invalid probe timeout {timeout!r}: expected seconds, a number above 0 "
            "(and at most 3600)"
        )
    return float(timeout)


def check_attempts(attempts: object) -> int:
    if type(attempts) is not int or not 1 <= attempts <= 100:
        raise InvalidTopologyError(f"invalid attempts {attempts!r}: expected an integer, 1 or more")
    return attempts


def _start(spec: Spec, batch: Batch) -> Pending:
    from .probe_receiver import Pending
    from .probe_route import NoRoute
    from .probe_sockets import prober_for

    prober = prober_for(spec.src)
    route = prober.route(spec.dst)
    if isinstance(route, NoRoute):
        pending = Pending(prober, spec.proto, spec.dst, spec.port, None, batch)
        pending.resolve("no-route", f"{route.why} to {spec.dst} in {spec.src.name}'s "
                        "namespace; nothing was sent")
        return pending
    if spec.proto == "icmp":
        return prober.start_icmp(spec.dst, batch)
    assert spec.port is not None
    if spec.proto == "tcp":
        return prober.start_tcp(route, spec.port, batch)
    return prober.start_udp(spec.dst, spec.port, spec.payload, batch)


def refused(spec: Spec, exc: NetnsError) -> ProbeResult:
    """The cell of a matrix whose probe the egress guard refused."""
    return ProbeResult(spec.src.name, spec.dst, spec.proto, spec.port, "refused", None,
                       str(exc), 0, spec.dst_name)


def run(
    specs: Sequence[Spec], timeout: float, on_egress: str = "raise", attempts: int = 1
) -> list[ProbeResult]:
    """Run the probes concurrently and return their results in order.

    Every route is looked up (and the egress guard applied) before anything
    is sent: with on_egress="raise" a refused probe raises EgressError and no
    probe of the batch sends a packet; with "record" it becomes a "refused"
    result. Probes that met only silence are run again, together, up to
    `attempts` windows in all: silence is the one verdict that a lost first
    packet can fake, while no route, an ICMP error or a RST are answers. Each
    later window lasts at least RETRY_WINDOW, so a lost ARP request is resent
    by the kernel within it.
    """
    results = _run_once(specs, timeout, on_egress)
    for _ in range(attempts - 1):
        again = [i for i, r in enumerate(results) if r.silent]
        if not again:
            break
        retried = _run_once([specs[i] for i in again], retry_window(timeout), on_egress)
        for i, result in zip(again, retried, strict=True):
            results[i] = result
    return results


def retry_window(timeout: float) -> float:
    """How long a repeated probe waits: its timeout, but at least RETRY_WINDOW."""
    return max(timeout, RETRY_WINDOW)


def _run_once(specs: Sequence[Spec], timeout: float, on_egress: str) -> list[ProbeResult]:
    from .errors import EgressError
    from .probe_receiver import Batch, Pending

    batch = Batch()
    started: list[Pending | ProbeResult] = []
    try:
        for spec in specs:
            try:
                started.append(_start(spec, batch))
            except EgressError as exc:
                if on_egress != "record":
                    raise
                started.append(refused(spec, exc))
        pendings = [p for p in started if isinstance(p, Pending)]
        _wait(pendings, batch, timeout)
    finally:
        for p in started:
            if isinstance(p, Pending):
                p.finish(timeout)
    PROBE_STATS["probes"] += len(specs)
    return [
        p.result(spec.dst_name) if isinstance(p, Pending) else p
        for p, spec in zip(started, specs, strict=True)
    ]


def _wait(pendings: list[Pending], batch: Batch, timeout: float) -> None:
    for p in pendings:
        p.send()
    # the window opens once every first packet is out, so each probe gets all of it
    opened = time.perf_counter()
    deadline = opened + timeout
    interval = timeout / SENDS_PER_WINDOW
    sends = 1
    while not batch.event.is_set():
        now = time.perf_counter()
        if now >= deadline:
            return
        wake = opened + interval * sends if sends < SENDS_PER_WINDOW else deadline
        if batch.event.wait(max(0.0, min(wake, deadline) - now)):
            return
        if sends < SENDS_PER_WINDOW and time.perf_counter() < deadline:
            for p in pendings:
                if not p.answered:
                    p.send()
            sends += 1


def probe_one(src: object, dst: object, proto: object, port: object, timeout: object,
              payload: bytes = DEFAULT_PAYLOAD, attempts: int = 1) -> ProbeResult:
    """Validate the arguments, run one probe (a silent one up to `attempts` times),
    and tell the observers."""
    node = source_node(src)
    proto_name, port_number = check_proto(proto, port)
    seconds = check_timeout(timeout)
    attempts = check_attempts(attempts)
    if not isinstance(payload, bytes):
        raise InvalidTopologyError(f"invalid UDP payload {payload!r}: expected bytes")
    address, name = target(dst, node)
    (result,) = run([Spec(node, address, name, proto_name, port_number, payload)], seconds,
                    attempts=attempts)
    notify(result)
    return result


def describe(value: Any) -> str:
    """How a source or destination argument reads in a message."""
    if isinstance(value, Node):
        return value.name
    return str(value)
