"""pytest-netns rows for the side-by-side benchmark (run with the project's venv).

The same rows as peer_mininet.py / peer_munet.py, built with the public
builder on the embedded namespace backend, `verify=False` (the peers do not
verify either: they build, and the row's ping is the check):

  pair             2 nodes on one switch: build, ping both ways, close
  star200          200 nodes on one switch: build, close
  star1000         1000 nodes on one /22 switch: build, close (also threads,
                   descriptors and peak RSS while up)
  pingall30        30 nodes: build, reachability_matrix over all 870 ordered
                   pairs, close (Mininet: pingAll). Why 30, not 200: see run_all.py

"stop" is `close()` plus draining the janitor (the deferred part of teardown),
so that it ends where Mininet's `stop()` and munet's `async_delete()` end:
nothing left for the process to do. The kernel's reaping of the namespaces
goes on afterwards for every tool alike; run_all.py waits for it between runs.

The first probe in a process imports scapy lazily (about 0.3 s here), and the
pair row's `ping_s` includes that, because a test pays it too; `ping_ab_s`
(first) and `ping_ba_s` (second) show the split, and `ping_warm_s` is one
more round trip both ways, outside `seconds`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_common import (
    Clock,
    Record,
    default_signals,
    emit,
    load1,
    parser,
    peak_rss_kb,
    read_sysctls,
    resources,
    restore_sysctls,
    run_children,
    run_rows,
    skipped,
)

TOOL = "pytest-netns"
ROWS = ("pair", "star200", "star1000", "pingall30")
DEFAULT_ROWS = ("pair", "star200", "star1000")
SIZES = {"pair": 2, "pair-warm": 2, "star200": 200, "star1000": 1000, "pingall30": 30}


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the namespace backend needs root"
    if importlib.util.find_spec("pytest_netns") is None:
        return (f"pytest_netns is not importable by {sys.executable}: "
                "run with the project's .venv/bin/python")
    return None


def _version() -> str:
    """The package's version, and the commit of its checkout when it is one
    (read-only `git rev-parse`: the working tree may hold more than that)."""
    import importlib.metadata
    import subprocess

    import pytest_netns

    try:
        version = importlib.metadata.version("pytest-netns")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    where = Path(pytest_netns.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return f"{version} ({commit})" if commit else version


def _janitor_drain() -> Callable[[], None]:
    """The janitor's drain(), wherever this version of the package keeps it
    (pytest_netns.kernel.janitor since the layered package, pytest_netns.janitor
    before); a no-op if neither exists."""
    for module in ("pytest_netns.kernel.janitor", "pytest_netns.janitor"):
        try:
            return importlib.import_module(module).janitor().drain  # type: ignore[no-any-return]
        except ImportError:
            continue
    return lambda: None


def _star(n: int, row: str) -> tuple[Any, list[str]]:
    """Like benchmarks/suite_scale.py: one switch, n nodes, no verification."""
    from pytest_netns import TopologyBuilder

    builder = TopologyBuilder(backend="namespace", verify=False, label=f"pm-{row}")
    # the default subnet is a /24; 1000 nodes need a /22
    switch = builder.switch("lan", subnet="10.96.0.0/22" if n > 250 else None)
    names = [builder.node(f"n{i}") for i in range(n)]
    for name in names:
        builder.connect(name, switch)
    return builder, names


def run_row(row: str) -> Record:
    sysctls = read_sysctls()
    record: Record = {"tool": TOOL, "row": row, "load1": load1()}
    started = time.perf_counter()
    import pytest_netns

    # The names this row uses, loaded here as `import mininet.net` loads Mininet's
    # modules: every tool's imports are timed apart from the row (import_s).
    pytest_netns.TopologyBuilder, pytest_netns.ping  # noqa: B018
    record["import_s"] = round(time.perf_counter() - started, 6)
    record["version"] = _version()
    drain = _janitor_drain()
    n = SIZES[row]
    clock = Clock()
    topo = None
    try:
        with clock("build"):
            builder, names = _star(n, row)
            topo = builder.build()
        if row in ("pair", "pair-warm"):
            a, b = topo[names[0]], topo[names[1]]
            with clock("ping"):
                t0 = time.perf_counter()
                ab = pytest_netns.ping(a, b)
                t1 = time.perf_counter()
                ba = pytest_netns.ping(b, a)
                t2 = time.perf_counter()
            record.update(ok=ab.ok and ba.ok, ping_ab_s=round(t1 - t0, 6),
                          ping_ba_s=round(t2 - t1, 6))
            t0 = time.perf_counter()
            pytest_netns.ping(a, b)
            pytest_netns.ping(b, a)
            record["ping_warm_s"] = round(time.perf_counter() - t0, 6)
        elif row == "pingall30":
            with clock("pingall"):
                matrix = pytest_netns.reachability_matrix([topo[x] for x in names], timeout=1.0)
            reachable = len(matrix.reachable_pairs())
            record.update(ok=reachable == n * (n - 1), pings=n * (n - 1), replies=reachable)
        else:
            addresses = {topo[x].ip for x in names}
            record["ok"] = len(addresses) == n and None not in addresses
        record.update(resources())
    finally:
        if topo is not None:
            with clock("stop"):
                topo.close()
                drain()
        record["sysctls_restored"] = restore_sysctls(sysctls)
    record.update(clock.fields())
    record["seconds"] = round(sum(clock.phases.values()), 6)
    record["peak_rss_kb"] = peak_rss_kb()
    return record


def main() -> int:
    default_signals()
    args = parser(__doc__.split("\n")[0], ROWS, DEFAULT_ROWS).parse_args()
    if args.row is None:
        return run_children(lambda row: [sys.executable, __file__, "--row", row], args.rows)
    why = unavailable()
    if why:
        emit(skipped(TOOL, args.row, why))
        return 0
    return run_rows(TOOL, args.row, args.profile, run_row)


if __name__ == "__main__":
    sys.exit(main())
