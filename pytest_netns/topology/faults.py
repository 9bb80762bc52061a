"""Faults of a built topology: impaired links, cut links, flapping links and partitions.

`Link.impair()`, `down()`, `flapping()` and `Topology.partition()` end up
here; the mechanisms live in the kernel layer (`kernel/impairment.py`,
`kernel/drops.py`, `kernel/forwarder.py`). This module maps the
topology's names onto them:

- each link end is an interface in a node, a switch or the host (the host's
  end is always a veth of ours in the root namespace; filters and qdiscs go
  on it, never on eth0 or docker0, and the host's firewall, sysctls and
  qdiscs are never touched);
- direction "x->y" is shaped on x's end (for a switch port, "node->switch"
  is the node's interface and "switch->node" the bridge port);
- a partition's filter goes on every interface of the topology, and its
  groups become the addresses of their members ("host": the host's
  addresses on this topology's links).

Nothing is created before the first fault. The first impairment that needs
the forwarder starts one process per topology (~40-60 ms, mostly Python's
start-up), forked from a pool worker in the host's namespace, which lives as
long as the process (the forwarder dies with the thread that forked it), and
written in
the session's process ledger (`nodes/ledger.py`, with the namespace of its
own it made) so that a sweep or the crash watchdog can end it.
Everything a fault made goes with `Link.clear()`, `Partition.heal()`,
`Topology.close()` (and so at the end of the test), and after a SIGKILL:
the forwarder dies with pytest, its namespace takes the sink veths along,
and every filter and qdisc sits on a link that the topology's teardown or a
sweep removes.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ImpairmentError, InvalidImpairmentError, NodeClosedError
from ..kernel.drops import PARTITION_FIRST_PRIO, Drop, partition_cuts
from ..kernel.forwarder import ForwarderClient
from ..kernel.impairment import Capabilities, Direction, Endpoint, Impairment, capabilities
from ..kernel.janitor import janitor
from ..kernel.netns import on_a_worker
from ..kernel.proctree import ProcessTree, netns_of
from ..nodes.base import Node
from ..nodes.host import host
from ..nodes.ledger import ledger_for
from ..units import format_time, parse_time
from .spec import HOST

if TYPE_CHECKING:
    from .links import End, Link
    from .topology import Topology

# what every topology of this process did, for the terminal summary
T = TypeVar("T")
FAULT_STATS = {"impairments": 0, "cuts": 0, "flaps": 0, "partitions": 0, "forwarders": 0}
LOG_LIMIT = 50


@dataclass(frozen=True)
class FaultEvent:
    """One change a test made to its network's behaviour, for the failure report."""

    at: float  # time.monotonic()
    text: str


def parse_direction(direction: object, names: tuple[str, str]) -> list[str]:
    """The directions "x->y" named by `direction`: "both", or one of the link's two."""
    a, b = names
    valid = [f"{a}->{b}", f"{b}->{a}"]
    if direction == "both":
        return valid
    if isinstance(direction, str):
        parts = [p.strip() for p in direction.split("->")]
        if len(parts) == 2 and "->".join(parts) in valid:
            return ["->".join(parts)]
    raise InvalidImpairmentError(
        f"direction={direction!r} is not a direction of the link {a}<->{b}; valid: "
        f"'both', {valid[0]!r}, {valid[1]!r}")


