"""rtnl's hand-made netlink messages, byte for byte against pyroute2's (no root needed).

pytest-netns encodes its rtnetlink requests itself because pyroute2's request
layer costs ~0.2 ms a request and ~100 ms to import. pyroute2 still knows the
wire format best, so it is the oracle here: each request the build path
makes is encoded by both and must be identical, and pyroute2-encoded replies
must decode to what they say.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from pytest_netns.kernel import rtnl

ifinfmsg = pytest.importorskip("pyroute2.netlink.rtnl.ifinfmsg").ifinfmsg
ifaddrmsg = pytest.importorskip("pyroute2.netlink.rtnl.ifaddrmsg").ifaddrmsg
rtmsg = pytest.importorskip("pyroute2.netlink.rtnl.rtmsg").rtmsg


def body(msg: Any, fields: dict[str, Any], attrs: list[Any]) -> bytes:
    """pyroute2's encoding of a message, without the 16-byte nlmsghdr."""
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data[16:])


def link(index: int = 0, flags: int = 0, change: int = 0, attrs: list[Any] | None = None) -> bytes:
    return body(ifinfmsg(), {"family": 0, "index": index, "flags": flags, "change": change},
                attrs or [])


def test_veth_whose_peer_is_born_in_another_namespace() -> None:
    peer = {"attrs": [("IFLA_IFNAME", "p0"), ("IFLA_NET_NS_FD", 7)]}
    want = link(flags=1, change=1, attrs=[
        ("IFLA_IFNAME", "eth1"),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"),
                                     ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]}),
    ])
    assert rtnl.new_link_body("eth1", "veth", rtnl.veth_peer("p0", 7)) == want


def test_veth_enslaved_to_a_bridge() -> None:
    peer = {"attrs": [("IFLA_IFNAME", "eth1"), ("IFLA_NET_NS_FD", 9)]}
    want = link(flags=1, change=1, attrs=[
        ("IFLA_IFNAME", "p3"), ("IFLA_MASTER", 4),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"),
                                     ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]}),
    ])
    assert rtnl.new_link_body("p3", "veth", rtnl.veth_peer("eth1", 9), master=4) == want


def test_bridge_without_stp_or_forward_delay() -> None:
    data = {"attrs": [("IFLA_BR_FORWARD_DELAY", 0), ("IFLA_BR_STP_STATE", 0)]}
    want = link(flags=1, change=1, attrs=[
        ("IFLA_IFNAME", "br0"),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge"), ("IFLA_INFO_DATA", data)]}),
    ])
    assert rtnl.new_link_body("br0", "bridge", rtnl.bridge_data(0, 0)) == want


def test_bridge_without_multicast_snooping() -> None:
    data = {"attrs": [("IFLA_BR_FORWARD_DELAY", 0), ("IFLA_BR_STP_STATE", 0),
                      ("IFLA_BR_MCAST_SNOOPING", 0)]}
    want = link(flags=1, change=1, attrs=[
        ("IFLA_IFNAME", "br0"),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge"), ("IFLA_INFO_DATA", data)]}),
    ])
    assert rtnl.new_link_body("br0", "bridge", rtnl.bridge_data(0, 0, False)) == want


def test_veth_with_its_macs_and_one_queue_each() -> None:
    peer = {"attrs": [("IFLA_IFNAME", "eth1"), ("IFLA_ADDRESS", "02:00:00:00:00:02"),
                      ("IFLA_NUM_TX_QUEUES", 1), ("IFLA_NUM_RX_QUEUES", 1),
                      ("IFLA_NET_NS_FD", 9)]}
    want = link(flags=1, change=1, attrs=[
        ("IFLA_IFNAME", "p3"), ("IFLA_ADDRESS", "02:00:00:00:00:01"),
        ("IFLA_NUM_TX_QUEUES", 1), ("IFLA_NUM_RX_QUEUES", 1), ("IFLA_MASTER", 4),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"),
                                     ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]}),
    ])
    data = rtnl.veth_peer("eth1", 9, "02:00:00:00:00:02", single_queue=True)
    assert rtnl.new_link_body("p3", "veth", data, master=4, single_queue=True,
                              mac="02:00:00:00:00:01") == want


def test_neighbour_entry() -> None:
    ndmsg = pytest.importorskip("pyroute2.netlink.rtnl.ndmsg").ndmsg
    want = body(ndmsg(), {"family": socket.AF_INET, "ifindex": 5, "state": rtnl.NUD_STALE},
                [("NDA_DST", "10.64.0.3"), ("NDA_LLADDR", "02:00:00:00:00:03")])
    assert rtnl.neighbour_body(5, "10.64.0.3", "02:00:00:00:00:03") == want


def test_a_link_with_no_options() -> None:
    want = link(flags=1, change=1, attrs=[
        ("IFLA_IFNAME", "eth1"), ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "ifb")]})])
    assert rtnl.new_link_body("eth1", "ifb") == want


