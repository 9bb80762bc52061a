"""Running commands in nodes: the part both backends share.

`Node.exec` and `Node.spawn` delegate to the node's `Executor`
(`exec_namespace.NamespaceExecutor` or `exec_docker.DockerExecutor`). Both
give the same contract, so a test never cares which backend made its node:

- `exec(command, timeout=30, check=False, env=, cwd=, user=, input=)` runs a
  command to completion and returns an `ExecResult`, which unpacks as
  `(exit_code, output)` with stdout and stderr combined.
  * It returns as soon as the command's main process exits. Processes it
    left in the background keep running; what they print afterwards goes to
    the node's `stray_output` (never to a pipe nobody reads), and they are
    stopped when the node is closed.
  * On timeout it kills the command and everything it started, and raises
    `ExecTimeoutError` (with the output so far) within about the timeout.
  * A command that cannot start (no such program, not executable, bad cwd,
    unknown user) raises `CommandStartError` (`CommandNotFoundError` for
    the program) on both backends, instead of an exit code 126/127 on one
    backend and an OSError on the other.
  * Exit codes follow the shell: a process killed by signal N reports
    128+N on both backends (Docker cannot report anything else).
- `spawn(command, ...)` starts a command in the background and returns a
  `Process` whose output is drained continuously into a bounded buffer
  (and optionally a log file), so it never blocks on a full pipe; `stop()`
  ends it and everything it started.
- `close()` stops every spawned process and every exec leftover; for a node
  we own it then clears the node of everything else (see the backends); for
  one we do not own (the host, an attached container) it ends what every
  command started, since nothing else will.

How a command's processes are found and ended is `kernel.proctree`'s job:
by session, process group and parentage, checked against start times,
never by command line.
"""

from __future__ import annotations

import os
import selectors
import shlex
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

from ..errors import (
    BackgroundOutputWarning,
    CommandFailedError,
    CommandStartError,
    ExecTimeoutError,
    InvalidArgumentError,
    NodeClosedError,
)
from ..kernel.proctree import ProcessTree, end_processes, trees_members
from .command import Command, input_bytes, to_argv
from .output import DEFAULT_LIMIT, OutputBuffer, StreamSource, pump

# After the main process exits, output still in flight is collected for up to
# this long before exec returns; only a background process that keeps the
# output stream open makes exec wait that long (Docker's own exec waits 2 s).
# Backends override it: on a pipe, nothing is in flight once the writer exited.
DRAIN_GRACE = 0.1
DEFAULT_STOP_GRACE = 3.0
# How long the end of a stream may lag its last writer's exit when it is relayed
# (Docker: shim, then engine); seen at 100-300 ms with several execs at once.
EOF_WAIT = 5.0
STRAY_LIMIT = 1 << 16
START_ERROR_WAIT = 2.0  # for the engine's "cannot start" message to arrive


class ExecResult(tuple[int, str]):
    """What `exec` returns: unpacks as `(returncode, output)` like the old contract.

    `output` (alias `stdout`) is stdout and stderr combined, in the order
    written, decoded as UTF-8 (invalid bytes become U+FFFD); `raw` has the bytes.
    """

    argv: list[str]
    raw: bytes
    duration: float
    node: str

    def __new__(
        cls,
        returncode: int,
        output: str,
        *,
        argv: Sequence[str] = (),
        raw: bytes = b"",
        duration: float = 0.0,
        node: str = "",
    ) -> ExecResult:
        self = super().__new__(cls, (returncode, output))
        self.argv = list(argv)
        self.raw = raw
        self.duration = duration
        self.node = node
        return self

    @property
    def returncode(self) -> int:
        return self[0]

    @property
    def output(self) -> str:
        return self[1]

    @property
    def stdout(self) -> str:
        """Same as `output`: stderr is merged into it (one stream keeps the order)."""
        return self[1]

    @property
    def ok(self) -> bool:
        return self[0] == 0

    def check(self) -> ExecResult:
        """Return self, or raise CommandFailedError if the exit code is not 0."""
        if self[0] != 0:
            raise CommandFailedError(self.node, self.argv, self[0], self[1])
        return self

    def __repr__(self) -> str:
        return f"ExecResult(returncode={self[0]}, output={self[1]!r})"


