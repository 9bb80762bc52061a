"""Traffic control over rtnetlink: qdiscs and filters, encoded by hand like the rest of `rtnl`.

The encoders (`*_body`, `*_options`) are pure and compared byte for byte
with pyroute2's encoding in the unit tests, without root; the senders take
an `rtnl.Rtnl` opened inside the device's namespace, one round trip each.

Layout on an impaired sending interface `x_if` (direction x -> y):

* kernels with netem: root `netem` (handle 1:), with a `tbf` child (10:)
  for rate;
* elsewhere: `clsact` with an egress `bpf` filter (priority 1) that steals
  unmarked frames to the forwarder's sink veth (mirred egress redirect),
  and a root `tbf` (1:) for rate, which the frames the forwarder sends
  back pass through.

Drops (a link cut, partitions) are ingress `bpf` filters in direct-action
mode on receiving interfaces, one priority per owner. Every filter of
ours has handle 0x4e4e: the kernel keeps no name for a classic BPF
program, so that handle and the priority are how `tc filter show` (and a
reader of a report) recognises it.
"""

from __future__ import annotations

import errno
import math
import statistics
import struct
import sys

from .rtnl import Rtnl, RtnlError, attr, parse_attrs, text, u16, u32, u64

RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 44, 45, 46
TCMSG = struct.Struct("=BxxxiIII")  # struct tcmsg
TCA_KIND, TCA_OPTIONS = 1, 2

TC_H_ROOT = 0xFFFFFFFF
TC_H_CLSACT = 0xFFFFFFF1
TC_H_INGRESS_HOOK = 0xFFFFFFF2
TC_H_EGRESS_HOOK = 0xFFFFFFF3
CLSACT_HANDLE = 0xFFFF0000
ROOT_HANDLE = 0x00010000  # "1:"
NETEM_CHILD_PARENT = 0x00010001  # "1:1"
NETEM_CHILD_HANDLE = 0x000A0000  # "10:"
ETH_P_ALL = 0x0003
FILTER_HANDLE = 0x4E4E

# cls_bpf (linux/pkt_cls.h)
TCA_BPF_ACT, TCA_BPF_OPS_LEN, TCA_BPF_OPS, TCA_BPF_FLAGS = 1, 4, 5, 8
TCA_BPF_FLAG_ACT_DIRECT = 1
# actions (linux/rtnetlink.h, linux/tc_act/tc_mirred.h)
TCA_ACT_KIND, TCA_ACT_OPTIONS = 1, 2
TCA_MIRRED_PARMS = 2
TC_ACT_STOLEN = 4
TCA_EGRESS_REDIR = 1
# tbf (linux/pkt_sched.h)
TCA_TBF_PARMS, TCA_TBF_RATE64, TCA_TBF_BURST = 1, 4, 6
TC_LINKLAYER_ETHERNET = 1
# netem
TCA_NETEM_DELAY_DIST, TCA_NETEM_REORDER, TCA_NETEM_CORRUPT = 2, 3, 4
TCA_NETEM_LATENCY64, TCA_NETEM_JITTER64 = 10, 11
NETEM_QOPT = struct.Struct("=IIIIII")  # struct tc_netem_qopt
NETEM_DIST_SCALE = 8192
NETEM_DIST_SIZE = 4096
NETEM_LIMIT = 10000
"""Packets netem may hold; tc's default of 1000 caps a 1 Gbit/s path delayed 50 ms at ~25 %."""

HZ = 250
"""The timer frequency tbf needs a burst for: rate/HZ bytes at least (250 on common kernels)."""
PSCHED_NS_PER_TICK = 64
TBF_QUEUE_S = 0.05
"""How long tbf may queue at its rate before it drops (tc's `latency`)."""
MTU_FRAME = 1514


def tcmsg(ifindex: int, handle: int = 0, parent: int = 0, info: int = 0) -> bytes:
    """struct tcmsg (family AF_UNSPEC)."""
    return TCMSG.pack(0, ifindex, handle, parent, info)


def filter_info(prio: int, protocol: int = ETH_P_ALL) -> int:
    """tcm_info of a filter: priority in the high 16 bits, protocol (network order) low."""
    return (prio << 16) | int.from_bytes(protocol.to_bytes(2, "big"), sys.byteorder)


def prob_u32(percent: float) -> int:
    """A percentage as the kernel's u32 probability (what tc and pyroute2 send)."""
    return min(int(percent / 100 * 0xFFFFFFFF), 0xFFFFFFFF)


def ns_to_ticks(ns: int) -> int:
    return min(ns // PSCHED_NS_PER_TICK, 0xFFFFFFFF)


# -- qdiscs ------------------------------------------------------------------------


def clsact_body(ifindex: int) -> bytes:
    return tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT) + attr(TCA_KIND, text("clsact"))


def tbf_burst(rate_bps: int, mtu: int = MTU_FRAME) -> int:
    """Bytes of burst: one timer tick's worth of the rate, at least two frames.

    Below rate/HZ the bucket empties between two timer ticks and tbf falls
    short of its rate; much more lets TCP's first round trips burst past it.
    """
    return max(math.ceil(rate_bps / 8 / HZ), 2 * mtu)


