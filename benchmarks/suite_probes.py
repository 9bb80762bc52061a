"""Probes side by side with `docker exec ping`, and a 20-node reachability matrix.

The probe rows run on a bridged_pair with containers, so both sides send
the same ICMP echo between the same two containers: ours from a socket
opened in the source container's namespace, theirs by running busybox
`ping -c1 -W1` in the container, through the docker SDK's `exec_run` and
through the `docker exec` command line (the DESIGN note's 87 ms figure).
"""

from __future__ import annotations

import subprocess
from typing import Any

from . import docker_native
from .context import IMAGE, SLEEP, Context
from .harness import absolute, compare, interleave
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
