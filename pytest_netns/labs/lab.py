"""Labs: a checked lab file described to a `TopologyBuilder`, and its `expect:` proved.

The file is read and checked first (`labfile`), so a bad file changes
nothing; then one builder call per declaration describes it, each wrapped
so that anything the builder still refuses names the file's place too.
The builder comes from whoever builds: `make_topology` in a test,
`netns_factory.topology` for a shared lab, or the command line's own for
`pytest-netns up`, so a lab gets the same backend, image, session and
teardown as every other topology of its caller.

`check` proves the `expect:` section with reachability matrices, one per
kind of probe (ICMP, each TCP or UDP port, IPv4 or IPv6), and lists the
cells that differ.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, LabFileError
from ..topology.builder import TopologyBuilder
from ..topology.spec import HOST
from .labfile import Expect, LabSpec, LinkDecl, NodeDecl, check_clear_of_host_routes, load

if TYPE_CHECKING:
    from ..nodes.base import Node
    from ..probes.matrix import ReachabilityMatrix
    from ..probes.result import ProbeResult
    from ..topology.topology import Topology

#: what makes a builder: `make_topology`, `NetnsFactory.topology`, or the CLI's own
MakeBuilder = Callable[..., TopologyBuilder]


@dataclass(frozen=True)
class Detached:
    """A namespace node's command, started after the build by a caller that will exit
    (`pytest-netns up`), with its output going to a file instead of a pipe."""

    node: str
    argv: list[str]


@dataclass
class Deferred:
    """What a caller that will exit applies itself once the lab is built: namespace nodes'
    commands, and the links' impairments (which then must outlive it)."""

    commands: list[Detached] = field(default_factory=list)
    impairments: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def impair(self, topo: Topology) -> None:
        for x, y, values in self.impairments:
            topo.link(x, y).impair(**values)


def build(path: str | os.PathLike[str], make_builder: MakeBuilder, *,
          backend: str | None = None, image: str | None = None, verify: bool = True,
          check_expect: bool = True) -> Topology:
    """The topology the lab file at `path` declares, with its `expect:` proved.

    The hook of `make_lab` and `netns_factory.lab`: `make_builder` is their
    `make_topology`/`topology`. A mismatch with `expect:` raises
    AssertionError listing the cells that differ (the topology stays up,
    for the failure report; its owner closes it).
    """
    __tracebackhide__ = True
    spec = load(path)
    builder, _ = describe(spec, make_builder, backend=backend, image=image, verify=verify)
    topo = builder.build()
    if check_expect and spec.expect:
        result = check(topo, spec)
        if not result.ok:
            raise AssertionError(str(result))
    return topo


def describe(spec: LabSpec, make_builder: MakeBuilder, *, backend: str | None = None,
             image: str | None = None, verify: bool = True,
             detached: bool = False) -> tuple[TopologyBuilder, Deferred]:
    """A builder that holds the whole lab (nothing is created yet).

    `backend` (the caller's choice, e.g. `--backend`) wins over the file's;
    "auto" must be resolved by the caller. With `detached`, namespace nodes'
    commands and the impairments are returned instead of given to the
    builder, for the caller to apply once the lab is built.
    """
    check_clear_of_host_routes(spec)
    chosen = backend or (spec.backend if spec.backend != "auto" else None)
    with _at(spec, "(the file)"):
        builder = make_builder(backend=chosen, image=image or spec.image, verify=verify,
                               label=spec.name, ipv6=spec.ipv6)
    later = Deferred()
    for node in spec.nodes.values():
        with _at(spec, f"nodes.{node.name}"):
            later.commands += _node(builder, node, detached)
    for switch in spec.switches.values():
        with _at(spec, f"switches.{switch.name}"):
            builder.switch(switch.name, subnet=switch.subnet, subnet6=switch.subnet6)
    for link in spec.links:
        with _at(spec, link.place):
            _link(builder, spec, link, None if detached else link.impair)
        if detached and link.impair:
            a, b = link.endpoints
            later.impairments += [(a, b, dict(values)) for values in link.impair]
    for node in spec.nodes.values():
        for i, route in enumerate(node.routes):
            with _at(spec, f"nodes.{node.name}.routes[{i}]"):
                builder.route(node.name, route.dst, route.via)
        if node.nat is not None:
            with _at(spec, f"nodes.{node.name}.nat"):
                builder.nat(node.name, upstream_subnet=node.nat.subnet,
                            real_uplink=node.nat.real_uplink,
                            upstream_subnet6=node.nat.subnet6)
    return builder, later


@contextmanager
def _at(spec: LabSpec, place: str) -> Iterator[None]:
    """What the builder refuses becomes a LabFileError at the declaration's place."""
    try:
        yield
    except LabFileError:
        raise
    except InvalidArgumentError as exc:
        raise LabFileError(str(exc), place, spec.file) from None


def _given(**values: Any) -> dict[str, Any]:
    """Only the keywords that were given (`environment` is a container option, and an
    empty one is none at all)."""
    return {k: v for k, v in values.items() if v}


def command_argv(node: NodeDecl) -> list[str] | None:
    """A node's command as argv.

    A string is split as a shell would split it (no shell features: write
    [sh, -c, "..."] for those), the same on both backends.
    """
    if node.command is None:
        return None
    return shlex.split(node.command) if isinstance(node.command, str) else list(node.command)


def _node(builder: TopologyBuilder, node: NodeDecl, detached: bool) -> list[Detached]:
    if node.kind == "router":
        builder.router(node.name, aliases=node.aliases)
        return []
    if node.attach is not None:
        builder.attach(node.attach, node.name, aliases=node.aliases)
        return []
    backend = node.backend or builder.backend
    argv = command_argv(node)
    environment = _given(environment=dict(node.env))
    if backend == "namespace" and detached and argv is not None:
        builder.node(node.name, image=node.image, backend=backend, aliases=node.aliases,
                     **environment)
        return [Detached(node.name, argv)]
    builder.node(node.name, image=node.image, command=argv, backend=backend,
                 aliases=node.aliases, **environment)
    return []


