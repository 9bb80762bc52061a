"""Running commands in a bare network namespace (the namespace backend).

Commands run on the host's filesystem, with the host's programs and users,
inside the node's network namespace: they are forked from a worker thread
inside the namespace (see `kernel.netns`), so the child starts in the
namespace without `ip netns exec` or any helper process.

Each command gets a session of its own (start_new_session), which makes it
and its children one process group and session that `stop()` and timeouts
can end as a whole (see proctree). Closing a namespace we own also ends
every other process inside it: a daemon that called setsid, or the main
command of a node, would otherwise survive its namespace's removal and keep
it alive.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..errors import CommandNotFoundError, CommandStartError, NetnsError
from ..kernel.proctree import (
    NetnsId,
    ProcessTree,
    end_processes,
    netns_id,
    netns_members,
    read_stat,
)
from .output import StreamSource
from .process import DEFAULT_STOP_GRACE, Executor, Launched, PidfdWatch, exit_status

T = TypeVar("T")

# errors from exec*() meaning "there is no runnable program by that name"
_NOT_A_PROGRAM = {
    errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.ENOTDIR, errno.EISDIR,
    errno.ELOOP, errno.ENAMETOOLONG,
}

SWEEP_GRACE = 1.0


class NamespaceRunner(Protocol):
    """What the executor needs: a way to fork a process inside the namespace
    (`kernel.netns.Netns` has it; a namespace node adds its own mount namespace)."""

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]: ...


@dataclass(frozen=True)
class Credentials:
    """A user to run as, resolved on the host (the filesystem namespace nodes use)."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str | None


def resolve_user(user: str | int) -> Credentials:
    """Parse Docker's user forms: "name", "uid", "name:group", "uid:gid".

    Like Docker, a known user also gets its supplementary groups and HOME;
    a numeric uid that has no passwd entry runs with gid = the given gid or 0.
    LookupError (with the reason) for a name that does not exist.
    """
    spec = str(user)
    name, _, group = spec.partition(":")
    entry: pwd.struct_passwd | None
    if name.isdigit():
        uid = int(name)
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            entry = None
    else:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise LookupError(f"no user {name!r} in the host's passwd database") from None
        uid = entry.pw_uid
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise LookupError(f"no group {group!r} in the host's group database") from None
    else:
        gid = entry.pw_gid if entry is not None else 0
    groups: tuple[int, ...] = (gid,)
    if entry is not None and not group:
        groups = tuple(os.getgrouplist(entry.pw_name, gid))
    return Credentials(uid, gid, groups, entry.pw_dir if entry is not None else None)


class _PopenLaunched(Launched):
    drain_grace = 0.0  # a pipe: everything the main process wrote is in it when it exits
    late_eof = False  # and its end comes when the last writer closes it, never later

    def __init__(self, argv: list[str], proc: subprocess.Popen[bytes], out_r: int,
                 in_w: int | None) -> None:
        self.argv = argv
        self.proc = proc
        self.source = StreamSource.pipe(out_r)
        self.watch = PidfdWatch(os.pidfd_open(proc.pid))
        self._stdin = in_w
        if in_w is not None:
            os.set_blocking(in_w, False)
        stat = read_stat(proc.pid)  # our unreaped child: always there, maybe a zombie
        self._tree = ProcessTree(proc.pid, stat.starttime if stat is not None else None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdin_fd(self) -> int | None:
        return self._stdin

    def close_stdin(self) -> None:
        if self._stdin is not None:
            os.close(self._stdin)
            self._stdin = None

    def tree(self) -> ProcessTree:
        return self._tree

    def returncode(self) -> int:
        return exit_status(self.proc.wait())

    def release(self) -> None:
        super().release()
        self.close_stdin()


class NamespaceExecutor(Executor):
    """Runs commands inside one network namespace, on the host's filesystem.

    `owned` says the namespace is ours (we created it): closing then also
    ends every process left inside it. Never owned for the host's namespace.
    `prepare`, when given, runs before each command starts (the node's
    hosts file is mounted for its processes that way).
    """

    def __init__(self, runner: NamespaceRunner, netns_path: str, label: str,
                 owned: bool = True, *, prepare: Callable[[], None] | None = None,
                 ledger: Callable[[ProcessTree], None] | None = None,
                 environment: Mapping[str, str] | None = None) -> None:
        super().__init__(label, track_all=not owned, ledger=ledger)
        self._runner = runner
        self._prepare = prepare
        self._environment = dict(environment or {})  # under each command's own `env`
        self.netns_path = netns_path
        self.netns: NetnsId = netns_id(netns_path)
        if owned and self.netns == netns_id(f"/proc/{os.getpid()}/ns/net"):
            raise NetnsError(
                f"node {label!r}: the namespace at {netns_path} is this process's own "
                "(the host's); it can never be owned, or closing it would kill the host's processes"
            )
        self.owned = owned

    def _launch(self, argv: list[str], *, env: Mapping[str, str] | None, cwd: str | None,
                user: str | int | None, stdin: bool) -> Launched:
        kwargs: dict[str, Any] = {}
        environ: dict[str, str] | None = None
        env = {**self._environment, **(env or {})}
        if env:
            environ = {**os.environ, **env}
        if user is not None:
            try:
                creds = resolve_user(user)
            except LookupError as exc:
                raise CommandStartError(self.label, argv, str(exc)) from None
            kwargs.update(user=creds.uid, group=creds.gid, extra_groups=list(creds.groups))
            if creds.home and not (env and "HOME" in env):
                environ = {**(environ if environ is not None else os.environ), "HOME": creds.home}
        if self._prepare is not None:
            self._prepare()
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        in_r, in_w = os.pipe2(os.O_CLOEXEC) if stdin else (None, None)
        try:
            proc: subprocess.Popen[bytes] = self._runner.popen(
                argv,
                stdin=in_r if in_r is not None else subprocess.DEVNULL,
                stdout=out_w,
                stderr=out_w,
                env=environ,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
                **kwargs,
            )
        except OSError as exc:
            for fd in (out_r, in_w):
                if fd is not None:
                    os.close(fd)
            raise self._start_error(argv, cwd, exc) from None
        except BaseException:
            for fd in (out_r, in_w):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in (out_w, in_r):
                if fd is not None:
                    os.close(fd)
        return _PopenLaunched(argv, proc, out_r, in_w)

    def _start_error(self, argv: list[str], cwd: str | None, exc: OSError) -> CommandStartError:
        reason = exc.strerror or str(exc)
        if cwd is not None and exc.filename == cwd:
            return CommandStartError(self.label, argv, f"working directory {cwd!r}: {reason}")
        if exc.errno in _NOT_A_PROGRAM:
            return CommandNotFoundError(self.label, argv, f"{argv[0]!r}: {reason}")
        return CommandStartError(self.label, argv, reason)

    def close(self, grace: float = DEFAULT_STOP_GRACE) -> None:
        """Stop what we started; in an owned namespace, then everything else in it.

        The sweep reads every process's namespace (a few ms per hundred
        processes on the machine), so a namespace nothing was started in
        is not swept.
        """
        if self.closed:
            return
        super().close(grace)
        if self.owned and self.used:
            end_processes(lambda: netns_members(self.netns), min(grace, SWEEP_GRACE))