def exit_status(status: int) -> int:
    """A Popen returncode in the shell's convention (killed by signal N gives 128+N)."""
    return 128 - status if status < 0 else status


class ExitWatch:
    """Tells when a command's main process has exited.

    `fd` is a pidfd (readable once the process exits) when one is known;
    until then the I/O loop calls `poll()` at `next_poll` (the Docker backend
    learns the PID from the engine only when it needs it).
    """

    def __init__(self) -> None:
        self.exited = False
        self.fd: int | None = None
        self.next_poll: float | None = None

    def poll(self, eof: bool) -> None:
        """Look again (called when `next_poll` is due or the output ended)."""
        self.next_poll = None  # a pidfd watch has nothing to poll

    def wait(self, timeout: float | None) -> bool:
        """Block until the main process exits; False if still running after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.exited:
            if self.fd is None:
                self.poll(eof=True)
                if self.exited or self.fd is not None:
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(0.005)
                continue
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            with selectors.DefaultSelector() as sel:
                sel.register(self.fd, selectors.EVENT_READ)
                if sel.select(left):
                    self.exited = True
                elif left is not None:
                    return False
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class PidfdWatch(ExitWatch):
    """Exit of a process we know the PID of from the start."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd


class Launched(ABC):
    """A command one backend has started: its output, its exit, its processes."""

    argv: list[str]
    source: StreamSource
    watch: ExitWatch
    drain_grace: float = DRAIN_GRACE
    """After the main process exits, how long output may still be on its way."""
    late_eof: bool = True
    """The end of the stream can lag the exit (the engine relays it): when no
    process is left that could hold the stream, wait up to EOF_WAIT for it."""
    remembered: bool = False
    """Its tree is kept by the executor (see `Executor._remember`)."""

    def pid_known(self) -> bool:
        """True when `tree()` costs nothing more (Docker learns the PID lazily)."""
        return True

    def holders(self) -> bool:
        """True if processes of the command are alive (and may hold its output)."""
        tree = self.tree()
        return tree is not None and bool(tree.members())

    @property
    @abstractmethod
    def pid(self) -> int:
        """The main process's host PID (0 if it never started)."""

    def stdin_fd(self) -> int | None:
        """Where to write input, when stdin was asked for."""
        return None

    def close_stdin(self) -> None:
        """Signal end of input (nothing to do when there is no stdin)."""
        return None

    @abstractmethod
    def tree(self) -> ProcessTree | None:
        """The command's process tree (None if it never started)."""

    @abstractmethod
    def returncode(self) -> int:
        """The main process's exit status; call only after it exited."""

    def start_error(self, output: bytes) -> CommandStartError | None:
        """The error to raise if the command turned out never to have started."""
        return None

    def leftover_warning(self) -> str | None:
        """Why background processes holding the output are a problem here, if they are."""
        return None

    def release(self) -> None:
        """Drop handles on the main process (not the output stream)."""
        self.watch.close()


class _Feeder:
    """Writes `input=` to the command's stdin without blocking; `finish()` closes it."""

    def __init__(self, launched: Launched, data: bytes) -> None:
        fd = launched.stdin_fd()
        assert fd is not None
        self.fd = fd
        self._launched = launched
        self._data = memoryview(data)
        self.done = False

    @property
    def pending(self) -> bool:
        return not self.done and bool(self._data)

    def write_some(self) -> None:
        try:
            written = os.write(self.fd, self._data[: 1 << 16])
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            written = len(self._data)  # it stopped reading: like subprocess, not an error
        self._data = self._data[written:]

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self._launched.close_stdin()


