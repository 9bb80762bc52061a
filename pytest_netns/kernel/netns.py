"""Entering, creating and deleting network namespaces in-process.

`setns(CLONE_NEWNET)` moves only the calling thread, and whatever a thread
opens while inside a namespace (netlink, raw and stream sockets) stays
bound to it for its whole life; a process forked from that thread starts
in it. So work that must happen inside a namespace is handed to a worker
thread that enters it first. This avoids `ip netns exec` and pyroute2's
`IPRoute(netns=...)`, which fork a helper process every time.

The workers are a small shared pool, not a thread per namespace: a
topology of a thousand nodes would otherwise hold a thousand threads and a
descriptor for each of them. A `Netns` is only a handle (the namespace's
path, or a descriptor where the path alone is not safe: a container's
`/proc/<pid>/ns/net` names another namespace once that pid is reused). For
each job a worker enters the namespace (about ten microseconds: open the
path, `setns`, close), runs the job, and goes back to the host's namespace
when nothing else is queued, so no idle worker keeps a namespace alive.
Jobs that run in one namespace after another on the same worker skip the
`setns`, and a job that itself calls into other namespaces (`Netns.call`
from a worker) hops there inline: a batch over many namespaces costs one
thread hand-over, not one per namespace. Objects opened for one stay in a
namespace (`stay_resource`: the netlink socket of a batch of requests)
are closed when the worker leaves it.

Named namespaces are made the way `ip netns add` makes them (a bind mount of
the namespace file under /run/netns) but from a worker that called
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from ..errors import NetnsError, NotPermittedError
from .proctree import communicate_tree

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
NETNS_RUN_DIR = "/run/netns"
#: at most this many workers; jobs beyond them wait in the queue
MAX_WORKERS = max(4, 2 * (os.cpu_count() or 1))


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
    (`/proc/self/ns/net`), never the calling thread's: only pool workers
    call setns, and the main thread stays where the process started.
    """
    with _host_lock:
        fd = _host_fd.get(os.getpid())
        if fd is None:
            fd = _host_fd[os.getpid()] = os.open("/proc/self/ns/net",
                                                  os.O_RDONLY | os.O_CLOEXEC)
        return fd


@functools.cache
def _host_inode() -> int:
    return os.fstat(host_netns_fd()).st_ino


