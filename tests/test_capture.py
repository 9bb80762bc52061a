"""Packet capture: one pcap per link, every frame once, readable by standard tools.

The captures are read back with tools that are not pytest-netns: scapy's
`rdpcap` and tcpdump (libpcap, the reader Wireshark uses too). Traffic is
made with busybox `ping` inside the nodes, so the number of frames on the
wire is known exactly.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from netcheck import busybox

from pytest_netns.report.capture import start_capture, tap_points
from pytest_netns.report.pcap import LINKTYPE_ETHERNET, MAGIC


def icmp(path: Path) -> list[tuple[str, str, int]]:
    """(src, dst, icmp type) of every IPv4 ICMP packet in the pcap, read by scapy."""
    from scapy.layers.inet import ICMP, IP
    from scapy.utils import rdpcap

    return [(p[IP].src, p[IP].dst, int(p[ICMP].type)) for p in rdpcap(str(path)) if ICMP in p]


def tcpdump(path: Path) -> str:
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    done = subprocess.run(["tcpdump", "-nr", str(path)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert "link-type EN10MB (Ethernet)" in done.stderr
    return done.stdout


def ping(node: Any, ip: str, count: int) -> None:
    code, out = busybox(node, "ping", "-c", str(count), "-i", "0.2", "-W", "2", ip)
    assert code == 0, out


def test_a_switch_records_every_frame_once(make_topology: Callable[..., Any],
                                           tmp_path: Path) -> None:
    t = make_topology(label="cap")
    t.node("a")
    t.node("b")
    t.node("c")
    lan = t.switch("lan")
    for n in "abc":
        t.connect(n, lan)
    net = t.build()
    a, b = net["a"].ip, net["b"].ip
    cap = start_capture(net, str(tmp_path), "cap")
    ping(net["a"], b, 3)
    links = cap.stop()
    assert [(ln.segment, ln.interfaces) for ln in links] == [
        ("lan", ["lan:p0", "lan:p1", "lan:p2"])
    ]
    packets = icmp(tmp_path / "cap-lan.pcap")
    # each echo enters the bridge through exactly one port: no duplicates
    assert packets.count((a, b, 8)) == 3
    assert packets.count((b, a, 0)) == 3
    assert links[0].frames >= 6
    assert links[0].drops == 0
    text = tcpdump(tmp_path / "cap-lan.pcap")
    assert len(re.findall(rf"IP {re.escape(a)} > {re.escape(b)}: ICMP echo request", text)) == 3
    # merged from three ports in kernel-time order
    stamps = re.findall(r"^(\d\d:\d\d:\d\d\.\d+) ", text, re.M)
    assert stamps == sorted(stamps)


def test_links_and_guest_only_nics_are_captured_at_the_node_end(
    make_topology: Callable[..., Any], tmp_path: Path
) -> None:
    t = make_topology(label="mix")
    t.node("a")
    t.node("b")
    link = t.connect("a", "b")
    up = t.connect("a", t.HOST)
    stub = t.stub("b", ip="172.16.5.10", prefixlen=24, iface="eth9")
    net = t.build()
    points = {p.segment: (p.node, p.ingress_only) for p in tap_points(net)}
    # the host end of a link is never tapped: the root namespace stays untouched
    assert points == {link: ("a", False), up: ("a", False), stub: ("b", False)}
    cap = start_capture(net, str(tmp_path), "mix")
    ping(net["a"], net.segments[link].ip_of("b"), 2)
    busybox(net["b"], "ping", "-c", "1", "-W", "1", "172.16.5.99")  # nobody answers
    from pytest_netns.nodes.host import host

    host_ip, a_up = net.segments[up].ip_of("host"), net.segments[up].ip_of("a")
    assert host().exec(["busybox", "ping", "-c", "1", "-W", "2", a_up])[0] == 0
    cap.stop()
    on_link = icmp(tmp_path / f"mix-{link}.pcap")
    a_ip, b_ip = net.segments[link].ip_of("a"), net.segments[link].ip_of("b")
    # both directions at one end
    assert on_link.count((a_ip, b_ip, 8)) == 2
    assert on_link.count((b_ip, a_ip, 0)) == 2
    uplink = icmp(tmp_path / f"mix-{up}.pcap")
    assert (host_ip, a_up, 8) in uplink
    # a guest-only NIC shows what b tried to send to a neighbour that is not there
    assert ("172.16.5.10", "172.16.5.99", 8) in icmp(tmp_path / f"mix-{stub}.pcap")


def test_pcap_is_classic_libpcap_ethernet(make_topology: Callable[..., Any],
                                          tmp_path: Path) -> None:
    t = make_topology(label="fmt")
    t.node("a")
    t.node("b")
    seg = t.connect("a", "b")
    net = t.build()
    cap = start_capture(net, str(tmp_path), "fmt")
    ping(net["a"], net["b"].ip, 1)
    (link,) = cap.stop()
    raw = Path(link.path).read_bytes()
    magic, major, minor, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", raw)
    assert (magic, major, minor, linktype) == (MAGIC, 2, 4, LINKTYPE_ETHERNET)
    assert snaplen >= 65535
    # the records add up to the file exactly
    offset, records = 24, 0
    while offset < len(raw):
        _, _, caplen, origlen = struct.unpack_from("<IIII", raw, offset)
        assert 14 <= caplen <= origlen
        offset += 16 + caplen
        records += 1
    assert offset == len(raw)
    assert records == link.frames
    assert link.path.endswith(f"fmt-{seg}.pcap")


def test_wireshark_reads_the_pcap(make_topology: Callable[..., Any], tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("Wireshark's tshark is not installed")
    t = make_topology(label="ws")
    t.node("a")
    t.node("b")
    t.connect("a", "b")
    net = t.build()
    cap = start_capture(net, str(tmp_path), "ws")
    ping(net["a"], net["b"].ip, 2)
    (link,) = cap.stop()
    done = subprocess.run(["tshark", "-r", link.path, "-Y", "icmp", "-T", "fields", "-e",
                           "frame.encap_type", "-e", "ip.src", "-e", "icmp.type"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    a, b = net["a"].ip, net["b"].ip
    # encapsulation 1 is Wireshark's Ethernet
    assert done.stdout.split("\n").count(f"1\t{a}\t8") == 2, done.stdout
    assert done.stdout.split("\n").count(f"1\t{b}\t0") == 2, done.stdout


def test_closing_the_topology_stops_its_capture(make_topology: Callable[..., Any],
                                                tmp_path: Path) -> None:
    t = make_topology(label="early")
    t.node("a")
    t.node("b")
    t.connect("a", "b")
    net = t.build()
    cap = start_capture(net, str(tmp_path), "early")
    ping(net["a"], net["b"].ip, 1)
    net.close()  # early, as a test may do; the capture must let go first
    (link,) = cap.stop()  # already stopped: same result, no error
    assert link.frames >= 2
    assert icmp(Path(link.path)).count((net["a"].ip, net["b"].ip, 8)) == 1


def test_a_failed_test_keeps_pcaps_holding_the_failing_probe(
    pytester: pytest.Pytester, netns_backend: str
) -> None:
    from test_report import expected, run

    result = run(pytester, netns_backend, "--netns-capture=on-failure")
    result.assert_outcomes(failed=1, passed=1)
    folder = pytester.path / ".netns-artifacts" / "test_net.py_test_unreachable"
    pcaps = sorted(p.name for p in folder.glob("*.pcap"))
    assert pcaps[0] == "office-lan.pcap"
    assert re.fullmatch(r"office-link\d+\.pcap", pcaps[1]) and len(pcaps) == 2
    exp = expected(pytester)
    a, c = str(exp["a"]), str(exp["c"])
    for name in pcaps:
        packets = icmp(folder / name)
        # the failing probe's echo requests crossed the switch and the r-c link ...
        assert (a, c, 8) in packets, name
        # ... and c, told to ignore them, never answered
        assert (c, a, 0) not in packets, name
        assert f"IP {a} > {c}: ICMP echo request" in tcpdump(folder / name)
    result.stdout.fnmatch_lines(["captured * frames into 2 pcaps *"])
    # on-failure: the passing test's captures were discarded
    assert not (pytester.path / ".netns-artifacts" / "test_net.py_test_fine").exists()


def test_always_keeps_the_captures_of_passing_tests(pytester: pytest.Pytester) -> None:
    from test_report import run

    result = run(pytester, "namespace", "--netns-capture=always", "-k", "fine")
    result.assert_outcomes(passed=1, deselected=1)
    folder = pytester.path / ".netns-artifacts" / "test_net.py_test_fine"
    (pcap,) = folder.glob("fine-link*.pcap")
    packets = icmp(pcap)
    assert any(t == 8 for _, _, t in packets) and any(t == 0 for _, _, t in packets)
    assert not (folder / "network.dot").exists()  # a diagram is for failures only
