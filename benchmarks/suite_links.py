"""host_only_link and bridged_pair, side by side with the manual ways of making them.

- host_only_link against an already running container (container start
  excluded): ours vs the article's `ip` CLI recipe vs Docker's network API;
- bridged_pair on bare namespaces: ours vs the `ip netns` CLI recipe;
- bridged_pair with containers: ours vs a user-defined Docker bridge network
  with two containers on it.

Ours is measured as the time a test waits (setup plus `close()`). The work
`close()` hands to the janitor (deleting veths, removing containers) is
drained after each round, outside that time, and reported in rows of its
own, so nothing is hidden: a row gives the in-test time, another the
deferred cost, a third the two together against the same competitor.
"""

from __future__ import annotations

import time
from typing import Any

from pytest_netns.nodes.engine import remove_container

from . import cli_recipes, docker_native
from .context import IMAGE, SLEEP, Context
from .harness import Row, Sample, absolute, compare, fmt_s, interleave
from .profiling import report


def _ours(make: Any, drained: Sample) -> Any:
    """A contender: build and close with `make()`, then drain the janitor (timed apart)."""
    from pytest_netns.kernel.janitor import janitor

    def run() -> float:
        started = time.perf_counter()
        make().close()
        took = time.perf_counter() - started
        started = time.perf_counter()
        errors = janitor().drain()
        drained.times.append(time.perf_counter() - started)
        if errors:
            raise RuntimeError(f"deferred teardown failed: {errors}")
        return took

    return run


def _back_to_back(make: Any, rounds: int) -> tuple[Sample, float]:
    """Build-and-close `rounds` times without waiting for the janitor, as a test run does.

    Returns the per-round samples and the time the final drain took.
    """
    from pytest_netns.kernel.janitor import janitor

    sample = Sample()
    for _ in range(rounds):
        started = time.perf_counter()
        make().close()
        sample.times.append(time.perf_counter() - started)
    started = time.perf_counter()
    janitor().drain()
    return sample, time.perf_counter() - started


