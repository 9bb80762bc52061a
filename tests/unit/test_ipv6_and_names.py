"""IPv6 planning and allocation, names and host-name checks: pure logic, no kernel, no root.

A dual-stack description is addressed the same way as an IPv4 one (routers
and the host take the first address of every subnet, explicit addresses
are kept); IPv6 values where IPv4 ones belong (and the reverse), subnets
that are too small, and names two nodes would share are refused, before
anything exists, with a message that names the value.
"""

from __future__ import annotations

import ipaddress

import pytest

from pytest_netns import (
    HostnameError,
    InvalidAddressError,
    InvalidTopologyError,
    IPv6UnavailableError,
    SubnetExhaustedError,
    SubnetTooSmallError,
    TopologyBuilder,
)
from pytest_netns.topology.addresses import (
    check_hostname,
    check_segment_subnet6,
    parse_ip,
    parse_ip6,
    parse_subnet,
    parse_subnet6,
    require_ipv6,
)
from pytest_netns.topology.names import check_names, merged
from pytest_netns.topology.plan import assign, check_description
from pytest_netns.topology.subnets import DEFAULT_POOL6, _allocate


def described(build: str, ipv6: bool = True) -> TopologyBuilder:
    """A builder described by `build` (statements over `t`); nothing is created."""
    t = TopologyBuilder(backend="namespace", ipv6=ipv6)
    exec(build, {"t": t, "HOST": "host"})
    return t


def planned6(t: TopologyBuilder, subnets: dict[str, str],
             subnets6: dict[str, str]) -> dict[str, dict[str, tuple[str, str | None]]]:
    """{segment: {node: (IPv4 address, IPv6 address)}} as the planner assigns them."""
    segments = list(t._segments.values())
    check_description(segments, t._nodes, t.ipv6)
    chosen = {k: ipaddress.IPv4Network(v) for k, v in subnets.items()}
    chosen6 = {k: ipaddress.IPv6Network(v) for k, v in subnets6.items()}
    return {seg.name: {e.node: (e.ip, e.ip6) for e in seg.ends}
            for seg in assign(segments, t._nodes, chosen, chosen6)}


# -- planning ---------------------------------------------------------------------


def test_routers_and_the_host_take_the_first_ipv6_address_too() -> None:
    t = described("a = t.node('a'); r = t.router('r'); sw = t.switch('lan')\n"
                  "t.connect(a, sw); t.connect(r, sw); t.connect(a, HOST)")
    got = planned6(t, {"lan": "10.0.0.0/24", "link1": "10.0.1.0/30"},
                   {"lan": "fd00:1::/64", "link1": "fd00:2::/64"})
    assert got == {"lan": {"a": ("10.0.0.2", "fd00:1::2"), "r": ("10.0.0.1", "fd00:1::1")},
                   "link1": {"a": ("10.0.1.2", "fd00:2::2"),
                             "host": ("10.0.1.1", "fd00:2::1")}}


def test_explicit_ipv6_subnets_and_addresses_are_kept() -> None:
    t = described("a, b = t.node('a'), t.node('b')\n"
                  "sw = t.switch('lan', subnet6='fd00:aa::/64')\n"
                  "t.connect(a, sw, ip6='fd00:aa::1'); t.connect(b, sw)")
    got = planned6(t, {"lan": "10.0.0.0/24"}, {})
    assert got == {"lan": {"a": ("10.0.0.1", "fd00:aa::1"), "b": ("10.0.0.2", "fd00:aa::2")}}


def test_without_ipv6_no_segment_gets_an_ipv6_address() -> None:
    t = described("a, b = t.node('a'), t.node('b'); t.connect(a, b)", ipv6=False)
    assert planned6(t, {"link0": "10.0.0.0/30"}, {}) == {
        "link0": {"a": ("10.0.0.1", None), "b": ("10.0.0.2", None)}}


