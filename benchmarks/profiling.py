"""Where the time goes: cProfile over repeated runs, summarised per run.

The summary lists the functions that take the largest share of the
measured wall time (cumulative, per run), restricted to the frames a
reader can act on: pytest-netns itself, and the few library calls it makes
(pyroute2 requests, docker API calls, subprocesses). Time a function spends
waiting on another thread (a namespace thread running a netlink request)
shows up as the caller's wait, so both sides are listed.
"""

from __future__ import annotations

import cProfile
import os
import pstats
from collections.abc import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# frames worth naming in RESULTS.md: ours, and the blocking calls we make
INTERESTING = ("pytest_netns/", "pyroute2/iproute/linux.py", "docker/models/", "subprocess.py")
# plumbing whose time is fully explained by its callees
SKIP = ("_do", "call", "submit", "__exit__", "__enter__", "<lambda>", "run", "_run", "wrapper")


def profile(fn: Callable[[], object], runs: int, between: Callable[[], object] | None = None,
            ) -> tuple[float, list[tuple[str, float, float]]]:
    """Profile `runs` calls of fn; return the mean wall time per run and the top frames.

    `between` runs after each call, outside the profile (draining deferred
    work, for instance). Frames are (name, seconds per run, share of a run).
    """
    prof = cProfile.Profile()
    for _ in range(runs):
        prof.enable()
        fn()
        prof.disable()
        if between is not None:
            between()
    stats = pstats.Stats(prof)
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, _), (_, _, tt, _, _) in table.items())
    rows: list[tuple[str, float, float]] = []
    for (path, line, func), (_, _, _, cum, _) in table.items():
        if not any(key in path for key in INTERESTING) or func in SKIP:
            continue
        short = path.split("site-packages/")[-1].split(f"{REPO}/")[-1]
        rows.append((f"{short}:{line} {func}", cum / runs, cum / total if total else 0.0))
    rows.sort(key=lambda r: -r[1])
    return total / runs, rows


def report(title: str, fn: Callable[[], object], runs: int,
           between: Callable[[], object] | None = None, top: int = 12) -> str:
    """A Markdown section: the frames that take the most time per run."""
    per_run, rows = profile(fn, runs, between)
    lines = [f"#### {title}", "",
             f"cProfile over {runs} runs; {per_run * 1000:.1f} ms per run under the profiler "
             "(the profiler itself adds overhead; shares are what matter).", "",
             "| frame | ms per run | share |", "|---|---|---|"]
    for name, secs, share in rows[:top]:
        lines.append(f"| `{name}` | {secs * 1000:.2f} | {share:.0%} |")
    return "\n".join(lines)
