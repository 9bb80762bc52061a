"""Probes side by side with `docker exec ping`, 20-node reachability matrices, the first probe.

The probe rows run on a bridged_pair with containers, so both sides send
the same ICMP echo between the same two containers: ours from a socket
opened in the source container's namespace, theirs by running busybox
`ping -c1 -W1` in the container, through the docker SDK's `exec_run` and
through the `docker exec` command line (the DESIGN note's 87 ms figure).

The second matrix has half of its pairs unreachable: two switches of ten
nodes and nothing between them, so 180 pairs answer and 200 have no route.
The first-probe row builds a namespace bridged_pair in a fresh process and
times that process's very first probe (`benchmarks.child first-probe`).
"""

from __future__ import annotations

import subprocess
from typing import Any

from . import docker_native
from .context import IMAGE, SLEEP, Context
from .harness import absolute, compare, fmt_s, interleave
from .profiling import report

SETTLE = 0.05  # idle before each call: dockerd finishes an exec after it has answered


def probe_vs_exec(ctx: Context) -> None:
    from pytest_netns.probes.api import ping
    from pytest_netns.topology import recipes
    from pytest_netns.topology.builder import TopologyBuilder

    group = "probe"
    pair = recipes.bridged_pair(TopologyBuilder(backend="docker", image=IMAGE, command=SLEEP,
                                                verify=False))
    try:
        ctr = pair.a.container
        assert ctr is not None, "a bridged_pair on the Docker backend has containers"

        def ours() -> None:
            result = ping(pair.a, pair.b_ip, timeout=1.0)
            if not result.ok:
                raise RuntimeError(f"probe failed: {result}")

        def sdk() -> None:
            if not docker_native.exec_ping(ctr, pair.b_ip):
                raise RuntimeError("docker exec ping failed")

        def cli() -> None:
            subprocess.run(["docker", "exec", ctr.id, "ping", "-c1", "-W1", pair.b_ip],
                           check=True, capture_output=True)

        samples = interleave(ctx.rounds, 3, SETTLE, ours=ours, sdk=sdk, cli=cli)
        ctx.add(compare(group, "ping a->b vs `docker exec ping -c1` (CLI)", samples["ours"],
                        samples["cli"], 25))
        ctx.add(compare(group, "ping a->b vs docker SDK exec_run(ping -c1)", samples["ours"],
                        samples["sdk"], 25))
        # the second wave's bar, on its own many more rounds (a probe is sub-millisecond)
        alone = interleave(max(ctx.rounds * 10, 100), 20, ours=ours)["ours"]
        ctx.add(absolute(group, "one ping a->b (containers), median of "
                         f"{len(alone.times)}", alone.median, 0.0006))
        ctx.add(compare(group, "one ping a->b vs `docker exec ping -c1` (CLI), second wave",
                        alone, samples["cli"], 80))
        ctx.profiles.append(report("one probe (ping between two containers)", ours,
                                   max(ctx.rounds, 30)))
    finally:
        pair.close()


def matrix(ctx: Context) -> None:
    """All 380 ordered pairs of 20 nodes on one switch, probed by one call."""
    from pytest_netns.probes.matrix import reachability_matrix
    from pytest_netns.topology.builder import TopologyBuilder

    group = "probe"
    builder = TopologyBuilder(backend="namespace", verify=False, label="matrix20")
    switch = builder.switch("lan")
    names = [builder.node(f"n{i}") for i in range(20)]
    for name in names:
        builder.connect(name, switch)
    topo = builder.build()
    try:
        nodes = [topo[n] for n in names]
        box: dict[str, Any] = {}

        def run() -> None:
            box["m"] = reachability_matrix(nodes, timeout=1.0)

        samples = interleave(max(ctx.rounds // 3, 3), 1, ours=run)
        got = box["m"]
        missing = [(a, b) for a in names for b in names
                   if a != b and not got.reachable(a, b)]
        if missing:
            raise RuntimeError(f"matrix: {len(missing)} pairs unreachable, e.g. {missing[:3]}")
        ctx.add(absolute(group, "20-node reachability matrix (380 pings), namespaces",
                         samples["ours"].median, 1.5))
        ctx.profiles.append(report("20-node reachability matrix", run, 3))
    finally:
        topo.close()


def matrix_half(ctx: Context) -> None:
    """380 ordered pairs, 200 of them unreachable (no route), probed by one call."""
    from pytest_netns.probes.matrix import reachability_matrix
    from pytest_netns.topology.builder import TopologyBuilder

    builder = TopologyBuilder(backend="namespace", verify=False, label="matrix-half")
    names = []
    for lan in ("lan1", "lan2"):
        switch = builder.switch(lan)
        for i in range(10):
            names.append(builder.node(f"{lan}n{i}"))
            builder.connect(names[-1], switch)
    topo = builder.build()
    try:
        nodes = [topo[n] for n in names]
        box: dict[str, Any] = {}

        def run() -> None:
            box["m"] = reachability_matrix(nodes, timeout=1.0)

        samples = interleave(max(ctx.rounds, 5), 2, ours=run)
        reachable = len(box["m"].reachable_pairs())
        if reachable != 180:
            raise RuntimeError(f"half matrix: {reachable} pairs reachable, expected 180")
        ctx.add(absolute("probe", "20-node matrix, 380 pairs, half unreachable (no route), "
                         "namespaces", samples["ours"].median, 0.120))
        ctx.profiles.append(report("20-node matrix, half unreachable", run, 5))
    finally:
        topo.close()


def first_probe(ctx: Context) -> None:
    """The first probe of a fresh process, right after its first build."""
    from .child import measure
    from .harness import Sample

    runs = [measure("first-probe") for _ in range(max(ctx.rounds // 2, 3))]
    first = Sample([r["first"] for r in runs])
    second = Sample([r["second"] for r in runs])
    scapy = sum(r["scapy_imported"] for r in runs)
    ctx.add(absolute("probe", "first probe in a fresh process, right after a build "
                     "(namespaces)", first.median, 0.020,
                     note=f"the second probe {fmt_s(second.median)}; scapy imported in "
                     f"{scapy} of {len(runs)} runs (templates come from the state directory)"))


def containers_matrix(ctx: Context, topo: Any, names: list[str]) -> None:
    """The same matrix over 20 containers (called by the scale suite, which built them)."""
    from pytest_netns.probes.matrix import reachability_matrix

    nodes = [topo[n] for n in names]
    box: dict[str, Any] = {}

    def run() -> None:
        box["m"] = reachability_matrix(nodes, timeout=1.0)

    sample = interleave(max(ctx.slow_rounds // 2, 2), 1, ours=run)["ours"]
    got = box["m"]
    bad = sum(1 for a in names for b in names if a != b and not got.reachable(a, b))
    ctx.add(absolute("probe", "20-node reachability matrix (380 pings), containers",
                     sample.median, 1.5, note=f"{bad} unreachable" if bad else ""))