@pytest.mark.parametrize(("build", "error", "names"), [
    # an IPv6 subnet too small for its members
    ("a, b, c = t.node('a'), t.node('b'), t.node('c')\n"
     "sw = t.switch('s', subnet6='fd00:1::/127')\n"
     "t.connect(a, sw); t.connect(b, sw); t.connect(c, sw)", SubnetTooSmallError, "/126"),
    # an address outside its segment's subnet, and one given twice
    ("a = t.node('a'); sw = t.switch('s', subnet6='fd00:1::/64'); "
     "t.connect(a, sw, ip6='fd00:2::5')", InvalidAddressError, "fd00:2::5"),
    ("a, b = t.node('a'), t.node('b'); sw = t.switch('s', subnet6='fd00:1::/64')\n"
     "t.connect(a, sw, ip6='fd00:1::5'); t.connect(b, sw, ip6='fd00:1::5')",
     InvalidAddressError, "given twice"),
    # the Subnet-Router anycast address (all zeros) is no host's
    ("a = t.node('a'); sw = t.switch('s', subnet6='fd00:1::/64'); "
     "t.connect(a, sw, ip6='fd00:1::')", InvalidAddressError, "fd00:1::"),
    # overlapping IPv6 subnets that meet in one node
    ("a, b = t.node('a'), t.node('b')\n"
     "t.connect(a, b, subnet6='fd00:1::/64'); t.connect(a, HOST, subnet6='fd00:1::/80')",
     InvalidAddressError, "overlap"),
    # public IPv6 space on a link to the host, multicast space anywhere
    ("a = t.node('a'); t.connect(a, HOST, subnet6='2a00:1450::/64')",
     InvalidAddressError, "2a00:1450::/64"),
    ("a = t.node('a'); sw = t.switch('s', subnet6='ff02::/64'); t.connect(a, sw)",
     InvalidAddressError, "multicast"),
])
def test_refused_ipv6_descriptions_name_the_value(build: str, error: type[Exception],
                                                  names: str) -> None:
    with pytest.raises(error, match=names):
        planned6(described(build), {"s": "10.0.0.0/24", "link0": "10.9.0.0/24",
                                    "link1": "10.8.0.0/24"}, {})


def test_ipv6_settings_need_ipv6_true() -> None:
    t = described("a, b = t.node('a'), t.node('b'); t.connect(a, b, subnet6='fd00:1::/64')",
                  ipv6=False)
    with pytest.raises(InvalidTopologyError, match="ipv6=True") as refused:
        check_description(list(t._segments.values()), t._nodes, ipv6=False)
    assert "fd00:1::/64" in str(refused.value)


@pytest.mark.parametrize(("call", "names"), [
    # IPv4 where IPv6 is asked for, and the reverse
    ("t.connect(t.node('a'), 'host', subnet6='10.0.0.0/24')", "'10.0.0.0/24' is an IPv4"),
    ("t.connect(t.node('a'), 'host', ip6='10.0.0.2')", "'10.0.0.2' is an IPv4"),
    ("t.connect(t.node('a'), 'host', subnet='fd00:1::/64')", "'fd00:1::/64' is an IPv6"),
    ("t.connect(t.node('a'), 'host', ip='fd00:1::2')", "'fd00:1::2' is an IPv6"),
    ("t.stub(t.node('a'), ip6='fe80::1')", "link-local"),
    ("t.switch('s', subnet6='fd00:1::')", "prefix length is missing"),
    ("t.route(t.node('a'), 'default', via='::1')", "loopback"),
])
def test_addresses_of_the_wrong_family_name_the_value(call: str, names: str) -> None:
    with pytest.raises(InvalidAddressError, match=names.replace("(", r"\(")):
        described(call)


def test_parse_ipv6() -> None:
    assert str(parse_ip6(" fd00:0:0::2 ")) == "fd00::2"
    assert str(parse_subnet6("fd00:1::/64", hosts_needed=3)) == "fd00:1::/64"
    assert parse_subnet6("fd00:1::/126", hosts_needed=3).prefixlen == 126
    with pytest.raises(SubnetTooSmallError, match="room for 3"):
        parse_subnet6("fd00:1::/126", hosts_needed=4)
    with pytest.raises(InvalidAddressError, match="IPv6"):
        parse_ip("fd00::2")
    with pytest.raises(InvalidAddressError, match="IPv6"):
        parse_subnet("fd00::/64")
    check_segment_subnet6(ipaddress.IPv6Network("2001:db8::/64"), touches_host=True)


def test_ipv6_missing_from_the_kernel_is_said(tmp_path: object) -> None:
    require_ipv6()  # this machine has IPv6
    with pytest.raises(IPv6UnavailableError, match=r"ipv6\.disable=1") as refused:
        require_ipv6(f"{tmp_path}/no-such-dir")
    assert "no-such-dir" in str(refused.value)


def test_ipv6_must_be_a_boolean() -> None:
    with pytest.raises(InvalidTopologyError, match="'yes'"):
        TopologyBuilder(ipv6="yes")  # type: ignore[arg-type]


# -- allocation --------------------------------------------------------------------


