"""Start and end of a pytest-netns session in one process.

At the start the session registers itself as live (so sweeps leave it alone)
and the crash watchdog is armed; at the end deferred teardown is drained and
the process waits until the kernel has reaped every host-side link it made,
so nothing the session created outlives it.
"""

from __future__ import annotations

from .janitor import janitor, wait_for_links_gone
from .session import Session, current_session
from .topology import kept_topologies, live_topologies


def start_session() -> Session:
    session = current_session()
    from . import reaper

    reaper.on_session_start(session)
    return session


def finish_session(session: Session) -> list[str]:
    """Close leftovers, drain the janitor and wait for the kernel; return problems."""
    problems: list[str] = []
    for topo in live_topologies():
        try:
            topo.close()
        except Exception as exc:
            problems.append(f"closing {topo.label}: {exc}")
    problems += janitor().drain()
    # a kept topology's host-side links stay on purpose (--netns-keep)
    left = [] if kept_topologies() else wait_for_links_gone(session.alias)
    if left:
        problems.append(f"links still present after 10 s: {left}")
    from . import reaper

    reaper.on_session_end(session)
    return problems
