"""Deferred teardown work, finished before the session ends.

Deleting a veth blocks for ~20 ms while the kernel waits for RCU, and
removing a container costs ~40 ms of engine time. Neither result matters to
the test that just ended, so teardown hands that work to one background
thread and the session waits for all of it once, at the end. By the time the
pytest process exits, nothing it made remains.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from .netlink import Netlink
from .netns import Netns

log = logging.getLogger(__name__)


class Janitor:
    """A single background worker for teardown steps, with a barrier."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._host: Netlink | None = None
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
                log.debug("deferred teardown step failed: %s", exc)
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                self._jobs.task_done()

    def delete_host_link(self, link: int | str) -> None:
        """Queue the deletion of a root-namespace link.

        It runs inline on the janitor's own thread (which is in the host's
        namespace), with a netlink socket of its own: a veth delete holds
        its thread for ~20 ms, and the next test's setup must not queue
        behind it.
        """
        self.defer(lambda: self._host_netlink().delete_link(link))

    def _host_netlink(self) -> Netlink:
        if self._host is None:
            self._host = Netlink(Netns.host())
        return self._host

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
    from .rtnl import link_aliases

    deadline = time.monotonic() + timeout
    while True:
        left = [name for name, tag in link_aliases() if tag.startswith(alias)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


_JANITOR = Janitor()


def janitor() -> Janitor:
    return _JANITOR
