"""Impairing one direction of a link: what was asked for, and what it puts on the sending interface.

An `Impairment` is the parsed, validated request (delay, jitter, loss,
rate, duplicate, corrupt, reorder). A `Direction` owns everything one
impaired direction x -> y added to x's interface (`x_if`) and removes
exactly that. Which mechanism serves what is decided in one place,
`capabilities()`, tried once per process in a throwaway namespace:

* kernels with netem: a root netem qdisc on x_if (with a tbf child for
  rate). netem drops or duplicates a GSO super-packet whole, so x_if's
  gso_max_segs is set to 1 while impaired (connections opened from then on
  send MSS-sized packets) and restored at clear();
* kernels without it (the machines this was written on have no netem, fq
  or gact): a tc filter steals x_if's frames to a forwarder process (see
  `forwarder.py`: steal filter, sink veth, re-injection with a mark) for
  everything but rate, and a root tbf shapes rate; the frames the forwarder
  sends back pass through that tbf. The forwarder splits GSO packets itself.
  Turning offloads off with ethtool does not help: the kernel forces GSO on
  TCP sockets and segments after tc (measured, see forwarder.py).

Drops happen where a frame leaves x's stack for the wire, never as an error
to the sender: the steal filter returns "stolen", so a lost frame looks
lost on the wire (an nftables drop on the sender's egress made the kernel
kill a TCP connection after 8 s; iptables OUTPUT drop makes send() fail
with EPERM).

Nothing exists before the first impairment: a topology nobody impairs pays
nothing. Changing a live impairment is one netlink request or one control
message. Each change is checked once made: the root qdisc is read back, and
a frame sent unmarked out of x_if must reach the forwarder (`check`), so an
impairment that did not take effect is an `ImpairmentError`, not silence.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ImpairmentError, InvalidImpairmentError, UnsupportedImpairmentError
from ..units import format_percent, format_rate, format_time, parse_percent, parse_rate, parse_time
from . import tc
from .cbpf import drop_all, steal_unmarked
from .ethtool import sync_link_state
from .forwarder import DEFAULT_MARK, PathConfig
from .netlink import Netlink, index_of
from .rtnl import RTM_NEWLINK, Rtnl, RtnlError, new_link_body, veth_peer

if TYPE_CHECKING:
    from .forwarder import ForwarderClient

T = TypeVar("T")

DISTRIBUTIONS = ("uniform", "normal")
STEAL_PRIO = 1
"""Egress priority of the steal filter (it runs first)."""
SINK_MTU = 65535
"""Both ends of a sink pair take the largest MTU, so a GSO frame is never refused on the way."""
CHECK_TIMEOUT = 2.0
"""Seconds a check frame may take to reach the forwarder (microseconds when all is well)."""


@dataclass(frozen=True)
class Impairment:
    """One direction's impairment: seconds, percent (0-100) and bit/s; zero means "not so"."""

    delay: float = 0.0
    jitter: float = 0.0
    distribution: str = "uniform"
    loss: float = 0.0
    rate: int | None = None
    duplicate: float = 0.0
    corrupt: float = 0.0
    reorder: float = 0.0

    @classmethod
    def parse(cls, *, delay: float | str | None = None, jitter: float | str | None = None,
              distribution: str = "uniform", loss: float | str | None = None,
              rate: int | str | None = None, duplicate: float | str | None = None,
              corrupt: float | str | None = None,
              reorder: float | str | None = None) -> Impairment:
        """Validate what a user wrote (see `units`); errors name the value and the valid range."""
        if distribution not in DISTRIBUTIONS:
            raise InvalidImpairmentError(
                f"distribution={distribution!r}; valid: {', '.join(map(repr, DISTRIBUTIONS))}")
        imp = cls(
            delay=parse_time(delay, "delay") if delay is not None else 0.0,
            jitter=parse_time(jitter, "jitter") if jitter is not None else 0.0,
            distribution=distribution,
            loss=parse_percent(loss, "loss") if loss is not None else 0.0,
            rate=parse_rate(rate, "rate") if rate is not None else None,
            duplicate=parse_percent(duplicate, "duplicate") if duplicate is not None else 0.0,
            corrupt=parse_percent(corrupt, "corrupt") if corrupt is not None else 0.0,
            reorder=parse_percent(reorder, "reorder") if reorder is not None else 0.0,
        )
        if imp.jitter and not imp.delay:
            raise InvalidImpairmentError(
                f"jitter={jitter!r} needs a delay: jitter varies the delay around its mean "
                "(give delay=..., e.g. delay='50ms', jitter='10ms')")
        if imp.reorder and not imp.delay:
            raise InvalidImpairmentError(
                f"reorder={reorder!r} needs a delay: reordered packets are the ones sent "
                "without it (give delay=..., e.g. delay='10ms', reorder=25)")
        return imp

    @property
    def empty(self) -> bool:
        return self == Impairment(distribution=self.distribution)

    @property
    def needs_forwarder(self) -> bool:
        """Whether anything but rate is asked for (the forwarder's work where netem is missing)."""
        return not replace(self, rate=None, distribution="uniform").empty

    def as_dict(self) -> dict[str, Any]:
        """What is set, as `impair()` takes it back: only the values that impair."""
        out = {f.name: v for f, v in zip(fields(self), asdict(self).values(), strict=True)
               if v and f.name != "distribution"}
        if self.jitter and self.distribution != "uniform":
            out["distribution"] = self.distribution
        return out

    def describe(self) -> str:
        """How reports and diagrams show it: "40 ms ± 10 ms, 10 Mbit/s, 1 % loss"."""
        parts = []
        if self.delay:
            jitter = f" ± {format_time(self.jitter)}" if self.jitter else ""
            normal = " normal" if self.jitter and self.distribution == "normal" else ""
            parts.append(f"{format_time(self.delay)}{jitter}{normal}")
        if self.rate is not None:
            parts.append(format_rate(self.rate))
        for name in ("loss", "duplicate", "corrupt", "reorder"):
            value = getattr(self, name)
            if value:
                parts.append(f"{format_percent(value)} {name}")
        return ", ".join(parts) or "none"

    def path_config(self) -> PathConfig:
        return PathConfig(delay=self.delay, jitter=self.jitter, distribution=self.distribution,
                          loss=self.loss / 100, duplicate=self.duplicate / 100,
                          corrupt=self.corrupt / 100, reorder=self.reorder / 100)

    def netem_options(self) -> bytes:
        return tc.netem_options(delay_s=self.delay, jitter_s=self.jitter, loss=self.loss,
                                duplicate=self.duplicate, corrupt=self.corrupt,
                                reorder=self.reorder, distribution=self.distribution)