def collect(
    launched: Launched,
    out: bytearray,
    deadline: float | None,
    feeder: _Feeder | None = None,
) -> bool:
    """Read output (and feed input) until the main process exits; False on deadline.

    Returns once the main process exited and either the output stream ended,
    or the backend's drain grace passed while other processes of the command
    still live (one of them holds the stream open: it must not hold exec).
    When none is left, the end of a relayed stream is surely coming, so it is
    waited for (up to EOF_WAIT) rather than cutting the output short.
    """
    source, watch = launched.source, launched.watch
    drain_until: float | None = None
    extended = False
    shared = feeder is not None and feeder.fd == source.fd  # a Docker socket: both ways
    with selectors.DefaultSelector() as sel:
        sel.register(source.fd, selectors.EVENT_READ, "out")

        def stop_feeding() -> None:
            if feeder is None or feeder.done:
                return
            if shared:
                if not source.eof:
                    sel.modify(source.fd, selectors.EVENT_READ, "out")
            elif feeder.fd in sel.get_map():
                sel.unregister(feeder.fd)
            feeder.finish()  # after unregistering: it closes the fd

        if feeder is not None:
            if not feeder.pending:
                feeder.finish()
            elif shared:
                sel.modify(source.fd, selectors.EVENT_READ | selectors.EVENT_WRITE, "out")
            else:
                sel.register(feeder.fd, selectors.EVENT_WRITE, "in")
        watched: int | None = None
        while True:
            now = time.monotonic()
            if (
                not watch.exited
                and watch.fd is None
                and watch.next_poll is not None
                and now >= watch.next_poll
            ):
                watch.poll(source.eof)
            if watch.exited:
                if drain_until is None:
                    drain_until = now + launched.drain_grace
                    stop_feeding()
                if source.eof:
                    return True
                if now >= drain_until:
                    out += source.read()  # what is already there, without waiting
                    if source.eof:
                        return True
                    if launched.late_eof and not extended and not launched.holders():
                        extended = True  # nobody can hold it: the relay is just slow
                        drain_until = now + EOF_WAIT
                        continue
                    return True
            elif deadline is not None and now >= deadline:
                return False
            if watch.fd is not None and watched is None and not watch.exited:
                watched = watch.fd
                sel.register(watched, selectors.EVENT_READ, "exit")
            timers = [t for t in (deadline, drain_until) if t is not None]
            if not watch.exited and watch.fd is None and watch.next_poll is not None:
                timers.append(watch.next_poll)
            wait = max(0.0, min(timers) - now) if timers else None
            for key, events in sel.select(wait):
                if key.data == "exit":
                    watch.exited = True
                    sel.unregister(key.fd)
                    continue
                if events & selectors.EVENT_WRITE and feeder is not None and not feeder.done:
                    feeder.write_some()
                    if not feeder.pending:
                        stop_feeding()
                if key.data == "out" and events & selectors.EVENT_READ and not source.eof:
                    out += source.read()
                    if source.eof:
                        stop_feeding()
                        sel.unregister(source.fd)
                        if watch.fd is None and not watch.exited:
                            watch.next_poll = time.monotonic()  # ask now: it has likely exited


def _kill_quietly(launched: Launched) -> None:
    """Kill a command's tree while another error propagates (which must win)."""
    try:
        tree = launched.tree()
        if tree is not None:
            end_processes(tree.members, grace=0)
    except Exception:  # the original error matters more
        pass


