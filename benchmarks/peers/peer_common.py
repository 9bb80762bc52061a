"""Plumbing shared by the side-by-side peer benchmarks (standard library only).

Each tool runs under its own interpreter: Mininet under Debian's python3 (where
apt put it), munet under its own venv, pytest-netns under the project's venv.
So this module imports nothing outside the standard library, and every
benchmark script imports it as a sibling file, not as a package member.

Conventions every script follows, so that `run_all.py` can pair the rows:

* One JSON object per line on stdout: ``{"tool", "row", "seconds", ...}``;
  ``seconds`` is the row's whole operation (build + probe + teardown, without
  interpreter start-up and imports, which are reported as ``import_s``).
* A row that cannot run says why in ``"skipped"`` and has no ``seconds``.
* ``--row NAME`` runs one row in this process. Without ``--row`` a script runs
  each of its rows in a fresh child process, because state left by one row
  (threads, caches, the kernel still reaping namespaces) must not time the next.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

Record = dict[str, Any]

#: Sysctls of the root namespace that a run must leave exactly as they were.
#: The first five are the forwarding/bridge-netfilter state the host's Docker
#: depends on; the rest are what Mininet's `fixLimits()` writes (net.py calls it
#: from `Mininet.init()`): tcp_rmem/tcp_wmem unconditionally, the others when
#: lower than Mininet's number.
GUARDED_SYSCTLS: tuple[str, ...] = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "fs.file-max",
    "net.core.wmem_max",
    "net.core.rmem_max",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.core.netdev_max_backlog",
    "net.ipv4.neigh.default.gc_thresh1",
    "net.ipv4.neigh.default.gc_thresh2",
    "net.ipv4.neigh.default.gc_thresh3",
    "net.ipv4.route.max_size",
    "kernel.pty.max",
)


def emit(record: Record) -> None:
    """Print one result line (flushed: a parent reads it while we clean up)."""
    print(json.dumps(record), flush=True)


def skipped(tool: str, row: str, reason: str) -> Record:
    return {"tool": tool, "row": row, "skipped": reason}


def default_signals() -> None:
    """Undo an inherited SIGHUP=ignore (nohup, some CI runners).

    An ignored signal stays ignored across exec, so every helper a peer starts
    would ignore it too: munet stops each helper with SIGHUP and waits 30 s
    before SIGKILL (seen: a 2-node `down` took 60 s under nohup), and Mininet
    stops its shells with SIGHUP.
    """
    import signal

    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def failed(tool: str, row: str, exc: BaseException) -> Record:
    """A run that raised: no `seconds`, the error in one line (details on stderr)."""
    import traceback

    traceback.print_exc()
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return {"tool": tool, "row": row, "error": text[:300]}


def load1() -> float:
    """1-minute load average: other work on the machine skews every timing."""
    return os.getloadavg()[0]


class Clock:
    """Named phase timings with perf_counter: ``with clock("build"): ...``."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - started

    def fields(self) -> Record:
        return {f"{name}_s": round(value, 6) for name, value in self.phases.items()}


# --- resources -------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _rss_kb(pid: int) -> int:
    match = re.search(r"^VmRSS:\s+(\d+)", _read(f"/proc/{pid}/status"), re.M)
    return int(match.group(1)) if match else 0


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared pages divided among their users, so the sum
    over 1000 helper shells is what they really cost, not 1000 x bash's RSS."""
    match = re.search(r"^Pss:\s+(\d+)", _read(f"/proc/{pid}/smaps_rollup"), re.M)
    return int(match.group(1)) if match else 0


