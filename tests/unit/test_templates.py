"""Probe packets from templates are byte for byte what scapy builds (no root needed).

Templates are built by scapy once and patched per probe; scapy, building
each packet from scratch, is the oracle.
"""

from __future__ import annotations

import pytest

from pytest_netns.probes import templates
from pytest_netns.probes.result import PAYLOAD

inet = pytest.importorskip("scapy.layers.inet")
Raw = pytest.importorskip("scapy.packet").Raw


@pytest.mark.parametrize(("ident", "seq"), [(1, 1), (0xFFFF, 4), (0x1234, 0xFFFF), (77, 2)])
def test_echo_request_is_what_scapy_builds(ident: int, seq: int) -> None:
    want = bytes(inet.ICMP(type=8, id=ident, seq=seq) / Raw(PAYLOAD))
    assert templates.echo_request(ident, seq) == want


@pytest.mark.parametrize(("src", "dst", "sport", "dport", "seq"), [
    ("10.64.0.2", "10.64.0.3", 40000, 80, 1),
    ("192.168.1.1", "10.0.0.1", 65535, 1, 0xFFFFFFFF),
    ("172.16.0.10", "172.16.0.11", 1024, 9, 0x12345678),
])
def test_tcp_syn_is_what_scapy_builds(src: str, dst: str, sport: int, dport: int,
                                      seq: int) -> None:
    want = bytes(inet.IP(src=src, dst=dst) / inet.TCP(sport=sport, dport=dport, flags="S",
                                                      seq=seq, window=64240))[20:]
    assert templates.tcp_syn(src, dst, sport, dport, seq) == want


def test_echo_reply_is_recognised_and_everything_else_is_not() -> None:
    def reply(**fields: int) -> bytes:
        return bytes(inet.IP(src="10.0.0.2", dst="10.0.0.1") / inet.ICMP(**fields)
                     / Raw(PAYLOAD))

    assert templates.echo_reply(reply(type=0, id=9, seq=3), 20) == (9, 3)
    assert templates.echo_reply(reply(type=8, id=9, seq=3), 20) is None  # a request
    other = bytes(inet.IP() / inet.ICMP(type=0, id=9, seq=3) / Raw(b"someone else"))
    assert templates.echo_reply(other, 20) is None
    broken = bytearray(reply(type=0, id=9, seq=3))
    broken[-1] ^= 0xFF  # payload changed after the checksum was computed
    assert templates.echo_reply(bytes(broken), 20) is None


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x45\x00\x00\x1c", bytes(range(255))])
def test_checksum_is_scapys(data: bytes) -> None:
    from scapy.utils import checksum

    assert templates.checksum(data) == checksum(data)


@pytest.mark.parametrize("flags", ["SA", "R", "RA"])
def test_answers_to_a_syn_are_read_where_scapy_puts_them(flags: str) -> None:
    answer = bytes(inet.IP(src="10.0.0.2", dst="10.0.0.1", options=[])
                   / inet.TCP(sport=80, dport=40000, flags=flags, seq=5, ack=0x12345679))
    assert templates.syn_answer(answer, 20) == (0x12345679, int(inet.TCP(flags=flags).flags))


@pytest.mark.parametrize(("ident", "seq"), [(1, 1), (0xFFFF, 4), (0x1234, 0xFFFF)])
def test_ipv6_echo_request_is_what_scapy_builds_before_the_kernel_checksums_it(
        ident: int, seq: int) -> None:
    inet6 = pytest.importorskip("scapy.layers.inet6")
    want = bytes(inet6.ICMPv6EchoRequest(id=ident, seq=seq, cksum=0) / Raw(PAYLOAD))
    assert templates.echo_request6(ident, seq) == want


def test_ipv6_echo_reply_is_recognised_and_everything_else_is_not() -> None:
    inet6 = pytest.importorskip("scapy.layers.inet6")
    reply = bytes(inet6.ICMPv6EchoReply(id=9, seq=3, cksum=0x1234) / Raw(PAYLOAD))
    assert templates.echo_reply6(reply) == (9, 3)
    request = bytes(inet6.ICMPv6EchoRequest(id=9, seq=3) / Raw(PAYLOAD))
    assert templates.echo_reply6(request) is None
    other = bytes(inet6.ICMPv6EchoReply(id=9, seq=3) / Raw(b"someone else"))
    assert templates.echo_reply6(other) is None


def test_ipv6_tcp_syn_is_what_scapy_builds_before_the_kernel_checksums_it() -> None:
    want = bytes(inet.TCP(sport=40000, dport=80, flags="S", seq=7, window=64240, chksum=0))
    assert templates.tcp_syn6(40000, 80, 7) == want
