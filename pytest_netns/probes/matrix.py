"""Who reaches whom: every ordered pair of nodes probed at once, as a table.

Mininet's `pingAll` prints a host-by-host matrix; this one also remembers
why each "no" is a no (no route, ICMP error, silence) and compares itself
with what the test expected, so a failure shows only the cells that differ.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from ..errors import InvalidProbeError
from ..nodes.base import Node
from ..nodes.host import HostNode
from .engine import (
    Source,
    Spec,
    check_attempts,
    check_family,
    check_proto,
    check_timeout,
    notify,
    run,
    source_node,
    target,
)
from .result import ProbeResult

Pair = tuple[str, str]
#: a matrix member, by name or as the Node
NodeRef = Node | str
#: what a matrix is compared with (see `ReachabilityMatrix.assert_matches`)
Expected = (Iterable[tuple[NodeRef, NodeRef]] | Mapping[tuple[NodeRef, NodeRef], bool]
            | Mapping[NodeRef, Iterable[NodeRef]] | Callable[[str, str], bool])


class HasMembers(Protocol):
    """A topology, as the matrix sees it: its user-visible nodes by name."""

    nodes: Mapping[str, Node]

    def members(self) -> list[str]: ...


#: whose reachability to probe: nodes (or "host"), {label: node}, or a topology
Members = Iterable[Source] | Mapping[str, Node] | HasMembers


class ReachabilityMatrix:
    """The results of probing every ordered pair of `nodes` (by name)."""

    def __init__(
        self,
        nodes: list[str],
        results: dict[Pair, ProbeResult],
        proto: str,
        port: int | None,
        timeout: float,
        seconds: float,
        members: dict[str, Node] | None = None,
    ) -> None:
        self.nodes = nodes
        self.results = results
        self.proto = proto
        self.port = port
        self.timeout = timeout
        self.seconds = seconds
        self.expected: dict[Pair, bool] | None = None
        self._members = members or {}

    # -- reading --------------------------------------------------------------

    def _name(self, node: object) -> str:
        if isinstance(node, str) and node in self.nodes:
            return node
        for name, member in self._members.items():
            if member is node:
                return name
        raise InvalidProbeError(
            f"{node!r} is not in this reachability matrix; its nodes are {self.nodes}"
        )

    def __getitem__(self, pair: tuple[NodeRef, NodeRef]) -> ProbeResult:
        a, b = self._name(pair[0]), self._name(pair[1])
        if a == b:
            raise InvalidProbeError(f"the matrix does not probe {a!r} from itself")
        return self.results[(a, b)]

    def reachable(self, a: NodeRef, b: NodeRef) -> bool:
        """True when `a`'s probe of `b` got an answer (echo reply, or open port)."""
        return self[(a, b)].ok

    def reachable_pairs(self) -> set[Pair]:
        return {pair for pair, result in self.results.items() if result.ok}

    # -- comparing ------------------------------------------------------------

    def _expectation(self, expected: Expected) -> dict[Pair, bool]:
        """Expected reachability per checked cell, from any of the accepted forms.

        - a set (or list) of (src, dst) pairs: exactly these are reachable;
        - a mapping {(src, dst): bool}: only the listed cells are checked;
        - a mapping {src: [dst, ...]}: for each listed source, exactly these;
        - a function f(src, dst) -> bool, called with node names.
        Nodes may be given by name or as the Node objects.
        """
        cells = list(self.results)
        if callable(expected):
            return {(a, b): bool(expected(a, b)) for a, b in cells}
        if isinstance(expected, Mapping):
            out: dict[Pair, bool] = {}
            for k, v in expected.items():
                if isinstance(k, tuple):
                    out[self._pair(k)] = bool(v)
                else:
                    src = self._name(k)
                    if isinstance(v, str | Node) or not isinstance(v, Iterable):
                        raise InvalidProbeError(
                            f"expected[{k!r}] = {v!r}: expected a collection of destinations"
                        )
                    dsts = {self._name(d) for d in v}
                    out.update({(a, b): b in dsts for a, b in cells if a == src})
            return out
        if isinstance(expected, Iterable) and not isinstance(expected, str):
            pairs = {self._pair(p) for p in expected}
            return {cell: cell in pairs for cell in cells}
        raise InvalidProbeError(
            f"cannot compare with {expected!r}: expected a set of (src, dst) pairs, a mapping "
            "{(src, dst): bool} or {src: [dst, ...]}, or a function f(src, dst) -> bool"
        )

    def _pair(self, pair: object) -> Pair:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise InvalidProbeError(f"{pair!r} is not a (src, dst) pair")
        a, b = self._name(pair[0]), self._name(pair[1])
        if a == b:
            raise InvalidProbeError(f"the matrix does not probe {a!r} from itself")
        return (a, b)

    def differences(self, expected: Expected) -> list[tuple[Pair, bool, ProbeResult]]:
        """The cells whose observation differs from `expected`, in table order."""
        want = self._expectation(expected)
        self.expected = want
        return [
            ((a, b), want[(a, b)], self.results[(a, b)])
            for a in self.nodes
            for b in self.nodes
            if (a, b) in want and want[(a, b)] != self.results[(a, b)].ok
        ]

    def assert_matches(self, expected: Expected) -> None:
        """AssertionError listing only the cells that differ from `expected`."""
        __tracebackhide__ = True
        diffs = self.differences(expected)
        if not diffs:
            return
        lines = [
            f"reachability ({self._service()}) differs from what was expected in "
            f"{len(diffs)} of {len(self.expected or {})} checked cells:"
        ]
        for (a, _), want, result in diffs:
            verdict = "reachable" if want else "unreachable"
            lines.append(f"  {a} -> {result.target}: expected {verdict}, observed "
                         f"{result.state} ({result.detail})")
        raise AssertionError("\n".join(lines))

    # -- showing --------------------------------------------------------------

    def _service(self) -> str:
        return self.proto if self.port is None else f"{self.proto}/{self.port}"

    def _cell(self, a: str, b: str) -> str:
        if a == b:
            return "-"
        result = self.results[(a, b)]
        text = "yes" if result.ok else result.state
        expected = self.expected or {}
        if (a, b) in expected and expected[(a, b)] != result.ok:
            text += "!"
        return text

    def __str__(self) -> str:
        corner = "from \\ to"
        rows = [[corner, *self.nodes]]
        rows += [[a, *(self._cell(a, b) for b in self.nodes)] for a in self.nodes]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        reachable = sum(r.ok for r in self.results.values())
        lines = [
            f"reachability ({self._service()}, timeout {self.timeout:g} s): "
            f"{len(self.results)} probes in {self.seconds:.2f} s, {reachable} reachable"
        ]
        for row in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if self.expected is not None:
            diffs = [(a, b) for (a, b), want in self.expected.items()
                     if want != self.results[(a, b)].ok]
            if diffs:
                lines.append(f"!: differs from the expected matrix ({len(diffs)} cell(s))")
            else:
                lines.append("matches the expected matrix")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<ReachabilityMatrix {self._service()} nodes={self.nodes}>"


