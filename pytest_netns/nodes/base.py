"""Nodes: the things a topology connects, each owning one network namespace.

A `ContainerNode` is a Docker container (its namespace is the one of its
init process); a `NamespaceNode` is a bare named namespace. Both expose the
same contract (`name`, `ip`, `container`, `netns`, `exec`) so that tests and
the builder never care which backend made them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .namespaces import NetnsThread, host_netns_fd, remove_named_netns
from .netlink import Netlink

if TYPE_CHECKING:
    from docker.models.containers import Container


@dataclass(frozen=True)
class Interface:
    """One interface a topology put in a node."""

    ifname: str
    ip: str | None
    prefixlen: int
    segment: str  # the switch, link or "host" it attaches to
    kind: str = "veth"


# Called with each node as it is released, before its thread stops: layers that
# keep sockets inside the node's namespace (the probes) close them here, since
# an open socket would keep the namespace alive after its topology is gone.
RELEASE_HOOKS: list[Callable[[Node], None]] = []


class Node:
    """Common behaviour of every node: a namespace thread and its netlink."""

    container: Container | None = None

    def __init__(self, name: str, netns: str, thread: NetnsThread) -> None:
        self.name = name
        self.netns = netns
        self.thread = thread
        self.netlink = Netlink(thread)
        self.interfaces: list[Interface] = []
        self.routes: list[tuple[str, str | None]] = []
        self.released = False
        self._fd: int | None = None

    @property
    def ip(self) -> str | None:
        """Its address on the topology that made it (the first one assigned)."""
        for iface in self.interfaces:
            if iface.ip:
                return iface.ip
        return None

    @property
    def kind(self) -> str:
        return "container" if self.container is not None else "namespace"

    def netns_fd(self) -> int:
        """An open descriptor of the node's namespace (kept for the node's life)."""
        if self._fd is None:
            self._fd = os.open(self.netns, os.O_RDONLY | os.O_CLOEXEC)
        return self._fd

    def interface(self, ifname: str) -> Interface:
        for iface in self.interfaces:
            if iface.ifname == ifname:
                return iface
        raise KeyError(ifname)

    def exec(self, argv: list[str] | str, timeout: float = 30.0) -> tuple[int, str]:
        """Run argv inside the node and return (exit code, combined output)."""
        raise NotImplementedError

    def spawn(self, argv: list[str]) -> Process:
        """Start argv in the background inside the node (a server, say).

        It is stopped when the node goes away, or earlier with `.stop()`.
        """
        raise NotImplementedError

    def release(self) -> None:
        """Drop every handle on the namespace held by this process."""
        self.released = True
        for hook in list(RELEASE_HOOKS):
            hook(self)
        self.netlink.close()
        self.thread.stop()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ip={self.ip} netns={self.netns}>"


class Process:
    """A background process started in a node; `stop()` ends it (idempotent)."""

    def __init__(self, argv: list[str], stop: Callable[[], None]) -> None:
        self.argv = argv
        self._stop = stop
        self._stopped = False

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._stop()

    def __repr__(self) -> str:
        return f"<Process {self.argv!r}{' stopped' if self._stopped else ''}>"


def _popen_in(thread: NetnsThread, argv: list[str]) -> subprocess.Popen[bytes]:
    """Fork argv from a namespace's thread, so it starts inside that namespace."""
    return thread.call(
        subprocess.Popen,
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def _communicate(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out.decode(errors="replace")


class NamespaceNode(Node):
    """A bare named network namespace, for runs without Docker and for switches."""

    def __init__(self, name: str, netns: str, thread: NetnsThread, owned: bool = True) -> None:
        super().__init__(name, netns, thread)
        self.owned = owned
        self._children: list[subprocess.Popen[bytes]] = []

    def exec(self, argv: list[str] | str, timeout: float = 30.0) -> tuple[int, str]:
        """Run argv on the host's filesystem, inside this namespace."""
        return _communicate(_popen_in(self.thread, _argv(argv)), timeout)

    def spawn(self, argv: list[str]) -> Process:
        proc = _popen_in(self.thread, _argv(argv))
        self._children.append(proc)
        return Process(_argv(argv), lambda: _end(proc))

    def remove(self) -> None:
        """Stop the processes started in it, then unpin the namespace."""
        for proc in self._children:
            _end(proc)
        self._children.clear()
        self.release()
        if self.owned:
            remove_named_netns(self.netns)


class ContainerNode(Node):
    """A running Docker container, entered through its init process's namespace."""

    def __init__(self, name: str, container: Container, owned: bool) -> None:
        pid = int(container.attrs["State"]["Pid"])
        path = f"/proc/{pid}/ns/net"
        self._pinned = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        super().__init__(name, path, NetnsThread.entering(self._pinned, f"container {name}"))
        self.container = container
        self.owned = owned
        self.pid = pid

    def netns_fd(self) -> int:
        return self._pinned

    def exec(self, argv: list[str] | str, timeout: float = 30.0) -> tuple[int, str]:
        assert self.container is not None
        result: Any = self.container.exec_run(argv)
        output = result.output or b""
        return int(result.exit_code), output.decode(errors="replace")

    def spawn(self, argv: list[str]) -> Process:
        """Start argv detached in the container; it dies with the container.

        Stopping it early signals it by its host PID, found by its command
        line among the container's processes (`docker top` needs no tools in
        the image).
        """
        assert self.container is not None
        self.container.exec_run(_argv(argv), detach=True)
        container = self.container

        def stop() -> None:
            top = container.top(ps_args="-o pid,args")
            wanted = " ".join(_argv(argv))
            for row in top.get("Processes") or []:
                if row[-1] == wanted:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(row[0]), signal.SIGTERM)

        return Process(_argv(argv), stop)

    def release(self) -> None:
        super().release()
        if self._pinned >= 0:
            os.close(self._pinned)
            self._pinned = -1


def _argv(argv: list[str] | str) -> list[str]:
    return [argv] if isinstance(argv, str) else list(argv)


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a child we started (by its own handle), then reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


class HostNode(Node):
    """The namespace this pytest process started in ("host" in the API)."""

    def __init__(self) -> None:
        super().__init__("host", f"/proc/{os.getpid()}/ns/net", _host_thread())

    def netns_fd(self) -> int:
        return host_netns_fd()

    def exec(self, argv: list[str] | str, timeout: float = 30.0) -> tuple[int, str]:
        return _communicate(_popen_in(self.thread, _argv(argv)), timeout)

    def release(self) -> None:
        """The host node is shared by every topology: nothing to drop."""


_HOST_THREAD: NetnsThread | None = None


def _host_thread() -> NetnsThread:
    global _HOST_THREAD
    if _HOST_THREAD is None:
        _HOST_THREAD = NetnsThread.entering(host_netns_fd(), "host")
    return _HOST_THREAD


_HOST: HostNode | None = None


def host() -> HostNode:
    """The shared node for the root namespace (the one pytest started in)."""
    global _HOST
    if _HOST is None:
        _HOST = HostNode()
    return _HOST