class Netns:
    """A handle on one network namespace: run work inside it, fork processes in it.

    It holds a descriptor only when given one (`fd`); a named namespace is
    entered by its path, opened for the moment of entering. `call(fn)` runs
    fn inside the namespace on a pool worker and returns its result.
    """

    def __init__(self, label: str, path: str | None = None, fd: int | None = None,
                 owns_fd: bool = False, host: bool = False) -> None:
        if path is None and fd is None:
            raise ValueError("a namespace handle needs a path or a descriptor")
        self.label = label
        self.path = path
        self._fd = fd
        self._owns_fd = owns_fd
        self._host = host  # the process's own namespace: a thread already there runs inline

    # -- making one -----------------------------------------------------------

    @classmethod
    def host(cls) -> Netns:
        """The namespace this process started in."""
        return cls("host", f"/proc/{os.getpid()}/ns/net", host_netns_fd(), host=True)

    @classmethod
    def entering(cls, path_or_fd: str | int, label: str = "") -> Netns:
        """A handle on an existing namespace: a path (checked now) or a descriptor (not owned)."""
        if isinstance(path_or_fd, int):
            return cls(label or str(path_or_fd), fd=path_or_fd)
        if not os.path.exists(path_or_fd):
            raise NetnsError(f"network namespace {path_or_fd!r} does not exist")
        return cls(label or path_or_fd, path_or_fd)

    @classmethod
    def anonymous(cls, label: str) -> Netns:
        """A brand-new namespace that only this handle's descriptor pins.

        The namespace dies when the handle is closed (and the sockets opened
        in it are), so a check that is killed half-way leaves nothing behind:
        `doctor` tries kernel drivers in one of these, never in the host's.
        """

        def pin() -> Netns:
            return cls(label, fd=os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC),
                       owns_fd=True)

        return _unshared(pin)

    @classmethod
    def create(cls, path: str, setup: Callable[[Netns], object] | None = None) -> Netns:
        """A brand-new namespace pinned at `path` (an empty file the caller created).

        `setup` runs inside it, in the same worker hop (bring lo up, set
        sysctls): a namespace costs one thread hand-over, whatever it needs.
        """

        def pin() -> Netns:
            _bind_mount("/proc/thread-self/ns/net", path)
            return cls(path, path)

        return _unshared(pin, setup)

    # -- entering it ----------------------------------------------------------

    def enter(self) -> None:
        """Move the calling thread into the namespace (pool workers only)."""
        if self._fd is not None:
            if self._fd < 0:
                raise NetnsError(f"network namespace {self.label!r} was let go of")
            setns(self._fd, self.label)
            return
        assert self.path is not None
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NetnsError(f"network namespace {self.path!r} does not exist") from None
        try:
            setns(fd, self.path)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def descriptor(self) -> Iterator[int]:
        """A descriptor of the namespace for the duration: its own, or one opened for now.

        The kernel takes one where a link is born in another namespace
        (IFLA_NET_NS_FD); opening it only then keeps a topology's open
        descriptors from growing with its size.
        """
        if self._fd is not None:
            yield self._fd
            return
        assert self.path is not None
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)

    def inode(self) -> int:
        """The namespace's identity (as /proc/<pid>/ns/net links show it: net:[inode])."""
        with self.descriptor() as fd:
            return os.fstat(fd).st_ino

    # -- working inside it ----------------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` inside the namespace and return its result.

        From a worker the call runs inline (the worker hops into this
        namespace, and back where its own job needs it); from a thread of
        the host's namespace a host job runs inline too; anything else is
        handed to a worker.
        """
        worker = _current_worker()
        if worker is not None:
            return worker.run(self, fn, args, kwargs)
        if self._host and _in_host():
            return fn(*args, **kwargs)
        return _pool().submit(self, fn, args, kwargs).result()

    def popen(self, argv: list[str], mntns: int | None = None,
              **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start argv as a child forked inside the namespace (and inside the mount
        namespace `mntns`, a descriptor, when given: see `mounts.in_mount_namespace`).

        Without a `cwd`, the child starts in the caller's working directory, as
        a plain subprocess would (the worker that forks it may be elsewhere).
        """
        if kwargs.get("cwd") is None:
            with contextlib.suppress(OSError):  # removed: the child starts where the worker is
                kwargs["cwd"] = os.getcwd()
        if mntns is None:
            return self.call(subprocess.Popen, argv, **kwargs)
        return self.call(_popen_in_mount_namespace, mntns, argv, kwargs)

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

    def close(self) -> None:
        """Let go of the namespace: close its descriptor if this handle owns one."""
        if self._owns_fd and self._fd is not None and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __repr__(self) -> str:
        return f"<Netns {self.label}>"


def _popen_in_mount_namespace(mntns: int, argv: list[str],
                               kwargs: dict[str, Any]) -> subprocess.Popen[bytes]:
    from .mounts import in_mount_namespace

    with in_mount_namespace(mntns):
        return subprocess.Popen(argv, **kwargs)


def call_each(calls: Sequence[tuple[Netns, Callable[[], T]]]) -> list[T]:
    """Run each fn inside its namespace, in order, in one worker hop; return the results.

    The worker enters one namespace after the other (a `setns` each), so a
    step that touches every node of a large topology costs one thread
    hand-over instead of one per node. The first failure propagates.
    """
    if not calls:
        return []
    return on_a_worker(lambda: [netns.call(fn) for netns, fn in calls])


def on_a_worker(fn: Callable[[], T]) -> T:
    """Run fn on a pool worker, where every `Netns.call` it makes runs inline."""
    worker = _current_worker()
    if worker is not None:
        return worker.run(None, fn, (), {})
    return _pool().submit(None, fn, (), {}).result()


def stay_resource(key: str, open_: Callable[[], T], close: Callable[[T], object]) -> T:
    """An object opened in the calling thread's namespace, reused for the rest of its stay.

    On a worker it is closed when the worker leaves the namespace, so it
    never outlives the batch of work that used it and never pins the
    namespace; on a host thread (which never leaves) it stays open.
    """
    worker = _current_worker()
    if worker is not None:
        stay = worker.resources
    else:
        if not hasattr(_local, "host_resources"):
            _local.host_resources = {}
        stay = _local.host_resources
    found = stay.get(key)
    if found is None:
        obj = open_()
        stay[key] = (obj, close)
        return obj
    cached: T = found[0]
    return cached


# -- the workers --------------------------------------------------------------

_local = threading.local()
_Resources = dict[str, tuple[Any, Callable[[Any], object]]]
_Job = tuple["Netns | None", Callable[..., Any], tuple[Any, ...], dict[str, Any], Future[Any]]


