"""The forwarder's packet surgery and timing decisions, on hand-built frames (no root).

Splitting a TCP GSO super-packet must give exactly the segments the wire
would carry (lengths, ids, sequence numbers, flags, checksums the receiver
accepts), and a corrupted frame must fail the receiver's checksum.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import statistics
import struct

import pytest

from pytest_netns.kernel.forwarder import (
    VNET_HDR,
    PathConfig,
    corrupt_frame,
    internet_checksum,
    segment_tcp,
)


def eth(ethertype: int, payload: bytes) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype) + payload


def pseudo_sum(src: bytes, dst: bytes, length: int) -> int:
    total = sum(struct.unpack(f"!{(len(src) + len(dst)) // 2}H", src + dst)) + 6 + length
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(total)


def finish_checksum(vnet: bytes, frame: bytes) -> bytes:
    """What the kernel does to a NEEDS_CSUM frame before it leaves."""
    flags, _, _, _, start, offset = VNET_HDR.unpack(vnet)
    if not flags & 1:
        return frame
    data = bytearray(frame)
    struct.pack_into("!H", data, start + offset, internet_checksum(data[start:]))
    return bytes(data)


def super_packet(version: int, payload: bytes, mss: int, flags: int = 0x18) -> tuple[bytes, bytes]:
    """A GSO TCP super-packet as the egress hook sees it: partial checksum, vnet header."""
    tcp = struct.pack("!HHIIBBHHH", 40000, 5001, 1000, 7, 5 << 4, flags, 512, 0, 0)
    if version == 4:
        src, dst = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 77, 0x4000, 64, 6, 0,
                         src, dst)
        gso_type, ethertype = 1, 0x0800
    else:
        src = ipaddress.IPv6Address("fd00::1").packed
        dst = ipaddress.IPv6Address("fd00::2").packed
        ip = struct.pack("!IHBB", 0x60000000, 20 + len(payload), 6, 64) + src + dst
        gso_type, ethertype = 4, 0x86DD
    start = 14 + len(ip)
    frame = bytearray(eth(ethertype, ip + tcp + payload))
    struct.pack_into("!H", frame, start + 16, pseudo_sum(src, dst, 20 + len(payload)))
    return VNET_HDR.pack(1, gso_type, start + 20, mss, start, 16), bytes(frame)


@pytest.mark.parametrize("version", [4, 6])
def test_segment_tcp(version: int) -> None:
    payload = bytes(range(256)) * 20  # 5120 bytes: 3 full segments of 1448 and 776
    vnet, frame = super_packet(version, payload, 1448, flags=0x19 | 0x80)  # FIN PSH ACK CWR
    segments = segment_tcp(vnet, frame)
    assert len(segments) == 4
    start = 14 + (20 if version == 4 else 40)
    rebuilt = b""
    for n, seg in enumerate(segments):
        seg_vnet = seg[: VNET_HDR.size]
        seg_frame = finish_checksum(seg_vnet, seg[VNET_HDR.size :])
        assert VNET_HDR.unpack(seg_vnet)[1] == 0  # no longer GSO
        body = seg_frame[start + 20 :]
        rebuilt += body
        if version == 4:
            assert struct.unpack_from("!H", seg_frame, 16)[0] == len(seg_frame) - 14
            assert internet_checksum(seg_frame[14:34]) == 0  # header checksum valid
            assert struct.unpack_from("!H", seg_frame, 18)[0] == 77 + n
            src, dst = seg_frame[26:30], seg_frame[30:34]
        else:
            assert struct.unpack_from("!H", seg_frame, 18)[0] == 20 + len(body)
            src, dst = seg_frame[22:38], seg_frame[38:54]
        assert struct.unpack_from("!I", seg_frame, start + 4)[0] == 1000 + 1448 * n
        flags = seg_frame[start + 13]
        assert bool(flags & 0x80) == (n == 0)  # CWR on the first only
        assert bool(flags & 0x09) == (n == 3)  # FIN and PSH on the last only
        total = pseudo_sum(src, dst, 20 + len(body)) + (~internet_checksum(seg_frame[start:])
                                                        & 0xFFFF)
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        assert total == 0xFFFF  # the receiver's check passes
    assert rebuilt == payload


def test_frames_that_are_not_gso_pass_whole() -> None:
    vnet = VNET_HDR.pack(0, 0, 0, 0, 0, 0)
    arp = eth(0x0806, b"\0" * 28)
    assert segment_tcp(vnet, arp) == [vnet + arp]


def test_corruption_settles_the_checksum_first_and_flips_one_bit() -> None:
    _, frame = super_packet(4, b"hello world!", 1448)
    plain = VNET_HDR.pack(1, 0, 0, 0, 34, 16)
    new_vnet, damaged = corrupt_frame(plain, frame, random.Random(1))
    assert not VNET_HDR.unpack(new_vnet)[0] & 1  # checksum now complete
    assert damaged[:14] == frame[:14]  # the Ethernet header is spared, so it still arrives
    flipped = sum(bin(a ^ b).count("1")
                  for a, b in zip(damaged, finish_checksum(plain, frame), strict=True))
    assert flipped == 1


def test_delays_follow_their_distribution() -> None:
    rng = random.Random(7)
    uniform = [PathConfig(delay=0.05, jitter=0.01).due_in(rng) for _ in range(20000)]
    assert min(uniform) >= 0.04 and max(uniform) <= 0.06
    assert statistics.pstdev(uniform) == pytest.approx(0.01 / 3**0.5, rel=0.03)
    normal = [PathConfig(delay=0.05, jitter=0.01, distribution="normal").due_in(rng)
              for _ in range(20000)]
    assert statistics.pstdev(normal) == pytest.approx(0.01, rel=0.03)
    assert min(PathConfig(delay=0.001, jitter=0.01).due_in(rng) for _ in range(1000)) == 0.0
    assert PathConfig(loss=0.1).per_packet and not PathConfig(delay=0.1).per_packet
