"""The topology builder: custom shapes, attached containers, teardown.

Checks go through busybox inside the nodes and iproute2 on the host
(netcheck.py), not through the library's own netlink layer.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from typing import Any

import pytest
from netcheck import (
    busybox,
    iproute_json,
    links_seen_inside,
    netns_identity,
    pings,
    processes_in,
    routes_seen_inside,
    running,
)

from pytest_netns import HOST, InvalidTopologyError
from pytest_netns.kernel.janitor import janitor
from pytest_netns.nodes.images import DEFAULT_COMMAND
from pytest_netns.ownership import current_session


def test_router_between_two_subnets(make_topology: Any) -> None:
    t = make_topology()
    client, server, router = t.node("client"), t.node("server"), t.router("r")
    lan = t.switch("lan", subnet="10.210.1.0/24")
    dmz = t.switch("dmz", subnet="10.210.2.0/24")
    t.connect(client, lan)
    t.connect(router, lan)
    t.connect(router, dmz)
    t.connect(server, dmz)
    net = t.build()
    assert net.segments["lan"].ip_of("r") == "10.210.1.1"  # routers take the first address
    assert pings(net["client"], net.segments["dmz"].ip_of("server"))
    assert pings(net["server"], net.segments["lan"].ip_of("client"))
    assert any(r.startswith("default via 10.210.1.1") for r in routes_seen_inside(net["client"]))
    assert net["r"].netlink.sysctl("net.ipv4.ip_forward") == "1"


def test_three_nodes_on_one_switch_with_explicit_addresses(make_topology: Any) -> None:
    t = make_topology()
    names = [t.node(f"n{i}") for i in range(3)]
    sw = t.switch("sw", subnet="10.211.0.0/24")
    for i, name in enumerate(names):
        t.connect(name, sw, ip=f"10.211.0.{10 + i}", iface="lan0")
    net = t.build()
    for i, name in enumerate(names):
        assert links_seen_inside(net[name])["lan0"] == [f"10.211.0.{10 + i}/24"]
    assert pings(net["n0"], "10.211.0.12")
    assert pings(net["n2"], "10.211.0.10")


def test_direct_link_between_two_nodes(make_topology: Any) -> None:
    t = make_topology()
    a, b = t.node("a"), t.node("b")
    seg = t.connect(a, b, subnet="10.212.0.0/30", iface="to-b", peer_iface="to-a")
    net = t.build()
    assert net.segments[seg].members == (("a", "to-b", "10.212.0.1"), ("b", "to-a", "10.212.0.2"))
    assert pings(net["a"], "10.212.0.2")


def test_a_node_on_two_segments_gets_two_interfaces(make_topology: Any) -> None:
    t = make_topology()
    a, b, c = t.node("a"), t.node("b"), t.node("c")
    t.connect(a, b)
    t.connect(a, c)
    t.connect(a, HOST)
    net = t.build()
    assert sorted(links_seen_inside(net["a"])) == ["eth1", "eth2", "eth3", "lo"]
    assert len(net.host_interfaces) == 1


def test_static_route(make_topology: Any) -> None:
    t = make_topology()
    a, r, b = t.node("a"), t.router("r"), t.node("b")
    t.connect(a, r, subnet="10.213.1.0/24")
    t.connect(r, b, subnet="10.213.2.0/24")
    t.route("a", "10.99.0.0/16", via="10.213.1.1")
    net = t.build()
    assert "10.99.0.0/16 via 10.213.1.1 dev eth1" in routes_seen_inside(net["a"])


def test_unknown_node_is_refused_before_anything_is_built(make_topology: Any) -> None:
    t = make_topology()
    t.node("a")
    with pytest.raises(InvalidTopologyError, match="unknown node 'nope'"):
        t.connect("a", "nope")


def test_command_runs_in_a_namespace_node(
    make_topology: Any, netns_backend: str, tmp_path: Any
) -> None:
    marker = tmp_path / "ran"
    t = make_topology(command=["sh", "-c", f"touch {marker}; sleep 600"])
    t.node("a")
    net = t.build()
    if netns_backend == "namespace":
        netns = netns_identity(net["a"].netns)
        # the shell touches the marker, then starts the sleep: wait for both
        deadline = time.monotonic() + 5
        while not (marker.exists() and running(netns, "sleep 600")):
            assert time.monotonic() < deadline, "the command never ran"
            time.sleep(0.02)
        net.close()  # the command and its children die with the node
        assert processes_in(netns) == {}
    else:
        assert net["a"].container is not None


def test_an_automatic_switch_subnet_is_sized_for_its_members(
    make_topology: Any, namespace_only: None
) -> None:
    """Issue 11: an automatic switch subnet was always a /24, and 300 nodes failed with no
    hint. (Namespaces only: 300 containers would cost minutes and prove nothing more.)"""
    t = make_topology(verify=False)
    lan = t.switch("lan")
    for i in range(300):
        t.connect(t.node(f"n{i}"), lan)
    net = t.build()
    seg = net.segments["lan"]
    assert seg.subnet.prefixlen == 23
    addresses = {ipaddress.ip_address(ip) for _, _, ip in seg.members}
    assert len(addresses) == 300 and all(a in seg.subnet for a in addresses)
    assert pings(net["n0"], seg.ip_of("n299"))


# -- attaching containers the user started -------------------------------


@pytest.mark.parametrize("handle", ["object", "id", "name"])
def test_attached_container_keeps_running_and_loses_only_our_nic(
    make_host_only_link: Any, user_container: Any, handle: str
) -> None:
    ref = {"object": user_container, "id": user_container.id, "name": user_container.name}
    link = make_host_only_link(container=ref[handle])
    assert link.node.container.id == user_container.id
    assert pings(link.node, link.host_ip)
    inside = iproute_json(f"/proc/{user_container.attrs['State']['Pid']}/ns/net", "link")
    assert [ln["ifalias"] for ln in inside if ln["ifname"] == "eth1"] == [current_session().alias]
    link.close()
    user_container.reload()
    assert user_container.status == "running"
    janitor().drain()  # the renamed interface is deleted off the test's path
    inside = iproute_json(f"/proc/{user_container.attrs['State']['Pid']}/ns/net", "link")
    assert [ln["ifname"] for ln in inside] == ["lo"]


def test_attaching_a_stopped_container_is_a_clear_error(
    make_topology: Any, user_container: Any
) -> None:
    from pytest_netns import ContainerError
    from pytest_netns.nodes.engine import teardown_lock

    with teardown_lock():  # a container exit, like a removal, must not race another
        user_container.stop(timeout=1)
    with pytest.raises(ContainerError, match="not running"):
        make_topology().attach(user_container)


def test_attach_a_testcontainers_container(
    make_nat_uplink: Any, netns_image: str, docker_only: None
) -> None:
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    from testcontainers.core.container import DockerContainer

    from pytest_netns.nodes.engine import teardown_lock

    tc = DockerContainer(netns_image).with_command(DEFAULT_COMMAND).with_kwargs(
        network_mode="none", init=True)
    tc.start()
    try:
        nat = make_nat_uplink(container=tc)
        assert nat.node.container.id == tc.get_wrapped_container().id
        assert pings(nat.node, nat.upstream_ip)
        _, out = busybox(nat.node, "ip", "route")
        assert f"default via {nat.router.interface('eth1').ip}" in out
    finally:
        with teardown_lock():
            tc.stop()


def test_unstarted_testcontainers_container_is_a_clear_error(
    make_topology: Any, netns_image: str, docker_only: None
) -> None:
    from testcontainers.core.container import DockerContainer

    from pytest_netns import ContainerError

    with pytest.raises(ContainerError, match="has not been started"):
        make_topology().attach(DockerContainer(netns_image))


def test_the_same_container_can_be_attached_again_right_after_close(
    make_host_only_link: Any, user_container: Any
) -> None:
    first = make_host_only_link(container=user_container)
    first.close()  # the delete itself is deferred: eth1 must be free at once anyway
    netns = f"/proc/{user_container.attrs['State']['Pid']}/ns/net"
    inside = iproute_json(netns, "addr")
    assert "eth1" not in [ln["ifname"] for ln in inside]
    assert first.node_ip not in [a["local"] for ln in inside for a in ln["addr_info"]]
    second = make_host_only_link(container=user_container)
    assert pings(second.node, second.host_ip)
    second.close()
    assert janitor().drain() == []
    pid = user_container.attrs["State"]["Pid"]
    assert [ln["ifname"] for ln in iproute_json(f"/proc/{pid}/ns/net", "link")] == ["lo"]


def test_debug_log_shows_what_was_built_and_removed(
    make_topology: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pytest_netns")
    t = make_topology(verify=False)
    a, b = t.node("a"), t.node("b")
    t.connect(a, b)
    net = t.build()
    net.close()
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "create veth eth1<->eth1" in said
    assert "configure eth1 with 10." in said
    assert f"closed {net.label}" in said
