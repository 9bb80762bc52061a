"""Reading a command's output without ever blocking it.

A process writing to a pipe that nobody reads stops once the pipe's 64 KiB
buffer is full: a spawned server froze that way. So every spawned process's
output is read by one shared background thread (`OutputPump`, a selector
loop: one thread for all processes of all nodes, not one per process) into
an `OutputBuffer` that keeps the last `limit` bytes in memory and can also
append everything to a log file. The process never waits for us; at worst
the oldest output is dropped from memory (it is still in the log file).

On the Docker backend the output arrives as the engine's multiplexed stream
(8-byte frame headers, stdout and stderr frames interleaved in the order
they were written); `DockerDemux` strips the headers, which keeps the
"stdout and stderr combined" contract of the namespace backend, where both
are the same pipe.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from typing import BinaryIO

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 1 << 20  # bytes of a spawned process's output kept in memory
READ_CHUNK = 1 << 16


class OutputBuffer:
    """The last `limit` bytes a process wrote (all of them, with `limit=None`), thread-safe.

    `path`, when given, receives every byte (appended), so nothing is lost
    to the in-memory bound; the node puts it in the test's artifacts.
    """

    def __init__(self, limit: int | None = DEFAULT_LIMIT, path: str | None = None) -> None:
        self.limit = limit
        self.path = path
        self.total = 0  # bytes received so far, kept or not
        self._data = bytearray()
        self._lock = threading.Lock()
        self._eof = threading.Event()
        # open for the buffer's life, closed at end of stream
        self._file: BinaryIO | None = open(path, "ab") if path else None  # noqa: SIM115

    def write(self, data: bytes) -> None:
        """Append output (called by the pump; never blocks for long)."""
        if not data:
            return
        with self._lock:
            self.total += len(data)
            self._data += data
            # trim in big steps, so a chatty process costs amortised O(1) per byte
            if self.limit is not None and len(self._data) > 2 * self.limit:
                del self._data[: len(self._data) - self.limit]
            if self._file is not None:
                self._file.write(data)
                self._file.flush()

    def getvalue(self) -> bytes:
        """The kept output (the last `limit` bytes)."""
        with self._lock:
            if self.limit is not None and len(self._data) > self.limit:
                return bytes(self._data[-self.limit :])
            return bytes(self._data)

    @property
    def dropped(self) -> int:
        """How many of the earliest bytes `getvalue` no longer has."""
        with self._lock:
            kept = len(self._data) if self.limit is None else min(len(self._data), self.limit)
            return self.total - kept

    def text(self) -> str:
        """The kept output as text (undecodable bytes become U+FFFD)."""
        return self.getvalue().decode(errors="replace")

    def mark_eof(self) -> None:
        """Every writer has closed the stream: no more output will come."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
        self._eof.set()

    @property
    def complete(self) -> bool:
        return self._eof.is_set()

    def wait_complete(self, timeout: float) -> bool:
        """Wait until the stream ended; False if it is still open after `timeout`."""
        return self._eof.wait(timeout)


class DockerDemux:
    """Strips the engine's stream framing; payloads of every stream, in arrival order."""

    HEADER = struct.Struct(">BxxxL")

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> bytes:
        self._pending += data
        out = bytearray()
        while len(self._pending) >= 8:
            _, size = self.HEADER.unpack_from(self._pending)
            if len(self._pending) < 8 + size:
                break
            out += self._pending[8 : 8 + size]
            del self._pending[: 8 + size]
        return bytes(out)


