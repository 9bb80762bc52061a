"""Traffic-control requests and the faults' link requests, byte for byte against pyroute2.

pyroute2 knows the wire format of tc best, so where it can encode the same
request, its bytes are the oracle; where it cannot (netem's 64-bit times,
cls_bpf's classic programs, tbf's byte burst), the fields are checked one
by one against the kernel headers' layout. No root needed.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest

from pytest_netns.kernel import rtnl, tc
from pytest_netns.kernel.cbpf import drop_all
from pytest_netns.kernel.impairment import SINK_MTU, Impairment

tcmsg = pytest.importorskip("pyroute2.netlink.rtnl.tcmsg").tcmsg
pr_mirred = pytest.importorskip("pyroute2.netlink.rtnl.tcmsg.act_mirred").options
pr_netem = pytest.importorskip("pyroute2.netlink.rtnl.tcmsg.sched_netem").get_parameters
ifinfmsg = pytest.importorskip("pyroute2.netlink.rtnl.ifinfmsg").ifinfmsg


def pyroute2_body(msg: Any) -> bytes:
    """pyroute2's encoding of a message, without its netlink header."""
    msg.encode()
    return bytes(msg.data[16 : msg["header"]["length"]])


def without(options: bytes, header: int, drop: set[int]) -> bytes:
    """`options` without the attributes of types in `drop` (after a `header`-byte struct)."""
    out, offset = bytearray(options[:header]), header
    while offset < len(options):
        length, kind = struct.unpack_from("=HH", options, offset)
        padded = (length + 3) & ~3
        if kind not in drop:
            out += options[offset : offset + padded]
        offset += padded
    return bytes(out)


@pytest.mark.parametrize(("ours", "theirs"), [
    ({"delay": "10ms"}, {"delay": 10000}),
    ({"delay": "50ms", "jitter": "10ms", "loss": 1}, {"delay": 50000, "jitter": 10000, "loss": 1}),
    ({"delay": "20ms", "reorder": 25}, {"delay": 20000, "prob_reorder": 25}),
    ({"delay": "1ms", "duplicate": 5, "corrupt": 0.5},
     {"delay": 1000, "duplicate": 5, "prob_corrupt": 0.5}),
    ({"loss": 30}, {"loss": 30}),
])
def test_netem_qdisc_matches_pyroute2(ours: dict[str, Any], theirs: dict[str, float]) -> None:
    """The whole RTM_NEWQDISC body equals pyroute2's, apart from the 64-bit times we add."""
    imp = Impairment.parse(**ours)
    body = tc.netem_body(7, imp.netem_options())
    msg = tcmsg()
    msg["index"], msg["handle"], msg["parent"] = 7, 0x10000, tc.TC_H_ROOT
    msg["attrs"] = [["TCA_KIND", "netem"], ["TCA_OPTIONS", pr_netem({"limit": tc.NETEM_LIMIT,
                                                                      **theirs})]]
    expected = pyroute2_body(msg)
    head = tc.TCMSG.size
    attrs = rtnl.parse_attrs(body, head)
    assert body[:head] == expected[:head]
    assert attrs[tc.TCA_KIND] == b"netem\0"
    options = without(attrs[tc.TCA_OPTIONS], tc.NETEM_QOPT.size,
                      {tc.TCA_NETEM_LATENCY64, tc.TCA_NETEM_JITTER64})
    assert options == rtnl.parse_attrs(expected, head)[tc.TCA_OPTIONS]
    times = rtnl.parse_attrs(attrs[tc.TCA_OPTIONS], tc.NETEM_QOPT.size)
    assert struct.unpack("=q", times[tc.TCA_NETEM_LATENCY64])[0] == round(imp.delay * 1e9)
    assert struct.unpack("=q", times[tc.TCA_NETEM_JITTER64])[0] == round(imp.jitter * 1e9)


