"""The crash watchdog: a small process that outlives a killed pytest and cleans up.

SIGKILL runs no handler and no fixture teardown, so only another process can
remove what a killed session made. testcontainers' Ryuk does this with a
container pulled from a registry; this is a plain Python child with no image.

How it knows: the parent keeps the only write end of a pipe whose read end
the child blocks on. End of file means the parent died (the kernel closes
the pipe even on SIGKILL). The child also checks, once a second, that it has
not been re-parented, in case a forked grandchild inherited the write end.
It then sweeps that session (unless it was kept for debugging), and again
two and five seconds later, for containers whose creation the engine
finished after the parent died. A clean session end writes `CLEAN` into the pipe,
then ends and reaps the child, so no watchdog outlives its pytest.

The child runs in its own session (`setsid`) and ignores SIGINT and SIGHUP,
so a Ctrl-C or a closed terminal does not kill it before pytest's own
teardown has run; it inherits no file descriptors (so no namespace is kept
alive by it) and is forked from a thread in the host namespace. As it starts
it also sweeps dead sessions' leftovers, off pytest's critical path.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from ..ownership import STATE_DIR, Session

T = TypeVar("T")

CLEAN = b"clean"
LOG = os.path.join(STATE_DIR, "watchdog.log")
LOG_LIMIT = 1 << 20  # bytes; then the log moves to watchdog.log.1
# pauses before the extra passes after a crash: for containers whose creation
# the engine finishes after pytest died (seen: ~2 s after the first pass)
RECHECKS = (2.0, 3.0)


class Watchdog:
    """The parent's handle on its watchdog process."""

    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int) -> None:
        self.proc = proc
        self._fd = write_fd

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        """Clean exit: tell the child there is nothing to remove, end it, and reap it.

        It is ended rather than waited for: a child still importing, or busy
        with its start-up sweep (any step of which the next sweep redoes),
        would otherwise hold up the end of a short session.
        """
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):  # the child may already be gone
            os.write(self._fd, CLEAN)
        os.close(self._fd)
        self._fd = -1
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(session: Session, *, sweep_dead: bool = True) -> Watchdog | None:
    """Start the watchdog for `session`; None (with a warning) if it cannot start."""
    read_fd, write_fd = os.pipe()  # both close-on-exec: no other child inherits them
    argv = [
        sys.executable, "-m", "pytest_netns.lifecycle.watchdog", "--fd", str(read_fd),
        "--parent", str(os.getpid()), "--session", session.id,
    ]
    if sweep_dead:
        argv.append("--sweep-dead")
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    try:
        os.makedirs(STATE_DIR, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if os.path.getsize(LOG) > LOG_LIMIT:
                os.replace(LOG, LOG + ".1")
        with open(LOG, "ab") as log:
            proc = _in_host_netns(
                lambda: subprocess.Popen(
                    argv, pass_fds=(read_fd,), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=log, cwd="/", env=env, start_new_session=True,
                )
            )
    except OSError as exc:
        os.close(write_fd)
        warnings.warn(
            f"pytest-netns could not start its crash watchdog ({exc}); if this pytest is "
            "killed, run `pytest-netns cleanup` afterwards",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    finally:
        os.close(read_fd)
    return Watchdog(proc, write_fd)


def _in_host_netns(fn: Callable[[], T]) -> T:
    """Run `fn` on a thread in the host namespace (a forked child starts in the caller's)."""
    from ..kernel.netns import host_netns_fd
    from ..nodes.host import host

    if os.stat("/proc/thread-self/ns/net").st_ino == os.fstat(host_netns_fd()).st_ino:
        return fn()
    return host().call(fn)


# -- the child ------------------------------------------------------------------


def wait_for_parent(fd: int, parent: int) -> bool:
    """Block until the parent ends; True if it said the session ended cleanly."""
    while os.getppid() == parent:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        data = os.read(fd, 64)
        if data.startswith(CLEAN):
            return True
        if not data:  # end of file: wait until the parent is really gone
            while os.getppid() == parent:
                time.sleep(0.2)
    return False


def _log(sid: str, line: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    sys.stdout.write(f"{stamp} watchdog {os.getpid()} [{sid}] {line}\n")
    sys.stdout.flush()


def _sweep_logged(sid: str, reason: str, **kwargs: Any) -> None:
    from .reaper import sweep

    started = time.monotonic()
    try:
        lines = sweep(**kwargs)
    except Exception:
        _log(sid, f"{reason}: sweep failed\n{traceback.format_exc()}")
        return
    if lines:
        took = time.monotonic() - started
        _log(sid, f"{reason}: removed {len(lines)} object(s) in {took:.2f} s")
        for line in lines:
            _log(sid, f"  {line}")


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(prog="python -m pytest_netns.lifecycle.watchdog")
    parser.add_argument("--fd", type=int, required=True, help="read end of the parent's pipe")
    parser.add_argument("--parent", type=int, required=True, help="pid of the pytest process")
    parser.add_argument("--session", required=True, help="session id to clean up after")
    parser.add_argument("--sweep-dead", action="store_true", help="first sweep dead sessions")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sid = args.session
    sweeper = None
    if args.sweep_dead:
        sweeper = threading.Thread(
            target=_sweep_logged, args=(sid, "start-up sweep of dead sessions"), daemon=True
        )
        sweeper.start()
    if not wait_for_parent(args.fd, args.parent):
        reason = f"pytest pid {args.parent} ended without tearing down"
        _sweep_logged(sid, reason, session_id=sid)
        for n, pause in enumerate(RECHECKS, 2):
            time.sleep(pause)
            _sweep_logged(sid, f"{reason} (pass {n})", session_id=sid)
        if sweeper is not None:
            sweeper.join(timeout=60)
    # A clean end: pytest is waiting for this exit, so leave at once, even if
    # the start-up sweep is unfinished (every step of a sweep can be redone by
    # the next one), and skip the interpreter's teardown.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
