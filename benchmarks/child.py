"""Measurements that need a process of their own, run as `python -m benchmarks.child ...`.

- `star N`: build N namespace nodes on one switch (`verify=False`), then
  close; prints the build and close times, the threads and descriptors the
  process holds with the topology up, and its peak RSS (VmHWM), as JSON.
  A fresh process each time, so neither memory nor threads of an earlier
  round count.
- `first-probe`: build a namespace `bridged_pair` (`verify=False`) in a
  fresh process, then time its very first probe (the imports and sockets
  it needs included) and a second one; prints both as JSON.

Both run inside a pytest-netns session of their own (with its watchdog),
so a crash leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def _vm_hwm_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def star(n: int) -> dict[str, Any]:
    from pytest_netns.kernel.janitor import janitor
    from pytest_netns.topology.builder import TopologyBuilder

    builder = TopologyBuilder(backend="namespace", verify=False, label=f"star{n}")
    switch = builder.switch("lan")
    names = [builder.node(f"n{i}") for i in range(n)]
    for name in names:
        builder.connect(name, switch)
    started = time.perf_counter()
    topo = builder.build()
    built = time.perf_counter() - started
    up = {"threads": len(os.listdir("/proc/self/task")),
          "fds": len(os.listdir("/proc/self/fd"))}
    if len({topo[name].ip for name in names}) != n:
        raise RuntimeError(f"{n}-node build: addresses are not all distinct")
    started = time.perf_counter()
    topo.close()
    closed = time.perf_counter() - started
    janitor().drain()
    return {"n": n, "build": built, "close": closed, **up, "peak_rss_kib": _vm_hwm_kib()}


def first_probe() -> dict[str, Any]:
    from pytest_netns.probes.api import ping
    from pytest_netns.topology import recipes
    from pytest_netns.topology.builder import TopologyBuilder

    pair = recipes.bridged_pair(TopologyBuilder(backend="namespace", verify=False))
    try:
        started = time.perf_counter()
        first = ping(pair.a, pair.b_ip)
        took = time.perf_counter() - started
        started = time.perf_counter()
        second = ping(pair.a, pair.b_ip)
        again = time.perf_counter() - started
        if not (first.ok and second.ok):
            raise RuntimeError(f"probes failed: {first}; {second}")
        return {"first": took, "second": again, "scapy_imported": "scapy" in sys.modules}
    finally:
        pair.close()


def measure(*args: str) -> dict[str, Any]:
    """Run one measurement in a fresh process (the parent's side); its JSON result."""
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-m", "benchmarks.child", *args], cwd=repo,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.child {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    from pytest_netns.lifecycle.hooks import finish_session, start_session

    session = start_session()
    try:
        if sys.argv[1] == "star":
            result = star(int(sys.argv[2]))
        elif sys.argv[1] == "first-probe":
            result = first_probe()
        else:
            raise SystemExit(f"unknown measurement {sys.argv[1:]}")
    finally:
        problems = finish_session(session)
    if problems:
        raise SystemExit(f"left behind: {problems}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
