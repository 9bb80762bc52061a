"""Waiting for answers: one reader thread for every probe socket, and the probes in flight.

Probe sockets live in many namespaces, but a socket is just a descriptor once
opened, so a single thread can wait on all of them (epoll) and hand each
answer to the probe it belongs to. A `Pending` is one probe in flight: the
times it was sent, and the first answer that matched it (later answers, to
resends, are ignored); a `Batch` lets a caller wait for many at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from .result import SILENT, ProbeResult

Key = tuple[Any, ...]


class Owner(Protocol):
    """What a probe needs from the prober that started it."""

    name: str

    def forget(self, pending: Pending) -> None: ...


class Scapy:
    """scapy's inet layers, imported on first use (the import costs ~0.3-0.7 s).

    Only the layer classes are used, to build and dissect bytes; nothing
    here touches scapy's `conf`, whose routes describe another namespace.

    Probes need scapy only for what is rare: the first process on a machine
    builds the packet templates with it (`templates.py`), and an ICMP error
    is dissected by it. The receiver thread must never wait for the import
    (every probe's answers would wait with it), so a packet that arrives
    before scapy is loaded is handed to `parse_later`, which imports scapy on
    a thread of its own and then hands each waiting packet to its handler.
    A probe whose window closes while packets wait for that waits for them
    (`wait_for_backlog`), so the import never turns an answer into silence.
    """

    _layers: Any = None
    _lock = threading.Lock()
    _backlog: ClassVar[list[tuple[Callable[[bytes], None], bytes]]] = []
    _loader: threading.Thread | None = None
    _drained = threading.Condition(_lock)

    @classmethod
    def get(cls) -> Any:
        if cls._layers is None:
            from types import SimpleNamespace

            from scapy.layers.inet import (
                ICMP,
                IP,
                TCP,
                ICMPerror,
                IPerror,
                TCPerror,
                UDPerror,
            )
            from scapy.packet import Raw

            cls._layers = SimpleNamespace(
                IP=IP, ICMP=ICMP, TCP=TCP, IPerror=IPerror, ICMPerror=ICMPerror,
                TCPerror=TCPerror, UDPerror=UDPerror, Raw=Raw,
            )
        return cls._layers

    @classmethod
    def parse_later(cls, handler: Callable[[bytes], None], data: bytes) -> None:
        """Call handler(data) with scapy loaded: now if it is, else once it is."""
        with cls._lock:
            if cls._layers is None:
                cls._backlog.append((handler, data))
                if cls._loader is None:
                    cls._loader = threading.Thread(target=cls._load, name="netns-scapy",
                                                   daemon=True)
                    cls._loader.start()
                return
        handler(data)

    @classmethod
    def _load(cls) -> None:
        try:
            cls.get()
        except Exception as exc:  # every waiting probe then says why it heard nothing
            RECEIVER.failed(exc)
        while True:
            with cls._lock:
                if not cls._backlog:
                    cls._drained.notify_all()
                    return
                handler, data = cls._backlog.pop(0)
            try:
                if cls._layers is not None:
                    handler(data)
            except Exception as exc:  # as the receiver would: recorded, never silent
                RECEIVER.failed(exc)

    @classmethod
    def wait_for_backlog(cls, timeout: float = 60.0) -> None:
        """Wait until packets waiting for scapy's import have been handed over."""
        with cls._lock:
            cls._drained.wait_for(lambda: not cls._backlog, timeout)


# -- the receiver -----------------------------------------------------------


class Receiver:
    """One daemon thread that reads every probe socket as data arrives."""

    def __init__(self) -> None:
        self._selector: selectors.EpollSelector | None = None  # opened with the first socket
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []  # unexpected handler failures, newest last
        self.error_count = 0

    def register(self, sock: socket.socket, handler: Callable[[socket.socket], None]) -> None:
        with self._lock:
            if self._selector is None:
                self._selector = selectors.EpollSelector()
            self._selector.register(sock, selectors.EVENT_READ, handler)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="netns-probes",
                                                daemon=True)
                self._thread.start()

    def unregister(self, sock: socket.socket) -> None:
        with self._lock, contextlib.suppress(KeyError, ValueError):
            if self._selector is not None:
                self._selector.unregister(sock)

    def _run(self) -> None:
        assert self._selector is not None  # the thread starts with the first socket
        while True:
            for key, _ in self._selector.select(timeout=5.0):
                try:
                    key.data(key.fileobj)
                except OSError:
                    pass  # the socket was closed after select() returned it
                except Exception as exc:  # keep reading for every other probe
                    self.failed(exc)

    def failed(self, exc: Exception) -> None:
        """Record a handler's unexpected failure (a probe then says so, not "silence")."""
        self.errors = [*self.errors[-9:], f"{type(exc).__name__}: {exc}"]
        self.error_count += 1


