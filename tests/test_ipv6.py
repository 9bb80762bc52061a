"""IPv6 dual stack: every recipe and make_topology with ipv6=True, on both backends.

Checked with tools that are not pytest-netns: busybox inside the nodes
(`ip -6`, `ping -6`, `nc` and `wget` over IPv6), iproute2 and tcpdump on
the host, and plain sockets in the test process. Then the probes over IPv6
(ICMPv6, TCP, UDP, the matrix) and the egress guard, which must refuse an
IPv6 destination that routes off the machine and send nothing; and a
topology without ipv6=True, which has no IPv6 at all, on both backends.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from netcheck import (
    addresses6_seen_inside,
    busybox,
    host_pings,
    iproute_json,
    pings,
    routes_seen_inside,
    sysctl_inside,
)
from test_fixtures import fetch, start_httpd, talk_to_test_server

from pytest_netns import (
    EgressError,
    InvalidAddressError,
    InvalidProbeError,
    InvalidTopologyError,
    SubnetOverlapError,
    assert_unreachable,
    ping,
    probe_tcp,
    probe_udp,
    reachability_matrix,
    wait_for_tcp,
)
from pytest_netns.ownership import current_session
from pytest_netns.topology.subnets import live_reservations

ULA = ipaddress.IPv6Network("fd00::/8")


def assert_global_address(node: Any, ifname: str, address: str, prefixlen: int) -> None:
    """busybox inside the node sees `address` on `ifname`, usable now (no DAD pending)."""
    seen = addresses6_seen_inside(node)
    lines = [ln for name, found in seen.items() if name.split("@")[0] == ifname
             for ln in found if ln.startswith(f"{address}/{prefixlen} ")]
    assert lines, seen
    assert "tentative" not in lines[0], lines  # duplicate address detection is skipped
    assert "scope global" in lines[0], lines


def nc_hello(server: Any, client: Any, address: str, port: int = 7006) -> str:
    """busybox nc: a one-shot server in `server` says hello to `client`, over `address`."""
    server.spawn(["/bin/busybox" if server.container is not None else "busybox", "nc", "-l",
                  "-p", str(port), "-e", "echo", f"hello-from-{server.name}"])
    out = ""
    for _ in range(50):  # the server may not listen yet
        code, out = busybox(client, "nc", "-w", "2", address, str(port))
        if code == 0 and out.strip():
            return out.strip()
        time.sleep(0.1)
    raise AssertionError(f"nc {address} {port} from {client.name}: {out!r}")


@pytest.fixture
def attached(docker_only: None) -> Iterator[Any]:
    """A running container this test owns (no pytest-netns labels), for attaching."""
    import uuid

    from pytest_netns.nodes.engine import docker_client, remove_container
    from pytest_netns.nodes.images import DEFAULT_COMMAND, DEFAULT_IMAGE, ensure_image

    client = docker_client()
    ensure_image(client, DEFAULT_IMAGE)
    ctr = client.containers.run(DEFAULT_IMAGE, DEFAULT_COMMAND, detach=True,
                                network_mode="none", init=True,
                                name=f"v6-attached-{uuid.uuid4().hex[:8]}")
    ctr.reload()
    try:
        yield ctr
    finally:
        remove_container(ctr)


# -- the four recipes ------------------------------------------------------------


def test_bridged_pair_is_dual_stack(make_bridged_pair: Any, tmp_path: Any) -> None:
    pair = make_bridged_pair(ipv6=True)
    net6 = ipaddress.IPv6Network(pair.subnet6)
    assert net6.prefixlen == 64 and net6.subnet_of(ULA)
    assert {pair.a_ip6, pair.b_ip6} <= {str(h) for h in (net6[1], net6[2])}
    assert (pair.a.ip6, pair.b.ip6) == (pair.a_ip6, pair.b_ip6)
    assert_global_address(pair.a, "eth1", pair.a_ip6, 64)
    assert_global_address(pair.b, "eth1", pair.b_ip6, 64)
    assert pings(pair.a, pair.b_ip6) and pings(pair.b, pair.a_ip6)
    assert pings(pair.a, pair.b_ip) and pings(pair.b, pair.a_ip)  # IPv4 as before
    assert nc_hello(pair.b, pair.a, pair.b_ip6) == "hello-from-b"
    start_httpd(pair.b, tmp_path, "hello-over-ipv6")
    assert fetch(pair.a, f"http://[{pair.b_ip6}]:8080/index.html").strip() == "hello-over-ipv6"


def test_host_only_link_is_dual_stack(make_host_only_link: Any, tmp_path: Any) -> None:
    link = make_host_only_link(ipv6=True)
    net6 = ipaddress.IPv6Network(link.subnet6)
    assert net6.subnet_of(ULA)
    assert {ipaddress.IPv6Address(link.node_ip6), ipaddress.IPv6Address(link.host_ip6)} <= set(
        net6.hosts() if net6.prefixlen > 120 else [net6[1], net6[2]])
    assert_global_address(link.node, "eth1", link.node_ip6, 64)
    (host_side,) = iproute_json(None, "-6", "addr", "show", "dev", link.host_iface)
    assert f"{link.host_ip6}/64" in [f"{a['local']}/{a['prefixlen']}"
                                     for a in host_side["addr_info"]]
    routes = iproute_json(None, "-6", "route", "show", "dev", link.host_iface)
    assert link.subnet6 in [r["dst"] for r in routes]
    assert host_pings(link.node_ip6) and pings(link.node, link.host_ip6)
    # the test process talks to the node over IPv6, and the node to the test process
    start_httpd(link.node, tmp_path, "hello-from-node")
    url = f"http://[{link.node_ip6}]:8080/index.html"
    for _ in range(50):
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                assert resp.read().decode().strip() == "hello-from-node"
                break
        except OSError:
            time.sleep(0.1)
    else:
        raise AssertionError(f"no answer from {url}")
    out, seen = talk_to_test_server(link.node, link.host_ip6, "ping6")
    assert "pong" in out and seen == {"peer": link.node_ip6, "data": b"ping6\n"}


def test_host_only_link_ipv6_subnet_is_clear_of_the_hosts_routes(
    make_host_only_link: Any,
) -> None:
    link = make_host_only_link(ipv6=True)
    ours = ipaddress.IPv6Network(link.subnet6)
    for route in iproute_json(None, "-6", "route", "show", "table", "all"):
        dst = route.get("dst", "")
        if route.get("dev") == link.host_iface or dst in ("default", ""):
            continue
        other = ipaddress.ip_network(dst if "/" in dst else f"{dst}/128", strict=False)
        if str(route.get("dev", "")).startswith("pn"):  # other live topologies' host links
            continue
        assert not ours.overlaps(other), route


def test_closing_takes_the_hosts_ipv6_route_away_at_once(make_host_only_link: Any) -> None:
    link = make_host_only_link(ipv6=True)
    routes = [r["dst"] for r in iproute_json(None, "-6", "route", "show")]
    assert link.subnet6 in routes
    link.close()  # the veth itself is deleted later, by the janitor
    assert link.subnet6 not in [r["dst"] for r in iproute_json(None, "-6", "route", "show")]
    addresses = [a["local"] for ln in iproute_json(None, "-6", "addr", "show")
                 for a in ln.get("addr_info", [])]
    assert link.host_ip6 not in addresses


def test_nat_uplink_masquerades_ipv6(make_nat_uplink: Any) -> None:
    nat = make_nat_uplink(ipv6=True)
    router6 = nat.router.interface("eth1").ip6
    assert [r for r in routes_seen_inside(nat.node, 6) if r.startswith(f"default via {router6}")]
    _, seen = talk_to_test_server(nat.node, nat.upstream_ip6, "hello6")
    assert seen == {"peer": nat.public_ip6, "data": b"hello6\n"}
    assert nat.public_ip6 != nat.node_ip6
    ruleset = nat.router.exec(["nft", "list", "ruleset"])[1]
    assert f"table ip6 {current_session().nft_table}" in ruleset
    assert sysctl_inside(nat.router, "net.ipv6.conf.all.forwarding") == "1"
    # the router routes no IPv6 off the machine
    routes = iproute_json(nat.router.netns, "-6", "route", "show", "table", "all")
    assert not [r for r in routes if r.get("dst") == "default"]


def test_isolated_container_gets_an_ipv6_address_and_no_route(
    make_isolated_container: Any,
) -> None:
    iso = make_isolated_container(ipv6=True)
    assert iso.prefixlen6 == 64 and iso.ip6 is not None
    assert ipaddress.IPv6Address(iso.ip6) in ULA
    assert_global_address(iso.node, "eth1", iso.ip6, 64)
    assert not [r for r in routes_seen_inside(iso.node, 6) if r.startswith("default")]
    given = make_isolated_container(ipv6=True, iface="guest6", ip6="fd00:77::10/64")
    assert (given.ip6, given.prefixlen6) == ("fd00:77::10", 64)
    assert_global_address(given.node, "guest6", "fd00:77::10", 64)


def test_make_topology_routes_ipv6_between_subnets(make_topology: Any) -> None:
    t = make_topology(ipv6=True)
    a, b, r = t.node("a"), t.node("b"), t.router("r")
    left, right = t.switch("left"), t.switch("right", subnet6="fd00:beef:2::/64")
    t.connect(a, left)
    t.connect(r, left)
    t.connect(r, right)
    t.connect(b, right)
    net = t.build()
    assert net.segments["right"].subnet6 == ipaddress.IPv6Network("fd00:beef:2::/64")
    assert net.segments["right"].ip6_of("r") == "fd00:beef:2::1"  # the router takes ::1
    b6 = net["b"].ip6
    assert b6 == "fd00:beef:2::2"
    assert pings(net["a"], b6) and pings(net["b"], net["a"].ip6)
    assert nc_hello(net["b"], net["a"], b6) == "hello-from-b"
    inside = iproute_json(net["a"].netns, "-6", "route", "show")
    assert [r for r in inside if r.get("dst") == "default"
            and r.get("gateway") == net.segments["left"].ip6_of("r")]


# -- what IPv6 on and off means in a node ------------------------------------------


def test_no_router_advertisements_are_accepted_anywhere(make_nat_uplink: Any) -> None:
    nat = make_nat_uplink(ipv6=True)
    for node in (nat.node, nat.router):
        assert sysctl_inside(node, "net.ipv6.conf.eth1.accept_ra") == "0"
        assert sysctl_inside(node, "net.ipv6.conf.default.accept_ra") == "0"
    with open(f"/proc/sys/net/ipv6/conf/{nat.upstream_iface}/accept_ra") as f:
        assert f.read().strip() == "0"  # the host's end of the uplink


def test_without_ipv6_nodes_have_no_ipv6_on_either_backend(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair()
    assert (pair.a_ip6, pair.subnet6, pair.a.ip6) == (None, None, None)
    for node in (pair.a, pair.b):
        assert sysctl_inside(node, "net.ipv6.conf.all.disable_ipv6") == "1"
        assert sysctl_inside(node, "net.ipv6.conf.eth1.disable_ipv6") == "1"
        assert addresses6_seen_inside(node) == {}  # not even link-local: no MLD, no RS


def test_addresses_work_the_moment_build_returns(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair(ipv6=True, verify=False)
    for node in (pair.a, pair.b):  # duplicate address detection would hold them for ~1-2 s
        seen = iproute_json(node.netns, "-6", "addr")
        assert not [a for ln in seen for a in ln["addr_info"] if a.get("tentative")], seen
    code, out = busybox(pair.a, "ping", "-6", "-c", "1", "-W", "5", pair.b_ip6)
    assert code == 0, out  # the very first packet


def test_two_ipv6_topologies_get_their_own_reserved_64(make_bridged_pair: Any) -> None:
    one, two = make_bridged_pair(ipv6=True), make_bridged_pair(ipv6=True)
    assert one.subnet6 != two.subnet6
    held = {str(net) for net in live_reservations()}
    assert {one.subnet6, two.subnet6} <= held
    one.close()
    from pytest_netns.kernel.janitor import janitor

    janitor().drain()
    assert one.subnet6 not in {str(net) for net in live_reservations()}


def test_an_attached_container_gets_ipv6_and_has_it_taken_back(
    make_host_only_link: Any, attached: Any,
) -> None:
    pid = int(attached.attrs["State"]["Pid"])
    ns = f"/proc/{pid}/ns/net"

    def disabled() -> str:
        out = subprocess.run(["nsenter", f"--net={ns}", "cat",
                              "/proc/sys/net/ipv6/conf/all/disable_ipv6"],
                             capture_output=True, text=True, check=True).stdout
        return out.strip()

    assert disabled() == "1"  # as Docker starts every container
    link = make_host_only_link(ipv6=True, container=attached, iface="eth6")
    assert disabled() == "0"
    assert pings(link.node, link.host_ip6)
    link.close()
    assert disabled() == "1"


# -- probes over IPv6 ----------------------------------------------------------------


def test_probes_speak_icmpv6_tcp_and_udp(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair(ipv6=True)
    echo = ping(pair.a, pair.b, family=6)
    assert echo.ok and echo.dst == pair.b_ip6, echo
    assert ping(pair.a, pair.b_ip6).ok  # an IPv6 address needs no family=
    assert probe_tcp(pair.a, pair.b, 8080, family=6).state == "closed"
    assert probe_udp(pair.a, pair.b, 5353, family=6).state == "closed"
    start_nc = ["/bin/busybox" if pair.b.container is not None else "busybox", "nc", "-ll",
                "-p", "8081", "-e", "echo", "hi"]
    pair.b.spawn(start_nc)
    assert wait_for_tcp(pair.a, pair.b, 8081, family=6).state == "open"
    # an address of the /64 that nobody has: neighbour discovery fails
    nobody = str(ipaddress.IPv6Network(pair.subnet6)[99])
    assert not ping(pair.a, nobody, timeout=0.5).ok
    matrix = reachability_matrix([pair.a, pair.b], family=6)
    assert matrix.reachable(pair.a, pair.b) and matrix.reachable(pair.b, pair.a)
    assert matrix[(pair.a, pair.b)].dst == pair.b_ip6


def test_icmpv6_errors_name_the_hop_that_sent_them(make_nat_uplink: Any) -> None:
    nat = make_nat_uplink(ipv6=True)
    router6 = nat.router.interface("eth1").ip6
    # beyond the router, which routes no IPv6 off the machine: it answers, nothing leaves
    beyond = ping(nat.node, "fd00:dead:beef::1")
    assert beyond.state == "unreachable", beyond
    assert f"ICMPv6 no route to destination from {router6}" in beyond.detail
    closed = probe_udp(nat.node, nat.router, 9, family=6)
    assert closed.state == "closed" and router6 in closed.detail, closed
    assert probe_tcp(nat.node, nat.router, 9, family=6).state == "closed"


def test_probes_from_the_host_over_ipv6(make_host_only_link: Any) -> None:
    link = make_host_only_link(ipv6=True)
    assert ping("host", link.node, family=6).ok
    assert ping(link.node, "host", family=6).dst == link.host_ip6
    assert probe_tcp("host", link.node_ip6, 9).state == "closed"


def test_family_mismatches_name_the_value(make_bridged_pair: Any) -> None:
    v4 = make_bridged_pair()
    with pytest.raises(InvalidProbeError, match="no IPv6 address"):
        ping(v4.a, v4.b, family=6)
    with pytest.raises(InvalidAddressError, match=r"'10\.1\.2\.3'"):
        ping(v4.a, "10.1.2.3", family=6)
    with pytest.raises(InvalidProbeError, match="family 5"):
        ping(v4.a, v4.b, family=5)


@pytest.fixture
def eth0_capture() -> Iterator[tuple[str, Any]]:
    """tcpdump on eth0 for one IPv6 address that no topology owns (and that routes via
    the host's default IPv6 route); yields the address and a function that stops the
    capture and returns its summary."""
    dst = "fd00:dead:beef::1"  # routed via the host's default route, out of eth0
    route = subprocess.run(["ip", "-6", "route", "get", dst], capture_output=True, text=True,
                           check=False).stdout
    if "dev eth0" not in route or shutil.which("tcpdump") is None:
        pytest.skip("needs an IPv6 default route via eth0, and tcpdump")
    capture = subprocess.Popen(
        ["tcpdump", "-i", "eth0", "-n", "-p", "-U", "-w", "/dev/null", f"ip6 host {dst}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert capture.stderr is not None
    first = capture.stderr.readline()  # once this is printed, tcpdump is capturing
    assert "listening on eth0" in first, first
    stopped: list[str] = []

    def stop() -> str:
        if not stopped:
            os.kill(capture.pid, 15)  # the one process this fixture started
            _, err = capture.communicate(timeout=10)
            stopped.append(first + err)
        return stopped[0]

    try:
        yield dst, stop
    finally:
        stop()


def test_egress_guard_refuses_ipv6_routed_off_the_machine(
    eth0_capture: tuple[str, Any], make_host_only_link: Any,
) -> None:
    dst, stop = eth0_capture
    make_host_only_link(ipv6=True)  # a topology is up: its links do not open eth0
    with pytest.raises(EgressError, match="'eth0'") as refused:
        ping("host", dst)
    assert "nothing was sent" in str(refused.value)
    with pytest.raises(EgressError, match="eth0"):
        probe_tcp("host", dst, 80)
    with pytest.raises(EgressError, match="eth0"):
        probe_udp("host", dst, 53)
    with pytest.raises(EgressError):
        assert_unreachable("host", dst)
    assert "0 packets captured" in stop()


# -- bad input that needs the host -----------------------------------------------------


def test_an_ipv6_subnet_overlapping_the_hosts_is_refused(make_bridged_pair: Any) -> None:
    host6 = [r["dst"] for r in iproute_json(None, "-6", "route", "show")
             if r.get("dev") == "eth0" and r["dst"] != "default"
             and not r["dst"].startswith("fe80")]
    if not host6:
        pytest.skip("the host routes no IPv6 prefix on eth0")
    with pytest.raises(SubnetOverlapError, match=host6[0]):
        make_bridged_pair(ipv6=True, subnet6=host6[0])


def test_ipv6_addresses_on_a_topology_without_ipv6_say_how(make_bridged_pair: Any) -> None:
    with pytest.raises(InvalidTopologyError, match="ipv6=True"):
        make_bridged_pair(subnet6="fd00:1::/64")


# -- captures and reports ---------------------------------------------------------------


def test_captures_and_reports_show_ipv6(make_bridged_pair: Any, tmp_path: Any) -> None:
    from pytest_netns.report.capture import start_capture
    from pytest_netns.report.describe import describe_topology
    from pytest_netns.report.diagram import reach_edges, to_dot

    pair = make_bridged_pair(ipv6=True)
    cap = start_capture(pair.topology, str(tmp_path), "v6")
    assert pings(pair.a, pair.b_ip6)
    cap.stop()
    if shutil.which("tcpdump"):
        text = subprocess.run(["tcpdump", "-nr", str(tmp_path / "v6-switch.pcap")],
                              capture_output=True, text=True, check=True).stdout
        assert f"IP6 {pair.a_ip6} > {pair.b_ip6}: ICMP6, echo request" in text, text
    report = "\n".join(describe_topology(pair.topology))
    assert f"{pair.a_ip6}/64" in report and pair.subnet6 in report
    result = ping(pair.a, pair.b, family=6)
    edges, _ = reach_edges([pair.topology], [result], [])
    dot = to_dot([pair.topology], edges, {})
    assert pair.b_ip6 in dot and "icmp reply" in dot
