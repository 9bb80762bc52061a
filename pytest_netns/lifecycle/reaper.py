"""Ownership sweeps: removing what dead pytest-netns sessions left behind.

Every object names its owner, a session id and a pid: namespaces in their
names (and namespace nodes' hosts files in theirs), root-namespace links
(and links put into attached containers) in IFLA_IFALIAS, the names written
into attached containers' /etc/hosts in their marker lines, containers in
two labels, and processes started where no sweep would find them (in the
host, in attached containers, impairment forwarders in namespaces of their
own) in the session's ledger. Router firewalls live inside router
namespaces and go with them; the one host change, the opt-in real uplink,
is undone from the state file it writes per session. A sweep removes an object only when its owner
is dead: the pid is gone, is a zombie, or now belongs to a newer process
(the session record holds the owner's start time, and pid_max can be as
low as 32768). Nothing is removed by a name pattern alone, and a live
session's objects are never touched, even when that session never
registered (it may be a script using the library directly).

Sessions whose topologies were kept for debugging (`ownership.mark_kept`)
are skipped until `sweep(include_kept=True)`, which is what `pytest-netns
cleanup` does; so are labs (`pytest-netns up`), whose records go with their
objects (`pytest-netns down` is such a sweep, of one lab's session).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..kernel.netlink import Netlink
from ..kernel.netns import NETNS_RUN_DIR, Netns, remove_named_netns
from ..kernel.proctree import (
    NetnsId,
    ProcStat,
    describe,
    end_processes,
    netns_members,
    netns_of,
    trees_members,
)
from ..nodes.host import host
from ..nodes.hosts import HOSTS_DIR, edit_container_hosts
from ..nodes.ledger import read_ledger
from ..ownership import (
    CONTAINER_LABEL,
    CONTAINER_PID_LABEL,
    KEPT_DIR,
    PROCESSES_DIR,
    SESSIONS_DIR,
    STATE_DIR,
    lab_names,
    listdir,
    process_alive,
    read_lab,
    read_records,
    remove_lab,
)
from ..topology.subnets import release_dead

if TYPE_CHECKING:
    import docker

DOCKER_TIMEOUT = 8  # seconds per engine call during a sweep
_NETNS_RE = re.compile(r"^pytest-netns-([0-9A-Za-z_]+)-(\d+)-\d+-")
_ALIAS_RE = re.compile(r"^pytest-netns:([0-9A-Za-z_]+):(\d+)")
_UPLINK_RE = re.compile(r"^uplink-([0-9A-Za-z_]+)\.json$")  # uplink.state_file()
_LEDGER_RE = re.compile(r"^([0-9A-Za-z_]+)-(\d+)$")  # Session.ledger_path


@dataclass(frozen=True)
class Owner:
    """Who made an object: a session id and the pid of its pytest process."""

    sid: str
    pid: int


def owner_of_netns(name: str) -> Owner | None:
    """The owner named by a /run/netns entry, or None if pytest-netns did not make it."""
    m = _NETNS_RE.match(name)
    return Owner(m[1], int(m[2])) if m else None


def owner_of_alias(alias: object) -> Owner | None:
    """The owner named by a link's IFLA_IFALIAS, or None for anyone else's link."""
    m = _ALIAS_RE.match(str(alias or ""))
    return Owner(m[1], int(m[2])) if m else None


def owner_of_labels(labels: dict[str, str] | None) -> Owner | None:
    """The owner named by a container's labels, or None without both labels."""
    labels = labels or {}
    sid, pid = labels.get(CONTAINER_LABEL), labels.get(CONTAINER_PID_LABEL, "")
    return Owner(sid, int(pid)) if sid and pid.isdigit() else None


