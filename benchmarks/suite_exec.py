"""Commands in nodes: `Node.exec` and `Process.stop` side by side with what users had before.

On a container node ours is compared with the docker SDK's `exec_run` and
the `docker exec` command line; on a namespace node with `ip netns exec`
(the recipe tests used before). Then what the command layer promises and
the others do not: how soon exec returns when the command leaves a
background child, how close to the deadline a timeout fires, and how long
stopping a spawned process and its children takes.
"""

from __future__ import annotations

import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .context import IMAGE, SLEEP, Context
from .harness import Sample, absolute, compare, interleave

SETTLE = 0.05  # idle before each call: dockerd finishes an exec after it has answered
DOCKER_REST = 5.0  # after a background child held a stream, the engine stalls the container


@contextmanager
def one_node(backend: str, label: str) -> Iterator[Any]:
    """A topology of one node on `backend`; yields the node."""
    from pytest_netns.topology.builder import TopologyBuilder

    builder = TopologyBuilder(backend=backend, image=IMAGE, command=SLEEP, verify=False,
                              label=label)
    builder.node("a")
    topo = builder.build()
    try:
        yield topo["a"]
    finally:
        topo.close()


def _check(result: Any) -> None:
    if result[0] != 0:
        raise RuntimeError(f"exec failed: {result}")


def exec_latency(ctx: Context) -> None:
    """`exec(["true"])`: namespace vs `ip netns exec`; container vs exec_run and the CLI."""
    group = "exec"
    with one_node("namespace", "exec-ns") as node:
        samples = interleave(
            ctx.rounds, 3,
            ours=lambda: _check(node.exec(["true"])),
            ip=lambda: _check((subprocess.run(["ip", "netns", "exec",
                                               node.netns.rsplit("/", 1)[1], "true"],
                                              check=False).returncode, "")),
        )
        ctx.add(compare(group, "exec(['true']) in a namespace node vs `ip netns exec`",
                        samples["ours"], samples["ip"], 2))
    if ctx.docker is None:
        return
    with one_node("docker", "exec-docker") as node:
        ctr = node.container
        samples = interleave(
            ctx.rounds, 3, SETTLE,
            ours=lambda: _check(node.exec(["/bin/busybox", "true"])),
            sdk=lambda: _check((ctr.exec_run(["/bin/busybox", "true"]).exit_code, "")),
            cli=lambda: _check((subprocess.run(["docker", "exec", ctr.id, "/bin/busybox",
                                                "true"], check=False).returncode, "")),
        )
        ctx.add(compare(group, "exec(['true']) in a container vs docker SDK exec_run",
                        samples["ours"], samples["sdk"], None,
                        note="both are dominated by runc (about 50 ms per exec when quiet)"))
        ctx.add(compare(group, "exec(['true']) in a container vs `docker exec` (CLI)",
                        samples["ours"], samples["cli"], None))


def background_child(ctx: Context) -> None:
    """How soon `sh -c 'echo hi; sleep 30 &'` returns: the child holds the output stream."""
    from pytest_netns import BackgroundOutputWarning

    group = "exec"
    command = ["busybox", "sh", "-c", "echo hi; busybox sleep 30 &"]
    with one_node("namespace", "exec-bg-ns") as node:
        sample = interleave(ctx.rounds, 1, ours=lambda: _check(node.exec(command)))["ours"]
        ctx.add(absolute(group, "exec returns while a background child holds its output "
                         "(namespace; the old code waited 30 s)", sample.median, 0.1))
    if ctx.docker is None:
        return
    with one_node("docker", "exec-bg-docker") as node, warnings.catch_warnings():
        warnings.simplefilter("ignore", BackgroundOutputWarning)
        ctr = node.container
        samples = interleave(
            max(ctx.slow_rounds // 2, 3), 0, DOCKER_REST,
            ours=lambda: _check(node.exec(command)),
            sdk=lambda: _check((ctr.exec_run(command).exit_code, "")),
        )
        ctx.add(compare(group, "the same on a container vs exec_run", samples["ours"],
                        samples["sdk"], None, note=f"{DOCKER_REST:g} s rest before each: the "
                        "engine then stalls the container's next exec for 2-4 s either way "
                        "(BackgroundOutputWarning)"))


def timeout_accuracy(ctx: Context) -> None:
    """How long after the deadline `exec(["sleep", "20"], timeout=0.5)` raises."""
    from pytest_netns import ExecTimeoutError

    group = "exec"
    for backend in ("namespace", "docker"):
        if backend == "docker" and ctx.docker is None:
            continue
        with one_node(backend, f"exec-timeout-{backend}") as node:
            overshoot = Sample()
            for _ in range(max(ctx.slow_rounds, 5)):
                started = time.perf_counter()
                try:
                    node.exec(["busybox", "sleep", "20"], timeout=0.5)
                except ExecTimeoutError:
                    overshoot.times.append(time.perf_counter() - started - 0.5)
                else:
                    raise RuntimeError("the timeout did not fire")
            ctx.add(absolute(group, f"ExecTimeoutError after the deadline, timeout=0.5 s "
                             f"({backend}; command and children killed first)",
                             overshoot.median, 0.15, note=f"range {overshoot.spread}"))


def stop_latency(ctx: Context) -> None:
    """`Process.stop()` of `sh -c "sleep 600; echo"`: SIGTERM to the shell and the sleep."""
    group = "exec"
    for backend in ("namespace", "docker"):
        if backend == "docker" and ctx.docker is None:
            continue
        with one_node(backend, f"exec-stop-{backend}") as node:
            stop = Sample()
            for _ in range(max(ctx.slow_rounds, 5)):
                process = node.spawn(["busybox", "sh", "-c", "busybox sleep 600; echo"])
                time.sleep(0.2)  # the sleep is running
                started = time.perf_counter()
                process.stop()
                stop.times.append(time.perf_counter() - started)
            ctx.add(absolute(group, f"Process.stop() of a shell and its child ({backend})",
                             stop.median, 0.2, note=f"range {stop.spread}; two or three "
                             "/proc scans, linear in the processes on the machine"))
