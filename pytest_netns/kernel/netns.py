"""Entering, creating and deleting network namespaces in-process.

`setns(CLONE_NEWNET)` moves only the calling thread, so every namespace gets
one long-lived worker thread that enters it once and then runs whatever it
is handed. Sockets opened on that thread (netlink, raw, stream) stay bound to
the namespace for their whole life, and processes forked from it start in it.
This avoids `ip netns exec` and pyroute2's `IPRoute(netns=...)`, which fork a
helper process every time.

Named namespaces are made the way `ip netns add` makes them (a bind mount of
the namespace file under /run/netns) but from a thread that called
`unshare(CLONE_NEWNET)`, which costs about a millisecond instead of a fork.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import queue
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from ..errors import NetnsError, NotPermittedError
from .proctree import communicate_tree

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
NETNS_RUN_DIR = "/run/netns"

@functools.cache
def _libc() -> ctypes.CDLL:
    """libc, loaded on first use: importing the package makes no system call."""
    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str, target: str) -> None:
    if ret == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EPERM:
        raise NotPermittedError(
            f"{what} {target!r} was refused (EPERM): pytest-netns needs root, or "
            "CAP_SYS_ADMIN and CAP_NET_ADMIN; run pytest as root or grant them"
        )
    raise OSError(err, f"{what} {target}: {os.strerror(err)}")


def setns(fd: int, target: str = "") -> None:
    """Move the calling thread into the network namespace behind `fd`."""
    _check(_libc().setns(fd, CLONE_NEWNET), "setns into", target or str(fd))


def _unshare_net() -> None:
    _check(_libc().unshare(CLONE_NEWNET), "unshare", "CLONE_NEWNET")


def _bind_mount(src: str, dst: str) -> None:
    _check(_libc().mount(src.encode(), dst.encode(), b"none", MS_BIND, None), "bind-mount onto",
           dst)


_host_fd: dict[int, int] = {}  # pid -> descriptor (a forked child opens its own)
_host_lock = threading.Lock()


def host_netns_fd() -> int:
    """The descriptor of "the host": the namespace this process started in.

    /proc/1/ns/net may be unreadable in sandboxes, so the process keeps its
    own handle, opened on first use. It is the main thread's namespace
    (`/proc/self/ns/net`), never the calling thread's: only namespace
    threads call setns, and the main thread stays where the process started.
    """
    with _host_lock:
        fd = _host_fd.get(os.getpid())
        if fd is None:
            fd = _host_fd[os.getpid()] = os.open("/proc/self/ns/net",
                                                  os.O_RDONLY | os.O_CLOEXEC)
        return fd


_STOP = object()


class NetnsThread:
    """A worker thread that lives inside one network namespace.

    `call(fn, *args)` runs `fn` on that thread and returns its result, so
    anything that must be created inside the namespace (netlink and raw
    sockets, child processes) can be, from any caller thread.
    """

    def __init__(self, enter: Callable[[], None], label: str) -> None:
        self.label = label
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(enter, ready), name=f"netns:{label}", daemon=True
        )
        self._thread.start()
        ready.result()

    @classmethod
    def entering(cls, path_or_fd: str | int, label: str = "") -> NetnsThread:
        """A thread inside an existing namespace (a file path or an open fd)."""

        def enter() -> None:
            if isinstance(path_or_fd, int):
                setns(path_or_fd, label)
                return
            try:
                fd = os.open(path_or_fd, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise NetnsError(f"network namespace {path_or_fd!r} does not exist") from None
            try:
                setns(fd, path_or_fd)
            finally:
                os.close(fd)

        return cls(enter, label or str(path_or_fd))

    @classmethod
    def anonymous(cls, label: str) -> NetnsThread:
        """A thread inside a brand-new namespace that nothing pins.

        The namespace dies with the thread (and the sockets opened in it), so
        a probe that is killed half-way leaves nothing behind: `doctor` tries
        kernel drivers in one of these, never in the host's namespace.
        """
        return cls(_unshare_net, label)

    @classmethod
    def creating(cls, path: str) -> NetnsThread:
        """A thread inside a brand-new namespace, pinned at `path`.

        The caller must have created `path` as an empty file.
        """

        def enter() -> None:
            _unshare_net()
            _bind_mount("/proc/thread-self/ns/net", path)

        return cls(enter, path)

    def _run(self, enter: Callable[[], None], ready: Future[None]) -> None:
        try:
            enter()
        except BaseException as exc:  # handed to the creator, who re-raises
            ready.set_exception(exc)
            return
        ready.set_result(None)
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            fn, args, kwargs, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue `fn` on the namespace thread; the future holds its result."""
        future: Future[T] = Future()
        if threading.current_thread() is self._thread:
            future.set_result(fn(*args, **kwargs))
            return future
        self._jobs.put((fn, args, kwargs, future))
        return future

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` inside the namespace and return its result."""
        return self.submit(fn, *args, **kwargs).result()

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start argv as a child forked from this thread, so it runs inside the namespace."""
        return self.call(subprocess.Popen, argv, **kwargs)

    def run(self, argv: list[str], stdin: bytes | None = None,
            timeout: float = 30.0) -> tuple[int, str]:
        """Run a short helper program (nft, iptables) inside the namespace.

        Returns its exit status and combined output; ExecTimeoutError (with
        it and its children killed) after `timeout`. For a tool pytest-netns
        itself runs; the commands a test runs go through the node's `exec`.
        """
        proc = self.popen(argv, stdin=subprocess.PIPE if stdin is not None else
                          subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, start_new_session=True)
        return communicate_tree(proc, stdin, timeout, self.label)

    def stop(self) -> None:
        """End the thread, so it stops holding a reference to the namespace."""
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._jobs.put(_STOP)
            self._thread.join()


def create_named_netns(name: str) -> tuple[str, NetnsThread]:
    """Create /run/netns/<name> and return its path and a thread inside it."""
    path = os.path.join(NETNS_RUN_DIR, name)
    try:
        os.makedirs(NETNS_RUN_DIR, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
    except FileExistsError:
        raise NetnsError(f"network namespace {name!r} already exists at {path}") from None
    except PermissionError:
        raise NotPermittedError(
            f"cannot create {path}: pytest-netns needs root (or write access to "
            f"{NETNS_RUN_DIR} plus CAP_SYS_ADMIN)"
        ) from None
    os.close(fd)
    try:
        return path, NetnsThread.creating(path)
    except BaseException:
        os.unlink(path)
        raise


def remove_named_netns(path: str) -> None:
    """Unpin a named namespace; the kernel reaps it once nothing holds it.

    Only "already gone" is ignored, so a real failure is never hidden.
    """
    if _libc().umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {path}: {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