def _members(nodes: object) -> dict[str, Node]:
    """Name -> node from a sequence of nodes / "host", a {label: node} mapping, or a topology."""
    if callable(getattr(nodes, "members", None)) and isinstance(getattr(nodes, "nodes", None),
                                                                 Mapping):
        topology: Any = nodes
        return {name: topology.nodes[name] for name in topology.members()}
    if isinstance(nodes, Mapping):
        items: list[tuple[str, Any]] = [(str(k), v) for k, v in nodes.items()]
    elif isinstance(nodes, Iterable) and not isinstance(nodes, str):
        items = []
        for n in nodes:
            node = source_node(n)
            items.append((node.name, node))
    else:
        raise InvalidProbeError(
            f"invalid matrix nodes {nodes!r}: expected a list of Nodes (or 'host'), a "
            "mapping {label: node}, or a Topology"
        )
    out: dict[str, Node] = {}
    for name, node in items:
        if name in out:
            raise InvalidProbeError(
                f"two matrix nodes are both called {name!r}: pass a mapping "
                "{label: node} to tell them apart"
            )
        out[name] = source_node(node)
    if len(out) < 2:
        raise InvalidProbeError(f"a reachability matrix needs two nodes or more, got {items}")
    return out


def _address(dst: Node, src: Node, members: dict[str, Node], family: int | None) -> str:
    """`dst`'s address as `src` should probe it (its IPv6 one with `family=6`).

    The host has many addresses: a node that shares a link with it probes
    its end of that link; any other node probes the host's end of a link to
    another member (which it normally has no route to, a fair verdict).
    """
    if not isinstance(dst, HostNode):
        return target(dst, src, family)[0]
    for near in (src, *members.values()):
        if near is dst:
            continue
        with contextlib.suppress(InvalidProbeError):
            return target(dst, near, family)[0]
    raise InvalidProbeError(
        "the host is in the matrix, but shares a link with none of its nodes, so it has no "
        "address to probe; leave 'host' out, or add a host-only link"
    )


def reachability_matrix(
    nodes: Members,
    timeout: float = 1.0,
    *,
    proto: str | None = None,
    port: int | None = None,
    expected: Expected | None = None,
    on_egress: str = "raise",
    attempts: int = 2,
    family: int | None = None,
) -> ReachabilityMatrix:
    """Probe every ordered pair of `nodes` concurrently (about one timeout window).

    Cells that met only silence are probed again, all together, in one more
    window (`attempts` windows at most): a packet lost right after a link came
    up must not pass for isolation. Cells decided by no route, an ICMP error
    or an answer cost no extra window.

    `expected` (any form `assert_matches` takes) only marks the cells that
    differ in `str()`; call `assert_matches` to fail on them. A pair whose
    route leaves through an interface no topology made raises EgressError
    before anything is sent, or with on_egress="record" becomes a "refused" cell.
    `family=6` probes every node at its IPv6 address.
    """
    members = _members(nodes)
    family = check_family(family)
    proto_name, port_number = check_proto(proto, port)
    seconds = check_timeout(timeout)
    if on_egress not in ("raise", "record"):
        raise InvalidProbeError(f"invalid on_egress {on_egress!r}: expected 'raise' or 'record'")
    attempts = check_attempts(attempts)
    names = list(members)
    pairs = [(a, b) for a in names for b in names if a != b]
    specs = []
    for a, b in pairs:
        address = _address(members[b], members[a], members, family)
        specs.append(Spec(members[a], address, b, proto_name, port_number))
    started = time.perf_counter()
    results = run(specs, seconds, on_egress, attempts)
    matrix = ReachabilityMatrix(
        names, dict(zip(pairs, results, strict=True)), proto_name, port_number, seconds,
        time.perf_counter() - started, members,
    )
    if expected is not None:
        matrix.differences(expected)
    notify(matrix)
    return matrix
