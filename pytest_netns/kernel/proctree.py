"""Finding and ending the processes a command started, from /proc.

A command is more than its first process: `sh -c "server; echo"` forks,
`nc -ll -e cat` forks a handler per connection, and `sleep 30 &` outlives
its parent. Signalling the first PID leaves the rest running (and holding
ports). Every command we start is a session leader: `setsid` on the
namespace backend (start_new_session), and runc makes each `docker exec`
process one too. Its children stay in that session and process group even
after the leader exits and they are re-parented to init, so "the tree" is:
every process whose session or process group is the leader's PID, plus
their descendants by parent PID (which also catches a child that called
setsid while its parent is still alive).

PIDs are only numbers. The kernel does not reuse a PID while a process, a
process group or a session still uses it, so session/group membership is
safe as long as the leader is dead or is the process we started (checked by
its start time). Every signal goes through a pidfd opened after the scan and
checked against the scanned start time, so a PID recycled between scan and
signal is never hit.

A process that calls setsid *and* outlives its parent escapes the tree; for
an owned namespace `netns_members` finds everything inside the namespace
instead (the whole namespace is ours), and an owned container is removed.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import ExecTimeoutError, NetnsError

NetnsId = tuple[int, int]
"""(st_dev, st_ino) of a network namespace file: its identity."""


class ProcStat(NamedTuple):
    """The fields of /proc/PID/stat that identify a process and place it in a tree."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    starttime: int  # clock ticks after boot: with pid, identifies one process


def read_stat(pid: int) -> ProcStat | None:
    """One process's stat, or None when it is gone.

    os.open/os.read rather than open(): a scan reads hundreds of these, and
    a file object costs about as much again as the read.
    """
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = os.read(fd, 4096)
    except ProcessLookupError:  # exited between open and read
        return None
    finally:
        os.close(fd)
    # comm (field 2) may contain spaces and ')', so split after its last ')'
    fields = data[data.rfind(b")") + 2 :].split(b" ", 20)
    if len(fields) < 20:
        return None
    return ProcStat(
        pid, fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])
    )


def _pids() -> Iterable[int]:
    with os.scandir("/proc") as it:
        for entry in it:
            if entry.name.isdigit():
                yield int(entry.name)


def scan() -> dict[int, ProcStat]:
    """Every process on the machine (thread group leaders only), by PID."""
    table: dict[int, ProcStat] = {}
    for pid in _pids():
        stat = read_stat(pid)
        if stat is not None:
            table[pid] = stat
    return table


def netns_id(path: str) -> NetnsId:
    """The identity of the network namespace at `path` (a /run/netns or /proc file)."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def netns_of(pid: int) -> NetnsId | None:
    """The network namespace of a process, or None if it is gone or hidden from us."""
    try:
        return netns_id(f"/proc/{pid}/ns/net")
    except OSError:  # gone, zombie (ENOENT), or EACCES in some sandboxes
        return None


def _alive(stat: ProcStat) -> bool:
    return stat.state not in ("Z", "X", "x")


@dataclass(frozen=True)
class ProcessTree:
    """A command's processes: its leader (by PID and start time) and everything it started."""

    leader: int
    starttime: int | None
    """The leader's start time; None when it had already exited when the tree was made."""

    @classmethod
    def of(cls, pid: int, netns: NetnsId | None = None) -> ProcessTree:
        """The tree led by `pid`, which we started (in `netns`, when given).

        If `pid` is gone, or now names a process outside `netns` (so was
        recycled), the leader is recorded as dead: its session and group
        members can still be found, since their PID cannot be reused while
        they live.
        """
        stat = read_stat(pid)
        if stat is None or not _alive(stat):
            return cls(pid, None)
        if netns is not None and netns_of(pid) != netns:
            return cls(pid, None)
        return cls(pid, stat.starttime)

    def members(self, table: dict[int, ProcStat] | None = None) -> list[ProcStat]:
        """Its live processes now: session and group members, and their descendants."""
        return trees_members([self], table)

    def _roots(self, index: _Index) -> list[ProcStat]:
        lead = index.table.get(self.leader)
        if lead is not None and _alive(lead) and lead.starttime != self.starttime:
            return []  # the PID was recycled, so nothing of ours uses it any more
        roots = [*index.by_session.get(self.leader, ()), *index.by_group.get(self.leader, ())]
        return roots if lead is None else [lead, *roots]


class _Index:
    """One scan, indexed the ways a tree is looked up: by session, group and parent."""

    def __init__(self, table: dict[int, ProcStat]) -> None:
        self.table = table
        self.by_session: dict[int, list[ProcStat]] = {}
        self.by_group: dict[int, list[ProcStat]] = {}
        self.children: dict[int, list[ProcStat]] = {}
        for stat in table.values():
            self.by_session.setdefault(stat.session, []).append(stat)
            self.by_group.setdefault(stat.pgrp, []).append(stat)
            self.children.setdefault(stat.ppid, []).append(stat)

    def with_descendants(self, roots: list[ProcStat]) -> list[ProcStat]:
        seen: dict[int, ProcStat] = {}
        todo = list(roots)
        while todo:
            stat = todo.pop()
            if stat.pid in seen:
                continue
            seen[stat.pid] = stat
            todo.extend(self.children.get(stat.pid, ()))  # through zombies: they still parent
        me = os.getpid()
        return [s for s in seen.values() if _alive(s) and s.pid != me]