class StreamSource:
    """The reading end of a command's output: a pipe fd, or a Docker attach socket.

    Non-blocking; `read()` returns whatever is available now.
    """

    def __init__(
        self,
        fd: int,
        *,
        sock: socket.socket | None = None,
        demux: DockerDemux | None = None,
        pending: bytes = b"",
    ) -> None:
        self.fd = fd
        self._sock = sock  # keeps the socket object (and so the fd) alive
        self._demux = demux
        self._pending = demux.feed(pending) if demux is not None and pending else pending
        self.eof = False
        self.closed = False
        os.set_blocking(fd, False)

    @classmethod
    def pipe(cls, fd: int) -> StreamSource:
        return cls(fd)

    @classmethod
    def docker(cls, sock: socket.socket, pending: bytes = b"") -> StreamSource:
        return cls(sock.fileno(), sock=sock, demux=DockerDemux(), pending=pending)

    def fileno(self) -> int:
        return self.fd

    def read(self, limit: int = 16 * READ_CHUNK) -> bytes:
        """Available output (up to about `limit` bytes); sets `eof` when the stream ended."""
        chunks = [self._pending]
        self._pending = b""
        got = 0
        while got < limit and not self.eof:
            try:
                data = os.read(self.fd, READ_CHUNK)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno not in (errno.ECONNRESET, errno.EPIPE, errno.EIO):
                    raise
                data = b""
            if not data:
                self.eof = True
                break
            got += len(data)
            chunks.append(self._demux.feed(data) if self._demux is not None else data)
        return b"".join(chunks)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._sock is not None:
            self._sock.close()
        else:
            os.close(self.fd)


class OutputPump:
    """One daemon thread that drains many sources into their buffers.

    Sources are added and closed only through the pump's own thread (a
    command queue plus a wake-up pipe), so an fd is never closed while the
    selector still watches it and then reused by someone else.
    """

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._commands: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="netns-output-pump", daemon=True)
        self._thread.start()

    def add(self, source: StreamSource, sink: OutputBuffer) -> None:
        """Drain `source` into `sink` until it ends (then close it and mark `sink` complete)."""

        def register() -> None:
            sink.write(source.read())
            if source.eof:
                self._finish(source, sink)
            else:
                self._selector.register(source, selectors.EVENT_READ, sink)

        self._submit(register)

    def close(self, source: StreamSource, timeout: float = 5.0) -> None:
        """Stop draining `source` and close it (its writers then get EPIPE); waits until done."""
        done = threading.Event()

        def drop() -> None:
            if not source.closed:
                sink = None
                with contextlib.suppress(KeyError):
                    sink = self._selector.unregister(source).data
                if sink is not None:
                    self._finish(source, sink)
                else:
                    source.close()
            done.set()

        self._submit(drop)
        done.wait(timeout)

    def sync(self, source: StreamSource, sink: OutputBuffer, timeout: float = 5.0) -> None:
        """Move what `source` has right now into `sink`, and wait until that is done.

        For a caller that knows the writer exited: a pipe then holds all it wrote.
        """
        done = threading.Event()

        def read_now() -> None:
            try:
                if not source.closed:
                    sink.write(source.read())
                    if source.eof:
                        with contextlib.suppress(KeyError):
                            self._selector.unregister(source)
                        self._finish(source, sink)
            finally:
                done.set()

        self._submit(read_now)
        done.wait(timeout)

    def _submit(self, command: Callable[[], None]) -> None:
        with self._lock:
            self._commands.append(command)
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _finish(self, source: StreamSource, sink: OutputBuffer) -> None:
        source.close()
        sink.mark_eof()

    def _run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wake_r, 4096):
                            pass
                    with self._lock:
                        commands, self._commands = self._commands, []
                    for command in commands:
                        try:
                            command()
                        except Exception:  # a bad source must not stop the others' pump
                            log.exception("output pump command failed")
                    continue
                source: StreamSource = key.fileobj  # type: ignore[assignment]
                sink: OutputBuffer = key.data
                if source.closed:
                    continue
                try:
                    sink.write(source.read())
                except OSError:
                    source.eof = True
                if source.eof:
                    self._selector.unregister(source)
                    self._finish(source, sink)


_PUMP: OutputPump | None = None
_PUMP_LOCK = threading.Lock()


def pump() -> OutputPump:
    """The process-wide pump, started on first use."""
    global _PUMP
    with _PUMP_LOCK:
        if _PUMP is None:
            _PUMP = OutputPump()
        return _PUMP
