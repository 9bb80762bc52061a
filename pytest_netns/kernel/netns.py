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
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from .errors import NetnsError, NotPermittedError
from .session import STATE_DIR

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
NETNS_RUN_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)


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
    _check(_libc.setns(fd, CLONE_NEWNET), "setns into", target or str(fd))


def _unshare_net() -> None:
    _check(_libc.unshare(CLONE_NEWNET), "unshare", "CLONE_NEWNET")


def _bind_mount(src: str, dst: str) -> None:
    _check(_libc.mount(src.encode(), dst.encode(), b"none", MS_BIND, None), "bind-mount onto", dst)


# "The host" is the namespace this process started in. /proc/1/ns/net may be
# unreadable in sandboxes, so keep our own handle, taken at import.
HOST_NETNS_PATH = f"/proc/{os.getpid()}/ns/net"
_HOST_FD = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def host_netns_fd() -> int:
    """The descriptor of the namespace this process started in."""
    return _HOST_FD


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


# capability numbers from linux/capability.h
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
# judge write access as the effective uid does (setuid wrappers, setpriv)
_EFFECTIVE_IDS = os.access in os.supports_effective_ids


def effective_capabilities() -> int:
    """This thread's effective capability mask (CapEff in /proc/thread-self/status)."""
    with open("/proc/thread-self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def missing_privileges() -> list[str]:
    """What this process lacks to build topologies; empty when it lacks nothing.

    Checked up front so that a run without root fails with one message that
    says what to grant, instead of an EPERM or EACCES from whichever call
    happens to come first.
    """
    caps = effective_capabilities()
    missing = [name for name, bit in (("CAP_NET_ADMIN", CAP_NET_ADMIN),
                                      ("CAP_SYS_ADMIN", CAP_SYS_ADMIN))
               if not caps >> bit & 1]
    for directory in (NETNS_RUN_DIR, STATE_DIR):
        existing = directory
        while not os.path.isdir(existing):
            existing = os.path.dirname(existing)
        if not os.access(existing, os.W_OK | os.X_OK, effective_ids=_EFFECTIVE_IDS):
            missing.append(f"write access to {existing}")
    return missing


def require_privileges() -> None:
    """NotPermittedError naming what is missing, before anything is created."""
    missing = missing_privileges()
    if not missing:
        return
    if os.geteuid() == 0:
        fix = ("it runs as root, but with these capabilities dropped: run it without dropping "
               "them (in a container: --cap-add NET_ADMIN --cap-add SYS_ADMIN, or --privileged)")
    else:
        fix = "run pytest as root (e.g. `sudo -E pytest`), or grant those capabilities"
    raise NotPermittedError(
        f"pytest-netns needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network "
        f"namespaces and links; this process (uid {os.geteuid()}) lacks "
        f"{', '.join(missing)}: {fix}; `pytest-netns doctor` shows what this host supports"
    )


def remove_named_netns(path: str) -> None:
    """Unpin a named namespace; the kernel reaps it once nothing holds it.

    Only "already gone" is ignored, so a real failure is never hidden.
    """
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {path}: {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
