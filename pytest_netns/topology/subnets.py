"""Allocating subnets nobody else uses, across every pytest-netns process of the host.

Subnets are reserved in a file shared by every pytest-netns process on the
host (xdist workers included) under an exclusive lock, and each reservation
is checked against the host's routes at allocation time, so two topologies
never collide with each other or with the host's own networks. A
reservation of a process that is gone is free again, unless its session
was kept for debugging (`--netns-keep`): its topologies are still up. IPv4
subnets and IPv6 /64s are reserved in the same file, in the same locked
transaction.

A topology's reservations also name a hold: an empty file that exists
while they are held. Closing the topology removes it, and the subnets are
free at once for every process, without a locked rewrite of the table on
the test's path (about 0.3 ms, and more while other processes allocate):
the entries go from the file in the janitor's next round, or in anyone's
next allocation. Entries without a hold (another version's) are held as
before.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

from ..errors import SubnetExhaustedError, SubnetOverlapError
from ..kernel.janitor import janitor
from ..ownership import STATE_DIR, is_kept, process_alive
from .addresses import host_networks
from .spec import AnyNetwork, Network, Network6

RESERVATIONS = os.path.join(STATE_DIR, "subnets.json")
HOLDS_DIR = os.path.join(STATE_DIR, "subnet-holds")
HOLDS_ANCHOR = os.path.join(HOLDS_DIR, ".anchor")  # every hold is a hard link of it
# Pool for automatic subnets: 10.64.0.0/10 is far from Docker's defaults
# (172.17-31/16, 192.168/16) and from typical VPN and cloud ranges.
DEFAULT_POOL = ipaddress.IPv4Network("10.64.0.0/10")
# Pool for automatic IPv6 subnets (/64s): a unique-local /48 (RFC 4193, inside
# fd00::/8) whose "global ID" spells "netns" in ASCII. Taking /64s from the start
# of fd00::/8 would meet the ones people configure by hand (this project's own CI
# host has fd00::/64 on eth0); a /48 of its own keeps clear of those, and of every
# host route all the same, since candidates are checked against them.
DEFAULT_POOL6 = ipaddress.IPv6Network("fd6e:6574:6e73::/48")


Entry = dict[str, object]

_holds_lock = threading.Lock()
#: this process's holds -> the reservation keys each still holds
_holds: dict[str, set[str]] = {}
_tidy_queued = threading.Event()  # one tidying round waits for the janitor at most


@contextmanager
def _locked_reservations(
    drop: Callable[[str, Entry], bool] | None = None,
    dropped: list[str] | None = None,
) -> Iterator[dict[str, Entry]]:
    """The reservation table, locked, written back at the end.

    Entries for which `drop` says True are removed first (and described in
    `dropped`); nothing else is ever removed but by its owner.
    """
    os.makedirs(STATE_DIR, exist_ok=True)
    with open(RESERVATIONS + ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                with open(RESERVATIONS) as f:
                    table: dict[str, Entry] = json.load(f)
            except (FileNotFoundError, json.JSONDecodeError):
                table = {}
            named = _holds_named(table)
            if drop is not None:
                gone = [k for k, v in table.items() if drop(k, v)]
                if dropped is not None:
                    dropped += [f"{k} ({table[k].get('owner')}, pid {table[k].get('pid')})"
                                for k in gone]
                for key in gone:
                    del table[key]
            yield table
            tmp = RESERVATIONS + f".{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump(table, f)
            os.replace(tmp, RESERVATIONS)
            for hold in named - _holds_named(table):  # no entry needs it any more
                _remove_hold(hold)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _holds_named(table: dict[str, Entry]) -> set[str]:
    return {str(v["hold"]) for v in table.values() if v.get("hold")}


def _hold_path(hold: str) -> str:
    return os.path.join(HOLDS_DIR, os.path.basename(hold))


def _new_hold(keys: Iterable[str]) -> str:
    """A hold for `keys` (made inside the locked round that reserves them).

    A hold is a hard link of one file that is never removed: on ext4 without
    a journal (/run on this project's CI machines) a new inode can take
    0.2-1.6 ms while files are deleted around it (see `kernel/netns.py`'s
    mount points); a link allocates none.
    """
    hold = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    path = _hold_path(hold)
    try:
        os.link(HOLDS_ANCHOR, path)
    except FileNotFoundError:  # the first hold on this host (since boot)
        os.makedirs(HOLDS_DIR, exist_ok=True)
        os.close(os.open(HOLDS_ANCHOR, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        os.link(HOLDS_ANCHOR, path)
    except OSError as exc:
        if exc.errno != errno.EMLINK:
            raise
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
    with _holds_lock:
        _holds[hold] = set(keys)
    return hold


def _remove_hold(hold: str) -> None:
    with _holds_lock:
        _holds.pop(hold, None)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_hold_path(hold))


def _released(entry: Entry) -> bool:
    """Its owner let go of it: the hold it names is gone."""
    hold = entry.get("hold")
    return bool(hold) and not os.path.exists(_hold_path(str(hold)))


def _session_of(entry: Entry) -> str:
    """The session that made a reservation (older entries name it only in their owner)."""
    return str(entry.get("session") or str(entry.get("owner") or "").split(":")[0])


def _held(entry: Entry) -> bool:
    """A reservation still holds its subnet: its process lives, or its session was kept
    for debugging (its topologies outlive the process, until `pytest-netns cleanup`)."""
    if _released(entry):
        return False
    return process_alive(int(str(entry.get("pid", 0)))) or is_kept(_session_of(entry))


def _subnet(key: str) -> AnyNetwork | None:
    """A reservation key as an IPv4 or IPv6 subnet; None for any other entry.

    Other pytest-netns processes on the host share this file and may be of
    another version, with entries this one does not know: they are kept,
    and never mistaken for address space.
    """
    try:
        return ipaddress.ip_network(key)
    except ValueError:
        return None


def release_dead(session_id: str | None = None, include_kept: bool = False) -> list[str]:
    """Free the reservations of dead processes; describe each one freed.

    Only `session_id`'s when given; a session kept for debugging keeps its
    subnets unless `include_kept` (its topologies are still there).
    """

    def dead(key: str, entry: Entry) -> bool:
        if session_id is not None and _session_of(entry) != session_id:
            return False
        if process_alive(int(str(entry.get("pid", 0)))):
            return False
        return include_kept or not is_kept(_session_of(entry))

    freed: list[str] = []
    with _locked_reservations(dead, freed):
        pass
    return freed


def reserve(
    prefixlens: Sequence[int],
    owner: str,
    explicit: Iterable[AnyNetwork] = (),
    pool: Network = DEFAULT_POOL,
    avoid: Iterable[AnyNetwork] = (),
    prefixlens6: Sequence[int] = (),
    pool6: Network6 = DEFAULT_POOL6,
    host: Sequence[AnyNetwork] | None = None,
) -> list[AnyNetwork]:
    """Reserve one free subnet per prefix length in `prefixlens` (IPv4, from `pool`) and
    in `prefixlens6` (IPv6, from `pool6`), plus the `explicit` ones.

    An explicit subnet that another live topology holds raises
    SubnetOverlapError; the automatic ones skip every reserved subnet, every
    host route, and `avoid` (the topology's own explicit subnets that need
    no reservation because they never reach the host). They come back in
    the order asked for, the IPv4 ones first. `host` is the host's prefixes,
    when the caller has just read them.
    """
    explicit = list(explicit)
    if host is None:
        host = host_networks(bool(prefixlens6) or any(net.version == 6 for net in explicit))
    made: list[str] = []
    try:
        return _reserve(prefixlens, owner, explicit, pool, avoid, prefixlens6, pool6, host, made)
    except BaseException:
        for hold in made:  # the table was not written
            _remove_hold(hold)
        raise


def _reserve(prefixlens: Sequence[int], owner: str, explicit: list[AnyNetwork], pool: Network,
             avoid: Iterable[AnyNetwork], prefixlens6: Sequence[int], pool6: Network6,
             host: Sequence[AnyNetwork], made: list[str]) -> list[AnyNetwork]:
    """`reserve`'s locked round; the hold it makes is appended to `made`."""
    # a reservation of a process that is gone (and not kept) is free again
    with _locked_reservations(lambda _, entry: not _held(entry)) as table:
        taken = [net for net in map(_subnet, table) if net is not None]
        for net in explicit:
            for other in taken:
                if net.overlaps(other):
                    raise SubnetOverlapError(
                        f"subnet {net} overlaps {other}, which another live topology "
                        f"({table[str(other)].get('owner')}) holds: pick another subnet"
                    )
        blocked = [*taken, *host, *explicit, *avoid]
        chosen = [*_allocate(pool, prefixlens, blocked, len(taken)),
                  *_allocate(pool6, prefixlens6, blocked, len(taken))]
        keys = [str(net) for net in chosen + explicit]
        if keys:
            hold = _new_hold(keys)
            made.append(hold)
            for key in keys:
                table[key] = {"pid": os.getpid(), "owner": owner,
                              "session": owner.split(":")[0], "hold": hold}
        return chosen


def _allocate(pool: AnyNetwork, prefixlens: Sequence[int], blocked: list[AnyNetwork],
              reserved: int) -> list[AnyNetwork]:
    """First fit in `pool` for each prefix length; each choice is blocked for the next."""
    relevant = [b for b in blocked if b.version == pool.version and b.overlaps(pool)]
    chosen: list[AnyNetwork] = []
    for prefixlen in prefixlens:
        found = next((cand for cand in pool.subnets(new_prefix=prefixlen)
                      if not any(cand.overlaps(b) for b in relevant)), None)
        if found is None:
            raise SubnetExhaustedError(
                f"no free /{prefixlen} subnet left in {pool} ({reserved} reserved): "
                "close topologies you no longer need, or run `pytest-netns cleanup`"
            )
        chosen.append(found)
        relevant.append(found)
        blocked.append(found)
    return chosen


def prefixlen_for(hosts: int, longest: int = 24) -> int:
    """The longest prefix (at most /`longest`) with room for `hosts` host addresses."""
    prefixlen = longest
    while prefixlen > 8 and 2 ** (32 - prefixlen) - 2 < hosts:
        prefixlen -= 1
    return prefixlen


def live_reservations() -> dict[AnyNetwork, str]:
    """Subnets that live pytest-netns processes hold, with their owners (read-only)."""
    try:
        with open(RESERVATIONS) as f:  # replaced atomically, so no lock is needed to read
            table: dict[str, dict[str, object]] = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {net: str(v.get("owner")) for k, v in table.items()
            if (net := _subnet(k)) is not None and _held(v)}


def free_subnet_count(prefixlen: int = 24, pool: AnyNetwork = DEFAULT_POOL) -> tuple[int, int]:
    """(free, total): how many /prefixlen subnets of the pool an allocation could take now."""
    blocked = [n for n in [*host_networks(pool.version == 6), *live_reservations()]
               if n.version == pool.version and n.overlaps(pool)]
    total = 2 ** (prefixlen - pool.prefixlen)
    free = sum(1 for cand in pool.subnets(new_prefix=prefixlen)
               if not any(cand.overlaps(b) for b in blocked))
    return free, total


def release(nets: Iterable[AnyNetwork]) -> None:
    """Give reserved subnets back to the pool, at once.

    Those that make up whole holds of this process are let go of by
    removing the holds (the janitor tidies the table later); any other is
    taken out of the table now.
    """
    keys = [str(n) for n in nets]
    if not keys:
        return
    wanted, rest = set(keys), set(keys)
    let_go: list[str] = []
    with _holds_lock:
        for hold, held in _holds.items():
            if held <= wanted:
                let_go.append(hold)
                rest -= held
            else:
                held -= wanted  # taken out of the table below; the hold keeps the others
    for hold in let_go:
        _remove_hold(hold)
    if let_go and not _tidy_queued.is_set():
        _tidy_queued.set()
        janitor().defer(tidy)
    if rest:
        with _locked_reservations() as table:
            for key in rest:
                table.pop(key, None)


def tidy() -> None:
    """Take entries whose holds were let go of out of the table."""
    _tidy_queued.clear()
    with _locked_reservations(lambda _, entry: _released(entry)):
        pass