def _unshared(pin: Callable[[], Netns], setup: Callable[[Netns], object] | None = None) -> Netns:
    """On a worker: unshare into a new namespace, `pin` it, run `setup` in it."""

    def make() -> Netns:
        worker = _current_worker()
        assert worker is not None
        worker.leave()
        _unshare_net()
        worker.current = _ELSEWHERE  # inside the new namespace, which nothing pins yet
        try:
            made = pin()
            worker.current = made
            if setup is not None:
                setup(made)
        except BaseException:
            worker.go_home()
            raise
        return made

    return on_a_worker(make)


def _current_worker() -> _Worker | None:
    worker: _Worker | None = getattr(_local, "worker", None)
    return worker


def _in_host() -> bool:
    """Whether the calling (non-worker) thread is in the host's namespace (a stat: ~2 us)."""
    return os.stat("/proc/thread-self/ns/net").st_ino == _host_inode()


_ELSEWHERE = Netns("a namespace being made", fd=-1)


class _Worker:
    """One pool thread, and which namespace it is in (`current`; None is the host's)."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.current: Netns | None = None
        self.bound: Netns | None = None  # where the running job must be
        self.resources: _Resources = {}

    def main(self) -> None:
        _local.worker = self
        setns(host_netns_fd(), "host")  # a new thread starts where its creator was
        while True:
            netns, fn, args, kwargs, future = self.pool.take()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(self.run(netns, fn, args, kwargs))
                except BaseException as exc:  # handed to the caller, who re-raises
                    future.set_exception(exc)
            del fn, args, kwargs, future
            self.pool.done()
            if self.pool.jobs.empty():
                self.go_home()

    def run(self, netns: Netns | None, fn: Callable[..., T], args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> T:
        """Run fn inside `netns` (None: wherever the worker is), then back where it was bound."""
        outer = self.bound
        if netns is not None:
            self.move_to(netns)
            self.bound = netns
        try:
            return fn(*args, **kwargs)
        finally:
            self.bound = outer
            if outer is not None:
                self.move_to(outer)

    def move_to(self, netns: Netns) -> None:
        if netns is self.current:
            return
        self.leave()
        netns.enter()
        self.current = netns

    def leave(self) -> None:
        """Close what was opened for this stay (the thread itself does not move)."""
        resources, self.resources = self.resources, {}
        for obj, close in resources.values():
            with contextlib.suppress(OSError):
                close(obj)

    def go_home(self) -> None:
        """Back to the host's namespace, so an idle worker keeps no namespace alive."""
        if self.current is None:
            return
        self.leave()
        setns(host_netns_fd(), "host")
        self.current = None


