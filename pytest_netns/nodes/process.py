"""Processes started inside a node, and ending every one of them.

A command run in a namespace node is forked from the namespace's thread in
a session of its own (`start_new_session`), so its whole process group,
children of a shell included, can be ended together. A child that left the
group (a daemon calling setsid) is still inside the node's network
namespace, which is ours: `kill_in_netns` finds and ends whatever is left
there when the node goes away, so nothing of a test outlives its topology.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping

from ..kernel.netns import NetnsThread


class Process:
    """A background process started in a node; `stop()` ends it (idempotent)."""

    def __init__(self, argv: list[str], stop: Callable[[], None],
                 pid: int | None = None) -> None:
        self.argv = argv
        #: its host pid, where the node knows it (a namespace node's process)
        self.pid = pid
        self._stop = stop
        self._stopped = False

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._stop()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Process {self.argv!r}{' stopped' if self._stopped else ''}>"


def as_argv(argv: list[str] | str) -> list[str]:
    return [argv] if isinstance(argv, str) else list(argv)


def popen_in(thread: NetnsThread, argv: list[str], env: Mapping[str, str] | None = None,
             output: str | None = None) -> subprocess.Popen[bytes]:
    """Fork argv from a namespace's thread, in a process group of its own; `env` is
    added to this process's environment; its output goes to a pipe, or is appended to
    the file `output`."""
    with open(output, "ab") if output else contextlib.nullcontext() as log:
        return thread.popen(argv, stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, **env} if env else None)


def communicate(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        end_group(proc)
        out, _ = proc.communicate()
    return proc.returncode, out.decode(errors="replace")


def end_group(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """Terminate a child we started and its whole process group, then reap it."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)  # children that outlived their leader
    if proc.stdout:
        proc.stdout.close()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def processes_in_netns(netns_inode: int) -> list[int]:
    """Pids of the processes (not this one) whose network namespace is `netns_inode`."""
    wanted = f"net:[{netns_inode}]"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/net") == wanted:
                found.append(int(entry))
        except OSError:
            continue
    return found


def kill_in_netns(netns_inode: int) -> list[str]:
    """SIGKILL every process left in a namespace pytest-netns made; describe each one.

    Only for namespaces pytest-netns created: whatever runs there was
    started by a test (directly, or as a child of what it started).
    """
    killed = []
    for pid in processes_in_netns(netns_inode):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            os.kill(pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        killed.append(f"{pid} ({comm})")
    return killed