def host_only(ctx: Context) -> None:
    """host_only_link against a running container: ours, the article's CLI recipe, Docker's API."""
    from pytest_netns.topology import recipes
    from pytest_netns.topology.builder import TopologyBuilder

    group = "host_only_link"
    # On Docker's default bridge: a container with --network none cannot be
    # connected to a Docker network, and all three contenders share this one.
    ctr = ctx.running_container()
    pid = int(ctr.attrs["State"]["Pid"])
    subnet = ctx.reserve_subnet()
    try:
        def make() -> Any:
            return recipes.host_only_link(TopologyBuilder(backend="docker", verify=False),
                                          container=ctr)

        def make_by_id() -> Any:
            return recipes.host_only_link(TopologyBuilder(backend="docker", verify=False),
                                          container=ctr.id)

        drained = Sample()
        samples = interleave(
            ctx.rounds, 2,
            ours=_ours(make, drained),
            by_id=_ours(make_by_id, Sample()),
            cli=lambda: cli_recipes.host_only_link(ctx.tag, pid, ctx.next(), str(subnet)),
            docker=lambda: docker_native.network_round_trip(ctx.docker, ctr, ctx.tag,
                                                            ctx.next()),
        )
        ours, cli, dock = samples["ours"], samples["cli"], samples["docker"]
        drained.times = drained.times[-len(ours.times):]
        ctx.add(compare(group, "setup+close vs the article's `ip` CLI recipe", ours, cli, 10))
        ctx.add(compare(group, "setup+close vs Docker network create/connect/"
                        "disconnect/remove", ours, dock, 40))
        ctx.add(compare(group, "setup+close, container given by id (one docker inspect) vs "
                        "the article's `ip` CLI recipe", samples["by_id"], cli, None,
                        note="a Container object whose cached state is current needs no "
                        "inspect: /proc/<pid>/cgroup proves it"))
        ctx.add(Row(group, "deferred to the janitor (veth delete), per topology",
                    fmt_s(drained.median), note="runs off the test's path"))
        total = Sample([a + b for a, b in zip(ours.times, drained.times, strict=True)])
        ctx.add(compare(group, "setup+close+deferred vs the article's `ip` CLI recipe", total, cli,
                        None, note="for honesty: the deferred work counted in"))
        piped, final_drain = _back_to_back(make, ctx.rounds)
        ctx.add(Row(group, "back to back, janitor running alongside (as in a test run)",
                    fmt_s(piped.median), note=f"final drain {fmt_s(final_drain)}"))

        def verified() -> Any:
            return recipes.host_only_link(TopologyBuilder(backend="docker", verify=True),
                                          container=ctr)

        checked = interleave(max(ctx.rounds // 2, 3), 1, ours=_ours(verified, Sample()))
        ctx.add(absolute(group, "setup+close with self-verification (2 pings)",
                         checked["ours"].median, None, note="the fixture's default"))
        ctx.profiles.append(report(
            "host_only_link (attach to a running container), setup+close", make_closer(make),
            max(ctx.rounds, 20), drain))
    finally:
        ctx.release_subnet(subnet)
        remove_container(ctr)


def make_closer(make: Any) -> Any:
    return lambda: make().close()


def drain() -> None:
    from pytest_netns.kernel.janitor import janitor

    janitor().drain()


def namespace_pair(ctx: Context) -> None:
    """bridged_pair on bare namespaces vs the `ip netns` CLI recipe."""
    from pytest_netns.topology import recipes
    from pytest_netns.topology.builder import TopologyBuilder

    group = "bridged_pair (namespaces)"
    subnet = ctx.reserve_subnet()

    def make() -> Any:
        return recipes.bridged_pair(TopologyBuilder(backend="namespace", verify=False))

    try:
        drained = Sample()
        samples = interleave(
            ctx.rounds, 2,
            ours=_ours(make, drained),
            cli=lambda: cli_recipes.namespace_pair(ctx.tag, ctx.next(), str(subnet)),
        )
        ctx.add(compare(group, "setup+close vs `ip netns` CLI recipe", samples["ours"],
                        samples["cli"], 5))
        piped, _ = _back_to_back(make, ctx.rounds)
        ctx.add(Row(group, "back to back (the kernel reaping the previous ones)",
                    fmt_s(piped.median)))

        def verified() -> Any:
            return recipes.bridged_pair(TopologyBuilder(backend="namespace", verify=True))

        checked = interleave(max(ctx.rounds // 2, 3), 1, ours=_ours(verified, Sample()))
        ctx.add(absolute(group, "setup+close with self-verification (2 pings)",
                         checked["ours"].median, None, note="the fixture's default"))
        ctx.profiles.append(report("bridged_pair on namespaces, setup+close",
                                   make_closer(make), max(ctx.rounds, 20), drain))
    finally:
        ctx.release_subnet(subnet)


def container_pair(ctx: Context) -> None:
    """bridged_pair with container starts vs a Docker bridge network with two containers."""
    from pytest_netns.topology import recipes
    from pytest_netns.topology.builder import TopologyBuilder

    group = "bridged_pair (containers)"

    def make() -> Any:
        return recipes.bridged_pair(TopologyBuilder(backend="docker", image=IMAGE,
                                                    command=SLEEP, verify=False))

    drained = Sample()
    samples = interleave(
        ctx.slow_rounds, 1,
        ours=_ours(make, drained),
        seq=lambda: docker_native.bridged_pair(ctx.docker, IMAGE, SLEEP, ctx.tag, ctx.next()),
        conc=lambda: docker_native.bridged_pair(ctx.docker, IMAGE, SLEEP, ctx.tag, ctx.next(),
                                                concurrent=True),
    )
    ours = samples["ours"]
    drained.times = drained.times[-len(ours.times):]
    total = Sample([a + b for a, b in zip(ours.times, drained.times, strict=True)])
    ctx.add(compare(group, "setup+close+deferred removal vs Docker network + 2 x run",
                    total, samples["seq"], 1.5,
                    note="ours includes removing the containers (deferred)"))
    ctx.add(compare(group, "setup+close+deferred removal vs the same, containers run "
                    "concurrently", total, samples["conc"], None))
    ctx.add(Row(group, "in-test part (setup+close)", fmt_s(ours.median),
                note=f"container removal deferred: {fmt_s(drained.median)}"))
    ctx.profiles.append(report("bridged_pair with containers, setup+close", make_closer(make),
                               max(ctx.slow_rounds // 2, 3), drain))
