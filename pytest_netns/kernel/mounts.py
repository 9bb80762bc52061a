"""Files in another process's filesystem, and a private /etc/hosts for a child.

Two kernel tools for giving nodes their names (see `nodes/hosts.py`):

- **Writing into a container's filesystem from the host, safely.**
  `/proc/<pid>/root/etc/hosts` looks like the container's file, but an
  absolute symlink met on the way resolves against the *host's* root: an
  image whose /etc/hosts is a symlink to /etc/shadow would turn a harmless
  write into an overwrite of the host's file. `openat2()` with
  RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, relative
  to a descriptor of the container's root, refuses every symlink instead,
  and the file is opened for writing only after `fstat` proves it a regular
  file (never a FIFO or a device node an image might plant). A symlink or a
  missing file is replaced by a regular file in the container's own /etc.
  Kernels before 5.6 have no openat2; there a short-lived helper process
  enters the container's mount namespace (`setns` of a mount namespace needs
  a single-threaded process, so not this one) and does the same there, where
  no path can lead to the host's files.
- **A private /etc/hosts for every process started in a namespace node**,
  as `ip netns exec` gives one from /etc/netns/NAME:
  `private_mount_namespace` makes the node a mount namespace of its own
  with the node's file bind-mounted over /etc/hosts, kept by a descriptor,
  and every process of the node is forked by a worker that has entered it
  (`in_mount_namespace`). Doing it once per node, rather than in each forked
  child (a `preexec_fn`), costs about 1 ms per node instead of about 5 ms
  per process: a `preexec_fn` makes Python fork where it would otherwise
  vfork. The host's /etc/hosts is never changed, and the copy of the host's
  mount table pins no network namespace (`detach_private_nsfs`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

from ..errors import NetnsError

SYS_OPENAT2 = 437  # the same number on every architecture (the generic syscall table)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10
SAFE = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
CLONE_NEWNS = 0x00020000
CLONE_FS = 0x00000200
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19
MNT_DETACH = 2


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


#: False on kernels without openat2 (before 5.6); tests set it to use the fallback
OPENAT2 = True


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = SAFE) -> int:
    """openat2(2); OSError with the errno on refusal (ENOSYS where the kernel lacks it)."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    fd = int(libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dirfd),
                          ctypes.c_char_p(path.encode()), ctypes.byref(how),
                          ctypes.c_size_t(ctypes.sizeof(how))))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"openat2 {path}: {os.strerror(err)}")
    return fd


def _reopen_regular(fd: int, flags: int, what: str) -> int:
    """A real descriptor for the O_PATH `fd`, if it is a regular file (it is closed)."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NetnsError(f"{what} is not a regular file; pytest-netns will not write it")
        return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)
    finally:
        os.close(fd)


def read_in_root(pid: int, path: str) -> str | None:
    """The text of `path` inside the filesystem of process `pid`, or None when it is not
    a regular file reachable without following a symlink."""
    if not OPENAT2:
        return _helper(pid, path, None)
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = openat2(root, path.lstrip("/"), os.O_PATH)
            fd = _reopen_regular(fd, os.O_RDONLY, path)
        except (OSError, NetnsError):
            return None
        with os.fdopen(fd) as f:
            return f.read()
    finally:
        os.close(root)


def edit_in_root(pid: int, path: str, edit: Callable[[str | None], str]) -> None:
    """Make `path` inside the filesystem of process `pid` a regular file holding
    `edit(text)`, `text` being what it holds now (None when it is not a regular file
    reachable without following a symlink).

    An existing regular file is read and rewritten through one descriptor, in
    place (it may be a bind mount, such as the /etc/hosts Docker gives every
    container), and only when its text changes; it is overwritten and then
    cut to length, never emptied first: on ext4 a file truncated to nothing
    is flushed to disk when closed, which made each edit cost about 0.3 ms.
    A symlink or a missing file is replaced by a new regular file in the
    same directory.
    """
    if not OPENAT2:
        current = _helper(pid, path, None)
        text = edit(current)
        if text != current:
            _helper(pid, path, text)
        return
    rel = path.lstrip("/")
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = _reopen_regular(openat2(root, rel, os.O_PATH), os.O_RDWR, path)
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                raise NetnsError("this kernel has no openat2 (Linux 5.6 and later do)") \
                    from None
            if exc.errno not in (errno.ELOOP, errno.ENOENT):
                raise
            _replace(openat2(root, os.path.dirname(rel) or ".", os.O_PATH | os.O_DIRECTORY),
                     os.path.basename(rel), edit(None))
            return
        with os.fdopen(fd, "r+") as f:
            current = f.read()
            text = edit(current)
            if text != current:
                f.seek(0)
                f.write(text)
                f.truncate()
    finally:
        os.close(root)


def _replace(dirfd: int, name: str, text: str) -> None:
    """Put a regular file holding `text` at `name` in the directory `dirfd` (atomically).

    The new file is created with O_EXCL and O_NOFOLLOW under a fresh name, so
    nothing already there is followed; the rename then replaces the entry
    itself (a symlink is replaced, never followed).
    """
    tmp = f".{name}.pytest-netns.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=dirfd)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dirfd)
        raise
    finally:
        os.close(dirfd)


# The fallback: a fresh interpreter (single-threaded, so setns of a mount namespace
# is allowed) enters the container's mount namespace, where "/" is the container's
# root, and reads or writes there. The host's /proc is kept open across the setns to
# reopen the O_PATH descriptor (the container's /proc does not show this process).
_HELPER = r"""
import ctypes, os, stat, sys
pid, path, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
proc = os.open("/proc", os.O_PATH | os.O_DIRECTORY)
mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
libc = ctypes.CDLL(None, use_errno=True)
if libc.setns(mnt, 0x00020000) != 0:
    sys.exit(f"setns: {os.strerror(ctypes.get_errno())}")
