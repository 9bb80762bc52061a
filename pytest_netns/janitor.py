"""Deferred teardown work, finished before the session ends.

Deleting a veth blocks for ~20 ms while the kernel waits for RCU, and
removing a container costs ~40 ms of engine time. Neither result matters to
the test that just ended, so teardown hands that work to one background
thread and the session waits for all of it once, at the end. By the time the
pytest process exits, nothing it made remains.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from .session import ALIAS_PREFIX


class Janitor:
    """A single background worker for teardown steps, with a barrier."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def defer(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="netns-janitor", daemon=True)
                self._thread.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                job()
            except Exception as exc:  # recorded and reported at drain()
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                self._jobs.task_done()

    def drain(self) -> list[str]:
        """Wait for every deferred job; return (and forget) the errors they raised."""
        self._jobs.join()
        errors, self.errors = self.errors, []
        return errors


def wait_for_links_gone(alias: str, timeout: float = 10.0) -> list[str]:
    """Wait until no root-namespace link carries `alias`; return the stragglers' names.

    Namespaces (and the veths in them) are destroyed asynchronously by the
    kernel, so the host-side ends linger briefly after their peer's namespace
    is gone. This waits on kernel state rather than sleeping a fixed time.
    """
    from pyroute2 import IPRoute

    deadline = time.monotonic() + timeout
    with IPRoute() as ip:
        while True:
            left = [
                str(m.get_attr("IFLA_IFNAME"))
                for m in ip.get_links()
                if (m.get_attr("IFLA_IFALIAS") or "").startswith(alias)
            ]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.02)


def session_links(ip_links: list[dict[str, object]]) -> list[dict[str, object]]:
    """Links tagged by any pytest-netns session (for reports and sweeps)."""
    return [ln for ln in ip_links if str(ln.get("alias") or "").startswith(ALIAS_PREFIX)]


_JANITOR = Janitor()


def janitor() -> Janitor:
    return _JANITOR
