"""Loading the probe machinery before the first probe needs it.

The first probe of a process would otherwise import the socket layer and
read the packet templates (`templates.py`) itself: a few milliseconds on an
idle machine, tens on a loaded one, all of it on the first probe's time.
`start()` does both on a background thread, once per process. The topology
builder calls it as a build begins, so the work overlaps the build, which
mostly waits for the kernel or the container engine.
"""

from __future__ import annotations

import contextlib
import threading

_lock = threading.Lock()
_started = False


def start() -> None:
    """Load the socket layer and the templates on a background thread (once)."""
    global _started
    with _lock:
        if _started:
            return
        _started = True
    threading.Thread(target=_load, name="netns-probes-preload", daemon=True).start()


def _load() -> None:
    from . import receiver, route, sockets  # noqa: F401  (imported for the first probe)
    from .templates import templates

    with contextlib.suppress(Exception):  # the first probe then builds them, and says why
        templates()
