"""Link cuts (`Link.down()`) and partitions, as drops where packets arrive.

Both are tc ingress filters (classic BPF in direct-action mode, see
`cbpf`) on receiving interfaces. Nothing is dropped on a sender's own
egress, so senders see no local error (EPERM, ENOBUFS) and TCP simply
retransmits, as across a real outage. No firewall is touched: the root
namespace's ends of host links and NAT uplinks are our own veths, and a tc
filter on them changes nothing else of the host. Applying and healing is
one netlink round trip per interface, checked by reading the filter back.

A cut drops everything, ARP included, on both ends of a link: unlike
setting a veth end down, it keeps the link's routes (which "down" deletes
in the node whose end goes down), keeps nothing queued for delivery after
the heal (admin-down parks ~128 packets in the ARP queue and delivered 31
stale datagrams of a 1 kpps stream after "up"), and never blocks a
sender (a blocking UDP send() waited up to 3 s with the far end down).

A partition drops by (source, destination) address pairs, so its filter
can sit on every interface of the topology and catch a packet at the first
hop that sees it: traffic a router masquerades on its way to the host is
caught at the router's inside interface, before NAT hides its source. ARP
is never dropped and IPv6 neighbour discovery is exempt, so a one-way cut
leaves address resolution working in the other direction.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from ..errors import ImpairmentError, InvalidImpairmentError
from . import tc
from .cbpf import Cut, IPNetwork, drop_all, drop_flows, networks
from .impairment import Endpoint
from .rtnl import Rtnl

CUT_PRIO = 2
"""Ingress priority of a link cut."""
PARTITION_FIRST_PRIO = 100
"""Partitions take 100, 101, ... (one priority per live partition of a topology)."""


def partition_cuts(groups: Sequence[Iterable[str | IPNetwork]],
                   oneway: bool = False) -> list[Cut]:
    """The address cuts of a partition: between all groups, or from the first to the others.

    Each group is the addresses (or prefixes) of its members, including the
    host's addresses on topology links when "host" is a member.
    """
    sets = [networks(group) for group in groups]
    if len(sets) < 2:
        raise InvalidImpairmentError(f"a partition needs at least two groups, got {len(sets)}")
    for (i, a), (j, b) in itertools.combinations(enumerate(sets), 2):
        shared = set(a) & set(b)
        if shared:
            raise InvalidImpairmentError(
                f"groups {i + 1} and {j + 1} share {sorted(map(str, shared))}; "
                "a member may be in one group only")
    if oneway:
        return [Cut(sets[0], other) for other in sets[1:]]
    return [Cut(a, b) for a, b in itertools.permutations(sets, 2)]


class Drop:
    """One drop filter on many receiving interfaces, applied and healed as a whole."""

    def __init__(self, receivers: Sequence[Endpoint], program: bytes, prio: int,
                 what: str) -> None:
        self._receivers = list(receivers)
        self._program = program
        self._prio = prio
        self.what = what
        self._active: list[Endpoint] = []

    @classmethod
    def link_cut(cls, ends: Sequence[Endpoint], what: str) -> Drop:
        """Both ends of a link drop everything they receive, ARP included."""
        return cls(ends, drop_all(), CUT_PRIO, what)

    @classmethod
    def partition(cls, receivers: Sequence[Endpoint], cuts: Sequence[Cut], prio: int,
                  what: str) -> Drop:
        return cls(receivers, drop_flows(cuts), prio, what)

    @property
    def active(self) -> bool:
        return bool(self._active)

    @property
    def prio(self) -> int:
        return self._prio

    def apply(self) -> None:
        """Install on every receiver and read it back; on failure, remove what was installed."""
        prio, program = self._prio, self._program

        def install(rt: Rtnl, index: int) -> bool:
            tc.ensure_clsact(rt, index)
            tc.replace_filter(rt, tc.bpf_filter_body(index, tc.TC_H_INGRESS_HOOK, prio, program,
                                                     direct_action=True))
            return (prio, tc.FILTER_HANDLE) in tc.filters(rt, index, tc.TC_H_INGRESS_HOOK)

        try:
            for receiver in self._receivers:
                self._active.append(receiver)
                if not receiver.run(self.what, install):
                    raise ImpairmentError(f"{self.what}: the drop filter installed on "
                                          f"{receiver.label} is not there when read back")
        except BaseException:
            self.heal()
            raise

    def heal(self) -> None:
        """Remove the filters (idempotent); clsact goes when nothing else uses it."""
        prio = self._prio

        def remove(rt: Rtnl, index: int) -> None:
            tc.delete_filter(rt, index, tc.TC_H_INGRESS_HOOK, prio)
            tc.release_clsact(rt, index)

        while self._active:
            receiver = self._active.pop()
            receiver.run(f"heal {self.what}", remove, missing_ok=True)