@pytest.mark.parametrize(("kwargs", "flags", "change", "attrs"), [
    ({"up": True}, 1, 1, []),
    ({"up": False, "ifname": "pnx1"}, 0, 1, [("IFLA_IFNAME", "pnx1")]),
    ({"alias": "pytest-netns:abc123:42"}, 0, 0, [("IFLA_IFALIAS", "pytest-netns:abc123:42")]),
    ({"master": 3, "netns_fd": 5}, 0, 0, [("IFLA_MASTER", 3), ("IFLA_NET_NS_FD", 5)]),
], ids=["up", "down-and-rename", "alias", "master-and-netns"])
def test_set_link(kwargs: dict[str, Any], flags: int, change: int, attrs: list[Any]) -> None:
    assert rtnl.set_link_body(12, **kwargs) == link(12, flags, change, attrs)


def test_ipv4_address() -> None:
    want = body(ifaddrmsg(), {"family": socket.AF_INET, "prefixlen": 24, "flags": 0,
                              "scope": 0, "index": 5},
                [("IFA_ADDRESS", "10.64.0.2"), ("IFA_LOCAL", "10.64.0.2")])
    assert rtnl.address_body(5, "10.64.0.2", 24) == want


def test_ipv6_address_without_duplicate_address_detection() -> None:
    want = body(ifaddrmsg(), {"family": socket.AF_INET6, "prefixlen": 64, "flags": 0,
                              "scope": 0, "index": 5},
                [("IFA_ADDRESS", "fd6e::2"), ("IFA_FLAGS", rtnl.IFA_F_NODAD)])
    assert rtnl.address_body(5, "fd6e::2", 64, nodad=True) == want


def test_route_lookup() -> None:
    want = body(rtmsg(), {"family": socket.AF_INET, "dst_len": 32}, [("RTA_DST", "10.64.0.3")])
    assert rtnl.route_get_body("10.64.0.3") == want
    want6 = body(rtmsg(), {"family": socket.AF_INET6, "dst_len": 128}, [("RTA_DST", "fd00::9")])
    assert rtnl.route_get_body("fd00::9") == want6


@pytest.mark.parametrize(("dst", "gateway", "dst_len", "attrs"), [
    ("default", "10.64.0.1", 0, [("RTA_GATEWAY", "10.64.0.1")]),
    ("10.9.0.0/16", "10.64.0.1", 16, [("RTA_DST", "10.9.0.0"), ("RTA_GATEWAY", "10.64.0.1")]),
    ("::/0", "fd6e::1", 0, [("RTA_GATEWAY", "fd6e::1")]),
])
def test_route_add(dst: str, gateway: str, dst_len: int, attrs: list[Any]) -> None:
    family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
    want = body(rtmsg(), {"family": family, "dst_len": dst_len, "table": 254, "proto": 3,
                          "scope": 0, "type": 1}, attrs)
    assert rtnl.route_body(dst, gateway) == want


def test_decoding_what_pyroute2_encodes() -> None:
    msg = link(7, 1, 0, [("IFLA_IFNAME", "eth1"), ("IFLA_IFALIAS", "pytest-netns:a:1"),
                         ("IFLA_MASTER", 2), ("IFLA_LINKINFO",
                                              {"attrs": [("IFLA_INFO_KIND", "veth")]})])
    assert rtnl.decode_link(msg) == rtnl.LinkInfo(7, "eth1", "veth", "pytest-netns:a:1", True,
                                                  2, "")
    addr = body(ifaddrmsg(), {"family": socket.AF_INET6, "prefixlen": 64, "index": 3},
                [("IFA_ADDRESS", "fd6e::5")])
    assert rtnl.decode_address(addr) == rtnl.AddressInfo(3, "fd6e::5", 64, socket.AF_INET6)
    route = body(rtmsg(), {"family": socket.AF_INET, "dst_len": 24, "table": 254, "type": 1},
                 [("RTA_DST", "10.64.0.0"), ("RTA_OIF", 4), ("RTA_TABLE", 254)])
    assert rtnl.decode_route(route) == rtnl.RouteInfo("10.64.0.0/24", None, 4, 254, 1,
                                                      socket.AF_INET)
    answer = body(rtmsg(), {"family": socket.AF_INET, "dst_len": 32, "type": rtnl.RTN_LOCAL},
                  [("RTA_OIF", 1), ("RTA_PREFSRC", "127.0.0.1")])
    assert rtnl.decode_route_answer(answer, "127.0.0.1") == rtnl.RouteAnswer(
        "127.0.0.1", 1, "127.0.0.1", None, True)


def test_bridge_forwarding_entry() -> None:
    ndmsg = pytest.importorskip("pyroute2.netlink.rtnl.ndmsg").ndmsg
    want = body(ndmsg(), {"family": socket.AF_BRIDGE, "ifindex": 7,
                          "state": rtnl.NUD_REACHABLE, "flags": rtnl.NTF_MASTER},
                [("NDA_LLADDR", "02:00:00:00:00:07")])
    assert rtnl.fdb_body(7, "02:00:00:00:00:07") == want