RECEIVER = Receiver()


# -- one probe in flight ----------------------------------------------------


class Batch:
    """Counts the unanswered probes of one wait; the event fires when none are left."""

    def __init__(self) -> None:
        self._left = 0
        self._lock = threading.Lock()
        self.event = threading.Event()
        self.event.set()

    def add(self) -> None:
        with self._lock:
            self._left += 1
            self.event.clear()

    def done(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left <= 0:
                self.event.set()


class Pending:
    """One probe: its match key, the times it was sent, and the first answer."""

    def __init__(
        self,
        prober: Owner | None,
        proto: str,
        dst: str,
        port: int | None,
        key: Key | None,
        batch: Batch,
    ) -> None:
        self.prober = prober
        self.src = prober.name if prober else ""
        self.proto = proto
        self.dst = dst
        self.port = port
        self.key = key
        self.batch = batch
        self.sends: list[float] = []
        self.state: str | None = None
        self.detail = ""
        self.rtt_ms: float | None = None
        self.sender: Callable[[Pending], None] | None = None
        self.cleanup: Callable[[], None] | None = None
        self.isn = 0  # a TCP probe's initial sequence number
        self.closed = False  # finished: its socket may serve another probe now
        self._lock = threading.Lock()
        self._errors_at = RECEIVER.error_count
        batch.add()

    @property
    def answered(self) -> bool:
        return self.state is not None

    def send(self) -> None:
        """Send (or resend) the probe; a refusal by the local kernel is an answer."""
        if self.sender is None or self.answered:
            return
        try:
            self.sender(self)
        except OSError as exc:
            self._refused(exc)

    def _refused(self, exc: OSError) -> None:
        code = exc.errno or 0
        if code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            self.resolve("unreachable", f"the source's kernel refused to send: "
                         f"{os.strerror(code)}")
        elif code == errno.EPERM:
            self.resolve(SILENT[self.proto], "the source's own firewall dropped the probe "
                         "before it left (EPERM); nothing was sent")
        else:
            self.resolve(SILENT[self.proto], f"sending failed: {exc}")

    def resolve(self, state: str, detail: str, sent_at: float | None = None,
                received_at: float | None = None) -> None:
        """Record the first answer; later ones (to resends) are ignored."""
        now = received_at if received_at is not None else time.perf_counter()
        with self._lock:
            if self.state is not None:
                return
            if sent_at is None and self.sends:  # the last packet sent before the answer
                sent_at = max((t for t in self.sends if t <= now), default=self.sends[0])
            self.rtt_ms = (now - sent_at) * 1000.0 if sent_at is not None else None
            self.state, self.detail = state, detail
        self.batch.done()

    def finish(self, timeout: float) -> None:
        """Call silence by its name, and give back the key and sockets."""
        if not self.answered:
            why = f"no answer within {timeout:g} s ({len(self.sends)} packet(s) sent)"
            if RECEIVER.error_count > self._errors_at:  # do not hide a bug as silence
                why += f"; the probe reader failed meanwhile: {RECEIVER.errors[-1]}"
            self.resolve(SILENT[self.proto], why)
            self.rtt_ms = None
        if self.prober is not None:
            self.prober.forget(self)
        if self.cleanup is not None:
            self.cleanup()
            self.cleanup = None

    def result(self, dst_name: str = "") -> ProbeResult:
        assert self.state is not None
        return ProbeResult(self.src, self.dst, self.proto, self.port, self.state,
                           self.rtt_ms, self.detail, len(self.sends), dst_name,
                           self.sends[0] if self.sends else None)
