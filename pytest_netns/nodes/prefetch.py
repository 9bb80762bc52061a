"""Containers started ahead: the next topology's containers start while this test runs.

Starting a container costs about 200 ms of engine time, and a suite of
container tests spends most of its time waiting for it, one test after
the other. With prefetching on, every time a topology takes containers of
an image, as many new ones start in the background, so the next topology
that asks for that image finds them running. The engine works on them
while the test runs (and while the janitor removes the last test's
containers), instead of while the next test waits.

Rules that keep it safe:

- a container is handed out once, and only if it has never been used: a
  topology's containers are removed when it closes, as before, and never
  come back to the pool;
- only containers with the image's default command and no run options are
  prefetched: a test's own command, environment or volumes start when the
  test asks, since their timing or content may matter to it;
- a prefetched container carries the session's labels like every other,
  so a crashed session's watchdog and `pytest-netns cleanup` remove it
  (and the watchdog looks again seconds later, for one whose start the
  engine finished after the crash); a clean session end removes the unused
  ones;
- at most `depth` containers per image wait started, and at most `depth`
  start at a time, on as many threads.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docker.models.containers import Container

log = logging.getLogger(__name__)

#: the label that marks a container started ahead (besides the session's own)
PREFETCH_LABEL = "pytest-netns.prefetched"
#: background starts of one image that fail in a row before it is no longer started ahead
GIVE_UP = 3


class Prefetch:
    """Started containers waiting to be taken, per owner and image.

    The key names the owner (the session id) as well as the image: a
    container carries its session's labels from the start, so it can only
    ever be handed to that session.
    """

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self._ready: dict[str, collections.deque[Future[Container]]] = {}
        self._failures: dict[str, int] = {}  # key -> background starts failed in a row
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=max(depth, 1),
                                            thread_name_prefix="netns-prefetch")
        self._closed = False

    def take(self, key: str, count: int,
             start: Callable[[], Container]) -> list[Future[Container]]:
        """`count` containers for `key` (owner and image): started ones first, the rest now.

        Afterwards up to `depth` more start in the background for the next
        taker. `start` runs the engine call (with the owner's labels).
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("prefetching was closed")
            ready = self._ready.setdefault(key, collections.deque())
            taken = [ready.popleft() for _ in range(min(count, len(ready)))]
            taken += [self._executor.submit(start) for _ in range(count - len(taken))]
            if self._failures.get(key, 0) < GIVE_UP:
                while len(ready) < self.depth:
                    future = self._executor.submit(start)
                    future.add_done_callback(functools.partial(self._check, key))
                    ready.append(future)
        return taken

    def _check(self, key: str, future: Future[Container]) -> None:
        if future.cancelled():
            return
        with self._lock:
            if future.exception() is None:
                self._failures.pop(key, None)
                return
            self._failures[key] = self._failures.get(key, 0) + 1
        log.debug("prefetching %s failed: %s", key, future.exception())

    def failures(self) -> dict[str, int]:
        """Background starts that failed in a row, per key (at GIVE_UP it stops trying)."""
        with self._lock:
            return dict(self._failures)

    def waiting(self, timeout: float = 60.0) -> list[str]:
        """Names of the containers started ahead and not taken yet (waits for those starting)."""
        with self._lock:
            futures = [f for ready in self._ready.values() for f in ready]
        names = []
        for future in futures:
            try:
                names.append(str(future.result(timeout).name))
            except Exception:  # it never started: nothing of it exists
                continue
        return names

    def close(self, remove: Callable[[Container], None]) -> list[str]:
        """Stop starting, and remove every container not taken; return what failed."""
        with self._lock:
            self._closed = True
            left = [f for ready in self._ready.values() for f in ready]
            self._ready.clear()
        problems = []
        for future in left:
            if future.cancel():
                continue
            try:
                container = future.result()
            except Exception:  # it never started: nothing to remove
                continue
            try:
                remove(container)
            except Exception as exc:
                problems.append(f"removing prefetched container {container.name}: {exc}")
        self._executor.shutdown(wait=True)
        return problems


_current: Prefetch | None = None
_lock = threading.Lock()


def enable(depth: int) -> None:
    """Start containers ahead from now on (`depth` per image); 0 turns it off."""
    global _current
    with _lock:
        if _current is None and depth > 0:
            _current = Prefetch(depth)


def current() -> Prefetch | None:
    return _current


def waiting() -> list[str]:
    """Names of the containers started ahead and not taken yet (none when it is off)."""
    pool = _current
    return pool.waiting() if pool is not None else []


def close(remove: Callable[[Container], None]) -> list[str]:
    """Turn prefetching off and remove the containers nobody took."""
    global _current
    with _lock:
        pool, _current = _current, None
    return pool.close(remove) if pool is not None else []