class TopologyFaults:
    """The faults of one topology: its forwarder, partitions, links' state and log."""

    def __init__(self, topo: Topology) -> None:
        self.topology = topo
        self.partitions: list[Partition] = []
        self.log: list[FaultEvent] = []
        self._forwarder: ForwarderClient | None = None
        self._links: dict[int, LinkFaults] = {}
        self._endpoints: dict[tuple[str, str], Endpoint] = {}
        self._lock = threading.RLock()
        self._closing = False
        #: everything was undone with the topology: clear(), up() and heal() do nothing
        self.closed = False

    @property
    def caps(self) -> Capabilities:
        return capabilities()

    def check_open(self, action: str) -> None:
        if self._closing or self.topology.closed:
            raise NodeClosedError(f"cannot {action}: topology {self.topology.label} was closed")

    def note(self, text: str) -> None:
        with self._lock:
            self.log = [*self.log[-(LOG_LIMIT - 1):], FaultEvent(time.monotonic(), text)]

    # -- what faults act on ---------------------------------------------------------

    def node(self, name: str) -> Node:
        return host() if name == HOST else self.topology.nodes[name]

    def endpoint(self, end: End) -> Endpoint:
        """The interface of one link end, with its namespace's netlink (made once)."""
        key = (end.node, end.ifname)
        with self._lock:
            found = self._endpoints.get(key)
            if found is None:
                node = self.node(end.node)
                found = self._endpoints[key] = Endpoint(node.netlink, end.ifname,
                                                        f"{end.node}:{end.ifname}")
            return found

    def receivers(self) -> list[Endpoint]:
        """Every interface the topology made (both ends of every link): where partitions go."""
        return [self.endpoint(end) for link in self.topology.links if len(link.ends) == 2
                for end in link.ends]

    def for_link(self, link: Link) -> LinkFaults:
        with self._lock:
            found = self._links.get(id(link))
            if found is None:
                found = self._links[id(link)] = LinkFaults(self, link)
            return found

    def links(self) -> list[LinkFaults]:
        with self._lock:
            return list(self._links.values())

    def sinks(self) -> dict[tuple[str, str], str]:
        """(node, interface) -> the direction whose frames that sink veth takes."""
        with self._lock:
            return {(name.split("->")[0], d.sink): name for faults in self._links.values()
                    for name, d in faults._directions.items() if d.sink}

    def existing(self, link: Link) -> LinkFaults | None:
        """The link's faults if it ever had one (reports read this; nothing is made)."""
        with self._lock:
            return self._links.get(id(link))

    def active_partitions(self) -> list[Partition]:
        with self._lock:
            return [p for p in self.partitions if p.active]

    # -- the forwarder ---------------------------------------------------------------

    def forwarder(self) -> ForwarderClient:
        """The topology's forwarder, started on first use (again if it died)."""
        with self._lock:
            self.check_open("start an impairment forwarder")
            if self._forwarder is not None and self._forwarder.alive:
                return self._forwarder
            if self._forwarder is not None:
                self._end_forwarder(self._forwarder)
            session = self.topology.session
            # a kept topology (a lab) outlives this process, and so must its forwarder
            fwd = ForwarderClient.start(session.id, run_on=_on_a_host_worker,
                                        detached=self.topology.kept)
            netns = netns_of(fwd.pid)  # its own, made before it answered
            if netns is not None:
                ledger_for(session, netns)(ProcessTree.of(fwd.pid, netns))
            self._forwarder = fwd
            FAULT_STATS["forwarders"] += 1
            self.note(f"forwarder process {fwd.pid} started"
                      + ("" if fwd.realtime else " (not real-time: timing suffers under load)"))
            return fwd

    @property
    def forwarder_pid(self) -> int | None:
        return self._forwarder.pid if self._forwarder is not None else None

    def forwarder_state(self) -> str | None:
        """For reports: its pid, whether it runs, what it did."""
        fwd = self._forwarder
        if fwd is None:
            return None
        if not fwd.alive:
            return (f"forwarder {fwd.pid} EXITED (status {fwd.proc.returncode}): the directions "
                    "it served drop everything until clear()")
        try:
            stats = fwd.stats()
        except ImpairmentError as exc:
            return f"forwarder {fwd.pid}: {exc}"
        parts = [f"{name}: {s['received']} frames in, {s['sent']} out, {s['lost']} lost"
                 + (f", {s['sink_drops']} dropped by a full socket" if s["sink_drops"] else "")
                 for name, s in stats.items()]
        return f"forwarder {fwd.pid} running" + (f" ({'; '.join(parts)})" if parts else "")

    def _end_forwarder(self, fwd: ForwarderClient) -> None:
        """SIGKILL now (its namespace and sinks go with it); reap it off the test's path."""
        if fwd.alive:
            fwd.proc.kill()
        janitor().defer(fwd.kill)

    # -- partitions ------------------------------------------------------------------

    def partition(self, groups: Sequence[object], oneway: bool) -> Partition:
        """Cut traffic between the groups (from the first to the others if `oneway`)."""
        names = [self._group(group, i) for i, group in enumerate(groups)]
        if len(names) < 2:
            raise InvalidImpairmentError(
                f"a partition needs at least two groups, got {len(names)}: "
                "partition([a], [b]) or partition([a, b], ['host'])")
        seen: dict[str, int] = {}
        for i, group in enumerate(names):
            for name in group:
                if name in seen:
                    raise InvalidImpairmentError(
                        f"{name!r} is in groups {seen[name] + 1} and {i + 1}; a member may be "
                        "in one group only")
                seen[name] = i
        cuts = partition_cuts([self._addresses(group) for group in names], oneway)
        self.caps.check_drops("a partition")
        self.check_open("partition")
        with self._lock:
            prio = PARTITION_FIRST_PRIO
            while any(p.active and p.prio == prio for p in self.partitions):
                prio += 1
            part = Partition(self, tuple(tuple(g) for g in names), oneway, prio)
            drop = Drop.partition(self.receivers(), cuts, prio, f"partition {part.describe()}")
            drop.apply()
            part.drop = drop
            self.partitions = [p for p in self.partitions if p.active] + [part]
        FAULT_STATS["partitions"] += 1
        self.note(f"partition {part.describe()}")
        return part

    def _group(self, group: object, index: int) -> list[str]:
        members = [group] if isinstance(group, Node | str) else group
        if not isinstance(members, Iterable):
            raise InvalidImpairmentError(
                f"partition group {index + 1} is {group!r}; give a list of nodes or names "
                "(or one node or name)")
        names = []
        valid = [*sorted(self.topology.members()), HOST]
        for member in members:
            name = member.name if isinstance(member, Node) else member
            if not isinstance(name, str) or name not in valid:
                raise InvalidImpairmentError(
                    f"partition group {index + 1} names {member!r}, which is not a node of "
                    f"{self.topology.label}; valid: {valid}")
            if name == HOST and not self._addresses([HOST]):
                raise InvalidImpairmentError(
                    f"'host' has no link in {self.topology.label}, so it cannot be partitioned "
                    "from it")
            names.append(name)
        if not names:
            raise InvalidImpairmentError(f"partition group {index + 1} is empty")
        return names

    def _addresses(self, names: Iterable[str]) -> list[str]:
        """Every address the members have on this topology's links (the host's: its ends)."""
        wanted = set(names)
        return [address for link in self.topology.links for end in link.ends
                if end.node in wanted for address in (end.ip, end.ip6) if address]

    # -- the end -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop flapping, heal partitions, end the forwarder (the topology is going).

        Filters and qdiscs go with the links and namespaces the teardown
        removes; the partitions are healed all the same, so nothing lingers
        on the host's ends while the janitor gets round to deleting them.
        """
        with self._lock:
            if self._closing:
                return
            self._closing = True
        errors: list[BaseException] = []
        for faults in self.links():
            try:
                faults.close()
            except Exception as exc:
                errors.append(exc)
        for part in self.partitions:
            try:
                part.heal()
            except Exception as exc:
                errors.append(exc)
        if self._forwarder is not None:
            self._end_forwarder(self._forwarder)
        self.closed = True
        if errors:
            raise errors[0]


@dataclass(eq=False)
class Partition:
    """Traffic between groups of nodes is dropped until `heal()` (also on leaving a `with`).

    Traffic inside a group is untouched. `oneway=True` drops only what the
    first group sends to the others. ARP and IPv6 neighbour discovery pass,
    so the other way keeps working.
    """

    faults: TopologyFaults = field(repr=False)
    groups: tuple[tuple[str, ...], ...]
    oneway: bool
    prio: int
    drop: Drop | None = field(default=None, repr=False)
    since: float = field(default_factory=time.monotonic, repr=False)

    @property
    def active(self) -> bool:
        return self.drop is not None and self.drop.active

    def heal(self) -> None:
        """Let traffic through again (idempotent; nothing to do once the topology is closed)."""
        with self.faults._lock:
            if self.drop is None or not self.drop.active or self.faults.closed:
                return
            self.drop.heal()
        self.faults.note(f"healed partition {self.describe()}")

    def describe(self) -> str:
        """`[a, b] | [c]`, or `[a] -> [b, c] (one way)`."""
        sep = " -> " if self.oneway else " | "
        text = sep.join(f"[{', '.join(g)}]" for g in self.groups)
        return text + (" (one way)" if self.oneway else "")

    def __enter__(self) -> Partition:
        return self

    def __exit__(self, *exc: object) -> None:
        self.heal()

    def __repr__(self) -> str:
        return f"<Partition {self.describe()} {'active' if self.active else 'healed'}>"


class Flapping:
    """A link going down for `down_for` seconds in every `period`, until the `with` ends."""

    def __init__(self, faults: LinkFaults, period: float, down_for: float) -> None:
        self.period = period
        self.down_for = down_for
        self.flaps = 0  # how many times it went down
        self._faults = faults
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="netns-flap", daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                cycle = started + self.flaps * self.period
                self._faults.set_cut(True, "flap down")
                self.flaps += 1
                if self._stop.wait(max(0.0, cycle + self.down_for - time.monotonic())):
                    break
                self._faults.set_cut(False, "flap up")
                self._stop.wait(max(0.0, cycle + self.period - time.monotonic()))
        except BaseException as exc:  # raised in the test's thread when the flapping stops
            self._error = exc

    def start(self) -> Flapping:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop, and leave the link up; an error met meanwhile is raised here."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._faults.set_cut(False, "flapping stopped, up")
        if self._error is not None:
            raise self._error


class LinkFaults:
    """What one link has now: an impairment per direction, a cut, maybe a flapping timer."""

    def __init__(self, topo: TopologyFaults, link: Link) -> None:
        self.topo = topo
        self.link = link
        a, b = link.ends
        self.names = (a.node, b.node)
        self._ends = {a.node: a, b.node: b}
        self._directions: dict[str, Direction] = {}
        self._cut: Drop | None = None
        self._flapping: Flapping | None = None
        self._lock = threading.RLock()

    def _direction(self, name: str) -> Direction:
        found = self._directions.get(name)
        if found is None:
            x = self._ends[name.split("->")[0]]
            found = self._directions[name] = Direction(
                self.topo.endpoint(x), f"{self.link.segment}:{name}", self.topo.forwarder,
                functools.partial(self.topo.topology.session.ifname, "k"),
                self.topo.topology.session.alias, self.topo.caps)
        return found

    # -- impairments ---------------------------------------------------------------------

    def impair(self, direction: object, **values: Any) -> None:
        imp = Impairment.parse(**values)
        names = parse_direction(direction, self.names)
        self.topo.caps.check(imp)
        self.topo.check_open(f"impair {self.link.segment}")
        with self._lock:
            for name in names:
                self._direction(name).apply(imp)
        FAULT_STATS["impairments"] += 1
        what = imp.describe() if not imp.empty else "nothing (cleared)"
        self.topo.note(f"impaired {self._label(names)}: {what}")

    def current(self) -> dict[str, Impairment]:
        """The impairment of each direction that has one (none once the topology is closed)."""
        if self.topo.closed:
            return {}
        with self._lock:
            return {name: d.current for name, d in self._directions.items()
                    if not d.current.empty}

    def restore(self, saved: dict[str, Impairment]) -> None:
        """Put back what `current()` returned earlier (every other direction cleared)."""
        if self.topo.closed:
            return
        with self._lock:
            for name in parse_direction("both", self.names):
                imp = saved.get(name, Impairment())
                if imp != self._direction(name).current:
                    self._direction(name).apply(imp)
        self.topo.note(f"restored {self.link.segment}: "
                       + ("; ".join(f"{n}: {i.describe()}" for n, i in saved.items())
                          or "unimpaired"))

    @contextmanager
    def impaired(self, direction: object, **values: Any) -> Iterator[None]:
        with self._lock:
            saved = self.current()
        self.impair(direction, **values)
        try:
            yield
        finally:
            self.restore(saved)

    def clear(self) -> None:
        if self.topo.closed:
            return  # the topology took every impairment with it
        with self._lock:
            had = bool(self.current())
            for d in self._directions.values():
                d.clear()
        if had:
            self.topo.note(f"cleared {self.link.segment} ({self.names[0]}<->{self.names[1]})")

    # -- down, up, flapping -----------------------------------------------------------------

    @property
    def is_up(self) -> bool:
        return self._cut is None or not self._cut.active or self.topo.closed

    def down(self) -> None:
        self._not_flapping("down()")
        self.set_cut(True, "down")

    def up(self) -> None:
        self._not_flapping("up()")
        self.set_cut(False, "up")

    def set_cut(self, cut: bool, why: str) -> None:
        if not cut and self.topo.closed:
            return  # the cut went with the topology
        with self._lock:
            if cut == (not self.is_up):
                return
            if cut:
                self.topo.caps.check_drops("Link.down()")
                self.topo.check_open(f"take {self.link.segment} down")
                ends = [self.topo.endpoint(e) for e in self.link.ends]
                self._cut = Drop.link_cut(ends, f"cut of {self.link.segment}")
                self._cut.apply()
                FAULT_STATS["flaps" if why.startswith("flap") else "cuts"] += 1
            elif self._cut is not None:
                self._cut.heal()
        if not why.startswith("flap"):
            self.topo.note(f"{self.link.segment} ({self.names[0]}<->{self.names[1]}) {why}")

    @contextmanager
    def flapping(self, period: object, down_for: object) -> Iterator[Flapping]:
        cycle = parse_time(period, "period")  # type: ignore[arg-type]
        down = cycle / 2 if down_for is None else parse_time(down_for, "down_for")  # type: ignore[arg-type]
        if not 0 < down < cycle:
            raise InvalidImpairmentError(
                f"flapping(period={period!r}, down_for={down_for!r}): down_for must be more "
                f"than 0 and less than the period ({format_time(cycle)})")
        self._not_flapping("flapping()")
        self.topo.caps.check_drops("Link.flapping()")
        self.topo.check_open(f"flap {self.link.segment}")
        flap = Flapping(self, cycle, down)
        self._flapping = flap
        self.topo.note(f"{self.link.segment} flapping: down {format_time(down)} every "
                       f"{format_time(cycle)}")
        try:
            yield flap.start()
        finally:
            self._flapping = None
            flap.stop()
            self.topo.note(f"{self.link.segment} stopped flapping after {flap.flaps} flaps")

    def _not_flapping(self, what: str) -> None:
        if self._flapping is not None:
            raise InvalidImpairmentError(
                f"{what} on {self.link.segment} while it is flapping: leave the "
                "`with link.flapping(...)` block first")

    def close(self) -> None:
        flap, self._flapping = self._flapping, None
        if flap is not None:
            flap.stop()

    def summary(self) -> str:
        """One line for a diagram: "40 ms, 1 % loss", per direction when they differ."""
        current = self.current()
        parts = []
        if current:
            texts = {imp.describe() for imp in current.values()}
            if len(current) == 2 and len(texts) == 1:
                parts.append(texts.pop())
            else:
                parts += [f"{name} {imp.describe()}" for name, imp in current.items()]
        if self._flapping is not None:
            parts.append(f"flapping {format_time(self._flapping.down_for)}/"
                         f"{format_time(self._flapping.period)}")
        elif not self.is_up:
            parts.append("DOWN")
        return "; ".join(parts)

    def describe(self) -> list[str]:
        """Lines for a report: each impaired direction, and whether the link is cut."""
        lines = [f"{name}: {imp.describe()}" for name, imp in self.current().items()]
        if self._flapping is not None:
            f = self._flapping
            lines.append(f"flapping: down {format_time(f.down_for)} every "
                         f"{format_time(f.period)} ({f.flaps} flaps so far)")
        elif not self.is_up:
            lines.append("DOWN (everything dropped on both ends)")
        return lines

    def _label(self, names: list[str]) -> str:
        return f"{self.link.segment} {' and '.join(names)}"


def _on_a_host_worker(fn: Callable[[], T]) -> T:
    """fn on a pool worker in the host's namespace: a thread that lives as long as the
    process (a caller's own thread may end first, and the forwarder with it)."""
    return on_a_worker(lambda: host().call(fn))