class _Judge:
    """Decides, for one sweep, whose objects may go."""

    def __init__(self, include_kept: bool, session_id: str | None) -> None:
        self.include_kept = include_kept
        self.session_id = session_id
        self.records = read_records(SESSIONS_DIR)
        self.kept = read_records(KEPT_DIR)
        self.failed: set[str] = set()  # sessions whose records stay for a retry
        self.records_stay = False  # every record stays (containers were not swept)

    def attempt(self, sid: str, what: str, remove: Callable[[], object]) -> list[str]:
        """Remove one object; a failure is reported, and the rest of the sweep goes on."""
        try:
            remove()
        except Exception as exc:
            self.failed.add(sid)
            return [f"could not remove {what}: {type(exc).__name__}: {exc}"]
        return [f"removed {what}"]

    def in_scope(self, sid: str) -> bool:
        """Whether this sweep may touch `sid`'s objects once their owner is known dead.

        The kept marker is looked up afresh, and only after the death check:
        a dead owner can no longer mark itself kept, so none is missed.
        """
        if self.session_id is not None and sid != self.session_id:
            return False
        return self.include_kept or not os.path.exists(os.path.join(KEPT_DIR, sid))

    def pid_of(self, sid: str) -> int | None:
        known = self.records.get(sid) or self.kept.get(sid)
        return known[0] if known else None

    def dead(self, owner: Owner) -> bool:
        known = self.records.get(owner.sid) or self.kept.get(owner.sid)
        start = known[1] if known and known[0] == owner.pid else None
        return not process_alive(owner.pid, start)

    def doomed(self, owner: Owner | None) -> bool:
        if owner is None or (self.session_id is not None and owner.sid != self.session_id):
            return False
        return self.dead(owner) and self.in_scope(owner.sid)


def sweep(*, include_kept: bool = False, session_id: str | None = None,
          containers: bool = True) -> list[str]:
    """Remove every object of every dead session; return one line per thing removed.

    `session_id` limits the sweep to one session (the watchdog's). Kept
    sessions are skipped unless `include_kept`; then their markers go too.
    `containers=False` leaves the engine alone (a lab of namespaces only).
    """
    judge = _Judge(include_kept, session_id)
    # kernel objects first: they take milliseconds, and a stalled engine
    # must not hold them up
    lines = _sweep_uplinks(judge)
    lines += _sweep_processes(judge)
    lines += _sweep_netns(judge)
    lines += _sweep_hosts_files(judge)
    lines += _sweep_links(judge, host().netlink, "")
    lines += [f"released subnet {what}"
              for what in release_dead(session_id, include_kept=include_kept)]
    try:
        lines += _sweep_docker(judge) if containers else []
    except Exception as exc:  # the engine stalled or went away: keep records for a retry
        judge.records_stay = True
        lines.append(f"could not sweep containers: {type(exc).__name__}: {exc}")
    lines += _sweep_labs(judge)
    lines += _sweep_records(judge)
    return lines


# -- host changes -------------------------------------------------------------


def _sweep_uplinks(judge: _Judge) -> list[str]:
    """Undo the opt-in real uplink's host changes (rules, ip_forward) of dead sessions.

    The uplink records its changes in a state file per session before making
    them; the owner's pid is the one in that file, else the session record's.
    A file with neither belongs to a session that is no longer registered,
    which a live plugin session always is.
    """
    lines: list[str] = []
    for name in listdir(STATE_DIR):
        m = _UPLINK_RE.match(name)
        if not m or (judge.session_id is not None and m[1] != judge.session_id):
            continue
        try:
            with open(os.path.join(STATE_DIR, name)) as f:
                pid = int(json.load(f).get("pid") or judge.pid_of(m[1]) or 0)
        except (OSError, ValueError, AttributeError):
            continue
        if (pid and not judge.dead(Owner(m[1], pid))) or not judge.in_scope(m[1]):
            continue
        from ..kernel.uplink import restore_session

        try:
            lines += restore_session(m[1])
        except Exception as exc:
            judge.failed.add(m[1])
            lines.append(f"could not undo the uplink of session {m[1]}: {exc}")
            continue
        lines.append(f"removed uplink state of session {m[1]}")
    return lines


# -- namespaces -------------------------------------------------------------


