"""Who owns what: the session id, the names and tags derived from it, and its records.

Every object pytest-netns creates carries its session id (in the link alias,
the namespace name, a container label, a firewall table name), so that a
sweep can tell a dead session's leftovers from a live session's objects
without ever deleting by a name pattern alone. Live sessions register in
the state directory; sessions whose topologies are kept for debugging leave
a marker there that sweeps respect. A lab (`pytest-netns up`) is such a kept
session, with a record of its own that later commands read.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading

STATE_DIR = "/run/pytest-netns"
SESSIONS_DIR = os.path.join(STATE_DIR, "sessions")
KEPT_DIR = os.path.join(STATE_DIR, "kept")
LABS_DIR = os.path.join(STATE_DIR, "labs")
LAB_RECORD = "lab.json"
#: per session, the processes it started in namespaces it does not own (nodes/ledger.py)
PROCESSES_DIR = os.path.join(STATE_DIR, "processes")
ALIAS_PREFIX = "pytest-netns:"
NETNS_PREFIX = "pytest-netns-"
CONTAINER_LABEL = "pytest-netns.session"
CONTAINER_PID_LABEL = "pytest-netns.pid"
NFT_TABLE_PREFIX = "pytest_netns_"


class Session:
    """Identity and name source for one pytest process (one xdist worker)."""

    def __init__(self, sid: str | None = None) -> None:
        self.id = sid or os.urandom(3).hex()  # (secrets would import hashlib for this)
        self.pid = os.getpid()
        self._counter = itertools.count()
        self._lock = threading.Lock()

    @property
    def alias(self) -> str:
        """The IFLA_IFALIAS every created link carries."""
        return f"{ALIAS_PREFIX}{self.id}:{self.pid}"

    @property
    def labels(self) -> dict[str, str]:
        """The Docker labels every started container carries."""
        return {CONTAINER_LABEL: self.id, CONTAINER_PID_LABEL: str(self.pid)}

    def next_number(self) -> int:
        with self._lock:
            return next(self._counter)

    def numbers_from(self, first: int) -> None:
        """Number names from `first` on: another process of the same session (a lab's
        later commands) names its objects apart from those it already has."""
        with self._lock:
            self._counter = itertools.count(first)

    def ifname(self, tag: str = "") -> str:
        """A root-namespace interface name unique across sessions, <= 15 chars."""
        return f"pn{self.id}{_base36(self.next_number())}{tag}"[:15]

    def netns_name(self, role: str) -> str:
        """A /run/netns name that carries the session id and the pid."""
        return f"{NETNS_PREFIX}{self.id}-{self.pid}-{self.next_number()}-{role}"

    def container_name(self, node: str) -> str:
        return f"pytest-netns-{self.id}-{self.next_number()}-{node}"

    @property
    def nft_table(self) -> str:
        return f"{NFT_TABLE_PREFIX}{self.id}"

    def register(self) -> None:
        """Mark this session live, so sweeps of other sessions leave it alone."""
        os.makedirs(SESSIONS_DIR, exist_ok=True)
        with open(os.path.join(SESSIONS_DIR, self.id), "w") as f:
            # "<pid> <start ticks>": the start time tells this process from a
            # later one that reuses its pid (pid_max can be as low as 32768)
            f.write(f"{self.pid} {process_start(self.pid) or 0}")

    def unregister(self) -> None:
        """A clean end: the session is no longer live, and nothing it started is left."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(SESSIONS_DIR, self.id))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.ledger_path)

    @property
    def ledger_path(self) -> str:
        """Where the processes it starts in namespaces it does not own are written down."""
        return os.path.join(PROCESSES_DIR, f"{self.id}-{self.pid}")


def process_start(pid: int) -> int | None:
    """When `pid` started (clock ticks after boot), or None if it is gone or a zombie.

    Together with the pid this names one process for good; a zombie counts as
    gone because it has already dropped its namespaces and will never act again.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X", b"x"):
        return None
    return int(fields[19])


def process_alive(pid: int, start: int | None = None) -> bool:
    """True while `pid` runs (and, given `start`, is still the process that started then)."""
    if pid <= 0:
        return False
    try:
        started = process_start(pid)
    except PermissionError:
        return True
    return started is not None and (not start or started == start)


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


_current: Session | None = None
_current_lock = threading.Lock()


def current_session() -> Session:
    """The process-wide session, created (and registered) on first use."""
    global _current
    with _current_lock:
        if _current is None or _current.pid != os.getpid():
            _current = Session()
            _current.register()
        return _current


def listdir(path: str) -> list[str]:
    """Sorted entries of a state directory; none when it does not exist yet."""
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def read_records(directory: str) -> dict[str, tuple[int, int]]:
    """sid -> (pid, start ticks or 0) for the session records or kept markers in `directory`.

    A record holds "<pid> <start>" or JSON with "pid" and "start" (kept markers).
    """
    out: dict[str, tuple[int, int]] = {}
    for sid in listdir(directory):
        if "." in sid:  # a marker being written
            continue
        try:
            with open(os.path.join(directory, sid)) as f:
                text = f.read().strip()
        except OSError:
            continue
        try:
            if text.startswith("{"):
                data = json.loads(text)
                out[sid] = (int(data["pid"]), int(data.get("start") or 0))
            else:
                pid, _, start = text.partition(" ")
                out[sid] = (int(pid), int(start or 0))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def mark_kept(session: Session, objects: list[str] | None = None) -> str:
    """Mark `session`'s objects kept for debugging; return the marker's path.

    Automatic sweeps and the crash watchdog then leave every object of this
    session alone, until `pytest-netns cleanup` (`sweep(include_kept=True)`).
    """
    os.makedirs(KEPT_DIR, exist_ok=True)
    path = os.path.join(KEPT_DIR, session.id)
    record = {"pid": session.pid, "start": process_start(session.pid) or 0,
              "objects": list(objects or [])}
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)
    return path


def is_kept(session_id: str) -> bool:
    return os.path.exists(os.path.join(KEPT_DIR, session_id))


def unmark_kept(session_id: str) -> None:
    """Drop a kept marker (a lab whose build failed and was taken down at once)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(KEPT_DIR, session_id))


# -- labs: kept sessions with a record under LABS_DIR/<name>/ --------------------------


def lab_dir(name: str) -> str:
    return os.path.join(LABS_DIR, name)


def read_lab(name: str) -> dict[str, object] | None:
    """A lab's record; None if there is none (or it is being written for the first time)."""
    try:
        with open(os.path.join(lab_dir(name), LAB_RECORD)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_lab(name: str, record: dict[str, object]) -> None:
    """Replace a lab's record atomically (readers see the old one or the new one)."""
    path = os.path.join(lab_dir(name), LAB_RECORD)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


def lab_names() -> list[str]:
    return [n for n in listdir(LABS_DIR) if os.path.isdir(lab_dir(n))]


def remove_lab(name: str) -> None:
    """Delete a lab's record and logs (the lab's objects are a sweep's business)."""
    import shutil

    shutil.rmtree(lab_dir(name), ignore_errors=True)
