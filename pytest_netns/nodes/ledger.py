"""Processes a session started where no sweep would find them, written down for the reaper.

A process started in a namespace pytest-netns made dies with that
namespace's sweep, and one started in a container it made dies with the
container. A process started in the host's namespace or in an attached
container (`host().spawn(...)`, `exec` in a container the test passed in)
has no such owner: if pytest is killed, nothing else knows it is ours. So
each one is appended to the session's ledger as it starts (its leader's PID
and start time, and its network namespace), and the reaper ends whatever is
still running of a dead session's entries (`lifecycle/reaper.py`).

An entry identifies a process tree the way `kernel.proctree` does, never by
command line; a tree is only looked for in the namespace it was started in.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..kernel.proctree import NetnsId, ProcessTree
from ..ownership import PROCESSES_DIR, Session


def ledger_for(session: Session, netns: NetnsId) -> Callable[[ProcessTree], None]:
    """What an executor calls with each tree it starts in `netns` for `session`."""

    def record(tree: ProcessTree) -> None:
        os.makedirs(PROCESSES_DIR, exist_ok=True)
        # start 0: the leader had exited already; its session's members still count
        line = f"{tree.leader} {tree.starttime or 0} {netns[0]} {netns[1]}\n".encode()
        # one write of a short line with O_APPEND: threads and workers never interleave
        fd = os.open(session.ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    return record


def read_ledger(path: str) -> list[tuple[ProcessTree, NetnsId]]:
    """The trees a ledger file lists (malformed lines are skipped)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            pid, start, dev, ino = (int(x) for x in line.split())
        except ValueError:
            continue
        entries.append((ProcessTree(pid, start or None), (dev, ino)))
    return entries
