"""Running commands in a Docker container through the engine's exec API.

`exec_run` (what the old code used) has no timeout and returns only when
the engine closes the stream, which it does 2 s after the process exits if a
background child still holds stdout. So this uses the low-level calls:
exec_create, then exec_start on a connection we hijack ourselves (a raw HTTP
upgrade on the engine's unix socket, so no output byte can be lost in an
HTTP client's read buffer), reading the multiplexed stream with our own
deadline, and exec_inspect for the host PID and the exit code.

The host PID is asked for lazily: a short command's stream ends within
milliseconds, and one inspect afterwards gives its exit code, so a plain
`exec("true")` costs the same three engine calls as `exec_run`. Only a
command still running after LAZY_PID_AFTER, or whose stream ends before
its exit is recorded, has its PID looked up and watched through a pidfd,
which tells the moment it exits without asking the engine again.

runc makes every exec'd process a session leader, so timeouts and `stop()`
end the command's whole session and descendants by host PID (proctree),
exactly as on the namespace backend; matching command lines in `docker
top`, as before, is never needed.

A command that cannot start is recognised by the engine's record: the exec
ended (ExitCode 126 or 127) but never got a PID. Its "OCI runtime exec
failed..." text, which the engine writes into the output, becomes the
CommandStartError's reason, never output.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import CommandNotFoundError, CommandStartError, NetnsError
from ..kernel.proctree import NetnsId, ProcessTree, netns_id, netns_of
from .output import StreamSource
from .process import Executor, ExitWatch, Launched

LAZY_PID_AFTER = 0.05
POLL_FIRST, POLL_MAX = 0.005, 0.1  # then doubling: the engine is slow to start an exec
ENGINE_TIMEOUT = 30.0  # for one engine call or for the engine to record an exit
_RUNC_PREFIXES = (
    "OCI runtime exec failed: exec failed: unable to start container process: ",
    "OCI runtime exec failed: exec failed: ",
    "OCI runtime exec failed: ",
)


def _unix_socket_path(api: Any) -> str | None:
    """The engine's unix socket path, if the client talks to one."""
    if not str(getattr(api, "base_url", "")).startswith("http+docker://"):
        return None
    adapter = getattr(api, "_custom_adapter", None)
    path = getattr(adapter, "socket_path", None)
    return str(path) if path else None


def _engine_error(label: str, what: str, exc: Exception) -> NetnsError:
    explanation = getattr(exc, "explanation", None) or exc
    return NetnsError(f"the engine refused to {what} in node {label!r}: {explanation}")


class _DockerWatch(ExitWatch):
    """Exit of an exec: the engine's record until the PID is known, then a pidfd."""

    def __init__(self, launched: _DockerLaunched) -> None:
        super().__init__()
        self._launched = launched
        self.next_poll = time.monotonic() + LAZY_PID_AFTER
        self._backoff = POLL_FIRST

    def poll(self, eof: bool) -> None:
        info = self._launched.inspect()
        if info.get("ExitCode") is not None and not info.get("Running"):
            self.exited = True
            return
        pid = int(info.get("Pid") or 0)
        if pid:
            self.fd = self._launched.open_pidfd(pid)
            if self.fd is None:
                self.exited = True
            return
        self.next_poll = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, POLL_MAX)


