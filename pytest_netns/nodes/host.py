"""The root namespace as a node: "host" in the API.

"The host" is the namespace the pytest process started in. It is shared by
every topology: each adds the host ends of its links to the host node's
interfaces while it is up (so probes from "host" may leave through them,
and through nothing else), and takes them away when it closes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from ..kernel.netns import Netns
from .base import Interface, Node
from .process import Process, as_argv, communicate, end_group, popen_in


class HostNode(Node):
    """The namespace this pytest process started in ("host" in the API)."""

    def __init__(self) -> None:
        handle = Netns.host()
        assert handle.path is not None
        super().__init__("host", handle.path, handle)
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return "host"

    def add_interfaces(self, interfaces: list[Interface]) -> None:
        with self._lock:
            self.interfaces = [*self.interfaces, *interfaces]

    def remove_interfaces(self, interfaces: list[Interface]) -> None:
        with self._lock:
            self.interfaces = [i for i in self.interfaces if i not in interfaces]

    def exec(self, argv: list[str] | str, timeout: float = 30.0) -> tuple[int, str]:
        return communicate(popen_in(self.handle, as_argv(argv)), timeout)

    def spawn(self, argv: list[str] | str) -> Process:
        proc = popen_in(self.handle, as_argv(argv))
        return Process(as_argv(argv), lambda: end_group(proc))

    def remove(self, defer: Callable[[Callable[[], None]], None],
               unpin: Callable[[str], None] | None = None) -> None:
        """The host is never removed."""

    def release(self) -> None:
        """The host node is shared by every topology: nothing to drop."""


_HOST: dict[int, HostNode] = {}  # pid -> node: a forked child makes its own
_HOST_LOCK = threading.Lock()


def host() -> HostNode:
    """The shared node for the root namespace (the one pytest started in)."""
    with _HOST_LOCK:
        node = _HOST.get(os.getpid())
        if node is None:
            node = _HOST[os.getpid()] = HostNode()
        return node
