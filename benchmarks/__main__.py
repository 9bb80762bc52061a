"""Run every benchmark side by side and regenerate benchmarks/RESULTS.md.

    sudo .venv/bin/python -m benchmarks            # full run, a few minutes
    sudo .venv/bin/python -m benchmarks --quick    # fewer repetitions
    python -m benchmarks --only host_only,probe        # some suites; RESULTS.md untouched

Run it from the repository root, as root, with a Docker engine running
(the Docker rows are skipped without one). It prints each row as it is
measured, then the whole table, and checks that everything it created is
gone again.
"""

from __future__ import annotations

import argparse
import compileall
import os
import sys
import time
import traceback
from collections.abc import Callable

from . import leaks, results
from .context import IMAGE, Context
from .harness import Row, table

# (name, needs docker, suite). Start-up first, while the machine is quiet;
# the large namespace builds last: the kernel reaps those namespaces in the
# background for a while (the scale suites wait for it between rounds).
SUITES: list[tuple[str, bool, str]] = [
    ("startup", False, "suite_process:import_overhead"),
    ("host_only", True, "suite_links:host_only"),
    ("namespace_pair", False, "suite_links:namespace_pair"),
    ("verification", False, "suite_verify:verification"),
    ("container_pair", True, "suite_links:container_pair"),
    ("probe", True, "suite_probes:probe_vs_exec"),
    ("exec", False, "suite_exec:exec_latency"),
    ("exec_timeout", False, "suite_exec:timeout_accuracy"),
    ("exec_stop", False, "suite_exec:stop_latency"),
    ("exec_background", False, "suite_exec:background_child"),
    ("matrix", False, "suite_probes:matrix"),
    ("matrix_half", False, "suite_probes:matrix_half"),
    ("first_probe", False, "suite_probes:first_probe"),
    ("faults", False, "suite_faults:accuracy"),
    ("fault_throughput", False, "suite_faults:throughput"),
    ("fault_costs", False, "suite_faults:costs"),
    # after the fault suites: the kernel reaps its ~360 namespaces for a while, and a
    # forwarder measured meanwhile saw 100+ ms stalls of packet processing
    ("no_cost", False, "suite_faults:no_cost"),
    ("containers20", True, "suite_scale:twenty_containers"),
    ("session30", True, "suite_session:thirty_tests"),
    ("ipv6", False, "suite_ipv6:ipv6"),
    ("names", False, "suite_ipv6:names"),
    ("shared", True, "suite_ipv6:shared"),
    ("lab", False, "suite_labs:lab_up"),
    ("scale200", False, "suite_scale:two_hundred"),
    ("scale1000", False, "suite_scale:linear"),
    ("peers", False, "suite_peers:peers"),
    ("memory", False, "suite_process:peak_rss"),
]


def _load(target: str) -> Callable[[Context], None]:
    module, func = target.split(":")
    mod = __import__(f"{__package__}.{module}", fromlist=[func])
    suite: Callable[[Context], None] = getattr(mod, func)
    return suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", default="",
                        help="comma-separated suites: " + ",".join(s[0] for s in SUITES))
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    args = parser.parse_args(argv)
    only = {s for s in args.only.split(",") if s}
    unknown = only - {s[0] for s in SUITES}
    if unknown:
        parser.error(f"unknown suites {sorted(unknown)}")
    if os.geteuid() != 0:
        parser.error("run as root: the benchmarks create namespaces and links")

    # An installed package has its bytecode (pip compiles at install); a checkout run with
    # PYTHONDONTWRITEBYTECODE (set on this project's machines) would recompile every module
    # in every fresh process, which the fresh-process rows would then measure.
    compileall.compile_dir(os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "pytest_netns"), quiet=1)

    from pytest_netns.lifecycle.hooks import finish_session, start_session
    from pytest_netns.nodes.engine import docker_client, engine_available
    from pytest_netns.nodes.images import ensure_image

    ctx = Context(rounds=7 if args.quick else 21, slow_rounds=3 if args.quick else 9)
    if engine_available():
        ctx.docker = docker_client()
        ensure_image(ctx.docker, IMAGE)
    ctx.session = start_session()
    started = time.time()
    print(f"pytest-netns benchmarks, run {ctx.tag}, session {ctx.session.id}"
          f"{' (quick)' if args.quick else ''}", flush=True)
    failed: list[str] = []
    before: set[str] = set()
    try:
        before = leaks.snapshot(ctx)
        for name, needs_docker, target in SUITES:
            if only and name not in only:
                continue
            if needs_docker and ctx.docker is None:
                ctx.add(Row(name, "skipped", "", note="no Docker engine answers"))
                continue
            print(f"[{name}]", flush=True)
            try:
                _load(target)(ctx)
            except Exception as exc:
                traceback.print_exc()
                failed.append(name)
                ctx.add(Row(name, "FAILED", "", note=f"{type(exc).__name__}: {exc}"[:200]))
    finally:
        problems = finish_session(ctx.session)
        left = leaks.compare(ctx, before)
    elapsed = time.time() - started
    print()
    print(table(ctx.rows, markdown=False))
    print()
    missed = [r for r in ctx.rows if r.met is False]
    print(f"targets met: {sum(1 for r in ctx.rows if r.met)}, missed: {len(missed)}; "
          f"took {elapsed:.0f} s")
    print("cleanup: " + ("nothing left behind" if not (left or problems)
                         else f"LEFT BEHIND {left} {problems}"))
    if not args.no_write and not only:
        path = results.write(ctx, elapsed, args.quick, left + problems)
        print(f"wrote {path}")
    return 1 if failed or left or problems else 0


if __name__ == "__main__":
    sys.exit(main())
