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
from ..kernel.proctree import netns_id
from ..ownership import current_session
from .base import Interface, Node
from .exec_namespace import NamespaceExecutor
from .ledger import ledger_for


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

    def _make_executor(self) -> NamespaceExecutor:
        """Commands in the host are ours to end, not the namespace: never swept; each is
        written down, so a crashed session's sweep ends what it left running."""
        return NamespaceExecutor(self.handle, self.netns, "host", owned=False,
                                 ledger=ledger_for(current_session(), netns_id(self.netns)))

    def stop_processes(self) -> None:
        """End what was started in the host and is still running (at the session's end)."""
        if self._executor is not None:
            self._executor.stop_all()

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


def stop_host_processes() -> None:
    """End what was started in the host and is still running (the session's end)."""
    with _HOST_LOCK:
        node = _HOST.get(os.getpid())
    if node is not None:
        node.stop_processes()