def drain(source: StreamSource, out: bytearray, timeout: float) -> None:
    """Collect what is left in the stream for up to `timeout` (until it ends)."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(source.fd, selectors.EVENT_READ)
        while not source.eof:
            out += source.read()
            left = deadline - time.monotonic()
            if source.eof or left <= 0:
                return
            sel.select(left)


class Process:
    """A command running in the background in a node (see `Executor.spawn`).

    Its output is drained all the time into a bounded buffer (`output()`),
    so it never blocks writing. `stop()` ends it and everything it started
    (SIGTERM, then SIGKILL after a grace); it is idempotent and also runs
    when the node closes and at the end of a `with` block.
    """

    def __init__(self, node: str, launched: Launched, buffer: OutputBuffer) -> None:
        self.node = node
        self.argv = launched.argv
        self._launched = launched
        self._buffer = buffer
        self._returncode: int | None = None
        self._stopped = False
        self._lock = threading.Lock()
        self._tree = launched.tree()

    @property
    def pid(self) -> int:
        """The main process's PID as the host sees it (in a container, too)."""
        return self._launched.pid

    @property
    def tree(self) -> ProcessTree | None:
        return self._tree

    @property
    def returncode(self) -> int | None:
        """Its exit status once it has exited (128+N if killed by signal N), else None."""
        return self.poll()

    @property
    def running(self) -> bool:
        return self.poll() is None

    def poll(self) -> int | None:
        """The exit status if the main process has exited, else None (does not block)."""
        with self._lock:
            if self._returncode is None and self._launched.watch.wait(0):
                self._returncode = self._launched.returncode()
                self._launched.release()
            return self._returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the main process to exit and return its status.

        ExecTimeoutError (with `killed=False`: it keeps running) after `timeout`.
        """
        if not self._launched.watch.wait(timeout):
            raise ExecTimeoutError(self.node, self.argv, timeout or 0.0, self.output(), False)
        launched = self._launched
        if not self._buffer.wait_complete(launched.drain_grace) and not (
            launched.late_eof and not launched.holders() and self._buffer.wait_complete(EOF_WAIT)
        ):
            pump().sync(launched.source, self._buffer)  # at least what is there now
        code = self.poll()
        assert code is not None
        return code

    def stop(self, grace: float = DEFAULT_STOP_GRACE) -> int:
        """End it and everything it started: SIGTERM, then SIGKILL after `grace` s.

        Returns its exit status. Calling it again does nothing more.
        """
        with self._lock:
            first = not self._stopped
            self._stopped = True
        if first and self._tree is not None:
            end_processes(self._tree.members, grace)
        return self.wait(timeout=None)

    def _reap(self) -> None:
        """Mark it stopped after its executor ended its tree (with everyone else's)."""
        with self._lock:
            self._stopped = True
        self.wait(timeout=None)

    def output(self) -> str:
        """What it printed so far (stdout and stderr combined; the last `limit` bytes)."""
        return self._buffer.text()

    def output_bytes(self) -> bytes:
        return self._buffer.getvalue()

    @property
    def output_buffer(self) -> OutputBuffer:
        return self._buffer

    def __enter__(self) -> Process:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._returncode is None else f"exited {self._returncode}"
        return f"<Process {self.argv!r} pid={self.pid} in {self.node} {state}>"


class Executor(ABC):
    """Runs commands in one node: what `Node.exec` and `Node.spawn` delegate to.

    `track_all` (a namespace or container we do not own: the host, an
    attached container) keeps the process tree of every command, finished
    or not, so that `close()` can end whatever any of them left behind: no
    namespace sweep or container removal will. `ledger`, when given, is told
    about each such tree as it starts, so a crashed session's sweep can end
    them too.
    """

    def __init__(self, label: str, *, track_all: bool = False,
                 ledger: Callable[[ProcessTree], None] | None = None) -> None:
        self.label = label
        self.stray_output = OutputBuffer(STRAY_LIMIT)
        #: True once anything was started (a namespace sweep is needed only then)
        self.used = False
        self._track_all = track_all
        self._ledger = ledger
        self._processes: list[Process] = []
        self._leftovers: list[tuple[ProcessTree | None, StreamSource]] = []
        self._trees: list[ProcessTree] = []
        self._lock = threading.Lock()
        self.closed = False

    @abstractmethod
    def _launch(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str] | None,
        cwd: str | None,
        user: str | int | None,
        stdin: bool,
    ) -> Launched:
        """Start argv with stdout+stderr on one stream; CommandStartError if it cannot."""

    def _started(self, argv: list[str], env: Mapping[str, str] | None, cwd: str | None,
                 user: str | int | None, stdin: bool) -> Launched:
        self.used = True
        launched = self._launch(argv, env=env, cwd=cwd, user=user, stdin=stdin)
        if launched.pid_known():
            self._remember(launched)
        return launched

    def _remember(self, launched: Launched) -> None:
        """Keep the command's tree, when this executor must end everything it starts."""
        if not self._track_all or launched.remembered:
            return
        launched.remembered = True
        tree = launched.tree()
        if tree is None:
            return
        with self._lock:
            self._trees.append(tree)
        if self._ledger is not None:
            self._ledger(tree)

    def exec(
        self,
        command: Command,
        timeout: float | None = 30.0,
        *,
        check: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | int | None = None,
        input: bytes | str | None = None,
    ) -> ExecResult:
        """Run a command to completion; see the module docstring for the rules."""
        self._check_open()
        argv = to_argv(command)
        data = input_bytes(input)
        check_timeout(timeout)
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        launched = self._started(argv, env, cwd, user, data is not None)
        out = bytearray()
        keep_stream = False
        try:
            feeder = _Feeder(launched, data) if data is not None else None
            try:
                finished = collect(launched, out, deadline, feeder)
            except BaseException:  # Ctrl-C, or a broken engine: leave nothing running
                _kill_quietly(launched)
                raise
            if not finished:
                tree = launched.tree()
                if tree is None:  # it never started after all
                    error = launched.start_error(bytes(out))
                    if error is not None:
                        raise error
                else:
                    end_processes(tree.members, grace=0)
                drain(launched.source, out, launched.drain_grace)
                assert timeout is not None
                raise ExecTimeoutError(
                    self.label, argv, timeout, bytes(out).decode(errors="replace")
                )
            error = launched.start_error(bytes(out))
            if error is not None:
                raise error
            code = launched.returncode()
            self._remember(launched)  # a Docker exec that ended before its PID was asked
            if not launched.source.eof:
                keep_stream = True
                self._adopt(launched.tree(), launched.source)
                warning = launched.leftover_warning()
                if warning is not None:
                    warnings.warn(
                        f"`{shlex.join(argv)}` in node {self.label!r}: {warning}",
                        BackgroundOutputWarning,
                        stacklevel=3,
                    )
        finally:
            launched.release()
            if not keep_stream:
                launched.source.close()
        raw = bytes(out)
        result = ExecResult(
            code,
            raw.decode(errors="replace"),
            argv=argv,
            raw=raw,
            duration=time.monotonic() - started,
            node=self.label,
        )
        return result.check() if check else result

    def spawn(
        self,
        command: Command,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | int | None = None,
        log_path: str | None = None,
        limit: int | None = DEFAULT_LIMIT,
    ) -> Process:
        """Start a command in the background; CommandStartError if it cannot start.

        Its output goes to a buffer keeping the last `limit` bytes (all with
        None) and, when `log_path` is given, to that file in full.
        """
        self._check_open()
        argv = to_argv(command)
        launched = self._started(argv, env, cwd, user, False)
        try:
            tree = launched.tree()
            if tree is None:  # the engine says it never started
                out = bytearray()
                drain(launched.source, out, START_ERROR_WAIT)
                raise launched.start_error(bytes(out)) or CommandStartError(
                    self.label, argv, "it ended before it started, without a reason"
                )
            self._remember(launched)
            process = Process(self.label, launched, OutputBuffer(limit, log_path))
        except BaseException:
            launched.release()
            launched.source.close()
            raise
        pump().add(launched.source, process.output_buffer)
        with self._lock:
            self._processes.append(process)
        return process

    @property
    def processes(self) -> list[Process]:
        """The processes spawned so far (stopped ones included)."""
        with self._lock:
            return list(self._processes)

    def _adopt(self, tree: ProcessTree | None, source: StreamSource) -> None:
        """Keep draining an exec's stream that background processes still hold."""
        with self._lock:
            self._leftovers.append((tree, source))
        pump().add(source, self.stray_output)

    def stop_all(self, grace: float = DEFAULT_STOP_GRACE) -> None:
        """End every spawned process and everything exec left running, all at once.

        One grace for all: SIGTERM to every tree, then SIGKILL to what is
        left. The executor stays usable (the host's is shared by sessions).
        """
        with self._lock:
            processes, self._processes = self._processes, []
            leftovers, self._leftovers = self._leftovers, []
            trees, self._trees = self._trees, []
        trees += [p.tree for p in processes if p.tree is not None]
        trees += [tree for tree, _ in leftovers if tree is not None]
        if trees:
            end_processes(lambda: trees_members(trees), grace)
        for process in processes:
            process._reap()
        for _, source in leftovers:
            pump().close(source)

    def close(self, grace: float = DEFAULT_STOP_GRACE) -> None:
        """`stop_all`, then refuse new commands. Idempotent.

        Subclasses then clear what else they own.
        """
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self.stop_all(grace)

    def _check_open(self) -> None:
        if self.closed:
            raise NodeClosedError(
                f"node {self.label!r} is closed: it cannot run commands any more"
            )

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_timeout(timeout: object) -> None:
    """InvalidArgumentError unless `timeout` is None or a positive number of seconds."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidArgumentError(
            f"invalid timeout {timeout!r}: expected seconds (a number above 0), or None for "
            "no limit"
        )
