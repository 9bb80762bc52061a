"""Hosts files: how a topology's names reach the processes inside its nodes.

The topology decides what each node's hosts file says (`topology/names.py`);
this module puts it where the node's processes read it, the same way on
both backends:

- a container's own /etc/hosts (the per-container file Docker mounts there)
  is rewritten from the host with `kernel.mounts.edit_in_root`, which never
  follows a symlink, so an image cannot make the write land on a host file;
  images without any tools get their names too;
- a namespace node gets a private file under /run/pytest-netns/hosts,
  bind-mounted over /etc/hosts for every process the node starts (as
  `ip netns exec` does with /etc/netns/NAME/hosts): the first time the node
  starts a process it gets a mount namespace of its own with that file over
  /etc/hosts (`kernel.mounts.private_mount_namespace`, kept by a
  descriptor), and every process of the node is forked inside it.
  The file is always rewritten in place, so processes already running see
  the names as soon as the topology is built.

An edit is a function from the current text (None when there is none) to
the new one, so a file shared with others (an attached container's) keeps
every line that is not the topology's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable

from ..kernel.mounts import (
    detach_private_nsfs,
    edit_in_root,
    private_mount_namespace,
)
from ..kernel.netns import Netns
from ..ownership import STATE_DIR

log = logging.getLogger(__name__)

HOSTS_DIR = os.path.join(STATE_DIR, "hosts")
HOSTS = "/etc/hosts"
LOCALHOST = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

#: current hosts text (None: no file yet) -> the new text
Edit = Callable[[str | None], str]


def edit_container_hosts(pid: int, edit: Edit) -> None:
    """Apply `edit` to the /etc/hosts of the container whose init process is `pid`."""
    edit_in_root(pid, HOSTS, edit)


class PrivateHosts:
    """A namespace node's own hosts file, bind-mounted over /etc/hosts for its processes.

    The file is named after the node's namespace (which carries the session
    id and pid), so a sweep knows whose it is.
    """

    def __init__(self, netns_name: str) -> None:
        self.path = os.path.join(HOSTS_DIR, netns_name)
        self._edit: Edit | None = None
        self._written = False
        self._mounted = False
        self._mntns: int | None = None  # the node's mount namespace
        self._detaching: threading.Thread | None = None
        self._lock = threading.Lock()  # a node's first processes may start from two threads

    def update(self, edit: Edit) -> None:
        """Use `edit` from now on; rewrite the file now if a process may be reading it."""
        with self._lock:
            self._edit = edit
            if self._written:
                self._write()

    def write(self) -> str:
        """Write the file now, and return its path: a lab's later commands, in other
        processes, mount it for what they run in the node (`pytest-netns exec`)."""
        with self._lock:
            self._write()
        return self.path

    def _write(self) -> None:
        os.makedirs(HOSTS_DIR, exist_ok=True)
        try:
            with open(self.path) as f:
                current: str | None = f.read()
        except FileNotFoundError:
            current = None
        text = self._edit(current) if self._edit else LOCALHOST
        # "w" truncates the same inode: the bind mounts of running processes keep showing it
        with open(self.path, "w") as f:
            f.write(text)
        self._written = True

    def mount(self, netns: Netns) -> int | None:
        """Before the node starts a process: the file exists, and the node has a mount
        namespace with it over /etc/hosts; its descriptor (None: no /etc/hosts to cover)."""
        if self._mounted:
            return self._mntns
        with self._lock:
            if self._mounted:
                return self._mntns
            if not os.path.exists(HOSTS):  # nothing to mount over: names stay unresolved
                log.debug("no %s on this host: %s gets no names", HOSTS, netns.label)
            else:
                if not self._written:
                    self._write()
                self._mntns = netns.call(private_mount_namespace, self.path, HOSTS)
                self._detaching = threading.Thread(
                    target=detach_private_nsfs, args=(os.dup(self._mntns),),
                    name=f"netns-detach:{netns.label}", daemon=True)
                self._detaching.start()
            self._mounted = True
            return self._mntns

    def settle(self) -> None:
        """Wait until the private mount namespace holds no copy of another namespace's
        mount: a process about to exit must, since the node's processes outlive it."""
        if self._detaching is not None:
            self._detaching.join()

    def remove(self) -> None:
        with self._lock:
            if self._mntns is not None:
                os.close(self._mntns)  # the mount namespace ends with its last process
                self._mntns = None
        if self._written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
