"""A bare named network namespace as a node: the embedded default, and switches and routers.

Commands run on the host's filesystem, inside the namespace, forked from
the namespace's thread (no `ip netns exec`, no helper process), with the
node's own /etc/hosts (see `hosts.PrivateHosts`): every process of the node
must be forked from that thread, which holds the private mount. Removing the
node ends every process started in it, then unpins the namespace; the kernel
reaps its links once nothing holds it.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable

from ..kernel.netns import NetnsThread, remove_named_netns
from .base import Node
from .hosts import Edit, PrivateHosts
from .process import Process, as_argv, communicate, end_group, kill_in_netns, popen_in

log = logging.getLogger(__name__)


class NamespaceNode(Node):
    """A bare named network namespace, for runs without Docker and for switches."""

    def __init__(self, name: str, netns: str, thread: NetnsThread, owned: bool = True) -> None:
        super().__init__(name, netns, thread)
        self.owned = owned
        self._children: list[subprocess.Popen[bytes]] = []
        self._inode = os.stat(netns).st_ino
        self.hosts = PrivateHosts(os.path.basename(netns))

    def update_names(self, edit: Edit) -> None:
        self.hosts.update(edit)

    def exec(self, argv: list[str] | str, timeout: float = 30.0) -> tuple[int, str]:
        """Run argv on the host's filesystem, inside this namespace (with its own /etc/hosts)."""
        self.check_open("run a command in")
        self.hosts.mount(self._thread)
        return communicate(popen_in(self._thread, as_argv(argv)), timeout)

    def spawn(self, argv: list[str] | str) -> Process:
        self.check_open("start a process in")
        self.hosts.mount(self._thread)
        proc = popen_in(self._thread, as_argv(argv))
        self._children.append(proc)
        return Process(as_argv(argv), lambda: end_group(proc))

    def remove(self, defer: Callable[[Callable[[], None]], None] | None = None) -> None:
        """End every process started in it, then unpin the namespace (all at once)."""
        for proc in self._children:
            end_group(proc)
        if self._children:
            # children that left their process group are still in the namespace
            killed = kill_in_netns(self._inode)
            if killed:
                log.debug("%s: killed %s left in its namespace", self.name, killed)
        self._children.clear()
        self.release()
        self.hosts.remove()
        if self.owned:
            remove_named_netns(self.netns)