def _sweep_netns(judge: _Judge) -> list[str]:
    lines: list[str] = []
    nsfs = os.stat("/proc/self/ns/net").st_dev
    for name in listdir(NETNS_RUN_DIR):
        owner = owner_of_netns(name)
        if owner is None or not judge.doomed(owner):
            continue
        path = os.path.join(NETNS_RUN_DIR, name)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if st.st_dev == nsfs:  # still mounted: processes may keep it alive
            # that session started them there, and they would keep the
            # namespace, and every veth in it, alive after its name is gone
            lines += [f"killed process {what} left in netns {name}"
                      for what in _end(functools.partial(netns_members, (st.st_dev, st.st_ino)))]
        lines += judge.attempt(owner.sid, f"netns {name}",
                               functools.partial(remove_named_netns, path))
    return lines


# -- processes ----------------------------------------------------------------


def _end(find: Callable[[], list[ProcStat]]) -> list[str]:
    """SIGKILL what `find` finds (again, until nothing is left); describe each one."""
    found = find()
    if found:
        names = describe(found)
        end_processes(find, grace=0)
        return names
    return []


def _sweep_processes(judge: _Judge) -> list[str]:
    """End what dead sessions started in the host or in attached containers.

    Those namespaces are not ours, so nothing else would; each session wrote
    down what it started there (`nodes/ledger.py`), and only those trees, in
    the namespace each was started in, are ended.
    """
    lines: list[str] = []
    for name in listdir(PROCESSES_DIR):
        m = _LEDGER_RE.match(name)
        if not m or not judge.doomed(Owner(m[1], int(m[2]))):
            continue
        path = os.path.join(PROCESSES_DIR, name)
        entries = read_ledger(path)

        def find(entries: list[tuple[Any, NetnsId]] = entries) -> list[ProcStat]:
            allowed = {ns for _, ns in entries}
            members = trees_members(tree for tree, _ in entries)
            return [s for s in members if netns_of(s.pid) in allowed]

        lines += [f"killed process {what} left by session {m[1]}" for what in _end(find)]
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        lines.append(f"removed process ledger {name}")
    return lines


def _sweep_hosts_files(judge: _Judge) -> list[str]:
    """Namespace nodes' private hosts files, named after their namespaces."""
    lines: list[str] = []
    for name in listdir(HOSTS_DIR):
        owner = owner_of_netns(name)
        if owner is not None and judge.doomed(owner):
            lines += judge.attempt(owner.sid, f"hosts file {name}",
                                   functools.partial(os.unlink, os.path.join(HOSTS_DIR, name)))
    return lines


def _without_doomed_blocks(judge: _Judge, text: str | None) -> str:
    """`text` (a container's /etc/hosts) without the names of dead sessions' topologies."""
    kept: list[str] = []
    inside = False
    for line in (text or "").splitlines():
        owner = owner_of_alias(line[2:]) if line.startswith("# ") else None
        if owner is not None and judge.doomed(owner):
            inside = line.split(" ")[3:4] == ["begin"]
            continue
        if not inside:
            kept.append(line)
    return "\n".join(kept) + ("\n" if kept else "")


def _sweep_names_in(pid: int, judge: _Judge, where: str) -> list[str]:
    """Take dead sessions' names out of an attached container's /etc/hosts."""
    from ..kernel.mounts import read_in_root

    text = read_in_root(pid, "/etc/hosts")
    if text is None or _without_doomed_blocks(judge, text) == text:
        return []
    edit_container_hosts(pid, lambda current: _without_doomed_blocks(judge, current))
    return [f"removed names of dead sessions from /etc/hosts{where}"]


# -- links ------------------------------------------------------------------


def _sweep_links(judge: _Judge, netlink: Netlink, where: str) -> list[str]:
    """Delete links whose alias names a doomed owner, inside one namespace."""
    lines = []
    for link in netlink.links():
        owner = owner_of_alias(link.alias)
        if owner is not None and judge.doomed(owner):
            lines += judge.attempt(  # "already gone" counts as done
                owner.sid, f"link {link.ifname}{where} ({link.alias})",
                functools.partial(netlink.delete_link, link.index),
            )
    return lines


# -- containers ---------------------------------------------------------------


