"""Start and end of a pytest-netns session in one process.

At the start the session registers itself as live (so sweeps leave it
alone) and the crash watchdog is armed; at the end the topologies tests
left open are closed, processes started in the host are stopped, deferred
teardown is drained, the process waits until
the kernel has reaped every host-side link it made, and the watchdog is
told the exit was clean. Nothing the session created outlives it.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from ..kernel.janitor import janitor, wait_for_links_gone
from ..nodes.host import stop_host_processes
from ..ownership import Session, current_session
from ..topology.registry import kept_topologies, live_topologies
from .watchdog import Watchdog, start

_lock = threading.Lock()
_active: dict[str, Any] = {"pid": 0, "depth": 0, "watchdog": None}


def start_session(prefetch: int = 0) -> Session:
    """Register the session as live and arm its watchdog (once per process).

    The watchdog also sweeps dead sessions' leftovers as it starts, in its
    own process, so pytest does not wait for that (nor import docker for it).
    Nested sessions in one process (pytester's in-process runs) share it.
    `prefetch` containers per image are then kept started ahead
    (`nodes/prefetch.py`).
    """
    session = current_session()
    with _lock:
        if _active["pid"] != os.getpid():  # a forked child inherits no watchdog
            _active.update(pid=os.getpid(), depth=0, watchdog=None)
        session.register()
        _active["depth"] += 1
        if _active["watchdog"] is None:
            _active["watchdog"] = start(session, sweep_dead=True)
    if prefetch:
        from ..nodes import prefetch as ahead

        ahead.enable(prefetch)
    return session


def finish_session(session: Session) -> list[str]:
    """Close leftovers, drain the janitor and wait for the kernel; return problems."""
    problems: list[str] = []
    for topo in live_topologies():
        try:
            topo.close()
        except Exception as exc:
            problems.append(f"closing {topo.label}: {exc}")
    try:
        stop_host_processes()
    except Exception as exc:
        problems.append(f"stopping processes started in the host: {exc}")
    outermost = _active["pid"] != os.getpid() or _active["depth"] <= 1
    if outermost and "pytest_netns.nodes.prefetch" in sys.modules:  # started ahead, not taken
        from ..nodes import prefetch
        from ..nodes.engine import remove_container

        problems += prefetch.close(lambda ctr: janitor().defer(lambda: remove_container(ctr)))
    problems += janitor().drain()
    # a kept topology's host-side links stay on purpose (--netns-keep)
    left = [] if kept_topologies() else wait_for_links_gone(session.alias)
    if left:
        problems.append(f"links still present after 10 s: {left}")
    _disarm(session)
    return problems


def _disarm(session: Session) -> None:
    """Tell the watchdog this was a clean exit, reap it, and unregister."""
    with _lock:
        if _active["pid"] != os.getpid():
            return
        _active["depth"] = max(_active["depth"] - 1, 0)
        if _active["depth"]:
            return
        wd: Watchdog | None = _active["watchdog"]
        _active["watchdog"] = None
        if wd is not None:
            wd.stop()
        session.unregister()


def current_watchdog() -> Watchdog | None:
    """This process's watchdog, if a session has armed one."""
    return _active["watchdog"] if _active["pid"] == os.getpid() else None