def tbf_options(rate_bps: int, latency_s: float = TBF_QUEUE_S, mtu: int = MTU_FRAME) -> bytes:
    """tbf's parameters: the rate, its burst, and `latency_s` of queue at the rate.

    The burst goes as bytes (TCA_TBF_BURST) with `linklayer ethernet`, so no
    rate table is needed; rates above 4 GB/s also go as TCA_TBF_RATE64.
    """
    burst = tbf_burst(rate_bps, mtu)
    rate_bytes = rate_bps // 8
    limit = burst + int(rate_bytes * latency_s)
    buffer_ticks = ns_to_ticks(burst * 10**9 // max(rate_bytes, 1))
    ratespec = struct.pack("=BBHhHI", 0, TC_LINKLAYER_ETHERNET, 0, 0, 0,
                           min(rate_bytes, 0xFFFFFFFF))
    peakspec = struct.pack("=BBHhHI", 0, 0, 0, 0, 0, 0)
    parms = ratespec + peakspec + struct.pack("=III", limit, buffer_ticks, 0)
    body = attr(TCA_TBF_PARMS, parms) + attr(TCA_TBF_BURST, u32(burst))
    if rate_bytes > 0xFFFFFFFF:
        body += attr(TCA_TBF_RATE64, u64(rate_bytes))
    return body


def tbf_body(ifindex: int, rate_bps: int, parent: int = TC_H_ROOT,
             handle: int = ROOT_HANDLE) -> bytes:
    return (tcmsg(ifindex, handle, parent) + attr(TCA_KIND, text("tbf"))
            + attr(TCA_OPTIONS, tbf_options(rate_bps)))


def normal_table() -> bytes:
    """netem's delay distribution for "normal", as iproute2's normal.dist holds it.

    4096 samples of the inverse standard normal CDF, scaled by 8192 and
    clipped to int16 (iproute2 reads the same table from
    /usr/lib/tc/normal.dist, which is not installed everywhere).
    """
    dist = statistics.NormalDist()
    values = []
    for i in range(NETEM_DIST_SIZE):
        p = (4 * i + 0.5) / (4 * NETEM_DIST_SIZE)
        values.append(max(-32768, min(32767, round(dist.inv_cdf(p) * NETEM_DIST_SCALE))))
    return struct.pack(f"={NETEM_DIST_SIZE}h", *values)


def netem_options(delay_s: float = 0.0, jitter_s: float = 0.0, loss: float = 0.0,
                  duplicate: float = 0.0, corrupt: float = 0.0, reorder: float = 0.0,
                  distribution: str = "uniform", limit: int = NETEM_LIMIT) -> bytes:
    """netem's TCA_OPTIONS payload: struct tc_netem_qopt, then attributes.

    The struct is a bare header followed by attributes, as iproute2 sends
    it. Delay and jitter also go as 64-bit nanoseconds (LATENCY64/JITTER64),
    since the u32 tick fields overflow at ~275 s. Reorder needs a gap of 1
    (any packet may be sent early), as tc sets it. Percentages are 0-100.
    """
    delay_ns, jitter_ns = round(delay_s * 1e9), round(jitter_s * 1e9)
    qopt = NETEM_QOPT.pack(ns_to_ticks(delay_ns), limit, prob_u32(loss), 1 if reorder else 0,
                           prob_u32(duplicate), ns_to_ticks(jitter_ns))
    body = qopt
    if reorder:
        body += attr(TCA_NETEM_REORDER, struct.pack("=II", prob_u32(reorder), 0))
    if corrupt:
        body += attr(TCA_NETEM_CORRUPT, struct.pack("=II", prob_u32(corrupt), 0))
    if jitter_ns and distribution == "normal":
        body += attr(TCA_NETEM_DELAY_DIST, normal_table())
    body += attr(TCA_NETEM_LATENCY64, struct.pack("=q", delay_ns))
    body += attr(TCA_NETEM_JITTER64, struct.pack("=q", jitter_ns))
    return body


def netem_body(ifindex: int, options: bytes, parent: int = TC_H_ROOT,
               handle: int = ROOT_HANDLE) -> bytes:
    return tcmsg(ifindex, handle, parent) + attr(TCA_KIND, text("netem")) + attr(TCA_OPTIONS,
                                                                                options)


# -- filters -----------------------------------------------------------------------


def mirred_redirect(target_ifindex: int) -> bytes:
    """An action list holding one action: mirred egress redirect to `target_ifindex`."""
    parms = struct.pack("=IIiiiiI", 0, 0, TC_ACT_STOLEN, 0, 0, TCA_EGRESS_REDIR, target_ifindex)
    action = attr(TCA_ACT_KIND, text("mirred")) + attr(TCA_ACT_OPTIONS,
                                                       attr(TCA_MIRRED_PARMS, parms))
    return attr(1, action)


def bpf_filter_body(ifindex: int, parent: int, prio: int, program: bytes,
                    direct_action: bool = False, redirect_to: int | None = None) -> bytes:
    """A cls_bpf filter running a classic BPF `program` (an array of struct sock_filter)."""
    options = attr(TCA_BPF_OPS_LEN, u16(len(program) // 8)) + attr(TCA_BPF_OPS, program)
    if direct_action:
        options += attr(TCA_BPF_FLAGS, u32(TCA_BPF_FLAG_ACT_DIRECT))
    if redirect_to is not None:
        options += attr(TCA_BPF_ACT, mirred_redirect(redirect_to))
    return (tcmsg(ifindex, FILTER_HANDLE, parent, filter_info(prio))
            + attr(TCA_KIND, text("bpf")) + attr(TCA_OPTIONS, options))


def filter_ref(ifindex: int, parent: int, prio: int) -> bytes:
    """A body naming every filter of one priority, for deletion."""
    return tcmsg(ifindex, 0, parent, filter_info(prio))


def decode_tcmsg(body: bytes) -> tuple[int, int, int, int]:
    """(ifindex, handle, parent, info) of a qdisc or filter a dump returned."""
    _family, ifindex, handle, parent, info = TCMSG.unpack_from(body)
    return ifindex, handle, parent, info


# -- senders -----------------------------------------------------------------------

_GONE = (errno.ENOENT, errno.ENODEV, errno.EINVAL)  # EINVAL: tc's "no such qdisc"


def ensure_clsact(rt: Rtnl, ifindex: int) -> bool:
    """Add clsact unless present; True if this call added it."""
    try:
        rt.request(RTM_NEWQDISC, clsact_body(ifindex), create=True)
    except RtnlError as exc:
        if exc.code == errno.EEXIST:
            return False
        raise
    return True


def replace_qdisc(rt: Rtnl, body: bytes) -> None:
    rt.request(RTM_NEWQDISC, body, replace=True)


def replace_filter(rt: Rtnl, body: bytes) -> None:
    """Add a filter, or atomically replace the one with the same priority and handle."""
    rt.request(RTM_NEWTFILTER, body, replace=True)


def delete_qdisc(rt: Rtnl, ifindex: int, parent: int, handle: int = 0) -> None:
    """Delete a qdisc; one that is already gone (or a vanished device) is not an error."""
    try:
        rt.request(RTM_DELQDISC, tcmsg(ifindex, handle, parent))
    except RtnlError as exc:
        if exc.code not in _GONE:
            raise


def delete_filter(rt: Rtnl, ifindex: int, parent: int, prio: int) -> None:
    """Delete the filters of one priority; already gone is not an error."""
    try:
        rt.request(RTM_DELTFILTER, filter_ref(ifindex, parent, prio))
    except RtnlError as exc:
        if exc.code not in _GONE:
            raise


def filters(rt: Rtnl, ifindex: int, hook: int) -> list[tuple[int, int]]:
    """(priority, handle) of every filter on one clsact hook; none without clsact."""
    try:
        found = rt.dump(RTM_GETTFILTER, tcmsg(ifindex, 0, hook))
    except RtnlError as exc:
        if exc.code in _GONE:
            return []
        raise
    out = []
    for body in found:
        _ifindex, handle, _parent, info = decode_tcmsg(body)
        if handle:  # the kernel also lists a handle-0 entry per priority (its chain head)
            out.append((info >> 16, handle))
    return out


def root_qdisc_kind(rt: Rtnl, ifindex: int) -> str | None:
    """The kind of the device's root qdisc ("tbf", "netem", "noqueue", ...)."""
    for body in rt.dump(RTM_GETQDISC, tcmsg(0)):
        found, _handle, parent, _info = decode_tcmsg(body)
        if found == ifindex and parent == TC_H_ROOT:
            return parse_attrs(body, TCMSG.size).get(TCA_KIND, b"").split(b"\0", 1)[0].decode()
    return None


def release_clsact(rt: Rtnl, ifindex: int) -> bool:
    """Delete clsact once no filter is left on either hook; True if it was deleted.

    Several owners (an impaired direction, a cut, partitions) may hang
    filters on one clsact; asking the kernel spares them a shared count.
    """
    if filters(rt, ifindex, TC_H_INGRESS_HOOK) or filters(rt, ifindex, TC_H_EGRESS_HOOK):
        return False
    delete_qdisc(rt, ifindex, TC_H_CLSACT, CLSACT_HANDLE)
    return True


def netem_available(rt: Rtnl, ifindex: int) -> bool:
    """Whether this kernel has netem: try it on `ifindex` (a scratch device) and undo.

    Use a device nobody else shapes (the loopback of a fresh namespace): the
    probe replaces its root qdisc for an instant. A missing module answers
    ENOENT (no such qdisc kind) or EOPNOTSUPP.
    """
    try:
        replace_qdisc(rt, netem_body(ifindex, netem_options()))
    except RtnlError as exc:
        if exc.code in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL):
            return False
        raise
    delete_qdisc(rt, ifindex, TC_H_ROOT)
    return True
