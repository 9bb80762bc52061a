"""`pytest-netns up` of a 3-node lab, side by side with the same lab built in a test.

The command's own work is what it costs beyond starting Python: measured
as the paired difference, round by round, between `pytest-netns up FILE`
and `python -c pass` (the same interpreter), so drift on the shared machine
cancels out. It includes importing what the command needs (PyYAML, the
builder), reading and checking the file, building, and writing the lab's
record. The in-process contender is what `make_lab` does in a test (read,
check, build with the builder `make_topology` returns; no Python start, no
imports, no record). `down` runs after each round, outside the timed part,
and every round checks that nothing of the lab is left.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .context import Context
from .harness import Row, Sample, absolute, fmt_s, interleave

SCRIPT = str(Path(sys.executable).with_name("pytest-netns"))
LAB = """\
name: {name}
nodes:
  client: {{}}
  server: {{}}
  r1: {{kind: router}}
switches:
  lan: {{}}
  dmz: {{}}
links:
  - endpoints: [client, lan]
  - endpoints: [r1, lan]
  - endpoints: [r1, dmz]
  - endpoints: [server, dmz]
"""
# `up` in a fresh interpreter, its imports and its own work timed apart
PHASES = """\
import contextlib, io, sys, time
started = time.perf_counter()
import yaml
import pytest_netns.cli.labs, pytest_netns.lifecycle.labs, pytest_netns.lifecycle.backend
import pytest_netns.topology.builder, pytest_netns.labs.lab, pytest_netns.labs.reattach
import pytest_netns.report.describe, pytest_netns.kernel.privileges
from pytest_netns.cli import main
imported = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    main(["up", sys.argv[1], "--backend", "namespace"])
print(imported - started, time.perf_counter() - imported)
"""


# as an installed package runs: with its bytecode cached (the first rounds write it)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run(*argv: str, cpu: Sample | None = None) -> float:
    """Wall seconds of one command; its CPU seconds (user + system) go to `cpu`."""
    started = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, env=ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed with status {proc.returncode}")
    if cpu is not None:
        cpu.times.append(usage.ru_utime + usage.ru_stime)
    return took


def lab_up(ctx: Context) -> None:
    from pytest_netns.kernel.janitor import janitor
    from pytest_netns.labs.lab import describe
    from pytest_netns.labs.labfile import load
    from pytest_netns.ownership import read_lab
    from pytest_netns.topology.builder import TopologyBuilder

    group = "lab file"
    name = f"{ctx.tag}lab"
    down, up_cpu, python_cpu = Sample(), Sample(), Sample()
    with tempfile.TemporaryDirectory(prefix=f"{ctx.tag}-") as tmp:
        path = os.path.join(tmp, "lab.yaml")
        with open(path, "w") as f:
            f.write(LAB.format(name=name))

        def up() -> float:
            took = _run(SCRIPT, "up", path, "--backend", "namespace", cpu=up_cpu)
            record = read_lab(name) or {}
            down.times.append(_run(SCRIPT, "down", path))
            left = [n for n in os.listdir("/run/netns")
                    if n.startswith(f"pytest-netns-{record.get('session')}-")]
            if left or read_lab(name) is not None:
                raise RuntimeError(f"`down` left {left} of lab {name}")
            return took

        def in_test() -> float:
            started = time.perf_counter()
            builder, _ = describe(load(path), lambda **kw: TopologyBuilder(
                session=ctx.session, **kw), backend="namespace")
            topo = builder.build()
            took = time.perf_counter() - started
            topo.close()
            janitor().drain()
            return took

        imports, work = Sample(), Sample()

        def phases() -> float:
            done = subprocess.run([sys.executable, "-c", PHASES, path], check=True, env=ENV,
                                  capture_output=True, text=True)
            imported, worked = map(float, done.stdout.split())
            imports.times.append(imported)
            work.times.append(worked)
            _run(SCRIPT, "down", path)
            return worked

        samples = interleave(ctx.rounds, 2, settle=0.05,
                             python=lambda: _run(sys.executable, "-c", "pass", cpu=python_cpu),
                             up=up, in_test=in_test, phases=phases)
    python, whole, in_process = samples["python"], samples["up"], samples["in_test"]
    own = Sample([u - p for u, p in zip(whole.times, python.times, strict=True)])
    own_cpu = Sample([u - p for u, p in zip(up_cpu.times, python_cpu.times, strict=True)])
    load_average = os.getloadavg()[0]
    ctx.add(absolute(group, "`pytest-netns up` of a 3-node lab (namespaces): its own work once "
                     "Python has started and imported it (main() until it returns)",
                     samples["phases"].median, 0.100,
                     note="measured inside the command's own process; load average "
                     f"{load_average:.1f}"))
    ctx.add(Row(group, "the same command as a whole, beyond `python -c pass` (its imports "
                "included; median of paired differences)", fmt_s(own.median),
                note=f"whole command {fmt_s(whole.median)}, `python -c pass` "
                f"{fmt_s(python.median)}; CPU time (user + system) beyond Python's "
                f"{fmt_s(own_cpu.median)}; its imports (PyYAML, argparse, the CLI and the "
                f"builder's modules, which a test pays once per session) "
                f"{fmt_s(imports.median)} ({imports.spread})"))
    ctx.add(Row(group, "the same lab built in a test (make_lab: read, check, build; "
                "in-process)", fmt_s(in_process.median),
                note="what a test waits for; no interpreter start, imports or record"))
    ctx.add(Row(group, "`pytest-netns down` of it (whole command)", fmt_s(down.median),
                note="a sweep of the lab's session, then waiting until the kernel has "
                "reaped every link"))
