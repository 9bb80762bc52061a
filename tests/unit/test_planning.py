"""Planning and address checks: pure logic, no kernel, no root.

A description that cannot be built must be refused before anything exists,
with a message that names the value; a description that can is addressed
the same way every time (routers and the host take the first addresses).
"""

from __future__ import annotations

import ipaddress

import pytest

from pytest_netns import (
    InterfaceNameError,
    InvalidAddressError,
    InvalidTopologyError,
    SubnetTooSmallError,
    TopologyBuilder,
    UnsupportedKindError,
)
from pytest_netns.topology.addresses import check_ifname, parse_ip, parse_subnet
from pytest_netns.topology.plan import assign, check_description
from pytest_netns.topology.subnets import prefixlen_for


def described(build: str) -> TopologyBuilder:
    """A builder described by `build` (statements over `t`); nothing is created."""
    t = TopologyBuilder(backend="namespace")
    exec(build, {"t": t, "HOST": "host"})
    return t


def planned(t: TopologyBuilder, **subnets: str) -> dict[str, dict[str, str]]:
    """{segment: {node: address}} as the planner assigns them."""
    segments = list(t._segments.values())
    check_description(segments)
    chosen = {k: ipaddress.IPv4Network(v) for k, v in subnets.items()}
    return {seg.name: {e.node: e.ip for e in seg.ends}
            for seg in assign(segments, t._nodes, chosen)}


def test_routers_and_the_host_take_the_first_addresses() -> None:
    t = described("a = t.node('a'); r = t.router('r'); sw = t.switch('lan')\n"
                  "t.connect(a, sw); t.connect(r, sw); t.connect(a, HOST)")
    got = planned(t, lan="10.0.0.0/24", link1="10.0.1.0/30")
    assert got == {"lan": {"a": "10.0.0.2", "r": "10.0.0.1"},
                   "link1": {"a": "10.0.1.2", "host": "10.0.1.1"}}


def test_explicit_addresses_are_kept_and_the_rest_fill_around_them() -> None:
    t = described("a, b, c = t.node('a'), t.node('b'), t.node('c'); sw = t.switch('lan')\n"
                  "t.connect(a, sw); t.connect(b, sw, ip='10.0.0.1'); t.connect(c, sw)")
    assert planned(t, lan="10.0.0.0/29") == {"lan": {"a": "10.0.0.2", "b": "10.0.0.1",
                                                     "c": "10.0.0.3"}}


@pytest.mark.parametrize(("build", "error", "names"), [
    ("a = t.node('a'); sw = t.switch('s', subnet='10.0.0.0/24'); t.connect(a, sw, ip='10.1.0.5')",
     InvalidAddressError, "10.1.0.5"),
    ("a, b = t.node('a'), t.node('b'); sw = t.switch('s', subnet='10.0.0.0/24')\n"
     "t.connect(a, sw, ip='10.0.0.5'); t.connect(b, sw, ip='10.0.0.5')",
     InvalidAddressError, "given twice"),
    ("a, b, c = t.node('a'), t.node('b'), t.node('c'); sw = t.switch('s', subnet='10.0.0.0/30')\n"
     "t.connect(a, sw); t.connect(b, sw); t.connect(c, sw)",
     SubnetTooSmallError, "/29"),
    ("a, b = t.node('a'), t.node('b')\n"
     "t.connect(a, b, subnet='10.0.0.0/24'); t.connect(a, HOST, subnet='10.0.0.128/25')",
     InvalidAddressError, "overlap"),
    ("a, b = t.node('a'), t.node('b')\n"
     "t.connect(a, b, iface='eth5'); t.connect(a, HOST, iface='eth5')",
     InterfaceNameError, "eth5"),
    ("t.switch('empty')", InvalidTopologyError, "'empty'"),
])
def test_refused_descriptions_name_the_value(build: str, error: type[Exception],
                                             names: str) -> None:
    with pytest.raises(error, match=names):
        planned(described(build), s="10.0.0.0/24", link1="10.9.0.0/24", empty="10.8.0.0/24")


@pytest.mark.parametrize(("call", "error", "names"), [
    ("t.connect('nobody', 'host')", InvalidTopologyError, "'nobody'"),
    ("t.node('host')", InvalidTopologyError, "'host'"),
    ("a = t.node('a'); t.connect(a, a)", InvalidTopologyError, "itself"),
    ("t.node('a'); t.node('a')", InvalidTopologyError, "twice"),
    ("t.node('a', backend='vm')", InvalidTopologyError, "'vm'"),
    ("a = t.node('a'); t.connect(a, 'host', iface='x' * 16)", InterfaceNameError, "16"),
    ("a = t.node('a'); t.connect(a, 'host', ip='10.0.0.300')", InvalidAddressError, "300"),
    ("a = t.node('a'); t.stub(a, kind='tap')", UnsupportedKindError, "'tap'"),
])
def test_bad_builder_calls_name_the_value(call: str, error: type[Exception], names: str) -> None:
    with pytest.raises(error, match=names):
        described(call)


@pytest.mark.parametrize(("hosts", "prefixlen"), [(1, 24), (254, 24), (255, 23), (300, 23),
                                                  (1000, 22), (5000, 19)])
def test_automatic_subnets_grow_with_their_members(hosts: int, prefixlen: int) -> None:
    assert prefixlen_for(hosts) == prefixlen


@pytest.mark.parametrize(("value", "error"), [
    ("10.0.0.0", "prefix length is missing"), ("10.0.0.0/33", "invalid subnet"),
    ("banana", "invalid subnet"),
])
def test_parse_subnet_refuses(value: str, error: str) -> None:
    with pytest.raises(InvalidAddressError, match=error):
        parse_subnet(value)


def test_parse_checks() -> None:
    assert str(parse_ip(" 10.0.0.2 ")) == "10.0.0.2"
    assert check_ifname("eth1") == "eth1"
    for bad in ("", "a b", "lo", "x" * 16, "a/b"):
        with pytest.raises(InterfaceNameError):
            check_ifname(bad)