os.chdir("/")
try:
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    regular = stat.S_ISREG(os.fstat(fd).st_mode)
except FileNotFoundError:
    fd, regular = -1, False
if mode == "read":
    if not regular:
        sys.exit(3)
    sys.stdout.write(open(os.open(f"self/fd/{fd}", os.O_RDONLY, dir_fd=proc)).read())
    sys.exit(0)
text = sys.stdin.read()
if regular:
    with open(os.open(f"self/fd/{fd}", os.O_WRONLY, dir_fd=proc), "w") as f:
        f.truncate(0)
        f.write(text)
    sys.exit(0)
directory, name = os.path.split(path)
dirfd = os.open(directory or "/", os.O_PATH | os.O_DIRECTORY)
tmp = f".{name}.pytest-netns.{os.getpid()}"
new = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dirfd)
with open(new, "w") as f:
    f.write(text)
os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
"""


def _helper(pid: int, path: str, text: str | None) -> str | None:
    done = subprocess.run([sys.executable, "-I", "-S", "-c", _HELPER, str(pid), path,
                           "read" if text is None else "write"],
                          input=text or "", capture_output=True, text=True, timeout=30,
                          check=False)
    if text is None:
        return done.stdout if done.returncode == 0 else None
    if done.returncode != 0:
        raise NetnsError(f"writing {path} inside process {pid}'s mount namespace failed: "
                         f"{done.stderr.strip() or done.returncode}")
    return None


# -- a private file over a path, for one thread and its children ----------------------


def _private_nsfs_mounts() -> list[bytes]:
    """Mount points of network-namespace files (nsfs) in the calling thread's mount table
    that receive no propagation: nothing but an unmount here would ever release them."""
    points = []
    with open("/proc/thread-self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            sep = fields.index(b"-")
            # optional fields sit between the mount options (6th) and "-"
            if fields[sep + 1] == b"nsfs" and not any(
                    tag.startswith(b"master:") for tag in fields[6:sep]):
                # octal escapes (\040 for a space) as mountinfo writes them
                points.append(fields[4].decode("unicode_escape").encode("latin-1"))
    return points


_own_fs = threading.local()


def _own_fs_context() -> None:
    """Give the calling thread a filesystem context of its own (once): the kernel lets a
    thread enter a mount namespace only when it shares that context with no other."""
    if not getattr(_own_fs, "done", False):
        if _libc().unshare(CLONE_FS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_FS)")
        _own_fs.done = True


def _setns_mnt(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"entering a mount namespace: {os.strerror(err)}")


def private_mount_namespace(source: str, target: str = "/etc/hosts") -> int:
    """A new mount namespace with `source` bind-mounted over `target`; its descriptor.

    Made from the calling thread, which comes back to its own mount namespace
    afterwards: processes are later forked inside the new one
    (`in_mount_namespace`). Every mount in it is made a slave first, so
    nothing done there propagates back to the host while the host's unmounts
    (a namespace being removed, under a shared /run/netns as `ip netns` makes
    it) still reach the copy; then the bind mount. The copies of namespace
    mounts that no unmount would reach are for `detach_private_nsfs` to take
    away. Costs about 1 ms per node, once, instead of about 5 ms per process
    for a `preexec_fn` (which makes Python fork where it would otherwise vfork).
    """
    _own_fs_context()
    libc = _libc()
    home = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        try:
            if libc.mount(None, b"/", None, MS_REC | MS_SLAVE, None) != 0:
                raise OSError(ctypes.get_errno(), "making every mount a slave")
            if libc.mount(source.encode(), target.encode(), None, MS_BIND, None) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"bind-mounting {source} over {target}: {os.strerror(err)}")
            return os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            _setns_mnt(home)
    finally:
        os.close(home)


@contextlib.contextmanager
def in_mount_namespace(fd: int) -> Iterator[None]:
    """The calling thread inside the mount namespace `fd` for the duration.

    Entering a mount namespace moves the thread's root and working directory
    to that namespace's root; a process forked meanwhile should be given its
    working directory explicitly.
    """
    _own_fs_context()
    home = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns_mnt(fd)
        try:
            yield
        finally:
            _setns_mnt(home)
    finally:
        os.close(home)


def detach_private_nsfs(mntns_fd: int) -> None:
    """Detach, inside the mount namespace `mntns_fd`, its private copies of network
    namespace mounts (Docker's, for one), so that nothing started there keeps a
    namespace of any topology alive. Closes the descriptor.

    Each unmount waits for an RCU grace period (milliseconds on a busy host,
    and there is one per running container), so this runs on a short-lived
    thread of its own, which first leaves the shared filesystem context and
    then joins that mount namespace: the node's processes start meanwhile.
    """
    libc = _libc()
    try:
        if libc.unshare(CLONE_FS) != 0 or libc.setns(mntns_fd, CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "joining a node's mount namespace")
    finally:
        os.close(mntns_fd)
    for point in reversed(_private_nsfs_mounts()):
        libc.umount2(point, MNT_DETACH)