# -- what this kernel can do (the one place the mechanism is chosen) ----------------


@dataclass(frozen=True)
class Capabilities:
    """What the kernel offers for faults, tried once per process."""

    netem: bool
    tbf: bool
    steal: bool  # clsact + cls_bpf + act_mirred: the forwarder's path
    drop: bool  # clsact + cls_bpf in direct-action mode: cuts and partitions

    def mechanism(self, what: str) -> str | None:
        """Which mechanism serves `what` (an Impairment field, "down" or "partition"); None
        when this kernel has none."""
        if what == "rate":
            if not self.tbf:
                return None
            return "tbf under netem" if self.netem else "tbf"
        if what in ("down", "partition"):
            return "tc bpf ingress drop" if self.drop else None
        if self.netem:
            return "netem"
        return "forwarder process (tc bpf steal + mirred)" if self.steal else None

    def check(self, imp: Impairment) -> None:
        """UnsupportedImpairmentError naming what would be needed, before anything changes."""
        if imp.rate is not None and not self.tbf:
            raise UnsupportedImpairmentError(
                f"rate={format_rate(imp.rate)} needs the tbf qdisc (sch_tbf), which this kernel "
                "does not have: load it (modprobe sch_tbf)")
        if imp.needs_forwarder and not (self.netem or self.steal):
            raise UnsupportedImpairmentError(
                f"{imp.describe()} needs netem (sch_netem), or else clsact, cls_bpf and "
                "act_mirred for pytest-netns's forwarder; this kernel has neither: load "
                "sch_netem (e.g. from linux-modules-extra)")

    def check_drops(self, what: str) -> None:
        if not self.drop:
            raise UnsupportedImpairmentError(
                f"{what} needs the clsact qdisc and the bpf classifier (cls_bpf), which this "
                "kernel does not have: load sch_ingress and cls_bpf")


def _try(fn: Callable[[], object]) -> bool:
    try:
        fn()
    except RtnlError:
        return False
    return True


def _detect() -> Capabilities:
    """Try each mechanism on the loopback of this thread's (throwaway) namespace."""
    rt = Rtnl()
    try:
        lo = socket.if_nametoindex("lo")
        netem = tc.netem_available(rt, lo)
        tbf = _try(lambda: tc.replace_qdisc(rt, tc.tbf_body(lo, 10**6)))
        clsact = _try(lambda: tc.ensure_clsact(rt, lo))
        drop = clsact and _try(lambda: tc.replace_filter(rt, tc.bpf_filter_body(
            lo, tc.TC_H_INGRESS_HOOK, 2, drop_all(), direct_action=True)))
        steal = clsact and _try(lambda: tc.replace_filter(rt, tc.bpf_filter_body(
            lo, tc.TC_H_EGRESS_HOOK, STEAL_PRIO, steal_unmarked(DEFAULT_MARK), redirect_to=lo)))
        return Capabilities(netem, tbf, steal, drop)
    finally:
        rt.close()


