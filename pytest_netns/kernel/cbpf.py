"""Classic BPF programs for tc's `bpf` classifier: steal, cut and drop without gact.

This kernel has no gact/police actions, so tc cannot say "drop" the usual
way. cls_bpf can, with a *classic* BPF program in direct-action mode (its
return value is the tc verdict: 2 = TC_ACT_SHOT). Classic programs go to the
kernel inside the netlink request (TCA_BPF_OPS): no bpf() syscall, no
verifier log, no pinned objects to clean up, and a filter vanishes with its
qdisc or device. cls_bpf pushes the MAC header back at ingress, so packet
offsets count from the Ethernet header on both hooks.

Programs here:

* `steal_unmarked(mark)`: match (-1) every frame whose skb mark differs from
  `mark`, so an attached mirred action redirects it to the forwarder's sink;
  frames the forwarder re-injects carry `mark` and pass.
* `drop_all()`: direct action, drop everything (a cut link, ARP included).
* `drop_flows(cuts)`: direct action, drop IPv4/IPv6 packets whose
  (source, destination) fall in one of the cuts; everything else goes on to
  the next filter (TC_ACT_UNSPEC), so several partitions can overlap. IPv6
  neighbour discovery is exempt, as ARP is, so a one-way cut leaves address
  resolution working in the other direction.

Frames carrying a VLAN tag inside the packet data are not parsed (topology
links carry untagged frames).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import InvalidImpairmentError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# linux/filter.h, linux/bpf_common.h
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS = 0x20, 0x28, 0x30
_ALU_AND_K = 0x54
_JMP_JA, _JMP_JEQ_K, _JMP_JGT_K, _JMP_JGE_K = 0x05, 0x15, 0x25, 0x35
_RET_K = 0x06
_SKF_AD_MARK = -0x1000 + 20  # SKF_AD_OFF + SKF_AD_MARK
BPF_MAXINSNS = 4096

# tc verdicts (linux/pkt_cls.h)
TC_ACT_UNSPEC = -1
TC_ACT_OK = 0
TC_ACT_SHOT = 2

_ETH_P_IP, _ETH_P_IPV6 = 0x0800, 0x86DD
_V4_SRC, _V4_DST = 14 + 12, 14 + 16
_V6_NEXTHDR, _V6_SRC, _V6_DST, _ICMP6_TYPE = 14 + 6, 14 + 8, 14 + 24, 14 + 40
_ND_FIRST, _ND_LAST = 133, 137  # router solicitation .. redirect


@dataclass(frozen=True)
class Cut:
    """Packets from any of `sources` to any of `destinations` are dropped."""

    sources: tuple[IPNetwork, ...]
    destinations: tuple[IPNetwork, ...]


def networks(items: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """Addresses or prefixes ("10.0.0.1", "10.0.0.0/24", "fd00::1") as networks."""
    return tuple(
        ipaddress.ip_network(item, strict=False) if isinstance(item, str) else item
        for item in items
    )


class _Assembler:
    """Instructions with forward labels; long jumps use `ja` (32-bit offset).

    Conditional jumps carry 8-bit offsets, so they only ever skip a few
    instructions; anything farther goes through an unconditional `ja`.
    """

    def __init__(self) -> None:
        self._items: list[tuple[int, int, int, int | str]] = []
        self._labels: dict[str, int] = {}
        self._fresh = 0

    def new_label(self) -> str:
        self._fresh += 1
        return f"L{self._fresh}"

    def place(self, label: str) -> None:
        self._labels[label] = len(self._items)

    def op(self, code: int, k: int, jt: int = 0, jf: int = 0) -> None:
        self._items.append((code, jt, jf, k))

    def ja(self, label: str) -> None:
        self._items.append((_JMP_JA, 0, 0, label))

    def ret(self, verdict: int) -> None:
        self.op(_RET_K, verdict)

    def assemble(self) -> bytes:
        if len(self._items) > BPF_MAXINSNS:
            raise InvalidImpairmentError(
                f"this partition needs a classic BPF program of {len(self._items)} "
                f"instructions, over the kernel's limit of {BPF_MAXINSNS} (about 1,000 IPv4 "
                "or 250 IPv6 addresses): partition fewer nodes, or fewer addresses each")
        out = bytearray()
        for pc, (code, jt, jf, k) in enumerate(self._items):
            target = self._labels[k] - pc - 1 if isinstance(k, str) else k
            out += struct.pack("=HBBI", code, jt, jf, target & 0xFFFFFFFF)
        return bytes(out)


def steal_unmarked(mark: int) -> bytes:
    """Match (-1) unless the skb mark is `mark`; for a filter with a mirred action."""
    asm = _Assembler()
    asm.op(_LD_W_ABS, _SKF_AD_MARK)
    asm.op(_JMP_JEQ_K, mark, jt=0, jf=1)
    asm.ret(0)
    asm.ret(-1)
    return asm.assemble()


def drop_all() -> bytes:
    """Direct action: drop every frame."""
    asm = _Assembler()
    asm.ret(TC_ACT_SHOT)
    return asm.assemble()


def drop_flows(cuts: Sequence[Cut]) -> bytes:
    """Direct action: drop IP packets matching any cut, pass ND, defer the rest."""
    asm = _Assembler()
    v4, v6 = asm.new_label(), asm.new_label()
    asm.op(_LD_H_ABS, 12)
    asm.op(_JMP_JEQ_K, _ETH_P_IP, jt=0, jf=1)
    asm.ja(v4)
    asm.op(_JMP_JEQ_K, _ETH_P_IPV6, jt=0, jf=1)
    asm.ja(v6)
    asm.ret(TC_ACT_UNSPEC)

    asm.place(v4)
    _cut_checks(asm, cuts, 4, _V4_SRC, _V4_DST)
    asm.ret(TC_ACT_UNSPEC)

    asm.place(v6)
    asm.op(_LD_B_ABS, _V6_NEXTHDR)
    asm.op(_JMP_JEQ_K, 58, jt=0, jf=4)
    asm.op(_LD_B_ABS, _ICMP6_TYPE)
    asm.op(_JMP_JGE_K, _ND_FIRST, jt=0, jf=2)
    asm.op(_JMP_JGT_K, _ND_LAST, jt=1, jf=0)
    asm.ret(TC_ACT_UNSPEC)
    _cut_checks(asm, cuts, 6, _V6_SRC, _V6_DST)
    asm.ret(TC_ACT_UNSPEC)
    return asm.assemble()


def _cut_checks(
    asm: _Assembler, cuts: Sequence[Cut], version: int, src_off: int, dst_off: int
) -> None:
    for cut in cuts:
        sources = [n for n in cut.sources if n.version == version]
        destinations = [n for n in cut.destinations if n.version == version]
        if not sources or not destinations:
            continue
        miss = asm.new_label()
        _member(asm, sources, src_off, miss)
        _member(asm, destinations, dst_off, miss)
        asm.ret(TC_ACT_SHOT)
        asm.place(miss)


def _member(asm: _Assembler, nets: Sequence[IPNetwork], offset: int, miss: str) -> None:
    """Fall through if the address at `offset` is in one of `nets`, else jump to `miss`."""
    hit = asm.new_label()
    for net in nets:
        address = net.network_address.packed
        mask = net.netmask.packed
        next_net = asm.new_label()
        for i in range(0, len(address), 4):
            (m,) = struct.unpack("!I", mask[i : i + 4])
            if m == 0:
                continue
            (value,) = struct.unpack("!I", address[i : i + 4])
            asm.op(_LD_W_ABS, offset + i)
            if m != 0xFFFFFFFF:
                asm.op(_ALU_AND_K, m)
            asm.op(_JMP_JEQ_K, value, jt=1, jf=0)
            asm.ja(next_net)
        asm.ja(hit)
        asm.place(next_net)
    asm.ja(miss)
    asm.place(hit)
