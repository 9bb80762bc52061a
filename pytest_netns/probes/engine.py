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
from typing import TYPE_CHECKING, Any, Literal

from ..errors import EgressError, InvalidAddressError, InvalidProbeError, NetnsError
from ..nodes.base import Node
from ..nodes.host import HostNode, host
from .result import PAYLOAD, PROTOS, ProbeResult

if TYPE_CHECKING:  # the socket layer loads on the first probe, not with the plugin
    from .receiver import Batch, Pending

#: where a probe is sent from: a node, or "host" (the namespace pytest runs in)
Source = Node | Literal["host"]
#: what a probe is sent to: an address, a node, or "host"
Destination = Node | str | ipaddress.IPv4Address | ipaddress.IPv6Address

# every ProbeResult and ReachabilityMatrix is handed to each of these
observers: list[Callable[[object], None]] = []
PROBE_STATS = {"probes": 0}
SENDS_PER_WINDOW = 4  # the first packet plus up to three resends
# A later attempt waits at least this long: the kernel resends an unanswered ARP
# request after net.ipv4.neigh.*.retrans_time_ms (1 s by default), so a shorter
# retry could not outlast the loss of the first ARP request on a new link.
RETRY_WINDOW = 1.2


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
    payload: bytes = PAYLOAD


def source_node(src: object) -> Node:
    """A Node from a Node or "host"; a clear error for anything else."""
    if isinstance(src, str) and src == "host":
        return host()
    if isinstance(src, Node):
        src.check_open("probe from")
        return src
    raise InvalidProbeError(
        f"invalid probe source {src!r}: expected a Node (e.g. pair.a) or the string 'host'"
    )


def check_family(family: object) -> int | None:
    """None (IPv4 for a Node, the address's own for an address), 4 or 6."""
    if family is not None and (isinstance(family, bool) or family not in (4, 6)):
        raise InvalidProbeError(f"invalid family {family!r}: expected 4, 6 or None")
    return family


def target(dst: object, src: Node, family: int | None = None) -> tuple[str, str]:
    """(address, node name or "") for a destination: an address, a Node, or "host".

    A node (the host included) with several addresses is probed at the one
    on a segment it shares with `src`, when there is one: its IPv4 address,
    or its IPv6 one with `family=6`. An address is probed as it is, and must
    be of `family` when one is given.
    """
    if isinstance(dst, str) and dst == "host":
        dst = host()
    if isinstance(dst, HostNode) and isinstance(src, HostNode):
        raise InvalidProbeError("the host cannot be both source and destination of a probe")
    if isinstance(dst, Node):
        dst.check_open("probe")
        address = dst.address_for(src, family or 4)
        # the host's first address belongs to some other topology's link
        if address is None or (isinstance(dst, HostNode) and not _shares_network(dst, src)):
            raise InvalidProbeError(_no_address(dst, src, family or 4))
        return address, dst.name
    if isinstance(dst, str | ipaddress.IPv4Address | ipaddress.IPv6Address):
        address = _parse_ip(dst)
        if family is not None and ipaddress.ip_address(address).version != family:
            raise InvalidAddressError(
                f"probe destination {dst!r} is an IPv{6 if family == 4 else 4} address, but "
                f"family={family} asks for IPv{family}: drop family=, or give an IPv{family} "
                "address"
            )
        return address, ""
    raise InvalidAddressError(
        f"invalid probe destination {dst!r}: expected an IP address string, a Node, or 'host'"
    )


def _shares_network(a: Node, b: Node) -> bool:
    mine = {i.network for i in a.interfaces if i.network}
    return any(i.network in mine for i in b.interfaces)


def _no_address(dst: Node, src: Node, family: int = 4) -> str:
    if family == 6 and dst.address_for(src, 4) is not None:
        return (f"{dst.name!r} has no IPv6 address, so family=6 cannot probe it: build its "
                "topology with ipv6=True")
    if isinstance(dst, HostNode):
        return (f"node {src.name!r} shares no link with the host, so 'host' names no address "
                "for it; pass the host address to probe explicitly")
    return (f"node {dst.name!r} has no address on its topology, so it cannot be a probe "
            "destination; probe one of its interface addresses instead")


def _parse_ip(value: object) -> str:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise InvalidAddressError(
            f"invalid probe destination {value!r}: expected an IP address such as "
            "'10.64.0.2' or 'fd00:1::2', a Node, or 'host'"
        ) from None


def check_proto(proto: object, port: object) -> tuple[str, int | None]:
    """The protocol (default: icmp without a port, tcp with one) and a valid port."""
    if proto is None:
        proto = "icmp" if port is None else "tcp"
    if proto not in PROTOS:
        raise InvalidProbeError(f"invalid probe protocol {proto!r}: expected one of {PROTOS}")
    if proto == "icmp":
        if port is not None:
            raise InvalidProbeError(f"ICMP has no ports, but port={port!r} was given")
        return "icmp", None
    if type(port) is not int or not 1 <= port <= 65535:
        raise InvalidProbeError(
            f"invalid {proto} port {port!r}: expected an integer from 1 to 65535"
        )
    return str(proto), port


def check_timeout(timeout: object) -> float:
    if (isinstance(timeout, bool) or not isinstance(timeout, int | float)
            or not 0 < timeout <= 3600):
        raise InvalidProbeError(
            f"invalid probe timeout {timeout!r}: expected seconds, a number above 0 "
            "(and at most 3600)"
        )
    return float(timeout)


def check_attempts(attempts: object) -> int:
    if type(attempts) is not int or not 1 <= attempts <= 100:
        raise InvalidProbeError(f"invalid attempts {attempts!r}: expected an integer, 1 or more")
    return attempts


def _start(spec: Spec, batch: Batch) -> Pending:
    from .receiver import Pending
    from .route import NoRoute
    from .sockets import prober_for

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
    from .receiver import Batch, Pending

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
            from .receiver import Scapy

            Scapy.wait_for_backlog()  # answers that arrived in time count, parsed or not
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
              payload: bytes = PAYLOAD, attempts: int = 1,
              family: int | None = None, notify_observers: bool = True) -> ProbeResult:
    """Validate the arguments, run one probe (a silent one up to `attempts` times),
    and tell the observers (unless the caller reports a summary of its own)."""
    node = source_node(src)
    proto_name, port_number = check_proto(proto, port)
    seconds = check_timeout(timeout)
    attempts = check_attempts(attempts)
    if not isinstance(payload, bytes):
        raise InvalidProbeError(f"invalid UDP payload {payload!r}: expected bytes")
    address, name = target(dst, node, check_family(family))
    (result,) = run([Spec(node, address, name, proto_name, port_number, payload)], seconds,
                    attempts=attempts)
    if notify_observers:
        notify(result)
    return result


def describe(value: Any) -> str:
    """How a source or destination argument reads in a message."""
    if isinstance(value, Node):
        return value.name
    return str(value)