@functools.cache
def capabilities() -> Capabilities:
    """What this kernel offers, tried once per process in a namespace nothing pins."""
    from .netns import Netns

    netns = Netns.anonymous("pytest-netns fault capabilities")
    try:
        return netns.call(_detect)
    finally:
        netns.close()


# -- one end of a link, as the faults see it --------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """An interface, with the netlink of its namespace: where filters and qdiscs go.

    `label` names it in messages ("a:eth1"); the forwarder is handed a
    descriptor of its namespace (`netlink.netns`), opened for the moment.
    """

    netlink: Netlink
    ifname: str
    label: str

    def run(self, what: str, fn: Callable[[Rtnl, int], T], missing_ok: bool = False) -> T | None:
        """fn(socket, ifindex) inside the namespace; the kernel's refusals become
        ImpairmentError. A vanished interface is None with `missing_ok`, else an error."""

        def call(rt: Rtnl) -> T | None:
            index = index_of(self.ifname)
            if index is None:
                if missing_ok:
                    return None
                raise ImpairmentError(f"{what}: interface {self.label} does not exist (any more)")
            return fn(rt, index)

        try:
            return self.netlink.with_socket(call)
        except RtnlError as exc:
            raise ImpairmentError(f"{what} on {self.label} was refused by the kernel: "
                                  f"{os.strerror(exc.code)} (errno {exc.code})") from None


def _root_kind(rt: Rtnl, index: int) -> str | None:
    return tc.root_qdisc_kind(rt, index)


def _create_sink(rt: Rtnl, name: str, peer_netns_fd: int, alias: str) -> int:
    """A veth `name` here, its peer (same name) in the forwarder's namespace, both down.

    The peer cannot be created up (veth_open answers ENOTCONN before the pair
    is joined); the forwarder brings it up first, then `name` goes up: a
    veth opened while its peer is down keeps the drop-everything noop qdisc
    until linkwatch runs, which RTNL contention delayed by 0.5-1 s. The alias
    (the session's tag, for sweeps) is not taken at creation.
    """
    body = new_link_body(name, "veth", veth_peer(name, peer_netns_fd, mtu=SINK_MTU), up=False,
                         mtu=SINK_MTU)
    rt.request(RTM_NEWLINK, body, create=True)
    index = index_of(name)
    if index is None:
        raise ImpairmentError(f"sink {name} vanished right after creation")
    rt.set_link(index, alias=alias)
    return index


class Direction:
    """Everything one impaired direction x -> y put on x_if, and its undoing.

    `forwarder()` returns the link's forwarder, starting it on first use (one
    per link serves both directions). `sink_name()` returns a fresh interface
    name, unique in any namespace (the session's names): the pair of a
    cleared impairment is deleted in the background, and a new impair() must
    not wait for its name. `alias` tags the sink for sweeps.
    """

    def __init__(self, x: Endpoint, name: str, forwarder: Callable[[], ForwarderClient],
                 sink_name: Callable[[], str], alias: str, caps: Capabilities) -> None:
        self.x = x
        self.name = name
        self._forwarder = forwarder
        self._sink_name = sink_name
        self._alias = alias
        self._caps = caps
        self._current = Impairment()
        self._saved_gso_max_segs: int | None = None
        self._stealing: ForwarderClient | None = None  # the forwarder holding our path
        self._root_qdisc = False
        #: the sink veth's end in x's namespace, while frames are stolen
        self.sink: str | None = None

    @property
    def current(self) -> Impairment:
        return self._current

    @property
    def forwarder(self) -> ForwarderClient | None:
        """The forwarder this direction's frames go through, if any."""
        return self._stealing

    def apply(self, imp: Impairment) -> None:
        """Make `imp` this direction's impairment (replacing the previous one), and check it.

        If the kernel or the forwarder fails part-way, the direction is
        cleared before the ImpairmentError propagates.
        """
        if imp.empty:
            self.clear()
            return
        self._caps.check(imp)
        try:
            if self._caps.netem:
                self._apply_netem(imp)
            else:
                self._apply_fallback(imp)
        except BaseException:
            self.clear()
            raise
        self._current = imp

    def clear(self) -> None:
        """Remove all of it; frames the forwarder holds still leave at their due time."""
        if self._stealing:
            self._stop_stealing()
        if self._root_qdisc:
            self.x.run("remove the root qdisc",
                       lambda rt, i: tc.delete_qdisc(rt, i, tc.TC_H_ROOT), missing_ok=True)
            self._root_qdisc = False
        if self._saved_gso_max_segs is not None:
            saved = self._saved_gso_max_segs
            self.x.run("restore gso_max_segs",
                       lambda rt, i: rt.set_link(i, gso_max_segs=saved), missing_ok=True)
            self._saved_gso_max_segs = None
        self._current = Impairment()

    # -- netem kernels ------------------------------------------------------------

    def _apply_netem(self, imp: Impairment) -> None:
        previous_rate = self._current.rate

        def run(rt: Rtnl, index: int) -> str | None:
            if self._saved_gso_max_segs is None:
                self._saved_gso_max_segs = rt.link(index).gso_max_segs or 65535
                rt.set_link(index, gso_max_segs=1)
            tc.replace_qdisc(rt, tc.netem_body(index, imp.netem_options()))
            self._root_qdisc = True
            if imp.rate is not None:
                tc.replace_qdisc(rt, tc.tbf_body(index, imp.rate, parent=tc.NETEM_CHILD_PARENT,
                                                 handle=tc.NETEM_CHILD_HANDLE))
            elif previous_rate is not None:
                tc.delete_qdisc(rt, index, tc.NETEM_CHILD_PARENT, tc.NETEM_CHILD_HANDLE)
            return _root_kind(rt, index)

        kind = self.x.run(f"impair {self.name} with netem", run)
        if kind != "netem":
            raise ImpairmentError(f"impair {self.name}: {self.x.label}'s root qdisc is {kind}, "
                                  "not the netem just installed")

    # -- everywhere else ------------------------------------------------------------

    def _apply_fallback(self, imp: Impairment) -> None:
        rate = imp.rate
        if rate is not None or self._root_qdisc:
            def shape(rt: Rtnl, index: int) -> str | None:
                if rate is None:
                    tc.delete_qdisc(rt, index, tc.TC_H_ROOT)
                    return None
                tc.replace_qdisc(rt, tc.tbf_body(index, rate))
                return _root_kind(rt, index)

            kind = self.x.run(f"shape {self.name}", shape)
            self._root_qdisc = rate is not None
            if rate is not None and kind != "tbf":
                raise ImpairmentError(f"shape {self.name}: {self.x.label}'s root qdisc is "
                                      f"{kind}, not the tbf just installed")
        if imp.needs_forwarder and not self._stealing:
            self._start_stealing(imp.path_config())
        elif imp.needs_forwarder and self._stealing is not None:
            self._stealing.configure(self.name, imp.path_config())
        elif self._stealing:
            self._stop_stealing()

    def _start_stealing(self, config: PathConfig) -> None:
        """Sink pair, forwarder path, sink up, then the filter; then prove frames arrive."""
        fwd = self._forwarder()
        sink = self._sink_name()
        peer_ns = os.open(fwd.netns_path(), os.O_RDONLY | os.O_CLOEXEC)
        try:
            sink_index = self.x.run(f"create the sink of {self.name}",
                                    lambda rt, _i: _create_sink(rt, sink, peer_ns, self._alias))
        finally:
            os.close(peer_ns)
        assert sink_index is not None
        with self.x.netlink.netns.descriptor() as fd:
            fwd.add_path(self.name, sink, sink, self.x.ifname, fd, config)

        def steal(rt: Rtnl, index: int) -> None:
            rt.set_link(sink_index, up=True)
            sync_link_state(sink)
            tc.ensure_clsact(rt, index)
            tc.replace_filter(rt, tc.bpf_filter_body(index, tc.TC_H_EGRESS_HOOK, STEAL_PRIO,
                                                     steal_unmarked(DEFAULT_MARK),
                                                     redirect_to=sink_index))

        self._stealing, self.sink = fwd, sink
        self.x.run(f"steal {self.name}'s frames", steal)
        fwd.check(self.name, CHECK_TIMEOUT)

    def _stop_stealing(self) -> None:
        """The filter first, so frames go straight on; the forwarder then drops the pair."""
        def unsteal(rt: Rtnl, index: int) -> None:
            tc.delete_filter(rt, index, tc.TC_H_EGRESS_HOOK, STEAL_PRIO)
            tc.release_clsact(rt, index)

        fwd, self._stealing, self.sink = self._stealing, None, None
        self.x.run(f"stop stealing {self.name}'s frames", unsteal, missing_ok=True)
        if fwd is not None:
            fwd.remove_path(self.name)
