"""Every topology this process has up, and what building and closing them cost.

The session's end closes what tests left open, and the terminal summary
adds up the costs; both read this registry, and only they do: probes,
captures and reports get what they need from the nodes and topologies
they are handed.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .topology import Topology

# what every topology in this process built, for the terminal summary
STATS = {"topologies": 0, "build_seconds": 0.0, "teardown_seconds": 0.0,
         "shared": 0, "shared_tests": 0}
_LIVE: list[Topology] = []
_LOCK = threading.Lock()


def register(topo: Topology) -> None:
    with _LOCK:
        _LIVE.append(topo)


def closed(topo: Topology) -> None:
    """Count a closed topology in the summary, and forget it."""
    with _LOCK:
        STATS["topologies"] += 1
        STATS["build_seconds"] += topo.build_seconds
        STATS["teardown_seconds"] += topo.teardown_seconds
        if topo.scoped:  # built by netns_factory, for every test that ran while it was up
            STATS["shared"] += 1
            STATS["shared_tests"] += topo.tests_seen
        if topo in _LIVE:
            _LIVE.remove(topo)


def live_topologies() -> list[Topology]:
    """Topologies built in this process, not yet closed, and not kept for debugging."""
    with _LOCK:
        return [t for t in _LIVE if not t.kept]


def kept_topologies() -> list[Topology]:
    """Topologies left up on purpose (--netns-keep); they outlive the process."""
    with _LOCK:
        return [t for t in _LIVE if t.kept]
