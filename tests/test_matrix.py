"""Reachability matrices on real topologies (both backends, see conftest).

Two switches joined by nothing give a known answer: every pair on the same
switch talks, every pair across has no route. The matrix must find exactly
that, print it as an aligned table, and when told a wrong expectation list
only the cells that differ.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from pytest_netns import (
    EgressError,
    InvalidProbeError,
    NetnsError,
    ReachabilityMatrix,
    probe,
    reachability_matrix,
    wait_for_tcp,
)
from pytest_netns.probes.engine import PROBE_STATS, observers


def two_switches(make_topology: Any, per_switch: int, **kw: Any) -> tuple[Any, list[str]]:
    """Nodes a0.. on switch "left" and b0.. on switch "right", joined by nothing."""
    t = make_topology(**kw)
    left, right = t.switch("left"), t.switch("right")
    names = []
    for side, sw in (("a", left), ("b", right)):
        for i in range(per_switch):
            name = t.node(f"{side}{i}")
            t.connect(name, sw)
            names.append(name)
    return t.build(), names


def same_switch(names: list[str]) -> set[tuple[str, str]]:
    return {(a, b) for a in names for b in names if a != b and a[0] == b[0]}


def column_starts(line: str) -> list[int]:
    return [m.start() for m in re.finditer(r"\S+", line)]


def test_two_switches_give_the_expected_matrix_and_table(make_topology: Any) -> None:
    net, names = two_switches(make_topology, 3)
    matrix = reachability_matrix([net[n] for n in names])
    assert isinstance(matrix, ReachabilityMatrix)
    assert matrix.nodes == names
    assert len(matrix.results) == 30
    assert matrix.reachable_pairs() == same_switch(names)
    assert matrix.reachable("a0", "a1") and matrix.reachable(net["b2"], net["b0"])
    assert not matrix.reachable("a0", "b0")
    cross = matrix[("a0", "b1")]
    assert (cross.state, cross.sent) == ("no-route", 0)
    assert matrix[("b1", "b2")].state == "reply"
    matrix.assert_matches(same_switch(names))

    text = str(matrix)
    lines = text.splitlines()
    assert lines[0].startswith("reachability (icmp, timeout 1 s): 30 probes in ")
    assert lines[0].endswith(", 12 reachable")
    header, rows = lines[1], lines[2:8]
    assert header.split() == ["from", "\\", "to", *names]
    starts = column_starts(header)[2:]  # "from \\ to" is one column of three words
    for name, row in zip(names, rows, strict=True):
        assert row.split()[0] == name
        assert column_starts(row)[1:] == starts[1:], text  # aligned under the names
    assert rows[0].split()[1:] == ["-", "yes", "yes", "no-route", "no-route", "no-route"]


def test_assert_matches_lists_only_the_cells_that_differ(make_topology: Any) -> None:
    net, names = two_switches(make_topology, 2)
    matrix = reachability_matrix([net[n] for n in names], timeout=0.5)
    wrong = same_switch(names) - {("a0", "a1")} | {("a0", "b0"), ("b1", "a1")}
    with pytest.raises(AssertionError) as failed:
        matrix.assert_matches(wrong)
    lines = str(failed.value).splitlines()
    assert lines[0] == (
        "reachability (icmp) differs from what was expected in 3 of 12 checked cells:"
    )
    assert sorted(lines[1:]) == sorted([
        f"  a0 -> a1 ({net['a1'].ip}): expected unreachable, observed reply "
        f"({matrix['a0', 'a1'].detail})",
        f"  a0 -> b0 ({net['b0'].ip}): expected reachable, observed no-route "
        f"({matrix['a0', 'b0'].detail})",
        f"  b1 -> a1 ({net['a1'].ip}): expected reachable, observed no-route "
        f"({matrix['b1', 'a1'].detail})",
    ])
    table = str(matrix)  # the differing cells are now marked in the table
    assert table.count("!") == 4  # three cells and the legend
    assert "yes!" in table and table.count("no-route!") == 2
    assert table.endswith("!: differs from the expected matrix (3 cell(s))")


def test_every_form_of_expectation_agrees(make_topology: Any) -> None:
    net, names = two_switches(make_topology, 2)
    matrix = reachability_matrix([net[n] for n in names], timeout=0.5)
    pairs = same_switch(names)
    matrix.assert_matches(pairs)
    matrix.assert_matches(list(pairs))
    matrix.assert_matches({(net["a0"], net["a1"]): True, ("a0", "b1"): False})
    matrix.assert_matches({"a0": ["a1"], net["b0"]: [net["b1"]]})
    matrix.assert_matches(lambda a, b: a[0] == b[0])
    with pytest.raises(AssertionError):
        matrix.assert_matches(lambda a, b: True)
    with pytest.raises(InvalidProbeError, match="'zz'"):
        matrix.assert_matches({("a0", "zz")})
    with pytest.raises(InvalidProbeError, match="from itself"):
        matrix.assert_matches({("a0", "a0")})
    with pytest.raises(InvalidProbeError, match="42"):
        matrix.assert_matches(42)


def test_silent_cells_share_one_window(make_topology: Any) -> None:
    t = make_topology()
    sw = t.switch("lan")
    names = [t.node(f"n{i}") for i in range(4)]
    for name in names:
        t.connect(name, sw)
    for name in names[1:]:
        t.expect(names[0], name, sw)  # the build proves the switch forwards
    net = t.build()
    for name in names:  # now nobody answers echo requests: every cell is silence
        net[name].netlink.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
    before = PROBE_STATS["probes"]
    matrix = reachability_matrix([net[n] for n in names], timeout=0.5, attempts=1)
    assert {r.state for r in matrix.results.values()} == {"timeout"}
    firsts = [r.sent_at for r in matrix.results.values() if r.sent_at is not None]
    assert len(firsts) == 12
    # every probe was sent before the first of them could have timed out: one window
    assert max(firsts) < min(firsts) + 0.5
    assert PROBE_STATS["probes"] == before + 12
    again = reachability_matrix([net[n] for n in names], timeout=0.5)  # attempts=2
    assert {r.state for r in again.results.values()} == {"timeout"}
    assert PROBE_STATS["probes"] == before + 12 + 24  # silence earned one more window


def test_twenty_nodes_on_two_switches(make_topology: Any) -> None:
    net, names = two_switches(make_topology, 10)
    matrix = reachability_matrix([net[n] for n in names])
    print(f"\n20-node matrix: {len(matrix.results)} probes in {matrix.seconds:.3f} s")
    assert len(matrix.results) == 380
    matrix.assert_matches(same_switch(names))
    assert sum(r.state == "no-route" for r in matrix.results.values()) == 200  # 2 x 10 x 10
    assert sum(r.ok for r in matrix.results.values()) == 180  # 2 x 10 x 9


def test_the_host_in_a_matrix(make_host_only_link: Any, make_bridged_pair: Any) -> None:
    link, pair = make_host_only_link(), make_bridged_pair()
    members = {"host": "host", "node": link.node, "a": pair.a}
    # host -> a would leave through the host's default route: refused, nothing sent
    with pytest.raises(EgressError, match="nothing was sent"):
        reachability_matrix(members)
    matrix = reachability_matrix(members, on_egress="record")
    assert matrix["host", "a"].state == "refused"
    assert "interface that no pytest-netns topology created" in matrix["host", "a"].detail
    assert matrix.reachable("host", "node") and matrix.reachable("node", "host")
    assert matrix["node", "host"].dst == link.host_ip
    assert matrix["node", "a"].state == "no-route"
    assert matrix["a", "host"].state == "no-route"  # the host's end of the link it lacks
    assert "refused" in str(matrix)


def test_labels_tell_nodes_with_the_same_name_apart(make_host_only_link: Any) -> None:
    one, two = make_host_only_link(), make_host_only_link()
    assert one.node.name == two.node.name
    with pytest.raises(InvalidProbeError, match="mapping"):
        reachability_matrix([one.node, two.node])
    matrix = reachability_matrix({"one": one.node, "two": two.node, "host": "host"})
    matrix.assert_matches({("one", "host"), ("two", "host"), ("host", "one"), ("host", "two")})


def test_observers_receive_the_matrix(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair()
    seen: list[object] = []
    observers.append(seen.append)
    try:
        matrix = reachability_matrix([pair.a, pair.b], expected={("a", "b"), ("b", "a")})
    finally:
        observers.remove(seen.append)
    assert seen == [matrix]
    assert matrix.expected == {("a", "b"): True, ("b", "a"): True}
    assert "!" not in str(matrix)
    assert str(matrix).endswith("matches the expected matrix")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"nodes": ["host"]}, "two nodes or more"),
        ({"nodes": 42}, "42"),
        ({"nodes": ["host", "elsewhere"]}, "'elsewhere'"),
        ({"nodes": ["host", "host"]}, "both called 'host'"),
        ({"nodes": {"h": "host", "i": "host"}, "timeout": -1}, "timeout -1"),
        ({"nodes": {"h": "host", "i": "host"}, "attempts": 0}, "attempts 0"),
        ({"nodes": {"h": "host", "i": "host"}, "on_egress": "ignore"}, "'ignore'"),
        ({"nodes": {"h": "host", "i": "host"}, "proto": "tcp"}, "port None"),
    ],
)
def test_bad_matrix_input_names_the_value(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(NetnsError) as raised:
        reachability_matrix(**kwargs)
    assert words in str(raised.value)


def test_a_port_means_tcp_as_it_does_for_a_single_probe(make_bridged_pair: Any) -> None:
    """Issue 11 #13: `reachability_matrix(nodes, port=80)` raised "ICMP has no ports"."""
    pair = make_bridged_pair()
    server = pair.b.spawn(["busybox", "nc", "-ll", "-p", "80", "-e", "busybox", "cat"])
    assert wait_for_tcp(pair.a, pair.b, 80).ok
    matrix = reachability_matrix([pair.a, pair.b], port=80)
    assert matrix.proto == "tcp" and matrix.port == 80
    assert matrix[(pair.a, pair.b)].state == "open"
    assert matrix[(pair.b, pair.a)].state == "closed"  # nothing listens on a
    assert matrix[(pair.a, pair.b)].service == probe(pair.a, pair.b, port=80).service == "tcp/80"
    server.stop()