def _docker() -> docker.DockerClient | None:
    """A Docker client when an engine answers, without importing docker otherwise.

    Its own, with a short timeout: a call that an engine never answers must
    not hold a sweep up for the shared client's minute.
    """
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return None
    from ..nodes.engine import connect, engine_available

    if not engine_available():
        return None
    return connect(timeout=DOCKER_TIMEOUT)


def _container_name(attrs: dict[str, Any]) -> str:
    names = attrs.get("Names") or [attrs.get("Name") or attrs.get("Id", "?")[:12]]
    return str(names[0]).lstrip("/")


def _sweep_docker(judge: _Judge) -> list[str]:
    client = _docker()
    if client is None:
        return []
    try:
        return _sweep_containers(client, judge)
    finally:
        client.close()


def _sweep_containers(client: docker.DockerClient, judge: _Judge) -> list[str]:
    import docker.errors

    from ..nodes.engine import remove_container

    label = CONTAINER_LABEL
    if judge.session_id is not None:
        label += f"={judge.session_id}"
    doomed = [
        c for c in client.containers.list(all=True, sparse=True, filters={"label": label})
        if judge.doomed(owner_of_labels(c.attrs.get("Labels")))
    ]

    def remove(ctr: Any) -> list[str]:
        def run() -> None:
            try:
                remove_container(ctr)  # one at a time: see containers.teardown_lock
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: another sweeper is removing it already
                    raise

        sid = ctr.attrs["Labels"][CONTAINER_LABEL]
        return judge.attempt(sid, f"container {_container_name(ctr.attrs)} (session {sid})", run)

    lines: list[str] = []
    for ctr in doomed:
        lines += remove(ctr)
    return lines + _sweep_attached(client, judge)


def _sweep_attached(client: docker.DockerClient, judge: _Judge) -> list[str]:
    """Links a dead session put into containers it attached (and never removes).

    Any running container may have been attached, so each one without our
    label is looked into; the ones with it were started, not attached, and
    their links carry no alias.
    """
    import docker.errors

    lines = []
    for ctr in client.containers.list(sparse=True):
        if CONTAINER_LABEL in (ctr.attrs.get("Labels") or {}):
            continue
        try:
            pid = int(client.api.inspect_container(ctr.id)["State"]["Pid"] or 0)
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC) if pid else -1
        except (docker.errors.NotFound, OSError):
            continue
        if fd < 0:
            continue
        name = _container_name(ctr.attrs)
        try:
            lines += _sweep_links_in(fd, judge, f" in container {name}")
            lines += _sweep_names_in(pid, judge, f" in container {name}")
        except Exception as exc:  # e.g. it stopped meanwhile: report, go on with the rest
            lines.append(f"could not look into container {name}: {exc}")
        finally:
            os.close(fd)
    return lines


def _sweep_links_in(fd: int, judge: _Judge, where: str) -> list[str]:
    return _sweep_links(judge, Netlink(Netns.entering(fd, where.strip())), where)


# -- records ------------------------------------------------------------------


def _sweep_labs(judge: _Judge) -> list[str]:
    """The records of labs whose objects this sweep removed (and whose builder is gone)."""
    lines: list[str] = []
    if judge.records_stay:
        return lines
    for name in lab_names():
        record = read_lab(name)
        if record is None:  # being claimed by an `up` right now, or not a lab's folder
            continue
        sid, pid = str(record.get("session")), int(str(record.get("pid") or 0))
        if sid not in judge.failed and judge.doomed(Owner(sid, pid)):
            remove_lab(name)
            lines.append(f"removed lab {name} (session {sid})")
    return lines


def _sweep_records(judge: _Judge) -> list[str]:
    lines: list[str] = []
    if judge.records_stay:
        return lines
    for directory, records, what in (
        (SESSIONS_DIR, judge.records, "session record"),
        (KEPT_DIR, judge.kept, "kept marker"),
    ):
        for sid, (pid, _) in records.items():
            if sid not in judge.failed and judge.doomed(Owner(sid, pid)):
                try:
                    os.unlink(os.path.join(directory, sid))
                except FileNotFoundError:
                    continue
                lines.append(f"removed {what} {sid} (pid {pid})")
    return lines
