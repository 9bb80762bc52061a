"""A bare named network namespace as a node: the embedded default, and switches and routers.

Commands run on the host's filesystem, inside the namespace, forked from a
worker inside it (no `ip netns exec`, no helper process), each in a session
of its own (see `exec_namespace`), with the node's own /etc/hosts (see
`hosts.PrivateHosts`): every process of the node is forked inside the
node's mount namespace, which holds the private mount. Removing the node
ends every process started in it and then every other process still inside
the namespace (it is ours), then unpins the namespace; the kernel reaps its
links once nothing holds it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

from ..kernel.netns import Netns, remove_named_netns
from .base import Node
from .exec_namespace import NamespaceExecutor
from .hosts import Edit, PrivateHosts


class NamespaceNode(Node):
    """A bare named network namespace, for runs without Docker and for switches."""

    def __init__(self, name: str, handle: Netns, owned: bool = True,
                 environment: Mapping[str, str] | None = None) -> None:
        assert handle.path is not None, "a namespace node is a named namespace"
        super().__init__(name, handle.path, handle)
        self.owned = owned
        #: in the environment of every command run in it (under each command's own
        #: `env`), as a container's environment is
        self.environment = dict(environment or {})
        self.hosts = PrivateHosts(os.path.basename(handle.path))

    def update_names(self, edit: Edit) -> None:
        self.hosts.update(edit)

    def _make_executor(self) -> NamespaceExecutor:
        """Each command starts with the node's hosts file mounted over /etc/hosts."""
        return NamespaceExecutor(self, self.netns, self.name, owned=self.owned,
                                 environment=self.environment)

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Fork argv inside the node: its network namespace, and its mount namespace (the
        one with its hosts file over /etc/hosts)."""
        return self.handle.popen(argv, self.hosts.mount(self.handle), **kwargs)

    def start_detached(self, command: list[str], log_path: str) -> int:
        """Start a process that outlives this Python process (a lab's command, started by
        `pytest-netns up`); return its pid.

        Unlike `spawn`, nothing here reads its output (a pipe whose reader
        exited would kill it with the first write): the output goes straight
        to `log_path`. It is not one of this node's `processes`; a sweep of
        the namespace ends it.
        """
        self.check_open("start a process in")
        with open(log_path, "ab") as log:
            proc = self.popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, env={**os.environ, **self.environment})
        return int(proc.pid)

    def remove(self, defer: Callable[[Callable[[], None]], None] | None = None,
               unpin: Callable[[str], None] | None = None) -> None:
        """End every process started in it, then unpin the namespace (all at once)."""
        self.close_executor()
        self.release()
        self.hosts.remove()
        if self.owned:
            (unpin or remove_named_netns)(self.netns)
