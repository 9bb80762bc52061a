"""Timing, rows and tables shared by every benchmark.

Each measurement runs a callable repeatedly and keeps the median, so one
slow outlier (a docker engine hiccup, a CPU-frequency step) does not decide
the figure. Comparisons are measured in the same process, interleaved
round by round (ours, theirs, ours, theirs ...), so drift on the machine
hits both sides alike.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .peers.peer_common import settle as wait_for_reaping


@dataclass
class Sample:
    """The timings of one measured callable, in seconds."""

    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    @property
    def spread(self) -> str:
        """min-max, for the reader who wants to see the noise."""
        if not self.times:
            return ""
        return f"{fmt_s(min(self.times))}-{fmt_s(max(self.times))}"


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of fn takes (the garbage collector held off meanwhile)."""
    gc.disable()
    try:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started
    finally:
        gc.enable()


def interleave(
    rounds: int, warmup: int, settle: float = 0.0, **contenders: Callable[[], float | None]
) -> dict[str, Sample]:
    """Run each contender once per round, alternating; return their samples.

    A contender returns the seconds it wants recorded (so it can exclude its
    own preparation), or None to have its whole call timed. `settle` seconds
    of idle come before each call, so that work a contender leaves running
    in the background (dockerd finishing an exec, the kernel reaping a
    namespace) is not charged to whoever runs next.
    """
    samples = {name: Sample() for name in contenders}
    for i in range(warmup + rounds):
        for name, fn in contenders.items():
            if settle:
                time.sleep(settle)
            started = time.perf_counter()
            got = fn()
            took = time.perf_counter() - started if got is None else got
            if i >= warmup:
                samples[name].times.append(took)
    return samples


def settle_kernel(limit: float = 60.0, quiet: float = 0.5) -> float:
    """Wait until the kernel has reaped dead namespaces (idle for `quiet` s); seconds waited.

    The peers' runner waits the same way between runs (`peers/peer_common.settle`,
    whose code this is); other users of the machine make namespaces too, so it
    gives up after `limit`.
    """
    return wait_for_reaping(limit, quiet)


def fmt_s(seconds: float) -> str:
    """A duration with a unit that keeps two or three significant digits."""
    if seconds != seconds:  # NaN
        return "n/a"
    if seconds < 0.01:
        return f"{seconds * 1000:.2f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


@dataclass
class Row:
    """One line of the results table: ours, theirs, their ratio and the target."""

    group: str
    what: str
    ours: str
    theirs: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio_text(self) -> str:
        return "" if self.ratio is None else f"{self.ratio:.1f}x"

    @property
    def met_text(self) -> str:
        return {True: "yes", False: "NO", None: ""}[self.met]


def compare(
    group: str,
    what: str,
    ours: Sample,
    theirs: Sample,
    min_ratio: float | None,
    note: str = "",
) -> Row:
    """A row that says how many times faster ours is than theirs."""
    ratio = theirs.median / ours.median
    return Row(
        group, what, fmt_s(ours.median), fmt_s(theirs.median), ratio,
        f">= {min_ratio:g}x faster" if min_ratio else "",
        None if min_ratio is None else ratio >= min_ratio, note,
    )


def absolute(
    group: str, what: str, value: float, limit: float | None, unit: str = "s", note: str = ""
) -> Row:
    """A row with one figure of ours checked against a ceiling."""
    shown = fmt_s(value) if unit == "s" else f"{value:.0f} {unit}"
    limit_text = "" if limit is None else (
        f"<= {fmt_s(limit)}" if unit == "s" else f"<= {limit:g} {unit}")
    return Row(group, what, shown, "", None, limit_text,
               None if limit is None else value <= limit, note)


def ratio_row(group: str, what: str, ratio: float, limit: float, detail: str,
              note: str = "") -> Row:
    """A row whose figure is itself a ratio of two of ours, checked against a ceiling."""
    return Row(group, what, f"{ratio:.2f}x ({detail})", "", None, f"<= {limit:g}x",
               ratio <= limit, note)


HEADERS = ("measurement", "ours", "theirs", "ratio", "target", "met")


def table(rows: list[Row], markdown: bool) -> str:
    """The rows as a Markdown table, or as aligned plain text for the terminal."""
    body = [(f"{r.group}: {r.what}", r.ours, r.theirs, r.ratio_text, r.target, r.met_text)
            for r in rows]
    if markdown:
        lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(HEADERS)]
    out = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in body]
    return "\n".join(out)
