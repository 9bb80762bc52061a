"""A bare named network namespace as a node: the embedded default, and switches and routers.

Commands run on the host's filesystem, inside the namespace, forked from
the namespace's thread (no `ip netns exec`, no helper process), each in a
session of its own (see `exec_namespace`), with the node's own /etc/hosts
(see `hosts.PrivateHosts`): every process of the node must be forked from
that thread, which holds the private mount. Removing the node ends every
process started in it and then every other process still inside the
namespace (it is ours), then unpins the namespace; the kernel reaps its
links once nothing holds it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..kernel.netns import NetnsThread, remove_named_netns
from .base import Node
from .exec_namespace import NamespaceExecutor
from .hosts import Edit, PrivateHosts


class NamespaceNode(Node):
    """A bare named network namespace, for runs without Docker and for switches."""

    def __init__(self, name: str, netns: str, thread: NetnsThread, owned: bool = True) -> None:
        super().__init__(name, netns, thread)
        self.owned = owned
        self.hosts = PrivateHosts(os.path.basename(netns))

    def update_names(self, edit: Edit) -> None:
        self.hosts.update(edit)

    def _make_executor(self) -> NamespaceExecutor:
        """Each command starts with the node's hosts file mounted over /etc/hosts."""
        return NamespaceExecutor(self._thread, self.netns, self.name, owned=self.owned,
                                 prepare=lambda: self.hosts.mount(self._thread))

    def remove(self, defer: Callable[[Callable[[], None]], None] | None = None) -> None:
        """End every process started in it, then unpin the namespace (all at once)."""
        self.close_executor()
        self.release()
        self.hosts.remove()
        if self.owned:
            remove_named_netns(self.netns)