def descendants(pid: int) -> list[int]:
    """All live descendants of `pid` (needs /proc/PID/task/TID/children)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:  # exited meanwhile
            continue
        for tid in tids:
            for child in _read(f"/proc/{parent}/task/{tid}/children").split():
                found.append(int(child))
                todo.append(int(child))
    return found


def resources() -> Record:
    """What this process holds right now, and what its helper processes hold.

    Helpers matter: Mininet keeps one bash per node and munet several
    processes per node, where pytest-netns keeps one thread per namespace.
    Helpers' memory is their summed PSS (see `_pss_kb`).
    """
    helpers = descendants(os.getpid())
    return {
        "threads": len(os.listdir("/proc/self/task")),
        "fds": len(os.listdir("/proc/self/fd")),
        "rss_kb": _rss_kb(os.getpid()),
        "helpers": len(helpers),
        "helpers_pss_kb": sum(_pss_kb(p) for p in helpers),
    }


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --- the kernel reaping namespaces -------------------------------------------------


def netns_reaping() -> bool:
    """True while a kernel worker is running the netns cleanup work.

    Deleting a namespace only drops its last reference; the kernel's
    `cleanup_net` work then destroys its devices in a kworker whose comm
    reads ``kworker/...+netns`` while it runs. Any tool's teardown leaves
    this work behind, and it slows whatever runs next.
    """
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            comm = _read(f"/proc/{pid}/comm").strip()
            if comm.startswith("kworker") and comm.endswith("+netns"):
                return True
    return False


def settle(limit: float = 120.0, quiet: float = 0.5) -> float:
    """Wait until the kernel has reaped dead namespaces (seen idle `quiet` s).

    Returns the seconds waited. Other users of the machine create namespaces
    too, so this is capped at `limit` rather than trusted to reach zero.
    """
    started = time.perf_counter()
    idle_since: float | None = None
    while time.perf_counter() - started < limit:
        now = time.perf_counter()
        if netns_reaping():
            idle_since = None
        elif idle_since is None:
            idle_since = now
        elif now - idle_since >= quiet:
            break
        time.sleep(0.05)
    return time.perf_counter() - started


# --- host sysctls -----------------------------------------------------------------


def _sysctl_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def read_sysctls(names: Sequence[str] = GUARDED_SYSCTLS) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in names:
        text = _read(_sysctl_path(name))
        if text:
            values[name] = " ".join(text.split())
    return values


def restore_sysctls(before: dict[str, str]) -> list[str]:
    """Write back every guarded sysctl that changed; return the names restored."""
    changed = [n for n, v in read_sysctls(list(before)).items() if v != before[n]]
    for name in changed:
        with open(_sysctl_path(name), "w", encoding="ascii") as f:
            f.write(before[name])
    return changed


# --- profiling ---------------------------------------------------------------------


def profile_call(fn: Callable[[], Record], out: Path, top: int = 25) -> Record:
    """Run `fn` under cProfile; write OUT.pstats and OUT.txt (top by cumulative
    and by own time), return fn's record. cProfile sees only this process, so
    each script adds its own count of the commands it ran in helpers."""
    out.parent.mkdir(parents=True, exist_ok=True)
    prof = cProfile.Profile()
    record = prof.runcall(fn)
    prof.dump_stats(str(out.with_suffix(".pstats")))
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    out.with_suffix(".txt").write_text(text.getvalue(), encoding="utf-8")
    record["profile"] = str(out.with_suffix(".txt"))
    return record


class CommandCounter:
    """Count and time the shell commands a peer runs in its helpers, by verb."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def add(self, command: str, seconds: float, label: str | None = None) -> None:
        """Count `command` under its verb: its first two words (three for `ip`),
        with numbers folded, so `ifconfig pmh7-eth0 up` and `ifconfig pmh8-eth0
        up` are one verb."""
        words = command.split()
        verb = label or re.sub(r"\d+", "N", " ".join(
            words[:3] if words[:1] == ["ip"] else words[:2]) if words else "?")
        self.count[verb] = self.count.get(verb, 0) + 1
        self.seconds[verb] = self.seconds.get(verb, 0.0) + seconds

    def summary(self, top: int = 15) -> list[dict[str, Any]]:
        ranked = sorted(self.seconds, key=self.seconds.__getitem__, reverse=True)[:top]
        return [{"cmd": v, "n": self.count[v], "s": round(self.seconds[v], 3)} for v in ranked]


# --- command line -----------------------------------------------------------------


def parser(description: str, rows: Sequence[str],
           default_rows: Sequence[str] | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--row", choices=rows, help="run this row in this process (one JSON line)")
    ap.add_argument("--rows", default=",".join(default_rows or rows),
                    help="without --row: comma-separated rows to run, each in a fresh "
                         f"process (choices: {','.join(rows)})")
    ap.add_argument("--profile", metavar="DIR",
                    help="with --row: run it under cProfile, write DIR/<tool>-<row>.{pstats,txt}")
    return ap


def run_children(argv_for_row: Callable[[str], list[str]], rows: str) -> int:
    """Run each row in a fresh process and pass its JSON lines through."""
    status = 0
    for row in filter(None, rows.split(",")):
        settle()
        done = subprocess.run(argv_for_row(row), stdout=subprocess.PIPE, text=True)
        sys.stdout.write(done.stdout)
        sys.stdout.flush()
        status = status or done.returncode
    return status


def run_rows(tool: str, row: str, profile: str | None, run_row: Callable[[str], Record],
             wrap: Callable[[Callable[[], Record]], Callable[[], Record]] = lambda fn: fn
             ) -> int:
    """Run `row` in this process and print one JSON line for it (two for "pair").

    The pair row runs twice in this process: cold (what one test in a fresh process
    pays: imports, first probe) and then warm ("pair-warm": what each further test of
    a session pays). Under --profile, `wrap` adds what the tool's profile should count
    (Mininet's and munet's commands).
    """
    rows = [row] + (["pair-warm"] if row == "pair" and not profile else [])
    for this in rows:

        def call(this: str = this) -> Record:
            return run_row(this)

        try:
            if profile:
                record = profile_call(wrap(call), Path(profile) / f"{tool}-{this}")
            else:
                record = call()
        except Exception as exc:  # reported as a failed run; run_all.py may retry it
            record = failed(tool, this, exc)
        emit(record)
    return 0