class _DockerLaunched(Launched):
    def __init__(self, executor: DockerExecutor, argv: list[str], exec_id: str,
                 sock: socket.socket, pending: bytes) -> None:
        self.argv = argv
        self.exec_id = exec_id
        self._executor = executor
        self._sock = sock
        self.source = StreamSource.docker(sock, pending)
        self._info: dict[str, Any] = {}
        self._pid = 0
        self._tree: ProcessTree | None = None
        self._tree_known = False
        self.watch = _DockerWatch(self)

    def inspect(self) -> dict[str, Any]:
        """The engine's record of this exec (Running, Pid, ExitCode)."""
        try:
            info: dict[str, Any] = self._executor.api.exec_inspect(self.exec_id)
        except Exception as exc:  # docker.errors.APIError, requests errors
            if getattr(exc, "status_code", None) == 404:
                raise NetnsError(
                    f"the engine no longer knows the exec of `{' '.join(self.argv)}` in node "
                    f"{self._executor.label!r} (it forgets finished execs 5-10 min after they "
                    "end, and all of a removed container's): its exit status is lost"
                ) from None
            raise _engine_error(self._executor.label, "inspect an exec", exc) from None
        self._info = info
        if info.get("Pid"):
            self._pid = int(info["Pid"])
        return info

    def open_pidfd(self, pid: int) -> int | None:
        """A pidfd on the exec's process, or None if it is already gone."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        if netns_of(pid) != self._executor.netns:  # exited, and the PID was recycled
            os.close(fd)
            return None
        return fd

    def _wait_for(self, done: Any, what: str) -> dict[str, Any]:
        info = self._info
        backoff = 0.001
        deadline = time.monotonic() + ENGINE_TIMEOUT
        while not done(info):
            if time.monotonic() >= deadline:
                raise NetnsError(
                    f"the engine did not record the {what} of `{' '.join(self.argv)}` in node "
                    f"{self._executor.label!r} within {ENGINE_TIMEOUT:g} s"
                )
            if info:
                time.sleep(backoff)
                backoff = min(backoff * 2, 0.02)
            info = self.inspect()
        return info

    def pid_known(self) -> bool:
        return bool(self._pid)

    @property
    def pid(self) -> int:
        if not self._pid:
            self._wait_for(lambda i: i.get("Pid") or i.get("ExitCode") is not None, "start")
        return self._pid

    def stdin_fd(self) -> int | None:
        return self._sock.fileno()

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):  # already closed by the engine
            self._sock.shutdown(socket.SHUT_WR)  # the engine closes the process's stdin

    def tree(self) -> ProcessTree | None:
        if not self._tree_known:
            pid = self.pid
            self._tree = ProcessTree.of(pid, self._executor.netns) if pid else None
            self._tree_known = True
        return self._tree

    def returncode(self) -> int:
        info = self._wait_for(
            lambda i: i.get("ExitCode") is not None and not i.get("Running"), "exit"
        )
        return int(info["ExitCode"])

    def leftover_warning(self) -> str | None:
        return (
            "it left background processes holding its output; the engine now waits 2 s for "
            "that stream, and this container's next execs finish 2-4 s late. Redirect their "
            "output (`cmd >/dev/null 2>&1 &`) or start them with spawn()"
        )

    def start_error(self, output: bytes) -> CommandStartError | None:
        if self._pid:
            return None
        info = self._wait_for(
            lambda i: i.get("Pid") or (i.get("ExitCode") is not None and not i.get("Running")),
            "start",
        )
        if info.get("Pid"):
            return None
        message = output.decode(errors="replace").strip()
        return _classify(self._executor.label, self.argv, message, int(info["ExitCode"]))


def _classify(label: str, argv: list[str], message: str, code: int) -> CommandStartError:
    reason = message
    for prefix in _RUNC_PREFIXES:
        if reason.startswith(prefix):
            reason = reason[len(prefix):]
            break
    reason = reason.removesuffix(": unknown") or f"the engine gave exit code {code} and no reason"
    if reason.startswith('exec: "') or "executable file not found" in reason:
        return CommandNotFoundError(label, argv, reason)
    return CommandStartError(label, argv, reason)


class DockerExecutor(Executor):
    """Runs commands in a running container through the engine (docker SDK's APIClient).

    `netns` identifies the container's network namespace; it guards every
    PID the engine reports against recycling. The executor never removes the
    container: for an owned one, removal (by the container layer) ends
    whatever exec left behind; for an attached one (`owned=False`), every
    command's tree is kept and `close()` ends what is left of them, and no
    more: the container's own processes are not ours.
    """

    def __init__(self, api: Any, container_id: str, label: str, *, init_pid: int | None = None,
                 owned: bool = True, socket_path: str | None = None,
                 ledger: Callable[[ProcessTree], None] | None = None) -> None:
        super().__init__(label, track_all=not owned, ledger=ledger)
        self.api = api
        self.container_id = container_id
        if init_pid is None:
            try:
                init_pid = int(api.inspect_container(container_id)["State"]["Pid"])
            except Exception as exc:
                raise _engine_error(label, "inspect the container", exc) from None
        if not init_pid:
            raise NetnsError(f"container of node {label!r} is not running")
        self.netns: NetnsId = netns_id(f"/proc/{init_pid}/ns/net")
        self._socket_path = socket_path or _unix_socket_path(api)

    def _launch(self, argv: list[str], *, env: Mapping[str, str] | None, cwd: str | None,
                user: str | int | None, stdin: bool) -> Launched:
        try:
            created = self.api.exec_create(
                self.container_id,
                argv,
                stdout=True,
                stderr=True,
                stdin=stdin,
                tty=False,
                environment=[f"{k}={v}" for k, v in env.items()] if env else None,
                workdir=cwd,
                user=str(user) if user is not None else "",
            )
        except Exception as exc:
            raise _engine_error(self.label, f"create an exec of {argv!r}", exc) from None
        exec_id = str(created["Id"])
        sock, pending = self._start(exec_id)
        return _DockerLaunched(self, argv, exec_id, sock, pending)

    def _start(self, exec_id: str) -> tuple[socket.socket, bytes]:
        """Start the exec attached; the raw stream socket and any bytes already read."""
        if self._socket_path is None:  # not a unix socket: let the SDK hijack
            try:
                raw = self.api.exec_start(exec_id, socket=True)
            except Exception as exc:
                raise _engine_error(self.label, "start an exec", exc) from None
            return getattr(raw, "_sock", raw), b""
        body = json.dumps({"Detach": False, "Tty": False}).encode()
        request = (
            f"POST /v{self.api.api_version}/exec/{exec_id}/start HTTP/1.1\r\n"
            "Host: docker\r\nContent-Type: application/json\r\n"
            "Connection: Upgrade\r\nUpgrade: tcp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(ENGINE_TIMEOUT)
            sock.connect(self._socket_path)
            sock.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(65536)
                if not chunk:
                    raise NetnsError(f"the engine closed the exec stream of node {self.label!r}")
                head += chunk
            header, _, rest = head.partition(b"\r\n\r\n")
            status = header.split(b"\r\n", 1)[0].split()
            code = int(status[1]) if len(status) > 1 and status[1].isdigit() else 0
            if code not in (101, 200):
                raise NetnsError(
                    f"the engine refused to start an exec in node {self.label!r}: "
                    f"{_error_body(header, rest, sock)}"
                )
            sock.settimeout(None)
            return sock, rest
        except BaseException:
            sock.close()
            raise


def _error_body(header: bytes, rest: bytes, sock: socket.socket) -> str:
    length = 0
    for line in header.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    text = rest.decode(errors="replace")
    try:
        return str(json.loads(text).get("message", text))
    except ValueError:
        return text.strip() or header.split(b"\r\n", 1)[0].decode(errors="replace")