def test_automatic_ipv6_subnets_are_unique_local_64s_clear_of_what_is_blocked() -> None:
    assert DEFAULT_POOL6.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    host = [ipaddress.ip_network("fd00::/64"), ipaddress.ip_network("fe80::/64"),
            ipaddress.ip_network(f"{DEFAULT_POOL6[0]}/64")]  # a host route in our pool
    other_topology = ipaddress.ip_network(f"{DEFAULT_POOL6[0] + 2**64}/64")
    blocked = [*host, other_topology, ipaddress.ip_network("10.64.0.0/24")]
    chosen = _allocate(DEFAULT_POOL6, [64, 64], blocked, reserved=1)
    assert [c.prefixlen for c in chosen] == [64, 64]
    assert len(set(chosen)) == 2
    for net in chosen:
        assert net.subnet_of(DEFAULT_POOL6)  # type: ignore[arg-type]
        assert not any(net.overlaps(b) for b in [*host, other_topology])


def test_an_exhausted_ipv6_pool_says_so() -> None:
    pool = ipaddress.IPv6Network("fd00:9::/63")
    with pytest.raises(SubnetExhaustedError, match="/64"):
        _allocate(pool, [64, 64, 64], [], reserved=0)


# -- names -------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["db", "web-1", "a.b.example", "sad_lederberg", "x" * 63,
                                  "n1"])
def test_valid_host_names(good: str) -> None:
    assert check_hostname(good) == good


@pytest.mark.parametrize(("bad", "says"), [
    ("my node", "not a valid host name"), ("-db", "not a valid host name"),
    ("db-", "not a valid host name"), ("nœud", "not a valid host name"),
    ("a..b", "not a valid host name"), ("x" * 64, "not a valid host name"),
    ("10.0.0.2", "all digits"), ("", "non-empty"),
])
def test_invalid_host_names_name_the_value(bad: str, says: str) -> None:
    with pytest.raises(HostnameError, match=says) as refused:
        check_hostname(bad)
    assert repr(bad) in str(refused.value) or bad == ""


@pytest.mark.parametrize(("call", "error", "names"), [
    ("t.node('my node')", HostnameError, "'my node'"),
    ("t.node('db', aliases=['data base'])", HostnameError, "'data base'"),
    ("t.node('db', aliases=['db'])", InvalidTopologyError, "given twice"),
    ("t.node('db', aliases=['host'])", InvalidTopologyError, "'host'"),
    ("t.node('db', aliases=['pg', 'PG'])", InvalidTopologyError, "'PG'"),
    ("t.node('db', aliases=5)", InvalidTopologyError, "5"),
])
def test_bad_names_and_aliases_name_the_value(call: str, error: type[Exception],
                                              names: str) -> None:
    with pytest.raises(error, match=names):
        described(call)


def test_a_name_two_nodes_would_share_is_refused() -> None:
    t = described("t.node('db', aliases=['pg']); t.node('web', aliases=['PG'])")
    with pytest.raises(InvalidTopologyError, match=r"alias 'PG' of node 'web'.*'db'"):
        check_names(t._nodes)
    t = described("t.node('db'); t.router('r', aliases=['db2']); t.node('db2')")
    with pytest.raises(InvalidTopologyError, match="'db2'"):
        check_names(t._nodes)


class _Topo:
    """What `names.merged` reads of a topology: its session's alias, uid and label."""

    def __init__(self, uid: str) -> None:
        self.uid, self.label = uid, "t"
        self.session = type("S", (), {"alias": "pytest-netns:abc:1"})()


def test_a_topologys_names_replace_only_its_own_block() -> None:
    one, two = _Topo("abc.1"), _Topo("abc.2")
    docker = "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
    first = merged(docker, one, "# pytest-netns:abc:1 abc.1 begin (t)\n10.0.0.2\tdb\n"
                                "# pytest-netns:abc:1 abc.1 end (t)\n")  # type: ignore[arg-type]
    both = merged(first, two, "# pytest-netns:abc:1 abc.2 begin (t)\nfd00::2\tweb\n"
                              "# pytest-netns:abc:1 abc.2 end (t)\n")  # type: ignore[arg-type]
    assert "10.0.0.2\tdb" in both and "fd00::2\tweb" in both
    without_one = merged(both, one, None)  # type: ignore[arg-type]
    assert "db" not in without_one and "fd00::2\tweb" in without_one
    assert merged(without_one, two, None) == docker  # type: ignore[arg-type]