def test_netem_normal_distribution_table() -> None:
    table = struct.unpack(f"={tc.NETEM_DIST_SIZE}h", tc.normal_table())
    assert list(table) == sorted(table)
    assert abs(table[tc.NETEM_DIST_SIZE // 2]) < 10  # the median is ~0
    below = sum(1 for v in table if v < tc.NETEM_DIST_SCALE) / len(table)
    assert below == pytest.approx(0.8413, abs=0.002)  # one sigma is NETEM_DIST_SCALE
    normal = Impairment.parse(delay="50ms", jitter="10ms", distribution="normal")
    uniform = Impairment.parse(delay="50ms", jitter="10ms")
    assert tc.TCA_NETEM_DELAY_DIST in rtnl.parse_attrs(normal.netem_options(), tc.NETEM_QOPT.size)
    assert tc.TCA_NETEM_DELAY_DIST not in rtnl.parse_attrs(uniform.netem_options(),
                                                           tc.NETEM_QOPT.size)


def test_mirred_action_matches_pyroute2() -> None:
    ours = rtnl.parse_attrs(rtnl.parse_attrs(tc.mirred_redirect(42), 0)[1], 0)
    theirs = pr_mirred()
    theirs.setvalue({"attrs": [["TCA_MIRRED_PARMS",
                                {"eaction": 1, "ifindex": 42, "action": tc.TC_ACT_STOLEN}]]})
    theirs.encode()
    assert ours[tc.TCA_ACT_KIND] == b"mirred\0"
    assert ours[tc.TCA_ACT_OPTIONS] == bytes(theirs.data[4 : theirs.length])


def test_clsact_matches_pyroute2() -> None:
    msg = tcmsg()
    msg["index"], msg["handle"], msg["parent"] = 5, tc.CLSACT_HANDLE, tc.TC_H_CLSACT
    msg["attrs"] = [["TCA_KIND", "clsact"]]
    assert tc.clsact_body(5) == pyroute2_body(msg)


def test_tbf_parameters() -> None:
    options = rtnl.parse_attrs(tc.tbf_options(10_000_000, latency_s=0.05), 0)
    rate = struct.unpack_from("=BBHhHI", options[tc.TCA_TBF_PARMS])
    limit, buffer_ticks, _mtu = struct.unpack_from("=III", options[tc.TCA_TBF_PARMS], 24)
    burst = struct.unpack("=I", options[tc.TCA_TBF_BURST])[0]
    assert rate[5] == 1_250_000 and rate[1] == tc.TC_LINKLAYER_ETHERNET
    assert burst >= 10_000_000 / 8 / tc.HZ
    assert limit == burst + 62_500
    assert buffer_ticks == burst * 10**9 // 1_250_000 // 64
    assert tc.TCA_TBF_RATE64 in rtnl.parse_attrs(tc.tbf_options(40 * 10**9), 0)
    assert tc.tbf_burst(1_000_000) == 2 * 1514


def test_filter_header_and_options() -> None:
    body = tc.bpf_filter_body(3, tc.TC_H_EGRESS_HOOK, 5, drop_all(), direct_action=True,
                              redirect_to=9)
    ifindex, handle, parent, info = tc.decode_tcmsg(body)
    assert (ifindex, handle, parent) == (3, tc.FILTER_HANDLE, 0xFFFFFFF3)
    assert info >> 16 == 5 and socket.ntohs(info & 0xFFFF) == 0x0003
    attrs = rtnl.parse_attrs(body, tc.TCMSG.size)
    assert attrs[tc.TCA_KIND] == b"bpf\0"
    options = rtnl.parse_attrs(attrs[tc.TCA_OPTIONS], 0)
    assert struct.unpack("=H", options[tc.TCA_BPF_OPS_LEN])[0] == 1
    assert options[tc.TCA_BPF_OPS] == drop_all()
    assert struct.unpack("=I", options[tc.TCA_BPF_FLAGS])[0] == tc.TCA_BPF_FLAG_ACT_DIRECT
    assert options[tc.TCA_BPF_ACT] == tc.mirred_redirect(9)


def link(index: int = 0, flags: int = 0, change: int = 0, attrs: list[Any] | None = None) -> bytes:
    msg = ifinfmsg()
    msg["family"], msg["index"], msg["flags"], msg["change"] = 0, index, flags, change
    msg["attrs"] = attrs or []
    msg.encode()
    return bytes(msg.data[16:])


def test_sink_pair_matches_pyroute2() -> None:
    """The sink veth: both ends down, largest MTU, the peer born in the forwarder's namespace."""
    peer = {"attrs": [("IFLA_IFNAME", "pnab12k"), ("IFLA_MTU", SINK_MTU),
                      ("IFLA_NET_NS_FD", 11)]}
    want = link(attrs=[
        ("IFLA_IFNAME", "pnab12k"), ("IFLA_MTU", SINK_MTU),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"),
                                     ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]}),
    ])
    ours = rtnl.new_link_body("pnab12k", "veth", rtnl.veth_peer("pnab12k", 11, mtu=SINK_MTU),
                              up=False, mtu=SINK_MTU)
    assert ours == want


def test_gso_max_segs_matches_pyroute2() -> None:
    assert rtnl.set_link_body(4, gso_max_segs=1) == link(4, attrs=[("IFLA_GSO_MAX_SEGS", 1)])