class _Pool:
    """Worker threads started on demand (a job waits with none idle), at most MAX_WORKERS."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._waiting = 0
        self._threads: list[threading.Thread] = []

    def submit(self, netns: Netns | None, fn: Callable[..., T], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            self._waiting += 1
            if self._waiting > self._idle and len(self._threads) < MAX_WORKERS:
                worker = _Worker(self)
                thread = threading.Thread(target=worker.main, daemon=True,
                                          name=f"netns-worker-{len(self._threads)}")
                self._threads.append(thread)
                self._idle += 1  # it takes this job as soon as it runs
                thread.start()
        self.jobs.put((netns, fn, args, kwargs, future))
        return future

    def take(self) -> _Job:
        job = self.jobs.get()
        with self._lock:
            self._waiting -= 1
            self._idle -= 1
        return job

    def done(self) -> None:
        with self._lock:
            self._idle += 1

    @property
    def size(self) -> int:
        return len(self._threads)


_pools: dict[int, _Pool] = {}  # pid -> pool: a forked child starts its own


def _pool() -> _Pool:
    pool = _pools.get(os.getpid())
    if pool is None:
        with _host_lock:
            pool = _pools.setdefault(os.getpid(), _Pool())
    return pool


def worker_count() -> int:
    """How many pool threads this process has started (never more than MAX_WORKERS)."""
    pool = _pools.get(os.getpid())
    return pool.size if pool is not None else 0


# -- named namespaces -----------------------------------------------------------


class _MountPoints:
    """The empty files namespaces are bind-mounted on, made as hard links of one file.

    `ip netns add` creates a new file for each namespace. On a filesystem
    that allocates inodes slowly that is most of a namespace's cost: on
    this project's CI machines /run is ext4 without a journal, whose
    allocator skips every inode deleted in the last minutes, and a test
    run deletes one per namespace; creating a file there took 0.2-1.6 ms,
    growing with the churn. A hard link of a file this process already has
    (an unnamed O_TMPFILE, linked under each new name) allocates no inode:
    about 0.05 ms. Mounts attach to names, not inodes, so each name holds
    its own namespace. Once every name is gone the file cannot be linked
    again, and the next namespace starts a new one. Where O_TMPFILE is not
    supported, each namespace gets a file of its own, as before.
    """

    def __init__(self) -> None:
        self._seed: int | None = None
        self._dir: int | None = None
        self._lock = threading.Lock()
        self._supported = True

    def make(self, path: str) -> None:
        """Create `path`, an empty file in NETNS_RUN_DIR (FileExistsError if it exists)."""
        with self._lock:
            for fresh in (False, True):
                if not self._supported:
                    break
                if fresh or self._seed is None:
                    self._new_seed()
                    if self._seed is None:
                        break
                try:
                    # linkat(AT_SYMLINK_FOLLOW) needs a directory descriptor: without one,
                    # os.link calls link(2), which links the /proc symlink itself
                    os.link(f"/proc/self/fd/{self._seed}", os.path.basename(path),
                            dst_dir_fd=self._dir, follow_symlinks=True)
                    return
                except FileNotFoundError:
                    continue  # its last name was removed: it cannot be linked again
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))

    def _new_seed(self) -> None:
        if self._seed is not None:
            os.close(self._seed)
            self._seed = None
        try:
            if self._dir is None:
                self._dir = os.open(NETNS_RUN_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._seed = os.open(NETNS_RUN_DIR, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            self._supported = False


_mount_points: dict[int, _MountPoints] = {}  # pid -> files (a forked child makes its own)


def create_named_netns(name: str, setup: Callable[[Netns], object] | None = None) -> Netns:
    """Create /run/netns/<name> and return a handle on it; `setup` runs inside it first."""
    path = os.path.join(NETNS_RUN_DIR, name)
    try:
        os.makedirs(NETNS_RUN_DIR, exist_ok=True)
        points = _mount_points.get(os.getpid())
        if points is None:
            points = _mount_points.setdefault(os.getpid(), _MountPoints())
        points.make(path)
    except FileExistsError:
        raise NetnsError(f"network namespace {name!r} already exists at {path}") from None
    except PermissionError:
        raise NotPermittedError(
            f"cannot create {path}: pytest-netns needs root (or write access to "
            f"{NETNS_RUN_DIR} plus CAP_SYS_ADMIN)"
        ) from None
    try:
        return Netns.create(path, setup)
    except BaseException:
        remove_named_netns(path)
        raise


def create_named_netns_async(
    names: Sequence[str], setup: Callable[[str, Netns], object] | None = None,
    parallel: int = 2,
) -> list[Future[Netns]]:
    """Start creating named namespaces, `parallel` at a time; a future for each, in order.

    Creating a namespace is mostly kernel work outside the rtnl lock (the
    per-namespace state of every subsystem), so it overlaps well with the
    link work a caller does meanwhile on the namespaces already made, and two
    cores make two at once. `setup(name, handle)` runs inside each. Cancel a
    future to have that namespace not made; after a failure, the rest of its
    share is not made either (their futures say why).
    """
    futures: list[Future[Netns]] = [Future() for _ in names]
    if len(names) < 2 * parallel:
        parallel = 1

    def make(share: Sequence[int]) -> None:
        failed: BaseException | None = None
        for i in share:
            future = futures[i]
            if not future.set_running_or_notify_cancel():
                continue
            if failed is not None:
                future.set_exception(NetnsError(
                    f"network namespace {names[i]!r} was not made: an earlier one failed "
                    f"({failed})"))
                continue
            try:
                future.set_result(create_named_netns(
                    names[i], functools.partial(setup, names[i]) if setup is not None else None))
            except BaseException as exc:
                failed = exc
                future.set_exception(exc)

    for k in range(parallel):
        _pool().submit(None, make, (range(k, len(names), parallel),), {})
    return futures


def remove_named_netns_all(paths: Sequence[str], parallel: int = 8) -> None:
    """`remove_named_netns` for many, several at a time.

    Unmounting waits for an RCU grace period after releasing the mount
    lock, so unmounts on several threads overlap their waits: eight at a
    time took a tenth of the time of one after the other here. The first
    failure propagates once all were tried.
    """
    if len(paths) < 4:
        for path in paths:
            remove_named_netns(path)
        return
    chunks = [paths[i::parallel] for i in range(min(parallel, len(paths)))]
    errors: list[BaseException] = []

    def remove(chunk: Sequence[str]) -> None:
        for path in chunk:
            try:
                remove_named_netns(path)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=remove, args=(chunk,), name="netns-unpin", daemon=True)
               for chunk in chunks[1:]]
    for thread in threads:
        thread.start()
    remove(chunks[0])
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


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
