"""The four topologies of the article, checked with tools that are not pytest-netns.

Each test runs on both backends (see conftest.py). Checks go through busybox
inside the node and iproute2 on the host (tests/netcheck.py), both
directions where a path exists, and a real TCP service.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import pytest
from netcheck import (
    busybox,
    forwarding_sysctls,
    host_firewall,
    host_pings,
    iproute_json,
    links_seen_inside,
    pings,
    routes_seen_inside,
)

from pytest_netns import BridgedPair, HostOnlyLink, IsolatedContainer, NatUplink
from pytest_netns.kernel.janitor import janitor, wait_for_links_gone
from pytest_netns.ownership import current_session


def serve_once(ip: str) -> tuple[int, dict[str, Any], threading.Thread]:
    """A one-shot TCP server in the test process: records the peer and what it sent."""
    srv = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ip, 0))
    srv.listen(1)
    srv.settimeout(15)
    seen: dict[str, Any] = {}

    def accept() -> None:
        try:
            conn, peer = srv.accept()
            with conn:
                conn.settimeout(5)
                seen["peer"] = peer[0]
                seen["data"] = conn.recv(100)
                conn.sendall(b"pong\n")
        finally:
            srv.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return srv.getsockname()[1], seen, thread


def talk_to_test_server(node: Any, ip: str, message: str) -> tuple[str, dict[str, Any]]:
    """`message` sent by busybox nc in `node` to a server of the test process on `ip`."""
    port, seen, thread = serve_once(ip)
    code, out = busybox(node, "sh", "-c", f"echo {message} | nc {ip} {port}")
    thread.join(10)
    assert code == 0, out
    return out, seen


def start_httpd(node: Any, tmp_path: Any, body: str) -> None:
    """busybox httpd in the node, serving `body` at /index.html on port 8080."""
    if node.container is not None:
        code, out = busybox(node, "sh", "-c", f"mkdir -p /www && echo {body} > /www/index.html")
        assert code == 0, out
        root = "/www"
    else:
        www = tmp_path / f"www-{node.name}"
        www.mkdir()
        (www / "index.html").write_text(body + "\n")
        root = str(www)
    binary = "/bin/busybox" if node.container is not None else "busybox"
    node.spawn([binary, "httpd", "-f", "-p", "8080", "-h", root])


def fetch(node: Any, url: str) -> str:
    """GET url from inside `node` with busybox wget, retrying while the server starts."""
    out = ""
    for _ in range(50):
        code, out = busybox(node, "wget", "-q", "-O", "-", url)
        if code == 0:
            return out
        time.sleep(0.1)
    raise AssertionError(f"wget {url} from {node.name} failed: {out}")


# -- isolated_container ---------------------------------------------------


def test_isolated_container_has_only_the_guest_only_nic(
    isolated_container: IsolatedContainer,
) -> None:
    iso = isolated_container
    assert (iso.iface, iso.ip, iso.prefixlen) == ("eth1", "172.16.0.10", 24)
    seen = links_seen_inside(iso.node)
    assert sorted(seen) == ["eth1", "lo"]
    assert seen["eth1"] == ["172.16.0.10/24"]
    assert not [r for r in routes_seen_inside(iso.node) if r.startswith("default")]


def test_isolated_container_reports_the_kind_the_kernel_gave(
    isolated_container: IsolatedContainer,
) -> None:
    iso = isolated_container
    (link,) = [ln for ln in iproute_json(iso.node.netns, "-d", "link", "show", "eth1")]
    assert link["linkinfo"]["info_kind"] == iso.kind
    assert iso.kind in ("dummy", "ifb", "veth")


def test_isolated_container_reaches_nothing(isolated_container: IsolatedContainer) -> None:
    # 172.16.0.11 is on the stub's subnet: no peer answers; 10.64.0.1 has no route at all
    assert not pings(isolated_container.node, "172.16.0.11")
    code, out = busybox(isolated_container.node, "ping", "-c", "1", "-W", "1", "10.64.0.1")
    assert code != 0
    assert "unreachable" in out.lower()


def test_isolated_container_takes_an_address_and_name(make_isolated_container: Any) -> None:
    iso = make_isolated_container(ip="10.99.0.5/16", iface="guest0")
    assert (iso.ip, iso.prefixlen, iso.iface) == ("10.99.0.5", 16, "guest0")
    assert links_seen_inside(iso.node)["guest0"] == ["10.99.0.5/16"]


# -- host_only_link -------------------------------------------------------


def test_host_only_link_addresses_on_both_ends(host_only_link: HostOnlyLink) -> None:
    link = host_only_link
    seen = links_seen_inside(link.node)
    assert sorted(seen) == ["eth1", "lo"]
    assert seen["eth1"] == [f"{link.node_ip}/{link.prefixlen}"]
    (host_side,) = iproute_json(None, "addr", "show", "dev", link.host_iface)
    assert [f"{a['local']}/{a['prefixlen']}" for a in host_side["addr_info"]
            if a["family"] == "inet"] == [f"{link.host_ip}/{link.prefixlen}"]
    (host_link,) = iproute_json(None, "link", "show", "dev", link.host_iface)
    assert host_link.get("ifalias") == current_session().alias
    assert not [r for r in routes_seen_inside(link.node) if r.startswith("default")]


def test_host_only_link_pings_both_ways(host_only_link: HostOnlyLink) -> None:
    assert host_pings(host_only_link.node_ip)
    assert pings(host_only_link.node, host_only_link.host_ip)


def test_host_only_link_subnet_is_clear_of_host_routes(host_only_link: HostOnlyLink) -> None:
    import ipaddress

    ours = ipaddress.ip_network(host_only_link.subnet)
    for route in iproute_json(None, "-4", "route", "show", "table", "all"):
        dst = route.get("dst", "")
        if route.get("dev") == host_only_link.host_iface or dst in ("default", ""):
            continue
        other = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
        if other.is_loopback:
            continue
        assert not ours.overlaps(other) or dst.startswith(str(host_only_link.host_ip)), route


def test_test_process_reaches_a_service_in_the_node(
    host_only_link: HostOnlyLink, tmp_path: Any
) -> None:
    import urllib.request

    start_httpd(host_only_link.node, tmp_path, "hello-from-node")
    url = f"http://{host_only_link.node_ip}:8080/index.html"
    for _ in range(50):
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                assert resp.read().decode().strip() == "hello-from-node"
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"no answer from {url}")


def test_node_reaches_a_service_in_the_test_process(host_only_link: HostOnlyLink) -> None:
    out, seen = talk_to_test_server(host_only_link.node, host_only_link.host_ip, "ping")
    assert "pong" in out
    assert seen == {"peer": host_only_link.node_ip, "data": b"ping\n"}


def test_two_host_only_links_get_different_subnets(make_host_only_link: Any) -> None:
    one, two = make_host_only_link(), make_host_only_link()
    assert one.subnet != two.subnet
    assert one.host_iface != two.host_iface


# -- bridged_pair ---------------------------------------------------------


def test_bridged_pair_members_ping_each_other(bridged_pair: BridgedPair) -> None:
    assert pings(bridged_pair.a, bridged_pair.b_ip)
    assert pings(bridged_pair.b, bridged_pair.a_ip)


def test_bridged_pair_serves_tcp_between_members(
    bridged_pair: BridgedPair, tmp_path: Any
) -> None:
    start_httpd(bridged_pair.b, tmp_path, "hello-from-b")
    assert fetch(bridged_pair.a, f"http://{bridged_pair.b_ip}:8080/index.html").strip() == (
        "hello-from-b"
    )


def test_bridged_pair_bridge_lives_in_its_own_namespace(bridged_pair: BridgedPair) -> None:
    pair = bridged_pair
    for node in (pair.a, pair.b):
        assert sorted(links_seen_inside(node)) == ["eth1", "lo"]  # no eth0 on docker0
    in_switch = {ln["ifname"]: ln for ln in iproute_json(pair.switch_netns, "-d", "link")}
    assert in_switch["br0"]["linkinfo"]["info_kind"] == "bridge"
    assert sorted(n for n, ln in in_switch.items() if ln.get("master") == "br0") == ["p0", "p1"]
    on_host = [ln["ifname"] for ln in iproute_json(None, "link", "show", "master", "docker0")]
    for node in (pair.a, pair.b):
        host_ends = [ln for ln in iproute_json(node.netns, "link") if ln["ifname"] == "eth1"]
        assert host_ends and host_ends[0].get("link_netnsid") is not None
    assert not set(on_host) & {"p0", "p1"}


def test_bridged_pair_works_under_forward_drop_without_touching_the_firewall(
    stable_host_firewall: None, make_bridged_pair: Any, netns_backend: str
) -> None:
    before = host_firewall(), forwarding_sysctls()
    pair = make_bridged_pair()
    assert pings(pair.a, pair.b_ip)
    assert (host_firewall(), forwarding_sysctls()) == before


def test_bridged_pair_takes_a_subnet_and_addresses(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair(subnet="192.168.77.0/29", a_ip="192.168.77.2",
                             b_ip="192.168.77.6")
    assert (pair.subnet, pair.a_ip, pair.b_ip, pair.prefixlen) == (
        "192.168.77.0/29", "192.168.77.2", "192.168.77.6", 29)
    assert pings(pair.a, "192.168.77.6")


# -- nat_uplink -----------------------------------------------------------


def test_nat_uplink_routes_by_default_via_the_router(nat_uplink: NatUplink) -> None:
    routes = routes_seen_inside(nat_uplink.node)
    router_ip = nat_uplink.router.interface("eth1").ip
    assert [r for r in routes if r.startswith(f"default via {router_ip} ")]


def test_nat_uplink_masquerades_to_the_upstream(nat_uplink: NatUplink) -> None:
    _, seen = talk_to_test_server(nat_uplink.node, nat_uplink.upstream_ip, "hello")
    assert seen["peer"] == nat_uplink.public_ip != nat_uplink.node_ip
    assert seen["data"] == b"hello\n"


def test_nat_uplink_router_has_no_route_off_the_machine(nat_uplink: NatUplink) -> None:
    routes = iproute_json(nat_uplink.router.netns, "-4", "route", "show", "table", "all")
    assert not [r for r in routes if r.get("dst") == "default"]
    ruleset = nat_uplink.router.exec(["nft", "list", "ruleset"])[1]
    assert "masquerade" in ruleset
    assert current_session().nft_table in ruleset


def test_nat_uplink_leaves_host_firewall_and_sysctls_alone(
    stable_host_firewall: None, make_nat_uplink: Any
) -> None:
    before = host_firewall(), forwarding_sysctls()
    nat = make_nat_uplink()
    assert pings(nat.node, nat.upstream_ip)
    assert (host_firewall(), forwarding_sysctls()) == before
    assert current_session().nft_table not in host_firewall()


# -- factories and teardown -----------------------------------------------


def test_close_removes_everything_and_is_idempotent(
    make_nat_uplink: Any, make_bridged_pair: Any, netns_backend: str
) -> None:
    nat, pair = make_nat_uplink(), make_bridged_pair()
    paths = [n.netns for t in (nat, pair) for n in t.topology.nodes.values()]
    containers = [n.container for t in (nat, pair) for n in t.topology.nodes.values()
                  if n.container is not None]
    host_iface = nat.upstream_iface
    nat.close()
    pair.close()
    nat.close()
    assert janitor().drain() == []
    for path in paths:
        if path.startswith("/run/netns/"):
            assert not os.path.exists(path)
    for ctr in containers:
        import docker.errors

        with pytest.raises(docker.errors.NotFound):
            ctr.reload()
    assert host_iface not in wait_for_links_gone(current_session().alias, timeout=10)
    assert not iproute_json(None, "link", "show") or host_iface not in [
        ln["ifname"] for ln in iproute_json(None, "link", "show")]


def test_containers_carry_the_session_label(bridged_pair: BridgedPair, docker_only: None) -> None:
    for node in (bridged_pair.a, bridged_pair.b):
        assert node.container is not None
        assert node.container.labels["pytest-netns.session"] == current_session().id
        assert node.container.attrs["HostConfig"]["NetworkMode"] == "none"
        assert node.container.attrs["HostConfig"]["Init"] is True


REUSE = '''
import pytest


@pytest.mark.parametrize("n", range(4))
def test_same_subnet_and_host_iface(make_host_only_link, n):
    first = make_host_only_link(subnet="{subnet}", host_iface="{iface}")
    assert (first.host_iface, first.subnet) == ("{iface}", "{subnet}")
    first.close()
    again = make_host_only_link(subnet="{subnet}", host_iface="{iface}")
    assert (again.host_ip, again.host_iface) == (first.host_ip, "{iface}")
'''


def test_a_fixed_subnet_and_host_iface_are_free_at_once_after_close_and_in_the_next_test(
    pytester: pytest.Pytester, netns_backend: str
) -> None:
    """Issue 11 #12: 2-3 of 4 sequential tests with the same subnet= failed (SubnetOverlapError),
    and host_iface= after close() said "already exists"."""
    subnet = f"10.253.{int.from_bytes(os.urandom(1), 'big')}.0/24"  # no other test's
    iface = f"fd{os.urandom(3).hex()}"
    pytester.makepyfile(test_reuse=REUSE.format(subnet=subnet, iface=iface))
    result = pytester.runpytest_subprocess(f"--netns-backend={netns_backend}", "-p",
                                           "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=4)
