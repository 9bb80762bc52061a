"""Scale: 200 and 1000 namespace nodes on one switch, and 20 containers started at once.

The builds are timed from `build()` to a topology whose every node is
addressed and up; teardown is `close()`. Deleting a namespace only unpins
it: the kernel reaps it (and the veths inside) in the background. Rounds
are spaced out so one round's reaping does not slow the next.

The 100- and 1000-node builds each run in a fresh process
(`benchmarks.child star N`), which also reports the threads and
descriptors it holds with the topology up and its peak RSS.
"""

from __future__ import annotations

import time
from typing import Any

from .child import measure
from .context import IMAGE, SLEEP, Context
from .harness import Row, Sample, absolute, compare, fmt_s, interleave, ratio_row, settle_kernel
from .profiling import report


def _star(n: int, backend: str, label: str, **kw: Any) -> tuple[Any, list[str]]:
    from pytest_netns.topology.builder import TopologyBuilder

    builder = TopologyBuilder(backend=backend, verify=False, label=label, **kw)
    switch = builder.switch("lan")
    names = [builder.node(f"n{i}") for i in range(n)]
    for name in names:
        builder.connect(name, switch)
    return builder, names


def two_hundred(ctx: Context) -> None:
    group = "scale"
    build, close = Sample(), Sample()
    rounds = max(ctx.slow_rounds // 2, 2)
    for _ in range(rounds):
        builder, names = _star(200, "namespace", "star200")
        started = time.perf_counter()
        topo = builder.build()
        build.times.append(time.perf_counter() - started)
        ips = {topo[n].ip for n in names}
        if len(ips) != 200 or None in ips:
            raise RuntimeError(f"200-node build: {len(ips)} distinct addresses")
        started = time.perf_counter()
        topo.close()
        close.times.append(time.perf_counter() - started)
        _settle()
    ctx.add(absolute(group, "200 namespace nodes on one switch: build (addressed, up)",
                     build.median, 2.0))
    ctx.add(absolute(group, "200 namespace nodes on one switch: teardown", close.median, 1.0,
                     note="the kernel reaps the namespaces in the background"))

    def once() -> None:
        b, _ = _star(200, "namespace", "star200")
        t = b.build()
        t.close()

    ctx.profiles.append(report("200 namespace nodes on one switch, build+close", once, 2,
                               _settle))


def linear(ctx: Context) -> None:
    """100 and 1000 nodes on one switch, each in a fresh process, alternating."""
    group = "scale"
    runs: dict[int, list[dict[str, Any]]] = {100: [], 1000: []}
    for _ in range(1 if ctx.rounds < 10 else 3):
        for n in (100, 1000):
            settle_kernel()
            runs[n].append(measure("star", str(n)))
    settle_kernel()
    med = {n: {key: Sample([r[key] for r in rs]).median for key in rs[0]}
           for n, rs in runs.items()}
    small, big = med[100], med[1000]
    ctx.add(absolute(group, "100 namespace nodes on one switch: build (addressed, up)",
                     small["build"], None))
    ctx.add(absolute(group, "1000 namespace nodes on one switch: build (addressed, up)",
                     big["build"], 1.5))
    ctx.add(absolute(group, "1000 namespace nodes on one switch: close", big["close"], 0.5,
                     note="the kernel reaps the namespaces in the background"))
    per_node = (big["build"] / 1000) / (small["build"] / 100)
    ctx.add(ratio_row(group, "build time per node, 1000 nodes vs 100", per_node, 1.5,
                      f"{big['build']:.2f} ms vs {small['build'] * 10:.2f} ms per node"))
    same = big["threads"] <= small["threads"] and big["fds"] <= small["fds"]
    ctx.add(Row(group, "threads and descriptors with 1000 nodes up (vs 100 nodes)",
                f"{big['threads']:.0f} threads, {big['fds']:.0f} fds", "", None,
                "as many as with 100", same,
                f"with 100 nodes: {small['threads']:.0f} threads, {small['fds']:.0f} fds; the "
                "first wave held 1002 threads and 2011 fds at 1000 nodes"))
    ctx.add(absolute("memory", "peak RSS of a process building 1000 namespace nodes",
                     big["peak_rss_kib"] / 1024, 150, unit="MB",
                     note="VmHWM of the building process (the library without pytest)"))


def _settle() -> None:
    """Let the kernel finish reaping namespaces, so the next round starts level."""
    from pytest_netns.kernel.janitor import janitor

    janitor().drain()
    time.sleep(0.5)


def twenty_containers(ctx: Context) -> None:
    """20 containers for one topology: concurrently (as the builder does) vs one by one."""
    from pytest_netns.nodes.container import remove_nodes, start_containers

    group = "scale"
    names = [f"c{i}" for i in range(20)]

    def concurrent() -> float:
        started = time.perf_counter()
        nodes = start_containers(ctx.session, names, IMAGE, SLEEP)
        took = time.perf_counter() - started
        remove_nodes(nodes)
        return took

    def one_by_one() -> float:
        nodes: list[Any] = []
        started = time.perf_counter()
        try:
            for name in names:
                nodes += start_containers(ctx.session, [name], IMAGE, SLEEP)
            return time.perf_counter() - started
        finally:
            remove_nodes(nodes)

    rounds = max(ctx.slow_rounds // 3, 1)
    samples = interleave(rounds, 0, concurrent=concurrent, serial=one_by_one)
    ctx.add(compare(group, "20 containers started concurrently vs one by one",
                    samples["concurrent"], samples["serial"], 2))

    # the whole topology: 20 containers on one switch, then the probe matrix over it
    builder, node_names = _star(20, "docker", "star20", image=IMAGE, command=SLEEP)
    started = time.perf_counter()
    topo = builder.build()
    took = time.perf_counter() - started
    try:
        ctx.add(Row(group, "20-container topology on one switch: build", fmt_s(took)))
        from .suite_probes import containers_matrix

        containers_matrix(ctx, topo, node_names)
    finally:
        topo.close()
        from pytest_netns.kernel.janitor import janitor

        janitor().drain()
