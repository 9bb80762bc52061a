"""Property tests: whatever a user passes, a working topology or a NetnsError.

Hypothesis feeds generated addresses, prefix lengths, subnets and interface
names (valid and not, strings and other types) to the factories on the
namespace backend. Each example must end in either a topology that carries
what was asked for (then closed) or a NetnsError; never another exception,
and never a leftover of this session.

Subnets given to the factories that link to the host become routes in the
host's root namespace, which other sessions on this machine share. So the
valid, private subnets generated for those are /24 or longer; broad ones
would briefly shadow the pool every other session allocates from.
"""

from __future__ import annotations

import ipaddress
import socket
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_errors import assert_nothing_left, leftovers

from pytest_netns import NetnsError
from pytest_netns.ownership import Session

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def _namespace_only(namespace_only: None) -> None:
    """Bare namespaces only: fast, and validation does not depend on the backend."""


_OMIT = object()  # leave the argument out, so its default is exercised too


def arg(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Left out, valid, or not: mostly valid, so that a good share of the examples
    build while the rest exercise validation."""
    branches = {"omit": st.just(_OMIT), "valid": valid, "invalid": invalid}
    return st.sampled_from(("omit", "valid", "valid", "valid", "valid", "invalid")).flatmap(
        branches.__getitem__)


# -- strategies -----------------------------------------------------------------

octet = st.one_of(st.integers(0, 255), st.integers(256, 999), st.integers(-9, -1))
dotted = st.builds(lambda *o: ".".join(map(str, o)), octet, octet, octet, octet)
junk = st.one_of(
    st.text(alphabet="0123456789./: -abx", max_size=20),
    st.sampled_from(["banana", "", " ", "10.0.0", "1.2.3.4.5", "::1", "0x0a000001"]),
    st.none(), st.integers(-5, 2**33), st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=2),
)
# anything at all: valid or not, special-purpose or public space included
bad_addresses = st.one_of(st.ip_addresses(v=4).map(str), dotted, junk)
bad_subnets = st.one_of(
    st.builds(lambda a, p: f"{a}/{p}", st.one_of(st.ip_addresses(v=4).map(str), dotted),
              st.integers(-2, 40)),
    bad_addresses,
)
bad_ifnames = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-_.:/ %@\n\té", max_size=20),
    st.sampled_from(["lo", "all", "default", ".", "..", "x" * 16, "eth1\n", ""]),
    st.integers(0, 9),
)
good_ifnames = st.from_regex(r"[a-z][a-z0-9_.-]{0,14}", fullmatch=True).filter(
    lambda n: n not in ("lo", "all", "default"))
# names created in the root namespace stay clear of every real interface's
host_ifnames = st.from_regex(r"pnp[a-z0-9]{1,10}", fullmatch=True)
kinds = arg(st.sampled_from([None, "ifb", "veth"]), st.sampled_from(["dummy", "bogus", "", 5]))
SPACES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "1.0.0.0/8",
          "203.0.113.0/24"]


@st.composite
def networks(draw: st.DrawFn, shortest: int, longest: int,
             spaces: tuple[str, ...] = tuple(SPACES)) -> ipaddress.IPv4Network:
    space = ipaddress.IPv4Network(draw(st.sampled_from(spaces)))
    prefixlen = draw(st.integers(max(shortest, space.prefixlen), longest))
    addr = draw(st.ip_addresses(v=4, network=space))
    return ipaddress.IPv4Network(f"{addr}/{prefixlen}", strict=False)


def hosts_in(net: ipaddress.IPv4Network) -> st.SearchStrategy[str]:
    return st.integers(1, net.num_addresses - 2).map(lambda i: str(net.network_address + i))


@st.composite
def isolated_args(draw: st.DrawFn) -> dict[str, Any]:
    net = draw(networks(8, 30))
    form = draw(st.sampled_from(["ip+prefixlen", "cidr"]))
    host = hosts_in(net)
    if form == "cidr":
        ip = draw(arg(host.map(lambda h: f"{h}/{net.prefixlen}"), bad_subnets))
        prefixlen = _OMIT
    else:
        ip = draw(arg(host, bad_addresses))
        prefixlen = draw(arg(st.just(net.prefixlen), st.one_of(st.integers(-2, 40), junk)))
    return {"ip": ip, "prefixlen": prefixlen, "iface": draw(arg(good_ifnames, bad_ifnames)),
            "kind": draw(kinds)}


@st.composite
def bridged_args(draw: st.DrawFn) -> dict[str, Any]:
    net = draw(networks(8, 30))
    subnet = draw(arg(st.just(str(net)), bad_subnets))
    ips = hosts_in(net) if subnet == str(net) else st.just(_OMIT)
    return {"subnet": subnet, "a_ip": draw(arg(ips, bad_addresses)),
            "b_ip": draw(arg(ips, bad_addresses)), "iface": draw(arg(good_ifnames, bad_ifnames))}


# Host-side subnets: /24 or longer in private space, for the module docstring's reason.
HOST_SPACES = ("10.0.0.0/8", "192.168.0.0/16")


@st.composite
def host_only_args(draw: st.DrawFn) -> dict[str, Any]:
    net = draw(networks(24, 30, HOST_SPACES))
    subnet = draw(arg(st.just(str(net)), bad_subnets.filter(host_safe)))
    ips = hosts_in(net) if subnet == str(net) else st.just(_OMIT)
    return {"subnet": subnet, "node_ip": draw(arg(ips, bad_addresses)),
            "host_ip": draw(arg(ips, bad_addresses)),
            "iface": draw(arg(good_ifnames, bad_ifnames)),
            "host_iface": draw(arg(host_ifnames, bad_ifnames))}


@st.composite
def nat_args(draw: st.DrawFn) -> dict[str, Any]:
    inside, upstream = draw(networks(8, 30)), draw(networks(24, 30, HOST_SPACES))
    subnet = draw(arg(st.just(str(inside)), bad_subnets))
    ips = hosts_in(inside) if subnet == str(inside) else st.just(_OMIT)
    return {"subnet": subnet,
            "upstream_subnet": draw(arg(st.just(str(upstream)), bad_subnets.filter(host_safe))),
            "node_ip": draw(arg(ips, bad_addresses)),
            "iface": draw(arg(good_ifnames, bad_ifnames))}


def _network(value: object) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(str(value).strip(), strict=False)
    except ValueError:
        return None


def host_safe(subnet: object) -> bool:
    """False for a valid, private subnet broader than /24 (see the module docstring)."""
    net = _network(subnet)
    return net is None or net.is_global or net.prefixlen >= 24 or "/" not in str(subnet)


# -- the property ----------------------------------------------------------------


def outcome(session: Session, build: Any, **kw: Any) -> Any:
    """Build with `kw`; a NetnsError is a fine outcome, any other exception is a
    bug; either way nothing of the session may be left once it is closed."""
    before = leftovers(session)
    kw = {k: v for k, v in kw.items() if v is not _OMIT}
    built = None
    try:
        built = build(verify=False, **kw)
    except NetnsError as exc:
        event(f"refused: {type(exc).__name__}")
    else:
        event("built")
    try:
        if built is not None:
            carries_what_was_asked(built, kw)
    finally:
        if built is not None:
            built.close()
        assert_nothing_left(session, before)
    return built


def carries_what_was_asked(built: Any, kw: dict[str, Any]) -> None:
    """The kernel holds every address the topology reports, with the given values."""
    nodes = [getattr(built, n) for n in ("node", "a", "b") if hasattr(built, n)]
    for node in nodes:
        have = {(a.address, a.prefixlen) for a in node.netlink.addresses(socket.AF_INET)}
        for iface in node.interfaces:
            assert (iface.ip, iface.prefixlen) in have, (node, iface, have)
    if kw.get("iface") is not None and hasattr(built, "iface"):
        assert built.iface == kw["iface"]
    for key in ("ip", "node_ip", "host_ip", "a_ip", "b_ip"):  # None: chosen automatically
        if kw.get(key) is not None and hasattr(built, key):
            assert getattr(built, key) == str(kw[key]).split("/")[0].strip()
    if kw.get("subnet") is not None and hasattr(built, "subnet"):
        assert built.subnet == str(ipaddress.IPv4Network(str(kw["subnet"]).strip(),
                                                         strict=False))


@SETTINGS
@given(kw=isolated_args())
def test_isolated_container(
    make_isolated_container: Any, netns_session: Session, kw: dict[str, Any]
) -> None:
    outcome(netns_session, make_isolated_container, **kw)


@SETTINGS
@given(kw=bridged_args())
def test_bridged_pair(make_bridged_pair: Any, netns_session: Session, kw: dict[str, Any]) -> None:
    outcome(netns_session, make_bridged_pair, **kw)


@SETTINGS
@given(kw=host_only_args())
def test_host_only_link(
    make_host_only_link: Any, netns_session: Session, kw: dict[str, Any]
) -> None:
    outcome(netns_session, make_host_only_link, **kw)


@settings(SETTINGS, max_examples=30)
@given(kw=nat_args())
def test_nat_uplink(make_nat_uplink: Any, netns_session: Session, kw: dict[str, Any]) -> None:
    outcome(netns_session, make_nat_uplink, **kw)