def trees_members(trees: Iterable[ProcessTree],
                  table: dict[int, ProcStat] | None = None) -> list[ProcStat]:
    """The live members of several trees, from one scan (linear in processes plus trees)."""
    trees = list(trees)
    if not trees:
        return []
    index = _Index(scan() if table is None else table)
    roots = [root for tree in trees for root in tree._roots(index)]
    return index.with_descendants(roots)


def netns_members(netns: NetnsId) -> list[ProcStat]:
    """Every live process whose network namespace is `netns` (this process excepted).

    Only for namespaces we own: whatever runs there, we started.
    """
    me = os.getpid()
    found: list[ProcStat] = []
    for pid in _pids():
        if pid == me or netns_of(pid) != netns:
            continue
        stat = read_stat(pid)
        if stat is not None and _alive(stat):
            found.append(stat)
    return found


def describe(stats: Iterable[ProcStat]) -> list[str]:
    """"PID (comm)" for each process, for a log line or a sweep's report."""
    out = []
    for stat in stats:
        try:
            with open(f"/proc/{stat.pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            comm = "?"
        out.append(f"{stat.pid} ({comm})")
    return out


def _open_checked(stat: ProcStat) -> int | None:
    """A pidfd for the process `stat` describes, or None if it is gone or was replaced."""
    try:
        fd = os.pidfd_open(stat.pid)
    except ProcessLookupError:
        return None
    now = read_stat(stat.pid)
    if now is None or now.starttime != stat.starttime or not _alive(now):
        os.close(fd)
        return None
    return fd


def _signal(stats: Iterable[ProcStat], sig: signal.Signals) -> list[int]:
    """Send `sig` to each process, oldest first; return the pidfds of those signalled.

    Oldest first: a command's main process hears it before its children,
    so a shell dies of the signal (and says so in its exit status) rather
    than seeing its child die first and exiting normally. The caller
    closes the pidfds.
    """
    fds: list[int] = []
    for stat in sorted(stats, key=lambda s: (s.starttime, s.pid)):
        fd = _open_checked(stat)
        if fd is None:
            continue
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            os.close(fd)
            continue
        fds.append(fd)
    return fds


def _wait_exit(fds: list[int], deadline: float) -> list[int]:
    """Wait until every pidfd reports an exit or the deadline passes; return those still alive.

    A pidfd turns readable when its process exits (zombie or reaped), so this
    waits on the kernel instead of polling /proc.
    """
    pending = list(fds)
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd, _ in poller.poll(left * 1000):
            poller.unregister(fd)
            pending.remove(fd)
    return pending


def end_processes(
    find: Callable[[], list[ProcStat]], grace: float, kill_timeout: float = 5.0
) -> None:
    """SIGTERM everything `find` returns, wait up to `grace`, then SIGKILL what is left.

    `find` is called again after each round, so processes forked while the
    others were dying are found too; when it finds nothing at first, that
    one call is all this costs. With `grace` 0 it goes straight to SIGKILL.
    NetnsError if something survives SIGKILL for `kill_timeout` (a process
    stuck in the kernel).
    """
    targets = find()
    if not targets:
        return
    if grace > 0:
        fds = _signal(targets, signal.SIGTERM)
        try:
            _wait_exit(fds, time.monotonic() + grace)
        finally:
            for fd in fds:
                os.close(fd)
        targets = find()
    deadline = time.monotonic() + kill_timeout
    while targets:
        if time.monotonic() >= deadline:
            raise NetnsError(
                f"processes {sorted(s.pid for s in targets)} survived SIGKILL for "
                f"{kill_timeout:g} s (stuck in the kernel?)"
            )
        fds = _signal(targets, signal.SIGKILL)
        try:
            _wait_exit(fds, deadline)
        finally:
            for fd in fds:
                os.close(fd)
        if not fds:  # each one exited between scan and signal: look again shortly
            time.sleep(0.001)
        targets = find()


def communicate_tree(
    proc: subprocess.Popen[bytes], stdin: bytes | None, timeout: float, label: str
) -> tuple[int, str]:
    """`proc.communicate` that cannot hang: on timeout the whole tree dies and it raises.

    `proc` must have been started in a session of its own. After the
    timeout, killing only `proc` would leave its children holding the
    output pipe, and communicate() would then wait for them without limit;
    so the whole tree gets SIGKILL, and what it printed is in the
    ExecTimeoutError. A program that returns while a child it left in the
    background still holds the pipe is waited for only until the deadline.
    """
    stat = read_stat(proc.pid)
    tree = ProcessTree(proc.pid, stat.starttime if stat is not None else None)
    try:
        out, _ = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        partial = exc.output or b""
        end_processes(tree.members, grace=0)
        try:  # it resumes the first call: `out` is everything, from the start
            out, _ = proc.communicate(timeout=1.0)
            partial = out or b""
        except subprocess.TimeoutExpired:  # a setsid'd child still holds the pipe
            proc.kill()
            if proc.stdout is not None:
                proc.stdout.close()
            proc.wait()
        raise ExecTimeoutError(label, list(map(str, proc.args)),  # type: ignore[arg-type]
                               timeout, partial.decode(errors="replace")) from None
    return proc.returncode, (out or b"").decode(errors="replace")
