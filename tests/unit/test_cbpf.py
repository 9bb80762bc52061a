"""The classic BPF programs of cuts, partitions and the steal filter, run by an interpreter.

The kernel runs these programs; here a small interpreter of the opcodes
they use runs them on hand-built frames (no root), so every verdict is
checked against the frame it was given, not against our own assembler.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from pytest_netns.errors import InvalidImpairmentError
from pytest_netns.kernel.cbpf import (
    TC_ACT_SHOT,
    TC_ACT_UNSPEC,
    Cut,
    drop_all,
    drop_flows,
    networks,
    steal_unmarked,
)
from pytest_netns.kernel.drops import partition_cuts
from pytest_netns.kernel.forwarder import DEFAULT_MARK

MARK_OFFSET = (-0x1000 + 20) & 0xFFFFFFFF  # SKF_AD_OFF + SKF_AD_MARK


def run_cbpf(program: bytes, frame: bytes, mark: int = 0) -> int:
    """Interpret the subset of classic BPF our programs use; return the signed verdict."""
    insns = [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]
    a, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code in (0x20, 0x28, 0x30):  # ld w/h/b abs
            if k >= 0x80000000:
                assert k == MARK_OFFSET, "only the mark is read as ancillary data"
                a = mark
            else:
                size = {0x20: 4, 0x28: 2, 0x30: 1}[code]
                if k + size > len(frame):
                    return 0  # a short packet aborts the program, as in the kernel
                a = int.from_bytes(frame[k : k + size], "big")
        elif code == 0x54:  # and #k
            a &= k
        elif code == 0x05:  # ja
            pc += k
        elif code in (0x15, 0x25, 0x35):  # jeq, jgt, jge
            taken = {0x15: a == k, 0x25: a > k, 0x35: a >= k}[code]
            pc += jt if taken else jf
        elif code == 0x06:  # ret #k
            return int(k) - (1 << 32) if k >= 0x80000000 else int(k)
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def eth(ethertype: int, payload: bytes) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype) + payload


def ipv4(src: str, dst: str) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return eth(0x0800, header + b"\0" * 8)


def ipv6(src: str, dst: str, next_header: int = 17, icmp_type: int = 0) -> bytes:
    addresses = ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
    header = struct.pack("!IHBB", 0x60000000, 8, next_header, 64) + addresses
    return eth(0x86DD, header + bytes([icmp_type]) + b"\0" * 7)


ARP = eth(0x0806, b"\0" * 28)


def test_steal_takes_everything_but_the_forwarders_own_frames() -> None:
    program = steal_unmarked(DEFAULT_MARK)
    assert run_cbpf(program, ARP, mark=0) == -1
    assert run_cbpf(program, ipv4("10.0.0.1", "10.0.0.2"), mark=7) == -1
    assert run_cbpf(program, ARP, mark=DEFAULT_MARK) == 0


def test_a_cut_drops_everything() -> None:
    for frame in (ARP, ipv4("10.0.0.1", "10.0.0.2"), ipv6("fd00::1", "fd00::2", 58, 135)):
        assert run_cbpf(drop_all(), frame) == TC_ACT_SHOT


def test_partition_both_ways() -> None:
    program = drop_flows(partition_cuts([["10.0.0.1", "fd00::1"],
                                         ["10.0.1.0/24", "fd00:1::/64"]]))
    assert run_cbpf(program, ipv4("10.0.0.1", "10.0.1.9")) == TC_ACT_SHOT
    assert run_cbpf(program, ipv4("10.0.1.200", "10.0.0.1")) == TC_ACT_SHOT
    assert run_cbpf(program, ipv4("10.0.0.2", "10.0.1.9")) == TC_ACT_UNSPEC  # not a member
    assert run_cbpf(program, ipv4("10.0.1.1", "10.0.1.9")) == TC_ACT_UNSPEC  # inside a group
    assert run_cbpf(program, ipv6("fd00::1", "fd00:1::5")) == TC_ACT_SHOT
    assert run_cbpf(program, ipv6("fd00:1::5", "fd00::1")) == TC_ACT_SHOT
    assert run_cbpf(program, ipv6("fd00::2", "fd00:1::5")) == TC_ACT_UNSPEC
    assert run_cbpf(program, ARP) == TC_ACT_UNSPEC


def test_oneway_partition_spares_arp_and_neighbour_discovery() -> None:
    program = drop_flows(partition_cuts([["10.0.0.1", "fd00::1"], ["10.0.0.2", "fd00::2"]],
                                        oneway=True))
    assert run_cbpf(program, ipv4("10.0.0.1", "10.0.0.2")) == TC_ACT_SHOT
    assert run_cbpf(program, ipv4("10.0.0.2", "10.0.0.1")) == TC_ACT_UNSPEC
    assert run_cbpf(program, ARP) == TC_ACT_UNSPEC
    assert run_cbpf(program, ipv6("fd00::1", "fd00::2", 58, 136)) == TC_ACT_UNSPEC  # advert
    assert run_cbpf(program, ipv6("fd00::1", "fd00::2", 58, 128)) == TC_ACT_SHOT  # echo
    assert run_cbpf(program, ipv6("fd00::1", "fd00::2", 58, 138)) == TC_ACT_SHOT


def test_majority_minority_and_three_groups() -> None:
    a, b, c, d, e = (f"10.0.0.{i}" for i in range(1, 6))
    program = drop_flows(partition_cuts([[a, b, c], [d, e]]))
    assert run_cbpf(program, ipv4(a, c)) == TC_ACT_UNSPEC
    assert run_cbpf(program, ipv4(d, e)) == TC_ACT_UNSPEC
    assert run_cbpf(program, ipv4(b, e)) == TC_ACT_SHOT
    assert run_cbpf(program, ipv4(e, a)) == TC_ACT_SHOT
    three = drop_flows(partition_cuts([[a], [b], [c, d]]))
    assert [run_cbpf(three, ipv4(s, t)) for s, t in ((a, b), (b, c), (d, a), (c, d))] == [
        TC_ACT_SHOT, TC_ACT_SHOT, TC_ACT_SHOT, TC_ACT_UNSPEC]


def test_intersecting_cuts_and_large_sets() -> None:
    many = [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(300)]
    program = drop_flows([Cut(networks(many), networks(["10.9.0.0/16"])),
                          Cut(networks(["10.9.0.5"]), networks(["0.0.0.0/0"]))])
    assert run_cbpf(program, ipv4("10.1.1.50", "10.9.3.3")) == TC_ACT_SHOT
    assert run_cbpf(program, ipv4("10.9.0.5", "192.0.2.1")) == TC_ACT_SHOT
    assert run_cbpf(program, ipv4("10.1.1.251", "10.9.3.3")) == TC_ACT_UNSPEC
    with pytest.raises(InvalidImpairmentError, match="over the kernel's limit of 4096"):
        drop_flows([Cut(networks([f"fd00::{i:x}" for i in range(1200)]),
                        networks(["fd01::/64"]))])


def test_partition_groups_validated() -> None:
    with pytest.raises(InvalidImpairmentError, match="at least two groups"):
        partition_cuts([["10.0.0.1"]])
    with pytest.raises(InvalidImpairmentError, match=r"groups 1 and 2 share \['10.0.0.1/32'\]"):
        partition_cuts([["10.0.0.1"], ["10.0.0.1", "10.0.0.2"]])
