"""What self-verification costs: the same build with and without it, side by side.

- `bridged_pair` on namespaces (the fixture, whose default is to verify);
- a custom `make_topology()` topology, whose every segment is now checked by
  default: two switches of three nodes each and a router on both (so three
  segments, the router on each: 2 + 2 + 1 star probes, sent together).

Each round builds and closes once with `verify=True` and once without,
alternating; the janitor is drained after each, and the kernel's reaping of
the closed namespaces waited for before the next, outside the timed part
(the custom topology's eight namespaces are reaped in the background for
tens of milliseconds, and a build that runs meanwhile took 28-94 ms instead
of about 30: the ratio swung from 0.7x to 2.6x between runs).
"""

from __future__ import annotations

from typing import Any

from .context import Context
from .harness import Sample, interleave, ratio_row, settle_kernel
from .profiling import report
from .suite_links import _ours, drain


def _custom(verify: bool) -> Any:
    from pytest_netns.topology.builder import TopologyBuilder

    t = TopologyBuilder(backend="namespace", verify=verify, label="custom")
    router = t.router("r")
    for lan in ("lan1", "lan2"):
        switch = t.switch(lan)
        t.connect(router, switch)
        for i in range(3):
            t.connect(t.node(f"{lan}n{i}"), switch)
    t.connect(t.node("extra"), router)  # and a point-to-point link
    return t.build()


def _pair(verify: bool) -> Any:
    from pytest_netns.topology import recipes
    from pytest_netns.topology.builder import TopologyBuilder

    return recipes.bridged_pair(TopologyBuilder(backend="namespace", verify=verify))


def _settled(run: Any) -> float:
    """`run()`'s own time, once the kernel has reaped the previous round's namespaces."""
    settle_kernel(limit=5.0, quiet=0.05)
    took: float = run()
    return took


def verification(ctx: Context) -> None:
    group = "verification"
    for what, make in (("namespace bridged_pair", _pair),
                       ("make_topology(): 2 switches x 3 nodes + a router + 1 link", _custom)):
        # a build is a few milliseconds, and the machine's noise is of that order: many rounds
        checked_run = _ours(lambda m=make: m(True), Sample())
        unchecked_run = _ours(lambda m=make: m(False), Sample())
        samples = interleave(ctx.rounds * 3, 2,
                             checked=lambda run=checked_run: _settled(run),
                             unchecked=lambda run=unchecked_run: _settled(run))
        checked, unchecked = samples["checked"].median, samples["unchecked"].median
        ctx.add(ratio_row(group, f"{what}: setup+close verified vs not", checked / unchecked,
                          1.3, f"{checked * 1000:.2f} ms vs {unchecked * 1000:.2f} ms"))
    ctx.profiles.append(report("make_topology() with its default verification, setup+close",
                               lambda: _custom(True).close(), max(ctx.rounds, 10), drain))