def _link(builder: TopologyBuilder, spec: LabSpec, link: LinkDecl,
          impairments: tuple[Mapping[str, Any], ...] | None) -> None:
    ends = link.endpoints
    impair = _given(impair=[dict(i) for i in impairments or ()])
    if len(ends) == 1:
        (node,) = ends
        address, _, prefix = link.ip.get(node, "172.16.0.10/24").partition("/")
        address6, _, prefix6 = link.ip6.get(node, "").partition("/")
        builder.stub(node, ip=address, prefixlen=int(prefix or 24),
                     iface=link.iface.get(node, "eth1"), kind=link.kind,
                     ip6=address6 or None, prefixlen6=int(prefix6 or 64))
        return
    a, b = ends
    if a in spec.switches or a == HOST:
        a, b = b, a  # the node first: connect(node, switch or host or node)
    if b in spec.switches:
        builder.connect(a, b, ip=_bare(link.ip.get(a)), iface=link.iface.get(a),
                        ip6=_bare(link.ip6.get(a)), **impair)
        return
    builder.connect(a, b, subnet=link.subnet, ip=_bare(link.ip.get(a)),
                    peer_ip=_bare(link.ip.get(b)), iface=link.iface.get(a),
                    peer_iface=link.iface.get(b), subnet6=link.subnet6,
                    ip6=_bare(link.ip6.get(a)), peer_ip6=_bare(link.ip6.get(b)), **impair)


def _bare(address: str | None) -> str | None:
    """An address without the prefix length the file may add (the subnet decides it)."""
    return address.partition("/")[0].strip() if address else None


# -- expectations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """An expected cell the lab does not give: what was expected, what was observed."""

    expect: Expect
    observed: ProbeResult

    def __str__(self) -> str:
        verdict = "reachable" if self.expect.reach else "unreachable"
        rtt = f" in {self.observed.rtt_ms:.2f} ms" if self.observed.rtt_ms is not None else ""
        return (f"{self.expect.place}: {self.expect.src} -> {self.observed.target} "
                f"{self.observed.service}: expected {verdict}, observed "
                f"{self.observed.state}{rtt} ({self.observed.detail})")


@dataclass
class LabCheck:
    """The matrices probed for a lab's `expect:`, and the cells that differ."""

    lab: str
    expected: int
    matrices: list[ReachabilityMatrix] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.differences

    def __str__(self) -> str:
        verdict = ("as expected" if self.ok else
                   f"{len(self.differences)} differ{'s' if len(self.differences) == 1 else ''}")
        lines = [f"lab {self.lab}: {self.expected} expected cell(s) probed in "
                 f"{self.seconds:.2f} s, {verdict}"]
        for matrix in self.matrices:
            lines += ["", *str(matrix).splitlines()]
        if self.differences:
            lines += ["", "differences from expect:"]
            lines += [f"  {d}" for d in self.differences]
        return "\n".join(lines)


def check(topo: Topology, spec: LabSpec, timeout: float = 1.0) -> LabCheck:
    """Probe every `expect:` cell on the built lab: one matrix per kind of probe."""
    from ..nodes.host import host
    from ..probes.matrix import reachability_matrix

    started = time.perf_counter()
    result = LabCheck(spec.name, len(spec.expect))
    groups: dict[tuple[str, int | None, int], list[Expect]] = {}
    for cell in spec.expect:
        groups.setdefault((cell.proto, cell.port, cell.family), []).append(cell)
    order = [*spec.members(), HOST]
    for (proto, port, family), cells in groups.items():
        named = {c.src for c in cells} | {c.dst for c in cells}
        members: dict[str, Node] = {n: host() if n == HOST else topo.nodes[n]
                                    for n in order if n in named}
        expected = {(c.src, c.dst): c.reach for c in cells}
        matrix = reachability_matrix(members, timeout, proto=proto, port=port,
                                     expected=expected, on_egress="record", family=family)
        by_pair: Mapping[tuple[str, str], Expect] = {(c.src, c.dst): c for c in cells}
        result.matrices.append(matrix)
        result.differences += [Difference(by_pair[pair], observed)
                               for pair, _, observed in matrix.differences(expected)]
    result.seconds = time.perf_counter() - started
    return result


# -- faults, as a lab's record keeps them ----------------------------------------------------


def faults_of(topo: Topology) -> dict[str, Any]:
    """What is impaired or partitioned now, as JSON data that `restore_faults` takes back:
    `{"impairments": {"a<->b": {"a->b": {"delay": 0.02}}}, "partitions": [...]}`."""
    state = topo.fault_state
    if state is None:
        return {}
    impairments = {}
    for faults in state.links():
        current = {name: imp.as_dict() for name, imp in faults.current().items()}
        if current:
            impairments["<->".join(faults.names)] = current
    partitions = [{"groups": [list(g) for g in p.groups], "oneway": p.oneway}
                  for p in state.active_partitions()]
    return {"impairments": impairments, "partitions": partitions}


def restore_faults(topo: Topology, faults: Mapping[str, Any]) -> None:
    """Set again what `faults_of` wrote down (on a topology that has no fault yet)."""
    for pair, directions in (faults.get("impairments") or {}).items():
        link = topo.link(*pair.split("<->"))
        for direction, values in directions.items():
            link.impair(direction=direction, **values)
    for part in faults.get("partitions") or []:
        topo.partition(*part["groups"], oneway=bool(part["oneway"]))
